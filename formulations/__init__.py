"""Solver-neutral formulations: each problem becomes one :class:`~optprune.milp.MILP`.

The public modelling layer (constraint learning): build your own model with
:class:`ModelBuilder`, embed trained networks in it with :func:`embed_network`,
add your own rows and objective, and solve it with any backend of
:mod:`optprune.solvers`. The queries optprune itself asks (max-margin,
VNN-LIB conjunctions, minimal distortion) are built on the same layer.
"""

from optprune.formulations._builder import Columns, ModelBuilder
from optprune.formulations.relu_milp import (
    ReluEncoding,
    build_min_distortion_milp,
    build_spec_milp,
    encode_network,
    forward_assignment,
)

__all__ = [
    "ModelBuilder",
    "Columns",
    "embed_network",
    "encode_network",
    "ReluEncoding",
    "build_spec_milp",
    "build_min_distortion_milp",
    "forward_assignment",
]


def __getattr__(name: str):
    # embed_network computes bounds (optprune.verification.bounds), which build on this package's encoding: importing it
    # lazily keeps "bounds -> formulations" the only direction at import time.
    if name == "embed_network":
        from optprune.formulations.embed import embed_network

        return embed_network
    raise AttributeError(f"module 'optprune.formulations' has no attribute {name!r}")
