"""Conjunctions of one case shared by two processes that each solve whole-conjunction MIPs.

In engine ``auto``'s race (:class:`optprune.verification.engines.AutoEngine`) one process runs the MIP
pipeline from the start and the other runs branch and bound; when branch and bound has not decided the
case by its share of the time (``AUTO_RELAY_SHARE``) it hands its core to a second MIP pipeline that takes
the conjunctions from the other end of the order. Each conjunction is solved by at most one of the two:
a process *claims* it before its MIP starts and skips those claimed by the other. A conjunction is
*closed* once a proof of it exists (its bound, its MIP, or branch and bound having closed every
subdomain of it), each proof sound on its own under :mod:`optprune.verification.verdicts`, so the case is
``unsat`` once every conjunction is closed, whichever process closed it.

Create a :class:`Claims` before forking (its flags live in shared memory).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable

__all__ = ["Claims"]

_FREE, _CLAIMED, _CLOSED = 0, 1, 2


class Claims:
    """Per conjunction: free, claimed by one MIP process, or closed (a proof exists)."""

    def __init__(self, n_conjunctions: int) -> None:
        self.n = int(n_conjunctions)
        self.state = multiprocessing.get_context("fork").Array("b", self.n)

    def claim(self, i: int) -> bool:
        """Take conjunction ``i`` for this process; False when the other has it or it is closed."""
        with self.state.get_lock():
            if self.state[i] != _FREE:
                return False
            self.state[i] = _CLAIMED
            return True

    def close(self, indices: Iterable[int]) -> None:
        """Conjunctions ``indices`` are proved (each by a sound argument of the caller's)."""
        with self.state.get_lock():
            for i in indices:
                self.state[int(i)] = _CLOSED

    def is_closed(self, i: int) -> bool:
        return self.state[i] == _CLOSED

    def all_closed(self) -> bool:
        return all(s == _CLOSED for s in self.state[:])

    def open_count(self) -> int:
        return sum(s != _CLOSED for s in self.state[:])
