r"""Rigorous floating-point error terms for every bound that can prove a verdict.

A bound computed in float64 is a sum of products. Whatever the order of
summation (BLAS blocks, pairwise sums, fused multiply-adds), the computed dot
product of ``n`` terms satisfies (Higham, "Accuracy and Stability of Numerical
Algorithms", 2nd ed., 2002, eq. 3.5 and Lemma 3.1)

.. math::

    |\mathrm{fl}(\textstyle\sum_i a_i b_i) - \sum_i a_i b_i| \le \gamma_n \sum_i |a_i| |b_i|,
    \qquad \gamma_n = \frac{n u}{1 - n u}, \quad u = 2^{-53},

plus at most ``n`` times the smallest subnormal for underflow. The error scales
with the *magnitudes summed*, not with the result: ``1e8 - 1e8 + 5e-9`` may come
out as ``0`` or ``1.5e-8``, and only a padding of ``gamma_n * (1e8 + 1e8 + 5e-9)``
covers both. Networks built to fool verifiers exploit exactly that cancellation
(Zombori et al., ICLR 2021, "Fooling a complete neural network verifier"; Jia &
Rinard, SAS 2021, "Exploiting verified neural networks via floating point
numerical error").

Every bound module (:mod:`optprune.verification.bounds`, :mod:`optprune.verification.alpha_crown`) carries
a magnitude next to each value: the sum of the absolute values of every term
that went into it, including the terms by which the *rounded* coefficients of
a back-substitution differ from the exact ones (see
:func:`optprune.verification.bounds.linear_upper_bound`). :func:`error_bound` turns a
magnitude into a padding; :func:`round_up` / :func:`round_down` step one ulp
outward after the last operation.

What this certifies: bounds (and so every ``unsat``) hold for the network that
computes in exact real arithmetic with the float64 weights as given. Inference
in float32 (or float64 with another summation order) differs from that network
by its own rounding; a point that violates the property only under such
rounding is not a counterexample of the real-arithmetic network.
"""

from __future__ import annotations

import numpy as np

__all__ = ["UNIT_ROUNDOFF", "gamma", "error_bound", "round_up", "round_down", "pad_interval"]

UNIT_ROUNDOFF = 2.0**-53
_SUBNORMAL = 2.0**-1074


def gamma(n: int) -> float:
    r"""Higham's :math:`\gamma_n = n u / (1 - n u)` for float64 (``n`` operations in sequence)."""
    nu = float(n) * UNIT_ROUNDOFF
    if nu >= 0.5:
        raise ValueError(f"gamma({n}): n * u must stay below 1/2 for the error bound to hold")
    return nu / (1.0 - nu)


def error_bound(magnitude, n_terms: int):
    """Padding that covers the rounding error of any float64 sum of ``n_terms`` products of ``magnitude``.

    ``magnitude`` is the computed sum of the terms' absolute values (itself a
    float64 sum of positive terms, so within a factor ``1 + gamma_n`` of the
    exact one); the result is ``2 gamma_{n+4} magnitude + (n+4) eta`` rounded
    up, which covers that factor, the padding's own arithmetic and underflow.
    NaN magnitudes give NaN (and so never close anything); infinite ones give inf.
    """
    n = int(n_terms) + 4
    mag = np.asarray(magnitude, dtype=np.float64)
    return round_up(2.0 * gamma(n) * mag + n * _SUBNORMAL)


def round_up(value):
    """One ulp towards ``+inf``: an upper bound of the exact result of the one rounded operation that gave it."""
    return np.nextafter(np.asarray(value, dtype=np.float64), np.inf)


def round_down(value):
    """One ulp towards ``-inf``: a lower bound of the exact result of the one rounded operation that gave it."""
    return np.nextafter(np.asarray(value, dtype=np.float64), -np.inf)


def pad_interval(lower, upper, magnitude, n_terms: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` widened each way by :func:`error_bound` of ``magnitude`` (elementwise)."""
    pad = error_bound(magnitude, n_terms)
    return round_down(np.asarray(lower, dtype=np.float64) - pad), round_up(np.asarray(upper, dtype=np.float64) + pad)
