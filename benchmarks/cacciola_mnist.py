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

``--protocol spr`` (issue 27; into ``results/cacciola``): the authors' own
protocol, structured pruning *during training* with the Structured Perspective
Regularization (SPR) and their thresholding (:func:`spr_decision`; settings
from their public code, :data:`SPR_DEFAULTS`, grid :data:`SPR_GRID_LAMBDA` x
:data:`SPR_GRID_ALPHA`), no stability loss, on the main job's setting: the
config of ``instances/main.toml`` (mnistfc 256x4, the max-margin query on its
10 instances at eps 0.02, linear bounds, HiGHS, 20 s per instance with bounds,
build and solve timed as there, the same fine-tuning: 10 epochs with
distillation) with its pruning entries replaced by one ``spr`` entry per
(lambda, alpha) of ``--lambdas`` x ``--alphas``; the dense network runs in the
same invocation. Resumable (``optprune bench`` records); ``--force`` starts afresh::

    python benchmarks/cacciola_mnist.py --protocol spr --lambdas 0.1 0.5 1.0 --alphas 0.9
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAIN_CONFIG = REPO / "instances" / "main.toml"


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


# ---------------------------------------------------------------------------------------------------------------
# The authors' protocol: structured pruning *during training* with the Structured Perspective Regularization.
# ---------------------------------------------------------------------------------------------------------------

#: the settings of the authors' public code for this paper (MCacciola94/my_gurobi-machinelearning: main.py,
#: modeltraining/trainer.py): SGD lr 0.1, no momentum, batch 128, 50 epochs with the regulariser, big-M per layer
#: (max |w| of the layer), unstructured threshold search (6 bisection steps on [0, 0.1], train accuracy may drop
#: < 5 points), then a neuron is kept iff more than 0.5% of its incoming weights survive the threshold (and then
#: all of them are restored), 10 epochs of fine-tuning; their grid: lambda in {0.1, 0.5, 1.0}, alpha in
#: {0.1, 0.5, 0.9} (main.py runs lambda 0.5, alpha 0.9).
SPR_DEFAULTS = {"epochs": 50, "lr": 0.1, "batch_size": 128, "threshold": 0.05, "threshold_str": 0.005,
                "search_steps": 6, "search_high": 0.1}
SPR_GRID_LAMBDA = (0.1, 0.5, 1.0)
SPR_GRID_ALPHA = (0.1, 0.5, 0.9)


def spr_penalty(weights: list, big_m: list[float], alpha: float):
    r"""Structured Perspective Regularization (Cacciola, Frangioni, Li & Lodi 2023, SIAM J. Math. Data Sci.).

    For every neuron ``j`` of a layer (its incoming weight row ``w``, big-M ``M`` of the layer, :math:`c =
    \sqrt{\alpha/(1-\alpha)}`), the perspective relaxation of :math:`\alpha\|w\|_2^2 + (1-\alpha) z_j` with
    :math:`\|w\|_\infty \le M z_j`, :math:`z_j \in \{0, 1\}`, with :math:`z` projected away:

    * :math:`\alpha\|w\|_2^2 + 1 - \alpha` if :math:`\max(\|w\|_\infty/M,\ c\|w\|_2) \ge 1` (:math:`z = 1`);
    * :math:`2\sqrt{\alpha(1-\alpha)}\,\|w\|_2` if :math:`\|w\|_\infty/M \le c\|w\|_2 < 1`;
    * :math:`\alpha\|w\|_2^2 M/\|w\|_\infty + (1-\alpha)\|w\|_\infty/M` otherwise;

    each row's term times its length, summed over layers and divided by the number of weights (the authors'
    normalisation; the loss adds ``lambda`` times this).
    """
    import torch

    c = float(np.sqrt(alpha / (1.0 - alpha)))
    total, count = 0.0, 0
    for w, m in zip(weights, big_m):
        ninf = w.abs().amax(dim=1)
        n2 = w.norm(dim=1)
        case1 = torch.maximum(ninf / m, c * n2) >= 1
        case2 = (ninf / m <= c * n2) & ~case1
        r1 = alpha * n2 ** 2 + 1 - alpha
        r2 = 2 * (alpha * (1 - alpha)) ** 0.5 * n2
        r3 = alpha * n2 ** 2 / torch.clamp(ninf, min=1e-10) * m + (1 - alpha) * ninf / m
        term = torch.where(case1, r1, torch.where(case2, r2, r3))
        total = total + term.sum() * w.shape[1]
        count += w.numel()
    return total / count


