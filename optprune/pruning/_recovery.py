"""Recovery after pruning: fine-tuning, optionally distilled from the unpruned model."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from optprune._validation import Interval, validate_params
from optprune.training import fit_epochs, training_tensors

__all__ = ["finetune", "distillation_loss", "teacher_outputs"]


def teacher_outputs(teacher: nn.Module | None, Xt: torch.Tensor, batch_size: int = 4096) -> torch.Tensor | None:
    """The teacher's logits on every training input, computed once (None without a teacher)."""
    if teacher is None:
        return None
    teacher.eval()
    with torch.no_grad():
        return torch.cat([teacher(Xt[i : i + batch_size]) for i in range(0, len(Xt), batch_size)])


def distillation_loss(
    student_logits: torch.Tensor,
    target: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    r"""``(1 - α) CE(s, y) + α T² KL(softmax(t/T) ‖ softmax(s/T))``.

    Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network",
    section 2: the soft-target term is scaled by ``T²`` so its gradients keep
    their size as the temperature changes. Without a teacher, plain cross-entropy.
    """
    ce = nn.functional.cross_entropy(student_logits, target)
    if teacher_logits is None or alpha == 0:
        return ce
    t = temperature
    kl = nn.functional.kl_div(
        nn.functional.log_softmax(student_logits / t, dim=1),
        nn.functional.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1.0 - alpha) * ce + alpha * t * t * kl


# Shared with :func:`optprune.stability.stabilize`, which takes the same training parameters.
FINETUNE_CONSTRAINTS: dict[str, list] = {
    "epochs": [Interval(int, 0, None)],
    "alpha": [Interval(float, 0.0, 1.0)],
    "temperature": [Interval(float, 1e-6, None, finite=True)],
    "lr": [Interval(float, 1e-12, None, finite=True)],
    "batch_size": [Interval(int, 1, None)],
    "weight_decay": [Interval(float, 0.0, None, finite=True)],
    "seed": [Interval(int, 0, None)],
}


def finetune(
    model: nn.Module,
    data: str | tuple[np.ndarray, np.ndarray],
    epochs: int = 1,
    *,
    teacher: nn.Module | None = None,
    alpha: float = 0.5,
    temperature: float = 2.0,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> nn.Module:
    """Fine-tune ``model`` in place (Adam) and return it in eval mode.

    ``data`` is a dataset name (``"mnist"`` or ``"digits"``: its fixed ``"train"``
    fold from :func:`optprune.data.load_dataset`) or an ``(X, y)`` pair. With a
    ``teacher`` (usually the unpruned model) the loss is
    :func:`distillation_loss` with weight ``alpha`` and ``temperature``. Shuffling
    is seeded; progress (epoch, loss, train accuracy) is shown with rich on stderr.
    """
    params = {"epochs": epochs, "alpha": alpha, "temperature": temperature, "lr": lr, "batch_size": batch_size,
              "weight_decay": weight_decay, "seed": seed}
    validate_params("finetune", params, FINETUNE_CONSTRAINTS)
    Xt, yt, label = training_tensors(data, data_dir, "finetune")
    if epochs == 0:
        return model.eval()
    teacher_logits = teacher_outputs(teacher, Xt)

    def batch_loss(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        teacher_part = None if teacher_logits is None else teacher_logits[idx]
        return distillation_loss(out, yt[idx], teacher_part, alpha, temperature)

    return fit_epochs(model, Xt, yt, batch_loss, epochs=epochs, lr=lr, weight_decay=weight_decay,
                      batch_size=batch_size, seed=seed, progress=progress, title="fine-tune", label=label)
