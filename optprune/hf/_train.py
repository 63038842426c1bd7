"""Training a ``transformers`` causal LM on the project's arithmetic task, and saving it atomically.

The loop is :func:`optprune.lm.fit_lm` (AdamW, warm-up then cosine decay, gradient norm clipped to 1,
loss on completion tokens only) run through :class:`optprune.hf.CausalLMAdapter`, on
:class:`optprune.lm.ArithTask` problems (half of them with a random word prefix), exactly as the
project's own :class:`optprune.lm.TinyLM` reference is trained (:func:`optprune.lm.train_reference`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optprune.errors import InvalidParameterError
from optprune.hf._models import CausalLMAdapter, build_model
from optprune.lm._data import ArithTask
from optprune.lm._train import fit_lm

__all__ = ["save_hf", "train_hf"]


def train_hf(
    arch: str, steps: int = 2000, seed: int = 0, lr: float = 3e-3, batch_size: int = 64, log_every: int = 0,
    **sizes: Any,
) -> tuple[nn.Module, list[float]]:
    """A ``transformers`` model of ``arch`` (sizes of :func:`optprune.hf.tiny_config`) trained ``steps`` steps.

    Same recipe as :func:`optprune.lm.train_reference`: lr ``lr`` with ``min(200, steps // 10)`` warm-up
    steps and cosine decay, weight decay 0.01, batches of ``batch_size`` problems of ``ArithTask(seed=0)``,
    initialisation and batches from ``seed``. Returns the model (eval mode) and the loss per step.
    """
    model = build_model(arch, seed=seed, **sizes)
    model.train()
    losses = fit_lm(CausalLMAdapter(model), ArithTask(seed=0), steps, lr=lr, batch_size=batch_size, seed=seed,
                    warmup=min(200, steps // 10), weight_decay=0.01, log_every=log_every)
    return model.eval(), losses


def save_hf(model: nn.Module, path: str | Path, force: bool = False, metadata: dict | None = None) -> Path:
    """``model.save_pretrained(path)`` written atomically (a temporary folder renamed into place).

    An existing ``path`` is an error unless ``force``; ``metadata`` goes to ``optprune.json`` beside the
    weights (how the model was made).
    """
    path = Path(path)
    if path.exists() and not force:
        raise InvalidParameterError(f"{path} exists; pass force=True (--force) to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with torch.no_grad():
            model.save_pretrained(str(tmp))
        if metadata is not None:
            (tmp / "optprune.json").write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
