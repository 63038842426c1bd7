"""``optprune prune``: score, prune, fine-tune and export a network."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from optprune.cli._output import JSON_HELP, emit, log_group_progress, stderr_console
from optprune.cli._validate import FORCE_HELP, TRUST_PICKLE_HELP, check_number, check_output_files
from optprune.pruning import DECISIONS
from optprune.scoring import NORMALIZERS, SCORERS, normalize_scorer_name

#: This module's commands; optprune.cli._app adds them to the app (a command module never imports the app).
commands = typer.Typer()


def data_note(name: str) -> str:
    """Which folds the figures come from (the MNIST training set is not available)."""
    from optprune.data import dataset_info

    sizes = dataset_info(name).split_sizes
    if name == "mnist":
        return (
            "MNIST: only the 10,000-image MNIST test set is available; it is split into fixed stratified folds "
            f"(seed 0): fine-tuning and calibration use its 'train' fold ({sizes['train']} images), accuracies are "
            f"on its held-out 'test' fold ({sizes['test']} images), not on the official test set"
        )
    return (
        f"digits (scikit-learn, 8x8): fixed stratified folds (seed 0); fine-tuning and calibration use the "
        f"'train' fold ({sizes['train']} images), accuracies are on the 'test' fold ({sizes['test']} images)"
    )


def _shape_inputs(model, X):
    """Reshape dataset images (n, C, H, W) to the model's input shape when the sizes agree."""
    import numpy as np

    from optprune.errors import ShapeMismatchError

    shape = tuple(getattr(model, "input_shape", None) or X.shape[1:])
    if int(np.prod(shape)) != int(np.prod(X.shape[1:])):
        raise ShapeMismatchError(
            f"the network takes inputs of shape {shape} ({int(np.prod(shape))} values); "
            f"the dataset's images have shape {tuple(X.shape[1:])}"
        )
    return X.reshape(X.shape[0], *shape), shape


def folds_and_calibration(model, data: str, data_dir, calibration_size: int, seed: int):
    """The train and test folds shaped for ``model``, and a seeded calibration sample of the train fold.

    Returns ``(X_train, y_train, X_test, y_test, shape, calib)``; ``calib`` indexes ``X_train``.
    """
    import numpy as np

    from optprune.data import load_dataset

    X_train, y_train = load_dataset(data, "train", data_dir)
    X_test, y_test = load_dataset(data, "test", data_dir)
    X_train, shape = _shape_inputs(model, X_train)
    X_test, _ = _shape_inputs(model, X_test)
    rng = np.random.default_rng(seed)
    calib = rng.choice(len(X_train), size=min(calibration_size, len(X_train)), replace=False)
    return X_train, y_train, X_test, y_test, shape, calib


EXPORT_SUFFIXES = (".onnx", ".pt", ".pth")


def _check_export_suffix(path: Path) -> None:
    from optprune.errors import InvalidParameterError

    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise InvalidParameterError(f"--out must end in .onnx, .pt or .pth; got {path.name!r}")


def export_model(model, path: Path, input_shape: tuple[int, ...]) -> Path:
    """Write a pruned chain as ONNX (through the network definition) or in optprune's torch format.

    ``.pt``/``.pth`` files are written by :func:`optprune.io.save_torch_model`:
    architecture as plain data plus the weights, so they load again without
    ``--trust-pickle`` (no pickled code).
    """
    _check_export_suffix(path)
    if path.suffix.lower() == ".onnx":
        from optprune.io import network_from_torch, network_to_onnx

        network_to_onnx(network_from_torch(model, input_shape, name=path.stem), path)
    else:
        from optprune.io import save_torch_model

        model.input_shape = tuple(input_shape)
        save_torch_model(model, path)
    return path


def _parse_options(pairs: list[str] | None) -> dict:
    """``["k=v", ...]`` as a dict; values read as int, float, true/false or none where they look like one."""
    from optprune.errors import InvalidParameterError

    out: dict = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidParameterError(f"--option must read KEY=VALUE; got {pair!r}")
        value: object = text
        low = text.strip().lower()
        if low in ("true", "false"):
            value = low == "true"
        elif low == "none":
            value = None
        else:
            for cast in (int, float):
                try:
                    value = cast(text)
                    break
                except ValueError:
                    continue
        out[key.strip()] = value
    return out


def _log_refit(report: dict) -> None:
    stderr_console.log(
        f"re-fit {report['layer']}: error {report['before']:.6g} -> {report['objective']:.6g}, {report['seconds']:.2f} s"
    )


