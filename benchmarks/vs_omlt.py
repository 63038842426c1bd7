"""optprune vs OMLT on the same max-margin adversarial MIPs, like with like, both solved by HiGHS.

For each instance (network, test image, eps) both tools maximise
``y_t - y_label`` over the L-inf ball of radius eps intersected with [0, 1],
``t`` the runner-up class of the clean image, at two bound levels:

* ``linear``: optprune's per-neuron bounds ``compute_bounds(..., "linear")``
  are computed once and handed to BOTH sides. OMLT (``ReluBigMFormulation``)
  receives them through its own extension point: ``FullSpaceNNFormulation``
  with ReLU big-M activations (what ``ReluBigMFormulation`` is) and a
  dense-layer builder (``layer_constraints=``) that runs OMLT's
  ``full_space_dense_layer`` and then sets the layer's pre-activation variable
  bounds ``zhat`` to ours, so OMLT's big-M ReLU builder reads our bounds
  (OMLT 1.2 has no argument for per-layer bounds). Computing the bounds is
  timed once and counted on neither side.
* ``interval``: each side computes interval bounds itself, inside its build
  (OMLT's ``compute_bounds_on_expr`` per neuron; optprune's
  ``compute_bounds(..., "interval")``), as each does by default without help.
  The record keeps the largest difference between the two sides' bounds.

Stages timed on both sides, one after the other in this process:

* ``build``: network to a solver-neutral model (OMLT: ``NetworkDefinition``,
  Pyomo ``ConcreteModel``, ``build_formulation``, objective; optprune:
  :func:`build_spec_milp`);
* ``translate``: that model into HiGHS (OMLT: Pyomo's persistent
  ``appsi_highs`` ``set_instance`` plus the rest of ``solve`` outside HiGHS'
  ``run``; optprune: ``optprune.solvers.solve`` minus HiGHS' ``run``, i.e. the
  ``passModel`` call, options and reading the solution back);
* ``solve``: HiGHS' ``run`` (OMLT: appsi's ``optimize`` timer; optprune: the
  backend's ``time_s``).

Both sides get the same time limit and the same HiGHS options
(:data:`HIGHS_OPTIONS`, set explicitly on each side). Objectives are compared
where both are optimal (agreement: ``|a - b| <= 1e-6 max(1, |a|, |b|)``).

Time to a verdict ("is there an adversarial example towards t?") compares two
different things and says so: optprune's decision pipeline
(:func:`optprune.verification.verify_property` with its defaults: its bounds, a
projected-gradient attack, then a decision MIP that stops early) against OMLT
used plainly (its own interval bounds, build + translate + solve to optimality;
the verdict is the sign of the optimum). The ratio is broken down by what
decided each instance on optprune's side (bounds / attack / mip).

Every ratio is OMLT's time over optprune's, and each is given three ways with
the instance count: median of the per-instance ratios, ratio of the medians,
geometric mean of the per-instance ratios.

Networks: digits MLPs 64-50-50-10 and 64-100-100-10 trained by
:func:`optprune.training.digits_mlp` (seed 0), eps 0.05 and 0.1, and the
shared MNIST 256x2 network at eps 0.02 (skipped when ../shared/data is absent),
on the first ``--images`` correctly classified test-fold images of each.

Usage: ``python benchmarks/vs_omlt.py [--images 4] [--time-limit 20] [--out results/vs_omlt]``
(the defaults make the README's figures, about 10 minutes on 2 cores; a rerun
resumes from ``OUT/records.jsonl``). Writes ``OUT/records.jsonl`` and
``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from optprune.bench import RecordStore
from optprune.bench._provenance import script_command, start_run
from optprune.data import load_dataset
from optprune.formulations.relu_milp import build_spec_milp
from optprune.network import Network
from optprune.solvers import solve
from optprune.verification.bounds import compute_bounds

__all__ = ["HIGHS_OPTIONS", "BOUND_LEVELS", "omlt_max_margin", "optprune_max_margin", "ratio_stats", "main"]

#: HiGHS options set explicitly, identically, on both sides (gaps tight enough to compare objectives to 1e-6;
#: feasibility tolerances at HiGHS' documented defaults, written out so neither side can differ).
HIGHS_OPTIONS = {
    "mip_rel_gap": 1e-6,
    "mip_abs_gap": 1e-6,
    "mip_feasibility_tolerance": 1e-6,
    "primal_feasibility_tolerance": 1e-7,
    "dual_feasibility_tolerance": 1e-7,
}
BOUND_LEVELS = ("linear", "interval")
AGREE_RTOL = 1e-6
STAGES = ("build_s", "translate_s", "solve_s")


def _omlt_definition(net: Network, lo: np.ndarray, hi: np.ndarray):
    """OMLT's ``NetworkDefinition`` of ``net`` with the input box as scaled input bounds, and its dense layers."""
    from omlt.neuralnet import NetworkDefinition
    from omlt.neuralnet.layer import DenseLayer, InputLayer

    definition = NetworkDefinition(scaled_input_bounds={i: (float(a), float(b)) for i, (a, b) in enumerate(zip(lo, hi))})
    prev = InputLayer([net.input_size])
    definition.add_layer(prev)
    dense = []
    for layer in net.layers:
        cur = DenseLayer(prev.output_size, [layer.out_features], activation="relu" if layer.activation == "relu" else "linear",
                         weights=np.asarray(layer.dense_weight()).T, biases=np.asarray(layer.bias))
        definition.add_layer(cur)
        definition.add_edge(prev, cur)
        dense.append(cur)
        prev = cur
    return definition, dense


