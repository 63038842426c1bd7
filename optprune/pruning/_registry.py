"""The registry of pruning decisions: every name a ``decision`` may take (Pruner, ``optprune prune``, bench configs).

Torch-free: the built-ins are registered lazily (``"module:attribute"``), so
the CLI's help, bench config validation and error messages list all of them
without importing torch, and the pruning-at-initialisation and BMRS decisions
(defined in :mod:`optprune.pai._methods`) are listed whether or not that
package was imported. An entry is a :class:`~optprune.pruning.ScoredDecision`
(the :class:`~optprune.pruning.Pruner` scores units with a scorer, the
decision keeps some of them) or a :class:`~optprune.pruning.MethodDecision`
(it prunes a model by itself, with no scorer); see
:mod:`optprune.pruning._decisions`. Adding one is a module plus one line here
(or, outside the library, ``DECISIONS.register("mine", MyDecision())``).
"""

from __future__ import annotations

from typing import Any

from optprune.registry import Registry

__all__ = ["DECISIONS"]

#: pruning decisions: name -> ScoredDecision or MethodDecision instance
DECISIONS: Registry[Any] = Registry("decision")

_D = "optprune.pruning._decisions:"
DECISIONS.register("uniform", _D + "UNIFORM", "every group drops the ratio of its lowest-scoring units")
DECISIONS.register("global", _D + "GLOBAL", "one threshold over all groups' normalised scores")
DECISIONS.register("search", _D + "SEARCH", "exact structure search under a parameter budget (1 - ratio)")
DECISIONS.register("adaptive", "optprune.pruning._adaptive:ADAPTIVE",
                   "FLAP adaptive structure: one threshold on standardised scores, cut at 1 - ratio of the parameters")
DECISIONS.register("unstructured", _D + "UNSTRUCTURED", "global magnitude pruning of individual weights")
DECISIONS.register("none", _D + "NO_PRUNING", "no pruning: the dense network (for fine-tuning only)")
DECISIONS.register("bmrs-n", "optprune.pai._methods:BMRS_N", "BMRS, log-normal prior (trains; ignores the ratio)")
DECISIONS.register("bmrs-u", "optprune.pai._methods:BMRS_U", "BMRS_U-8, log-uniform prior (trains; ignores the ratio)")
DECISIONS.register("reconvene", "optprune.pai._methods:RECONVENE", "Reconvene at initialisation (SNIP), then trains")
DECISIONS.register("reconstruct", "optprune.pruning._reconstruct:RECONSTRUCT",
                   "reconstruction-optimal units per group (local search), consumers re-fitted (weights and bias)")
