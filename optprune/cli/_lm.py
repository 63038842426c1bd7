"""``optprune lm train|eval|generate|prune`` and ``optprune sprint train|eval``: the small language model.

``lm``: train the reference model, evaluate, generate, prune with LoRA (Compresso,
LoRAShear, one-shot engine scorers). ``sprint``: per-question head pruning for
best-of-N (SPRINT) on the same model.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Annotated

import typer

from optprune.cli._output import JSON_HELP, emit, stderr_console
from optprune.cli._validate import FORCE_HELP, _same_file_key, check_number, check_output_file, check_output_files
from optprune.errors import InvalidParameterError
from optprune.lm import LM_METHODS

#: This module's commands; optprune.cli._app adds them to the app (a command module never imports the app).
commands = typer.Typer()

__all__ = ["commands", "lm_app", "sprint_app"]

lm_app = typer.Typer(
    name="lm",
    help="The small character-level language model (arithmetic with steps): train, evaluate, prune with LoRA.",
    no_args_is_help=True,
)
commands.add_typer(lm_app, name="lm")
sprint_app = typer.Typer(
    name="sprint",
    help="SPRINT: learn per question which attention head to prune; diverse best-of-N sampling.",
    no_args_is_help=True,
)
commands.add_typer(sprint_app, name="sprint")

MODEL_HELP = "A language model written by optprune lm train / prune (.pt)."
def _distinct_paths(paths: dict[str, Path | None]) -> None:
    """Refuse one file given for two roles (``--out X --cache X`` would write the selector over its cache)."""
    seen: dict[str, str] = {}
    for role, path in paths.items():
        if path is None:
            continue
        key = _same_file_key(Path(path))
        if key in seen:
            raise InvalidParameterError(f"{seen[key]} and {role} name the same file {str(path)!r}; "
                                        "give each its own path")
        seen[key] = role


def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def _data(name: str):
    from optprune.lm import get_task

    return get_task(name)


@lm_app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the model (.pt).")],
    steps: Annotated[int, typer.Option("--steps", help="AdamW steps of 64 problems.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the initial weights and the training stream.")] = 0,
    data: Annotated[str, typer.Option("--data", help="Dataset: arith.")] = "arith",
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Train the reference TinyLM (4 layers, d=64, 4 heads, MLP 256) from a seed; report test exact match."""
    check_number("--steps", steps, low=1)
    check_number("--seed", seed, low=0)
    check_output_file("--out", out, force=force)
    task = _data(data)
    _threads()
    from optprune.lm import exact_match, perplexity, save_lm, train_reference
    from optprune.pruning import count_parameters

    t0 = time.time()
    model, losses = train_reference(steps=steps, seed=seed, log_every=0 if as_json else 200)
    seconds = time.time() - t0
    test = task.problems("test")
    payload = {"out": str(out), "steps": steps, "seed": seed, "train_seconds": round(seconds, 1),
               "params": count_parameters(model), "final_loss": float(sum(losses[-50:]) / len(losses[-50:])),
               "exact_match": exact_match(model, test), "perplexity": perplexity(model, test)}
    save_lm(model, out, {k: v for k, v in payload.items() if k != "out"})
    emit(payload, as_json)


