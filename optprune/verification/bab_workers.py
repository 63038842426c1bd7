"""Branch and bound on several cores: the open conjunctions dealt to forked worker processes.

Torch's intra-op threads share one search's batched products between the cores, but much of a round is
Python and small tensor operations that run on one core whatever the thread count. When the root leaves
two or more conjunctions open, their searches are independent (a case is ``unsat`` only when every
conjunction is closed, ``sat`` when any has a point), so :func:`search_in_workers` forks ``workers``
processes with one torch thread each; each claims the next unclaimed conjunction (hardest root bound
first: the longest jobs go first, which balances the cores best), runs the ordinary loop
(:func:`optprune.verification.bab._search`) on it until it is closed, then claims the next.

The verdict is combined soundly: ``sat`` from a worker's point, confirmed again here; ``unsat`` only when
every worker closed every conjunction it claimed and every open conjunction was claimed; anything else is
``unknown``. Each worker gets ``1/workers`` of the memory bound. Forked children share the parent's tensors
copy-on-write, as in :mod:`optprune.verification.race`; where ``fork`` is unavailable or this process may
not have children, :func:`search_in_workers` returns None and the caller searches in this process.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import replace
from multiprocessing.connection import wait

import torch

from optprune.verification.race import RACE_GRACE_S, can_race

__all__ = ["search_in_workers"]


def _worker(search, order, claimed, tn, net, spec, roots, open_, res, deadline, confirm, s, start, conn) -> None:
    torch.set_num_threads(1)  # one core per process (and the parent's OpenMP pool is not used after fork)
    total = replace(res, stages=dict(res.stages), closed_conjunctions=[])
    try:
        while time.perf_counter() < deadline:
            with claimed.get_lock():
                k = claimed.value
                claimed.value += 1
            if k >= len(order):
                break
            conj = order[k]
            one = open_.take((open_.spec == conj).nonzero().flatten())
            r = search(tn, net, spec, roots, one, replace(res, stages=dict(res.stages), domains=0), deadline,
                       confirm, s, start)
            _add(total, r)
            if r.verdict == "unsat":
                total.closed_conjunctions.append(conj)
                continue
            total.verdict, total.message = r.verdict, r.message
            total.counterexample, total.output, total.open_bound = r.counterexample, r.output, r.open_bound
            break
        conn.send(("ok", total))
    except BaseException as exc:  # reported, not swallowed: the parent raises it
        conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _add(total, r) -> None:
    """Accumulate a conjunction's search into the worker's totals (the root stages counted once)."""
    total.domains += r.domains
    total.rounds += r.rounds
    total.lp_leaves += r.lp_leaves
    total.max_open = max(total.max_open, r.max_open)
    for k in ("bab", "bab_branch", "bab_bound", "bab_share"):
        total.stages[k] += r.stages[k]  # each search starts from zero loop stages (the root phase sets none)


def search_in_workers(search, workers: int, tn, net, spec, roots, open_, res, deadline: float, confirm, s, start):
    """Run ``search`` on the conjunctions of ``open_`` in ``workers`` forked processes (module doc).

    Returns the combined :class:`~optprune.verification.bab.BaBResult`, or None when processes cannot be
    forked (the caller then searches here).
    """
    if not can_race():
        return None
    from optprune.verification.bab import _done, _sat  # bab imports this module lazily: no cycle at import

    value = open_.value.tolist()
    order = [int(open_.spec[i]) for i in sorted(range(len(open_)), key=lambda i: -value[i])]
    workers = min(int(workers), len(order))
    mp = multiprocessing.get_context("fork")
    claimed = mp.Value("i", 0)
    s_each = replace(s, max_memory=s.max_memory / workers, max_domains=max(1, s.max_domains // workers))
    root_domains = res.domains
    res.workers = workers
    t = time.perf_counter()
    procs, conns = [], []
    try:
        for _ in range(workers):
            recv, send = mp.Pipe(duplex=False)
            proc = mp.Process(target=_worker, daemon=True,
                              args=(search, order, claimed, tn, net, spec, roots, open_, res, deadline, confirm,
                                    s_each, start, send))
            proc.start()
            send.close()
            procs.append(proc)
            conns.append(recv)
        results = []
        pending = list(conns)
        while pending:
            ready = wait(pending, timeout=max(deadline + RACE_GRACE_S - time.perf_counter(), 0.0))
            if not ready:
                break
            for conn in ready:
                pending.remove(conn)
                try:
                    kind, payload = conn.recv()
                except EOFError:  # died without a word (killed): its conjunctions stay open
                    continue
                if kind == "error":
                    raise payload
                results.append(payload)
                if payload.verdict == "sat":
                    ok, x, y = confirm(payload.counterexample)  # re-checked here, whatever the child said
                    if ok:
                        _merge(res, results, root_domains, t)
                        return _sat(res, (x, y), "bab", start)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=1.0)
        for conn in conns:
            conn.close()
    _merge(res, results, root_domains, t)
    closed = {c for r in results for c in r.closed_conjunctions}
    res.closed_conjunctions = sorted(set(range(spec.C.shape[0])) - (set(order) - closed))
    if set(order) <= closed:
        return _done(res, "unsat", "bab", start)
    root_value = dict(zip(open_.spec.tolist(), value))
    unclaimed = order[min(claimed.value, len(order)):]  # never searched: their root bound is what is known
    bounds = [r.open_bound for r in results if r.open_bound is not None] + [root_value[c] for c in unclaimed]
    res.open_bound = max(bounds) if bounds else None
    res.message = "; ".join(sorted({r.message for r in results if r.message})) or (
        f"conjunction(s) {sorted(set(order) - closed)} left open by {len(results)}/{workers} workers")
    return _done(res, "unknown", "", start)


def _merge(res, results, root_domains: int, t: float) -> None:
    res.loop_wall_s = time.perf_counter() - t
    res.domains = root_domains + sum(r.domains for r in results)
    res.rounds = sum(r.rounds for r in results)
    res.lp_leaves = sum(r.lp_leaves for r in results)
    res.max_open = max([r.max_open for r in results], default=0)
    for k in ("bab", "bab_branch", "bab_bound", "bab_share"):  # CPU seconds summed over the workers
        res.stages[k] = sum(r.stages[k] for r in results)
