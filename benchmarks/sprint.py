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

    python benchmarks/sprint.py [--n-train 300] [--seeds 0 1 2] [--top-k 4 1] [--allow-dirty]

``--top-k`` takes one or more values: the first is written to ``OUT``, each
further one to ``OUT/top<k>/`` (the outcome table is shared), so one command
makes the whole folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from optprune.bench._provenance import script_command, start_run
from optprune.lm import exact_match, get_task, load_lm
from optprune.lm._sprint import SELECTION_MODES, Sprint, majority_vote, sample_answers

ROOT = Path(__file__).resolve().parent.parent
NS = (1, 4, 8, 16)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "instances/lm/arith_tiny_1100.pt")
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--top-k", type=int, nargs="+", default=[4],
                        help="SPRINT's candidates; further values are written to OUT/top<k>/")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--out", type=Path, default=ROOT / "results/sprint")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args(argv)
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]),
                    allow_dirty=args.allow_dirty)
    torch.set_num_threads(1)
    task = get_task("arith")
    model = load_lm(args.model)
    cache = args.out / "outcomes.npz"
    results = []
    for i, top_k in enumerate(args.top_k):
        out = args.out if i == 0 else args.out / f"top{top_k}"
        out.mkdir(parents=True, exist_ok=True)
        results.append((top_k, out, *evaluate(args, top_k, out, model, task, cache)))
    header = run.header()  # the whole run's wall time in every summary
    for top_k, out, est, outcomes, records, seconds in results:
        write_summary(args, top_k, out, header, est, outcomes, records, seconds)


def evaluate(args, top_k: int, out: Path, model, task, cache: Path) -> tuple:
    """Fit SPRINT with ``top_k`` candidates (outcome table in ``cache``), write ``out``'s records.

    Returns what :func:`write_summary` needs: the estimator, its outcome table, the records and the seconds taken.
    """
    t0 = time.time()
    est = Sprint(n_train=args.n_train, n_samples=2, temperature=args.temperature, top_k=top_k,
                 cache=cache).fit(model, task, progress=True)
    fit_s = time.time() - t0
    outcomes = est.outcomes_
    print(f"selector: trained on {est.selector_.n_train_questions_} of {args.n_train} questions; "
          f"best fixed head {est.best_fixed_head_} ({fit_s:.0f} s)", flush=True)
    records = []
    for split in ("hard", "easy"):
        problems = task.problems(split)
        greedy = exact_match(model, problems)
        for seed in args.seeds:
            for mode in SELECTION_MODES:
                answers = sample_answers(model, problems, max(NS), mode, est.selector_, top_k,
                                         args.temperature, seed, est.best_fixed_head_)
                for n in NS:
                    acc = float(majority_vote(answers[:, :n], problems).mean())
                    records.append({"split": split, "seed": seed, "mode": mode, "n": n, "accuracy": acc,
                                    "questions": len(problems), "greedy_dense": greedy})
                print(f"{split} seed {seed} {mode:16s} " + " ".join(
                    f"@{r['n']}={r['accuracy']:.3f}" for r in records[-len(NS):]), flush=True)
    with (out / "records.jsonl").open("w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    return est, outcomes, records, time.time() - t0


def _table(records: list[dict]) -> dict:
    agg: dict = {}
    for r in records:
        agg.setdefault((r["split"], r["mode"], r["n"]), []).append(r["accuracy"])
    return {k: (float(np.mean(v)), float(np.std(v)), v) for k, v in agg.items()}


def split_tables(records: list[dict], agg: dict, splits) -> list[str]:
    """Summary lines: per split, accuracy@N (mean ± SD over seeds) of every selection mode."""
    lines: list[str] = []
    for split in splits:
        greedy = next(r["greedy_dense"] for r in records if r["split"] == split)
        q = next(r["questions"] for r in records if r["split"] == split)
        lines += [f"## {split} split ({q} questions; greedy unpruned {greedy:.3f})", "",
                  "| method | " + " | ".join(f"acc@{n}" for n in NS) + " |", "|---|" + "---|" * len(NS)]
        for mode in SELECTION_MODES:
            lines.append(f"| {mode} | " + " | ".join(
                f"{agg[(split, mode, n)][0]:.3f} ± {agg[(split, mode, n)][1]:.3f}" for n in NS) + " |")
        lines.append("")
    return lines


def write_summary(args, top_k: int, out: Path, header: str, est: Sprint, outcomes: np.ndarray, records: list[dict],
                  total: float) -> None:
    agg = _table(records)
    gain = outcomes[:, 1:] - outcomes[:, :1]
    lines = ["# SPRINT on TinyLM: per-question head pruning for best-of-N (arithmetic with steps)", "", header,
             f"Total time {total / 60:.1f} min (one thread). Model {args.model.name}; selector trained on "
             f"{args.n_train} training questions ({est.selector_.n_train_questions_} answered by at least one "
             f"candidate, the others skipped; mean success unpruned {outcomes[:, 0].mean():.3f}, with the best "
             f"head per question {np.maximum(outcomes[:, 0], outcomes[:, 1:].max(1)).mean():.3f}, fraction of "
             f"(question, head) pairs that help {float((gain > 0).mean()):.3f}, that hurt "
             f"{float((gain < 0).mean()):.3f}). Best fixed head (training questions): {est.best_fixed_head_}. "
             f"Sampling temperature {args.temperature}, SPRINT mixes its top {top_k} candidates (prune nothing "
             "or one head) over the samples; "
             f"majority vote; seeds {args.seeds}.", ""]
    lines += split_tables(records, agg, ("hard", "easy"))
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
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    _plot(agg, out / "accuracy_at_n.png")


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
