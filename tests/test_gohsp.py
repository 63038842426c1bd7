"""GOHSP: stationary distribution, projection onto S, one ADMM iteration by hand, the estimator and its errors."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import torch

from optprune.errors import (
    InfeasibleBudgetError,
    InvalidParameterError,
    NotFittedError,
    ShapeMismatchError,
    UnsupportedLayerError,
)
from optprune.formulations.admm import StructuredSet, admm, admm_step, project, project_rows, rho_schedule
from optprune.gohsp import (
    GOHSP,
    GraphHeadScorer,
    comparable_scores,
    group_rows,
    head_graph,
    head_importance,
    set_group_rows,
    stationary_distribution,
    unit_parameters,
)
from optprune.pruning import Pruner, dependency_groups
from optprune.scoring import score_model
from optprune.vit import ViTConfig, make_vit

TINY = ViTConfig(8, 2, 1, 16, 4, (4, 4), (12, 12))


# ------------------------------------------------------------------ stationary distribution
@pytest.mark.parametrize("damping", [0.85, 0.5])
def test_stationary_distribution_equals_networkx_pagerank(damping):
    rng = np.random.default_rng(0)
    W = rng.random((6, 6)) * (rng.random((6, 6)) < 0.6)
    np.fill_diagonal(W, 0)
    W[4] = 0.0  # a dangling node
    G = nx.DiGraph()
    G.add_nodes_from(range(6))
    G.add_weighted_edges_from((i, j, W[i, j]) for i in range(6) for j in range(6) if W[i, j] > 0)
    want = nx.pagerank(G, alpha=damping, weight="weight", tol=1e-13, max_iter=10_000)
    np.testing.assert_allclose(stationary_distribution(W, damping), [want[i] for i in range(6)], atol=1e-9)


def test_stationary_distribution_of_a_three_node_chain_by_hand():
    # path 0 -(1)- 1 -(3)- 2: a reversible walk, pi_i = weighted degree / total = (1, 4, 3) / 8;
    # the chain is periodic, so plain power iteration would oscillate.
    W = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 3.0], [0.0, 3.0, 0.0]])
    np.testing.assert_allclose(stationary_distribution(W, damping=1.0), [1 / 8, 4 / 8, 3 / 8], atol=1e-10)
    # damping 0.5 by hand: pi = 0.5 pi P + 1/6, solved as a 3x3 linear system
    P = W / W.sum(1, keepdims=True)
    want = np.linalg.solve(np.eye(3) - 0.5 * P.T, np.full(3, 1 / 6))
    np.testing.assert_allclose(stationary_distribution(W, damping=0.5), want, atol=1e-10)


def test_stationary_distribution_rejects_bad_graphs():
    with pytest.raises(InvalidParameterError, match=">= 0"):
        stationary_distribution(np.array([[0.0, -1.0], [1.0, 0.0]]))
    with pytest.raises(ShapeMismatchError, match="square"):
        stationary_distribution(np.ones((2, 3)))
    with pytest.raises(InvalidParameterError, match="damping"):
        stationary_distribution(np.ones((2, 2)), damping=1.5)


def test_head_graph_similarities():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.1], [4.0, 3.0, 2.0, 1.0]])
    S = head_graph({"blk": a}, "correlation")
    assert S[0, 0] == 0 and S[0, 1] > 0.99 and abs(S[0, 2] - 1.0) < 1e-12  # |corr| = 1 for anti-correlated
    C = head_graph({"blk": a}, "attention")
    d = a.double()
    np.testing.assert_allclose(C[0, 2], (d[0] @ d[2] / d[0].norm() / d[2].norm()).item(), rtol=1e-12)
    with pytest.raises(InvalidParameterError, match="similarity"):
        head_graph({"blk": a}, "mutual_information")


# ------------------------------------------------------------------ projection onto S
def _brute_force(V, keep, c):
    best = None
    for k in range(keep + 1):
        for rows in itertools.combinations(range(V.shape[0]), k):
            Z = np.zeros_like(V)
            Z[list(rows)] = V[list(rows)]
            cost = float((c * ((Z - V) ** 2).sum(1)).sum())
            if best is None or cost < best - 1e-12:
                best = cost
    return best


@pytest.mark.parametrize("seed", range(6))
def test_projection_is_exact_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(6, 3))
    c = rng.random(6) + 0.1 if seed % 2 else np.ones(6)
    for keep in range(7):
        Z, kept = project_rows(V, keep, c)
        assert len(kept) == keep and np.count_nonzero(np.abs(Z).sum(1)) <= keep
        assert float((c * ((Z - V) ** 2).sum(1)).sum()) == pytest.approx(_brute_force(V, keep, c), abs=1e-12)


def test_projection_weights_change_the_choice_and_groups_differ():
    V = {"a": np.array([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), "b": np.eye(3)}
    Z, kept = project(V, StructuredSet({"a": 1, "b": 2}, {"a": [0.1, 10.0, 1.0]}))
    assert kept["a"].tolist() == [1] and kept["b"].tolist() == [0, 1]  # 0.9 < 2 < 10; ties to the lower index
    np.testing.assert_array_equal(Z["a"], [[0, 0], [0, 1], [0, 0]])
    with pytest.raises(InvalidParameterError, match="keep"):
        project_rows(V["a"], 4)


# ------------------------------------------------------------------ one ADMM iteration by hand
def test_one_admm_iteration_matches_hand_computation():
    # f(W) = 1/2 ||W - A||^2: the exact W-step is W = (A + rho (Z - U)) / (1 + rho).
    A = np.array([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

    def w_step(target, rho):
        return {"g": (A + rho * target["g"]) / (1.0 + rho)}

    S = StructuredSet({"g": 1})
    res = admm(w_step, {"g": A}, S, rho=1.0, growth=1.0, iterations=1)
    # Z0 = [[3,0],[0,0],[0,0]], U0 = 0 -> W = (A + Z0)/2 = [[3,0],[0,.5],[.5,.5]]
    np.testing.assert_allclose(res.W["g"], [[3, 0], [0, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(res.Z["g"], [[3, 0], [0, 0], [0, 0]])
    np.testing.assert_allclose(res.U["g"], [[0, 0], [0, 0.5], [0.5, 0.5]])
    rec = res.history[0]
    assert rec.primal_residual == pytest.approx(np.sqrt(0.75)) and rec.dual_residual == pytest.approx(0.0)
    assert rec.kept == {"g": [0]}
    # a second step from that state, by hand: target = Z - U = [[3,0],[0,-.5],[-.5,-.5]], rho = 2
    W, Z, U, rec2 = admm_step(w_step, res.Z, res.U, 2.0, S, 1)
    np.testing.assert_allclose(W["g"], [[3, 0], [0, 0], [0, 0]])
    np.testing.assert_allclose(U["g"], [[0, 0], [0, 0.5], [0.5, 0.5]])
    assert rec2.primal_residual == pytest.approx(0.0) and rec2.dual_residual == pytest.approx(0.0)


def test_rho_schedule_and_its_errors():
    np.testing.assert_allclose(rho_schedule(0.1, 3.0, 4, rho_max=1.0), [0.1, 0.3, 0.9, 1.0])
    with pytest.raises(InvalidParameterError, match="growth"):
        rho_schedule(0.1, 0.5, 3)


# ------------------------------------------------------------------ torch side
@pytest.fixture(scope="module")
def tiny_data():
    from optprune.data import load_dataset

    X, y = load_dataset("digits", "train")
    return X[:240], y[:240]


def test_group_rows_roundtrip_and_layout():
    model = make_vit(TINY, seed=0)
    groups, _ = dependency_groups(model, model.input_shape)
    heads = next(g for g in groups if g.name == "blocks.0.attn.heads")
    R = group_rows(model, heads).detach()
    # per head: 3 x (4 rows x 16 inputs + 4 biases) + 16 x 4 columns of out_proj
    assert R.shape == (4, 3 * (4 * 16 + 4) + 16 * 4)
    np.testing.assert_allclose(R[2, : 4 * 16].numpy(), model.blocks[0].attn.q_proj.weight[8:12].reshape(-1).detach())
    new = torch.randn_like(R)
    set_group_rows(model, heads, new)
    torch.testing.assert_close(group_rows(model, heads).detach(), new)
    torch.testing.assert_close(model.blocks[0].attn.out_proj.weight[:, 4:8].detach(),
                               new[1, -64:].reshape(4, 16).T)  # unit j's columns, input-major


def test_graph_scorer_is_registered_and_sums_to_the_head_count(tiny_data):
    model = make_vit(TINY, seed=0)
    scores = score_model(model, "gohsp", tiny_data)
    heads = scores["blocks.0.attn.heads"].sum() + scores["blocks.1.attn.heads"].sum()
    assert heads == pytest.approx(8.0)
    pi = head_importance(model, tiny_data[0][:64], "attention", damping=1.0)
    assert sum(v.sum() for v in pi.values()) == pytest.approx(1.0)
    pruner = Pruner(scorer=GraphHeadScorer(), ratio=0.3, decision="search").fit(model, tiny_data)
    assert pruner.n_params_after_ <= 0.7 * pruner.n_params_before_


def test_gohsp_estimator_meets_the_budget_and_records_admm(tiny_data):
    from optprune.vit import train_vit  # noqa: F401  (the estimator takes any ViT; an untrained one is enough)

    model = make_vit(TINY, seed=0)
    est = GOHSP(0.6, admm_iterations=2, finetune_epochs=1, batch_size=64)
    with pytest.raises(NotFittedError):
        est.transform()
    est.fit(model, tiny_data)
    assert est.n_params_after_ <= 0.6 * est.n_params_before_
    assert len(est.admm_history_) == 2 and est.admm_history_[1]["rho"] == pytest.approx(0.3)
    assert sum(p.numel() for p in est.model_.parameters()) == est.n_params_after_
    assert est.heads_kept_ == [len(est.decision_.kept[f"blocks.{i}.attn.heads"]) for i in range(2)]
    assert 0.0 <= est.score(*tiny_data) <= 1.0


def test_gohsp_budgets_from_reconstruction_curves(tiny_data):
    from optprune.pruning._reconstruct import error_curves
    from optprune.search import error_values

    model = make_vit(TINY, seed=0)
    rec = GOHSP(0.6, admm_iterations=0, finetune_epochs=0, budgets="reconstruction", calibration_size=64)
    rec.fit(model, tiny_data)
    paper = GOHSP(0.6, admm_iterations=0, finetune_epochs=0, calibration_size=64).fit(model, tiny_data)
    assert rec.n_params_after_ <= 0.6 * rec.n_params_before_ and paper.error_curves_ == {}
    gen = torch.Generator().manual_seed(0)  # the estimator's calibration sample
    X = torch.as_tensor(tiny_data[0])
    calib = X[torch.randperm(len(X), generator=gen)[:64]]
    curves = error_curves(model, (calib, None), model.input_shape)
    assert set(curves) == set(rec.error_curves_)
    for name, curve in curves.items():
        assert np.allclose(curve, rec.error_curves_[name], rtol=1e-9, atol=1e-12)
    values = error_values(curves)
    mine = sum(values[n][len(k)] for n, k in rec.budget_kept_.items())
    theirs = sum(values[n][len(k)] for n, k in paper.budget_kept_.items())
    assert mine >= theirs - 1e-9  # the allocation is the exact optimum of the curves under the same budget
    for name, kept in rec.budget_kept_.items():  # the kept units of each width: the graph/magnitude ranking's top
        order = np.argsort(-rec.scores_[name], kind="stable")
        assert kept == sorted(order[: len(kept)].tolist())
    with pytest.raises(InvalidParameterError, match="budgets"):
        GOHSP(0.6, budgets="magic").fit(model, tiny_data)


def test_gohsp_named_errors(tiny_data):
    model = make_vit(TINY, seed=0)
    with pytest.raises(UnsupportedLayerError, match="Sequential"):
        GOHSP().fit(torch.nn.Sequential(torch.nn.Linear(64, 10)), tiny_data)
    with pytest.raises(InfeasibleBudgetError):
        GOHSP(0.05, admm_iterations=0, finetune_epochs=0).fit(model, tiny_data)
    with pytest.raises(ShapeMismatchError, match=r"\(1, 8, 8\)"):
        GOHSP().fit(model, (np.zeros((4, 1, 28, 28), np.float32), np.zeros(4, np.int64)))
    with pytest.raises(InvalidParameterError, match="budget"):
        GOHSP(1.5).fit(model, tiny_data)


def test_unit_parameters_and_comparable_scores():
    model = make_vit(TINY, seed=0)
    groups, _ = dependency_groups(model, model.input_shape)
    by = {g.name: g for g in groups}
    assert unit_parameters(model, by["blocks.0.attn.heads"]) == 3 * (4 * 16 + 4) + 16 * 4
    assert unit_parameters(model, by["blocks.1.fc1"]) == 16 + 1 + 16
    scores = {"blocks.0.attn.heads": np.array([1.0, 2.0, 3.0, 2.0]), "blocks.1.attn.heads": np.full(4, 4.0),
              "blocks.0.fc1": np.full(12, 2.0), "blocks.1.fc1": np.full(12, 6.0)}
    out = comparable_scores(model, scores, groups)
    # heads: divided by the mean over both blocks (24 / 8 = 3), times 268; neurons: by 4, times 33
    np.testing.assert_allclose(out["blocks.1.attn.heads"], np.full(4, 4.0 / 3.0 * 268))
    np.testing.assert_allclose(out["blocks.0.fc1"], np.full(12, 0.5 * 33))