def omlt_max_margin(net: Network, lo: np.ndarray, hi: np.ndarray, target: int, label: int, time_limit: float,
                    bounds: list[tuple[np.ndarray, np.ndarray]] | None = None) -> dict:
    """Build, translate and solve OMLT's big-M max-margin MIP; ``bounds`` (optprune's) replace OMLT's own per layer.

    Without ``bounds`` OMLT uses its own interval bounds; ``omlt_bounds`` in the
    result are the pre-activation bounds OMLT's ReLU builder saw.
    """
    import pyomo.environ as pyo
    from omlt import OmltBlock
    from omlt.neuralnet import FullSpaceNNFormulation, ReluBigMFormulation
    from omlt.neuralnet.activations import bigm_relu_activation_constraint, linear_activation_constraint
    from omlt.neuralnet.layer import DenseLayer
    from omlt.neuralnet.layers.full_space import full_space_dense_layer
    from pyomo.common.timing import HierarchicalTimer
    from pyomo.contrib.appsi.solvers import Highs  # what SolverFactory("appsi_highs") wraps

    logging.getLogger("pyomo.core").setLevel(logging.ERROR)  # OMLT's initial values trip bound warnings
    t0 = time.perf_counter()
    definition, dense = _omlt_definition(net, lo, hi)
    if bounds is None:
        formulation = ReluBigMFormulation(definition)
    else:
        ours = {id(layer): b for layer, b in zip(dense, bounds)}

        def dense_with_our_bounds(net_block, omlt_net, layer_block, layer):
            full_space_dense_layer(net_block, omlt_net, layer_block, layer)
            lower, upper = ours[id(layer)]
            for j, index in enumerate(layer.output_indexes):
                layer_block.zhat[index].setlb(float(lower[j]))
                layer_block.zhat[index].setub(float(upper[j]))

        # ReluBigMFormulation is exactly this with OMLT's own dense builder.
        formulation = FullSpaceNNFormulation(
            definition, layer_constraints={DenseLayer: dense_with_our_bounds},
            activation_constraints={"linear": linear_activation_constraint, "relu": bigm_relu_activation_constraint})
    model = pyo.ConcreteModel()
    model.nn = OmltBlock()
    model.nn.build_formulation(formulation)
    model.obj = pyo.Objective(expr=model.nn.outputs[target] - model.nn.outputs[label], sense=pyo.maximize)
    build = time.perf_counter() - t0

    solver = Highs()
    solver.config.time_limit = time_limit
    solver.config.load_solution = False
    solver.highs_options = dict(HIGHS_OPTIONS)
    uc = solver.update_config  # nothing changes between set_instance and solve: skip appsi's change checks
    for key in ("check_for_new_or_removed_constraints", "check_for_new_or_removed_vars", "check_for_new_or_removed_params",
                "check_for_new_objective", "update_constraints", "update_vars", "update_params",
                "update_named_expressions", "update_objective"):
        setattr(uc, key, False)
    t1 = time.perf_counter()
    solver.set_instance(model)
    set_instance = time.perf_counter() - t1
    timer = HierarchicalTimer()
    t2 = time.perf_counter()
    res = solver.solve(model, timer=timer)
    solve_call = time.perf_counter() - t2
    run = timer.get_total_time("optimize")
    term = str(res.termination_condition).split(".")[-1]
    objective = res.best_feasible_objective if res.best_feasible_objective is not None else math.nan
    bound = res.best_objective_bound if res.best_objective_bound is not None else math.nan
    seen = [(np.array([model.nn.layer[id(layer)].zhat[i].lb for i in layer.output_indexes], dtype=float),
             np.array([model.nn.layer[id(layer)].zhat[i].ub for i in layer.output_indexes], dtype=float))
            for layer in dense]
    return {"build_s": build, "translate_s": set_instance + solve_call - run, "solve_s": run,
            "optimal": term == "optimal", "objective": float(objective), "bound": float(bound), "status": term,
            "omlt_bounds": seen}


