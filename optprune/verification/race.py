"""Engines side by side on one case, one process each: the first to decide wins, the others are stopped.

Branch and bound and the MIP pipeline need different things of an instance (BaB: subdomains whose bounds
fall fast; the MIP: a small encoding), and each runs on one core; with two cores, running them one after
the other (engine ``auto``: BaB for a share of the time, then the MIP) leaves one core idle and gives each
only part of the time. :func:`race` forks one process per engine, each with the whole deadline; the first
outcome that is not ``unknown`` is returned and the other processes are terminated. Each engine's verdict
is sound on its own (the rules of :mod:`optprune.verification.verdicts`; every point re-checked by
:mod:`optprune.verification.counterexample` in its process), so the winner's is too.

Forked children share the parent's memory copy-on-write (the network, the case, the onnxruntime checker is
built in the child on first use); the parent waits on the pipes and does no work. Where ``fork`` is not
available, or the caller is itself a daemonic process (which may not have children), :func:`race` returns
None and the caller runs the engines in sequence.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import wait
from typing import Any

__all__ = ["RACE_GRACE_S", "can_race", "race"]

#: Seconds past the deadline a child may take to report before it is killed (engines stop at the deadline).
RACE_GRACE_S = 5.0


def can_race() -> bool:
    """Fork is available and this process may have children."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    return not multiprocessing.current_process().daemon


def _child(engine, net, case, ctx, conn) -> None:
    if "torch" in sys.modules:  # one core per process: torch's pool would fight the sibling for the other
        sys.modules["torch"].set_num_threads(1)
    try:
        outcome = engine.decide(net, case, ctx)
        conn.send(("ok", outcome))
    except BaseException as exc:
        try:
            conn.send(("error", exc))
        except Exception:  # an exception that does not pickle: its type and message
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def race(jobs: Sequence[tuple[object, object]], net, case, end: float) -> list | None:
    """Run ``engine.decide(net, case, ctx)`` for each ``(engine, ctx)`` of ``jobs`` in its own process.

    Returns the outcomes in ``jobs`` order (None for an engine stopped or silent) as soon as one is not
    ``unknown`` or all have reported; ``end`` (``time.perf_counter``) is the deadline the contexts share,
    after which a child gets :data:`RACE_GRACE_S` more seconds. An exception in a child is raised here.
    Returns None, running nothing, when processes cannot be forked (:func:`can_race`).
    """
    if not can_race():
        return None
    mp = multiprocessing.get_context("fork")
    procs, conns = [], []
    try:
        for engine, ctx in jobs:
            recv, send = mp.Pipe(duplex=False)
            proc = mp.Process(target=_child, args=(engine, net, case, ctx, send), daemon=True)
            proc.start()
            send.close()
            procs.append(proc)
            conns.append(recv)
        outcomes: list = [None] * len(jobs)
        pending = dict(enumerate(conns))
        while pending:
            left = end + RACE_GRACE_S - time.perf_counter()
            ready = wait(list(pending.values()), timeout=max(left, 0.0))
            if not ready:
                break
            for ready_conn in ready:
                i = next(k for k, c in pending.items() if c is ready_conn)
                conn: Any = pending[i]
                del pending[i]
                try:
                    kind, payload = conn.recv()  # ("ok", CaseOutcome) or ("error", exception)
                except EOFError:  # the child died without a word (killed, out of memory)
                    continue
                if kind == "error":
                    raise payload
                outcomes[i] = payload
                if payload.verdict != "unknown":
                    return outcomes
        return outcomes
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for conn in conns:
            conn.close()
