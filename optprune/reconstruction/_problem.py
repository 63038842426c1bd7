r"""The reconstruction problem of one prunable group, its objective and its least-squares re-fit (NumPy/SciPy only).

A group of ``n`` units (columns of the consumer's input ``X``, ``N x n``) feeds a consumer with weight ``W``
(``n x m``: row ``j`` is what unit ``j`` contributes to the ``m`` outputs). Keeping the units ``S`` and re-fitting
the consumer's rows by ridge regression costs

.. math:: E(S) = \min_{W'} \|Y - X_S W'\|_F^2 + \lambda \|W'\|_F^2
          = \|Y\|_F^2 - \operatorname{tr}\big(C_S^\top (G_{SS} + \lambda I)^{-1} C_S\big),
          \qquad W'^\star_S = (G_{SS} + \lambda I)^{-1} C_S,

with ``G = X^T X``, ``C = X^T Y`` and the target ``Y = X W`` (so ``C = G W`` and ``||Y||^2 = tr(W^T G W)``), or any
other target of the same shape, e.g. the dense model's outputs when ``X`` comes from an already pruned model
(error correction as in SparseGPT, Frantar & Alistarh 2023). Meng et al., "OSSCAR: One-Shot Structured Pruning in
Vision and Language Models with Combinatorial Optimization" (ICML 2024), eq. 3.

*Intercept.* With ``center=True`` the consumer's bias is re-fitted too: least squares with a constant column that
is always kept (and not penalised) equals least squares on centred data, so ``G``, ``C`` and ``||Y||^2`` are taken
about the calibration means ``x̄``, ``ȳ`` and the bias is ``b' = ȳ - x̄_S^T W'_S``. FLAP's bias compensation
(An et al., AAAI 2024, eq. 8) is the special case ``W'_S = W_S`` (no re-fit of the weights).

*Ridge.* ``ridge="auto"`` is ``1e-6`` times the mean of ``diag(G)`` (``λ = 1e-6 tr(G)/n``): it keeps
``G_SS + λI`` positive definite when units are dead (ReLU never active on the calibration set) or collinear,
and moves the objective by a relative ``~1e-6``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from optprune.errors import InvalidParameterError, ShapeMismatchError

__all__ = ["AUTO_RIDGE", "GramAccumulator", "ReconstructionProblem", "ReconstructionResult"]

#: ``ridge="auto"``: this fraction of the mean diagonal of G
AUTO_RIDGE = 1e-6
_TINY = 1e-300


def _ridge_value(ridge: float | str, gram: np.ndarray) -> float:
    if isinstance(ridge, str):
        if ridge != "auto":
            raise InvalidParameterError(f"ReconstructionProblem: ridge must be a number >= 0 or 'auto'; got {ridge!r}")
        n = gram.shape[0]
        return float(AUTO_RIDGE * np.trace(gram) / n) if n else 0.0
    value = float(ridge)
    if not np.isfinite(value) or value < 0:
        raise InvalidParameterError(f"ReconstructionProblem: ridge must be a finite number >= 0; got {ridge!r}")
    return value


@dataclass(frozen=True)
class ReconstructionProblem:
    """``min_S E(S)`` data of one group: ``gram`` G (n x n), ``cross`` C (n x m), ``total`` ``||Y||^2``.

    ``blocks``: block id per unit (units removed together, e.g. the ``head_dim`` columns of one attention head
    or the ``kh*kw`` columns of one input channel of a convolution), ids ``0..B-1``; ``None`` = one block per
    unit. ``ridge`` λ >= 0. ``input_mean``/``target_mean`` (x̄, ȳ) are set when the statistics are centred
    (the consumer's bias is re-fitted, :meth:`refit_bias`). Build with :meth:`from_activations`,
    :meth:`from_gram` or a :class:`GramAccumulator`.
    """

    gram: np.ndarray
    cross: np.ndarray
    total: float
    blocks: np.ndarray | None = None
    ridge: float = 0.0
    input_mean: np.ndarray | None = None
    target_mean: np.ndarray | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        gram = np.ascontiguousarray(self.gram, dtype=np.float64)
        cross = np.asarray(self.cross, dtype=np.float64)
        if cross.ndim == 1:
            cross = cross[:, None]
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
            raise ShapeMismatchError(f"ReconstructionProblem: gram must be square (n x n); got shape {gram.shape}")
        if cross.ndim != 2 or cross.shape[0] != gram.shape[0]:
            raise ShapeMismatchError(
                f"ReconstructionProblem: cross must be (n x m) with n = {gram.shape[0]} rows; got shape {cross.shape}"
            )
        if not (np.isfinite(gram).all() and np.isfinite(cross).all() and np.isfinite(self.total)):
            raise InvalidParameterError("ReconstructionProblem: gram, cross and total must be finite (NaN/Inf found)")
        n = gram.shape[0]
        if self.blocks is None:
            blocks = np.arange(n, dtype=np.int64)
        else:
            blocks = np.asarray(self.blocks).reshape(-1)
            if blocks.size != n or not np.issubdtype(blocks.dtype, np.integer):
                raise ShapeMismatchError(
                    f"ReconstructionProblem: blocks must hold one integer block id per unit ({n}); "
                    f"got {blocks.size} values of type {blocks.dtype}"
                )
            uniq = np.unique(blocks)
            if uniq.size and (uniq[0] != 0 or uniq[-1] != uniq.size - 1):
                raise InvalidParameterError(
                    f"ReconstructionProblem: block ids must be 0..B-1 with every id used; got ids {uniq[:8].tolist()}"
                )
            blocks = blocks.astype(np.int64)
        object.__setattr__(self, "gram", gram)
        object.__setattr__(self, "cross", np.ascontiguousarray(cross))
        object.__setattr__(self, "total", float(self.total))
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "ridge", _ridge_value(self.ridge, gram))
        for name in ("input_mean", "target_mean"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, np.asarray(value, dtype=np.float64).reshape(-1))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_activations(
        cls, X: np.ndarray, W: np.ndarray, blocks: Sequence[int] | np.ndarray | None = None,
        ridge: float | str = "auto", *, target: np.ndarray | None = None, center: bool = False, name: str = "",
    ) -> ReconstructionProblem:
        """From calibration inputs ``X`` (N x n) and consumer weight ``W`` (n x m); target ``X W`` unless given."""
        acc = GramAccumulator()
        acc.add(X, np.asarray(X, dtype=np.float64) @ np.asarray(W, dtype=np.float64) if target is None else target)
        return acc.problem(blocks, ridge, center=center, name=name)

    @classmethod
    def from_gram(
        cls, G: np.ndarray, W: np.ndarray, blocks: Sequence[int] | np.ndarray | None = None,
        ridge: float | str = "auto", *, name: str = "",
    ) -> ReconstructionProblem:
        """From ``G = X^T X`` and ``W``: ``C = G W``, ``total = tr(W^T G W)``."""
        G = np.asarray(G, dtype=np.float64)
        W = np.asarray(W, dtype=np.float64)
        if W.ndim == 1:
            W = W[:, None]
        if W.shape[0] != G.shape[0]:
            raise ShapeMismatchError(f"from_gram: W has {W.shape[0]} rows, G is {G.shape[0]} x {G.shape[1]}")
        C = G @ W
        return cls(G, C, float(np.sum(W * C)), None if blocks is None else np.asarray(blocks), ridge, name=name)

    # ------------------------------------------------------------------ views
    @property
    def n_units(self) -> int:
        return int(self.gram.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.cross.shape[1])

    @property
    def block_ids(self) -> np.ndarray:
        assert self.blocks is not None  # set in __post_init__
        return self.blocks

    @property
    def n_blocks(self) -> int:
        return int(self.block_ids.max()) + 1 if self.n_units else 0

    def block_units(self) -> np.ndarray | None:
        """``(B, b)`` unit indices of every block when all blocks have ``b`` units (None otherwise)."""
        counts = np.bincount(self.block_ids, minlength=self.n_blocks)
        if counts.size == 0 or (counts != counts[0]).any():
            return None
        return np.argsort(self.block_ids, kind="stable").reshape(self.n_blocks, int(counts[0]))

    def unit_mask(self, keep: np.ndarray | Sequence[bool]) -> np.ndarray:
        """A boolean mask over units from one over units (length n) or over blocks (length B)."""
        mask = np.asarray(keep).reshape(-1)
        if mask.dtype != bool:
            raise InvalidParameterError(f"keep must be a boolean mask; got dtype {mask.dtype}")
        if mask.size == self.n_units:
            return mask
        if mask.size == self.n_blocks:
            return mask[self.block_ids]
        raise ShapeMismatchError(
            f"keep has {mask.size} entries; expected {self.n_units} (units) or {self.n_blocks} (blocks)"
        )

    # ------------------------------------------------------------------ objective and re-fit
    def _factor(self, idx: np.ndarray) -> tuple[np.ndarray, bool] | None:
        """Cholesky factor of ``G_SS + λI`` (lower), or None when it is not positive definite."""
        A = self.gram[np.ix_(idx, idx)] + self.ridge * np.eye(idx.size)
        try:
            return linalg.cho_factor(A, lower=True, check_finite=False)
        except linalg.LinAlgError:
            return None

    def _solve(self, idx: np.ndarray) -> np.ndarray:
        """``(G_SS + λI)^{-1} C_S`` (Cholesky); the minimum-norm solution when the matrix is singular."""
        factor = self._factor(idx)
        C_S = self.cross[idx]
        if factor is not None:
            return linalg.cho_solve(factor, C_S, check_finite=False)
        A = self.gram[np.ix_(idx, idx)] + self.ridge * np.eye(idx.size)
        vals, vecs = np.linalg.eigh(A)
        cutoff = max(vals.max(initial=0.0), 0.0) * idx.size * np.finfo(float).eps
        inv = np.where(vals > cutoff, 1.0 / np.where(vals > cutoff, vals, 1.0), 0.0)
        return vecs @ (inv[:, None] * (vecs.T @ C_S))

    def error(self, keep: np.ndarray | Sequence[bool]) -> float:
        """``E(S) = ||Y||^2 - tr(C_S^T (G_SS + λI)^{-1} C_S)`` through a Cholesky factor (never an inverse).

        ``||L^{-1} C_S||_F^2`` with ``G_SS + λI = L L^T``; where that is singular (λ = 0 and dependent units),
        ``tr(C_S^T W'_S)`` with the minimum-norm re-fit. Clipped at 0 against rounding.
        """
        idx = np.flatnonzero(self.unit_mask(keep))
        if idx.size == 0:
            return max(self.total, 0.0)
        factor = self._factor(idx)
        if factor is not None:
            Z = linalg.solve_triangular(factor[0], self.cross[idx], lower=True, check_finite=False)
            explained = float(np.sum(Z * Z))
        else:
            explained = float(np.sum(self.cross[idx] * self._solve(idx)))
        return max(self.total - explained, 0.0)

    def refit(self, keep: np.ndarray | Sequence[bool]) -> np.ndarray:
        """``W'_S = (G_SS + λI)^{-1} C_S`` (|S| x m), rows in unit order."""
        idx = np.flatnonzero(self.unit_mask(keep))
        if idx.size == 0:
            return np.zeros((0, self.n_outputs))
        return self._solve(idx)

    def error_of_weights(self, weights: np.ndarray, keep: np.ndarray | Sequence[bool] | None = None) -> float:
        """``||Y - X_S V||^2 = ||Y||^2 - 2 tr(V^T C_S) + tr(V^T G_SS V)`` for given rows ``V`` (no re-fit, no ridge;
        with centred statistics the bias is at its least-squares value for ``V``). ``keep``: all units if None."""
        idx = np.arange(self.n_units) if keep is None else np.flatnonzero(self.unit_mask(keep))
        V = np.asarray(weights, dtype=np.float64).reshape(idx.size, self.n_outputs)
        G = self.gram[np.ix_(idx, idx)]
        return max(float(self.total - 2.0 * np.sum(V * self.cross[idx]) + np.sum(V * (G @ V))), 0.0)

    def refit_bias(self, keep: np.ndarray | Sequence[bool], weights: np.ndarray | None = None) -> np.ndarray | None:
        """The re-fitted intercept ``ȳ - x̄_S^T W'_S`` (m), or None when the statistics are not centred."""
        if self.input_mean is None or self.target_mean is None:
            return None
        mask = self.unit_mask(keep)
        W_S = self.refit(mask) if weights is None else np.asarray(weights, dtype=np.float64)
        return self.target_mean - self.input_mean[mask] @ W_S

    def relative(self, value: float) -> float:
        """``value / ||Y||^2`` (0 when the target is zero)."""
        return float(value / self.total) if self.total > _TINY else 0.0


class GramAccumulator:
    """Sums over calibration batches: ``Σ x x^T``, ``Σ x y^T``, ``Σ ||y||^2``, ``Σ x``, ``Σ y``, N.

    Memory is ``n^2 + n m`` whatever the calibration size. :meth:`problem` makes the
    :class:`ReconstructionProblem` (raw or centred statistics).
    """

    def __init__(self) -> None:
        self.count = 0
        self.xx: np.ndarray | None = None
        self.xy: np.ndarray | None = None
        self.yy = 0.0
        self.sx: np.ndarray | None = None
        self.sy: np.ndarray | None = None

    def add(self, X: np.ndarray, Y: np.ndarray) -> GramAccumulator:
        """Add a batch: inputs ``X`` (N x n) and targets ``Y`` (N x m), e.g. ``X @ W``."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim == 1:
            Y = Y[:, None]
        if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
            raise ShapeMismatchError(
                f"GramAccumulator.add: X (N x n) and Y (N x m) need the same N; got {X.shape} and {Y.shape}"
            )
        if self.xx is None:
            self.xx = np.zeros((X.shape[1], X.shape[1]))
            self.xy = np.zeros((X.shape[1], Y.shape[1]))
            self.sx = np.zeros(X.shape[1])
            self.sy = np.zeros(Y.shape[1])
        assert self.xy is not None and self.sx is not None and self.sy is not None
        if X.shape[1] != self.xx.shape[0] or Y.shape[1] != self.xy.shape[1]:
            raise ShapeMismatchError(
                f"GramAccumulator.add: batches must keep n = {self.xx.shape[0]}, m = {self.xy.shape[1]}; "
                f"got n = {X.shape[1]}, m = {Y.shape[1]}"
            )
        self.xx += X.T @ X
        self.xy += X.T @ Y
        self.yy += float(np.sum(Y * Y))
        self.sx += X.sum(axis=0)
        self.sy += Y.sum(axis=0)
        self.count += X.shape[0]
        return self

    def problem(
        self, blocks: Sequence[int] | np.ndarray | None = None, ridge: float | str = "auto", *,
        center: bool = False, name: str = "",
    ) -> ReconstructionProblem:
        """The problem from the sums; ``center=True``: statistics about the means (the bias is re-fitted)."""
        if self.xx is None or self.count == 0:
            raise InvalidParameterError("GramAccumulator.problem: no batch was added")
        assert self.xy is not None and self.sx is not None and self.sy is not None
        blk = None if blocks is None else np.asarray(blocks)
        if not center:
            return ReconstructionProblem(self.xx, self.xy, self.yy, blk, ridge, name=name)
        mx, my = self.sx / self.count, self.sy / self.count
        G = self.xx - self.count * np.outer(mx, mx)
        G = 0.5 * (G + G.T)
        C = self.xy - self.count * np.outer(mx, my)
        total = max(self.yy - self.count * float(my @ my), 0.0)
        return ReconstructionProblem(G, C, total, blk, ridge, mx, my, name=name)


@dataclass
class ReconstructionResult:
    """A selection for one group: ``keep`` (bool mask over units), ``weights`` (re-fitted rows of the kept units,
    |S| x m), ``bias`` (re-fitted intercept when the problem is centred), ``objective`` E(S), ``lower_bound``
    (the relaxation's bound, None where not computed), ``status`` ("optimal", "local_optimum", "time_limit",
    "max_rounds", "greedy", "feasible"), ``seconds``, ``method``.
    """

    keep: np.ndarray
    weights: np.ndarray
    objective: float
    lower_bound: float | None
    status: str
    seconds: float
    method: str
    bias: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        """``(objective - lower_bound) / max(objective, tiny)``; None when no bound is known."""
        if self.lower_bound is None:
            return None
        return float((self.objective - self.lower_bound) / max(self.objective, _TINY))

    @property
    def kept_units(self) -> np.ndarray:
        return np.flatnonzero(self.keep)

    def to_dict(self) -> dict:
        """JSON-able summary (without the weights)."""
        return {
            "method": self.method, "status": self.status, "objective": self.objective,
            "lower_bound": self.lower_bound, "gap": self.gap, "seconds": self.seconds,
            "kept": int(np.count_nonzero(self.keep)), "units": int(self.keep.size), **self.info,
        }
