"""``optprune gohsp``: prune a ViT with GOHSP; ``optprune vit-train``: train the reference ViTs.

``optprune gohsp`` takes the project's ViT (a ``.pt`` from :func:`optprune.vit.save_vit`) or a transformers
``ViTForImageClassification`` folder (``save_pretrained``; issue 26). The transformers model is converted
exactly to the project's ViT (:func:`optprune.hf.vit.to_optprune_vit`), pruned there by GOHSP (Yin et al.
2023) and converted back to a ``PrunedViTForImageClassification`` (per-layer head counts and MLP widths in
its config) that ``--out`` writes with ``save_pretrained``; the largest logit difference of each conversion
on the test fold is reported, so an inexact conversion shows in the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from optprune._files import atomic_file
from optprune.cli._output import JSON_HELP, emit, stderr_console
from optprune.cli._validate import (
    FORCE_HELP,
    check_number,
    check_output_dir,
    check_output_file,
    check_output_files,
)

#: This module's commands; optprune.cli._app adds them to the app (a command module never imports the app).
commands = typer.Typer()

__all__ = ["VISION_MODEL_TYPES", "commands", "gohsp_command", "hf_model_type", "parse_budget", "vit_train_command"]

OUT_SUFFIXES = (".onnx", ".pt")
RESOURCES = ("params", "flops")
#: ``model_type`` of the transformers folders ``optprune gohsp`` reads (optprune.hf.vit's pruned forms included)
VISION_MODEL_TYPES = ("vit", "deit", "optprune_pruned_vit", "optprune_pruned_deit")
MODEL_TAKES = ("a ViT .pt written by optprune vit-train / optprune.vit.save_vit, or a transformers ViT folder "
               f"written by save_pretrained (config.json model_type one of {', '.join(VISION_MODEL_TYPES)})")


def hf_model_type(path: Path) -> str | None:
    """The ``model_type`` in ``path/config.json`` (a ``save_pretrained`` folder); ``None`` when there is none.

    Reads the JSON only (no torch, no transformers), so a command can dispatch on it cheaply.
    """
    import json

    config = Path(path) / "config.json"
    if not (Path(path).is_dir() and config.is_file()):
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    return model_type if isinstance(model_type, str) else None


def _is_hf_vit(model_path: Path) -> bool:
    """Whether MODEL is a transformers ViT folder; a folder of anything else is a named error."""
    from optprune.errors import FileFormatError

    if not model_path.is_dir():
        return False
    model_type = hf_model_type(model_path)
    if model_type is None:
        raise FileFormatError(f"MODEL: {model_path} is a folder without a transformers config.json holding a "
                              f"model_type; give {MODEL_TAKES}")
    if model_type not in VISION_MODEL_TYPES:
        raise FileFormatError(f"MODEL: {model_path} is a transformers folder of model_type {model_type!r}, not a "
                              f"ViT; give {MODEL_TAKES} (a language model: optprune lm prune)")
    return True


def _check_hf_outputs(out: Path | None, plot: Path | None, force: bool) -> None:
    """``--out`` for a transformers ViT: a folder (save_pretrained) or an ``.onnx`` file; checked before any work."""
    from optprune.errors import InvalidParameterError

    if out is None or out.suffix.lower() == ".onnx":
        check_output_files([("--out", out, (".onnx",)), ("--plot", plot, (".png",))], force=force)
        return
    if out.suffix:
        raise InvalidParameterError(f"--out for a transformers ViT: a folder (no suffix) for save_pretrained or an "
                                    f".onnx file; got {out.name!r}")
    if out.exists() and not out.is_dir():
        raise InvalidParameterError(f"--out: {out} is a file; give a folder path (save_pretrained writes a folder)")
    if out.exists() and not force:
        raise InvalidParameterError(f"--out: {out} already exists; pass --force to replace it or choose another folder")
    check_output_dir("--out (its parent folder)", out.parent)
    check_output_files([("--plot", plot, (".png",))], force=force)


def _max_abs_diff(a: Any, b: Any) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0


def _vit_logits(model: Any, X: Any, batch_size: int = 1000) -> Any:
    """Logits of the project's ViT on images ``X`` (n, C, H, W), eval mode, no gradient."""
    import numpy as np
    import torch

    model.eval()
    with torch.no_grad():
        outs = [model(torch.as_tensor(X[i:i + batch_size], dtype=torch.float32)).numpy()
                for i in range(0, len(X), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), dtype=np.float32)


def parse_budget(text: str) -> tuple[str, float]:
    """``"params=0.6"``, ``"flops=0.5"`` or ``"0.6"`` (parameters) -> ``(resource, fraction kept)``."""
    from optprune.errors import InvalidParameterError

    resource, _, value = text.rpartition("=")
    resource = resource.strip() or "params"
    if resource not in RESOURCES:
        raise InvalidParameterError(f"--budget: resource must be one of {RESOURCES} (as params=0.6); got {text!r}")
    try:
        fraction = float(value)
    except ValueError:
        raise InvalidParameterError(f"--budget: expected RESOURCE=FRACTION such as params=0.6; got {text!r}") from None
    check_number("--budget", fraction, low=0, high=1, low_open=True)
    return resource, fraction


