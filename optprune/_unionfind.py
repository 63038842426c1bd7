"""One union-find (disjoint sets) for the whole project, torch-free.

Used by the dependency-group analysis (:mod:`optprune.structure`, channel spaces
tied by residual additions) and by the structure search
(:mod:`optprune.formulations.structure_search`, tied groups and the forest test
of the class graph). Path halving, and the smaller index always stays the root,
so a class is named by its earliest member (forward order in a traced model).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["UnionFind", "is_forest"]


class UnionFind:
    """Disjoint sets over ``0 .. n-1``; :meth:`add` appends a new singleton."""

    def __init__(self, n: int = 0) -> None:
        self.parent: list[int] = list(range(int(n)))

    def __len__(self) -> int:
        return len(self.parent)

    def add(self) -> int:
        """A new singleton set; returns its element."""
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        """The root of ``i``'s set (path halving)."""
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> tuple[int, int] | None:
        """Merge the sets of ``a`` and ``b``; ``(root, absorbed root)`` or ``None`` if already one set.

        The smaller root index stays the root.
        """
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return None
        lo, hi = (ra, rb) if ra < rb else (rb, ra)
        self.parent[hi] = lo
        return lo, hi

    def roots(self) -> list[int]:
        """The root of every set, ascending."""
        return [i for i in range(len(self.parent)) if self.find(i) == i]


def is_forest(n: int, edges: Iterable[tuple[int, int]]) -> bool:
    """Whether the undirected graph on ``0 .. n-1`` with ``edges`` has no cycle (parallel edges count)."""
    sets = UnionFind(n)
    return all(sets.union(a, b) is not None for a, b in edges)
