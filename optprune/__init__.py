"""optprune: pruning decisions by optimization, and ReLU networks embedded in MIPs."""

from optprune._version import __version__
from optprune.errors import OptpruneError
from optprune.milp import MILP, Sense, read_model
from optprune.network import AffineLayer, ConvSpec, Network

__all__ = ["__version__", "OptpruneError", "MILP", "Sense", "read_model", "AffineLayer", "ConvSpec", "Network"]
