"""SPRINT in miniature: per-question attention-head pruning for diverse best-of-N reasoning.

Nguyen, Nguyen, Nguyen, "SPRINT": pruning some attention heads helps on some
questions; a selector learns, per question, which ``(layer, head)`` to prune,
and pruned-head configurations diversify best-of-N sampling.

1. Data (:func:`collect_head_outcomes`): for every training question and every
   head, whether the model with that head masked answers correctly, greedily and
   in ``n_samples`` samples (success rate per pair). Heads are masked with
   forward pre-hooks on ``out_proj`` (:func:`optprune.lm.unit_masks`): no copy of
   the model. The table is cached in a ``.npz`` file and resumed head by head.
2. Selector (:class:`HeadSelector`): the question is embedded by the model's own
   last hidden state, mean-pooled over the prompt tokens, projected by a linear
   map ``P``; every candidate has a learned vector ``e_c``, the candidates being
   "prune nothing" (index 0) and every head (index ``1 + h``);
   ``score(q, c) = <P x_q, e_c> / tau`` (both sides L2-normalised).
   Trained with a multi-positive InfoNCE loss (Khosla et al. 2020)

   .. math:: L(q) = -\\log \\frac{\\sum_{c \\in C^+_q} \\exp s(q, c)}{\\sum_{c} \\exp s(q, c)}

   where ``C^+_q`` are the candidates with the highest success rate on ``q``
   (a head whose pruning helps, or "prune nothing" when no head does better) and
   the negatives are all other candidates (heads whose pruning hurts or does
   not help as much); questions that no candidate answers are skipped.
   ``tau = 0.1``; all candidates are negatives of each other (no sampling).
   The "prune nothing" candidate is this miniature's addition: with 16 heads,
   masking any one of them hurts most questions here.
3. Inference (:func:`best_of_n`): sample ``n`` answers at temperature ``T``;
   sample ``i`` runs with the ``(i mod k)``-th best-scoring candidate (``k`` =
   ``top_k``, a mix across samples for diversity); the answer is the majority
   vote (ties: the earliest sample). The arithmetic checker is used only to
   score the vote, never to select.
"""

from __future__ import annotations

import json
import numbers
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from optprune._checkpoint import (
    NONEMPTY_POSITIVE_INTS,
    POSITIVE_INT,
    check_config,
    load_weights,
    read_checkpoint,
    state_digest,
)
from optprune._estimator import BaseEstimator
from optprune._files import atomic_file
from optprune._validation import InstanceOf, Interval, Predicate, validate_params
from optprune.errors import FileFormatError, InvalidParameterError, NotFittedError, ShapeMismatchError
from optprune.lm._data import ArithTask, Problem, encode
from optprune.lm._eval import answer_of, generate
from optprune.lm._model import TinyLM, _check_lm, layer_widths, unit_masks
from optprune.training import fit_epochs

__all__ = [
    "SELECTION_MODES",
    "HeadSelector",
    "Sprint",
    "best_of_n",
    "collect_head_outcomes",
    "evaluate_modes",
    "head_list",
    "question_features",
    "load_selector",
    "majority_vote",
    "max_train_questions",
    "sample_answers",
]

SELECTION_MODES = ("sprint", "best_of_n", "random_head", "best_fixed_head")


def head_list(model: TinyLM) -> list[tuple[int, int]]:
    """Every ``(layer, head)`` of the model, in order."""
    return [(layer, h) for layer, n in enumerate(layer_widths(model)["heads"]) for h in range(n)]


def _head_masks(model: TinyLM, head: tuple[int, int] | None) -> list[torch.Tensor | None]:
    masks: list[torch.Tensor | None] = [None] * len(model.blocks)
    if head is not None:
        layer, h = head
        m = torch.ones(layer_widths(model)["heads"][layer])
        m[h] = 0.0
        masks[layer] = m
    return masks


def _answers(model: TinyLM, problems: Sequence[Problem], head: tuple[int, int] | None, temperature: float,
             seed: int) -> list[str]:
    with unit_masks(model, heads=_head_masks(model, head)):
        outs = generate(model, [p.prompt for p in problems], temperature=temperature, seed=seed)
    return [answer_of(o) for o in outs]


