"""Max-sum belief propagation on the class graph when it is a forest (chains, trees): exact there.

Used by the Lagrangian reduction (bounds and max-marginals of every width and
pair of widths) and by :func:`~optprune.formulations.structure_search.minimum_resources`.
"""

from __future__ import annotations

import numpy as np

from optprune.formulations.structure_search._problem import CompiledProblem

__all__ = ["Forest", "forest_min"]


# ----------------------------------------------------------------------------- forest dynamic programming
class Forest:
    """Max-sum belief propagation on the class graph when it is a forest (exact there)."""

    def __init__(self, comp: CompiledProblem) -> None:
        n = len(comp.classes)
        adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for e, (c, d, _) in enumerate(comp.pairs):
            adj[c].append((d, e))
            adj[d].append((c, e))
        self.parent = np.full(n, -1)
        self.parent_edge = np.full(n, -1)
        self.order: list[int] = []
        self.roots: list[int] = []
        seen = np.zeros(n, dtype=bool)
        for root in range(n):
            if seen[root]:
                continue
            self.roots.append(root)
            seen[root] = True
            queue = [root]
            while queue:
                node = queue.pop(0)
                self.order.append(node)
                for other, e in adj[node]:
                    if not seen[other]:
                        seen[other] = True
                        self.parent[other] = node
                        self.parent_edge[other] = e
                        queue.append(other)
        self.children: list[list[int]] = [[] for _ in range(n)]
        for node in self.order:
            if self.parent[node] >= 0:
                self.children[self.parent[node]].append(node)
        self.pairs = comp.pairs

    def _psi(self, edge_w: list[np.ndarray], child: int) -> np.ndarray:
        """Edge weight oriented (parent width, child width)."""
        e = self.parent_edge[child]
        c, _d, _ = self.pairs[e]
        mat = edge_w[e]
        return mat if c == self.parent[child] else mat.T

    def solve(self, node_w: list[np.ndarray], edge_w: list[np.ndarray], *, marginals: bool = False):
        """Max of ``sum node_w + sum edge_w``, its argmax, and optionally node/edge max-marginals."""
        n = len(node_w)
        inside = [None] * n
        up = [None] * n  # message child -> parent, over parent's widths
        for node in reversed(self.order):
            acc = node_w[node].copy()
            for ch in self.children[node]:
                acc += up[ch]
            inside[node] = acc
            if self.parent[node] >= 0:
                up[node] = np.max(self._psi(edge_w, node) + acc[None, :], axis=1)
        idx = np.zeros(n, dtype=np.int64)
        total = 0.0
        for node in self.order:
            if self.parent[node] < 0:
                idx[node] = int(np.argmax(inside[node]))
                total += float(inside[node][idx[node]])
            else:
                row = self._psi(edge_w, node)[idx[self.parent[node]]]
                idx[node] = int(np.argmax(row + inside[node]))
        if not marginals:
            return total, idx, None, None
        full = [None] * n  # node max-marginals (within the node's component)
        down = [None] * n  # message parent -> node, over node's widths
        edge_mm = [None] * len(self.pairs)
        comp_total = np.zeros(n)
        for node in self.order:
            if self.parent[node] < 0:
                full[node] = inside[node].copy()
            else:
                p = self.parent[node]
                outside_p = full[p] - up[node]  # everything at p except the subtree of node
                psi = self._psi(edge_w, node)
                down[node] = np.max(outside_p[:, None] + psi, axis=0)
                full[node] = inside[node] + down[node]
                mm = outside_p[:, None] + psi + inside[node][None, :]
                e = self.parent_edge[node]
                edge_mm[e] = mm if self.pairs[e][0] == p else mm.T
        # each component's max-marginals omit the other components' best values: add them
        root_of = np.zeros(n, dtype=np.int64)
        for node in self.order:
            root_of[node] = node if self.parent[node] < 0 else root_of[self.parent[node]]
        best = {r: float(np.max(inside[r])) for r in self.roots}
        for node in range(n):
            comp_total[node] = total - best[root_of[node]]
            full[node] = full[node] + comp_total[node]
        for e, (c, _d, _) in enumerate(self.pairs):
            edge_mm[e] = edge_mm[e] + comp_total[c]
        return total, idx, full, edge_mm


def forest_min(comp: CompiledProblem, r: int) -> tuple[float, np.ndarray]:
    forest = Forest(comp)
    total, idx, _, _ = forest.solve([-u[r] for u in comp.unary], [-m[r] for _, _, m in comp.pairs])
    return comp.const[r] - total, idx
