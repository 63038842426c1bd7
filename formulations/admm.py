r"""ADMM for training under heterogeneous structured sparsity (the optimisation step of GOHSP).

Yin, Uzkent, Shen, Jin, Yuan 2023, "GOHSP: A Unified Framework of Graph and
Optimization-based Heterogeneous Structured Pruning for Vision Transformers"
(AAAI), section "Optimization-based structured pruning". The problem is

.. math:: \min_W f(W) \quad \text{s.t.} \quad W \in S,

where ``W`` is split into groups ``g`` (one attention block's heads, one MLP
block's neurons), each a matrix whose row ``j`` holds every parameter unit ``j``
owns, and ``S = { W : group g has at most k_g nonzero rows }`` with a different
``k_g`` per group (heterogeneous: the counts come from the structure search).
Scaled-form ADMM (Boyd et al. 2011, "Distributed Optimization and Statistical
Learning via the Alternating Direction Method of Multipliers", section 3.1.1)
splits ``W = Z``:

.. math::

    W^{t+1} &= \arg\min_W f(W) + \tfrac{\rho_t}{2}\|W - Z^t + U^t\|^2   \quad\text{(W-step: a few SGD epochs)}\\
    Z^{t+1} &= \Pi_S(W^{t+1} + U^t)                                       \quad\text{(Z-step: projection)}\\
    U^{t+1} &= U^t + W^{t+1} - Z^{t+1}                                     \quad\text{(U-step: dual update)}

with primal residual ``r = ||W^{t+1} - Z^{t+1}||`` and dual residual
``s = rho_t ||Z^{t+1} - Z^t||`` recorded per iteration, and ``rho`` growing
geometrically (``rho_t = min(rho_0 gamma^t, rho_max)``), which drives ``W``
into ``S``. When the penalty grows, the scaled dual is rescaled
``U <- U rho_t / rho_{t+1}`` (Boyd et al., section 3.4.1).

The Z-step keeps, in each group, the ``k_g`` rows of largest ``c_j ||v_j||^2``:
the exact projection onto ``S`` in the metric ``sum_j c_j ||z_j - v_j||^2``
(Euclidean when all ``c_j = 1``). GOHSP's graph importance enters as ``c``: a
head the graph ranks high needs a smaller norm to stay, the "soft guideline".

This module is solver-neutral and torch-free: it sees only NumPy arrays; the
W-step is a callable supplied by the caller (:mod:`optprune.gohsp` trains a
torch model there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from optprune.errors import InvalidParameterError, ShapeMismatchError

__all__ = [
    "ADMMIterate",
    "ADMMResult",
    "StructuredSet",
    "admm",
    "admm_step",
    "project",
    "project_rows",
    "rho_schedule",
]

Arrays = Mapping[str, np.ndarray]
WStep = Callable[[dict[str, np.ndarray], float], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class StructuredSet:
    """``S``: group ``g`` keeps at most ``keep[g]`` nonzero rows; ``weights[g]`` the metric weights ``c`` (> 0)."""

    keep: Mapping[str, int]
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        keep = {}
        for name, k in self.keep.items():
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise InvalidParameterError(f"StructuredSet: keep[{name!r}] must be an integer >= 0; got {k!r}")
            keep[str(name)] = int(k)
        weights = {}
        for name, w in self.weights.items():
            if name not in keep:
                raise InvalidParameterError(
                    f"StructuredSet: weights given for group {name!r}, which has no keep count; groups: {sorted(keep)}"
                )
            arr = np.asarray(w, dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
                raise InvalidParameterError(
                    f"StructuredSet: weights of group {name!r} must be finite and > 0; got min {arr.min()!r}"
                )
            weights[str(name)] = arr
        object.__setattr__(self, "keep", keep)
        object.__setattr__(self, "weights", weights)


def project_rows(V: np.ndarray, keep: int, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(Z, kept)``: ``V`` with all but the ``keep`` rows of largest ``c_j ||v_j||^2`` set to zero.

    The exact minimiser of ``sum_j c_j ||z_j - v_j||^2`` over matrices with at most
    ``keep`` nonzero rows (dropping row ``j`` costs ``c_j ||v_j||^2``, keeping it
    costs nothing). Ties go to the lower row index. ``kept`` is sorted.
    """
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2:
        raise ShapeMismatchError(f"project_rows: V must be a matrix (units x features); got shape {V.shape}")
    n = V.shape[0]
    if not 0 <= keep <= n:
        raise InvalidParameterError(f"project_rows: keep must be in 0..{n} (rows of V); got {keep}")
    cost = np.einsum("ij,ij->i", V, V)
    if weights is not None:
        c = np.asarray(weights, dtype=np.float64).reshape(-1)
        if c.shape != (n,):
            raise ShapeMismatchError(f"project_rows: {c.size} weights for {n} rows")
        cost = cost * c
    order = np.lexsort((np.arange(n), -cost))  # largest cost first, ties by index
    kept = np.sort(order[:keep])
    Z = np.zeros_like(V)
    Z[kept] = V[kept]
    return Z, kept


