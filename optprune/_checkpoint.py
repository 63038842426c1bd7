"""One way to read optprune's own model files back, checked (written with :func:`optprune._files.atomic_file`).

The ``.pt`` files optprune writes for models it builds itself (the
language model, the ViT, the SPRINT selector) are ``{"format": TAG, "config":
{...}, "state_dict": {...}, ...}`` read with ``torch.load(weights_only=True)``.
:func:`read_checkpoint` and :func:`load_weights` check, in this order and for
every such loader: that the file exists (:class:`DataNotFoundError`), is a
readable torch file holding a dict with the expected format tag (else a
:class:`FileFormatError` saying what the file is when it is another optprune
file, and what the command takes), that the configuration is a dict with known
keys whose values fit their constraints (:func:`check_config`, written with
:mod:`optprune._validation`), that the state dict has exactly the tensors the
configuration implies with the same shapes (:class:`FileFormatError` /
:class:`ShapeMismatchError` naming the tensor), and that every tensor is finite
(:class:`InvalidWeightsError` naming the tensor).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from optprune._validation import Constraint, Interval, Predicate, validate_params
from optprune.errors import (
    DataNotFoundError,
    FileFormatError,
    InvalidParameterError,
    InvalidWeightsError,
    ShapeMismatchError,
)

__all__ = [
    "build_model",
    "KNOWN_FORMATS",
    "NONEMPTY_POSITIVE_INTS",
    "POSITIVE_INT",
    "POSITIVE_INTS",
    "check_config",
    "load_weights",
    "read_checkpoint",
    "state_digest",
]

#: format tag -> what a file with that tag is (so a file given to the wrong command is named for what it is)
KNOWN_FORMATS: dict[str, str] = {
    "optprune.lm/1": "an optprune language model (written by optprune lm train / lm prune)",
    "optprune.vit/1": "an optprune ViT (written by optprune vit-train / gohsp, optprune.vit.save_vit)",
    "optprune.sprint/1": "a SPRINT head selector (written by optprune sprint train)",
    "optprune-torch-sequential": "an optprune torch network (written by optprune.io.save_torch_model)",
}

#: constraints of config values shared by the model files: an int >= 1, a list of ints >= 1 (widths per layer)
_AT_LEAST_ONE = Interval(int, 1, None)


def _positive_ints(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(_AT_LEAST_ONE.accepts(v) for v in value)


POSITIVE_INT: list[Constraint | None] = [_AT_LEAST_ONE]
POSITIVE_INTS: list[Constraint | None] = [Predicate(_positive_ints, "a list of ints >= 1")]
NONEMPTY_POSITIVE_INTS: list[Constraint | None] = [
    Predicate(lambda v: _positive_ints(v) and len(v) > 0, "a non-empty list of ints >= 1")
]


def _describe(found: Any) -> str:
    if isinstance(found, dict):
        tag = found.get("format")
        if isinstance(tag, str) and tag in KNOWN_FORMATS:
            return f"{KNOWN_FORMATS[tag]} (format {tag!r})"
        return f"a dict with format {tag!r}" if "format" in found else f"a dict with keys {sorted(map(str, found))}"
    return f"a {type(found).__name__}"


def read_checkpoint(path: str | os.PathLike, tag: str, takes: str) -> dict:
    """The dict stored in ``path`` if it carries ``{"format": tag}``, else a named error.

    ``takes`` says what the caller accepts and how to make one ("a language model
    written by optprune lm train"); it ends every format error.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path}: file not found; expected {takes}")
    if not path.is_file():
        raise FileFormatError(f"{path}: is a folder, not a file; expected {takes}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on a corrupt, truncated or foreign file
        raise FileFormatError(
            f"{path}: not a readable torch file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            f"; expected {takes}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != tag:
        raise FileFormatError(f"{path}: this is {_describe(payload)}, not format {tag!r}; expected {takes}")
    return payload


def check_config(
    path: str | os.PathLike, config: Any, constraints: Mapping[str, Iterable[Constraint | None]],
    required: Iterable[str] = (), field: str = "config",
) -> dict:
    """``config`` as a dict once it is a mapping with only known keys, the ``required`` ones present, values valid.

    ``constraints`` maps every allowed key to its constraints (:mod:`optprune._validation`);
    a key left out of ``config`` is not checked unless ``required``.
    """
    if not isinstance(config, Mapping):
        raise FileFormatError(f"{path}: {field!r} must be a dict; got {type(config).__name__}")
    unknown = sorted(str(k) for k in config if k not in constraints)
    if unknown:
        raise FileFormatError(f"{path}: unknown {field} key(s) {unknown}; allowed: {sorted(constraints)}")
    missing = [k for k in required if k not in config]
    if missing:
        raise FileFormatError(f"{path}: {field} lacks {missing}; required: {sorted(required)}")
    present = {k: v for k, v in constraints.items() if k in config}
    try:
        validate_params(f"{path}: {field}", config, present)
    except InvalidParameterError as exc:
        raise FileFormatError(str(exc)) from None
    return dict(config)


def load_weights(path: str | os.PathLike, module: Any, state_dict: Any, field: str = "state_dict") -> None:
    """Load ``state_dict`` into ``module`` once it has exactly the module's tensors, shapes and finite values."""
    import torch

    if not isinstance(state_dict, Mapping):
        raise FileFormatError(f"{path}: {field!r} must be a dict of tensors; got {type(state_dict).__name__}")
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [str(k) for k in state_dict if k not in expected]
    if missing or unexpected:
        raise FileFormatError(
            f"{path}: {field!r} does not match the model its config describes: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    for name, want in expected.items():
        got = state_dict[name]
        if not isinstance(got, torch.Tensor):
            raise FileFormatError(f"{path}: {field}[{name!r}] must be a tensor; got {type(got).__name__}")
        if tuple(got.shape) != tuple(want.shape):
            raise ShapeMismatchError(
                f"{path}: tensor {name!r} has shape {tuple(got.shape)}; the config implies {tuple(want.shape)}"
            )
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            bad = int((~torch.isfinite(got)).sum())
            raise InvalidWeightsError(
                f"{path}: tensor {name!r} holds {bad} NaN or Inf value(s); weights must be finite"
            )
    module.load_state_dict(state_dict)


def build_model(path: str | os.PathLike, make: Any, config: dict, payload: Mapping) -> Any:
    """``make(config)`` with the checked weights of ``payload["state_dict"]`` and its metadata, in eval mode.

    A config the model's own constructor refuses is a :class:`FileFormatError` naming the file.
    """
    try:
        model = make(config)
    except InvalidParameterError as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    load_weights(path, model, payload.get("state_dict"))
    metadata = payload.get("metadata", {})
    model.metadata = dict(metadata) if isinstance(metadata, dict) else {}
    return model.eval()


def state_digest(module: Any) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes, bytes): what makes two models the same model."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
