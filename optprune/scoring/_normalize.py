"""Normalisers that make scores of different groups comparable (kept apart from the scorers)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from optprune.errors import InvalidParameterError

__all__ = ["NORMALIZERS", "normalize"]

NORMALIZERS = ("zscore", "lamp", "mean", "none")


def _zscore(s: np.ndarray) -> np.ndarray:
    std = s.std()
    return (s - s.mean()) / std if std > 0 else np.zeros_like(s)


def _lamp(s: np.ndarray, name: str) -> np.ndarray:
    if np.any(s < 0):
        raise InvalidParameterError(
            f"normalize: LAMP needs non-negative scores; group {name!r} has minimum {float(s.min())}"
        )
    order = np.argsort(s, kind="stable")
    sq = s[order] ** 2
    tail = np.cumsum(sq[::-1])[::-1]  # Σ_{v >= u} s_v^2 in ascending order
    out = np.empty_like(s)
    out[order] = np.divide(sq, tail, out=np.zeros_like(sq), where=tail > 0)
    return out


def _mean(s: np.ndarray, name: str) -> np.ndarray:
    m = np.abs(s).mean()
    return s / m if m > 0 else np.zeros_like(s)


def normalize(scores: Mapping[str, np.ndarray], method: str = "zscore") -> dict[str, np.ndarray]:
    r"""Per-group normalisation of ``{group: scores}``.

    * ``zscore``: :math:`(s - \mu_g) / \sigma_g` per group (FLAP's standardisation
      before its global ranking, An et al. 2024, eq. 9); a constant group maps to 0.
    * ``lamp``: with the group's scores sorted ascending,
      :math:`\mathrm{LAMP}(u) = s_u^2 / \sum_{v \ge u} s_v^2` (Lee et al. 2021,
      "Layer-adaptive Sparsity for the Magnitude-based Pruning", ICLR, eq. 3);
      needs non-negative scores.
    * ``mean``: :math:`s / \overline{|s|}_g` (Torch-Pruning's ``group_reduction``
      normaliser "mean").
    * ``none``: unchanged.
    """
    if method not in NORMALIZERS:
        raise InvalidParameterError(f"normalize: method must be one of {NORMALIZERS}, got {method!r}")
    out = {}
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if method == "zscore":
            out[name] = _zscore(s)
        elif method == "lamp":
            out[name] = _lamp(s, name)
        elif method == "mean":
            out[name] = _mean(s, name)
        else:
            out[name] = s.copy()
    return out
