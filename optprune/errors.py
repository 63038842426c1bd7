"""Every exception optprune raises derives from :class:`OptpruneError`.

Messages say what was wrong, what is allowed and what was received, so a user
never has to read a traceback from deep inside a solver or torch.
"""

from __future__ import annotations

__all__ = [
    "OptpruneError",
    "UnsupportedLayerError",
    "ShapeMismatchError",
    "InvalidWeightsError",
    "UnknownSolverError",
    "SolverNotAvailableError",
    "SolverError",
    "CapabilityError",
    "InfeasibleBudgetError",
    "VNNLibError",
    "DataNotFoundError",
    "NotFittedError",
    "InvalidParameterError",
    "FileFormatError",
]


class OptpruneError(Exception):
    """Base class of every error raised by optprune."""


class UnsupportedLayerError(OptpruneError, TypeError):
    """A torch module or ONNX node that optprune cannot represent."""

    def __init__(self, name: str, kind: str, supported: list[str] | tuple[str, ...]) -> None:
        self.name, self.kind, self.supported = name, kind, tuple(supported)
        super().__init__(
            f"unsupported layer {name!r} of type {kind!r}; supported: {', '.join(self.supported)}"
        )


class ShapeMismatchError(OptpruneError, ValueError):
    """Arrays whose shapes do not fit together."""


class InvalidWeightsError(OptpruneError, ValueError):
    """Weights or biases that contain NaN or Inf."""


class UnknownSolverError(OptpruneError, KeyError):
    """A backend name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class SolverNotAvailableError(OptpruneError, ImportError):
    """A registered backend whose Python package is not installed."""


class SolverError(OptpruneError, RuntimeError):
    """A backend failed while solving; the solver's own message is kept."""


class CapabilityError(OptpruneError, ValueError):
    """A model the chosen backend cannot accept (e.g. continuous variables for CP-SAT)."""


class InfeasibleBudgetError(OptpruneError, ValueError):
    """A resource budget below what the smallest allowed widths need."""

    def __init__(self, message: str, smallest_feasible: float | None = None) -> None:
        self.smallest_feasible = smallest_feasible
        super().__init__(message)


class VNNLibError(OptpruneError, ValueError):
    """A VNN-LIB property that cannot be parsed or does not fit the network."""


class DataNotFoundError(OptpruneError, FileNotFoundError):
    """A data file (MNIST IDX, ONNX network) that is not where it was looked for."""


class NotFittedError(OptpruneError, AttributeError):
    """Results of an estimator were asked for before ``fit``."""


class InvalidParameterError(OptpruneError, ValueError):
    """A constructor parameter outside its allowed range."""


class FileFormatError(OptpruneError, ValueError):
    """A file whose contents are not in the expected format (corrupt IDX file, unreadable model file)."""
