r"""BMRS: threshold-free structured pruning by Bayesian model reduction (Wright, Igel & Selvan, NeurIPS 2024).

:class:`BMRS` wraps the output layer of every prunable dependency group
(:func:`optprune.pruning.dependency_groups`) in :class:`LogNormalNoise`, trains
the network end to end on a variational loss, by default the authors' (their
``train.py``: ``CrossEntropyLoss`` plus ``calculate_model_kl(..., "mean")``)

.. math::  \mathcal L = \frac1{|B|}\sum_{i\in B} \mathrm{CE}(f_\theta(x_i), y_i)
           + \frac{\lambda}{L} \sum_{\text{layers } l} \frac1{n_l}
             \sum_{\text{units } j \text{ of } l} \mathrm{KL}(q_j \| p)

(:math:`\lambda` = ``kl_weight``; ``kl_reduction="elbo"`` gives the negative
ELBO per sample, :math:`\frac{\lambda}{N}\sum_j \mathrm{KL}`, with :math:`N`
training samples), and prunes unit ``j`` of a group when the change of free energy under
the reduced prior is non-negative,

.. math::  \Delta F_j = \sum_{\text{out members } m} \Delta F(\mu_{m,j}, \sigma_{m,j}) \ge 0

(members tied by a residual connection carry independent noises, whose
reduced-prior evidence changes add up). :math:`\Delta F` is BMRS_N
(``prior="normal"``) or BMRS_U (``prior="uniform"``), derived in
:mod:`optprune.bayes._deltaf`. Pruning happens every ``prune_every`` epochs
during training (pruned units are switched off and stay off) and once after
training; the result is a plain model with :math:`E[\theta]` folded into the
weights (:attr:`BMRS.model_`) and a :class:`~optprune.pruning.PruningDecision`
that :func:`~optprune.pruning.apply_decision` turns into a physically smaller
network (:meth:`BMRS.transform`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from optprune._estimator import BaseEstimator
from optprune._validation import InstanceOf, Interval, IsCallable, Options, ShapeLike
from optprune.bayes._deltaf import delta_f_normal, delta_f_uniform
from optprune.bayes._layers import LogNormalNoise, unwrap_model, wrap_modules
from optprune.errors import InvalidParameterError
from optprune.pruning import PruningDecision, apply_decision, count_parameters, dependency_groups
from optprune.training import fit_epochs, training_tensors

__all__ = ["BMRS", "DELTA_F_FORMS", "KL_REDUCTIONS", "PRIORS", "precision_bounds"]

PRIORS = ("normal", "uniform")
KL_REDUCTIONS = ("mean", "elbo", "sum")
DELTA_F_FORMS = ("exact", "published")
SIGMA_RED = 1e-6  # BMRS_N's reduced prior: N(a, SIGMA_RED^2), an approximate spike at theta = e^a (authors' code)


def precision_bounds(bits: float, low_bits: float = 23.0) -> tuple[float, float]:
    r"""Reduced log-uniform range :math:`[\log 2^{-\text{low\_bits}}, \log 2^{-\text{bits}}]` of BMRS_U-``bits``.

    The "BMRS_U-p" variants of the paper reduce the prior to the values of
    :math:`\theta` a ``p``-bit fixed-point number cannot tell from zero; the lower
    end is the float32 mantissa's :math:`2^{-23}` (the authors' code,
    ``LogUniformCDFBMRPruningLayer.bmr``). With :math:`[a, b] = [-20, 0]` this is
    :math:`[-15.94, -5.55]` for p = 8 and :math:`[-15.94, -2.77]` for p = 4.
    """
    return -float(low_bits) * math.log(2.0), -float(bits) * math.log(2.0)


class BMRS(BaseEstimator):
    """Train with multiplicative log-normal noise, then prune every unit whose Delta F >= 0.

    Parameters (stored as given, validated by :meth:`fit`):

    prior : "normal" or "uniform"
        The reduced prior: BMRS_N (truncated normal in log space) or BMRS_U
        (log-uniform on a sub-range).
    a, b : float, a < b
        Range of :math:`\\log\\theta` (prior log-uniform on :math:`[e^a, e^b]`).
    reduced : (float, float) or None
        ``prior="normal"``: ``(mu_red, sigma_red)``, default ``(a, 1e-6)``, an
        approximate spike at :math:`\\theta = e^a` (the authors' ``pruning_eps``);
        ``prior="uniform"``: ``(a_red, b_red)`` with ``a <= a_red < b_red <= b``,
        default :func:`precision_bounds` ``(8)`` = :math:`[\\log 2^{-23}, \\log 2^{-8}]`
        (clipped below at ``a``).
    epochs, prune_every : int
        Training epochs; prune every ``prune_every`` epochs during training (0:
        only once, after training). The authors prune after every epoch (1).
    lr, batch_size, seed, num_threads : training settings (Adam; one thread by default).
    kl_weight, kl_reduction : float, "mean" / "elbo" / "sum"
        The loss is the batch-mean cross-entropy plus ``kl_weight`` times the KL
        term reduced as ``kl_reduction``: ``"mean"`` (default, the authors'
        ``train.py`` default and published commands): each noise layer's KL
        averaged over its units, then over layers; ``"elbo"``: summed over units
        and divided by the number of training samples N (the negative ELBO per
        sample); ``"sum"``: summed over units, not divided by N.
    delta_f : "exact" or "published"
        ``"exact"`` (default): :func:`delta_f_normal` / :func:`delta_f_uniform`, checked
        against quadrature. ``"published"``: BMRS_N's Delta F as the authors' released
        code computes it (``LogUniformApproximateDiracBMRPruningLayer.deltaF``), which
        lacks the :math:`-\\tfrac12\\log 2\\pi` normaliser and so equals the exact value
        plus :math:`\\tfrac12\\log 2\\pi \\approx 0.919` nats: it prunes where the exact
        :math:`\\Delta F \\ge -0.919`, in effect a threshold. BMRS_U is the same in both
        (the authors' rule compares the same two masses).
    noise_lr : float or None
        Adam learning rate of the noise posteriors (None, the default: ``lr``,
        one optimiser for everything as in the authors' code).
    mu_init, log_sigma_init : float
        Initial posterior of every noise variable (authors: 0 and -5, i.e.
        :math:`\\theta \\approx 1` with little noise).
    min_keep : int >= 1
        Fewest units any group keeps (the ones with the smallest Delta F).
    input_shape : tuple of ints or None
        One input without batch axis; default ``model.input_shape`` or the data's shape.
    monitor : callable or None
        Called after every pruning step with the current plain model (eval mode,
        :math:`E[\\theta]` folded in, pruned units zeroed; a copy); the dict it
        returns is merged into that step's ``history_`` entry (e.g. a validation
        accuracy, for a compression/accuracy curve over epochs).

    Attributes after :meth:`fit`: ``groups_``, ``wrapped_`` (module names carrying
    noise), ``posterior_`` (``{module: (mu, sigma)}``), ``delta_f_`` (``{group:
    Delta F per unit}``), ``kept_`` (``{group: kept unit indices}``),
    ``decision_``, ``history_`` (units pruned at each pruning step), ``model_``
    (trained plain model, E[theta] folded in, pruned units zeroed),
    ``n_params_before_``, ``n_params_after_``, ``input_shape_``.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "prior": [Options(PRIORS)],
        "a": [Interval(float, None, None, finite=True)],
        "b": [Interval(float, None, None, finite=True)],
        "reduced": [InstanceOf((tuple, list)), None],
        "epochs": [Interval(int, 0, None)],
        "prune_every": [Interval(int, 0, None)],
        "lr": [Interval(float, 0.0, None, closed="neither", finite=True)],
        "noise_lr": [Interval(float, 0.0, None, closed="neither", finite=True), None],
        "batch_size": [Interval(int, 1, None)],
        "seed": [Interval(int, 0, None)],
        "kl_weight": [Interval(float, 0.0, None, finite=True)],
        "kl_reduction": [Options(KL_REDUCTIONS)],
        "delta_f": [Options(DELTA_F_FORMS)],
        "mu_init": [Interval(float, None, None, finite=True)],
        "log_sigma_init": [Interval(float, -10.0, 4.0)],
        "min_keep": [Interval(int, 1, None)],
        "num_threads": [Interval(int, 1, None), None],
        "input_shape": [ShapeLike(), None],
        "monitor": [IsCallable(), None],
    }

    def __init__(
        self,
        prior: str = "normal",
        a: float = -20.0,
        b: float = 0.0,
        reduced: Sequence[float] | None = None,
        epochs: int = 10,
        prune_every: int = 0,
        lr: float = 1e-3,
        noise_lr: float | None = None,
        batch_size: int = 64,
        seed: int = 0,
        kl_weight: float = 1.0,
        kl_reduction: str = "mean",
        delta_f: str = "exact",
        mu_init: float = 0.0,
        log_sigma_init: float = -5.0,
        min_keep: int = 1,
        num_threads: int | None = 1,
        input_shape: Sequence[int] | None = None,
        monitor: Callable[[nn.Module], dict] | None = None,
    ) -> None:
        self.prior = prior
        self.a = a
        self.b = b
        self.reduced = reduced
        self.epochs = epochs
        self.prune_every = prune_every
        self.lr = lr
        self.noise_lr = noise_lr
        self.batch_size = batch_size
        self.seed = seed
        self.kl_weight = kl_weight
        self.kl_reduction = kl_reduction
        self.delta_f = delta_f
        self.mu_init = mu_init
        self.log_sigma_init = log_sigma_init
        self.min_keep = min_keep
        self.num_threads = num_threads
        self.input_shape = input_shape
        self.monitor = monitor

    def _reduced(self) -> tuple[float, float]:
        """Validated reduced-prior parameters (rules across parameters: a < b, a <= a' < b' <= b, sigma' > 0)."""
        a, b = float(self.a), float(self.b)
        if not a < b:
            raise InvalidParameterError(f"BMRS: the prior range needs a < b (log theta in [a, b]); got a={a}, b={b}")
        if self.reduced is None:
            if self.prior == "normal":
                return a, SIGMA_RED
            lo, hi = precision_bounds(8)
            if not max(a, lo) < hi <= b:
                raise InvalidParameterError(
                    f"BMRS: the default reduced range of BMRS_U, [log 2^-23, log 2^-8] = [{lo:.3f}, {hi:.3f}], does "
                    f"not fit in [a, b] = [{a}, {b}]; give reduced=(a', b') with a <= a' < b' <= b")
            return max(a, lo), hi
        red = tuple(self.reduced)
        if len(red) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in red):
            raise InvalidParameterError(f"BMRS: parameter 'reduced' must be two finite numbers; got {self.reduced!r}")
        r0, r1 = float(red[0]), float(red[1])
        if self.prior == "normal":
            if r1 <= 0:
                raise InvalidParameterError(
                    f"BMRS: reduced=(mu_red, sigma_red) needs sigma_red > 0; got sigma_red={r1}"
                )
            return r0, r1
        if not (a <= r0 < r1 <= b):
            raise InvalidParameterError(
                f"BMRS: the reduced log-uniform range (a', b') must satisfy a <= a' < b' <= b with "
                f"[a, b] = [{a}, {b}]; got (a', b') = ({r0}, {r1})"
            )
        return r0, r1

    def _validate_params(self) -> None:
        super()._validate_params()
        self._reduced()

    # ------------------------------------------------------------------- Delta F
    def _delta_f_modules(self, wrappers: dict[str, LogNormalNoise], reduced: tuple[float, float]) -> dict:
        fn = delta_f_normal if self.prior == "normal" else delta_f_uniform
        offset = 0.5 * math.log(2.0 * math.pi) if self.delta_f == "published" and self.prior == "normal" else 0.0
        out = {}
        for name, w in wrappers.items():
            mu, sigma = w.posterior()
            out[name] = fn(mu, sigma, float(self.a), float(self.b), *reduced) + offset
        return out

    def _delta_f_groups(self, per_module: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for g in self._prunable:
            total = np.zeros(g.width)
            for m in g.members:
                if m.role == "out":
                    idx = m.indices(list(range(g.width))).numpy().reshape(g.width, m.factor)
                    total += per_module[m.module][idx].sum(axis=1)
            out[g.name] = total
        return out

    def _prune_step(self, wrappers, reduced, epoch: int) -> None:
        delta = self._delta_f_groups(self._delta_f_modules(wrappers, reduced))
        n_new = 0
        for g in self._prunable:
            alive = self._alive[g.name]
            prune = (delta[g.name] >= 0) & alive
            if alive.sum() - prune.sum() < self.min_keep:  # keep the least prunable units alive
                order = np.argsort(delta[g.name] + np.where(alive, 0.0, np.inf))
                prune = alive.copy()
                prune[order[: self.min_keep]] = False
                prune &= delta[g.name] >= 0
                prune[order[: self.min_keep]] = False
            if not prune.any():
                continue
            n_new += int(prune.sum())
            alive &= ~prune
            for m in g.members:
                if m.role == "out":
                    idx = m.indices(np.flatnonzero(prune).tolist())
                    with torch.no_grad():
                        wrappers[m.module].mask[idx] = 0.0
        entry = {"epoch": epoch, "pruned": n_new, "alive": int(sum(a.sum() for a in self._alive.values()))}
        if self.monitor is not None:
            entry.update(self.monitor(unwrap_model(self._noisy, wrappers).eval()))
        self.history_.append(entry)
        self.delta_f_ = delta

    # ----------------------------------------------------------------------- fit
    def fit(self, model: nn.Module, data: str | tuple[np.ndarray, np.ndarray],
            data_dir: str | os.PathLike | None = None) -> BMRS:
        """Train a noisy copy of ``model`` on ``data`` (``"mnist"``/``"digits"`` train fold or ``(X, y)``), prune.

        ``model`` itself is not modified.
        """
        self._validate_params()
        reduced = self._reduced()
        Xt, yt, _ = training_tensors(data, data_dir, "BMRS.fit")
        shape = self.input_shape or getattr(model, "input_shape", None) or tuple(Xt.shape[1:])
        self.input_shape_ = tuple(int(d) for d in shape)
        if int(np.prod(self.input_shape_)) != int(np.prod(Xt.shape[1:])):
            raise InvalidParameterError(
                f"BMRS.fit: input_shape {self.input_shape_} does not match the data's samples {tuple(Xt.shape[1:])}"
            )
        Xt = Xt.reshape(Xt.shape[0], *self.input_shape_)
        self.groups_, _ = dependency_groups(model, self.input_shape_)
        self._prunable = []
        names: list[str] = []
        for g in self.groups_:
            outs = [m.module for m in g.members if m.role == "out"]
            if g.prunable and outs and all(isinstance(model.get_submodule(n), (nn.Linear, nn.Conv2d)) for n in outs):
                self._prunable.append(g)
                names.extend(n for n in outs if n not in names)
        if not names:
            raise InvalidParameterError(
                "BMRS: the model has no Linear or Conv2d layer whose output units can be pruned, so there is no "
                "layer to wrap with multiplicative noise (supported: Linear, Conv2d feeding a prunable group); "
                "groups: " + ("; ".join(f"{g.name} ({g.kind}, prunable={g.prunable})" for g in self.groups_) or "none")
            )
        self.n_params_before_ = count_parameters(model)
        noisy = copy.deepcopy(model)
        wrappers = wrap_modules(noisy, names, float(self.a), float(self.b), float(self.mu_init),
                                float(self.log_sigma_init))
        self.wrapped_ = list(names)
        self._alive = {g.name: np.ones(g.width, dtype=bool) for g in self._prunable}
        self.history_: list[dict] = []
        self._noisy = noisy
        self._train(noisy, wrappers, Xt, yt, reduced)
        self._prune_step(wrappers, reduced, int(self.epochs))
        self.posterior_ = {name: w.posterior() for name, w in wrappers.items()}
        self.kept_ = {g.name: tuple(int(i) for i in np.flatnonzero(self._alive[g.name])) for g in self._prunable}
        meta = {"method": f"bmrs-{self.prior[0]}", "a": float(self.a), "b": float(self.b), "reduced": list(reduced),
                "delta_f": self.delta_f}
        self.decision_ = PruningDecision(self.kept_, {g.name: g.width for g in self._prunable}, self.input_shape_,
                                         meta)
        self.model_ = unwrap_model(noisy, wrappers).eval()
        self.n_params_after_ = count_parameters(self.transform())
        return self

    def _train(self, noisy: nn.Module, wrappers, Xt: torch.Tensor, yt: torch.Tensor, reduced) -> None:
        """Adam on the negative ELBO (:func:`optprune.training.fit_epochs`), noise posteriors at ``noise_lr``;
        a pruning step after every ``prune_every`` epochs but the last."""
        noise = [p for w in wrappers.values() for p in (w.mu, w.log_sigma)]
        ids = {id(p) for p in noise}
        groups = [{"params": [p for p in noisy.parameters() if id(p) not in ids], "lr": float(self.lr)},
                  {"params": noise, "lr": float(self.noise_lr if self.noise_lr is not None else self.lr)}]
        loss_fn = nn.CrossEntropyLoss()
        weight = float(self.kl_weight)
        epochs = int(self.epochs)
        mods = list(wrappers.values())

        def model_kl() -> torch.Tensor:
            if self.kl_reduction == "mean":  # mean over each layer's units, then over layers
                return sum(w.kl() / w.width for w in mods) / len(mods)
            total = sum(w.kl() for w in mods)
            return total / Xt.shape[0] if self.kl_reduction == "elbo" else total

        def kl_term(loss: torch.Tensor, epoch: int) -> torch.Tensor:
            return loss + weight * model_kl() if weight > 0 else loss

        def prune_during_training(epoch: int, logs: dict) -> None:
            done = epoch + 1
            if self.prune_every and done % int(self.prune_every) == 0 and done < epochs:
                self._prune_step(wrappers, reduced, done)

        fit_epochs(noisy, Xt, yt, lambda out, idx: loss_fn(out, yt[idx]), epochs=epochs, lr=float(self.lr),
                   batch_size=int(self.batch_size), seed=int(self.seed), progress=False,
                   num_threads=self.num_threads, param_groups=groups, loss_hook=kl_term,
                   on_epoch_end=prune_during_training)

    # ------------------------------------------------------------------ results
    def transform(self) -> nn.Module:
        """The trained network, physically smaller: the units with Delta F >= 0 removed (dependency groups)."""
        self._check_fitted()
        return apply_decision(self.model_, self.decision_, groups=self.groups_)

    def fit_transform(self, model: nn.Module, data: str | tuple[np.ndarray, np.ndarray],
                      data_dir: str | os.PathLike | None = None) -> nn.Module:
        return self.fit(model, data, data_dir).transform()
