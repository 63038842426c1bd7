"""Worker side: one benchmark task in, one JSON-able record out.

These are top-level functions (picklable under the ``spawn`` start method and
by Ray). A task is a plain dict built by the runner; the networks travel as
:class:`~optprune.network.Network` objects. Nothing here reads the output folder.

Verdicts of a max-margin query (margin ``m* = max_x y_t(x) - y_label(x)`` over the ball):

* ``sat``: a point with margin ``> 0`` was found and re-checked by a forward pass;
* ``unsat``: ``m* < 0`` is proven for every target by a rule of
  :mod:`optprune.verification.verdicts` (negative linear bound, an infeasible model under
  the decision cutoff, or a dual bound below ``-delta``); an optimum within
  ``delta`` of zero is not a proof, and an infeasible model without a cutoff
  (optimisation mode) is an error record, never a proof;
* ``unknown``: neither within the time limit.

``decided`` is what the summary counts as solved within the limit: an optimal
solve of every target MIP in ``optimize`` mode, a ``sat``/``unsat`` verdict in
``decision`` mode and for VNN-LIB properties.
"""

from __future__ import annotations

import math
import os
import socket
import time
from datetime import datetime, timezone

import numpy as np

from optprune.network import Network

__all__ = ["run_task", "single_thread", "margin_verdict"]


def single_thread() -> None:
    """One BLAS / torch thread in this worker (several workers share the cores)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _num(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def margin_verdict(result, targets: list[int], mode: str) -> tuple[str, bool]:
    """``(verdict, decided)`` of an :class:`~optprune.verification.AdversarialResult` (module doc)."""
    if result.x is not None and math.isfinite(result.objective) and result.objective > 0 and result.is_adversarial:
        verdict = "sat"
    elif sorted(result.targets) == sorted(targets) and result.proven_robust:
        verdict = "unsat"
    else:
        verdict = "unknown"
    if mode == "decision":
        return verdict, verdict != "unknown"
    optimal = bool(targets) and all(
        result.per_target.get(t, {}).get("status") in ("optimal", "bounds") for t in targets
    )
    return verdict, optimal and result.status == "optimal"


def _targets(task: dict, n_out: int) -> list[int]:
    label = int(task["label"])
    target = task["target"]
    if target == "all":
        return [t for t in range(n_out) if t != label]
    return [int(target)]


def _max_margin(task: dict, net: Network) -> dict:
    from optprune.formulations.relu_milp import build_spec_milp
    from optprune.verification import max_margin
    from optprune.verification.bounds import compute_bounds

    x0 = np.asarray(task["x0"], dtype=np.float64)
    label, eps, limit = int(task["label"]), float(task["eps"]), float(task["time_limit"])
    targets = _targets(task, net.output_size)
    lo, hi = np.clip(x0 - eps, 0.0, 1.0), np.clip(x0 + eps, 0.0, 1.0)
    start = time.perf_counter()
    bounds = compute_bounds(net, lo, hi, task["bounds"], time_budget=0.25 * limit)
    bounds_s = time.perf_counter() - start
    res = max_margin(
        net, x0, label, eps, target=None if task["target"] == "all" else targets[0], solver=task["backend"],
        time_limit=max(limit - bounds_s, 0.01), decision=task["mode"] == "decision",
        threads=task["threads"], precomputed_bounds=bounds,
    )
    total = time.perf_counter() - start
    verdict, decided = margin_verdict(res, targets, task["mode"])
    # Size of one target's MILP (every target's model has the same rows; built again, outside the timing).
    C = np.zeros((1, net.output_size))
    C[0, targets[0]], C[0, label] = 1.0, -1.0
    model, enc = build_spec_milp(net, bounds, lo, hi, C, 0.0)
    stats = model.stats()
    mips = [t for t in targets if res.per_target.get(t, {}).get("status") not in (None, "bounds")]
    return {
        "unstable": res.n_unstable, "binaries": enc.n_binaries, "variables": stats["variables"],
        "constraints": stats["constraints"], "nonzeros": stats["nonzeros"],
        "bounds_s": bounds_s, "build_s": res.stages.get("build", 0.0), "attack_s": res.stages.get("attack", 0.0),
        "mip_s": res.stages.get("mip", 0.0), "time_s": total, "mips": len(mips),
        "status": res.status, "verdict": verdict, "decided": decided,
        "objective": _num(res.objective), "bound": _num(res.bound), "adversarial": bool(res.is_adversarial),
        "predicted": None if res.output is None else int(np.argmax(res.output)),
        "best_target": res.target,
    }


def _vnnlib(task: dict, net: Network) -> dict:
    from optprune.verification import verify_vnnlib

    start = time.perf_counter()
    res = verify_vnnlib(net, task["path"], solver=task["backend"], time_limit=float(task["time_limit"]),
                        bound_method=task["bounds"], threads=task["threads"], method=task.get("method", "mip"))
    total = time.perf_counter() - start
    return {
        "unstable": res.n_unstable, "binaries": res.n_binaries, "variables": None, "constraints": None,
        "nonzeros": None, "bounds_s": res.stages.get("bounds", 0.0), "build_s": None,
        "attack_s": res.stages.get("attack", 0.0), "mip_s": res.stages.get("mip", 0.0), "time_s": total,
        "mips": res.mips_solved, "status": res.decided_by or res.verdict, "verdict": res.verdict,
        "decided": res.verdict != "unknown", "objective": None, "bound": None,
        "adversarial": res.verdict == "sat", "predicted": None if res.output is None else int(np.argmax(res.output)),
        "best_target": None, "method": res.method, "bab_domains": res.bab_domains,
    }


def run_task(task: dict, net: Network, reference: Network | None = None) -> dict:
    """Run one task and return its record: the task's identifying fields plus the measurements.

    A task that raises returns a record with ``verdict = "error"`` and the
    message, so a failing instance is recorded once instead of retried forever.
    """
    single_thread()
    record = {k: v for k, v in task.items() if k not in ("x0", "path_abs")}
    try:
        if task["kind"] == "max_margin":
            out = _max_margin(task, net)
        elif task["kind"] == "vnnlib":
            out = _vnnlib(task, net)
        elif task["kind"] == "surrogate":
            from optprune.bench._surrogate import run_surrogate

            out = run_surrogate(task, net, reference)
        else:
            raise ValueError(f"unknown task kind {task['kind']!r}")
        out["error"] = None
    except Exception as exc:  # recorded, not raised: see docstring
        out = {"verdict": "error", "decided": False, "time_s": None, "error": f"{type(exc).__name__}: {exc}"}
    record.update(out)
    record["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record