#: version of the outcome cache layout (``table``, ``keys``, ``settings``)
CACHE_VERSION = 2


def _cache_error(path: Path, what: str) -> FileFormatError:
    return FileFormatError(f"SPRINT outcome cache {str(path)!r} {what}; delete it or pass --force "
                           "(overwrite_cache=True) to start a fresh one")


def _read_cache(path: Path, keys: np.ndarray, settings: dict, n_columns: int) -> np.ndarray:
    """The outcome table stored in ``path`` once it is a cache for these questions, this model and these settings."""
    if path.is_dir():
        raise _cache_error(path, "is a folder")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # truncated zip, text, pickled data, unreadable file
        raise _cache_error(path, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise _cache_error(path, "is not an outcome cache (a single array, not an .npz archive)")
    with data:
        if not {"table", "keys", "settings"} <= set(data.files):
            raise _cache_error(path, f"is not an outcome cache (it holds {sorted(data.files)}, not the arrays table, "
                                     "keys and settings)")
        try:
            table, stored_keys, stored = data["table"], data["keys"], data["settings"]
        except Exception as exc:  # object arrays (need pickle), corrupt members
            raise _cache_error(path, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if stored.dtype.kind != "U" or stored.shape != ():
        raise _cache_error(path, "is not an outcome cache (its settings are not a JSON string)")
    try:
        found = json.loads(str(stored))
    except ValueError:
        raise _cache_error(path, "is not an outcome cache (its settings are not JSON)") from None
    if found != settings:
        diff = sorted(k for k in set(found) | set(settings) if found.get(k) != settings.get(k)) \
            if isinstance(found, dict) else ["settings"]
        raise _cache_error(path, f"was made for another model or other settings (differs in {', '.join(diff)})")
    if stored_keys.shape != keys.shape or stored_keys.dtype.kind not in "iu" or not np.array_equal(stored_keys, keys):
        raise _cache_error(path, "was made for other questions")
    if table.dtype.kind != "f" or table.shape != (len(keys), n_columns):
        raise _cache_error(path, f"holds a table of {table.dtype} {table.shape}; expected float "
                                 f"({len(keys)}, {n_columns})")
    done = table[~np.isnan(table)]
    if ((done < 0) | (done > 1)).any():
        raise _cache_error(path, "holds success rates outside [0, 1]")
    return table.astype(float)


def _write_cache(path: Path, table: np.ndarray, keys: np.ndarray, settings: dict) -> None:
    """Write exactly ``path`` (no ``.npz`` appended), atomically: a kill mid-write leaves the previous cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, table=table, keys=keys, settings=np.array(json.dumps(settings, sort_keys=True)))


def collect_head_outcomes(
    model: TinyLM, problems: Sequence[Problem], n_samples: int = 2, temperature: float = 0.7,
    cache: str | Path | None = None, progress: bool = True, overwrite_cache: bool = False,
) -> np.ndarray:
    """Success rate (greedy + ``n_samples`` samples) per question and per masked head; column 0 = no head masked.

    Shape ``(questions, 1 + heads)``. With ``cache``, finished columns are read
    back and only the missing ones computed (resumable). The cache is written at
    exactly that path, atomically, after every column; it records the questions,
    a digest of the model's weights (:func:`optprune._checkpoint.state_digest`),
    ``n_samples`` and ``temperature``, so a cache made for anything else is a
    :class:`FileFormatError` (as is an unreadable one) unless ``overwrite_cache``,
    which starts a fresh table.
    """
    model = _check_lm(model)
    heads = head_list(model)
    keys = np.array([[p.a, p.b, p.digits] for p in problems], dtype=np.int64).reshape(-1, 3)
    table = np.full((len(problems), 1 + len(heads)), np.nan)
    path = Path(cache) if cache is not None else None
    settings = {"version": CACHE_VERSION, "model": state_digest(model), "n_samples": int(n_samples),
                "temperature": float(temperature)}
    if path is not None and path.is_dir():
        raise _cache_error(path, "is a folder")
    if path is not None and path.exists() and not overwrite_cache:
        table = _read_cache(path, keys, settings, table.shape[1])
    for col, head in enumerate([None, *heads]):
        if not np.isnan(table[:, col]).any():
            continue
        truth = [p.answer for p in problems]
        hits = np.array([a == t for a, t in zip(_answers(model, problems, head, 0.0, 0), truth)], dtype=float)
        for s in range(n_samples):
            hits += np.array([a == t for a, t in zip(_answers(model, problems, head, temperature, s + 1), truth)])
        table[:, col] = hits / (1 + n_samples)
        if path is not None:
            _write_cache(path, table, keys, settings)
        if progress:
            print(f"  head outcomes: column {col + 1}/{len(heads) + 1} done", flush=True)
    return table


@torch.no_grad()
def question_features(model: TinyLM, problems: Sequence[Problem]) -> torch.Tensor:
    """Mean over prompt tokens of the model's last hidden state (before the final LayerNorm), (questions, d)."""
    feats = []
    for p in problems:
        x = model.embed(torch.tensor([encode(p.prompt)]))
        for block in model.blocks:
            x = block(x)
        feats.append(x[0].mean(0))
    return torch.stack(feats)


class HeadSelector(nn.Module):
    """``score(q, h) = <P x_q, e_h> / tau`` over the heads of one architecture (see module doc)."""

    def __init__(self, d_model: int, heads: list[int], dim: int = 16, tau: float = 0.1) -> None:
        super().__init__()
        if tau <= 0:
            raise InvalidParameterError(f"HeadSelector: tau must be > 0; got {tau}")
        self.heads = list(heads)
        self.d_model = int(d_model)
        self.tau = float(tau)
        self.proj = nn.Linear(d_model, dim)
        self.head_emb = nn.Parameter(0.1 * torch.randn(1 + sum(heads), dim))  # row 0: prune nothing
        self.register_buffer("mean", torch.zeros(d_model))
        self.register_buffer("std", torch.ones(d_model))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        q = nn.functional.normalize(self.proj((features - self.mean) / self.std), dim=-1)
        e = nn.functional.normalize(self.head_emb, dim=-1)
        return q @ e.T / self.tau

    def check_model(self, model: TinyLM) -> None:
        """Raise unless ``model`` has the layers and heads this selector was trained for."""
        w = layer_widths(model)
        if w["heads"] != self.heads or w["hidden"] != self.d_model:
            raise ShapeMismatchError(
                f"selector trained for heads per layer {self.heads} and hidden width {self.d_model}; "
                f"the model has {w['heads']} and {w['hidden']}"
            )

    def fit(self, features: torch.Tensor, outcomes: np.ndarray, epochs: int = 300, lr: float = 1e-2,
            seed: int = 0) -> HeadSelector:
        """Multi-positive InfoNCE: positives are the candidates with the best success rate on the question."""
        torch.manual_seed(seed)
        if outcomes.shape != (features.shape[0], 1 + sum(self.heads)):
            raise ShapeMismatchError(f"outcomes of shape {outcomes.shape}; expected "
                                     f"({features.shape[0]}, {1 + sum(self.heads)})")
        rate = torch.as_tensor(outcomes, dtype=torch.float32)
        best = rate.max(dim=1, keepdim=True).values
        pos = (rate == best) & (best > 0)
        keep = pos.any(dim=1)
        self.n_train_questions_ = int(keep.sum())
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0) + 1e-6)
        if not bool(keep.any()):
            self.history_ = []
            return self
        x, p = features[keep], pos[keep]
        self.history_ = []

        def info_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
            return -(torch.logsumexp(logits.masked_fill(~positives, float("-inf")), 1)
                     - torch.logsumexp(logits, 1)).mean()

        def record(loss: torch.Tensor, epoch: int) -> torch.Tensor:
            self.history_.append(float(loss.detach()))
            return loss

        # the one training loop, full batch: every epoch is one Adam step on all kept questions
        fit_epochs(self, None, None, info_nce, epochs=int(epochs), lr=lr, seed=seed, progress=False,
                   num_threads=None, loss_hook=record, batches=lambda epoch: [(x, p)])
        return self

    def save(self, path: str | Path, best_fixed_head: tuple[int, int] | None = None) -> Path:
        """Write the selector (and the best fixed head found on the training questions), atomically."""
        path = Path(path)
        with atomic_file(path) as tmp:
            torch.save({"format": SELECTOR_FORMAT, "heads": self.heads, "d_model": self.d_model, "tau": self.tau,
                        "dim": self.proj.out_features, "state_dict": self.state_dict(),
                        "best_fixed_head": list(best_fixed_head) if best_fixed_head is not None else None}, tmp)
        return path


