"""The two scorer registries: per-unit scorers (:data:`SCORERS`) and per-weight importances (:data:`WEIGHT_SCORERS`).

Torch-free: every built-in is registered lazily (``"module:attribute"``), so
the CLI's ``--scorer`` help, bench config validation and error messages list
all of them without importing torch or the module that defines them, and a
scorer defined outside :mod:`optprune.scoring` (GOHSP's graph head ranking) is
listed whether or not its package was imported.

* :data:`SCORERS`: name -> :class:`~optprune.scoring.Scorer` subclass. Aliases
  are further names of the same class; a class's ``alias_defaults`` maps an
  alias to constructor arguments (``l1`` is ``magnitude`` with ``p=1``).
* :data:`WEIGHT_SCORERS`: name -> function
  ``importance(model, calibration=None, *, input_shape=None, batch_size=128)``
  returning ``{module name: tensor of the weight's shape}`` for every Linear /
  Conv2d layer (:func:`optprune.scoring.weight_layers`); see
  :mod:`optprune.scoring._weights`. Systolic block scores, pruning-at-
  initialisation saliencies and unstructured magnitude pruning read it.

Adding a scorer is one module plus one line here (or, outside the library,
``SCORERS.register("mine", MyScorer)``).
"""

from __future__ import annotations

from typing import Any

from optprune.registry import Registry

__all__ = ["SCORERS", "WEIGHT_SCORERS", "available_scorers", "normalize_scorer_name", "register_scorer"]

#: per-unit scorers: name -> Scorer subclass (``scorer(model, calibration) -> {group: scores}``)
SCORERS: Registry[Any] = Registry("scorer")
#: per-weight importances: name -> ``importance(model, calibration, *, input_shape, batch_size) -> {module: tensor}``
WEIGHT_SCORERS: Registry[Any] = Registry("weight scorer")

_S = "optprune.scoring."
SCORERS.register("magnitude", _S + "_magnitude:MagnitudeScorer", "L_p norm of a unit's parameters (p=2)")
SCORERS.register("l1", _S + "_magnitude:MagnitudeScorer", "magnitude with p=1")
SCORERS.register("l2", _S + "_magnitude:MagnitudeScorer", "magnitude with p=2")
SCORERS.register("random", _S + "_magnitude:RandomScorer", "uniform random scores (seeded)")
SCORERS.register("taylor", _S + "_gradient:TaylorScorer", "first-order Taylor |sum theta dL/dtheta|")
SCORERS.register("fisher", _S + "_gradient:FisherScorer", "Optimal Brain Damage with the per-sample empirical Fisher")
SCORERS.register("obd", _S + "_gradient:FisherScorer", "alias of fisher")
SCORERS.register("activation_mean", _S + "_activation:ActivationMeanScorer", "mean activation of a unit")
SCORERS.register("activation", _S + "_activation:ActivationMeanScorer", "alias of activation_mean")
SCORERS.register("apoz", _S + "_activation:APoZScorer", "1 - average percentage of zeros")
SCORERS.register("wanda_sp", _S + "_flap:WandaSPScorer", "structured Wanda: |W| times input norms")
SCORERS.register("wanda", _S + "_flap:WandaSPScorer", "alias of wanda_sp")
SCORERS.register("flap", _S + "_flap:FLAPScorer", "FLAP fluctuation (metric wifv)")
SCORERS.register("wifv", _S + "_flap:FLAPScorer", "flap with metric wifv")
SCORERS.register("ifv", _S + "_flap:FLAPScorer", "flap with metric ifv")
SCORERS.register("wifn", _S + "_flap:FLAPScorer", "flap with metric wifn")
SCORERS.register("ablation", _S + "_perturb:AblationScorer", "exact leave-one-out loss change")
SCORERS.register("loo", _S + "_perturb:AblationScorer", "alias of ablation")
SCORERS.register("leave_one_out", _S + "_perturb:AblationScorer", "alias of ablation")
SCORERS.register("bonsai", _S + "_perturb:BonsaiScorer", "Bonsai: regression on random sub-models")
SCORERS.register("mip", _S + "_mip:MIPAwareScorer", "a base scorer traded off against expected unstable ReLUs")
SCORERS.register("mip_aware", _S + "_mip:MIPAwareScorer", "alias of mip")
SCORERS.register("gohsp", "optprune.gohsp._scorer:GraphHeadScorer", "GOHSP head-graph ranking; neurons by magnitude")
SCORERS.register("graph_heads", "optprune.gohsp._scorer:GraphHeadScorer", "alias of gohsp")

_W = "optprune.scoring._weights:"
WEIGHT_SCORERS.register("magnitude", _W + "magnitude_importance", "|w|")
WEIGHT_SCORERS.register("taylor", _W + "taylor_importance", "|w dL/dw|, L the calibration-mean loss")
WEIGHT_SCORERS.register("fisher", _W + "fisher_importance", "w^2 E_n[g_n^2] / 2 (per-sample Fisher, as scorer fisher)")
WEIGHT_SCORERS.register("wanda", _W + "wanda_importance", "|w_ij| ||x_j||_2")
WEIGHT_SCORERS.register("flap", _W + "flap_importance", "w_ij^2 Var(x_j)")
WEIGHT_SCORERS.register("snip", _W + "snip_importance", "SNIP |w dL/dw| on the calibration set as one batch")
WEIGHT_SCORERS.register("synflow", _W + "synflow_importance", "single-shot SynFlow |w| dR/d|w| (data-free)")
WEIGHT_SCORERS.register("synflow_iterative", "optprune.pai._synflow:iterative_synflow_importance",
                        "iterative SynFlow (Tanaka et al. 2020, Algorithm 1: 100 rounds, exponential schedule)")


def normalize_scorer_name(name: Any) -> Any:
    """``"Wanda-SP"`` -> ``"wanda_sp"``: scorer names are matched lower-case with ``-`` read as ``_``."""
    return name.lower().replace("-", "_") if isinstance(name, str) else name


def register_scorer(cls: Any, *aliases: str) -> Any:
    """Add (or replace) a :class:`~optprune.scoring.Scorer` subclass under ``cls.name`` and ``aliases``."""
    for key in (cls.name, *aliases):
        SCORERS.register(key, cls, replace=True)
    return cls


def available_scorers() -> list[str]:
    """Every registered per-unit scorer name, in registration order."""
    return list(SCORERS.names())