@lm_app.command("eval")
def eval_command(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help=MODEL_HELP)],
    data: Annotated[str, typer.Option("--data", help="Dataset: arith.")] = "arith",
    split: Annotated[str, typer.Option("--split", help="test, val, hard, easy or train.")] = "test",
    prefix: Annotated[str, typer.Option("--prefix", help="Text put before every prompt.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Exact-match accuracy (greedy) and perplexity per completion token on a split."""
    task = _data(data)
    _threads()
    from optprune.lm import exact_match, layer_widths, load_lm, perplexity
    from optprune.pruning import count_parameters

    model = load_lm(model_path)
    problems = task.problems(split)
    emit({"model": str(model_path), "split": split, "n": len(problems), "params": count_parameters(model),
          "exact_match": exact_match(model, problems, prefix=prefix),
          "perplexity": perplexity(model, problems, prefix=prefix), **layer_widths(model)}, as_json)


@lm_app.command("generate")
def generate_command(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help=MODEL_HELP)],
    prompt: Annotated[list[str], typer.Option("--prompt", help="A prompt such as 047+285= (repeatable).")],
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy.")] = 0.0,
    top_k: Annotated[int, typer.Option("--top-k", help="Sample among the k most likely tokens (0 = all).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Continue prompts greedily or by sampling (temperature, top-k)."""
    check_number("--temperature", temperature, low=0)
    check_number("--top-k", top_k, low=0)
    check_number("--seed", seed, low=0)
    if any(not p for p in prompt):
        raise InvalidParameterError("--prompt needs at least one character (such as 047+285=); got ''")
    _threads()
    from optprune.lm import generate, load_lm

    model = load_lm(model_path)
    outs = generate(model, prompt, temperature=temperature, top_k=top_k or None, seed=seed)
    emit({"prompts": prompt, "completions": outs}, as_json, human="\n".join(p + o.rstrip("\n")
                                                                           for p, o in zip(prompt, outs)))


@lm_app.command("prune")
def prune_command(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help=MODEL_HELP)],
    method: Annotated[str, typer.Option("--method", help=", ".join(LM_METHODS.names()) + ".")] = "compresso",
    ratio: Annotated[float, typer.Option("--ratio", help="Fraction of parameters removed, in (0, 1).")] = 0.35,
    data: Annotated[str, typer.Option("--data", help="Dataset: arith.")] = "arith",
    steps: Annotated[int, typer.Option("--steps", help="Training steps (gates + recovery, or recovery).")] = 300,
    recovery: Annotated[str, typer.Option(
        "--recovery", help="One-shot methods: none, lora or full fine-tuning for --steps after the cut.")] = "lora",
    lora_rank: Annotated[int, typer.Option("--lora-rank", help="LoRA rank.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Seed of gates, calibration and fine-tuning.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the pruned model (.pt or .onnx).")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Prune heads, MLP neurons (and, Compresso, hidden dimensions) training only LoRA adapters."""
    LM_METHODS.check(method, "--method")
    check_number("--ratio", ratio, low=0, high=1, low_open=True, high_open=True)
    check_number("--steps", steps, low=1)
    check_number("--lora-rank", lora_rank, low=1)
    check_number("--seed", seed, low=0)
    check_output_files([("--out", out, (".pt", ".onnx"))], force=force)
    task = _data(data)
    _threads()
    from optprune.lm import export_onnx, load_lm, save_lm
    from optprune.lm._prune import RECOVERIES, pruning_report

    if recovery not in RECOVERIES:
        raise InvalidParameterError(f"--recovery must be one of {', '.join(RECOVERIES)}; got {recovery!r}")
    model = load_lm(model_path)
    est = LM_METHODS.get(method)(ratio, steps=steps, lora_rank=lora_rank, seed=seed, recovery=recovery)
    prefix = getattr(est, "prompt", None) or ""
    if not as_json:
        stderr_console.print(f"pruning {model_path} with {method} at ratio {ratio} ({steps} steps)")
    t0 = time.time()
    if "progress" in inspect.signature(est.fit).parameters:  # per-group progress on stderr (reconstruct)
        from optprune.cli._prune import _log_group

        est.fit(model, task, progress=_log_group)
    else:
        est.fit(model, task)
    seconds = time.time() - t0
    report = pruning_report(model, est.model_, task, prefix=prefix)
    achieved = 1.0 - report["params_after"] / report["params_before"]
    payload = {"method": method, "ratio": ratio, "ratio_achieved": round(achieved, 4), "steps": steps,
               "seconds": round(seconds, 1), **report}
    if achieved < ratio - 0.01:
        payload["warning"] = (f"removed {achieved:.4f} of the parameters, short of --ratio {ratio} (the kept widths "
                              "are whole heads, neurons and hidden dimensions)")
        stderr_console.print(f"warning: {payload['warning']}")
    if out is not None:
        if out.suffix.lower() == ".onnx":
            export_onnx(est.model_, out)
        else:
            save_lm(est.model_, out, {k: payload[k] for k in ("method", "ratio", "steps")})
        payload["out"] = str(out)
    emit(payload, as_json)


@sprint_app.command("train")
def sprint_train_command(
    model_path: Annotated[Path, typer.Argument(metavar="LM", help=MODEL_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Where to write the selector (.pt).")],
    data: Annotated[str, typer.Option("--data", help="Dataset: arith.")] = "arith",
    n_train: Annotated[int, typer.Option("--n-train", help="Training questions.")] = 300,
    samples: Annotated[int, typer.Option("--samples", help="Sampled answers per question and head.")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of questions, sampling and selector.")] = 0,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="Outcome table (an .npz archive written at exactly this path), resumed if present; it must "
        "be for the same model, questions and --samples (with --force an unusable cache is started afresh).")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Collect per-question head-masking outcomes, train the contrastive head selector."""
    _distinct_paths({"LM": model_path, "--out": out, "--cache": cache})
    check_number("--samples", samples, low=0)
    check_number("--seed", seed, low=0)
    task = _data(data)
    from optprune.lm._sprint import Sprint, max_train_questions

    limit = max_train_questions(task)
    if not 1 <= n_train <= limit:
        raise InvalidParameterError(
            f"--n-train must be in [1, {limit}]: the {data} task draws {task.n_train_available} distinct training "
            f"questions and SPRINT takes at most {limit} (each costs a row of the outcome table and "
            f"(1 + heads) x (1 + --samples) generations); got {n_train}"
        )
    check_output_file("--out", out, force=force)
    if cache is not None and cache.is_dir():
        raise InvalidParameterError(f"--cache: {cache} is a folder; give a file path")
    _threads()
    from optprune.lm import load_lm

    model = load_lm(model_path)
    t0 = time.time()
    est = Sprint(n_train=n_train, n_samples=samples, seed=seed, cache=cache, overwrite_cache=force).fit(
        model, task, progress=not as_json)
    est.selector_.save(out, est.best_fixed_head_)
    emit({"out": str(out), "n_train": n_train, "seconds": round(time.time() - t0, 1),
          "questions_with_a_helpful_head": est.selector_.n_train_questions_,
          "best_fixed_head": list(est.best_fixed_head_),
          "final_loss": est.selector_.history_[-1] if est.selector_.history_ else None}, as_json)


@sprint_app.command("eval")
def sprint_eval_command(
    model_path: Annotated[Path, typer.Argument(metavar="LM", help=MODEL_HELP)],
    selector_path: Annotated[Path, typer.Option("--selector", help="A selector from optprune sprint train.")],
    n: Annotated[int, typer.Option("--n", help="Samples per question (majority vote).")] = 8,
    data: Annotated[str, typer.Option("--data", help="Dataset: arith.")] = "arith",
    split: Annotated[str, typer.Option("--split", help="hard, easy or test.")] = "hard",
    top_k: Annotated[int, typer.Option("--top-k", help="Heads mixed over the samples.")] = 4,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature.")] = 0.7,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Accuracy@N of SPRINT, best-of-N, random head and the best fixed head (keys sprint, best_of_n, ...)."""
    check_number("--n", n, low=1)
    check_number("--top-k", top_k, low=1)
    check_number("--temperature", temperature, low=0, low_open=True)
    check_number("--seed", seed, low=0)
    if split not in ("hard", "easy", "test"):
        raise InvalidParameterError(f"--split must be hard, easy or test; got {split!r}")
    task = _data(data)
    _threads()
    from optprune.lm import load_lm
    from optprune.lm._sprint import evaluate_modes, load_selector

    model = load_lm(model_path)
    selector = load_selector(selector_path)
    selector.check_model(model)
    problems = task.problems(split)
    acc = evaluate_modes(model, problems, n, selector, selector.best_fixed_head_, top_k, temperature, seed)
    emit({"split": split, "n": n, "questions": len(problems), **acc}, as_json)