SELECTOR_FORMAT = "optprune.sprint/1"
SELECTOR_TAKES = "a SPRINT selector written by optprune sprint train (HeadSelector.save)"
_PAIR = Predicate(lambda v: isinstance(v, (list, tuple)) and len(v) == 2
                  and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v),
                  "a [layer, head] pair of ints >= 0")
#: the entries of a selector file besides its format tag and state dict
SELECTOR_CONSTRAINTS = {
    "heads": NONEMPTY_POSITIVE_INTS,
    "d_model": POSITIVE_INT,
    "dim": POSITIVE_INT,
    "tau": [Interval(float, 0.0, None, closed="neither", finite=True)],
    "best_fixed_head": [_PAIR, None],
}


def load_selector(path: str | Path) -> HeadSelector:
    """Read a selector written by :meth:`HeadSelector.save`, checked by :mod:`optprune._checkpoint`.

    Format tag, entries and their values, state-dict names and shapes, finite
    weights, and a ``best_fixed_head`` that is one of the selector's heads.
    """
    path = Path(path)
    data = read_checkpoint(path, SELECTOR_FORMAT, SELECTOR_TAKES)
    entries = {k: v for k, v in data.items() if k not in ("format", "state_dict")}
    entries = check_config(path, entries, SELECTOR_CONSTRAINTS, required=("heads", "d_model", "dim", "tau"),
                           field="selector")
    sel = HeadSelector(entries["d_model"], entries["heads"], entries["dim"], float(entries["tau"]))
    load_weights(path, sel, data.get("state_dict"))
    fixed = entries.get("best_fixed_head")
    if fixed is not None:
        layer, head = fixed
        if layer >= len(sel.heads) or head >= sel.heads[layer]:
            raise FileFormatError(f"{path}: best_fixed_head {list(fixed)} is not a head of the selector's model "
                                  f"(heads per layer {sel.heads})")
    sel.best_fixed_head_ = tuple(fixed) if fixed is not None else None
    return sel