def optprune_max_margin(net: Network, lo: np.ndarray, hi: np.ndarray, target: int, label: int, time_limit: float,
                        bounds: list[tuple[np.ndarray, np.ndarray]] | None = None) -> dict:
    """Build (with interval bounds computed inside when ``bounds`` is None), translate and solve optprune's MIP."""
    t0 = time.perf_counter()
    if bounds is None:
        bounds = compute_bounds(net, lo, hi, "interval")
    C = np.zeros((1, net.output_size))
    C[0, target], C[0, label] = 1.0, -1.0
    model, enc = build_spec_milp(net, bounds, lo, hi, C, 0.0)
    build = time.perf_counter() - t0
    options = dict(HIGHS_OPTIONS)
    gap = options.pop("mip_rel_gap")
    t1 = time.perf_counter()
    sol = solve(model, "highs", time_limit=time_limit, mip_gap=gap, extra=options)
    call = time.perf_counter() - t1
    return {"build_s": build, "translate_s": call - sol.time_s, "solve_s": sol.time_s,
            "optimal": sol.status.value == "optimal", "objective": float(sol.objective), "bound": float(sol.bound),
            "status": sol.status.value, "binaries": enc.n_binaries, "bounds": bounds}


def optprune_verdict(net: Network, x0: np.ndarray, label: int, eps: float, target: int, time_limit: float) -> dict:
    """optprune's decision pipeline with its defaults (bounds, attack, early-stopping decision MIP)."""
    from optprune.verification import DEFAULT_BOUNDS, robustness_property, verify_property

    t0 = time.perf_counter()
    res = verify_property(net, robustness_property(net, x0, label, eps, target=target), timeout=time_limit)
    return {"total_s": time.perf_counter() - t0, "verdict": res.verdict, "decided_by": res.decided_by,
            "bounds": DEFAULT_BOUNDS}


def _omlt_verdict(side: dict) -> str:
    """OMLT used plainly: the sign of the optimum (or of the incumbent / dual bound at the time limit)."""
    if not math.isnan(side["objective"]) and side["objective"] > 0:
        return "sat"
    if not math.isnan(side["bound"]) and side["bound"] < 0:
        return "unsat"
    return "unknown"


