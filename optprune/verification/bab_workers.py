"""Branch and bound on several cores: the open subdomains dealt out as pieces to forked worker processes.

Torch's intra-op threads share one search's batched products between the cores, but much of a round is
Python and small tensor operations that run on one core whatever the thread count. Subdomains are
independent (a case is ``unsat`` only when every one is closed, ``sat`` when any has a point), so
:func:`search_in_workers` first runs the ordinary loop here until ``PIECES_PER_WORKER`` open subdomains per
worker exist (none when the root already leaves that many conjunctions open), then forks ``workers``
processes with one torch thread each. Each claims the next unclaimed piece (largest bound first: the longest
jobs go first, which balances the cores best), runs the loop (:func:`optprune.verification.bab._search`) on it
until it is closed, then claims the next. Several pieces per worker keep the tail short when one piece is
much harder than the others.

The verdict is combined soundly: ``sat`` from a worker's point, confirmed again here; ``unsat`` only when
every piece was claimed and closed and no fully split subdomain was left unclosable; anything else is
``unknown``. A conjunction is reported closed when all its pieces are. Each worker gets ``1/workers`` of the
memory bound. Forked children share the parent's tensors copy-on-write, as in
:mod:`optprune.verification.race`; where ``fork`` is unavailable or this process may not have children,
:func:`search_in_workers` returns None and the caller searches in this process.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import wait
from typing import Any

import torch

from optprune.verification.race import RACE_GRACE_S, can_race

__all__ = ["PIECES_PER_WORKER", "search_in_workers"]

#: Open subdomains per worker before forking: the pieces the workers claim one at a time.
PIECES_PER_WORKER = 4

_LOOP_STAGES = ("bab", "bab_branch", "bab_bound", "bab_share")


def _fresh(res):
    """A copy of the root's result to run one search into (loop counters at zero, stages copied)."""
    return replace(res, stages=dict(res.stages), domains=0, rounds=0, shrink_rounds=0, lp_leaves=0, max_open=0,
                   closed_conjunctions=[], open_bound=None, message="")


def _worker(search, pieces, claimed, tn, net, spec, roots, res, deadline, confirm, s, start, conn) -> None:
    torch.set_num_threads(1)  # one core per process (and the parent's OpenMP pool is not used after fork)
    total = _fresh(res)
    closed: list[int] = []
    try:
        while time.perf_counter() < deadline:
            with claimed.get_lock():
                k = claimed.value
                claimed.value += 1
            if k >= len(pieces):
                break
            r = search(tn, net, spec, roots, pieces.take(torch.tensor([k])), _fresh(res), deadline, confirm, s, start)
            _add(total, r)
            if r.verdict == "unsat":
                closed.append(k)
                continue
            total.verdict, total.message = r.verdict, r.message
            total.counterexample, total.output, total.open_bound = r.counterexample, r.output, r.open_bound
            break
        conn.send(("ok", (total, closed)))
    except BaseException as exc:  # reported, not swallowed: the parent raises it
        conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _add(into, r) -> None:
    """Add the loop counters of search result ``r`` to ``into`` (stages: each process's loop seconds, summed)."""
    into.domains += r.domains
    into.rounds += r.rounds
    into.shrink_rounds += r.shrink_rounds
    into.lp_leaves += r.lp_leaves
    into.max_open = max(into.max_open, r.max_open)
    for name in _LOOP_STAGES:
        into.stages[name] += r.stages[name]


def search_in_workers(search: Callable[..., Any], presplit_type: Callable[..., Any], workers: int, tn: Any, net: Any,
                      spec: Any, roots: Any, open_: Any, res: Any, deadline: float, confirm: Callable[..., Any],
                      s: Any, start: float) -> tuple[Any, str, str, tuple | None] | None:
    """Search ``open_`` in ``workers`` forked processes (module doc).

    ``search`` is :func:`optprune.verification.bab._search` and ``presplit_type`` its
    :class:`~optprune.verification.bab._Presplit` (passed in, so that this module does not import
    :mod:`optprune.verification.bab`). Returns ``(res, verdict, decided_by, point)`` for the caller to
    finish ``res`` with (``point``: ``(x, y)`` confirmed here, or None), or None when processes cannot be
    forked (the caller then searches here).
    """
    if not can_race():
        return None
    P = spec.C.shape[0]
    stuck: set[int] = set()
    pieces = open_
    if len(open_) < PIECES_PER_WORKER * workers:
        cut = presplit_type(until=PIECES_PER_WORKER * workers)
        res = search(tn, net, spec, roots, open_, res, deadline, confirm, s, start, presplit=cut)
        if cut.pool is None:  # decided (or out of time) before there were enough pieces
            return res, res.verdict, res.decided_by, None
        pieces, stuck = cut.pool, set(cut.stuck)
    pieces = pieces.take(torch.argsort(pieces.value, descending=True))
    value = pieces.value.tolist()
    owner = pieces.spec.tolist()
    workers = min(int(workers), len(pieces))
    mp = multiprocessing.get_context("fork")
    claimed = mp.Value("i", 0)
    s_each = replace(s, max_memory=s.max_memory / workers, max_domains=max(1, s.max_domains // workers))
    res.workers = workers
    t = time.perf_counter()
    procs, conns, results = [], [], []
    closed: set[int] = set()  # the pieces the workers closed
    try:
        for _ in range(workers):
            recv, send = mp.Pipe(duplex=False)
            proc = mp.Process(target=_worker, daemon=True,
                              args=(search, pieces, claimed, tn, net, spec, roots, res, deadline, confirm, s_each,
                                    start, send))
            proc.start()
            send.close()
            procs.append(proc)
            conns.append(recv)
        pending = list(conns)
        while pending:
            ready = wait(pending, timeout=max(deadline + RACE_GRACE_S - time.perf_counter(), 0.0))
            if not ready:
                break
            for conn in ready:
                pending.remove(conn)
                try:
                    kind, payload = conn.recv()
                except EOFError:  # died without a word (killed): its pieces stay open
                    continue
                if kind == "error":
                    raise payload
                total, done = payload
                results.append(total)
                closed.update(done)
                if total.verdict == "sat":
                    ok, x, y = confirm(total.counterexample)  # re-checked here, whatever the child said
                    if ok:
                        _merge(res, results, t)
                        return res, "sat", "bab", (x, y)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=1.0)
        for conn in conns:
            conn.close()
    _merge(res, results, t)
    open_pieces = [k for k in range(len(pieces)) if k not in closed]
    left = {owner[k] for k in open_pieces} | stuck
    res.closed_conjunctions = [i for i in range(P) if i not in left]
    if not open_pieces and not stuck:
        return res, "unsat", "bab", None
    unclaimed = range(min(claimed.value, len(pieces)), len(pieces))  # never searched: their bound is what is known
    bounds = [r.open_bound for r in results if r.open_bound is not None] + [value[k] for k in unclaimed]
    res.open_bound = max(bounds) if bounds else None
    res.message = "; ".join(sorted({r.message for r in results if r.message})) or (
        f"{len(open_pieces)} of {len(pieces)} pieces left open by {len(results)}/{workers} workers"
        + (f"; fully split subdomains of conjunction(s) {sorted(stuck)} could not be closed" if stuck else ""))
    return res, "unknown", "", None


def _merge(res, results, t: float) -> None:
    """The workers' counters added to what the search here did before forking at ``t``."""
    res.loop_wall_s = res.stages["bab"] + time.perf_counter() - t
    for r in results:
        _add(res, r)
