"""optprune vs OMLT on the same max-margin adversarial MIPs, both solved by HiGHS.

For each instance (network, test image, eps) both tools maximise
``y_t - y_label`` over the L-inf ball of radius eps intersected with [0, 1],
with ``t`` the runner-up class of the clean image:

* OMLT: ``NetworkDefinition`` with the ball as input bounds,
  ``ReluBigMFormulation`` (its own interval bounds), solved through Pyomo's
  ``appsi_highs``;
* optprune: ``linear`` bounds, :func:`build_spec_milp`, HiGHS through highspy.

Build time is the time to turn the network into a solver-ready model. Both
tools solve the max-margin MIP to optimality (build plus solve: "optimise"),
and their objectives are compared where both are optimal. Time to verdict is
the time to answer "is there an adversarial example towards t?": OMLT's user
reads it from the sign of the optimum, so it is OMLT's optimise time; optprune
answers it with its decision pipeline (``verify_property``: bounds, attack,
MIP with early stop). Everything runs in this process, one after the other,
with the same time limit.

Networks: digits MLPs 64-50-50-10 and 64-100-100-10 trained by
:func:`optprune.training.digits_mlp` (seed 0), eps 0.05 and 0.1, and the
shared MNIST 256x2 network at eps 0.02 (skipped when ../shared/data is absent).

Usage: ``python benchmarks/vs_omlt.py [--images 10] [--time-limit 60] [--out results/vs_omlt.jsonl]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import numpy as np

from optprune.bench import RecordStore
from optprune.bounds import compute_bounds
from optprune.data import load_dataset
from optprune.formulations.relu_milp import build_spec_milp
from optprune.network import Network
from optprune.solvers import solve


def omlt_max_margin(net: Network, lo: np.ndarray, hi: np.ndarray, target: int, label: int, time_limit: float) -> dict:
    import logging

    import pyomo.environ as pyo
    from omlt import OmltBlock

    logging.getLogger("pyomo.core").setLevel(logging.ERROR)  # OMLT's initial values trip bound warnings
    from omlt.neuralnet import NetworkDefinition, ReluBigMFormulation
    from omlt.neuralnet.layer import DenseLayer, InputLayer

    t0 = time.perf_counter()
    definition = NetworkDefinition(scaled_input_bounds={i: (float(a), float(b)) for i, (a, b) in enumerate(zip(lo, hi))})
    prev = InputLayer([net.input_size])
    definition.add_layer(prev)
    for layer in net.layers:
        dense = DenseLayer(prev.output_size, [layer.out_features], activation="relu" if layer.activation == "relu" else "linear",
                           weights=layer.dense_weight().T, biases=layer.bias)
        definition.add_layer(dense)
        definition.add_edge(prev, dense)
        prev = dense
    model = pyo.ConcreteModel()
    model.nn = OmltBlock()
    model.nn.build_formulation(ReluBigMFormulation(definition))
    model.obj = pyo.Objective(expr=model.nn.outputs[target] - model.nn.outputs[label], sense=pyo.maximize)
    build = time.perf_counter() - t0
    from pyomo.contrib.appsi.solvers import Highs  # what SolverFactory("appsi_highs") wraps

    solver = Highs()
    solver.config.time_limit = time_limit
    solver.config.load_solution = False
    t1 = time.perf_counter()
    res = solver.solve(model)
    solve_s = time.perf_counter() - t1
    term = str(res.termination_condition)
    optimal = "optimal" in term.lower()
    objective = res.best_feasible_objective if res.best_feasible_objective is not None else math.nan
    return {"build_s": build, "solve_s": solve_s, "total_s": build + solve_s, "optimal": optimal,
            "objective": float(objective), "bound": float(res.best_objective_bound), "status": term}


def optprune_max_margin(net: Network, lo, hi, target: int, label: int, time_limit: float) -> dict:
    t0 = time.perf_counter()
    bounds = compute_bounds(net, lo, hi, "linear")
    C = np.zeros((1, net.output_size))
    C[0, target], C[0, label] = 1.0, -1.0
    model, enc = build_spec_milp(net, bounds, lo, hi, C, 0.0)
    build = time.perf_counter() - t0
    sol = solve(model, "highs", time_limit=time_limit)
    return {"build_s": build, "solve_s": sol.time_s, "total_s": build + sol.time_s, "optimal": sol.status.value == "optimal",
            "objective": sol.objective, "bound": sol.bound, "status": sol.status.value, "binaries": enc.n_binaries}


def optprune_verdict(net: Network, x0, label: int, eps: float, target: int, time_limit: float) -> dict:
    from optprune.verify import robustness_property, verify_property

    t0 = time.perf_counter()
    res = verify_property(net, robustness_property(net, x0, label, eps, target=target), timeout=time_limit)
    return {"total_s": time.perf_counter() - t0, "verdict": res.verdict, "decided_by": res.decided_by}


def instances(images: int):
    from optprune.io import network_from_torch
    from optprune.training import digits_mlp

    X, y = load_dataset("digits", "test")
    flat = X.reshape(len(X), -1).astype(np.float64)
    for hidden in ([50, 50], [100, 100]):
        net = network_from_torch(digits_mlp(hidden, seed=0), name=f"digits-64-{hidden[0]}-{hidden[1]}-10")
        ok = np.flatnonzero(net.predict(flat) == y)[:images]
        for eps in (0.05, 0.1):
            for i in ok:
                yield net, flat[i], int(y[i]), eps, int(i)
    try:
        from optprune.data import data_dir
        from optprune.io import network_from_onnx

        folder = data_dir() / "vnncomp2021-mnistfc"
        net = network_from_onnx(folder / "mnist-net_256x2.onnx", name="mnist-256x2")
    except Exception as exc:  # noqa: BLE001 - report and go on with the digits instances
        print(f"# MNIST 256x2 skipped: {exc}", file=sys.stderr)
        return
    X, y = load_dataset("mnist", "test")
    flat = X.reshape(len(X), -1).astype(np.float64)
    ok = np.flatnonzero(net.predict(flat) == y)[:images]
    for i in ok:
        yield net, flat[i], int(y[i]), 0.02, int(i)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--out", default="results/vs_omlt.jsonl")
    args = ap.parse_args(argv)
    store = RecordStore(args.out)  # resumable: a rerun skips recorded instances
    records = []
    with store:
        for net, x0, label, eps, index in instances(args.images):
            rid = f"{net.name}|{index}|{eps}|{args.time_limit:g}"
            if rid not in store:
                logits = net.forward(x0)
                target = int(np.argsort(logits)[-2])
                lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
                ours = optprune_max_margin(net, lo, hi, target, label, args.time_limit)
                verdict = optprune_verdict(net, x0, label, eps, target, args.time_limit)
                theirs = omlt_max_margin(net, lo, hi, target, label, args.time_limit)
                if theirs["optimal"]:
                    theirs["verdict"] = "sat" if theirs["objective"] >= 0 else "unsat"
                elif not math.isnan(theirs["objective"]) and theirs["objective"] >= 0:
                    theirs["verdict"] = "sat"
                else:
                    theirs["verdict"] = "unsat" if theirs["bound"] < 0 else "unknown"
                store.append({"id": rid, "network": net.name, "image": index, "eps": eps, "target": target,
                              "optprune": ours, "optprune_verdict": verdict, "omlt": theirs})
                print(f"{net.name} img {index} eps {eps}: optprune {ours['total_s']:.2f}s ({ours['status']}, {ours['objective']:.4f}) "
                      f"omlt {theirs['total_s']:.2f}s ({theirs['status']}, {theirs['objective']:.4f}); "
                      f"verdict {verdict['verdict']} in {verdict['total_s']:.2f}s (omlt: {theirs['verdict']})", file=sys.stderr, flush=True)
            records.append(store.records[rid])

    print(f"{'network':<22} {'eps':>5} {'n':>3} {'build ours':>10} {'omlt':>8} {'ratio':>7} {'optimise ours':>13} {'omlt':>8} "
          f"{'ratio':>7} {'verdict ours':>12} {'ratio':>7} {'optimal o/O':>11} {'decided o/O':>11} {'obj agree':>9} {'verdicts differ':>15}")
    groups: dict = {}
    for rec in records:
        groups.setdefault((rec["network"], rec["eps"]), []).append(rec)

    def med(recs, tool, key):
        return statistics.median(r[tool][key] for r in recs)

    def row(label, eps, recs):
        both = [r for r in recs if r["optprune"]["optimal"] and r["omlt"]["optimal"]]
        agree = sum(abs(r["optprune"]["objective"] - r["omlt"]["objective"]) <= 1e-4 * max(1.0, abs(r["omlt"]["objective"])) + 1e-6 for r in both)
        decided = [sum(r[k]["verdict"] != "unknown" for r in recs) for k in ("optprune_verdict", "omlt")]
        differ = sum(r["optprune_verdict"]["verdict"] != r["omlt"]["verdict"] and "unknown" not in (r["optprune_verdict"]["verdict"], r["omlt"]["verdict"]) for r in recs)
        b = med(recs, "optprune", "build_s"), med(recs, "omlt", "build_s")
        t = med(recs, "optprune", "total_s"), med(recs, "omlt", "total_s")
        v = med(recs, "optprune_verdict", "total_s")
        optimal = [sum(r[k]["optimal"] for r in recs) for k in ("optprune", "omlt")]
        print(f"{label:<22} {eps:>5} {len(recs):>3} {b[0]:>9.3f}s {b[1]:>7.3f}s {b[1] / b[0]:>6.1f}x {t[0]:>12.3f}s {t[1]:>7.3f}s "
              f"{t[1] / t[0]:>6.1f}x {v:>11.3f}s {t[1] / v:>6.1f}x {optimal[0]:>5}/{optimal[1]:<5} {decided[0]:>5}/{decided[1]:<5} "
              f"{agree:>4}/{len(both):<4} {differ:>15}")

    for (name, eps), recs in groups.items():
        row(name, eps, recs)
    if records:
        row("all", "", records)
        lost = sum(r["omlt"]["verdict"] != "unknown" and r["optprune_verdict"]["verdict"] == "unknown" for r in records)
        print(f"\nratios are OMLT median / optprune median, measured in this run; instances OMLT decides that optprune does not: {lost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
