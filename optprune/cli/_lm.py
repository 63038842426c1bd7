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

MODEL_HELP = ("A language model written by optprune lm train / prune (.pt), or a transformers causal LM "
              "folder (save_pretrained: LLaMA, GPT-2, OPT or their pruned forms).")
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


def _is_hf(path: Path) -> bool:
    """A transformers folder (save_pretrained) rather than an optprune .pt file."""
    from optprune.hf._models import is_hf_folder

    return is_hf_folder(path)


def _load_for_eval(path: Path):
    """``(model the LM loops take, widths)``: a TinyLM file, or a transformers folder behind its adapter."""
    if _is_hf(path):
        from optprune.hf._methods import n_params
        from optprune.hf._models import CausalLMAdapter, load_hf
        from optprune.hf._pruned import layer_widths_hf
        from optprune.hf._structure import hf_groups

        hf = load_hf(path)
        return CausalLMAdapter(hf), {"params": n_params(hf), **layer_widths_hf(hf, hf_groups(hf))}
    from optprune.lm import layer_widths, load_lm
    from optprune.pruning import count_parameters

    model = load_lm(path)
    return model, {"params": count_parameters(model), **layer_widths(model)}


@lm_app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the model (.pt).")],
    steps: Annotated[int, typer.Option("--steps", help="AdamW steps of 64 problems.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the initial weights and the training stream.")] = 0,
    data: Annotated[str, typer.Option("--data", help="Dataset: arith.")] = "arith",
    arch: Annotated[str, typer.Option(
        "--arch", help="tinylm (the project's model, .pt) or a transformers family written as a save_pretrained "
        "folder: llama (4 layers, d=64, 4 heads on 2 KV heads, SwiGLU 128), gpt2 or opt (d=64, 4 heads, MLP 256).")
    ] = "tinylm",
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Train the reference TinyLM (4 layers, d=64, 4 heads, MLP 256) or a transformers LM; report test exact match."""
    check_number("--steps", steps, low=1)
    check_number("--seed", seed, low=0)
    archs = ("tinylm", "llama", "gpt2", "opt")
    if arch not in archs:
        raise InvalidParameterError(f"--arch must be one of {', '.join(archs)}; got {arch!r}")
    if arch != "tinylm":
        _train_hf(out, steps, seed, data, arch, force, as_json)
        return
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


def _train_hf(out: Path, steps: int, seed: int, data: str, arch: str, force: bool, as_json: bool) -> None:
    """``lm train --arch llama|gpt2|opt``: train a transformers model from its config and save_pretrained it."""
    if out.exists() and not force:
        raise InvalidParameterError(f"--out {out} exists; pass --force to overwrite it")
    if out.suffix:
        raise InvalidParameterError(f"--out: a transformers model is a folder; give a path without suffix, got {out}")
    task = _data(data)
    _threads()
    from optprune.hf._methods import n_params
    from optprune.hf._models import CausalLMAdapter
    from optprune.hf._train import save_hf, train_hf
    from optprune.lm import exact_match, perplexity

    t0 = time.time()
    model, losses = train_hf(arch, steps=steps, seed=seed, log_every=0 if as_json else 200,
                             **({"n_kv_heads": 2} if arch == "llama" else {}))
    seconds = time.time() - t0
    test = task.problems("test")
    adapter = CausalLMAdapter(model)
    payload = {"out": str(out), "arch": arch, "steps": steps, "seed": seed, "train_seconds": round(seconds, 1),
               "params": n_params(model), "final_loss": float(sum(losses[-50:]) / len(losses[-50:])),
               "exact_match": exact_match(adapter, test), "perplexity": perplexity(adapter, test)}
    save_hf(model, out, force=force, metadata={k: v for k, v in payload.items() if k != "out"})
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
    from optprune.lm import exact_match, perplexity

    model, info = _load_for_eval(model_path)
    problems = task.problems(split)
    emit({"model": str(model_path), "split": split, "n": len(problems), "params": info.pop("params"),
          "exact_match": exact_match(model, problems, prefix=prefix),
          "perplexity": perplexity(model, problems, prefix=prefix), **info}, as_json)


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
    from optprune.lm import generate

    model, _ = _load_for_eval(model_path)
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
    """Prune heads, MLP neurons (and, Compresso, hidden dimensions) training only LoRA adapters.

    MODEL may be a transformers folder: then the units are its dependency groups (KV heads with their
    query heads, MLP neurons), LoRA is peft's, and --out is a save_pretrained folder (or .onnx).
    """
    if _is_hf(model_path):
        _prune_hf(model_path, method, ratio, data, steps, recovery, lora_rank, seed, out, force, as_json)
        return
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
        from optprune.cli._output import log_group_progress

        est.fit(model, task, progress=log_group_progress)
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


def _prune_hf(model_path: Path, method: str, ratio: float, data: str, steps: int, recovery: str, lora_rank: int,
              seed: int, out: Path | None, force: bool, as_json: bool) -> dict:
    """``lm prune`` (and ``optprune prune``) on a transformers folder: :func:`optprune.hf.hf_method`."""
    from optprune.hf._methods import RECOVERIES, hf_method, hf_pruning_report

    check_number("--ratio", ratio, low=0, high=1, low_open=True, high_open=True)
    check_number("--steps", steps, low=1)
    check_number("--lora-rank", lora_rank, low=1)
    check_number("--seed", seed, low=0)
    if recovery not in RECOVERIES:
        raise InvalidParameterError(f"--recovery must be one of {', '.join(RECOVERIES)}; got {recovery!r}")
    est = hf_method(method, ratio, steps=steps, lora_rank=lora_rank, seed=seed, recovery=recovery)
    if out is not None:
        if out.suffix.lower() not in ("", ".onnx"):
            raise InvalidParameterError(f"--out for a transformers model: a folder (no suffix) for save_pretrained or "
                                        f"an .onnx file; got {out}")
        if out.exists() and not force:
            raise InvalidParameterError(f"--out {out} exists; pass --force to overwrite it")
    task = _data(data)
    _threads()
    from optprune.hf._models import load_hf
    from optprune.hf._pruned import export_onnx_hf
    from optprune.hf._train import save_hf

    model = load_hf(model_path)
    prefix = getattr(est, "prompt", None) or ""
    if not as_json:
        stderr_console.print(f"pruning {model_path} ({type(model).__name__}) with {method} at ratio {ratio} "
                             f"({steps} steps)")
    t0 = time.time()
    est.fit(model, task)
    seconds = time.time() - t0
    report = hf_pruning_report(model, est.model_, task, prefix=prefix)
    achieved = 1.0 - report["params_after"] / report["params_before"]
    payload = {"model": str(model_path), "architecture": type(model).__name__, "method": method, "ratio": ratio,
               "ratio_achieved": round(achieved, 4), "steps": steps, "seconds": round(seconds, 1),
               "prune_seconds": round(float(getattr(est, "prune_seconds_", seconds)), 2), **report}
    if out is not None:
        if out.suffix.lower() == ".onnx":
            export_onnx_hf(est.model_, out)
        else:
            save_hf(est.model_, out, force=force, metadata={k: payload[k] for k in ("method", "ratio", "steps")})
        payload["out"] = str(out)
    emit(payload, as_json)
    return payload


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
