"""The LM pruning table on a transformers LLaMA (grouped-query attention, RoPE, RMSNorm, SwiGLU), issue 26.

``--model instances/hf/arith_gpt2 --out results/lm_pruning_gpt2`` runs the same table on the GPT-2.

At 20/35/50% fewer parameters on ``instances/hf/arith_llama`` (a ``LlamaForCausalLM`` of 4 layers,
d=64, 4 query heads on 2 KV heads, SwiGLU 128, trained here on the arithmetic task with carry steps:
``instances/hf/README.md``), every method of :func:`optprune.hf.hf_method` lands at most at
``(1 - ratio)`` of the dense parameter count; units are the dependency groups of
:func:`optprune.hf.hf_groups` (a KV head with its two query heads; an MLP neuron with its gate/up rows):

* one shot, no training: ``magnitude``, ``taylor``, ``wanda_sp``, ``bonsai``, ``reconstruct`` (uniform
  widths: each layer loses ``ratio`` of its KV groups, at least one kept, the MLPs share the rest) and
  ``flap`` (global standardised ranking + bias compensation), 128 calibration problems;
* ``magnitude+lora``: one-shot magnitude, then ``--steps`` steps of peft LoRA recovery;
* ``lorashear``: 4 progressive stages with peft LoRA recovery between them and after the cut;
* ``compresso``: L0 gates on KV groups and neurons + peft LoRA (``steps - steps//5`` gate steps, then
  ``steps//5`` LoRA recovery steps); no hidden-dimension gates.

Exact match (greedy) and perplexity per completion token on the 400 test problems; time to prune
(``prune_seconds``: scoring and cut, for trained methods with their training) and the whole fit.
Records are appended to ``results/lm_pruning_llama/records.jsonl`` as they arrive (a rerun skips the
cells already there), then ``summary.md`` (provenance header first)::

    python benchmarks/lm_pruning_llama.py [--steps 200] [--ratios 0.2 0.35 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from optprune.bench._provenance import script_command, start_run
from optprune.hf import CausalLMAdapter, hf_method, load_hf, n_params
from optprune.hf._methods import HFOneShot, hf_pruning_report
from optprune.hf._structure import hf_groups
from optprune.lm import exact_match, get_task, perplexity

ROOT = Path(__file__).resolve().parent.parent
RUNS = ("magnitude", "taylor", "wanda_sp", "flap", "bonsai", "reconstruct", "magnitude+lora", "lorashear",
        "compresso")


def run_name(text: str) -> str:
    """``METHOD`` or ``METHOD+RECOVERY`` (argparse type)."""
    method, _, recovery = text.partition("+")
    try:
        hf_method(method, 0.35)
    except Exception as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if recovery and recovery not in ("none", "lora", "full"):
        raise argparse.ArgumentTypeError(f"RECOVERY must be none, lora or full; got {recovery!r}")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "instances/hf/arith_llama")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.35, 0.5])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--methods", nargs="+", default=list(RUNS), type=run_name,
                        help="runs METHOD or METHOD+RECOVERY (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results/lm_pruning_llama")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args(argv)
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]),
                    allow_dirty=args.allow_dirty)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    task = get_task("arith")
    model = load_hf(args.model)
    groups = hf_groups(model)
    test = task.problems("test")
    t0 = time.time()
    adapter = CausalLMAdapter(model)
    dense = {"params": n_params(model), "exact_match": exact_match(adapter, test),
             "perplexity": perplexity(adapter, test), "architecture": type(model).__name__,
             "query_heads_per_unit": max(int(g.query_heads_per_unit or 1) for g in groups)}
    print(f"dense: {dense} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    rec_path = args.out / "records.jsonl"
    done = {}
    if rec_path.exists():
        for line in rec_path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["ratio"], r["method"], r["steps"] if r["trained"] else 0)] = r
    cells = [(ratio, name) for ratio in args.ratios for name in args.methods]
    run.resumed(sum(1 for ratio, name in cells if _key(ratio, name, args.steps) in done), len(cells))
    records = []
    for ratio, name in cells:
        key = _key(ratio, name, args.steps)
        if key in done:
            records.append(done[key])
            continue
        method, _, recovery = name.partition("+")
        t = time.time()
        est = hf_method(method, ratio, steps=args.steps, seed=args.seed, recovery=recovery or "none").fit(model, task)
        fit_s = time.time() - t
        prefix = getattr(est, "prompt", None) or ""
        rep = hf_pruning_report(model, est.model_, task, prefix=prefix, dense_report=dense, groups=groups)
        trained = not isinstance(est, HFOneShot) or est.recovery != "none"
        rec = {"method": name, "ratio": ratio, "trained": trained, "steps": args.steps if trained else 0,
               "prune_seconds": round(float(est.prune_seconds_), 2), "fit_seconds": round(fit_s, 1),
               "target_params": est.target_params_, **rep}
        if hasattr(est, "expected_fraction_"):
            rec["expected_fraction_at_cut"] = est.expected_fraction_
        records.append(rec)
        with rec_path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(f"{ratio:.2f} {name:16s} params {rep['params_after']} em {rep['exact_match_after']:.3f} "
              f"ppl {rep['perplexity_after']:.3f} ({fit_s:.0f} s)", file=sys.stderr, flush=True)
    write_summary(args, run.header(), dense, records, time.time() - t0)


def _key(ratio: float, name: str, steps: int) -> tuple:
    method, _, recovery = name.partition("+")
    trained = method in ("lorashear", "compresso", "compresso-hidden", "compresso-prompt") or recovery in ("lora",
                                                                                                           "full")
    return (ratio, name, steps if trained else 0)


def write_summary(args, header: str, dense: dict, records: list[dict], total: float) -> None:
    title = {"LlamaForCausalLM": "LlamaForCausalLM (GQA, RoPE, RMSNorm, SwiGLU)",
             "GPT2LMHeadModel": "GPT2LMHeadModel (fused c_attn, GELU MLP)"}.get(dense["architecture"],
                                                                            dense["architecture"])
    per_unit = dense.get("query_heads_per_unit", 1)
    unit = f"a KV head with its {per_unit} query heads (GQA)" if per_unit > 1 else "an attention head (its q/k/v rows)"
    lines = [f"# LM pruning on a transformers {title}; arithmetic with steps",
             "", header,
             f"Time: {sum(r['fit_seconds'] for r in records) / 60:.1f} min of fits over all cells ({total / 60:.1f} "
             f"min in this invocation; one thread each). Training budget: {args.steps} optimizer steps of 64 "
             f"problems for every trained method (Compresso: {args.steps - args.steps // 5} gate steps + "
             f"{args.steps // 5} recovery steps; LoRAShear: 4 stages, recovery after each and after the cut; "
             "magnitude+lora: all after the cut); peft LoRA rank 8 (alpha 8) on every projection of the units. "
             f"One-shot methods: no training, 128 calibration problems. Seed {args.seed}; one run per cell.", "",
             f"Dense model ({dense['architecture']}): {dense['params']} parameters, exact match "
             f"{dense['exact_match']:.3f}, perplexity {dense['perplexity']:.4f} on the 400 test problems.", "",
             f"Units: {unit} and an MLP neuron (its input rows and output column), found by "
             "optprune.hf.hf_groups from the module graph. `prune s`: scoring and cut (with the "
             "method's own training for LoRAShear/Compresso, without the recovery of magnitude+lora); `fit s`: "
             "everything.", "",
             "| ratio | method | params | exact match | perplexity | q heads/layer | neurons/layer | prune s | fit s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['ratio']:.2f} | {r['method']} | {r['params_after']} | {r['exact_match_after']:.3f} | "
                     f"{r['perplexity_after']:.4f} | {r['heads_kept']} | {r['neurons_kept']} | "
                     f"{r['prune_seconds']:.1f} | {r['fit_seconds']:.1f} |")
    lines += ["", "## Targets", ""]
    by = {(r["ratio"], r["method"]): r for r in records}
    r20 = by.get((0.2, "lorashear"))
    if r20:
        gap = (dense["exact_match"] - r20["exact_match_after"]) * 100
        lines.append(f"- LoRAShear at 20% within 1 point of dense exact match: {r20['exact_match_after']:.3f} vs "
                     f"{dense['exact_match']:.3f}, gap {gap:+.1f} points -> {'met' if gap <= 1.0 else 'MISSED'}.")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
