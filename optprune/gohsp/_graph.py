r"""Graph-based head ranking: heads as nodes, similarity as edges, importance as a stationary distribution.

GOHSP step 1 (Yin et al. 2023, AAAI, "Graph-based head ranking"): the heads of
all layers are the nodes of one graph; edge ``(i, j)`` carries the similarity
``w_ij >= 0`` of heads ``i`` and ``j`` on calibration data (no self-loops). Its
row-normalised matrix ``P_ij = w_ij / sum_k w_ik`` is a Markov chain; the
importance of head ``i`` is the stationary probability ``pi_i``,

.. math:: \pi = \pi G, \qquad G = \alpha P + (1 - \alpha) \tfrac{1}{n} \mathbf{1}\mathbf{1}^T,

with damping ``alpha`` (``alpha = 1``: the plain chain; ``alpha < 1``: PageRank,
Page et al. 1999, which makes the chain irreducible so ``pi`` is unique). Rows
with no weight (isolated heads) jump uniformly, as in networkx's ``pagerank``.
A head that resembles many heads, strongly, collects probability mass: it
carries the information the block shares, so it is kept first.

Similarity measures (:data:`SIMILARITIES`):

``"correlation"`` (default)
    ``|corr(o_i, o_j)|``: absolute Pearson correlation of the heads' outputs
    ``o_h = softmax(Q_h K_h^T / sqrt d) V_h`` flattened over samples, tokens
    and the head's ``d`` features (all heads have the same ``d``). The output
    is what the head contributes to the residual stream, so it is the default.
``"attention"``
    Cosine similarity of the heads' attention maps ``softmax(Q_h K_h^T / sqrt d)``
    flattened over samples and token pairs (non-negative because the maps are).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.structure import MultiHeadSelfAttention

__all__ = ["SIMILARITIES", "head_activations", "head_graph", "head_importance", "stationary_distribution"]

SIMILARITIES = ("correlation", "attention")


def stationary_distribution(
    weights: np.ndarray, damping: float = 0.85, tol: float = 1e-12, max_iter: int = 100_000
) -> np.ndarray:
    """Stationary distribution of the damped random walk on the weighted graph ``weights`` (power iteration).

    ``weights[i, j] >= 0`` is the weight of edge ``i -> j``. The iteration runs
    on the lazy chain ``(I + G) / 2``, which has the same stationary
    distribution as ``G`` and is aperiodic, so it converges also for
    ``damping = 1`` on periodic chains (e.g. a path). Equals
    ``networkx.pagerank(G, alpha=damping, weight="weight")`` for ``damping < 1``.
    """
    W = np.asarray(weights, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise ShapeMismatchError(f"stationary_distribution: weights must be a non-empty square matrix; got {W.shape}")
    if not np.all(np.isfinite(W)) or np.any(W < 0):
        raise InvalidParameterError("stationary_distribution: weights must be finite and >= 0")
    if not (isinstance(damping, (int, float)) and 0.0 <= damping <= 1.0):
        raise InvalidParameterError(f"stationary_distribution: damping must be in [0, 1]; got {damping!r}")
    n = W.shape[0]
    out = W.sum(axis=1)
    dangling = out <= 0
    P = np.divide(W, out[:, None], out=np.zeros_like(W), where=~dangling[:, None])
    pi = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        step = damping * (pi @ P + pi[dangling].sum() / n) + (1.0 - damping) / n
        new = 0.5 * (pi + step)
        new /= new.sum()
        if np.abs(new - pi).sum() < tol:
            return new
        pi = new
    raise InvalidParameterError(
        f"stationary_distribution: power iteration did not reach tol={tol} in max_iter={max_iter} steps; "
        "raise max_iter or use damping < 1"
    )


def _attention_modules(model: nn.Module) -> list[tuple[str, MultiHeadSelfAttention]]:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, MultiHeadSelfAttention)]
    if not found:
        raise InvalidParameterError(
            f"head ranking: {type(model).__name__} has no MultiHeadSelfAttention block (optprune.structure)"
        )
    dims = {m.head_dim for _, m in found}
    if len(dims) > 1:
        raise ShapeMismatchError(f"head ranking: all heads must have one head_dim to compare them; got {sorted(dims)}")
    return found


def head_activations(
    model: nn.Module, X: torch.Tensor, what: str = "output"
) -> dict[str, torch.Tensor]:
    """Per attention block ``{block name: (heads, features)}``: head outputs or attention maps on ``X``.

    ``what="output"``: rows are ``softmax(Q_h K_h^T/sqrt d) V_h`` flattened
    (samples x tokens x d); ``"attention"``: the maps flattened (samples x tokens x tokens).
    """
    blocks = _attention_modules(model)
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str, module: MultiHeadSelfAttention):
        def run(mod: nn.Module, args: tuple, output: torch.Tensor) -> None:
            x = args[0]
            n, t, _ = x.shape
            h, d = module.q_proj.out_features // module.head_dim, module.head_dim
            q = module.q_proj(x).view(n, t, h, d).transpose(1, 2)
            k = module.k_proj(x).view(n, t, h, d).transpose(1, 2)
            att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)  # (n, h, t, t)
            if what == "attention":
                captured[name] = att.transpose(0, 1).reshape(h, -1)
            else:
                v = module.v_proj(x).view(n, t, h, d).transpose(1, 2)
                captured[name] = (att @ v).transpose(0, 1).reshape(h, -1)
        return run

    for name, module in blocks:
        handles.append(module.register_forward_hook(hook(name, module)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(X)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {name: captured[name] for name, _ in blocks}


def head_graph(activations: dict[str, torch.Tensor], similarity: str = "correlation") -> np.ndarray:
    """Edge weights between all heads (rows in block order, then head order); zero diagonal."""
    if similarity not in SIMILARITIES:
        raise InvalidParameterError(f"head_graph: similarity must be one of {SIMILARITIES}; got {similarity!r}")
    A = torch.cat([a.double() for a in activations.values()], dim=0)
    if similarity == "correlation":
        A = A - A.mean(dim=1, keepdim=True)
    norms = A.norm(dim=1, keepdim=True).clamp_min(1e-12)
    A = A / norms
    S = (A @ A.T).abs().numpy()
    np.fill_diagonal(S, 0.0)
    return S


def head_importance(
    model: nn.Module,
    X: torch.Tensor | np.ndarray,
    similarity: str = "correlation",
    damping: float = 0.85,
    groups: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """``{block name + ".heads": stationary probability of each head}`` (sums to 1 over all heads)."""
    X = torch.as_tensor(np.asarray(X, dtype=np.float32)) if not isinstance(X, torch.Tensor) else X.float()
    acts = head_activations(model, X, "attention" if similarity == "attention" else "output")
    pi = stationary_distribution(head_graph(acts, similarity), damping)
    out, start = {}, 0
    for name, a in acts.items():
        out[f"{name}.heads"] = pi[start : start + a.shape[0]]
        start += a.shape[0]
    if groups is not None:
        out = {g: out[g] for g in groups if g in out}
    return out
