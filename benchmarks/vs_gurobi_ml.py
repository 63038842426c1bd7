"""optprune vs gurobi-machinelearning on the same max-margin MIPs, both solved by Gurobi.

For each instance (network, test image, eps) both tools maximise
``y_t - y_label`` over the L-inf ball of radius eps intersected with [0, 1]
(``t`` the runner-up class of the clean image):

* gurobi-ml: ``add_predictor_constr(model, torch_net, x, y)`` on a gurobipy
  model with ``x`` bounded by the ball; its ReLU is ``addGenConstrMax(h, [z], 0)``
  over a free pre-activation ("mixing") variable ``z``: Gurobi derives the
  big-M bounds itself in presolve. gurobi-ml takes no per-neuron bounds
  argument, but its mixing variables are reachable after the build
  (``pred._layers[k].mixing``), so the ``same`` row sets their ``LB``/``UB``
  to optprune's bounds.
* optprune: :func:`build_spec_milp` (one binary per unstable ReLU, big-M from
  the bounds) solved by the ``gurobi`` backend.

Rows: ``same`` -- optprune's linear (CROWN) bounds computed once, handed to
both sides (timed once, counted on neither side); ``own`` -- each side as it
comes: gurobi-ml with only the input box (Gurobi's presolve bounds),
optprune with its interval bounds computed inside its build.

Stages timed: ``build`` (network to a model: gurobi-ml's whole
``add_predictor_constr`` plus objective, gurobipy's ``update``; optprune's
build_spec_milp, and its bounds in the ``own`` row) and ``solve`` (Gurobi's
``optimize`` wall time on both sides; optprune's translation to gurobipy,
``addMVar`` + ``addMConstr``, is counted in ``translate``). Both sides: the
same time limit, one thread, ``MIPGap = MIPGapAbs = 1e-6``.

Networks: digits MLPs 64-16-16-10 and 64-32-10 (:func:`optprune.training.digits_mlp`,
seed 0; the torch model's leading ``Flatten`` is dropped for gurobi-ml, which
takes only Linear and ReLU), within the size-limited license of the gurobipy
pip wheel (2000 variables and constraints). Ratios are gurobi-ml's time over
optprune's: median of the per-instance ratios, ratio of the medians, and the
instance count.

Usage: ``python benchmarks/vs_gurobi_ml.py [--images 10] [--time-limit 20] [--out results/vs_gurobi_ml]``
(the defaults make the figures of ``results/vs_gurobi_ml/summary.md``, a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from optprune.bench._provenance import script_command, start_run
from optprune.data import load_dataset
from optprune.formulations.relu_milp import build_spec_milp
from optprune.io import network_from_torch
from optprune.network import Network
from optprune.solvers import SolveOptions, get_backend
from optprune.training import digits_mlp
from optprune.verification.bounds import compute_bounds

__all__ = ["NETWORKS", "gurobi_ml_max_margin", "optprune_max_margin", "main"]

NETWORKS = ([16, 16], [32])
EPSILONS = (0.05, 0.1)
GAP = 1e-6


def _env():
    import gurobipy as gp

    env = gp.Env(empty=True)
    env.setParam("OutputFlag", 0)
    env.start()
    return env


def gurobi_ml_max_margin(torch_net, lo, hi, target: int, label: int, time_limit: float, env, bounds=None) -> dict:
    """gurobi-ml's model of ``torch_net`` over the box; ``bounds`` (optprune's) set on its pre-activations."""
    import gurobipy as gp
    from gurobi_ml import add_predictor_constr
    from torch import nn

    seq = nn.Sequential(*[m for m in torch_net if not isinstance(m, nn.Flatten)])
    t0 = time.perf_counter()
    m = gp.Model(env=env)
    x = m.addMVar(lo.size, lb=lo, ub=hi, name="x")
    y = m.addMVar(10, lb=-gp.GRB.INFINITY, name="y")
    pred = add_predictor_constr(m, seq, x, y)
    if bounds is not None:
        relu_layers = [layer for layer in pred._layers if hasattr(layer, "mixing")]
        for layer, (bl, bu) in zip(relu_layers, bounds):
            layer.mixing.LB, layer.mixing.UB = bl, bu
    m.setObjective(y[target] - y[label], gp.GRB.MAXIMIZE)
    m.update()
    build_s = time.perf_counter() - t0
    m.Params.TimeLimit, m.Params.Threads, m.Params.MIPGap, m.Params.MIPGapAbs = time_limit, 1, GAP, GAP
    t0 = time.perf_counter()
    m.optimize()
    solve_s = time.perf_counter() - t0
    status = {2: "optimal", 9: "time_limit"}.get(m.Status, str(m.Status))
    return {"build_s": build_s, "translate_s": 0.0, "solve_s": solve_s, "status": status,
            "objective": float(m.ObjVal) if m.SolCount else None, "bound": float(m.ObjBound),
            "variables": m.NumVars, "constraints": m.NumConstrs, "general_constraints": m.NumGenConstrs,
            "nodes": int(m.NodeCount)}


def optprune_max_margin(net: Network, lo, hi, target: int, label: int, time_limit: float, bounds=None) -> dict:
    """optprune's big-M model solved by the ``gurobi`` backend; ``bounds`` None -> interval bounds in the build."""
    C = np.zeros((1, net.output_size))
    C[0, target], C[0, label] = 1.0, -1.0
    t0 = time.perf_counter()
    own = compute_bounds(net, lo, hi, "interval") if bounds is None else bounds
    model, enc = build_spec_milp(net, own, lo, hi, C, 0.0)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = get_backend("gurobi").solve(model, SolveOptions(time_limit=time_limit, threads=1, mip_gap=GAP,
                                                             mip_abs_gap=GAP))
    wall = time.perf_counter() - t0
    return {"build_s": build_s, "translate_s": max(wall - result.time_s, 0.0), "solve_s": result.time_s,
            "status": result.status.value, "objective": result.objective if result.x is not None else None,
            "bound": result.bound, "variables": model.n_vars, "constraints": model.n_rows,
            "binaries": enc.n_binaries, "nodes": result.nodes}


