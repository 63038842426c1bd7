"""The ONNX reader's own protobuf path (optprune.io._onnx_proto) equals onnx's helpers and spares ``import onnx``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optprune.io._onnx_proto import attribute_value, load_model_proto, pb2, to_array


def _typed(name: str, dtype: int, dims: list[int], values) -> onnx.TensorProto:
    return helper.make_tensor(name, dtype, dims, values, raw=False)


TENSORS = [
    numpy_helper.from_array(np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32), "f32raw"),
    numpy_helper.from_array(np.random.default_rng(1).normal(size=(2, 5)), "f64raw"),
    numpy_helper.from_array(np.array([[1.5, -2.25]], dtype=np.float16), "f16raw"),
    numpy_helper.from_array(np.array([-1, 0, 7], dtype=np.int64), "i64raw"),
    numpy_helper.from_array(np.array([True, False]), "boolraw"),
    numpy_helper.from_array(np.array(3.5, dtype=np.float32), "scalar"),
    _typed("f32typed", TensorProto.FLOAT, [2, 2], [0.5, -1.0, 2.0, 3.25]),
    _typed("f64typed", TensorProto.DOUBLE, [3], [1e-300, -2.0, 0.1]),
    _typed("f16typed", TensorProto.FLOAT16, [2], np.array([0.5, -3.0], dtype=np.float16)),
    _typed("i8typed", TensorProto.INT8, [3], [-128, 0, 127]),
    _typed("i64typed", TensorProto.INT64, [2], [-(2**40), 5]),
    _typed("u64typed", TensorProto.UINT64, [1], [2**63]),
    _typed("booltyped", TensorProto.BOOL, [2], [True, False]),
    _typed("bf16", TensorProto.BFLOAT16, [2], [1.0, -2.0]),  # handed to onnx's own helper
]


@pytest.mark.parametrize("tensor", TENSORS, ids=lambda t: t.name)
def test_tensor_values_equal_onnx_numpy_helper(tensor):
    ours, theirs = to_array(tensor), numpy_helper.to_array(tensor)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs, equal_nan=True)


def test_attribute_values_equal_onnx_helper():
    node = helper.make_node("Gemm", ["a", "b"], ["y"], alpha=0.5, transB=1, name="g", mode="x",
                            ints=[1, 2], floats=[0.25], value=TENSORS[0])
    for attr in node.attribute:
        ours, theirs = attribute_value(attr), helper.get_attribute_value(attr)
        if isinstance(theirs, onnx.TensorProto):
            assert ours == theirs
        else:
            assert ours == theirs and type(ours) is type(theirs)


def test_load_is_onnx_load_and_messages_are_onnx_classes(tmp_path):
    from tests._tiny_onnx import tiny_onnx_and_property

    path, _ = tiny_onnx_and_property(tmp_path, 3, 5, 2, "(assert (>= Y_0 0.0))")
    ours = load_model_proto(path)
    assert isinstance(ours, onnx.ModelProto) and pb2().ModelProto is onnx.ModelProto
    assert ours == onnx.load(str(path))


def test_reading_a_network_does_not_import_onnx_and_onnx_works_afterwards(tmp_path):
    from tests._tiny_onnx import tiny_onnx_and_property

    path, _ = tiny_onnx_and_property(tmp_path, 3, 5, 2, "(assert (>= Y_0 0.0))")
    code = f"""
import json, sys
import numpy as np
from optprune.io import network_from_onnx, network_to_onnx
net = network_from_onnx({str(path)!r})
before = sorted(m for m in ("onnx", "ml_dtypes") if m in sys.modules)
proto = network_to_onnx(net)  # the writer imports onnx
import onnx
onnx.checker.check_model(proto)
again = network_from_onnx(proto)
same = all(np.array_equal(a.dense_weight(), b.dense_weight()) for a, b in zip(net.layers, again.layers))
print(json.dumps({{"before": before, "attr": onnx.onnx_ml_pb2 is sys.modules["onnx.onnx_ml_pb2"], "same": same}}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"before": [], "attr": True, "same": True}