def _plot_residuals(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [h["iteration"] + 1 for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogy(it, [max(h["primal_residual"], 1e-12) for h in history], "o-", label="primal ||W - Z||")
    ax.semilogy(it, [max(h["dual_residual"], 1e-12) for h in history], "s-", label="dual rho ||Z - Z_prev||")
    ax.set_xlabel("ADMM iteration")
    ax.set_ylabel("residual")
    ax.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:  # same suffix: matplotlib picks PNG from it
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


@commands.command("gohsp")
def gohsp_command(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help=(
        "A ViT saved by optprune.vit.save_vit (.pt), or a transformers ViTForImageClassification folder "
        "(save_pretrained; model_type vit or optprune_pruned_vit)."))],
    budget: Annotated[str, typer.Option("--budget", help="Kept: params=0.6 or flops=F.")] = "params=0.6",
    budgets: Annotated[str, typer.Option(
        "--budgets", help="Per-layer budgets from: search (the exact search on the graph/magnitude scores) or "
        "reconstruction (the exact width allocation on the layers' reconstruction error curves).")] = "search",
    data: Annotated[str, typer.Option("--data", help="mnist or digits: graph, ADMM, fine-tuning, accuracy.")] = "mnist",
    similarity: Annotated[str, typer.Option("--similarity", help="correlation or attention.")] = "correlation",
    damping: Annotated[float, typer.Option("--damping", help="PageRank damping of the head graph's walk.")] = 0.85,
    admm_iterations: Annotated[int, typer.Option("--admm-iterations", help="ADMM iterations (0: none).")] = 4,
    admm_epochs: Annotated[int, typer.Option("--admm-epochs", help="SGD epochs per W-step.")] = 1,
    rho: Annotated[float, typer.Option("--rho", help="Initial ADMM penalty.")] = 0.1,
    rho_growth: Annotated[float, typer.Option("--rho-growth", help="Penalty growth per iteration.")] = 3.0,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", help="Epochs after the hard prune.")] = 3,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (W-steps and fine-tuning).")] = 1e-3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of calibration sample, W-steps and fine-tuning.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help=(
        "Write the pruned ViT: .onnx or .pt; for a transformers MODEL, a folder (save_pretrained) or .onnx."))] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the ADMM residuals.")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Prune a ViT's heads and MLP neurons with GOHSP (graph head ranking, searched budgets, ADMM), fine-tune.

    MODEL may be a transformers ViT folder: it is pruned through the exact conversion to the project's
    ViT, and --out (a folder) gets a PrunedViTForImageClassification that from_pretrained reads back
    (after ``import optprune.hf.vit``).
    """
    from optprune.errors import InvalidParameterError

    resource, fraction = parse_budget(budget)
    if data not in ("mnist", "digits"):
        raise InvalidParameterError(f"--data must be 'mnist' or 'digits'; got {data!r}")
    if budgets not in ("search", "reconstruction"):
        raise InvalidParameterError(f"--budgets must be 'search' or 'reconstruction'; got {budgets!r}")
    for option, value in (("--admm-iterations", admm_iterations), ("--admm-epochs", admm_epochs),
                          ("--finetune-epochs", finetune_epochs), ("--seed", seed)):
        check_number(option, value, low=1 if option == "--admm-epochs" else 0)
    check_number("--damping", damping, low=0, high=1)
    check_number("--rho", rho, low=0, low_open=True)
    check_number("--rho-growth", rho_growth, low=1)
    check_number("--lr", lr, low=0, low_open=True)
    hf = _is_hf_vit(model_path)
    if hf:
        _check_hf_outputs(out, plot, force)
    else:
        check_output_files([("--out", out, OUT_SUFFIXES), ("--plot", plot, (".png",))], force=force)

    import torch

    from optprune.data import load_dataset
    from optprune.gohsp import GOHSP
    from optprune.vit import check_inputs, export_vit_onnx, load_vit, save_vit, vit_accuracy

    torch.set_num_threads(1)
    hf_model: Any = None
    conversion: dict[str, float] = {}
    if hf:
        from optprune.hf.vit import load_hf_vit, to_optprune_vit

        hf_model = load_hf_vit(model_path)
        model = to_optprune_vit(hf_model)  # a DeiT (distillation token) is a named error here
    else:
        model = load_vit(model_path)
    X_train, y_train = load_dataset(data, "train")
    X_test, y_test = load_dataset(data, "test")
    check_inputs(model, X_train)
    if hf:
        from optprune.hf.vit import hf_logits

        logits = hf_logits(hf_model, X_test)
        conversion["to_optprune"] = _max_abs_diff(logits, _vit_logits(model, X_test))
        acc_before = float((logits.argmax(1) == y_test).mean()) if len(X_test) else 0.0
    else:
        acc_before = vit_accuracy(model, X_test, y_test)
    stderr_console.log(f"{model_path.name}: test-fold accuracy {acc_before:.4f}")
    est = GOHSP(fraction, resource=resource, similarity=similarity, damping=float(damping),
                admm_iterations=admm_iterations, admm_epochs=admm_epochs, rho=float(rho),
                rho_growth=float(rho_growth), finetune_epochs=finetune_epochs, lr=float(lr), seed=seed,
                budgets=budgets)
    est.fit(model, (X_train, y_train))
    params_before, params_after = est.n_params_before_, est.n_params_after_
    if hf:
        from optprune.hf.vit import from_optprune_vit

        pruned_hf = from_optprune_vit(est.model_, hf_model)
        logits = hf_logits(pruned_hf, X_test)
        conversion["from_optprune"] = _max_abs_diff(logits, _vit_logits(est.model_, X_test))
        acc_after = float((logits.argmax(1) == y_test).mean()) if len(X_test) else 0.0
        params_before = sum(p.numel() for p in hf_model.parameters())
        params_after = sum(p.numel() for p in pruned_hf.parameters())
    else:
        acc_after = est.score(X_test, y_test)
    stderr_console.log(f"GOHSP {resource}={fraction}: {params_after}/{params_before} parameters, "
                       f"accuracy {acc_after:.4f}")
    if out is not None:
        metadata = {"method": "gohsp", "budget": budget, "data": data}
        if hf and out.suffix.lower() == ".onnx":
            from optprune.hf.vit import export_hf_vit_onnx

            export_hf_vit_onnx(pruned_hf, out)
        elif hf:
            from optprune.hf._train import save_hf

            save_hf(pruned_hf, out, force=force, metadata={**metadata, "source": str(model_path)})
        elif out.suffix.lower() == ".onnx":
            export_vit_onnx(est.model_, out)
        else:
            save_vit(est.model_, out, metadata)
    if plot is not None:
        _plot_residuals(est.admm_history_, plot)
    payload: dict[str, Any] = {
        "model": str(model_path),
        "method": "gohsp",
        "budget": {resource: fraction},
        "budgets": budgets,
        "data": data,
        "params_before": params_before,
        "params_after": params_after,
        "accuracy_before": acc_before,
        "accuracy_after": acc_after,
        "heads_kept": est.heads_kept_,
        "mlp_widths": est.mlp_widths_,
        "head_importance": {k: [float(v) for v in vals] for k, vals in est.head_importance_.items()},
        "admm": [{k: h[k] for k in ("iteration", "rho", "primal_residual", "dual_residual")}
                 for h in est.admm_history_],
        "finetune_epochs": finetune_epochs,
        "out": str(out) if out is not None else None,
        "plot": str(plot) if plot is not None else None,
    }
    if hf:  # the transformers model in and out, and how exactly the conversions kept its logits
        payload["architecture"] = type(hf_model).__name__
        payload["architecture_out"] = type(pruned_hf).__name__
        payload["conversion_max_abs_diff"] = conversion
    emit(payload, as_json)


@commands.command("vit-train")
def vit_train_command(
    data: Annotated[str, typer.Argument(help="mnist or digits (the train fold).")],
    out: Annotated[Path, typer.Option("--out", help="Write the trained ViT (.pt).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation and shuffling.")] = 0,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (default: the preset's).")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Train the reference ViT of a dataset single-threaded (instances/vit) and report its fold accuracies."""
    import time

    from optprune.errors import InvalidParameterError

    if data not in ("mnist", "digits"):
        raise InvalidParameterError(f"DATA must be 'mnist' or 'digits'; got {data!r}")
    if out.suffix.lower() != ".pt":
        raise InvalidParameterError(f"--out must end in .pt; got {out.name!r}")
    if epochs is not None:
        check_number("--epochs", epochs, low=1)
    check_number("--seed", seed, low=0)
    check_output_file("--out", out, force=force)

    import torch

    from optprune.data import load_dataset
    from optprune.vit import save_vit, train_vit, vit_accuracy

    torch.set_num_threads(1)
    start = time.time()
    model = train_vit(data, seed=seed, epochs=epochs)
    seconds = time.time() - start
    accs = {s: vit_accuracy(model, *load_dataset(data, s)) for s in ("train", "val", "test")}
    save_vit(model, out, {"dataset": data, "seed": seed, "accuracy": accs, "train_seconds": round(seconds, 1)})
    emit({"data": data, "out": str(out), "seed": seed, "accuracy": accs, "train_seconds": seconds,
          "params": sum(p.numel() for p in model.parameters())}, as_json)
