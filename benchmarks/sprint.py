"""SPRINT vs best-of-N, random head pruning and the best fixed head on the small LM (accuracy@N, 3 seeds).

Model: ``instances/lm/arith_tiny_1100.pt`` (the reference architecture trained for
1,100 steps, so that it still makes mistakes; the 2,000-step model is right on
399 of 400 test problems and leaves nothing to choose). SPRINT's selector is
trained on ``--n-train`` training questions (outcome table: greedy + 2 samples at
temperature 0.7 per question and masked head, cached in
``results/sprint/outcomes.npz``). Evaluation: for every seed, 16 samples per
question at temperature 0.7 are drawn once per method; accuracy@N is the
majority vote over the first N (N = 1, 4, 8, 16), on the ``hard`` (4-digit) and
``easy`` (<= 2 digits) test problems. Writes ``records.jsonl``, ``summary.md``
(provenance header first) and ``accuracy_at_n.png`` to ``results/sprint/``::

    python benchmarks/sprint.py [--n-train 300] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from optprune.bench._provenance import provenance_header
from optprune.lm import exact_match, get_task, load_lm
from optprune.lm._sprint import SELECTION_MODES, Sprint, majority_vote, sample_answers

ROOT = Path(__file__).resolve().parent.parent
NS = (1, 4, 8, 16)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "instances/lm/arith_tiny_1100.pt")
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--out", type=Path, default=ROOT / "results/sprint")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    header = provenance_header()
    task = get_task("arith")
    model = load_lm(args.model)
    t0 = time.time()
    est = Sprint(n_train=args.n_train, n_samples=2, temperature=args.temperature, top_k=args.top_k,
                 cache=args.out / "outcomes.npz").fit(model, task, progress=True)
    fit_s = time.time() - t0
    out = est.outcomes_
    print(f"selector: trained on {est.selector_.n_train_questions_} of {args.n_train} questions; "
          f"best fixed head {est.best_fixed_head_} ({fit_s:.0f} s)", flush=True)
    records = []
    for split in ("hard", "easy"):
        problems = task.problems(split)
        greedy = exact_match(model, problems)
        for seed in args.seeds:
            for mode in SELECTION_MODES:
                answers = sample_answers(model, problems, max(NS), mode, est.selector_, args.top_k,
                                         args.temperature, seed, est.best_fixed_head_)
                for n in NS:
                    acc = float(majority_vote(answers[:, :n], problems).mean())
                    records.append({"split": split, "seed": seed, "mode": mode, "n": n, "accuracy": acc,
                                    "questions": len(problems), "greedy_dense": greedy})
                print(f"{split} seed {seed} {mode:16s} " + " ".join(
                    f"@{r['n']}={r['accuracy']:.3f}" for r in records[-len(NS):]), flush=True)
    with (args.out / "records.jsonl").open("w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    write_summary(args, header, est, out, records, time.time() - t0)


def _table(records: list[dict]) -> dict:
    agg: dict = {}
    for r in records:
        agg.setdefault((r["split"], r["mode"], r["n"]), []).append(r["accuracy"])
    return {k: (float(np.mean(v)), float(np.std(v)), v) for k, v in agg.items()}


def write_summary(args, header: str, est: Sprint, outcomes: np.ndarray, records: list[dict], total: float) -> None:
    agg = _table(records)
    gain = outcomes[:, 1:] - outcomes[:, :1]
    lines = ["# SPRINT on TinyLM: per-question head pruning for best-of-N (arithmetic with steps)", "", header,
             f"Total time {total / 60:.1f} min (one thread). Model {args.model.name}; selector trained on "
             f"{args.n_train} training questions ({est.selector_.n_train_questions_} answered by at least one "
             f"candidate, the others skipped; mean success unpruned {outcomes[:, 0].mean():.3f}, with the best "
             f"head per question {np.maximum(outcomes[:, 0], outcomes[:, 1:].max(1)).mean():.3f}, fraction of "
             f"(question, head) pairs that help {float((gain > 0).mean()):.3f}, that hurt "
             f"{float((gain < 0).mean()):.3f}). Best fixed head (training questions): {est.best_fixed_head_}. "
             f"Sampling temperature {args.temperature}, SPRINT mixes its top {args.top_k} candidates (prune nothing "
             "or one head) over the samples; "
             f"majority vote; seeds {args.seeds}.", ""]
    for split in ("hard", "easy"):
        greedy = next(r["greedy_dense"] for r in records if r["split"] == split)
        q = next(r["questions"] for r in records if r["split"] == split)
        lines += [f"## {split} split ({q} questions; greedy unpruned {greedy:.3f})", "",
                  "| method | " + " | ".join(f"acc@{n}" for n in NS) + " |", "|---|" + "---|" * len(NS)]
        for mode in SELECTION_MODES:
            lines.append(f"| {mode} | " + " | ".join(
                f"{agg[(split, mode, n)][0]:.3f} ± {agg[(split, mode, n)][1]:.3f}" for n in NS) + " |")
        lines.append("")
    lines += ["## Target", "", "SPRINT ahead of best-of-N at every N on the hard split, by more than the spread "
              "over the seeds (spread = the larger of the two standard deviations over seeds):", ""]
    met = True
    for n in NS:
        s, b = agg[("hard", "sprint", n)], agg[("hard", "best_of_n", n)]
        diff, spread = s[0] - b[0], max(s[1], b[1])
        ok = diff > spread
        met &= ok
        lines.append(f"- N={n}: {s[0]:.3f} vs {b[0]:.3f}, difference {diff:+.3f}, spread {spread:.3f} -> "
                     f"{'met' if ok else 'MISSED'}")
    lines += ["", f"Target {'met' if met else 'MISSED'}.", "", "![accuracy@N](accuracy_at_n.png)"]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    _plot(agg, args.out / "accuracy_at_n.png")


def _plot(agg: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=False)
    for ax, split in zip(axes, ("hard", "easy")):
        for mode in SELECTION_MODES:
            m = [agg[(split, mode, n)][0] for n in NS]
            s = [agg[(split, mode, n)][1] for n in NS]
            ax.errorbar(NS, m, yerr=s, marker="o", capsize=3, label=mode)
        ax.set_xscale("log", base=2)
        ax.set_xticks(NS, [str(n) for n in NS])
        ax.set_xlabel("N (samples, majority vote)")
        ax.set_title(f"{split} split")
    axes[0].set_ylabel("accuracy@N")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
