"""Reconvene (structured pruning at initialisation) and the unstructured PaI baseline."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from optprune.data import load_dataset
from optprune.errors import InfeasibleBudgetError, InvalidParameterError, NotFittedError
from optprune.pai import Reconvene, TrainedModelWarning, UnstructuredPaI, synflow_scores
from optprune.pruning import count_parameters
from optprune.training import digits_cnn, make_digits_cnn


def _digits():
    X, y = load_dataset("digits", "train")
    return X[:300], y[:300]


class _ResCNN(nn.Module):
    """A stem and a residual block: the stem's and the block's output channels form one dependency group."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1)
        self.c1 = nn.Conv2d(6, 5, 3, padding=1)
        self.c2 = nn.Conv2d(5, 6, 3, padding=1)
        self.head = nn.Linear(6 * 8 * 8, 10)
        self.input_shape = (1, 8, 8)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(h + self.c2(torch.relu(self.c1(h))))
        return self.head(h.flatten(1))


def test_synflow_is_the_path_norm_derivative_on_a_two_layer_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].bias.zero_()
        net[2].bias.zero_()
    s = synflow_scores(net, (3,))
    w1, w2 = net[0].weight.detach().abs(), net[2].weight.detach().abs()
    # R = 1' |W2| |W1| 1: dR/d|W1_ij| = (1'|W2|)_i, dR/d|W2_ki| = (|W1| 1)_i
    assert torch.allclose(s["0"], w1 * w2.sum(0).reshape(-1, 1), atol=1e-6)
    assert torch.allclose(s["2"], w2 * w1.sum(1).reshape(1, -1), atol=1e-6)


@pytest.mark.parametrize("saliency", ["snip", "synflow"])
def test_reconvene_meets_the_parameter_target_with_a_smaller_reinitialised_model(saliency):
    torch.manual_seed(5)
    model = make_digits_cnn()
    est = Reconvene(saliency=saliency, ratio=0.7, seed=0).fit(model, _digits())
    small = est.transform()
    dense = count_parameters(model)
    assert est.n_params_after_ == count_parameters(small) <= 0.3 * dense
    assert est.n_params_after_ > 0.2 * dense  # the bisection uses the budget, not just the minimum
    assert small(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    # the least sensitive group (lowest unstructured density) keeps the smallest fraction of its channels
    sens = est.sensitivity_
    least = min(sens, key=sens.get)
    frac = {g: est.widths_[g] / est.decision_.widths[g] for g in sens}
    assert frac[least] == min(frac.values())
    # re-initialised: kept weights are not copies of the original ones
    assert not torch.equal(small[0].weight, model[0].weight[list(est.kept_["0"])])


def test_reconvene_ties_residual_channels():
    torch.manual_seed(0)
    est = Reconvene(ratio=0.5).fit(_ResCNN(), _digits())
    small = est.transform()
    assert small.stem.out_channels == small.c2.out_channels < 6
    assert small(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_unstructured_pai_matches_a_parameter_count_and_keeps_pruned_weights_at_zero():
    torch.manual_seed(0)
    model = make_digits_cnn()
    rec = Reconvene(ratio=0.6).fit(model, _digits())
    est = UnstructuredPaI(n_params=rec.n_params_after_, epochs=1, lr=1e-2).fit(model, _digits())
    assert est.n_params_after_ == rec.n_params_after_
    nonzero = sum(int((m.weight != 0).sum()) for m in est.model_.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    biases = sum(m.bias.numel() for m in est.model_.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    assert nonzero + biases == rec.n_params_after_  # training did not revive a masked weight
    assert count_parameters(model) == 9802 and np.isfinite(est.time_)


def test_unreachable_target_is_infeasible_budget():
    with pytest.raises(InfeasibleBudgetError, match="largest reachable ratio"):
        Reconvene(ratio=0.999).fit(make_digits_cnn(), _digits())
    with pytest.raises(InfeasibleBudgetError, match="n_params must lie"):
        UnstructuredPaI(n_params=10**9).fit(make_digits_cnn(), _digits())


def test_trained_model_warns_and_an_initialised_one_does_not():
    with pytest.warns(TrainedModelWarning, match="looks trained"):
        Reconvene(ratio=0.5).fit(digits_cnn(epochs=5), _digits())
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainedModelWarning)
        torch.manual_seed(1)
        Reconvene(ratio=0.5).fit(make_digits_cnn(), _digits())


def test_named_errors():
    with pytest.raises(InvalidParameterError, match="saliency"):
        Reconvene(saliency="grasp2").fit(make_digits_cnn(), _digits())
    with pytest.raises(InvalidParameterError, match="ratio"):
        Reconvene(ratio=1.0).fit(make_digits_cnn(), _digits())
    with pytest.raises(InvalidParameterError, match="no prunable group"):
        Reconvene(layers="conv").fit(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)),
                                     _digits())
    with pytest.raises(NotFittedError):
        Reconvene().transform()


def test_cli_prune_method_reconvene_writes_a_smaller_onnx(tmp_path, capsys):
    import json

    from optprune.cli import main
    from optprune.io import load_network, save_torch_model
    from optprune.training import make_mlp

    torch.manual_seed(0)
    net = tmp_path / "init.pt"
    save_torch_model(make_mlp([64, 32, 32, 10], (1, 8, 8)), net)
    out = tmp_path / "small.onnx"
    rc = main(["prune", str(net), "--method", "reconvene", "--ratio", "0.5", "--data", "digits",
               "--train-epochs", "1", "--out", str(out), "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert rc in (0, None)
    assert payload["method"] == "reconvene" and payload["params_after"] <= 0.5 * payload["params_before"]
    assert load_network(out).widths == payload["widths"]
    with pytest.raises(SystemExit) as exc:
        main(["prune", str(net), "--method", "bogus", "--data", "digits", "--json"])
    assert exc.value.code == 2
    assert "--method must be one of" in json.loads(capsys.readouterr().out)["error"]