def instances(images: int):
    """(network, x0, label, eps, image index) in a fixed order (module doc)."""
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
        X, y = load_dataset("mnist", "test")
    except Exception as exc:  # noqa: BLE001 - report and go on with the digits instances
        print(f"# MNIST 256x2 skipped: {exc}", file=sys.stderr)
        return
    flat = X.reshape(len(X), -1).astype(np.float64)
    ok = np.flatnonzero(net.predict(flat) == y)[:images]
    for i in ok:
        yield net, flat[i], int(y[i]), 0.02, int(i)


def run_instance(net: Network, x0: np.ndarray, label: int, eps: float, target: int, time_limit: float) -> dict:
    """Both sides at both bound levels, and optprune's verdict pipeline, for one instance."""
    lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
    out: dict = {}
    t0 = time.perf_counter()
    linear = compute_bounds(net, lo, hi, "linear")
    shared_s = time.perf_counter() - t0
    for level in BOUND_LEVELS:
        given = linear if level == "linear" else None
        ours = optprune_max_margin(net, lo, hi, target, label, time_limit, given)
        theirs = omlt_max_margin(net, lo, hi, target, label, time_limit, given)
        used, seen = ours.pop("bounds"), theirs.pop("omlt_bounds")
        diff = max(float(np.max(np.abs(np.r_[a - c, b - d]))) for (a, b), (c, d) in zip(used, seen))
        theirs["verdict"] = _omlt_verdict(theirs)
        out[level] = {"optprune": ours, "omlt": theirs, "max_bound_difference": diff}
    out["linear"]["shared_bounds_s"] = shared_s
    out["verdict"] = optprune_verdict(net, x0, label, eps, target, time_limit)
    return out


# ----------------------------------------------------------------------------- summary


def ratio_stats(pairs: list[tuple[float, float]]) -> dict:
    """OMLT/optprune ratios of ``(optprune_s, omlt_s)`` pairs: median of ratios, ratio of medians, geometric mean, n."""
    pairs = [(a, b) for a, b in pairs if a > 0 and b > 0]
    if not pairs:
        return {"n": 0}
    ours, theirs = [a for a, _ in pairs], [b for _, b in pairs]
    ratios = [b / a for a, b in pairs]
    return {"n": len(pairs), "ours_median": statistics.median(ours), "omlt_median": statistics.median(theirs),
            "median_of_ratios": statistics.median(ratios),
            "ratio_of_medians": statistics.median(theirs) / statistics.median(ours),
            "geometric_mean": math.exp(statistics.fmean(math.log(r) for r in ratios))}


def _agree(a: float, b: float) -> bool:
    return abs(a - b) <= AGREE_RTOL * max(1.0, abs(a), abs(b))


def _stat_row(name: str, s: dict) -> str:
    if not s.get("n"):
        return f"| {name} | 0 | - | - | - | - | - |"
    return (f"| {name} | {s['n']} | {s['ours_median']:.4f} | {s['omlt_median']:.4f} | {s['median_of_ratios']:.1f}x | "
            f"{s['ratio_of_medians']:.1f}x | {s['geometric_mean']:.1f}x |")


STAT_HEAD = ["| stage | n | optprune median (s) | OMLT median (s) | median of ratios | ratio of medians | geometric mean |",
             "|---|---|---|---|---|---|---|"]


def _total(side: dict) -> float:
    return side["build_s"] + side["translate_s"] + side["solve_s"]


