"""ONNX messages, tensors and attributes for the reader, without importing the ``onnx`` package.

``import onnx`` costs 0.6-1 s of CPU, most of it the initialisation of ``ml_dtypes``' extension, which the
``onnx`` package imports for its exotic float types; that is a third of ``optprune verify``'s whole run on an
instance its bounds decide (VNN-COMP counts the whole run). Reading a model needs only the generated protobuf
classes, ``onnx/onnx_ml_pb2.py`` (which imports protobuf alone), and the conversion of tensors and attributes
to NumPy and Python values. :func:`pb2` loads that generated file under its own name ``onnx.onnx_ml_pb2``, the
module ``onnx`` itself imports (``onnx/onnx_pb.py``: ``from .onnx_ml_pb2 import *``), so the message classes
are the same whether or not ``onnx`` is imported later. :func:`to_array` and :func:`attribute_value` convert
the common cases (the float, integer and bool types, inline data) as ``onnx.numpy_helper.to_array`` and
``onnx.helper.get_attribute_value`` do, and hand anything else (bfloat16 and the 8-bit floats, external data,
strings, sparse tensors) to those functions. The writer (``network_to_onnx``) imports ``onnx`` as before,
through :func:`import_onnx`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["pb2", "import_onnx", "load_model_proto", "to_array", "attribute_value"]

_PB2 = "onnx.onnx_ml_pb2"

# TensorProto.DataType -> (NumPy dtype of the values, the repeated field holding them when there is no raw_data)
_TENSOR_TYPES: dict[int, tuple[Any, str]] = {
    1: (np.float32, "float_data"),  # FLOAT
    2: (np.uint8, "int32_data"),  # UINT8
    3: (np.int8, "int32_data"),  # INT8
    4: (np.uint16, "int32_data"),  # UINT16
    5: (np.int16, "int32_data"),  # INT16
    6: (np.int32, "int32_data"),  # INT32
    7: (np.int64, "int64_data"),  # INT64
    9: (np.bool_, "int32_data"),  # BOOL
    10: (np.float16, "int32_data"),  # FLOAT16: the bits, one value per int32
    11: (np.float64, "double_data"),  # DOUBLE
    12: (np.uint32, "uint64_data"),  # UINT32
    13: (np.uint64, "uint64_data"),  # UINT64
}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


def pb2() -> ModuleType:
    """The generated module ``onnx.onnx_ml_pb2`` (ModelProto, TensorProto, ...), loaded without ``onnx``."""
    module = sys.modules.get(_PB2)
    if module is not None:
        return module
    spec = importlib.util.find_spec("onnx")  # locates the package without running its __init__
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / "onnx_ml_pb2.py" if locations else None
    if path is None or not path.is_file():  # another layout: the package's own import
        return import_onnx().onnx_ml_pb2
    file_spec = importlib.util.spec_from_file_location(_PB2, path)
    assert file_spec is not None and file_spec.loader is not None
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[_PB2] = module
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(_PB2, None)
        raise
    return module


def import_onnx() -> ModuleType:
    """``import onnx``, with its attribute ``onnx_ml_pb2`` set when :func:`pb2` loaded that module first.

    (Python's import sets a package's attribute for a submodule only when it loads the submodule itself;
    ``from onnx import onnx_ml_pb2``, the form ``onnx``'s own modules use, finds it either way.)
    """
    import onnx

    if not hasattr(onnx, "onnx_ml_pb2") and _PB2 in sys.modules:
        onnx.onnx_ml_pb2 = sys.modules[_PB2]
    return onnx


def _tensors(proto) -> Any:
    yield from proto.graph.initializer
    for node in proto.graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t


def load_model_proto(path: str | os.PathLike):
    """``onnx.load(path)``: the parsed ModelProto; a model with external data is read by ``onnx`` itself.

    Raises protobuf's ``DecodeError`` (or ``onnx``'s error) for bytes that do not parse.
    """
    proto = pb2().ModelProto()
    proto.ParseFromString(Path(path).read_bytes())
    if any(t.data_location == _EXTERNAL for t in _tensors(proto)):
        return import_onnx().load(str(path))
    return proto


def to_array(tensor) -> np.ndarray:
    """The values of a TensorProto as a NumPy array (``onnx.numpy_helper.to_array``)."""
    kind = _TENSOR_TYPES.get(int(tensor.data_type))
    if kind is None or tensor.data_location == _EXTERNAL or tensor.HasField("segment"):
        return import_onnx().numpy_helper.to_array(tensor)
    dtype, field = kind
    dims = tuple(int(d) for d in tensor.dims)
    if tensor.HasField("raw_data"):
        return np.frombuffer(tensor.raw_data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(dims)
    values = getattr(tensor, field)
    if dtype is np.float16:
        return np.asarray(values, dtype=np.uint16).view(np.float16).reshape(dims)
    return np.asarray(values, dtype=dtype).reshape(dims)


def attribute_value(attr) -> Any:
    """The Python value of an AttributeProto (``onnx.helper.get_attribute_value``)."""
    kind = int(attr.type)
    simple = {1: "f", 2: "i", 3: "s", 4: "t", 5: "g"}
    repeated = {6: "floats", 7: "ints", 8: "strings", 9: "tensors", 10: "graphs"}
    if kind in simple:
        return getattr(attr, simple[kind])
    if kind in repeated:
        return list(getattr(attr, repeated[kind]))
    return import_onnx().helper.get_attribute_value(attr)
