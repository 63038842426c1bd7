"""Adversarial MIP verification of (pruned) ReLU networks: bounds, attack, MIP and branch and bound.

Public API (imported on first use, so that importing one module of the package,
e.g. :mod:`optprune.verification.bounds` from the modelling layer, does not
import the engines, which import the modelling layer back):

* deciding properties: :func:`verify_property`, :func:`verify_vnnlib`,
  :class:`VerificationResult`, :func:`format_vnncomp_result`, the engines'
  names :func:`methods` (registry :data:`ENGINES`);
* adversarial examples: :func:`max_margin`, :func:`min_distortion`,
  :func:`robustness_property`, :class:`AdversarialResult`;
* bounds: :func:`compute_bounds` by a name of :data:`BOUND_METHODS`,
  :data:`DEFAULT_BOUNDS`, :func:`count_unstable`;
* properties: :func:`read_vnnlib`; counterexample checks: :class:`OnnxChecker`,
  :func:`check_counterexample`.

Modules: ``rounding`` (floating-point error terms), ``bounds`` (interval,
CROWN, the bound-method registry), ``alpha_crown`` and ``obbt`` (refining bound
methods), ``attack``, ``counterexample``, ``verdicts`` (what may prove a
verdict), ``vnnlib``, ``deadline``, ``engines`` (bounds, MIP, BaB, auto),
``bab``, ``api`` and ``adversarial`` (the queries).
"""

from __future__ import annotations

from optprune._lazy import lazy_exports

_PUBLIC = {
    "verify_property": "api",
    "verify_vnnlib": "api",
    "VerificationResult": "api",
    "format_vnncomp_result": "api",
    "methods": "api",
    "ENGINES": "engine_registry",
    "max_margin": "adversarial",
    "min_distortion": "adversarial",
    "robustness_property": "adversarial",
    "AdversarialResult": "adversarial",
    "compute_bounds": "bounds",
    "BOUND_METHODS": "bounds",
    "DEFAULT_BOUNDS": "bounds",
    "count_unstable": "bounds",
    "read_vnnlib": "vnnlib",
    "OnnxChecker": "counterexample",
    "check_counterexample": "counterexample",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports("optprune.verification", _PUBLIC)
