"""Iterative SynFlow (Tanaka et al. 2020, Algorithm 1): its mask, its scores, and the PaI estimators that use it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from optprune.data import load_dataset
from optprune.errors import InvalidParameterError
from optprune.pai import Reconvene, UnstructuredPaI, synflow_scores
from optprune.pai._synflow import iterative_synflow_importance, synflow_masks
from optprune.scoring import WEIGHT_SCORERS
from optprune.training import make_digits_cnn


@pytest.fixture(autouse=True)
def _one_thread():
    """100 tiny forward/backward passes: one thread avoids oversubscription on a busy CI machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))


def _flow(net: nn.Module, masks: dict[str, torch.Tensor], shape) -> float:
    """R = 1' f_|W . mask|(1): the synaptic flow the masked network still conducts (0 = a layer is cut)."""
    net = copy.deepcopy(net).double()
    with torch.no_grad():
        for name, m in net.named_modules():
            if name in masks:
                m.weight.copy_(m.weight.abs() * masks[name])
                m.bias.abs_()
                m.bias.zero_()
    with torch.no_grad():
        return float(net(torch.ones(1, *shape, dtype=torch.float64)).sum())


def _top_mask(scores: dict[str, torch.Tensor], keep: int) -> dict[str, torch.Tensor]:
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    thr = torch.topk(flat, keep).values[-1]
    return {k: (v >= thr).double() for k, v in scores.items()}


def test_iterative_synflow_keeps_every_layer_where_single_shot_collapses_one():
    net = _mlp()
    n = sum(m.weight.numel() for m in net if isinstance(m, nn.Linear))
    keep = round(0.03 * n)
    single = _top_mask(synflow_scores(net, (4,)), keep)
    assert min(int(m.sum()) for m in single.values()) == 0  # single shot removes a whole layer (layer collapse)
    assert _flow(net, single, (4,)) == 0.0
    res = synflow_masks(net, 0.03, input_shape=(4,))
    assert sum(int(m.sum()) for m in res.masks.values()) == keep  # exactly round(density N) weights
    assert min(int(m.sum()) for m in res.masks.values()) > 0
    assert _flow(net, res.masks, (4,)) > 0.0
    # removal iterations: kept weights 0, removed ones in 1..100, removal monotone along the schedule
    at = torch.cat([v.reshape(-1) for v in res.removed_at.values()])
    kept = torch.cat([m.reshape(-1) for m in res.masks.values()]) > 0
    assert bool((at[kept] == 0).all()) and int(at[~kept].min()) >= 1 and int(at.max()) == 100


def test_one_iteration_is_single_shot_synflow():
    net = _mlp()
    n = sum(m.weight.numel() for m in net if isinstance(m, nn.Linear))
    res = synflow_masks(net, 0.2, iterations=1, input_shape=(4,))
    single = _top_mask(synflow_scores(net, (4,)), round(0.2 * n))
    for k in single:
        assert torch.equal(res.masks[k], single[k])


def test_the_registered_scores_rank_the_mask_first_and_later_removals_higher():
    net = make_digits_cnn()
    n = sum(m.weight.numel() for m in net if isinstance(m, (nn.Linear, nn.Conv2d)))
    scores = WEIGHT_SCORERS.get("synflow_iterative")(net, None, input_shape=(1, 8, 8), density=0.1)
    res = synflow_masks(net, 0.1, input_shape=(1, 8, 8))
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    kept = torch.cat([m.reshape(-1) for m in res.masks.values()]) > 0
    at = torch.cat([v.reshape(-1) for v in res.removed_at.values()])
    assert int(kept.sum()) == round(0.1 * n)
    assert float(flat[kept].min()) > float(flat[~kept].max()) > 0.0
    early, late = (~kept) & (at == 1), (~kept) & (at == 50)
    assert float(flat[late].min()) > float(flat[early].max())
    # kept weights score their flow in the final masked network, scaled by the largest
    final = torch.cat([v.reshape(-1) for v in res.final_score.values()])
    assert torch.allclose(flat[kept & (final > 0)], (final / final.max())[kept & (final > 0)])


def test_pai_estimators_train_exactly_the_iterative_mask():
    X, y = load_dataset("digits", "train")
    data = (X[:200], y[:200])
    torch.manual_seed(3)
    net = make_digits_cnn()
    pai = UnstructuredPaI(saliency="synflow_iterative", ratio=0.9).fit(net, data)
    n = sum(m.weight.numel() for m in net if isinstance(m, (nn.Linear, nn.Conv2d)))
    res = synflow_masks(net, round(0.1 * n) / n, input_shape=(1, 8, 8))
    for k, m in res.masks.items():
        assert torch.equal(pai.masks_[k].double(), m)
    rec = Reconvene(saliency="synflow_iterative", ratio=0.8).fit(net, data)
    dens = {k: float(m.mean()) for k, m in synflow_masks(net, round(0.2 * n) / n, input_shape=(1, 8, 8)).masks.items()}
    assert rec.sensitivity_["0"] == pytest.approx(dens["0"])
    assert rec.n_params_after_ <= 0.2 * sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("kwargs", [{"density": 0.0}, {"density": 1.5}, {"iterations": 0}])
def test_bad_settings_name_the_problem(kwargs):
    with pytest.raises(InvalidParameterError, match="iterative SynFlow"):
        iterative_synflow_importance(_mlp(), None, input_shape=(4,), **{"density": 0.5, **kwargs})


def test_the_reconvene_decision_takes_the_saliency_option():
    from optprune.pruning import DECISIONS

    X, y = load_dataset("digits", "train")
    data = (X[:200], y[:200])
    torch.manual_seed(4)
    net = make_digits_cnn()
    out = DECISIONS.get("reconvene").prune(net, data, (1, 8, 8), 0.8, epochs=1, saliency="synflow_iterative")
    direct = Reconvene(saliency="synflow_iterative", ratio=0.8, epochs=0).fit(net, data)
    assert out.info["sensitivity"] == pytest.approx(direct.sensitivity_)
    assert out.decision.new_widths == direct.widths_
    with pytest.raises(InvalidParameterError, match="saliency"):
        DECISIONS.get("reconvene").prune(net, data, (1, 8, 8), 0.8, epochs=1, saliency="nope")