def sample_answers(
    model: TinyLM, problems: Sequence[Problem], n: int, mode: str = "sprint", selector: HeadSelector | None = None,
    top_k: int = 4, temperature: float = 0.7, seed: int = 0, fixed_head: tuple[int, int] | None = None,
) -> np.ndarray:
    """Answers (questions, ``n``) of ``n`` samples per question, each with the head ``mode`` chooses masked.

    ``sprint``: sample ``i`` uses the selector's ``(i mod top_k)``-th best candidate (a head or none);
    ``best_of_n``: no head masked; ``random_head``: a uniformly random head per
    sample; ``best_fixed_head``: ``fixed_head`` in every sample. The first ``m``
    columns are what ``n = m`` would give. All samples that mask the same head
    are generated in one batch under hooks (no copy of the model).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameterError(f"best_of_n: n must be an integer >= 1; got {n!r}")
    if mode not in SELECTION_MODES:
        raise InvalidParameterError(f"best_of_n: mode must be one of {SELECTION_MODES}; got {mode!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidParameterError(f"best_of_n: seed must be an integer >= 0; got {seed!r}")
    heads = head_list(model)
    scores = None
    if mode == "sprint":
        if selector is None:
            raise NotFittedError("best_of_n: mode 'sprint' needs a trained selector")
        selector.check_model(model)
        with torch.no_grad():
            scores = selector(question_features(model, problems))
    choice = choose_heads("best_of_n", mode, heads, len(problems), n, scores=scores, top_k=top_k, seed=seed,
                          fixed_head=fixed_head)
    return answers_by_head(choice, heads, lambda rows, head, col: _answers(
        model, [problems[r] for r in rows], head, temperature, seed * 1000 + col + 1))


def choose_heads(
    who: str, mode: str, heads: Sequence[tuple[int, int]], n_questions: int, n: int, *,
    scores: torch.Tensor | None = None, top_k: int = 4, seed: int = 0, fixed_head: tuple[int, int] | None = None,
) -> np.ndarray:
    """The head each of ``n`` samples per question masks, as an index into ``heads`` (-1: none), by ``mode``.

    ``scores`` (questions, 1 + heads): the selector's candidate scores (candidate 0 = prune nothing), needed by
    ``sprint``; ``random_head`` draws from ``np.random.default_rng([seed, 17])``. Shared by the TinyLM and the
    transformers samplers so both choose identically.
    """
    if mode not in SELECTION_MODES:
        raise InvalidParameterError(f"{who}: mode must be one of {SELECTION_MODES}; got {mode!r}")
    rng = np.random.default_rng([seed, 17])
    choice = np.full((n_questions, n), -1)
    if mode == "sprint":
        if scores is None:
            raise NotFittedError(f"{who}: mode 'sprint' needs a trained selector")
        ranked = torch.argsort(scores, dim=1, descending=True).numpy()
        k = min(top_k, 1 + len(heads))
        choice = ranked[:, [i % k for i in range(n)]] - 1  # candidate 0 (prune nothing) -> -1
    elif mode == "random_head":
        choice = rng.integers(0, len(heads), size=(n_questions, n))
    elif mode == "best_fixed_head":
        if fixed_head is None:
            raise InvalidParameterError(f"{who}: mode 'best_fixed_head' needs fixed_head=(layer, head)")
        if tuple(fixed_head) not in heads:
            raise InvalidParameterError(f"{who}: fixed_head must be one of the model's heads {list(heads)}; "
                                        f"got {fixed_head!r}")
        choice[:] = list(heads).index(tuple(fixed_head))
    return choice


def answers_by_head(
    choice: np.ndarray, heads: Sequence[tuple[int, int]],
    answer: Callable[[np.ndarray, tuple[int, int] | None, int], list[str]],
) -> np.ndarray:
    """Fill a (questions, samples) answer array from ``choice``: one ``answer(rows, head, index)`` call per head
    (all samples that mask the same head generated in one batch), ``head`` None for ``index`` -1."""
    answers = np.empty(choice.shape, dtype=object)
    for col in np.unique(choice):
        rows, samples = np.nonzero(choice == col)
        head = None if col < 0 else heads[int(col)]
        answers[rows, samples] = np.array(answer(rows, head, int(col)), dtype=object)
    return answers


def majority_vote(answers: np.ndarray, problems: Sequence[Problem]) -> np.ndarray:
    """Whether the most frequent non-empty answer of each row (ties: the earliest) is right."""
    correct = np.zeros(len(problems), dtype=bool)
    for i, p in enumerate(problems):
        votes = Counter(a for a in answers[i] if a)
        if votes:
            top = max(votes.values())
            winner = next(a for a in answers[i] if a and votes[a] == top)
            correct[i] = winner == p.answer
    return correct


def best_of_n(
    model: TinyLM, problems: Sequence[Problem], n: int, mode: str = "sprint", selector: HeadSelector | None = None,
    top_k: int = 4, temperature: float = 0.7, seed: int = 0, fixed_head: tuple[int, int] | None = None,
) -> np.ndarray:
    """Majority-vote correctness per problem of :func:`sample_answers` (the checker only scores the vote)."""
    answers = sample_answers(model, problems, n, mode, selector, top_k, temperature, seed, fixed_head)
    return majority_vote(answers, problems)

#: the most training questions SPRINT takes: every question costs ``(1 + heads) * (1 + n_samples)`` generations
#: and a row of the outcome table and of the feature matrix, all held in memory
MAX_TRAIN_QUESTIONS = 100_000


def max_train_questions(task: ArithTask) -> int:
    """The largest ``n_train``: the distinct training questions ``task`` can draw, capped at
    :data:`MAX_TRAIN_QUESTIONS`."""
    return min(MAX_TRAIN_QUESTIONS, task.n_train_available)


class Sprint(BaseEstimator):
    """SPRINT as an estimator: ``fit(model, task)`` collects head outcomes and trains the selector.

    Parameters (stored, validated by :meth:`fit`): ``n_train`` training questions
    (at most :func:`max_train_questions`), ``n_samples`` sampled answers per
    (question, head) besides the greedy one, ``temperature`` of sampling,
    ``top_k`` heads mixed over the N samples, ``dim``/``tau``/``epochs`` of the
    selector, ``seed``, ``cache`` (path of the outcome table, resumable; see
    :func:`collect_head_outcomes`), ``overwrite_cache`` (start a fresh table
    when the cache is unreadable or made for another model or other settings).
    Fitted: ``outcomes_``, ``selector_``, ``best_fixed_head_`` (the head whose
    masking has the best mean success on the training questions).
    """

    _parameter_constraints = {
        "n_train": [Interval(int, 1, None)],
        "n_samples": [Interval(int, 0, None)],
        "temperature": [Interval(float, 0.0, None, closed="neither")],
        "top_k": [Interval(int, 1, None)],
        "dim": [Interval(int, 1, None)],
        "tau": [Interval(float, 0.0, None, closed="neither")],
        "epochs": [Interval(int, 1, None)],
        "seed": [Interval(int, 0, None)],
        "overwrite_cache": [InstanceOf((bool,))],
    }

    def __init__(self, n_train: int = 300, n_samples: int = 2, temperature: float = 0.7, top_k: int = 4,
                 dim: int = 16, tau: float = 0.1, epochs: int = 300, seed: int = 0,
                 cache: str | Path | None = None, overwrite_cache: bool = False) -> None:
        self.n_train = n_train
        self.n_samples = n_samples
        self.temperature = temperature
        self.top_k = top_k
        self.dim = dim
        self.tau = tau
        self.epochs = epochs
        self.seed = seed
        self.cache = cache
        self.overwrite_cache = overwrite_cache

    _fitted_attribute = "selector_"

    def fit(self, model: TinyLM, task: ArithTask, progress: bool = False) -> Sprint:
        self._validate_params()
        validate_params("Sprint", {"n_train": self.n_train},
                        {"n_train": [Interval(int, 1, max_train_questions(task))]})
        model = _check_lm(model).eval()
        problems = task.train_problems(self.n_train, np.random.default_rng([self.seed, 23]))
        self.outcomes_ = collect_head_outcomes(model, problems, self.n_samples, self.temperature, self.cache,
                                               progress, self.overwrite_cache)
        heads = head_list(model)
        self.best_fixed_head_ = heads[int(np.argmax(self.outcomes_[:, 1:].mean(0)))]
        self.selector_ = HeadSelector(model.config.d_model, layer_widths(model)["heads"], self.dim, self.tau)
        self.selector_.fit(question_features(model, problems), self.outcomes_, self.epochs, seed=self.seed)
        self.selector_.best_fixed_head_ = self.best_fixed_head_
        return self

    def score(self, model: TinyLM, problems: Sequence[Problem], n: int, seed: int = 0) -> dict[str, float]:
        """Accuracy@``n`` (majority vote) of SPRINT, plain best-of-N, random head and the best fixed head."""
        self._check_fitted()
        return evaluate_modes(model, problems, n, self.selector_, self.best_fixed_head_, self.top_k,
                              self.temperature, seed)


def evaluate_modes(model: TinyLM, problems: Sequence[Problem], n: int, selector: HeadSelector,
                   fixed_head: tuple[int, int] | None, top_k: int = 4, temperature: float = 0.7,
                   seed: int = 0) -> dict[str, float]:
    """``{mode: accuracy}`` for every mode of :data:`SELECTION_MODES` on ``problems``."""
    selector.check_model(model)
    return {mode: float(best_of_n(model, problems, n, mode, selector, top_k, temperature, seed,
                                  fixed_head).mean()) for mode in SELECTION_MODES}