def _is_language_model(path: Path) -> bool:
    """A transformers folder, or a ``.pt`` file in optprune's LM format (``optprune.lm/1``)."""
    from optprune.hf._models import is_hf_folder

    if is_hf_folder(path):
        return True
    if path.suffix.lower() != ".pt" or not path.is_file():
        return False
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a plain checkpoint: the MNIST path reads it and names the problem
        return False
    return isinstance(data, dict) and data.get("format") == "optprune.lm/1"


def _prune_language_model(path: Path, method: str, ratio: float, data: str, seed: int, out: Path | None, force: bool,
                          as_json: bool) -> None:
    """``optprune prune LM --method M``: the LM path with the default LM settings (300 steps, LoRA rank 8)."""
    from optprune.cli._lm import prune_command as lm_prune
    from optprune.errors import InvalidParameterError

    if data not in ("mnist", "arith"):  # mnist is this command's default, not a choice made for an LM
        raise InvalidParameterError(f"--data for a language model must be arith; got {data!r}")
    lm_prune(path, method=method, ratio=ratio, data="arith", steps=300, recovery="lora", lora_rank=8, seed=seed,
             out=out, force=force, as_json=as_json)


def _vit_input(path: Path) -> str | None:
    """What kind of ViT ``path`` is: ``"transformers"`` (a ViT/DeiT folder), ``"optprune"`` (a ViT .pt), else None."""
    from optprune.cli._gohsp import VISION_MODEL_TYPES, hf_model_type

    if path.is_dir():
        return "transformers" if hf_model_type(path) in VISION_MODEL_TYPES else None
    if path.suffix.lower() != ".pt" or not path.is_file():
        return None
    import torch

    from optprune.vit import VIT_FORMAT

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a plain checkpoint: the MNIST path reads it and names the problem
        return None
    return "optprune" if isinstance(data, dict) and data.get("format") == VIT_FORMAT else None


def _prune_vit(path: Path, kind: str, method: str, ratio: float, data: str, seed: int, out: Path | None, force: bool,
               as_json: bool) -> None:
    """``optprune prune VIT --method gohsp``: ``optprune gohsp`` keeping ``1 - ratio`` of the parameters, its defaults.

    The scorers and decisions of this command act on MLP/CNN chains (they read the network as a chain
    of layers); a ViT's heads and MLP neurons are pruned by GOHSP, so any other method is a named error.
    """
    from optprune.cli._gohsp import gohsp_command
    from optprune.errors import InvalidParameterError

    what = "a transformers ViT folder" if kind == "transformers" else "a ViT .pt (optprune.vit)"
    if method != "gohsp":
        raise InvalidParameterError(
            f"{path} is {what}: `optprune prune` prunes a ViT with --method gohsp only (it keeps 1 - --ratio of the "
            f"parameters; other settings at `optprune gohsp`'s defaults); got --method {method!r}. The scorers and "
            "decisions (--scorer, --decision) take MLP/CNN networks (.onnx, .pt, .pth); a language model takes an LM "
            "method. For GOHSP's own options run `optprune gohsp MODEL --budget params=F ...`")
    check_number("--ratio", ratio, low=0, high=1, low_open=True, high_open=True)
    gohsp_command(path, budget=f"params={1.0 - ratio:.12g}", data=data, seed=seed, out=out, force=force,
                  as_json=as_json)


