"""optprune.training.fit_epochs, the one training loop: parameter groups, the per-epoch callback, the loss hook,
a batch source, the learning-rate schedule and clipping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optprune.errors import InvalidParameterError
from optprune.training import fit_epochs, make_mlp


def _data(n: int = 96):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 6, generator=g)
    y = (X[:, 0] > X[:, 1]).long() + (X[:, 2] > 0.5).long()
    return X, y


def _model() -> nn.Sequential:
    torch.manual_seed(3)
    return make_mlp([6, 8, 3])


def _ce(y):
    return lambda out, idx: nn.functional.cross_entropy(out, y[idx])


def _fit(model, **kwargs):
    X, y = _data()
    opts = dict(epochs=3, lr=1e-2, batch_size=16, seed=5, progress=False)
    return fit_epochs(model, X, y, _ce(y), **{**opts, **kwargs})


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_one_group_of_all_parameters_is_the_default() -> None:
    a = _fit(_model())
    m = _model()
    b = _fit(m, param_groups=[{"params": list(m.parameters())}])
    assert _same(a, b)
    assert not _same(a, _model()) and not a.training


def test_parameter_groups_take_their_own_learning_rate() -> None:
    m = _model()
    first = list(m[1].parameters())
    before = [p.detach().clone() for p in first]
    fit_epochs_groups = [{"params": first, "lr": 0.0}, {"params": list(m[3].parameters())}]
    _fit(m, param_groups=fit_epochs_groups)
    assert all(torch.equal(p, q) for p, q in zip(first, before))  # lr 0: the first layer never moves
    assert not torch.equal(m[3].weight, _model()[3].weight)
    with pytest.raises(InvalidParameterError, match="param_groups must be a non-empty list"):
        _fit(_model(), param_groups=[])
    with pytest.raises(InvalidParameterError, match="param_groups must be a non-empty list"):
        _fit(_model(), param_groups=[{"params": []}])


def test_the_callback_runs_after_every_epoch_with_the_epoch_and_its_logs() -> None:
    X, y = _data()
    seen: list[tuple[int, dict, bool]] = []
    model = _model()
    fit_epochs(model, X, y, _ce(y), epochs=4, lr=1e-2, batch_size=16, seed=0, progress=False,
               on_epoch_end=lambda epoch, logs: seen.append((epoch, logs, model.training)))
    assert [e for e, _, _ in seen] == [0, 1, 2, 3]
    assert all(logs["loss"] > 0 and 0 <= logs["accuracy"] <= 1 for _, logs, _ in seen)
    assert all(round(logs["accuracy"] * 96, 9).is_integer() for _, logs, _ in seen)  # a count out of 96 samples
    assert all(training for _, _, training in seen)  # the model is still training inside the callback
    assert seen[-1][1]["loss"] < seen[0][1]["loss"]


def test_the_loss_hook_adds_a_term_and_sees_the_epoch() -> None:
    epochs: set[int] = set()

    def plus_constant(loss, epoch):
        epochs.add(epoch)
        return loss + 5.0  # no gradient: the same training

    a = _fit(_model())
    logs: list[float] = []
    b = _fit(_model(), loss_hook=plus_constant, on_epoch_end=lambda e, lg: logs.append(lg["loss"]))
    assert _same(a, b) and epochs == {0, 1, 2}
    assert min(logs) > 5.0  # the logged loss is the minimised one
    m = _model()
    _fit(m, loss_hook=lambda loss, epoch: loss + 10.0 * sum(p.pow(2).sum() for p in m.parameters()))
    assert m[1].weight.norm() < a[1].weight.norm()  # weight decay by hand shrinks the weights


def test_a_batch_source_a_schedule_and_clipping() -> None:
    X, y = _data()
    m = _model()
    state = torch.random.get_rng_state()
    w0 = m[1].weight.detach().clone()
    after: list[torch.Tensor] = []

    def batches(epoch):  # one batch per epoch, as the LM's steps
        yield X[epoch * 16 : (epoch + 1) * 16], y[epoch * 16 : (epoch + 1) * 16]

    fit_epochs(m, None, None, lambda out, target: nn.functional.cross_entropy(out, target), epochs=3, lr=1e-2,
               seed=None, progress=False, num_threads=None, batches=batches, optimizer="adamw",
               lr_lambda=lambda epoch: 0.0 if epoch == 0 else 1.0, clip_grad_norm=0.5,
               on_epoch_end=lambda epoch, logs: after.append(m[1].weight.detach().clone()))
    assert torch.equal(after[0], w0)  # lr scaled by 0 in epoch 0 (AdamW's decay is lr-scaled too)
    assert not torch.equal(after[1], w0)
    assert torch.equal(torch.random.get_rng_state(), state)  # seed None: torch's global generator untouched


def test_invalid_arguments() -> None:
    X, y = _data()
    with pytest.raises(InvalidParameterError, match="optimizer must be one of"):
        _fit(_model(), optimizer="sgd")
    with pytest.raises(InvalidParameterError, match="either as tensors Xt, yt or as batches"):
        _fit(_model(), batches=lambda epoch: iter(()))
    with pytest.raises(InvalidParameterError, match="as tensors Xt and yt, or as batches"):
        fit_epochs(_model(), None, None, _ce(y), epochs=1, lr=1e-2, progress=False)
    with pytest.raises(InvalidParameterError, match="needs an int seed"):
        _fit(_model(), seed=None)
    with pytest.raises(InvalidParameterError, match="clip_grad_norm must be a positive float"):
        _fit(_model(), clip_grad_norm=0.0)
