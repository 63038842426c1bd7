"""Structure-search benchmark: (1) time to a proven optimum at scale, (2) quality against the baselines.

(1) ``scale``: synthetic MLPs (``optprune.search.synthetic_problem``) of 10, 50 and
100 hidden layers of 256..1024 units, widths on multiples of 8 (from 8), budget
``params=0.5``; every installed backend solves the exact MILP to a relative gap
of 1e-4 under a per-backend time limit. Time is the whole call (budget check,
baselines, Lagrangian reduction, model build, solve). "status" is the search's
verdict: optimal when the backend proved it, or when the plan is within 1e-4 of
the Lagrangian bound although the backend stopped at its limit (the backend's
own status is in its own column). With ``--unreduced`` HiGHS also solves the
full model without the reduction.

(2) ``quality``: the VNN-COMP 2021 MNIST 256x4 network and the digits CNN of
``optprune.training.digits_cnn(seed=0)``; scores from ``optprune.scoring``
(default: L2 magnitude, and FLAP's fluctuation metric on 512 calibration
samples of the train fold; each group divided by its mean); at 30/50/70 % of the
parameters, the exact search, the global standardised-score threshold and the
uniform ratio (both bisected to the same budget). Each plan is applied with
``optprune.pruning.apply_decision`` and fine-tuned the same way
(``optprune.training.train_classifier``, Adam, seed 0). MNIST: only the 10,000
test images are available, split by ``optprune.data`` (stratified, seed 0) into
train 6,000 (fine-tuning, calibration) / val 2,000 / test 2,000 (accuracy).
Digits: sklearn's 1,797 images split 60/20/20 (seed 0).

Usage::

    python benchmarks/structure_search.py scale [--layers 10 50 100] [--time-limit 60] [--unreduced]
    python benchmarks/structure_search.py quality [--budgets 0.3 0.5 0.7] [--scorer magnitude]
    python benchmarks/structure_search.py all [--out results/structure_search_all]

Writes ``OUT/records.jsonl`` (one row per line, tagged with its part, written
as each part finishes) and ``OUT/summary.md`` (the tables printed, under the
provenance header: command, date, machine, versions); ``OUT`` defaults to
``results/structure_search_<part>``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

from optprune.search import solve_search, synthetic_problem
from optprune.solvers import Status, get_backend, list_backends


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key, _ in columns) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- (1) scale
def run_scale(layers: list[int], time_limit: float, backends: list[str] | None, unreduced: bool,
              unreduced_limit: float, seed: int) -> list[dict]:
    names = backends or [b["name"] for b in list_backends() if b["available"]]
    rows = []
    for n in layers:
        problem = synthetic_problem(n, min_units=256, max_units=1024, round_to=8, min_width=8, seed=seed)
        sizes = [g.size for g in problem.groups]
        runs = [(name, True) for name in names] + ([("highs", False)] if unreduced else [])
        for name, reduce in runs:
            if not get_backend(name).is_available():
                continue
            limit = time_limit if reduce else unreduced_limit
            label = name if reduce else "highs (no reduction)"
            log(f"scale: {n} layers, {label} (limit {limit:g}s)")
            start = time.perf_counter()
            try:
                r = solve_search(problem, {"params": 0.5}, name, mip_gap=1e-4, time_limit=limit, reduce=reduce)
            except Exception as exc:  # noqa: BLE001 - a benchmark row records any backend failure
                rows.append({"layers": n, "backend": label, "status": f"error: {type(exc).__name__}: {exc}"[:80],
                             "time_s": round(time.perf_counter() - start, 2)})
                continue
            stats = r.solver_stats
            model = stats["model"]
            gap = stats.get("gap")
            rows.append({
                "layers": n, "units": f"{min(sizes)}-{max(sizes)}", "backend": label, "status": r.status.value,
                "solver_status": stats["solver_status"],
                "time_s": round(r.time_s, 2), "solve_s": round(stats["solve_time_s"], 2),
                "objective": round(r.objective, 3), "gap": f"{gap:.1e}" if gap is not None else "",
                "vars": model["variables"], "rows": model["constraints"], "arcs_full": model["arcs_full"],
                "optimal": r.status == Status.OPTIMAL and gap is not None and gap <= 1e-4 + 1e-12,
                "rounding_error": (f"{stats['rounding']['max_value_error']:.1e}" if "rounding" in stats else ""),
            })
    return rows


SCALE_COLUMNS = [("layers", "layers"), ("units", "units"), ("backend", "backend"), ("status", "status"),
                 ("solver_status", "backend's own status"),
                 ("time_s", "time (s)"), ("solve_s", "solver (s)"), ("gap", "gap"), ("objective", "retained score"),
                 ("vars", "MILP vars"), ("rows", "MILP rows"), ("arcs_full", "arcs before reduction"),
                 ("rounding_error", "CP-SAT value rounding bound")]


# ----------------------------------------------------------------------------- (2) quality
def _models(data_dir):
    import torch

    from optprune.data import data_dir as find_data
    from optprune.io import load_torch_model
    from optprune.training import digits_cnn

    out = []
    try:
        net = find_data(data_dir) / "vnncomp2021-mnistfc" / "mnist-net_256x4.onnx"
        if net.is_file():
            out.append(("MNIST 256x4", load_torch_model(net), "mnist", (1, 28, 28), {"epochs": 3, "lr": 1e-3}))
        else:
            log(f"quality: {net} missing, MNIST row skipped")
    except Exception as exc:  # noqa: BLE001
        log(f"quality: shared data not found ({exc}); MNIST row skipped")
    torch.manual_seed(0)
    out.append(("digits CNN", digits_cnn(seed=0), "digits", (1, 8, 8), {"epochs": 30, "lr": 1e-3}))
    return out


def run_quality(budgets: list[float], scorers: list[str], normalize: str, data_dir, methods: list[str],
                round_to: int, samples: int) -> list[dict]:
    import copy

    import torch

    from optprune.data import load_dataset
    from optprune.pruning import PruningDecision, apply_decision, count_parameters, dependency_groups
    from optprune.search import model_scores, problem_from_model
    from optprune.training import accuracy, train_classifier

    rows = []
    for label, model, dataset, shape, ft in _models(data_dir):
        model.eval()
        X_tr, y_tr = load_dataset(dataset, "train", data_dir)
        X_te, y_te = load_dataset(dataset, "test", data_dir)
        full_params = count_parameters(model)
        groups, _ = dependency_groups(model, shape)
        widths0 = {g.name: g.width for g in groups if g.prunable}
        rows.append({"model": label, "budget": "1.0", "method": "unpruned", "params": full_params,
                     "acc_pruned": f"{accuracy(model, X_te, y_te):.4f}", "widths": str(list(widths0.values()))})
        for scorer in scorers:
            scores = model_scores(model, scorer, (X_tr[:samples], y_tr[:samples]), input_shape=shape,
                                  normalize=normalize)
            problem = problem_from_model(model, scores, input_shape=shape, round_to=round_to, min_width=1)
            total_score = problem.value(problem.full_widths)
            for frac, method in itertools.product(budgets, methods):
                log(f"quality: {label}, {scorer}, params={frac}, {method}")
                r = solve_search(problem, {"params": frac}, method=method, mip_gap=1e-6)
                decision = PruningDecision({k: v.tolist() for k, v in r.kept.items()}, widths0, tuple(shape))
                small = apply_decision(model, decision)
                n_params = count_parameters(small)
                acc0 = accuracy(small, X_te, y_te)
                tuned = copy.deepcopy(small)
                torch.manual_seed(0)
                train_classifier(tuned, dataset, epochs=ft["epochs"], seed=0, lr=ft["lr"], batch_size=64,
                                 data_dir=data_dir, progress=False)
                rows.append({
                    "model": label, "scorer": scorer, "budget": f"{frac:.1f}",
                    "method": {"exact": "exact search"}.get(method, method),
                    "params": f"{n_params} ({n_params / full_params:.3f})",
                    "score": f"{r.objective:.1f} ({r.objective / total_score:.1%})",
                    "acc_pruned": f"{acc0:.4f}", "acc_ft": f"{accuracy(tuned, X_te, y_te):.4f}",
                    "widths": str([r.widths[k] for k in widths0 if k in r.widths]), "status": r.status.value,
                })
    return rows


QUALITY_COLUMNS = [("model", "model"), ("scorer", "scorer"), ("budget", "param budget"), ("method", "method"), ("params", "params kept"),
                   ("score", "retained score"), ("acc_pruned", "acc. pruned"), ("acc_ft", "acc. fine-tuned"),
                   ("widths", "widths")]


def _plain(v):
    """JSON for values json cannot write: NaN -> None, anything else -> its text."""
    return None if isinstance(v, float) and math.isnan(v) else str(v)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["scale", "quality", "all"])
    parser.add_argument("--layers", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--time-limit", type=float, default=60.0, help="per backend and instance (s)")
    parser.add_argument("--backends", nargs="+", default=None)
    parser.add_argument("--unreduced", action="store_true", help="also HiGHS on the full (unreduced) model")
    parser.add_argument("--unreduced-limit", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--methods", nargs="+", default=["exact", "global", "uniform"])
    from optprune.scoring import SCORERS

    parser.add_argument("--scorers", nargs="+", default=["magnitude", "flap"], choices=SCORERS.names())
    parser.add_argument("--normalize", default="mean")
    parser.add_argument("--round-to", type=int, default=1)
    parser.add_argument("--calibration-samples", type=int, default=512)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/structure_search_<part>)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args(argv)
    from optprune.bench._provenance import script_command, start_run

    folder = args.out or Path("results") / f"structure_search_{args.part}"
    run = start_run(folder, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    folder.mkdir(parents=True, exist_ok=True)
    records = folder / "records.jsonl"
    records.write_text("")  # this benchmark does not resume: a run rewrites its records
    sections = ["(header)"]

    def emit(part: str, title: str, rows: list[dict], columns) -> None:
        with open(records, "a") as fh:
            for i, row in enumerate(rows):
                fh.write(json.dumps({"id": f"{part}|{i}", "part": part, **row}, default=_plain) + "\n")
        text = f"## {title}\n\n{table(rows, columns)}\n"
        sections.append(text)
        print(text)

    out = {}
    if args.part in ("scale", "all"):
        rows = run_scale(args.layers, args.time_limit, args.backends, args.unreduced, args.unreduced_limit, args.seed)
        out["scale"] = rows
        emit("scale", "Scale: time to a proven optimum (gap <= 1e-4), budget params=0.5", rows, SCALE_COLUMNS)
    if args.part in ("quality", "all"):
        rows = run_quality(args.budgets, args.scorers, args.normalize, args.data_dir, args.methods, args.round_to,
                           args.calibration_samples)
        out["quality"] = rows
        emit("quality", f"Quality: normaliser {args.normalize}, same fine-tuning for every plan", rows, QUALITY_COLUMNS)
    sections[0] = run.header()
    (folder / "summary.md").write_text("\n".join(sections))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=_plain)


if __name__ == "__main__":
    main()
