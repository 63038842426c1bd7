"""Cacciola, Frangioni & Lodi in miniature: does structured pruning make adversarial MIPs solvable?

Cacciola, Frangioni & Lodi (2023), "Structured pruning of neural networks for
constraints learning": pruning neurons before embedding a network in a MIP can
turn MIPs that time out into MIPs that solve. The claim tested here: *structured
pruning at <= 1 point of accuracy loss speeds the MIPs up >= 10x and decides
instances the dense network cannot*.

Setup (full run): the VNN-COMP 2021 mnistfc networks 256x2 and 256x4 (from
``../shared/data``); structured pruning (L2 magnitude scores, the same ratio in
every hidden layer) removing 30/50/70/80% of the neurons, and unstructured
magnitude pruning of single weights (one global threshold) keeping the same
number of parameters as structured pruning at each ratio, each with and without
verification-friendly fine-tuning (:mod:`optprune.stability`: the ReLU-stability
loss at the smallest radius, weight ``--rs-weight``), plus the dense architecture
with the stability loss and 50% exact zeros; every pruned network
fine-tuned with distillation on the fixed ``train`` fold of the MNIST test set
(6,000 images; the MNIST training set is not available) and its accuracy
measured on the held-out ``test`` fold (2,000 images); max-margin adversarial
MIPs (maximise ``y_t - y_label`` over the L-inf ball, ``t`` the unpruned
network's runner-up class, solved to optimality by HiGHS) at eps 0.02 and 0.05
on the first 30 correctly classified test-fold images, 300 s each. Decided =
solved to optimality within the limit; time to verdict counts an undecided
instance as the limit. The whole run is ``optprune bench`` on a generated config
(resumable: run the same command again after an interruption).

Usage::

    python benchmarks/cacciola_mnist.py --workers 2          # full: days of CPU time, into results/cacciola_mnist
    python benchmarks/cacciola_mnist.py --quick              # 256x2, 2 ratios, 10 images, 60 s: results/cacciola_mnist_quick

It prints (and writes to ``OUT/cacciola_report.md``, under the provenance
header: command, date, machine, versions) the summary table, the cactus plot's
description and the verdict on the claim; ``OUT/records.jsonl`` and
``OUT/summary.md`` are ``optprune bench``'s.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def config_dict(args: argparse.Namespace) -> dict:
    """The benchmark config (same format as instances/*.toml) for the chosen options."""
    nets = {"256x2": "mnist-net_256x2.onnx", "256x4": "mnist-net_256x4.onnx"}
    return {
        "bench": {"name": "cacciola-quick" if args.quick else "cacciola", "time_limit": args.time_limit,
                  "backends": [args.backend], "threads": 1, "calibration": 512},
        "networks": [{"name": f"mnist-{n}", "dataset": "mnist", "onnx": f"{{data}}/vnncomp2021-mnistfc/{nets[n]}"}
                     for n in args.nets],
        "pruning": [
            {"name": "structured", "scorer": "magnitude", "decision": "uniform", "ratios": args.ratios},
            {"name": "unstructured", "scorer": "magnitude", "decision": "unstructured", "match": "uniform",
             "ratios": args.ratios},
            # The same decisions with verification-friendly fine-tuning (Xiao et al. 2019: ReLU-stability loss at
            # the smallest query radius), and the dense architecture with stability loss and 50% exact zeros.
            {"name": "structured-stable", "scorer": "magnitude", "decision": "uniform", "ratios": args.ratios,
             "stability": {"eps": min(args.eps), "rs_weight": args.rs_weight}},
            {"name": "unstructured-stable", "scorer": "magnitude", "decision": "unstructured", "match": "uniform",
             "ratios": args.ratios, "stability": {"eps": min(args.eps), "rs_weight": args.rs_weight}},
            {"name": "stable-sparse", "decision": "none",
             "stability": {"eps": min(args.eps), "rs_weight": args.rs_weight, "sparsity": 0.5}},
        ],
        "finetune": {"epochs": args.finetune_epochs, "lr": 1e-3, "distill": True},
        "queries": [{"name": "max-margin", "kind": "max_margin", "split": "test", "images": args.images,
                     "eps": args.eps, "target": "runner_up", "mode": args.mode}],
    }


def _dense_rows(rows: list[dict]) -> dict:
    return {(r["network"], r["eps"]): r for r in rows if r["pruning"] == "unpruned"}


def claim_report(rows: list[dict], tasks: list[dict], records: dict) -> tuple[str, bool | None]:
    """Per network and eps: the pruned variants within 1 accuracy point, their speed-up and newly decided instances."""
    dense = _dense_rows(rows)
    decided = {}
    for t in tasks:
        r = records.get(t["id"])
        if r is not None:
            decided[(t["network"], t["eps"], t["pruning"], t["ratio"], t["instance"])] = bool(r.get("decided"))
    lines = []
    verdicts = []
    for (net, eps), d in dense.items():
        ok = [r for r in rows if r["network"] == net and r["eps"] == eps and r["pruning"] != "unpruned"
              and r["accuracy"] is not None and r["accuracy"] >= d["accuracy"] - 0.01]
        if not ok:
            lines.append(f"- {net}, eps {eps:g}: no pruned variant within 1 point of the dense accuracy "
                         f"({100 * d['accuracy']:.2f}%); the claim cannot be tested here.")
            continue
        for r in ok:
            new = sum(1 for (n, e, p, q, inst), v in decided.items()
                      if (n, e, p, q) == (net, eps, r["pruning"], r["ratio"]) and v
                      and not decided.get((net, eps, "unpruned", 0.0, inst), False))
            speed = r.get("speedup_geo")
            holds = speed is not None and speed >= 10 and new > 0
            verdicts.append(holds)
            lines.append(
                f"- {net}, eps {eps:g}, {r['pruning']} {r['ratio']:g} (accuracy {100 * r['accuracy']:.2f}% vs "
                f"{100 * d['accuracy']:.2f}%): speed-up {_x(r.get('speedup'))} (medians), {_x(speed)} (geometric mean); "
                f"decided {r['decided']}/{r['instances']} vs {d['decided']}/{d['instances']} dense, {new} decided that "
                f"the dense network did not decide -> {'holds' if holds else 'does not hold'}"
            )
    overall = None if not verdicts else any(verdicts)
    return "\n".join(lines), overall


def cactus_description(rows: list[dict]) -> str:
    """What the cactus plot shows, in words: per network and eps, instances decided by the limit per variant."""
    out = []
    for (net, eps), _ in _dense_rows(rows).items():
        mine = [r for r in rows if r["network"] == net and r["eps"] == eps]
        parts = [f"{'unpruned' if r['pruning'] == 'unpruned' else r['pruning'] + ' ' + format(r['ratio'], 'g')}: "
                 f"{r['decided']}/{r['instances']} (median {_s(r['median_s'], r['time_limit'])})" for r in mine]
        out.append(f"- {net}, eps {eps:g}: " + "; ".join(parts))
    return "\n".join(out)


def _x(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.2f}x"


def _s(v, limit) -> str:
    return "-" if v is None else (">=" if v >= limit - 1e-9 else "") + f"{v:.1f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default results/cacciola_mnist, or results/cacciola_mnist_quick with --quick)")
    p.add_argument("--quick", action="store_true", help="256x2 only, ratios 0.5/0.8, eps 0.02, 10 images, 60 s")
    p.add_argument("--nets", nargs="+", choices=["256x2", "256x4"], default=None)
    p.add_argument("--ratios", nargs="+", type=float, default=None)
    p.add_argument("--eps", nargs="+", type=float, default=None)
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--time-limit", type=float, default=None)
    p.add_argument("--finetune-epochs", type=int, default=None)
    p.add_argument("--mode", choices=["optimize", "decision"], default="optimize")
    p.add_argument("--rs-weight", type=float, default=0.005, help="weight of the ReLU-stability loss (stable variants)")
    p.add_argument("--backend", default="highs")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--address", default=None)
    p.add_argument("--allow-dirty", action="store_true",
                   help="write under results/ from a dirty working tree (stamped in the header)")
    args = p.parse_args(argv)
    from optprune.bench._provenance import script_command, start_run

    command = script_command(None if argv is None else [__file__, *argv])
    if args.out is None:
        args.out = REPO / "results" / ("cacciola_mnist_quick" if args.quick else "cacciola_mnist")
    prov = start_run(args.out, command, allow_dirty=args.allow_dirty)
    quick = {"nets": ["256x2"], "ratios": [0.5, 0.8], "eps": [0.02], "images": 10, "time_limit": 60.0,
             "finetune_epochs": 10}
    full = {"nets": ["256x2", "256x4"], "ratios": [0.3, 0.5, 0.7, 0.8], "eps": [0.02, 0.05], "images": 30,
            "time_limit": 300.0, "finetune_epochs": 10}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    from optprune.bench import build_tasks, markdown_table, parse_config, prepare_variants, read_records, run_bench
    from optprune.errors import DataNotFoundError

    config = parse_config(config_dict(args), source="cacciola_mnist.py", base=REPO)
    try:
        result = run_bench(config, args.out, workers=args.workers, executor=args.executor, address=args.address,
                           command=command, allow_dirty=args.allow_dirty)
    except DataNotFoundError as exc:
        print(f"error: this benchmark needs the shared MNIST data: {exc}", file=sys.stderr)
        return 2
    dense, variants = prepare_variants(config, args.out)
    tasks = [t for t, _, _ in build_tasks(config, dense, variants)]
    records = {r["id"]: r for r in read_records(args.out / "records.jsonl")}
    claim, overall = claim_report(result.rows, tasks, records)
    verdict = {True: "HOLDS for at least one network/eps", False: "DOES NOT HOLD", None: "NOT TESTABLE"}[overall]
    report = "\n".join([
        prov.header().rstrip(), "",
        f"# Cacciola et al. in miniature ({'quick' if args.quick else 'full'} run)", "",
        f"Networks {', '.join(args.nets)}; structured (magnitude, uniform) and unstructured (magnitude, matching "
        f"parameters) pruning at {', '.join(f'{r:g}' for r in args.ratios)}; fine-tuned {args.finetune_epochs} "
        f"epochs with distillation on the MNIST test set's train fold, accuracy on its held-out test fold; "
        f"max-margin MIPs ({args.mode}) at eps {', '.join(f'{e:g}' for e in args.eps)} on {args.images} images, "
        f"{args.time_limit:g} s each, {args.backend}.", "",
        markdown_table(result.rows), "## Cactus plot (cactus.png): instances decided within the limit", "",
        cactus_description(result.rows), "",
        "## Claim: structured pruning at <= 1 point accuracy loss gives >= 10x and decides new instances", "",
        claim, "", f"Overall: {verdict}.", "",
    ])
    (args.out / "cacciola_report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
