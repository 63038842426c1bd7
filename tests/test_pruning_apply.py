"""Applying decisions: the smaller model equals the masked original; decisions as JSON."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.pruning import (
    MultiHeadSelfAttention,
    PruningDecision,
    apply_decision,
    count_parameters,
    dependency_groups,
    mask_model,
    masked,
    parameters_after,
)
from optprune.scoring import input_means
from tests.test_pruning_graph import Residual, TinyTransformer, TwoBranchCat, cnn, mlp


def depthwise() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    )


CASES = {
    "mlp": (mlp, (1, 3, 4)),
    "cnn_bn": (cnn, (1, 8, 8)),
    "residual": (Residual, (5,)),
    "cat": (TwoBranchCat, (4,)),
    "attention": (TinyTransformer, (5, 3)),
    "depthwise": (depthwise, (2, 6, 6)),
}


def random_decision(model: nn.Module, shape, seed: int) -> PruningDecision:
    groups, _ = dependency_groups(model, shape)
    rng = np.random.default_rng(seed)
    kept, widths = {}, {}
    for g in groups:
        if g.prunable:
            widths[g.name] = g.width
            kept[g.name] = rng.choice(g.width, size=int(rng.integers(1, g.width + 1)), replace=False)
    return PruningDecision(kept, widths, shape)


def randomise_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pruned_model_equals_masked_original(case: str, seed: int) -> None:
    make, shape = CASES[case]
    torch.manual_seed(seed)
    model = randomise_bn(make())
    decision = random_decision(model, shape, seed)
    small = apply_decision(model, decision)
    reference = mask_model(model, decision)
    x = torch.randn(7, *shape)
    with torch.no_grad():
        torch.testing.assert_close(small(x), reference(x), rtol=1e-5, atol=1e-5)
        groups, _ = dependency_groups(model, shape)
        with masked(model, groups, decision.masks()) as hooked:
            torch.testing.assert_close(hooked(x), reference(x), rtol=1e-5, atol=1e-5)
    assert count_parameters(small) <= count_parameters(model)
    # counted from the widths alone, the parameters are those of the model actually built
    assert parameters_after(model, groups, decision.new_widths) == count_parameters(small)
    # the smaller model's groups have the decided widths and it can be pruned again
    new_groups = {g.name: g.width for g in dependency_groups(small, shape)[0]}
    for name, width in decision.new_widths.items():
        assert new_groups[name] == width


def test_masking_is_not_a_no_op() -> None:
    torch.manual_seed(0)
    model = mlp()
    decision = PruningDecision({"1": [0, 1], "3": [4]}, {"1": 6, "3": 5}, (1, 3, 4))
    x = torch.randn(5, 1, 3, 4)
    with torch.no_grad():
        assert not torch.allclose(model(x), mask_model(model, decision)(x))


def test_physical_shapes_and_attributes() -> None:
    torch.manual_seed(0)
    model = cnn().eval()
    decision = PruningDecision({"0": [1, 3], "3": [0, 2, 5], "7": [6]}, {"0": 4, "3": 6, "7": 7}, (1, 8, 8))
    small = apply_decision(model, decision)
    assert small[0].weight.shape == (2, 1, 3, 3) and small[0].out_channels == 2
    assert small[1].num_features == 2 and small[1].running_mean.shape == (2,)
    assert small[3].weight.shape == (3, 2, 3, 3) and small[3].in_channels == 2
    assert small[7].weight.shape == (1, 12) and small[7].in_features == 12
    assert small[9].in_features == 1
    torch.testing.assert_close(small[3].weight, model[3].weight[[0, 2, 5]][:, [1, 3]])
    torch.testing.assert_close(small[1].running_var, model[1].running_var[[1, 3]])
    assert model[0].out_channels == 4  # original untouched


def test_attention_heads_are_removed() -> None:
    torch.manual_seed(0)
    model = TinyTransformer().eval()
    decision = PruningDecision({"att.heads": [1, 3]}, {"att.heads": 4}, (5, 3))
    small = apply_decision(model, decision)
    assert small.att.num_heads == 2 and small.att.q_proj.weight.shape == (4, 8)
    assert small.att.out_proj.weight.shape == (8, 4)
    x = torch.randn(3, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(small(x), mask_model(model, decision)(x))


def test_attention_from_torch_multihead() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    ours = MultiHeadSelfAttention.from_torch(mha).eval()
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), mha(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidParameterError, match="batch_first"):
        MultiHeadSelfAttention.from_torch(nn.MultiheadAttention(8, 2))


def test_flap_bias_compensation_replaces_removed_inputs_by_their_mean() -> None:
    """b <- b + W((1-M) ⊙ X̄) makes the smaller net equal the original with removed inputs set to X̄."""
    torch.manual_seed(0)
    model = mlp().eval()
    calib = torch.rand(20, 1, 3, 4)
    means = input_means(model, calib)
    decision = PruningDecision({"1": [0, 2, 5], "3": [1, 2]}, {"1": 6, "3": 5}, (1, 3, 4))
    small = apply_decision(model, decision, compensation=means)

    # independent reference: replace removed consumer inputs by their calibration means
    removed = {"3": decision.removed("1"), "5": decision.removed("3")}

    def hook(name):
        def fn(module, args):
            x = args[0].clone()
            x[:, removed[name]] = torch.as_tensor(means[name][removed[name]], dtype=x.dtype)
            return (x,)

        return fn

    handles = [model.get_submodule(n).register_forward_pre_hook(hook(n)) for n in removed]
    x = torch.rand(9, 1, 3, 4)
    with torch.no_grad():
        expected = model(x)
    for h in handles:
        h.remove()
    with torch.no_grad():
        torch.testing.assert_close(small(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mask_model(model, decision, compensation=means)(x), expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(apply_decision(model, decision)(x), expected)


def test_compensation_creates_missing_bias() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2, bias=False))
    decision = PruningDecision({"0": [0, 1]}, {"0": 4}, (3,))
    small = apply_decision(model, decision, compensation={"2": np.array([1.0, 2.0, 3.0, 4.0])})
    expected = model[2].weight.detach()[:, [2, 3]] @ torch.tensor([3.0, 4.0])
    torch.testing.assert_close(small[2].bias.detach(), expected)
    groups, _ = dependency_groups(model, (3,))
    compensation = {"2": np.array([1.0, 2.0, 3.0, 4.0])}
    after = parameters_after(model, groups, decision.new_widths, compensation)
    assert after == count_parameters(small) == 3 * 2 + 2 + 2 * 2 + 2


def test_parameters_after_refuses_impossible_widths() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    groups, _ = dependency_groups(model, (3,))
    with pytest.raises(ShapeMismatchError, match="group '0' of width 4 cannot keep 0 units; allowed 1..4"):
        parameters_after(model, groups, {"0": 0})
    with pytest.raises(ShapeMismatchError, match="widths name group 'nope'"):
        parameters_after(model, groups, {"nope": 1})


def test_decision_json_roundtrip_and_replay(tmp_path) -> None:
    torch.manual_seed(0)
    model = cnn().eval()
    decision = random_decision(model, (1, 8, 8), 4)
    path = decision.save(tmp_path / "decision.json")
    loaded = PruningDecision.load(path)
    assert loaded == decision and loaded.input_shape == (1, 8, 8)
    # replay on another model with the same architecture
    torch.manual_seed(1)
    other = cnn().eval()
    a, b = apply_decision(model, loaded), apply_decision(other, loaded)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    torch.testing.assert_close(b[0].weight, other[0].weight[list(loaded.kept["0"])])


def test_decision_rejects_other_architectures_and_bad_indices() -> None:
    decision = PruningDecision({"1": [0, 1]}, {"1": 6, "3": 5}, (1, 3, 4))
    wider = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))
    with pytest.raises(ShapeMismatchError, match="group '1' has width 8 in the model, 6 in the decision"):
        apply_decision(wider, decision)
    with pytest.raises(InvalidParameterError, match="allowed range is 0..5"):
        PruningDecision({"1": [0, 6]}, {"1": 6}, (12,))
    with pytest.raises(InvalidParameterError, match="keeps no unit"):
        PruningDecision({"1": []}, {"1": 6}, (12,))
    with pytest.raises(InvalidParameterError, match="more than once"):
        PruningDecision({"1": [1, 1]}, {"1": 6}, (12,))
    frozen = PruningDecision({"5": [0]}, {"5": 3}, (1, 3, 4))
    with pytest.raises(InvalidParameterError, match="cannot be pruned: tied to the model output"):
        apply_decision(mlp(), frozen)
    with pytest.raises(InvalidParameterError, match="format must be"):
        PruningDecision.from_dict({"kept": {}})


def test_from_masks() -> None:
    groups, _ = dependency_groups(mlp(), (1, 3, 4))
    d = PruningDecision.from_masks({"1": np.array([1, 0, 1, 0, 0, 1])}, (1, 3, 4), groups)
    assert d.kept["1"] == (0, 2, 5) and d.new_widths == {"1": 3, "3": 5}
    with pytest.raises(ShapeMismatchError, match="has 2 entries, group has 6"):
        PruningDecision.from_masks({"1": np.array([1, 0])}, (1, 3, 4), groups)


def test_pruned_chain_reads_into_network_definition() -> None:
    """The smaller torch model is a plain chain the io readers accept, with the same outputs."""
    from optprune import io
    torch.manual_seed(0)
    model = randomise_bn(nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 3 * 3, 7), nn.ReLU(), nn.Linear(7, 3),
    ))
    small = apply_decision(model, random_decision(model, (1, 8, 8), 0))
    net = io.network_from_torch(small, (1, 8, 8))
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(x.reshape(4, -1).numpy()), small(x).numpy(), rtol=1e-4, atol=1e-5)