def spr_decision():
    """A :class:`~optprune.pruning.MethodDecision` running :func:`spr_prune` (built here: torch loads only now).

    Structured pruning during training with SPR, then the authors' thresholding: trains a copy of the dense
    network (from its trained weights; big-M of each layer = its largest |w|) for ``epochs`` epochs of SGD on
    cross-entropy + ``lamb`` * :func:`spr_penalty` over the MNIST 'train' fold (the calibration sample the bench
    passes is not used), then bisects the magnitude threshold (``search_steps`` steps on [0, ``search_high``])
    for the largest one that costs less than ``threshold`` train accuracy, removes every hidden neuron with at
    most ``threshold_str`` of its incoming weights above it (its constant output relu(b) folded into the next
    layer's bias; biases are not thresholded) and keeps the full weights of the others: a purely structured
    result, no stability loss. ``ratio`` is ignored (the regulariser decides how many neurons go).
    """
    from optprune._validation import Interval
    from optprune.pruning import MethodDecision

    class SPRDecision(MethodDecision):
        options: ClassVar[dict] = {
            "lamb": (0.5, [Interval(float, 0.0, None, closed="neither", finite=True)]),
            "alpha": (0.9, [Interval(float, 0.0, 1.0, closed="neither")]),
            **{k: (v, [Interval(type(v), 0, None, closed="neither")]) for k, v in SPR_DEFAULTS.items()},
        }

        def prune(self, model, data, input_shape, ratio, *, seed=0, **options):
            opts = self.check_options(options, "decision 'spr'")
            return spr_prune(model, tuple(int(d) for d in input_shape), seed=seed, **opts)

        def __repr__(self) -> str:
            return "SPRDecision()"

    return SPRDecision()


def spr_prune(model, input_shape: tuple[int, ...], *, seed: int, lamb: float, alpha: float, epochs: int,
              lr: float, batch_size: int, threshold: float, threshold_str: float, search_steps: int,
              search_high: float):
    """:class:`SPRDecision`'s work on ``model`` (left unchanged): ``MethodOutcome(smaller model, decision, info)``."""
    import copy
    import time

    import torch
    from torch import nn

    from optprune.data import load_dataset
    from optprune.pruning import MethodOutcome, PruningDecision, apply_decision, dependency_groups
    from optprune.training import accuracy

    started = time.perf_counter()
    X, y = load_dataset("mnist", "train")
    Xt = torch.as_tensor(X, dtype=torch.float32).reshape(len(X), *input_shape)
    yt = torch.as_tensor(y, dtype=torch.long)
    net = copy.deepcopy(model).train()
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    big_m = [float(m.weight.detach().abs().max()) for m in linears]
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(len(Xt), generator=gen)
        for start in range(0, len(Xt), batch_size):
            idx = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(net(Xt[idx]), yt[idx])
            loss = loss + lamb * spr_penalty([m.weight for m in linears], big_m, alpha)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch in (0, epochs - 1) or (epoch + 1) % 10 == 0:
            net.eval()
            history.append({"epoch": epoch + 1, "train_accuracy": accuracy(net, X, y)})
            net.train()
    net.eval()
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    base = accuracy(net, X, y)

    def thresholded(thr: float) -> float:
        with torch.no_grad():
            for m in linears:
                m.weight.mul_((m.weight.abs() > thr).float())
        acc = accuracy(net, X, y)
        net.load_state_dict(trained)
        return acc

    lo, hi, best = 0.0, search_high, 0.0
    for _ in range(search_steps):
        thr = 0.5 * (lo + hi)
        if base - thresholded(thr) < threshold:
            lo = best = thr
        else:
            hi = thr
    groups, _ = dependency_groups(net, input_shape)
    names = {id(m): n for n, m in net.named_modules()}
    hidden = linears[:-1]
    kept, widths = {}, {}
    with torch.no_grad():
        for layer, nxt in zip(hidden, linears[1:]):
            alive = ((layer.weight.abs() > best).float().mean(dim=1) > threshold_str)
            if not bool(alive.any()):  # never empty a layer: keep its strongest neuron
                alive[int(layer.weight.norm(dim=1).argmax())] = True
            gone = ~alive
            nxt.bias += nxt.weight[:, gone] @ torch.relu(layer.bias[gone])  # removed neurons output relu(b)
            group = next(g for g in groups if any(mm.module == names[id(layer)] and mm.role == "out"
                                                  for mm in g.members))
            kept[group.name] = tuple(int(i) for i in torch.nonzero(alive).reshape(-1))
            widths[group.name] = group.width
    decision = PruningDecision(kept, widths, input_shape, {"method": "spr", "lamb": lamb, "alpha": alpha})
    small = apply_decision(net, decision, groups=groups)
    info = {"threshold": best, "train_accuracy_trained": base, "train_accuracy_pruned": accuracy(small, X, y),
            "history": history, "spr_s": round(time.perf_counter() - started, 2)}
    return MethodOutcome(small, decision, info)