def level_tables(records: list[dict], level: str) -> tuple[list[str], dict]:
    """The Markdown lines for one bound level and its headline statistics."""
    sides = [(r[level]["optprune"], r[level]["omlt"]) for r in records]
    both = [(o, t) for o, t in sides if o["optimal"] and t["optimal"]]
    agree = sum(_agree(o["objective"], t["objective"]) for o, t in both)
    stats = {
        "build": ratio_stats([(o["build_s"], t["build_s"]) for o, t in sides]),
        "translate": ratio_stats([(o["translate_s"], t["translate_s"]) for o, t in sides]),
        "solve": ratio_stats([(o["solve_s"], t["solve_s"]) for o, t in both]),
        "total": ratio_stats([(_total(o), _total(t)) for o, t in both]),
    }
    lines = [*STAT_HEAD,
             _stat_row("build (all instances)", stats["build"]),
             _stat_row("translation to HiGHS (all instances)", stats["translate"]),
             _stat_row("HiGHS solve (both optimal)", stats["solve"]),
             _stat_row("build + translation + solve (both optimal)", stats["total"]), ""]
    diff = max((r[level]["max_bound_difference"] for r in records), default=0.0)
    lines.append(f"Optimal: optprune {sum(o['optimal'] for o, _ in sides)}/{len(sides)}, OMLT "
                 f"{sum(t['optimal'] for _, t in sides)}/{len(sides)}; objectives agree (relative 1e-6) on {agree} of the "
                 f"{len(both)} instances both solve to optimality. Largest difference between the bounds the two sides "
                 f"used: {diff:.2e}.")
    stats.update(n=len(sides), both_optimal=len(both), agree=agree)
    return lines, stats


def per_network_lines(records: list[dict], level: str) -> list[str]:
    """Per (network, eps): instance count, optimal counts and the build + translation + solve ratios."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["network"], r["eps"]), []).append(r)
    lines = ["| network | eps | n | optimal optprune / OMLT | build: median of ratios | "
             "build+translate+solve (both optimal): n, median of ratios, ratio of medians, geometric mean |",
             "|---|---|---|---|---|---|"]
    for (name, eps), recs in groups.items():
        sides = [(r[level]["optprune"], r[level]["omlt"]) for r in recs]
        b = ratio_stats([(o["build_s"], t["build_s"]) for o, t in sides])
        s = ratio_stats([(_total(o), _total(t)) for o, t in sides if o["optimal"] and t["optimal"]])
        tot = "-" if not s["n"] else (f"{s['n']}, {s['median_of_ratios']:.1f}x, {s['ratio_of_medians']:.1f}x, "
                                      f"{s['geometric_mean']:.1f}x")
        lines.append(f"| {name} | {eps:g} | {len(recs)} | {sum(o['optimal'] for o, _ in sides)} / "
                     f"{sum(t['optimal'] for _, t in sides)} | {b['median_of_ratios']:.1f}x | {tot} |")
    return lines


def verdict_lines(records: list[dict], time_limit: float) -> tuple[list[str], dict]:
    """Time to a verdict: optprune's pipeline against plain OMLT (interval bounds, solve to optimality), by decider."""
    lines = ["| decided by (optprune) | n | optprune median (s) | OMLT median (s) | median of ratios | ratio of medians | "
             "geometric mean |", "|---|---|---|---|---|---|---|"]
    stats = {}
    rows = []
    for r in records:
        v, t = r["verdict"], r["interval"]["omlt"]
        if v["verdict"] in ("sat", "unsat") and t["verdict"] != "unknown":
            rows.append((v["decided_by"], v["total_s"], _total(t)))
    for by in ("bounds", "attack", "mip", "all"):
        pairs = [(a, b) for d, a, b in rows if by in (d, "all")]
        stats[by] = ratio_stats(pairs)
        lines.append(_stat_row(by, stats[by]))
    decided = [sum(r["verdict"]["verdict"] != "unknown" for r in records),
               sum(r["interval"]["omlt"]["verdict"] != "unknown" for r in records)]
    differ = sum(r["verdict"]["verdict"] != r["interval"]["omlt"]["verdict"]
                 and "unknown" not in (r["verdict"]["verdict"], r["interval"]["omlt"]["verdict"]) for r in records)
    lost = sum(r["interval"]["omlt"]["verdict"] != "unknown" and r["verdict"]["verdict"] == "unknown" for r in records)
    lines += ["", f"Decided within {time_limit:g} s: optprune {decided[0]}/{len(records)}, OMLT {decided[1]}/{len(records)}; "
              f"verdicts that differ: {differ}; instances OMLT decides and optprune does not: {lost}. The ratio rows count "
              "the instances both decide."]
    stats.update(decided_optprune=decided[0], decided_omlt=decided[1], differ=differ, lost=lost)
    return lines, stats


