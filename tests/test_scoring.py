"""Every scorer's formula on a hand-computed tiny case, plus the normalisers.

The tiny network: x (2) -> Linear W1, b1 (3 neurons) -> ReLU -> Linear W2, b2 (2 outputs)

    W1 = [[1, -2], [0.5, 1], [-1, -1]], b1 = [0, 1, 0.5]
    W2 = [[1, 2, -1], [3, 0, 1]],       b2 = [0, 0]
    X  = [[1, 0], [0, 1], [2, 1]]

Pre-activations [[1, 1.5, -0.5], [-2, 2, -0.5], [0, 3, -2.5]], so the hidden
activations are H = [[1, 1.5, 0], [0, 2, 0], [0, 3, 0]]. Gradient-based scorers
use the loss L = mean_n out_{n,0} (linear in the output), so everything below
can be checked with pencil and paper.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.pruning import PruningDecision, apply_decision, dependency_groups
from optprune.scoring import (
    Scorer,
    available_scorers,
    get_scorer,
    input_means,
    mean_loss,
    normalize,
    score_model,
)

X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
Y = torch.tensor([0, 1, 0])


def out0_loss(output: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    return output[:, 0].mean()


def tiny() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 1.0], [-1.0, -1.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 1.0, 0.5]))
        model[2].weight.copy_(torch.tensor([[1.0, 2.0, -1.0], [3.0, 0.0, 1.0]]))
        model[2].bias.zero_()
    return model


def scores(name: str, **kw) -> np.ndarray:
    out = score_model(tiny(), name, (X, Y), **kw)
    assert list(out) == ["0"]  # only the hidden layer is prunable
    return out["0"]


def test_magnitude_l1_l2_and_members() -> None:
    np.testing.assert_allclose(scores("l1"), [3.0, 1.5, 2.0])
    np.testing.assert_allclose(scores("l2"), [math.sqrt(5), math.sqrt(1.25), math.sqrt(2)])
    # rows of W1 plus columns of W2 (|1|+|3|, |2|+|0|, |-1|+|1|)
    np.testing.assert_allclose(scores("magnitude", p=1, members="all"), [7.0, 3.5, 4.0])
    np.testing.assert_allclose(scores("magnitude", p=1, bias=True), [3.0, 2.5, 2.5])


def test_activation_mean_and_apoz() -> None:
    np.testing.assert_allclose(scores("activation_mean"), [1 / 3, 6.5 / 3, 0.0])
    np.testing.assert_allclose(scores("apoz"), [1 / 3, 1.0, 0.0])


def test_random_is_seeded() -> None:
    a, b, c = scores("random", seed=1), scores("random", seed=1), scores("random", seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all((a >= 0) & (a < 1))


def test_wanda_sp() -> None:
    # mean_i |W2_ij| = [2, 1, 1]; ||H_j||_2 = [1, sqrt(15.25), 0]
    np.testing.assert_allclose(scores("wanda_sp"), [2.0, math.sqrt(15.25), 0.0])


def test_flap_metrics() -> None:
    # unbiased column variances of H: [1/3, 7/12, 0]; ||W2[:, j]||^2 = [10, 4, 2]
    np.testing.assert_allclose(scores("ifv"), [1 / 3, 7 / 12, 0.0])
    np.testing.assert_allclose(scores("flap"), [10 / 3, 7 / 3, 0.0])
    np.testing.assert_allclose(scores("flap", metric="wifv"), [10 / 3, 7 / 3, 0.0])
    # mean_i |W2_ij| * sqrt(mean_n H_nj^2)
    np.testing.assert_allclose(scores("wifn"), [2 / math.sqrt(3), math.sqrt(15.25 / 3), 0.0])


def test_taylor_group_sum() -> None:
    # unit 0: W1 row (1/3) + W2 column (1/3); unit 1: 7/3 + b1 (2) + 13/3; unit 2 never active
    np.testing.assert_allclose(scores("taylor", loss_fn=out0_loss), [2 / 3, 26 / 3, 0.0], rtol=1e-6)


def test_fisher_obd() -> None:
    # 1/2 sum theta^2 E[g^2] with per-sample gradients, see the module docstring
    np.testing.assert_allclose(scores("fisher", loss_fn=out0_loss), [1 / 3, 43 / 3, 0.0], rtol=1e-6)


def test_fisher_uses_per_sample_not_mean_gradients() -> None:
    """With cross-entropy the per-sample squares differ from the square of the mean gradient."""
    fisher = scores("fisher")
    taylor_sq = scores("taylor") ** 2
    assert not np.allclose(fisher, 0.5 * taylor_sq)


def test_ablation_is_exact_loss_change() -> None:
    # removing unit j changes mean out_0 by -W2[0, j] * mean_n H_nj
    np.testing.assert_allclose(scores("ablation", loss_fn=out0_loss), [-1 / 3, -13 / 3, 0.0], atol=1e-6)


def test_bonsai_recovers_a_linear_loss() -> None:
    """The loss is linear in the keep-mask here, so unregularised regression is exact."""
    s = scores("bonsai", loss_fn=out0_loss, n_masks=24, alpha=0.0, seed=3)
    np.testing.assert_allclose(s, [-1 / 3, -13 / 3, 0.0], atol=1e-5)
    sparse = scores("bonsai", loss_fn=out0_loss, n_masks=24, alpha=1e-4, penalty="l1", seed=3)
    np.testing.assert_allclose(sparse, [-1 / 3, -13 / 3, 0.0], atol=1e-2)


def test_bonsai_budget_controls_forward_passes() -> None:
    calls = []

    def counting_loss(output, target):
        calls.append(1)
        return out0_loss(output, target)

    score_model(tiny(), "bonsai", (X, Y), loss_fn=counting_loss, n_masks=7)
    assert len(calls) == 7


def test_mip_aware_instability_by_hand() -> None:
    """eps = 0.5 boxes around the three inputs (no clipping); see the interval arithmetic below.

    x1: unit0 [-0.5, 2.5] unstable, unit1 [0.75, 2.25], unit2 [-1.5, 0.5] unstable
    x2: unit0 [-3.5, -0.5],         unit1 [1.25, 2.75], unit2 [-1.5, 0.5] unstable
    x3: unit0 [-1.5, 1.5] unstable, unit1 [2.25, 3.75], unit2 [-3.5, -1.5]
    """
    scorer = get_scorer("mip", eps=0.5, mode="unstable", input_range=None, bound_method="interval")
    out = scorer(tiny(), (X, Y))
    np.testing.assert_allclose(scorer.frequencies_["0"], [2 / 3, 0.0, 2 / 3])
    np.testing.assert_allclose(out["0"], [-2 / 3, 0.0, -2 / 3])


def test_mip_aware_tradeoff_interpolates() -> None:
    model = tiny()
    base = normalize(score_model(model, "l1", (X, Y)))["0"]
    freq = normalize({"0": np.array([2 / 3, 0.0, 2 / 3])})["0"]
    for weight in (0.0, 0.5, 3.0):
        s = score_model(model, "mip", (X, Y), eps=0.5, input_range=None, base="l1", weight=weight,
                        bound_method="interval")["0"]
        np.testing.assert_allclose(s, base - weight * freq)


def test_mip_aware_lower_unstable_count_with_weight(digits_mlp_model) -> None:
    """On a trained net, weighting instability keeps fewer expected unstable ReLUs."""
    from optprune.scoring import expected_unstable

    model, Xc, yc = digits_mlp_model
    counts = []
    for weight in (0.0, 5.0):
        scorer = get_scorer("mip", eps=0.05, weight=weight, base="l1", max_samples=16)
        s = scorer(model, (Xc, yc))
        kept = {g: np.argsort(-v, kind="stable")[: len(v) // 2] for g, v in s.items()}
        counts.append(expected_unstable(scorer.frequencies_, kept))
    assert counts[1] < counts[0]


@pytest.fixture(scope="module")
def digits_mlp_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3))
    model.input_shape = (16,)
    Xc = torch.rand(48, 16)
    yc = (Xc[:, :5].sum(1) > Xc[:, 5:10].sum(1)).long() + (Xc[:, 10:].sum(1) > 3).long()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xc), yc).backward()
        opt.step()
    return model.eval(), Xc, yc


def test_normalisers_by_hand() -> None:
    s = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([5.0, 5.0])}
    z = normalize(s, "zscore")
    np.testing.assert_allclose(z["a"], [-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    np.testing.assert_array_equal(z["b"], [0.0, 0.0])
    np.testing.assert_allclose(normalize(s, "lamp")["a"], [1 / 14, 4 / 13, 1.0])
    np.testing.assert_allclose(normalize({"a": np.array([3.0, 1.0, 2.0])}, "lamp")["a"], [1.0, 1 / 14, 4 / 13])
    np.testing.assert_allclose(normalize(s, "mean")["a"], [0.5, 1.0, 1.5])
    np.testing.assert_array_equal(normalize(s, "none")["a"], s["a"])
    with pytest.raises(InvalidParameterError, match="LAMP needs non-negative"):
        normalize({"a": np.array([-1.0, 1.0])}, "lamp")
    with pytest.raises(InvalidParameterError, match="method must be one of"):
        normalize(s, "softmax")


def test_registry_and_errors() -> None:
    names = set(available_scorers())
    assert {"magnitude", "l1", "taylor", "fisher", "wanda_sp", "flap", "bonsai", "ablation", "mip", "apoz"} <= names
    with pytest.raises(InvalidParameterError, match="unknown scorer 'nope'"):
        get_scorer("nope")
    with pytest.raises(InvalidParameterError, match="needs calibration data"):
        score_model(tiny(), "wanda_sp", None, input_shape=(2,))
    with pytest.raises(InvalidParameterError, match="needs labels"):
        score_model(tiny(), "taylor", X)
    n_masks_message = r"BonsaiScorer: parameter 'n_masks' must be an int in \[2, inf\]; got 1"
    with pytest.raises(InvalidParameterError, match=n_masks_message):  # checked when scoring, not when made
        score_model(tiny(), "bonsai", (X, Y), n_masks=1)
    metric_message = "FLAPScorer: parameter 'metric' must be one of 'wifv', 'ifv', 'wifn'"
    with pytest.raises(InvalidParameterError, match=metric_message):
        score_model(tiny(), "flap", X, metric="var")
    with pytest.raises(ShapeMismatchError, match="3 inputs but 2 labels"):
        score_model(tiny(), "taylor", (X, Y[:2]))
    assert isinstance(get_scorer("l1"), Scorer)


def test_scorers_do_not_change_the_model() -> None:
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name in ("taylor", "fisher", "bonsai", "ablation", "flap", "wanda_sp"):
        score_model(model, name, (X, Y))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())


def cnn() -> nn.Sequential:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(3 * 3 * 3, 5), nn.ReLU(), nn.Linear(5, 3),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_ablation_matches_physically_pruned_loss_on_cnn() -> None:
    """Leave-one-out through masking hooks equals the loss of the really smaller model."""
    model = cnn()
    Xc = torch.rand(10, 1, 8, 8)
    yc = torch.randint(0, 3, (10,))
    groups, _ = dependency_groups(model, (1, 8, 8))
    s = score_model(model, "ablation", (Xc, yc), groups=groups)
    base = mean_loss(model, [(Xc, yc)])
    widths = {g.name: g.width for g in groups if g.prunable}
    for name, width in widths.items():
        for j in (0, width - 1):
            d = PruningDecision({name: [i for i in range(width) if i != j]}, widths, (1, 8, 8))
            small = apply_decision(model, d)
            assert s[name][j] == pytest.approx(mean_loss(small, [(Xc, yc)]) - base, abs=1e-5)


def test_flatten_factor_wanda_on_cnn() -> None:
    """A conv channel feeding a Linear through Flatten owns H*W consecutive columns."""
    model = cnn()
    Xc = torch.rand(6, 1, 8, 8)
    s = score_model(model, "wanda_sp", Xc, input_shape=(1, 8, 8))["3"]
    acts = {}
    model[6].register_forward_pre_hook(lambda m, a: acts.setdefault("x", a[0]))
    with torch.no_grad():
        model(Xc)
    x = acts["x"]  # (6, 27)
    w = model[6].weight.detach().abs().mean(0)  # (27,)
    expected = (w * x.norm(dim=0)).reshape(3, 9).sum(1)
    np.testing.assert_allclose(s, expected.numpy(), rtol=1e-5)


def test_input_means_feed_compensation() -> None:
    means = input_means(tiny(), X)
    np.testing.assert_allclose(means["2"], [1 / 3, 6.5 / 3, 0.0], rtol=1e-6)