@commands.command("prune")
def prune_command(
    network: Annotated[Path, typer.Argument(help=(
        "An .onnx file or a torch model file (.pt, .pth); a language model or a ViT (transformers folder or "
        ".pt) goes to its own path."))],
    scorer: Annotated[str, typer.Option(
        "--scorer", help="Scorer (decisions that take one): " + ", ".join(SCORERS.names()) + ".")] = "magnitude",
    ratio: Annotated[float, typer.Option("--ratio", help="Fraction of units (or parameters, for search) to remove.")] = 0.5,
    data: Annotated[str, typer.Option("--data", help="mnist or digits: calibration, fine-tuning and accuracy.")] = "mnist",
    decision: Annotated[str, typer.Option(
        "--decision", help="Pruning decision: " + ", ".join(DECISIONS.names()) + ".")] = "uniform",
    method: Annotated[str, typer.Option(
        "--method", help="'scorer' (--scorer, then --decision), or a decision that prunes by itself (as --decision)."
    )] = "scorer",
    train_epochs: Annotated[int, typer.Option(
        "--train-epochs", help="Decisions that train (bmrs-n, bmrs-u, reconvene): training epochs.")] = 10,
    normalizer: Annotated[str, typer.Option(
        "--normalizer", help="Scored decisions: " + ", ".join(("auto", *NORMALIZERS)) + ".")] = "auto",
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", help="Epochs of fine-tuning on the train fold.")] = 0,
    distill: Annotated[bool, typer.Option("--distill/--no-distill", help="Distil from the unpruned network.")] = False,
    compensate: Annotated[bool, typer.Option("--compensate/--no-compensate", help="FLAP bias compensation.")] = False,
    refit: Annotated[bool, typer.Option(
        "--refit/--no-refit", help="After the selection, re-fit the consumer layers (weights and bias) by least "
        "squares to the dense outputs on the calibration sample (any scorer or decision that removes units).")] = False,
    calibration_size: Annotated[int, typer.Option("--calibration-size", help="Train-fold images used for scoring.")] = 512,
    decision_options: Annotated[list[str] | None, typer.Option(
        "--option", help="KEY=VALUE passed to a decision that prunes by itself (repeatable), e.g. "
                         "--option allocation=search for reconstruct; the decision checks names and values.")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Fine-tuning learning rate (Adam).")] = 1e-4,
    rs_weight: Annotated[float, typer.Option(
        "--rs-weight", help="Fine-tuning: weight of the ReLU-stability loss (Xiao et al. 2019); 0 = off.")] = 0.0,
    rs_eps: Annotated[float, typer.Option(
        "--rs-eps", help="Fine-tuning: L-inf radius the stability loss looks at (the verification radius).")] = 0.02,
    l1_weight: Annotated[float, typer.Option("--l1-weight", help="Fine-tuning: L1 weight penalty; 0 = off.")] = 0.0,
    sparsity: Annotated[float, typer.Option(
        "--sparsity", help="Fine-tuning: fraction of each layer's weights set to exactly zero by magnitude.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the calibration sample and of fine-tuning.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the pruned network (.onnx or .pt).")] = None,
    save_decision: Annotated[Path | None, typer.Option("--save-decision", help="Write the decision as JSON.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Shared data folder (default: OPTPRUNE_DATA).")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help=TRUST_PICKLE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Prune a network's neurons/channels, optionally fine-tune, report parameters and accuracy.

    A language model (a transformers folder written by save_pretrained, or an optprune lm .pt file) goes
    to the LM path (``optprune lm prune``: --method names an LM method, default settings; --data arith).
    A ViT (a transformers ViT folder or an optprune.vit .pt) takes --method gohsp: ``optprune gohsp`` keeping
    1 - --ratio of the parameters, its default settings.
    """
    vit_kind = _vit_input(network)
    if vit_kind is not None:
        _prune_vit(network, vit_kind, method, ratio, data, seed, out, force, as_json)
        return
    if _is_language_model(network):
        _prune_language_model(network, method if method != "scorer" else scorer, ratio, data, seed, out, force,
                              as_json)
        return

    from optprune.errors import InvalidParameterError, OptpruneError
    from optprune.io import load_torch_model
    from optprune.pruning import MethodDecision, Pruner, attach_masks, count_parameters, finetune, remove_masks
    from optprune.training import accuracy

    if data not in ("mnist", "digits"):
        raise InvalidParameterError(f"--data must be 'mnist' or 'digits'; got {data!r}")
    check_number("--ratio", ratio, low=0, high=1, high_open=True)
    if method != "scorer":
        if method not in DECISIONS or not isinstance(DECISIONS.get(method), MethodDecision):
            allowed = [n for n in DECISIONS.names() if isinstance(DECISIONS.get(n), MethodDecision)]
            raise InvalidParameterError(f"--method must be one of scorer, {', '.join(allowed)}; got {method!r}")
        decision = method
    rule = DECISIONS.get(decision, "--decision")
    extra_options = _parse_options(decision_options)
    if extra_options:
        if rule.takes_scorer:
            raise InvalidParameterError(f"--option applies to decisions that prune by themselves; {decision!r} takes "
                                        "a scorer (its settings are --scorer, --normalizer, --compensate)")
        rule.check_options(extra_options, f"--option for decision {decision!r}")
    if rule.takes_scorer and normalize_scorer_name(scorer) not in SCORERS:
        raise InvalidParameterError(f"--scorer must be one of {', '.join(SCORERS.names())}; got {scorer!r}")
    check_number("--train-epochs", train_epochs, low=1)
    check_number("--finetune-epochs", finetune_epochs, low=0)
    check_number("--calibration-size", calibration_size, low=1)
    check_number("--lr", lr, low=0, low_open=True)
    check_number("--rs-weight", rs_weight, low=0)
    check_number("--rs-eps", rs_eps, low=0)
    check_number("--l1-weight", l1_weight, low=0)
    check_number("--sparsity", sparsity, low=0, high=1, high_open=True)
    from optprune.stability import StabilityOptions, stabilize

    stability = StabilityOptions(eps=rs_eps, rs_weight=rs_weight, l1_weight=l1_weight, sparsity=sparsity)
    if stability.active and finetune_epochs == 0:
        raise InvalidParameterError(
            "--rs-weight, --l1-weight and --sparsity act during fine-tuning: give --finetune-epochs >= 1"
        )
    if save_decision is not None and not getattr(rule, "removes_units", True):
        raise InvalidParameterError(
            f"--save-decision: decision {decision!r} removes no units, so there is no decision to save; "
            "leave --save-decision out"
        )
    check_output_files([("--out", out, EXPORT_SUFFIXES), ("--save-decision", save_decision, None)], force=force)
    model = load_torch_model(network, trust_pickle=trust_pickle)
    X_train, y_train, X_test, y_test, shape, calib = folds_and_calibration(model, data, data_dir, calibration_size, seed)

    acc_before = accuracy(model, X_test, y_test)
    stderr_console.log(f"{network.name}: {count_parameters(model)} parameters, test-fold accuracy {acc_before:.4f}")
    method_info, masks = None, None
    if rule.takes_scorer:
        pruner = Pruner(
            scorer=scorer, ratio=ratio, decision=decision, normalizer=normalizer, compensate=compensate,
            input_shape=shape,
        ).fit(model, (X_train[calib], y_train[calib]))
        pruned, pruning_decision = pruner.transform(), pruner.decision_
        label = f"{scorer} ({decision}, ratio {ratio})"
    else:
        options = {"epochs": train_epochs} if "epochs" in rule.options else {}
        if "calibration_size" in rule.options:
            options["calibration_size"] = calibration_size
        if "progress" in inspect.signature(rule.prune).parameters:
            options["progress"] = log_group_progress
        options.update(extra_options)
        outcome = rule.prune(model, (X_train, y_train), shape, ratio, seed=seed, **options)
        pruned, pruning_decision, method_info, masks = outcome.model, outcome.decision, outcome.info, outcome.masks
        label = decision
    if refit:
        if pruning_decision is None:
            raise InvalidParameterError(f"--refit: decision {decision!r} removes no units, so no layer lost inputs; "
                                        "leave --refit out")
        from optprune.pruning._reconstruct import refit_consumers

        pruned, refits = refit_consumers(pruned, model, (X_train[calib], None), pruning_decision, progress=_log_refit)
        method_info = {**(method_info or {}), "refit": refits}
    acc_pruned = accuracy(pruned, X_test, y_test)
    stderr_console.log(f"pruned with {label}: accuracy {acc_pruned:.4f}")
    acc_finetuned = None
    if finetune_epochs > 0:
        if masks:  # weights zeroed one by one stay zero while fine-tuning
            attach_masks(pruned, masks)
        teacher = model if distill else None
        if stability.active:
            stabilize(pruned, (X_train, y_train), finetune_epochs, stability, teacher=teacher, lr=lr, seed=seed)
        else:
            finetune(pruned, (X_train, y_train), finetune_epochs, teacher=teacher, lr=lr, seed=seed)
        if masks:
            remove_masks(pruned)
        acc_finetuned = accuracy(pruned, X_test, y_test)
        how = f" ({stability.key()})" if stability.active else ""
        stderr_console.log(f"fine-tuned {finetune_epochs} epochs{how}: accuracy {acc_finetuned:.4f}")
    if out is not None:
        export_model(pruned, out, shape)
    if save_decision is not None and pruning_decision is not None:
        pruning_decision.save(save_decision)

    try:
        from optprune.io import network_from_torch

        widths = network_from_torch(pruned, shape).widths
    except OptpruneError:  # a model outside the chain reader's layers still reports its group widths
        widths = None
    payload = {
        "network": str(network),
        "method": method,
        "method_info": method_info,
        "scorer": scorer,
        "decision": decision,
        "ratio": ratio,
        "params_before": count_parameters(model),
        "params_after": count_parameters(pruned),
        "accuracy_before": acc_before,
        "accuracy_after_prune": acc_pruned,
        "accuracy_after_finetune": acc_finetuned,
        "finetune_epochs": finetune_epochs,
        "distill": distill,
        "stability": stability.key() if stability.active else None,
        "widths": widths,
        "group_widths": pruning_decision.new_widths if pruning_decision is not None else None,
        "data": data,
        "data_note": data_note(data),
        "out": str(out) if out is not None else None,
        "decision_file": str(save_decision) if save_decision is not None else None,
    }
    emit(payload, as_json)
