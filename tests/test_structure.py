"""The neutral structure package and the project's one union-find."""

from __future__ import annotations

import optprune.pruning as pruning
import optprune.structure as structure
from optprune._unionfind import UnionFind, is_forest


def test_union_find_keeps_the_smaller_root_and_reports_merges() -> None:
    sets = UnionFind(5)
    assert sets.union(3, 1) == (1, 3)
    assert sets.union(1, 3) is None
    assert sets.union(4, 3) == (1, 4)
    assert sets.find(4) == 1 and sets.roots() == [0, 1, 2]
    assert sets.add() == 5 and len(sets) == 6 and sets.find(5) == 5


def test_is_forest() -> None:
    assert is_forest(4, [(0, 1), (1, 2), (2, 3)])
    assert is_forest(4, [])
    assert not is_forest(3, [(0, 1), (1, 2), (2, 0)])
    assert not is_forest(2, [(0, 1), (1, 0)])  # two parallel edges are a cycle


def test_pruning_re_exports_the_structure_names() -> None:
    for name in ("Group", "Member", "MultiHeadSelfAttention", "dependency_groups", "infer_input_shape", "masked",
                 "SUPPORTED"):
        assert getattr(pruning, name) is getattr(structure, name)
