"""Branch and bound and the MIP as one team: what two raced processes share about one case.

In a plain race (:mod:`optprune.verification.race`) each engine must decide
every conjunction of a case alone. With a :class:`Board` (created before the
processes fork), the two work on one proof:

* each conjunction closed by either process is flagged (``1``: by branch and
  bound, ``2``: by the MIP); the other process drops it (BaB: every open
  subdomain of it; the MIP: its whole-conjunction solve is interrupted or
  skipped). The case is ``unsat`` once every conjunction is flagged, each flag
  being a proof under the rules of :mod:`optprune.verification.verdicts`;
* once its whole-conjunction pass is over, the MIP process takes open BaB
  subdomains one at a time (:meth:`MipSide.take`), solves the subdomain MIP
  of :mod:`optprune.verification.subdomain_mip` within a time slice and
  answers ``closed`` (BaB drops that subdomain and every descendant of it) or
  ``open`` (BaB keeps searching it; it never stopped doing so).

BaB keeps every handed subdomain in its own pool, so an answer that never
comes costs nothing but the MIP's time, and ``unsat`` still needs every
subdomain closed by one of the two. :class:`BabSide` is the
:class:`Helper` that :func:`optprune.verification.bab.bab_verify_case` takes.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterable
from typing import Protocol

from optprune.verification.subdomain_mip import Subdomain

__all__ = ["Board", "BabSide", "Helper", "MipSide"]

BY_BAB, BY_MIP = 1, 2


class Helper(Protocol):
    """What branch and bound sees of a MIP working beside it."""

    def closed(self) -> Iterable[int]:
        """Conjunctions the helper has proved (every subdomain of them may be dropped)."""
        ...

    def close(self, spec: int) -> None:
        """Branch and bound has closed conjunction ``spec``."""
        ...

    def idle(self) -> bool:
        """The helper takes a subdomain now."""
        ...

    def send(self, tag: int, dom: Subdomain) -> None:
        """Hand subdomain ``dom`` (identified by ``tag``) to the helper."""
        ...

    def answers(self) -> list[tuple[int, str]]:
        """``(tag, "closed" | "open")`` for every subdomain answered since the last call."""
        ...

    def working(self) -> int:
        """The conjunction the helper's whole-conjunction MIP works on now (-1: none)."""
        ...


class Board:
    """Shared memory and queues of one race of BaB and the MIP on one case (create before forking)."""

    def __init__(self, n_conjunctions: int, *, conj_share: float = 0.3, domain_share: float = 0.1,
                 handoff: str = "top") -> None:
        mp = multiprocessing.get_context("fork")
        self.n = int(n_conjunctions)
        # The MIP process's time slices: one whole-conjunction MIP at most ``conj_share`` of the time left (1.0:
        # all of it, as in a plain race), one subdomain MIP ``domain_share`` (at least 1 s); which subdomain BaB
        # hands over: BaBSettings.handoff.
        self.conj_share, self.domain_share, self.handoff = float(conj_share), float(domain_share), handoff
        self.flags = mp.Array("b", self.n)  # 0 open, BY_BAB / BY_MIP closed
        self.jobs = mp.Queue()  # BaB -> MIP: (tag, Subdomain)
        self.replies = mp.Queue()  # MIP -> BaB: (tag, verdict)
        self.pending = mp.Value("i", 0)  # subdomains sent and not answered
        self.ready = mp.Value("b", 0)  # the MIP process takes subdomains
        self.working = mp.Value("i", -1)  # the conjunction of the MIP's whole-conjunction solve, -1: none

    def flag(self, spec: int, by: int) -> None:
        with self.flags.get_lock():
            if self.flags[spec] == 0:
                self.flags[spec] = by

    def all_closed(self) -> bool:
        return all(f != 0 for f in self.flags[:])

    def bab_side(self) -> BabSide:
        return BabSide(self)

    def mip_side(self) -> MipSide:
        return MipSide(self)


class BabSide:
    """The :class:`Helper` of the BaB process."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def closed(self) -> list[int]:
        return [i for i, f in enumerate(self.board.flags[:]) if f == BY_MIP]

    def close(self, spec: int) -> None:
        self.board.flag(spec, BY_BAB)

    def idle(self) -> bool:
        return bool(self.board.ready.value) and self.board.pending.value == 0

    def send(self, tag: int, dom: Subdomain) -> None:
        with self.board.pending.get_lock():
            self.board.pending.value += 1
        self.board.jobs.put((tag, dom))

    def working(self) -> int:
        return int(self.board.working.value)

    def answers(self) -> list[tuple[int, str]]:
        out = []
        while True:
            try:
                out.append(self.board.replies.get_nowait())
            except queue.Empty:
                return out


class MipSide:
    """The MIP process's side of the :class:`Board`."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def is_closed(self, spec: int) -> bool:
        return self.board.flags[spec] != 0

    def close(self, spec: int) -> None:
        self.board.flag(spec, BY_MIP)

    def all_closed(self) -> bool:
        return self.board.all_closed()

    def start_taking(self) -> None:
        self.board.working.value = -1
        self.board.ready.value = 1

    def work_on(self, spec: int) -> None:
        """The whole-conjunction MIP of ``spec`` starts (-1: it ended)."""
        self.board.working.value = int(spec)

    def take(self, timeout: float) -> tuple[int, Subdomain] | None:
        try:
            return self.board.jobs.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def reply(self, tag: int, verdict: str) -> None:
        self.board.replies.put((tag, verdict))
        with self.board.pending.get_lock():
            self.board.pending.value -= 1
