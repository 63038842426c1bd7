"""Per-neuron pre-activation bounds of a ReLU network over an input box.

Three levels, in increasing strength and cost:

* ``interval``: interval arithmetic, ``W c + b -/+ |W| r`` for the box's centre ``c`` and radius ``r``.
* ``linear``: CROWN / DeepPoly back-substitution (Zhang et al. 2018, "Efficient
  Neural Network Robustness Certification with General Activation Functions";
  Singh et al. 2019, "An Abstract Domain for Certifying Neural Networks").
  An unstable ReLU with bounds ``l < 0 < u`` is relaxed by
  ``a z <= relu(z) <= u (z - l) / (u - l)`` with the adaptive lower slope
  ``a = 1 if u >= -l else 0``; the linear bound of a neuron is back-substituted
  through every earlier layer down to the input box, then intersected with the
  interval bound.

Both are NumPy fronts over the one CROWN core, :mod:`optprune.verification.crown`
(torch, float64, the same code α-CROWN and branch and bound use).
* ``alpha``: α-CROWN on top of ``linear``: the intermediate layers' lower
  slopes optimised per neuron (:mod:`optprune.verification.alpha_crown`).
* ``obbt``: optimisation-based bound tightening on top of ``linear``: each
  neuron still unstable is minimised and maximised over the LP relaxation of
  the big-M formulation of the layers before it (layer by layer, one
  warm-started LP session of the solver protocol per layer), within a time
  budget. See :mod:`optprune.verification.obbt`.

Bound methods are looked up by name in :data:`BOUND_METHODS` (a
:class:`~optprune.registry.Registry` of :class:`BoundMethod`): adding one is
a module with a ``BoundMethod`` and one registration line, and the CLI, bench
configs and error messages list it.

Bounds are returned as one ``(lower, upper)`` pair of arrays per layer, for the
layer's pre-activation ``z = W h + b``.

Soundness against rounding: every bound computed by the core carries the rigorous
float64 error term of :mod:`optprune.verification.rounding`, ``2 gamma_n`` times the sum of
the magnitudes of the terms summed (Higham, "Accuracy and Stability of Numerical
Algorithms", 2nd ed., eq. 3.5), so the padding scales with what was summed, not
with the result. Back-substitution also pays for the rounding of its own
coefficients: when ``lam @ W`` is rounded, the difference from the exact
product (at most ``gamma_n |lam| @ |W|`` entrywise) multiplies a variable whose
magnitude the earlier layers' bounds cap, and that product joins the magnitude.
The ReLU upper chord's intercept is raised by its own rounding error so the
chord lies above the ReLU on ``[l, u]`` in exact arithmetic. OBBT bounds are
Neumaier–Shcherbina safe bounds (:func:`optprune.verification.obbt.safe_lp_lower_bound`) with the same
error term. The bounds hold for the network evaluated in real arithmetic with
the float64 weights as given (:mod:`optprune.verification.rounding`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optprune.errors import ShapeMismatchError
from optprune.network import Network
from optprune.registry import Registry
from optprune.verification.deadline import Deadline

__all__ = [
    "BOUND_METHODS",
    "DEFAULT_BOUNDS",
    "Bounds",
    "interval_bounds",
    "linear_bounds",
    "BoundMethod",
    "compute_bounds",
    "linear_upper_bound",
    "count_unstable",
    "unstable_masks",
]

Bounds = list[tuple[np.ndarray, np.ndarray]]
DEFAULT_BOUNDS = "obbt"  # the MIP engine's default: fastest to a verdict on mnistfc 256x2 (vnncomp_mnistfc.py)


@dataclass(frozen=True)
class BoundMethod:
    """A way to compute per-neuron bounds over a box, refining the bounds of another method (``base``).

    ``refine(net, x_lower, x_upper, bounds, deadline, solver)`` returns bounds at
    least as tight as ``bounds`` (those of ``base``; ``None`` for a method that
    starts from nothing). The MIP engine computes ``base`` first and pays for
    ``refine`` only when the attack and the cheap bounds leave MIPs to solve.
    """

    name: str
    refine: Callable[..., Bounds]
    base: str | None = None
    doc: str = ""


BOUND_METHODS: Registry[BoundMethod] = Registry("bound method")
def _box(net: Network, x_lower, x_upper) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(x_lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(x_upper, dtype=np.float64).reshape(-1)
    if lo.shape != (net.input_size,) or hi.shape != (net.input_size,):
        raise ShapeMismatchError(
            f"input box has {lo.size} lower and {hi.size} upper bounds; network takes {net.input_size} inputs"
        )
    if np.any(lo > hi):
        raise ShapeMismatchError(f"input box is empty: lower > upper at {int(np.argmax(lo > hi))}")
    return lo, hi


def _torch_network(net: Network):
    from optprune.verification.crown import TorchNetwork

    return TorchNetwork.from_network(net)


def _row(values: np.ndarray):
    import torch

    return torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(1, -1)


def interval_bounds(net: Network, x_lower, x_upper) -> Bounds:
    """Pre-activation bounds by interval arithmetic (exact for the first layer up to rounding, padded for it).

    The interval pass of the CROWN core (:func:`optprune.verification.crown.affine_interval`).
    """
    from optprune.verification.crown import activation_interval, affine_interval, one_thread

    lo, hi = _box(net, x_lower, x_upper)
    tn = _torch_network(net)
    t_lo, t_hi = _row(lo), _row(hi)
    bounds: Bounds = []
    with one_thread():
        for k in range(tn.n_layers):
            zl, zu = affine_interval(t_lo, t_hi, tn.maps[k], tn.biases[k])
            bounds.append((zl[0].numpy().copy(), zu[0].numpy().copy()))
            t_lo, t_hi = activation_interval(tn.act[k], zl, zu)
    return bounds


def linear_bounds(net: Network, x_lower, x_upper, start: Bounds | None = None) -> Bounds:
    """Pre-activation bounds by CROWN back-substitution (:func:`optprune.verification.crown.layer_bounds`).

    ``start`` (e.g. interval bounds) is intersected with every result.
    """
    from optprune.verification.crown import layer_bounds, one_thread

    lo, hi = _box(net, x_lower, x_upper)
    begin = start if start is not None else interval_bounds(net, lo, hi)
    torch_start = [(_row(a), _row(b)) for a, b in begin]
    with one_thread():
        out = layer_bounds(_torch_network(net), _row(lo), _row(hi), torch_start)
    return [(a[0].numpy().copy(), b[0].numpy().copy()) for a, b in out]


def linear_upper_bound(
    net: Network, bounds: Bounds, c_out: np.ndarray, d_out: np.ndarray | float, x_lower, x_upper
) -> np.ndarray:
    """Upper bounds of the output specifications ``c_out @ y + d_out`` (one per row of ``c_out``).

    Back-substituting the specification itself (rather than bounding each logit)
    is what lets a margin ``y_t - y_y`` be proven negative without any MIP. A
    network ending in a ReLU gets an identity output layer first
    (:func:`optprune.verification.crown.with_linear_output`), so the rows act on
    the ReLU's output.
    """
    import torch

    from optprune.verification.crown import one_thread, pad_bound, spec_bound, with_linear_output

    lo, hi = _box(net, x_lower, x_upper)
    c_out = np.atleast_2d(np.asarray(c_out, dtype=np.float64))
    d = np.broadcast_to(np.asarray(d_out, dtype=np.float64), (c_out.shape[0],)).copy()
    net, bounds = with_linear_output(net, bounds)
    tn = _torch_network(net)
    lowers = [_row(a) for a, _ in bounds[:-1]]
    uppers = [_row(b) for _, b in bounds[:-1]]
    with one_thread():
        sb = spec_bound(tn, _row(lo), _row(hi), lowers, uppers, None, torch.as_tensor(c_out).unsqueeze(0),
                        torch.as_tensor(d).unsqueeze(0))
        return pad_bound(sb)[0].numpy().copy()


def compute_bounds(
    net: Network,
    x_lower,
    x_upper,
    method: str = "linear",
    *,
    deadline: Deadline | None = None,
    solver: str = "highs",
    time_budget: float | None = None,
) -> Bounds:
    """Bounds by the registered method ``method`` (:data:`BOUND_METHODS`), its ``base`` methods first.

    ``deadline`` bounds the time of the refining methods (OBBT, α-CROWN), which
    keep the looser bounds they started from for what they could not reach;
    ``time_budget`` (seconds) is the older way to say the same. ``solver``
    solves OBBT's LPs.
    """
    entry = BOUND_METHODS.get(method, "bound_method")
    if deadline is None:
        deadline = Deadline(time_budget if time_budget is not None else float("inf"))
    start = None if entry.base is None else compute_bounds(net, x_lower, x_upper, entry.base, deadline=deadline,
                                                            solver=solver)
    return entry.refine(net, x_lower, x_upper, start, deadline=deadline, solver=solver)


def _interval_method(net, x_lower, x_upper, bounds, *, deadline, solver) -> Bounds:
    return interval_bounds(net, x_lower, x_upper)


def _linear_method(net, x_lower, x_upper, bounds, *, deadline, solver) -> Bounds:
    return linear_bounds(net, x_lower, x_upper, start=bounds)


BOUND_METHODS.register("interval", BoundMethod("interval", _interval_method, None, "interval arithmetic"))
BOUND_METHODS.register("linear", BoundMethod("linear", _linear_method, None, "CROWN back-substitution"))
BOUND_METHODS.register("alpha", "optprune.verification.alpha_crown:ALPHA_METHOD", "α-CROWN intermediate slopes")
BOUND_METHODS.register("obbt", "optprune.verification.obbt:OBBT_METHOD", "LP bound tightening (safe duals)")


def unstable_masks(net: Network, bounds: Bounds) -> list[np.ndarray]:
    """Per layer, the boolean mask of ReLU neurons whose sign is not fixed by ``bounds``."""
    return [
        (lo < 0) & (hi > 0) if layer.activation == "relu" else np.zeros(lo.shape, dtype=bool)
        for layer, (lo, hi) in zip(net.layers, bounds)
    ]


def count_unstable(net: Network, bounds: Bounds) -> int:
    """Number of ReLU neurons of ``net`` whose sign ``bounds`` do not fix (each one a binary in the MILP).

    Arguments in the order of every function of (network, bounds); the old order ``(bounds, net)`` is still
    accepted with a DeprecationWarning.
    """
    if isinstance(bounds, Network) and not isinstance(net, Network):
        import warnings

        warnings.warn("count_unstable(bounds, net) is deprecated; call count_unstable(net, bounds)",
                      DeprecationWarning, stacklevel=2)
        net, bounds = bounds, net
    return int(sum(mask.sum() for mask in unstable_masks(net, bounds)))
