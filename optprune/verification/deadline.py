"""One deadline that every verification stage respects.

A query is given ``time_limit`` seconds once; each stage (bounds, attack, MIP,
branch and bound, the engines of ``auto``) receives the same :class:`Deadline`
or a :meth:`~Deadline.share` of it, instead of recomputing its own slice of the
time left. No stage can be handed more than what is left.
"""

from __future__ import annotations

import math
import time

__all__ = ["Deadline"]


class Deadline:
    """A point in time (``time.perf_counter``) after which a stage stops; ``inf`` means none."""

    __slots__ = ("end",)

    def __init__(self, seconds: float = math.inf) -> None:
        self.end = time.perf_counter() + seconds if math.isfinite(seconds) else math.inf

    @classmethod
    def at(cls, end: float) -> Deadline:
        """The deadline ending at ``end`` (a ``time.perf_counter`` value)."""
        d = cls()
        d.end = end
        return d

    def left(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.end - time.perf_counter())

    def expired(self) -> bool:
        return time.perf_counter() >= self.end

    def seconds(self, fraction: float = 1.0, *, floor: float = 0.0, cap: float = math.inf) -> float:
        """``fraction`` of the time left, raised to ``floor`` and lowered to ``cap``, but never more than is left."""
        left = self.left()
        return min(left, min(cap, max(floor, fraction * left)))

    def share(self, fraction: float = 1.0, *, floor: float = 0.0, cap: float = math.inf) -> Deadline:
        """A deadline :meth:`seconds` from now: a stage's share, which always ends no later than this one."""
        return Deadline.at(min(self.end, time.perf_counter() + self.seconds(fraction, floor=floor, cap=cap)))

    def __repr__(self) -> str:
        return f"Deadline(left={self.left():.3f} s)"