def summary_markdown(records: list[dict], args: argparse.Namespace, header: str) -> str:
    """The whole ``summary.md`` (provenance header first)."""
    lines = [header.rstrip(), "", "# optprune vs OMLT: the same max-margin MIPs, both solved by HiGHS", "",
             f"{len(records)} instances ({args.images} images per network and eps), time limit {args.time_limit:g} s per "
             f"solve on both sides, HiGHS options on both sides: "
             + ", ".join(f"{k}={v:g}" for k, v in HIGHS_OPTIONS.items()) + ". Ratios are OMLT's time over optprune's "
             "(> 1: optprune faster). Stages and fairness rules: the docstring of `benchmarks/vs_omlt.py`.", ""]
    for level, title in (("linear", "Both sides given optprune's linear (back-substitution) bounds"),
                         ("interval", "Both sides with interval bounds (each computes its own, inside its build)")):
        body, _ = level_tables(records, level)
        lines += [f"## {title}", "", *body, "", *per_network_lines(records, level), ""]
    if records:
        shared = statistics.median(r["linear"]["shared_bounds_s"] for r in records)
        lines.insert(lines.index("## Both sides given optprune's linear (back-substitution) bounds") + 2,
                     f"Computing the linear bounds (median {shared:.4f} s) is counted on neither side.\n")
    body, _ = verdict_lines(records, args.time_limit)
    lines += ["## Time to a verdict (different tools for the same question)", "",
              "optprune: `verify_property` with its defaults (its bounds, a projected-gradient attack, then a decision "
              "MIP that stops at the first adversarial incumbent or when the dual bound proves robustness). OMLT: used "
              "plainly, its own interval bounds, build + translation + solve of the max-margin MIP to optimality; the "
              "verdict is the sign of the optimum. So the ratio measures the pipeline, not the MIP.", "", *body, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4, help="correctly classified test images per network and eps")
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds per solve, the same on both sides")
    ap.add_argument("--out", type=Path, default=Path("results/vs_omlt"))
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write under results/ from a dirty working tree (stamped in the header)")
    args = ap.parse_args(argv)
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    store = RecordStore(args.out / "records.jsonl")  # resumable: a rerun skips recorded instances
    tag = "|".join(f"{k}={v:g}" for k, v in HIGHS_OPTIONS.items())
    records = []
    done_before = 0
    with store:
        for net, x0, label, eps, index in instances(args.images):
            rid = f"{net.name}|{index}|{eps}|{args.time_limit:g}|{tag}"
            done_before += rid in store
            if rid not in store:
                logits = net.forward(x0).copy()
                logits[label] = -np.inf
                target = int(np.argmax(logits))
                res = run_instance(net, x0, label, eps, target, args.time_limit)
                store.append({"id": rid, "network": net.name, "image": index, "eps": eps, "label": label,
                              "target": target, "time_limit": args.time_limit, **res})
                lin, itv, v = res["linear"], res["interval"], res["verdict"]
                print(f"{net.name} img {index} eps {eps}: linear ours {_total(lin['optprune']):.2f}s "
                      f"({lin['optprune']['status']}, {lin['optprune']['objective']:.5f}) omlt {_total(lin['omlt']):.2f}s "
                      f"({lin['omlt']['status']}, {lin['omlt']['objective']:.5f}); interval ours "
                      f"{_total(itv['optprune']):.2f}s omlt {_total(itv['omlt']):.2f}s; verdict {v['verdict']} by "
                      f"{v['decided_by']} in {v['total_s']:.2f}s", file=sys.stderr, flush=True)
            records.append(store.records[rid])
    run.resumed(done_before, len(records))
    text = summary_markdown(records, args, run.header())
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
