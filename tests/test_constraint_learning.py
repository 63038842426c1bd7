"""Constraint learning through the public modelling layer: a user's own model around embedded networks."""

from __future__ import annotations

import numpy as np
import pytest

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.formulations import ModelBuilder, embed_network
from optprune.network import AffineLayer, Network
from optprune.solvers import Status, solve


def two_input_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return Network((
        AffineLayer(rng.normal(size=(8, 2)), rng.normal(scale=0.5, size=8)),
        AffineLayer(rng.normal(size=(6, 8)), rng.normal(scale=0.5, size=6)),
        AffineLayer(rng.normal(size=(2, 6)), rng.normal(scale=0.5, size=2), "identity"),
    ))


def grid(n: int = 801) -> np.ndarray:
    g = np.linspace(0.0, 1.0, n)
    return np.array(np.meshgrid(g, g)).reshape(2, -1).T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maximise_an_output_under_a_linear_budget_matches_dense_sampling(seed):
    """The README example in two dimensions: max y0 - y1 s.t. x in [0, 1]^2, x0 + 2 x1 <= 1.5."""
    net = two_input_net(seed)
    b = ModelBuilder()
    x = b.add_vars(2, lower=0.0, upper=1.0, name="x")
    y = embed_network(b, net, x, bound_method="linear")
    b.add_rows(np.array([[1.0, 2.0]]), x, upper=1.5)
    b.set_objective(np.array([1.0, -1.0]), y[[0, 1]], sense="max")
    model = b.build()
    result = solve(model, "highs", time_limit=60, mip_gap=0.0, mip_abs_gap=1e-9)
    assert result.status == Status.OPTIMAL
    x_star = model.group("x", result.x)
    assert x_star[0] + 2 * x_star[1] <= 1.5 + 1e-7 and np.all((x_star >= -1e-9) & (x_star <= 1 + 1e-9))
    y_star = net.forward(x_star)
    assert result.objective == pytest.approx(y_star[0] - y_star[1], abs=1e-6)  # the encoding is exact
    X = grid()
    X = X[X[:, 0] + 2 * X[:, 1] <= 1.5]
    Y = net.forward(X)
    sampled = float(np.max(Y[:, 0] - Y[:, 1]))
    assert result.objective >= sampled - 1e-7  # nothing sampled beats the optimum
    # ... and the optimum is not far above the best sample: the grid step times a Lipschitz bound.
    lipschitz = np.prod([np.abs(layer.dense_weight()).sum(axis=1).max() for layer in net.layers]) * 2
    assert result.objective <= sampled + lipschitz * (1.0 / 800) * np.sqrt(2)


def test_two_networks_in_one_model_share_their_inputs():
    dense, other = two_input_net(3), two_input_net(4)
    b = ModelBuilder()
    x = b.add_vars(2, 0.0, 1.0)
    ya = embed_network(b, dense, x, name="dense")
    yb = embed_network(b, other, x, name="other", bound_method="interval")
    b.set_objective([1.0, -1.0], np.concatenate([ya[[0]], yb[[0]]]), sense="max")
    model = b.build()
    result = solve(model, "highs", time_limit=60, mip_gap=0.0, mip_abs_gap=1e-9)
    assert result.status == Status.OPTIMAL
    xs = model.group("dense.input", result.x)
    assert np.array_equal(xs, model.group("other.input", result.x))
    assert result.objective == pytest.approx(dense.forward(xs)[0] - other.forward(xs)[0], abs=1e-6)
    X = grid(401)
    assert result.objective >= float(np.max(dense.forward(X)[:, 0] - other.forward(X)[:, 0])) - 1e-7
    assert set(b.encodings) == {"dense", "other"}


def test_bad_input_is_a_named_error():
    net = two_input_net(0)
    b = ModelBuilder()
    x = b.add_vars(3, 0.0, 1.0)
    with pytest.raises(ShapeMismatchError, match="x has 3 columns.*takes 2 inputs"):
        embed_network(b, net, x)
    other = ModelBuilder()
    z = other.add_vars(2, 0.0, 1.0)
    with pytest.raises(InvalidParameterError, match="another ModelBuilder"):
        embed_network(b, net, z)
    with pytest.raises(InvalidParameterError, match="outside 0..2"):
        b.add_rows(np.ones((1, 2)), np.array([1, 7]), upper=1.0)
    with pytest.raises(InvalidParameterError, match="coefficients must be finite.*nan"):
        b.add_rows(np.array([[1.0, np.nan, 0.0]]), x, upper=1.0)
    with pytest.raises(ShapeMismatchError, match="2 columns but 3 column indices"):
        b.add_rows(np.ones((1, 2)), x, upper=1.0)
    free = b.add_vars(2, lower=0.0)  # upper bound +inf
    with pytest.raises(InvalidParameterError, match="needs finite bounds on every input"):
        embed_network(b, net, free)
    with pytest.raises(InvalidParameterError, match="sense must be one of"):
        b.set_objective([1.0], x[[0]], sense="up")
    b.add_vars(1, name="t")
    with pytest.raises(InvalidParameterError, match="group named 't' already exists"):
        b.add_vars(1, name="t")
    with pytest.raises(InvalidParameterError, match="lower bound 2.0 above upper bound 1.0"):
        b.add_vars(1, lower=2.0, upper=1.0)


def test_a_frozen_model_grows_into_new_models():
    b = ModelBuilder()
    x = b.add_vars(2, 0.0, 1.0, name="x")
    b.set_objective([1.0, 1.0], x, sense="max")
    model = b.build()
    capped = model.with_rows(np.array([[1.0, 1.0]]), upper=1.5)
    assert model.n_rows == 0 and capped.n_rows == 1  # the original is untouched
    assert solve(capped, "highs").objective == pytest.approx(1.5)
    grown, (z,) = capped.with_columns([0.0], [2.0], integer=True, c=-0.25)
    linked = grown.with_rows(np.array([[1.0, 0.0, -1.0]]), upper=0.0)  # x0 <= z
    result = solve(linked, "highs")
    assert result.status == Status.OPTIMAL and result.x[z] == pytest.approx(1.0)
    assert result.objective == pytest.approx(1.5 - 0.25)
    assert model.replace(name="renamed").name == "renamed" and model.name != "renamed"
    with pytest.raises(ShapeMismatchError, match="with_rows: the new rows have 3 columns, the model 2"):
        model.with_rows(np.ones((1, 3)))