def project(V: Arrays, S: StructuredSet) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Projection of every group of ``V`` onto ``S`` (groups absent from ``S`` pass unchanged)."""
    Z, kept = {}, {}
    for name, v in V.items():
        if name in S.keep:
            Z[name], kept[name] = project_rows(v, S.keep[name], S.weights.get(name))
        else:
            Z[name] = np.asarray(v, dtype=np.float64).copy()
            kept[name] = np.arange(np.asarray(v).shape[0])
    return Z, kept


def rho_schedule(rho: float, growth: float, iterations: int, rho_max: float = np.inf) -> np.ndarray:
    """``rho_t = min(rho * growth^t, rho_max)`` for ``t = 0..iterations-1``."""
    for name, value, low in (("rho", rho, 0.0), ("growth", growth, 1.0)):
        if not np.isfinite(value) or value < low or (name == "rho" and value == 0):
            raise InvalidParameterError(f"rho_schedule: {name} must be finite and {'> 0' if low == 0 else '>= 1'}; "
                                        f"got {value!r}")
    if iterations < 0:
        raise InvalidParameterError(f"rho_schedule: iterations must be >= 0; got {iterations}")
    return np.minimum(rho * growth ** np.arange(iterations, dtype=np.float64), rho_max)


@dataclass(frozen=True)
class ADMMIterate:
    """One iteration's record: penalty, residuals, and the rows each group kept in the Z-step."""

    iteration: int
    rho: float
    primal_residual: float
    dual_residual: float
    kept: dict[str, list[int]]

    def to_dict(self) -> dict:
        return {"iteration": self.iteration, "rho": self.rho, "primal_residual": self.primal_residual,
                "dual_residual": self.dual_residual, "kept": self.kept}


@dataclass(frozen=True)
class ADMMResult:
    """Final ``W``, ``Z``, ``U`` (per group) and the history of :class:`ADMMIterate`."""

    W: dict[str, np.ndarray]
    Z: dict[str, np.ndarray]
    U: dict[str, np.ndarray]
    kept: dict[str, np.ndarray]
    history: list[ADMMIterate]


def _norm(parts: Arrays) -> float:
    return float(np.sqrt(sum(float(np.sum(np.square(p))) for p in parts.values())))


def admm_step(
    w_step: WStep, Z: Arrays, U: Arrays, rho: float, S: StructuredSet, iteration: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], ADMMIterate]:
    """One ADMM iteration: ``W = w_step(Z - U, rho)``, ``Z+ = Π_S(W + U)``, ``U+ = U + W - Z+``.

    ``w_step(target, rho)`` returns (approximately) ``argmin_W f(W) + rho/2 ||W - target||^2``.
    Returns ``(W, Z+, U+, record)``.
    """
    if set(Z) != set(U):
        raise ShapeMismatchError(f"admm_step: Z has groups {sorted(Z)} but U has {sorted(U)}")
    target = {g: np.asarray(Z[g], dtype=np.float64) - np.asarray(U[g], dtype=np.float64) for g in Z}
    W = {g: np.asarray(w, dtype=np.float64) for g, w in w_step(target, float(rho)).items()}
    if set(W) != set(Z) or any(W[g].shape != np.shape(Z[g]) for g in Z):
        raise ShapeMismatchError("admm_step: the W-step returned groups or shapes that differ from Z")
    Z_new, kept = project({g: W[g] + U[g] for g in W}, S)
    U_new = {g: U[g] + W[g] - Z_new[g] for g in W}
    record = ADMMIterate(
        iteration=int(iteration),
        rho=float(rho),
        primal_residual=_norm({g: W[g] - Z_new[g] for g in W}),
        dual_residual=float(rho) * _norm({g: Z_new[g] - Z[g] for g in W}),
        kept={g: [int(i) for i in kept[g]] for g in S.keep if g in kept},
    )
    return W, Z_new, U_new, record


def admm(
    w_step: WStep,
    W0: Arrays,
    S: StructuredSet,
    *,
    rho: float = 1e-3,
    growth: float = 2.0,
    iterations: int = 5,
    rho_max: float = np.inf,
) -> ADMMResult:
    """Run :func:`admm_step` ``iterations`` times from ``Z = Π_S(W0)``, ``U = 0`` with :func:`rho_schedule`."""
    rhos = rho_schedule(rho, growth, iterations, rho_max)
    W = {g: np.asarray(w, dtype=np.float64).copy() for g, w in W0.items()}
    Z, kept = project(W, S)
    U = {g: np.zeros_like(w) for g, w in W.items()}
    history = []
    for t, r in enumerate(rhos):
        W, Z, U, record = admm_step(w_step, Z, U, r, S, t)
        kept = {g: np.asarray(v) for g, v in record.kept.items()}
        history.append(record)
        if t + 1 < len(rhos) and rhos[t + 1] != r:  # scaled dual: U = y / rho
            U = {g: u * (r / rhos[t + 1]) for g, u in U.items()}
    return ADMMResult(W, Z, U, kept, history)