def instances(images: int):
    X, y = load_dataset("digits", "test")
    flat = X.reshape(len(X), -1).astype(np.float64)
    for hidden in NETWORKS:
        torch_net = digits_mlp(hidden, seed=0)
        name = "digits-64-" + "-".join(map(str, hidden)) + "-10"
        net = network_from_torch(torch_net, name=name)
        ok = np.flatnonzero(net.predict(flat) == y)[:images]
        for eps in EPSILONS:
            for i in ok:
                yield torch_net, net, flat[i], int(y[i]), eps, int(i)


def _total(side: dict) -> float:
    return side["build_s"] + side["translate_s"] + side["solve_s"]


def _stats(pairs: list[tuple[float, float]]) -> str:
    pairs = [(a, b) for a, b in pairs if a > 0 and b > 0]
    if not pairs:
        return "n = 0"
    ours, theirs = [a for a, _ in pairs], [b for _, b in pairs]
    med = statistics.median(b / a for a, b in pairs)
    return (f"optprune median {statistics.median(ours):.4f} s, gurobi-ml median {statistics.median(theirs):.4f} s; "
            f"gurobi-ml/optprune: median of ratios {med:.2f}, ratio of medians "
            f"{statistics.median(theirs) / statistics.median(ours):.2f} (n = {len(pairs)})")


def summary(records: list[dict], args, header: str) -> str:
    lines = [header, "", "# optprune vs gurobi-machinelearning (Gurobi on both sides)", "",
             f"Max-margin MIPs, time limit {args.time_limit:g} s, one thread, MIPGap = MIPGapAbs = {GAP:g}. "
             "Rows: `same` = optprune's linear bounds on both sides (gurobi-ml: set on its pre-activation "
             "variables after `add_predictor_constr`); `own` = gurobi-ml with the input box only (Gurobi's presolve "
             "derives the ReLU bounds of `addGenConstrMax`), optprune with interval bounds inside its build.", ""]
    for row in ("same", "own"):
        lines += [f"## {row}", ""]
        for net in sorted({r["network"] for r in records}):
            rs = [r[row] for r in records if r["network"] == net]
            both = [r for r in rs if r["optprune"]["status"] == "optimal" and r["gurobi_ml"]["status"] == "optimal"]
            agree = sum(abs(r["optprune"]["objective"] - r["gurobi_ml"]["objective"])
                        <= 1e-5 * max(1, abs(r["optprune"]["objective"])) for r in both)
            lines += [f"**{net}** ({len(rs)} instances, both optimal {len(both)}, same optimum {agree}):", ""]
            for stage in ("build_s", "solve_s"):
                lines.append(f"- {stage[:-2]}: " + _stats([(r["optprune"][stage], r["gurobi_ml"][stage]) for r in rs]))
            lines.append("- total (build + translate + solve): "
                         + _stats([(_total(r["optprune"]), _total(r["gurobi_ml"])) for r in rs]))
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10, help="correctly classified test images per network and eps")
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds per solve, the same on both sides")
    ap.add_argument("--out", type=Path, default=Path("results/vs_gurobi_ml"))
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write under results/ from a dirty working tree (stamped in the header)")
    args = ap.parse_args(argv)
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    args.out.mkdir(parents=True, exist_ok=True)
    env = _env()
    records = []
    for torch_net, net, x0, label, eps, index in instances(args.images):
        lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
        logits = net.forward(x0).copy()
        logits[label] = -np.inf
        target = int(np.argmax(logits))
        t0 = time.perf_counter()
        lin = compute_bounds(net, lo, hi, "linear")
        bounds_s = time.perf_counter() - t0
        rec = {"network": net.name, "image": index, "eps": eps, "label": label, "target": target,
               "time_limit": args.time_limit, "bounds_s": bounds_s,
               "same": {"optprune": optprune_max_margin(net, lo, hi, target, label, args.time_limit, lin),
                        "gurobi_ml": gurobi_ml_max_margin(torch_net, lo, hi, target, label, args.time_limit, env,
                                                          [(b[0], b[1]) for b in lin[:-1]])},
               "own": {"optprune": optprune_max_margin(net, lo, hi, target, label, args.time_limit),
                       "gurobi_ml": gurobi_ml_max_margin(torch_net, lo, hi, target, label, args.time_limit, env)}}
        records.append(rec)
        s, o = rec["same"], rec["own"]
        print(f"{net.name} img {index} eps {eps}: same ours {_total(s['optprune']):.3f}s "
              f"({s['optprune']['objective']}) gml {_total(s['gurobi_ml']):.3f}s ({s['gurobi_ml']['objective']}); "
              f"own ours {_total(o['optprune']):.3f}s gml {_total(o['gurobi_ml']):.3f}s", file=sys.stderr, flush=True)
    with open(args.out / "records.jsonl", "w") as handle:
        for rec in records:
            handle.write(json.dumps(rec, default=lambda v: None if isinstance(v, float) and not math.isfinite(v)
                                    else float(v)) + "\n")
    text = summary(records, args, run.header())
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
