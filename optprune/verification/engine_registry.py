"""The verification engines' registry, listable without importing them (no torch to print ``--help``).

``ENGINES`` maps ``method`` names (``verify_property(method=...)``, ``optprune
verify --method``, bench ``vnnlib`` queries) to the engine objects of
:mod:`optprune.verification.engines`, registered lazily. A new engine is a
class with ``name`` and ``decide(net, case, ctx)`` plus one line here.
"""

from __future__ import annotations

from optprune.registry import Registry

__all__ = ["ENGINES"]

ENGINES: Registry = Registry("method")
ENGINES.register("auto", "optprune.verification.engines:AUTO_ENGINE", "bab, then mip (the default)")
ENGINES.register("mip", "optprune.verification.engines:MIP_ENGINE", "bounds, attack, decision MIPs")
ENGINES.register("bab", "optprune.verification.engines:BAB_ENGINE", "branch and bound on α/β-CROWN bounds")
ENGINES.register("bounds", "optprune.verification.engines:BOUNDS_ENGINE", "bounds only (no attack, no search)")
ENGINES.register("coop", "optprune.verification.engines:COOP_ENGINE",
                 "auto; raced, BaB and the MIP share closed conjunctions and BaB's subdomains")
