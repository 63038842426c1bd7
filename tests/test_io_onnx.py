"""ONNX <-> Network: hand-built graphs checked against onnxruntime, round trips, errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from optprune.errors import InvalidWeightsError, UnsupportedLayerError
from optprune.io import (
    SUPPORTED_ONNX_OPS,
    load_network,
    load_torch_model,
    network_from_onnx,
    network_from_torch,
    network_to_onnx,
    network_to_torch,
)

ort = pytest.importorskip("onnxruntime", reason="onnxruntime (dev extra) is needed to run ONNX graphs")


def _run_ort(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: x.astype(np.float32)})[0])


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32 if np.asarray(arr).dtype.kind == "f" else None),
                                   name)


def _model(nodes, inits, in_shape, out_shape, opset=13) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(proto)
    return proto


def _normalised_mlp(rng) -> onnx.ModelProto:
    """(x - mean) / std, Flatten, MatMul + Add, Relu, Gemm(alpha, beta, transB=0), BatchNorm, Relu, Gemm."""
    mean = rng.uniform(0.1, 0.4, size=(1, 1, 1))
    nodes = [
        helper.make_node("Constant", [], ["std"], value=numpy_helper.from_array(np.array([0.3], np.float32))),
        helper.make_node("Sub", ["x", "mean"], ["s"], name="sub"),
        helper.make_node("Div", ["s", "std"], ["d"], name="div"),
        helper.make_node("Flatten", ["d"], ["f"], axis=1, name="flatten"),
        helper.make_node("MatMul", ["f", "W1"], ["m"], name="fc1"),
        helper.make_node("Add", ["b1", "m"], ["a"], name="fc1_bias"),
        helper.make_node("Relu", ["a"], ["r"], name="relu1"),
        helper.make_node("Identity", ["r"], ["r2"]),
        helper.make_node("Gemm", ["r2", "W2", "b2"], ["g"], name="fc2", alpha=0.7, beta=1.3, transB=0),
        helper.make_node("BatchNormalization", ["g", "gamma", "beta", "mu", "var"], ["bn"], name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r3"], name="relu2"),
        helper.make_node("Dropout", ["r3"], ["dr"], name="drop"),
        helper.make_node("Gemm", ["dr", "W3.weight", "b3"], ["y"], transB=1),
    ]
    inits = [
        _init("mean", mean), _init("W1", rng.normal(size=(12, 6))), _init("b1", rng.normal(size=6)),
        _init("W2", rng.normal(size=(6, 5))), _init("b2", rng.normal(size=(1, 5))),
        _init("gamma", rng.normal(size=5)), _init("beta", rng.normal(size=5)), _init("mu", rng.normal(size=5)),
        _init("var", rng.uniform(0.5, 2, size=5)), _init("W3.weight", rng.normal(size=(3, 5))),
        _init("b3", rng.normal(size=3)),
    ]
    return _model(nodes, inits, ["N", 1, 3, 4], ["N", 3])


def test_normalising_mlp_matches_onnxruntime_on_raw_inputs():
    rng = np.random.default_rng(0)
    proto = _normalised_mlp(rng)
    net = network_from_onnx(proto)
    assert net.input_shape == (1, 3, 4)
    assert [layer.name for layer in net.layers] == ["fc1", "fc2", "W3"]
    assert [layer.activation for layer in net.layers] == ["relu", "relu", "identity"]
    assert net.metadata["folded"]["fc1"] == ["sub", "div", "fc1_bias"]
    assert net.metadata["folded"]["fc2"] == ["bn"]
    x = rng.uniform(size=(20, 1, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(net.forward(x.reshape(20, -1)), _run_ort(proto, x), atol=1e-5, rtol=1e-5)


def test_conv_graph_with_reshape_and_scalar_normalisation():
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["img"], name="to_image"),
        helper.make_node("Mul", ["img", "scale"], ["sc"], name="scale"),
        helper.make_node("Conv", ["sc", "K1", "c1"], ["h1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["h1", "g", "be", "mu", "var"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "K2"], ["h2"], name="conv2", strides=[2, 2], auto_pad="VALID"),
        helper.make_node("Relu", ["h2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("Gemm", ["f", "W", "b"], ["y"], name="fc", transB=1),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, 2, 5, 5], dtype=np.int64), "shape"), _init("scale", np.array(2.0)),
        _init("K1", rng.normal(size=(3, 2, 3, 3))), _init("c1", rng.normal(size=3)),
        _init("g", rng.normal(size=3)), _init("be", rng.normal(size=3)), _init("mu", rng.normal(size=3)),
        _init("var", rng.uniform(0.5, 2, size=3)), _init("K2", rng.normal(size=(4, 3, 3, 3))),
        _init("W", rng.normal(size=(2, 16))), _init("b", rng.normal(size=2)),
    ]
    proto = _model(nodes, inits, ["N", 50], ["N", 2])
    net = network_from_onnx(proto)
    assert net.input_shape == (50,)
    assert [layer.conv is not None for layer in net.layers] == [True, True, False]
    assert net.layers[1].conv.out_shape == (4, 2, 2) and net.layers[1].conv.stride == (2, 2)
    x = rng.uniform(size=(8, 50)).astype(np.float32)
    np.testing.assert_allclose(net.forward(x), _run_ort(proto, x), atol=1e-4, rtol=1e-5)
    # written back, the convolutions stay convolutions
    written = network_to_onnx(net)
    assert [n.op_type for n in written.graph.node].count("Conv") == 2
    np.testing.assert_allclose(_run_ort(written, x), net.forward(x), atol=1e-4, rtol=1e-5)


def test_from_torch_to_onnx_matches_torch_forward(tmp_path):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(6 * 2 * 2, 3))
    for model in (mlp, cnn):
        model.eval()
        path = tmp_path / "net.onnx"
        proto = network_to_onnx(network_from_torch(model, input_shape=(1, 4, 4)), path)
        assert path.is_file() and proto.opset_import[0].version >= 13
        assert all(init.data_type == TensorProto.FLOAT for init in proto.graph.initializer
                   if init.name.endswith((".weight", ".bias")))
        x = np.random.default_rng(2).uniform(size=(7, 1, 4, 4)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.as_tensor(x)).numpy()
        np.testing.assert_allclose(_run_ort(onnx.load(str(path)), x), expected, atol=1e-5)


def test_from_onnx_to_torch_equal(tmp_path):
    proto = _normalised_mlp(np.random.default_rng(3))
    path = tmp_path / "normalised.onnx"
    onnx.save(proto, str(path))
    net = load_network(path)
    assert net.name == "normalised"
    model = load_torch_model(path)
    x = np.random.default_rng(4).uniform(size=(9, 1, 3, 4)).astype(np.float32)
    with torch.no_grad():
        got = model(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got, net.forward(x.reshape(9, -1)), atol=1e-5)
    np.testing.assert_allclose(got, _run_ort(proto, x), atol=1e-4)
    again = network_from_onnx(network_to_onnx(network_from_torch(network_to_torch(net))))
    np.testing.assert_allclose(again.forward(x.reshape(9, -1)), net.forward(x.reshape(9, -1)), atol=1e-5)


def _two_layer(extra_nodes, extra_inits=(), first_input="x"):
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Gemm", [first_input, "W", "b"], ["h"], name="fc", transB=1), *extra_nodes]
    inits = [_init("W", rng.normal(size=(3, 4))), _init("b", rng.normal(size=3)), *extra_inits]
    return _model(nodes, inits, ["N", 4], ["N", 3])


def test_unsupported_op_names_node_and_supported_list():
    proto = _two_layer([helper.make_node("Softmax", ["h"], ["y"], name="squash")])
    with pytest.raises(UnsupportedLayerError) as info:
        network_from_onnx(proto)
    err = info.value
    assert err.name == "squash" and err.kind == "Softmax" and err.supported == SUPPORTED_ONNX_OPS
    assert "'squash'" in str(err) and "Gemm" in str(err) and "BatchNormalization" in str(err)


def test_unnamed_unsupported_op_gets_a_label():
    proto = _two_layer([helper.make_node("Elu", ["h"], ["y"])])
    with pytest.raises(UnsupportedLayerError, match=r"'Elu#1->y' of type 'Elu'"):
        network_from_onnx(proto)


def test_branching_graph_is_rejected():
    proto = _two_layer([helper.make_node("Relu", ["h"], ["r"], name="relu"),
                        helper.make_node("Add", ["r", "h"], ["y"], name="skip")])
    with pytest.raises(UnsupportedLayerError, match="'skip'.*single chain"):
        network_from_onnx(proto)


def test_gemm_transa_rejected():
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], name="fcT", transA=1)]
    proto = _model(nodes, [_init("W", rng.normal(size=(1, 3)))], [1, 1], [1, 3])
    with pytest.raises(UnsupportedLayerError, match="transA=1"):
        network_from_onnx(proto)


def test_nan_initializer_names_node():
    W = np.ones((3, 4))
    W[0, 1] = np.inf
    proto = _model([helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", transB=1)], [_init("W", W)],
                   ["N", 4], ["N", 3])
    with pytest.raises(InvalidWeightsError, match=r"'fc' \(Gemm\).*1 NaN/Inf"):
        network_from_onnx(proto)


@pytest.mark.parametrize("op, data_first", [("Add", False), ("Sub", True), ("Sub", False), ("Mul", False),
                                            ("Div", True)])
def test_elementwise_constant_ops_fold_into_next_layer(op, data_first):
    rng = np.random.default_rng(7)
    inputs = ["x", "c"] if data_first else ["c", "x"]
    nodes = [helper.make_node(op, inputs, ["e"], name="norm"),
             helper.make_node("Gemm", ["e", "W", "b"], ["y"], name="fc", transB=1)]
    inits = [_init("c", rng.uniform(0.5, 1.5, size=(1, 4))), _init("W", rng.normal(size=(3, 4))),
             _init("b", rng.normal(size=3))]
    proto = _model(nodes, inits, ["N", 4], ["N", 3])
    net = network_from_onnx(proto)
    assert len(net.layers) == 1 and net.metadata["folded"] == {"fc": ["norm"]}
    x = rng.uniform(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(net.forward(x), _run_ort(proto, x), atol=1e-5)


def test_div_by_data_is_rejected():
    nodes = [helper.make_node("Div", ["c", "x"], ["e"], name="inv"),
             helper.make_node("Gemm", ["e", "W"], ["y"], name="fc", transB=1)]
    proto = _model(nodes, [_init("c", np.ones(4)), _init("W", np.ones((3, 4)))], ["N", 4], ["N", 3])
    with pytest.raises(UnsupportedLayerError, match="'inv'.*not affine"):
        network_from_onnx(proto)


def test_constant_matmul_on_column_input():
    """W @ x with x of shape (1, K, 1), bias added as a column, then Relu, Flatten and Gemm."""
    rng = np.random.default_rng(8)
    nodes = [helper.make_node("MatMul", ["A", "x"], ["m"], name="fc1"),
             helper.make_node("Add", ["m", "bias"], ["a"], name="fc1_bias"),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "W", "b"], ["y"], name="fc2", transB=1)]
    inits = [_init("A", rng.normal(size=(5, 4))), _init("bias", rng.normal(size=(5, 1))),
             _init("W", rng.normal(size=(2, 5))), _init("b", rng.normal(size=2))]
    proto = _model(nodes, inits, [1, 4, 1], [1, 2])
    net = network_from_onnx(proto)
    assert net.input_shape == (4, 1) and net.widths == [4, 5, 2]
    x = rng.uniform(size=(1, 4, 1)).astype(np.float32)
    np.testing.assert_allclose(net.forward(x.reshape(1, -1)), _run_ort(proto, x), atol=1e-5)
