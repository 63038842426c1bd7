"""optprune: pruning decisions by optimization, and ReLU networks embedded in MIPs."""

from optprune._version import __version__
from optprune.errors import OptpruneError
from optprune.milp import MILP, Sense
from optprune.network import AffineLayer, ConvSpec, Network

__all__ = ["__version__", "OptpruneError", "MILP", "Sense", "AffineLayer", "ConvSpec", "Network"]