def spr_config(args: argparse.Namespace) -> dict:
    """``instances/main.toml`` with its pruning entries replaced by SPR at every (lambda, alpha) of the grid."""
    from optprune.bench._config import _toml

    with open(MAIN_CONFIG, "rb") as fh:
        cfg = _toml().load(fh)
    cfg.pop("surrogate", None)
    cfg["bench"]["name"] = "cacciola-spr"
    if args.images is not None:  # a smaller sample than the main job's (smoke runs); the report says so
        for q in cfg["queries"]:
            q["images"] = args.images
    if args.time_limit is not None:
        cfg["bench"]["time_limit"] = args.time_limit
    cfg["pruning"] = [{"name": f"spr-lambda{lamb:g}-alpha{alpha:g}", "decision": "spr",
                       "scorer_options": {"lamb": lamb, "alpha": alpha, "epochs": args.spr_epochs}}
                      for alpha in args.alphas for lamb in args.lambdas]
    return cfg


def spr_report(rows: list[dict], tasks: list[dict], records: dict, variants: list) -> tuple[str, bool | None]:
    """Per SPR variant: params/widths, accuracy vs dense, decided of the 10 and of those dense leaves open."""
    dense = next(r for r in rows if r["pruning"] == "unpruned")
    decided: dict = {}
    for t in tasks:
        r = records.get(t["id"])
        if r is not None:
            decided[(t["pruning"], t["instance"])] = bool(r.get("decided"))
    instances = sorted({inst for (p, inst) in decided if p == "unpruned"})
    open_dense = [i for i in instances if not decided.get(("unpruned", i), False)]
    meta = {v.pruning: v.meta for v in variants}
    lines = [f"Dense: accuracy {100 * dense['accuracy']:.2f}%, decided {dense['decided']}/{dense['instances']} "
             f"(open: {len(open_dense)} of {len(instances)}).", "",
             "| variant | widths | params | accuracy (points vs dense) | unstable (median) | decided (of "
             f"{len(instances)}) | decided of the {len(open_dense)} dense leaves open | median time (s) | "
             "within 1 point and >= 8 decided |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    verdicts = []
    for r in rows:
        if r["pruning"] == "unpruned":
            continue
        new = sum(1 for i in open_dense if decided.get((r["pruning"], i), False))
        ok = r["accuracy"] is not None and r["accuracy"] >= dense["accuracy"] - 0.01
        holds = ok and r["decided"] >= 8
        verdicts.append(holds)
        m = meta.get(r["pruning"], {})
        lines.append(f"| {r['pruning']} | {m.get('widths', '')} | {r['params']} | {100 * r['accuracy']:.2f} "
                     f"({100 * (r['accuracy'] - dense['accuracy']):+.2f}) | {r['unstable']} | "
                     f"{r['decided']} | {new} | {_s(r['median_s'], r['time_limit'])} | "
                     f"{'yes' if holds else 'no'} |")
    return "\n".join(lines), (None if not verdicts else any(verdicts))


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
    p.add_argument("--protocol", choices=["grid", "spr"], default="grid",
                   help="grid: magnitude pruning after training (above); spr: the authors' pruning during training "
                        "on the main job's setting (results/cacciola)")
    p.add_argument("--lambdas", nargs="+", type=float, default=list(SPR_GRID_LAMBDA), help="spr: lambda values")
    p.add_argument("--alphas", nargs="+", type=float, default=[0.9], help="spr: alpha values (their grid: 0.1 0.5 0.9)")
    p.add_argument("--spr-epochs", type=int, default=SPR_DEFAULTS["epochs"], help="spr: training epochs with SPR")
    p.add_argument("--force", action="store_true", help="spr: discard OUT's records and start afresh")
    args = p.parse_args(argv)
    from optprune.bench._provenance import script_command, start_run

    command = script_command(None if argv is None else [__file__, *argv])
    if args.protocol == "spr":
        return run_spr(args, command)
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


def run_spr(args: argparse.Namespace, command: list[str]) -> int:
    """``--protocol spr``: the main job's config with SPR entries, run by ``optprune bench``; report in OUT."""
    from optprune.bench import build_tasks, markdown_table, parse_config, prepare_variants, read_records, run_bench
    from optprune.bench._provenance import start_run
    from optprune.pruning import DECISIONS

    if args.out is None:
        args.out = REPO / "results" / "cacciola"
    prov = start_run(args.out, command, allow_dirty=args.allow_dirty)
    DECISIONS.register("spr", spr_decision(), "SPR pruning during training (Cacciola et al.)", replace=True)
    config = parse_config(spr_config(args), source="cacciola_mnist.py --protocol spr", base=REPO)
    result = run_bench(config, args.out, workers=args.workers or 1, executor=args.executor, address=args.address,
                       command=command, allow_dirty=args.allow_dirty, force=args.force)
    dense, variants = prepare_variants(config, args.out)
    tasks = [t for t, _, _ in build_tasks(config, dense, variants)]
    records = {r["id"]: r for r in read_records(args.out / "records.jsonl")}
    table, overall = spr_report(result.rows, tasks, records, variants)
    grid = ", ".join(f"lambda {lamb:g}" for lamb in args.lambdas) + "; " + ", ".join(f"alpha {a:g}" for a in args.alphas)
    report = "\n".join([
        prov.header().rstrip(), "",
        "# Cacciola, Frangioni & Lodi: structured pruning during training (SPR), no stability loss", "",
        f"The main job's setting (instances/main.toml: mnistfc 256x4, max-margin MIPs at eps 0.02 on its 10 "
        f"instances, linear bounds, HiGHS, {config.time_limit:g} s per instance, 10 epochs of fine-tuning with "
        f"distillation for every pruned network) with SPR pruning during training in place of its pruning entries: "
        f"{args.spr_epochs} epochs of SGD (lr {SPR_DEFAULTS['lr']}, batch {SPR_DEFAULTS['batch_size']}) on "
        f"cross-entropy + lambda * SPR from the dense network's weights, the authors' threshold search (train "
        f"accuracy drop < {100 * SPR_DEFAULTS['threshold']:g} points) and neuron removal (at most "
        f"{100 * SPR_DEFAULTS['threshold_str']:g}% of a neuron's weights above the threshold). Ran: {grid} (of "
        f"their grid lambda {list(SPR_GRID_LAMBDA)} x alpha {list(SPR_GRID_ALPHA)}). The bench's 'ratio' column "
        "is not used by SPR (the regulariser decides the widths).", "",
        table, "", "## optprune bench summary", "", markdown_table(result.rows),
        f"Target (a structured-only variant within 1 point of dense accuracy deciding >= 8 of the 10): "
        f"{ {True: 'met', False: 'missed', None: 'not testable'}[overall] }.", "",
    ])
    (args.out / "cacciola_report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
