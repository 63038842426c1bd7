"""Reading an ONNX graph into a :class:`Network` and writing one with ``onnx.helper``.

The reader follows the graph's single data path from its one non-initializer
input to its one output, node by node (ONNX nodes are topologically sorted):

* ``Gemm``: ``Y = alpha * A' B' + beta * C`` with ``A`` the data (``transA = 0``),
  ``B`` and ``C`` constants, ``B' = B^T`` if ``transB``; the layer is
  ``W = alpha * B'^T``, ``b = beta * C``;
* ``MatMul``: data @ constant ``B`` (layer ``W = B^T``) or constant ``A`` @ data
  column (``W = A``), with a following ``Add`` of a constant becoming the bias;
* ``Conv`` (2-D, ``group = 1``, unit dilation, symmetric padding): unrolled as in
  :mod:`optprune.io._conv`;
* ``BatchNormalization`` (inference): ``s = scale / sqrt(var + eps)``, ``t = B - s mean``;
* ``Add`` / ``Sub`` / ``Mul`` / ``Div`` between the data and a constant: an
  element-wise affine map (input normalisation such as ``(x - mu) / sigma``),
  folded into the neighbouring affine layer (:mod:`optprune.io._builder`) so
  the network's input is the raw graph input;
* ``Relu``, ``Sigmoid``, ``Tanh``; ``Flatten`` and ``Reshape`` (constant target shape) only reshape;
* ``Identity`` and ``Dropout`` are skipped; ``Constant`` nodes and
  initializers are constants, and these ops on constants only are evaluated.

Any other op raises :class:`UnsupportedLayerError` naming the node, its
op_type and :data:`SUPPORTED_ONNX_OPS`.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from optprune.errors import (
    DataNotFoundError,
    FileFormatError,
    InvalidWeightsError,
    ShapeMismatchError,
    UnsupportedLayerError,
)
from optprune.io._builder import ChainBuilder
from optprune.io._conv import conv_spec_matches, conv_to_sparse
from optprune.io._onnx_proto import attribute_value, load_model_proto, pb2, to_array
from optprune.network import ConvSpec, Network

__all__ = ["SUPPORTED_ONNX_OPS", "network_from_onnx", "network_to_onnx"]

SUPPORTED_ONNX_OPS: tuple[str, ...] = (
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Flatten", "Reshape", "Conv",
    "BatchNormalization", "Constant", "Identity", "Dropout",
)
_CONST_FOLD = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
}
if TYPE_CHECKING:
    import onnx

# TensorProto FLOAT, DOUBLE, FLOAT16, BFLOAT16 (the reader does not import ``onnx``: optprune.io._onnx_proto)
_FLOAT_TYPES = {1, 11, 10, 16}
OPSET = 13


def _load_model(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, pb2().ModelProto):
        return model, model.graph.name or "onnx"
    path = Path(model)
    if path.is_dir():
        raise FileFormatError(f"cannot read {path} as ONNX: it is a directory; give an .onnx file")
    if not path.is_file():
        raise DataNotFoundError(f"ONNX file not found: {path}")
    if path.stat().st_size == 0:
        raise FileFormatError(f"{path} is empty (0 bytes); an ONNX model (protobuf) is required")
    try:
        proto = load_model_proto(path)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise FileFormatError(f"{path} is not a valid ONNX protobuf: {exc}") from None
    if not proto.HasField("graph") or not (proto.graph.node or proto.graph.input):
        # protobuf accepts many byte strings as an empty message: say so instead of a graph-input error
        raise FileFormatError(f"{path} is not a valid ONNX model: it parses as a protobuf without a graph")
    return proto, path.stem


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: attribute_value(a) for a in node.attribute}


def _constant_value(node: onnx.NodeProto, label: str) -> np.ndarray:
    attrs = _attrs(node)
    if "value" in attrs:
        return to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise UnsupportedLayerError(label, f"Constant({', '.join(attrs) or 'no value'})", SUPPORTED_ONNX_OPS)


def _finite(arr: np.ndarray, label: str, op: str, what: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InvalidWeightsError(
            f"ONNX node {label!r} ({op}): {what} has {bad} NaN/Inf entries of {arr.size}; all weights must be finite"
        )
    return arr


def _layer_name(node: onnx.NodeProto, index: int, weight_name: str) -> str:
    if node.name:
        return node.name
    if weight_name.endswith(".weight") and not weight_name.startswith("onnx::"):
        return weight_name[: -len(".weight")]
    return f"{node.op_type.lower()}_{index}"


def _graph_input(graph: onnx.GraphProto, consts: dict) -> tuple[str, tuple[int, ...], bool]:
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise ShapeMismatchError(
            f"ONNX graph {graph.name!r} must have exactly one data input (inputs that are not initializers), "
            f"got {[i.name for i in inputs]}"
        )
    inp = inputs[0]
    ttype = inp.type.tensor_type
    if ttype.elem_type not in _FLOAT_TYPES:
        raise ShapeMismatchError(
            f"ONNX input {inp.name!r} has element type {pb2().TensorProto.DataType.Name(ttype.elem_type)}; "
            "a floating-point input is required"
        )
    dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
    has_batch = len(dims) >= 2
    shape = dims[1:] if has_batch else dims
    if not shape or any(d is None or d <= 0 for d in shape):
        raise ShapeMismatchError(
            f"ONNX input {inp.name!r} has shape {dims}; every dimension except the leading batch one must be fixed"
        )
    if has_batch and dims[0] not in (None, 0, 1):
        raise ShapeMismatchError(f"ONNX input {inp.name!r} has batch dimension {dims[0]}; expected 1 or symbolic")
    return inp.name, tuple(int(d) for d in shape), has_batch


def network_from_onnx(model: str | os.PathLike | onnx.ModelProto, name: str | None = None) -> Network:
    """Read an ONNX model (path or ``ModelProto``) into a :class:`Network` (see module docstring).

    ``input_shape`` is the graph input's shape without its leading batch axis
    (inputs of rank 1 have no batch axis).
    """
    proto, default_name = _load_model(model)
    graph = proto.graph
    consts: dict[str, np.ndarray] = {t.name: to_array(t) for t in graph.initializer}
    dyn, input_shape, has_batch = _graph_input(graph, consts)
    builder = ChainBuilder(input_shape)

    def full() -> tuple[int, ...]:
        return ((1,) if has_batch else ()) + tuple(builder.shape)

    def set_full(shape: tuple[int, ...], label: str, what: str) -> None:
        if has_batch:
            if not shape or shape[0] != 1:
                raise UnsupportedLayerError(label, f"{what} that merges the batch axis (result {shape})",
                                            SUPPORTED_ONNX_OPS)
            shape = shape[1:]
        builder.reshape(tuple(shape), label)

    for index, node in enumerate(graph.node):
        op = node.op_type
        label = node.name or f"{op}#{index}->{node.output[0] if node.output else ''}"
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedLayerError(label, f"{node.domain}.{op}", SUPPORTED_ONNX_OPS)
        if op not in SUPPORTED_ONNX_OPS:
            raise UnsupportedLayerError(label, op, SUPPORTED_ONNX_OPS)
        attrs = _attrs(node)
        out = node.output[0]
        if op == "Constant":
            consts[out] = _constant_value(node, label)
            continue
        data_inputs = [(pos, i) for pos, i in enumerate(node.input) if i and i not in consts]
        if not data_inputs:  # constant subgraph: evaluate it
            consts[out] = _fold_constant(node, op, attrs, consts, label)
            continue
        for _, i in data_inputs:
            if i != dyn:
                raise UnsupportedLayerError(
                    label, f"{op} reading {i!r} (only a single chain of layers is supported; current tensor is {dyn!r})",
                    SUPPORTED_ONNX_OPS,
                )
        if len(data_inputs) > 1:
            raise UnsupportedLayerError(label, f"{op} with the data tensor as more than one operand", SUPPORTED_ONNX_OPS)
        pos = data_inputs[0][0]
        const_in = [np.asarray(consts[i]) if i in consts else None for i in node.input]

        if op in ("Identity", "Dropout"):
            pass
        elif op == "Relu":
            builder.relu(label)
        elif op in ("Sigmoid", "Tanh"):
            builder.activation(op.lower(), label)
        elif op == "Flatten":
            f = full()
            axis = int(attrs.get("axis", 1))
            axis = axis + len(f) if axis < 0 else axis
            new = (int(np.prod(f[:axis])), int(np.prod(f[axis:])))
            if has_batch and (axis == 0 or int(np.prod(f[1:axis])) != 1):
                raise UnsupportedLayerError(label, f"Flatten(axis={attrs.get('axis', 1)}) that merges the batch axis",
                                            SUPPORTED_ONNX_OPS)
            set_full(new, label, "Flatten")
        elif op == "Reshape":
            if pos != 0:
                raise UnsupportedLayerError(label, "Reshape with a data-dependent target shape", SUPPORTED_ONNX_OPS)
            set_full(_reshape_target(full(), const_in[1], int(attrs.get("allowzero", 0)), label), label, "Reshape")
        elif op in ("Add", "Sub", "Mul", "Div"):
            _elementwise(builder, op, pos, const_in[1 - pos], full(), has_batch, label)
        elif op == "Gemm":
            _gemm(builder, node, index, attrs, pos, const_in, full(), label)
        elif op == "MatMul":
            _matmul(builder, node, index, pos, const_in, full(), has_batch, label)
        elif op == "Conv":
            _conv(builder, node, index, attrs, pos, const_in, full(), has_batch, label)
        elif op == "BatchNormalization":
            _batchnorm(builder, attrs, pos, const_in, full(), has_batch, node, label)
        dyn = out

    outputs = [o.name for o in graph.output]
    if outputs != [dyn]:
        raise UnsupportedLayerError(
            "graph output", f"outputs {outputs} (expected the end of the single chain, {dyn!r})", SUPPORTED_ONNX_OPS
        )
    return builder.build(name=name or default_name, metadata={"source": "onnx", "opset": _opset(proto)})


def _opset(proto: onnx.ModelProto) -> int | None:
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return None


def _fold_constant(node, op, attrs, consts, label) -> np.ndarray:
    args = [np.asarray(consts[i]) for i in node.input if i]
    if op in _CONST_FOLD:
        return _CONST_FOLD[op](args[0], args[1])
    if op in ("Identity", "Dropout"):
        return args[0]
    if op == "Reshape":
        return args[0].reshape(_reshape_target(args[0].shape, args[1], int(attrs.get("allowzero", 0)), label))
    if op == "Flatten":
        axis = int(attrs.get("axis", 1)) % max(args[0].ndim, 1)
        return args[0].reshape(int(np.prod(args[0].shape[:axis])), -1)
    raise UnsupportedLayerError(label, f"{op} on constant inputs only", SUPPORTED_ONNX_OPS)


def _reshape_target(shape: tuple[int, ...], target: np.ndarray, allowzero: int, label: str) -> tuple[int, ...]:
    target = [int(v) for v in np.asarray(target).reshape(-1)]
    dims = []
    for i, t in enumerate(target):
        if t == 0 and not allowzero:
            if i >= len(shape):
                raise ShapeMismatchError(f"Reshape {label!r}: target {target} copies axis {i} of shape {shape}")
            dims.append(shape[i])
        else:
            dims.append(t)
    total = int(np.prod(shape))
    if dims.count(-1) > 1:
        raise ShapeMismatchError(f"Reshape {label!r}: target {target} has more than one -1")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        if known == 0 or total % known:
            raise ShapeMismatchError(f"Reshape {label!r}: cannot reshape {shape} to {target}")
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims)) != total:
        raise ShapeMismatchError(f"Reshape {label!r}: cannot reshape {shape} ({total} values) to {target}")
    return tuple(dims)


def _broadcast_const(c: np.ndarray, full: tuple[int, ...], has_batch: bool, label: str, op: str) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    try:
        shape = np.broadcast_shapes(full, c.shape)
    except ValueError:
        shape = None
    if shape != tuple(full):
        raise ShapeMismatchError(
            f"ONNX node {label!r} ({op}): constant of shape {c.shape} does not broadcast onto the data shape {full}"
        )
    b = np.broadcast_to(c, full)
    return b[0] if has_batch else b


def _elementwise(builder, op, pos, c, full, has_batch, label) -> None:
    c = _finite(_broadcast_const(c, full, has_batch, label, op), label, op, "constant operand")
    if op == "Add":
        builder.elementwise(1.0, c, label)
    elif op == "Sub":
        builder.elementwise(1.0, -c, label) if pos == 0 else builder.elementwise(-1.0, c, label)
    elif op == "Mul":
        builder.elementwise(c, 0.0, label)
    else:  # Div
        if pos != 0:
            raise UnsupportedLayerError(label, "Div(constant / data) (not affine)", SUPPORTED_ONNX_OPS)
        if np.any(c == 0):
            raise InvalidWeightsError(f"ONNX node {label!r} (Div): divisor has zero entries")
        builder.elementwise(1.0 / c, 0.0, label)


def _vector_features(full: tuple[int, ...], label: str, op: str) -> int:
    if int(np.prod(full[:-1])) != 1:
        raise UnsupportedLayerError(
            label, f"{op} on data of shape {full} (the data must be one row vector per sample)", SUPPORTED_ONNX_OPS
        )
    return int(full[-1])


def _gemm(builder, node, index, attrs, pos, const_in, full, label) -> None:
    if pos != 0:
        raise UnsupportedLayerError(label, "Gemm with the data as operand B", SUPPORTED_ONNX_OPS)
    if int(attrs.get("transA", 0)):
        raise UnsupportedLayerError(label, "Gemm(transA=1) on the data operand", SUPPORTED_ONNX_OPS)
    if len(full) != 2:
        raise ShapeMismatchError(f"Gemm {label!r} needs 2-D data, got shape {full}")
    k = _vector_features(full, label, "Gemm")
    B = _finite(const_in[1], label, "Gemm", f"B ({node.input[1]!r})")
    Bp = B.T if int(attrs.get("transB", 0)) else B
    if Bp.ndim != 2 or Bp.shape[0] != k:
        raise ShapeMismatchError(f"Gemm {label!r}: B' has shape {Bp.shape}, data has {k} features")
    m = Bp.shape[1]
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    weight = alpha * Bp.T
    bias = np.zeros(m)
    if len(node.input) > 2 and node.input[2]:
        C = _finite(const_in[2], label, "Gemm", f"C ({node.input[2]!r})")
        try:
            bias = beta * np.broadcast_to(C, (1, m))[0]
        except ValueError as exc:
            raise ShapeMismatchError(f"Gemm {label!r}: C of shape {C.shape} does not broadcast to (1, {m})") from exc
    builder.affine(weight, bias, _layer_name(node, index, node.input[1]), out_shape=(m,))


def _matmul(builder, node, index, pos, const_in, full, has_batch, label) -> None:
    if pos == 0:  # data @ B
        k = _vector_features(full, label, "MatMul")
        B = _finite(const_in[1], label, "MatMul", f"B ({node.input[1]!r})")
        if B.ndim != 2 or B.shape[0] != k:
            raise ShapeMismatchError(f"MatMul {label!r}: B has shape {B.shape}, data has {k} features")
        new_full = full[:-1] + (B.shape[1],)
        weight, wname = B.T, node.input[1]
    else:  # A @ data column
        A = _finite(const_in[0], label, "MatMul", f"A ({node.input[0]!r})")
        if A.ndim != 2:
            raise UnsupportedLayerError(label, f"MatMul with a {A.ndim}-D constant", SUPPORTED_ONNX_OPS)
        if len(full) >= 2 and full[-1] == 1 and int(np.prod(full[:-2])) == 1 and full[-2] == A.shape[1]:
            new_full = full[:-2] + (A.shape[0], 1)
        elif len(full) == 1 and full[0] == A.shape[1]:
            new_full = (A.shape[0],)
        else:
            raise UnsupportedLayerError(label, f"MatMul(constant {A.shape} @ data {full})", SUPPORTED_ONNX_OPS)
        weight, wname = A, node.input[0]
    out_shape = new_full[1:] if has_batch else new_full
    builder.affine(weight, np.zeros(weight.shape[0]), _layer_name(node, index, wname), out_shape=out_shape)


def _conv(builder, node, index, attrs, pos, const_in, full, has_batch, label) -> None:
    if pos != 0:
        raise UnsupportedLayerError(label, "Conv with the data as the kernel", SUPPORTED_ONNX_OPS)
    K = _finite(const_in[1], label, "Conv", f"kernel ({node.input[1]!r})")
    if K.ndim != 4 or not has_batch or len(full) != 4:
        raise UnsupportedLayerError(label, f"Conv with kernel {K.shape} on data {full} (only 2-D NCHW)",
                                    SUPPORTED_ONNX_OPS)
    if int(attrs.get("group", 1)) != 1:
        raise UnsupportedLayerError(label, f"Conv(group={attrs['group']})", SUPPORTED_ONNX_OPS)
    if any(int(d) != 1 for d in attrs.get("dilations", [1, 1])):
        raise UnsupportedLayerError(label, f"Conv(dilations={list(attrs['dilations'])})", SUPPORTED_ONNX_OPS)
    ks = tuple(int(v) for v in attrs.get("kernel_shape", K.shape[2:]))
    if ks != tuple(K.shape[2:]):
        raise ShapeMismatchError(f"Conv {label!r}: kernel_shape {ks} but the kernel has shape {K.shape}")
    strides = tuple(int(v) for v in attrs.get("strides", [1, 1]))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    _, _, h, w = full
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max((-(-size // s) - 1) * s + k - size, 0) for size, s, k in zip((h, w), strides, ks)]
        pads = [totals[0] // 2, totals[1] // 2, totals[0] - totals[0] // 2, totals[1] - totals[1] // 2]
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    else:
        pads = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise UnsupportedLayerError(label, f"Conv(pads={pads}) (asymmetric padding)", SUPPORTED_ONNX_OPS)
    padding = (pads[0], pads[1])
    bias = np.zeros(K.shape[0])
    if len(node.input) > 2 and node.input[2]:
        bias = _finite(const_in[2], label, "Conv", f"bias ({node.input[2]!r})").reshape(-1)
    in_shape = tuple(int(v) for v in full[1:])
    matrix, out_shape = conv_to_sparse(K, in_shape, strides, padding)
    spec = ConvSpec(kernel=K, bias=bias, in_shape=in_shape, out_shape=out_shape, stride=strides, padding=padding)
    builder.affine(matrix, np.repeat(bias, out_shape[1] * out_shape[2]), _layer_name(node, index, node.input[1]),
                   out_shape=out_shape, conv=spec)


def _batchnorm(builder, attrs, pos, const_in, full, has_batch, node, label) -> None:
    if pos != 0 or int(attrs.get("training_mode", 0)):
        raise UnsupportedLayerError(label, "BatchNormalization in training mode", SUPPORTED_ONNX_OPS)
    if any(o for o in node.output[1:]):
        raise UnsupportedLayerError(label, "BatchNormalization with running-statistics outputs", SUPPORTED_ONNX_OPS)
    gamma, beta, mean, var = (
        _finite(const_in[i], label, "BatchNormalization", what).reshape(-1)
        for i, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))
    )
    eps = float(attrs.get("epsilon", 1e-5))
    if not has_batch or len(full) < 2 or full[1] != gamma.shape[0]:
        raise ShapeMismatchError(f"BatchNormalization {label!r} has {gamma.shape[0]} channels, data has shape {full}")
    if np.any(var + eps <= 0):
        raise InvalidWeightsError(f"ONNX node {label!r} (BatchNormalization): var + epsilon must be positive")
    s = gamma / np.sqrt(var + eps)
    t = beta - s * mean
    bshape = (-1,) + (1,) * (len(full) - 2)
    builder.elementwise(s.reshape(bshape), t.reshape(bshape), label)


def network_to_onnx(net: Network, path: str | os.PathLike | None = None, opset: int = OPSET) -> onnx.ModelProto:
    """An ONNX model (float32, opset ``opset`` >= 13) computing ``net``; saved to ``path`` when given.

    Input ``"input"`` of shape (N, *net.input_shape); a layer with a
    :class:`ConvSpec` becomes ``Conv`` (after a ``Reshape`` to its (C, H, W)
    when needed), any other layer ``Gemm`` with ``transB = 1`` (after a
    ``Flatten`` when the tensor is not flat), each followed by ``Relu`` (``Sigmoid``,
    ``Tanh``) when its activation is relu (sigmoid, tanh). Output ``"output"``. The model passes ``onnx.checker``.
    """
    from optprune.io._onnx_proto import import_onnx

    onnx = import_onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    if opset < 13:
        raise ShapeMismatchError(f"network_to_onnx writes opset >= 13, got opset={opset}")
    nodes, inits = [], []
    counts = Counter(layer.name for layer in net.layers)
    cur, shape = "input", tuple(net.input_shape)

    def fresh(base: str) -> str:
        return f"{base}_{len(nodes)}"

    for i, layer in enumerate(net.layers):
        lname = layer.name if layer.name and counts[layer.name] == 1 else f"layer{i}"
        is_last = i == len(net.layers) - 1
        conv = layer.conv
        if conv is not None and not conv_spec_matches(layer):
            warnings.warn(f"layer {layer.name!r}: ConvSpec does not match the weight matrix; writing it as a Gemm",
                          stacklevel=2)
            conv = None
        if conv is not None:
            if shape != tuple(conv.in_shape):
                shape_name = f"{lname}.shape"
                inits.append(numpy_helper.from_array(np.array([-1, *conv.in_shape], dtype=np.int64), shape_name))
                nodes.append(helper.make_node("Reshape", [cur, shape_name], [fresh("reshaped")], name=f"{lname}/reshape"))
                cur = nodes[-1].output[0]
            inits.append(numpy_helper.from_array(np.asarray(conv.kernel, dtype=np.float32), f"{lname}.weight"))
            inits.append(numpy_helper.from_array(np.asarray(conv.bias, dtype=np.float32), f"{lname}.bias"))
            out = "output" if is_last and layer.activation == "identity" else fresh("conv")
            nodes.append(helper.make_node(
                "Conv", [cur, f"{lname}.weight", f"{lname}.bias"], [out], name=lname,
                kernel_shape=list(conv.kernel.shape[2:]), strides=list(conv.stride),
                pads=[conv.padding[0], conv.padding[1], conv.padding[0], conv.padding[1]],
            ))
            shape = tuple(conv.out_shape)
        else:
            if len(shape) != 1:
                nodes.append(helper.make_node("Flatten", [cur], [fresh("flat")], axis=1, name=f"{lname}/flatten"))
                cur = nodes[-1].output[0]
            inits.append(numpy_helper.from_array(layer.dense_weight().astype(np.float32), f"{lname}.weight"))
            inits.append(numpy_helper.from_array(layer.bias.astype(np.float32), f"{lname}.bias"))
            out = "output" if is_last and layer.activation == "identity" else fresh("gemm")
            nodes.append(helper.make_node("Gemm", [cur, f"{lname}.weight", f"{lname}.bias"], [out], name=lname,
                                          transB=1))
            shape = (layer.out_features,)
        cur = nodes[-1].output[0]
        if layer.activation != "identity":
            op_type = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[layer.activation]
            nodes.append(helper.make_node(op_type, [cur], ["output" if is_last else fresh(layer.activation)],
                                          name=f"{lname}/{layer.activation}"))
            cur = nodes[-1].output[0]

    graph = helper.make_graph(
        nodes, net.name or "optprune",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", *net.input_shape])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["N", *shape])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8,
                              producer_name="optprune")
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, str(path))
    return proto
