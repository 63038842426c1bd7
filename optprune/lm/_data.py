"""The synthetic arithmetic task: multi-digit addition written with its carry steps, exact answers.

A problem adds two ``n``-digit numbers (zero-padded, ``n`` in 1..4). The model
reads the prompt and must write one step per digit, least significant first,
each step the column sum with the incoming carry, then the answer::

    prompt      "047+285="
    completion  "7+5+0=12,4+8+1=13,0+2+1=03|332\\n"

The carry of a step is the tens digit of the previous step's sum, so the answer
needs ``n`` dependent steps (the "several steps of reasoning" of the issue); it
is checked exactly (the text after ``|``). Problems carry an optional prefix of
lower-case words and ``:`` (random during training, so every position and the
prefix tokens are seen; a fixed instruction in Compresso's prompt experiment).

Splits come from one seed: ``test`` and ``val`` are fixed lists of distinct
problems; ``train`` problems are drawn from the seed and never equal a test or
validation problem. ``hard`` is the test problems with the most digits, ``easy``
those with at most two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from optprune.errors import InvalidParameterError

__all__ = [
    "DATASETS",
    "SPLITS",
    "VOCAB",
    "PAD",
    "EOS",
    "ArithTask",
    "Problem",
    "decode",
    "encode",
    "get_task",
]

#: Characters of the vocabulary; index 0 is padding.
VOCAB = "#\n0123456789+=,| abcdefghijklmnopqrstuvwxyz:"
PAD = 0
EOS = VOCAB.index("\n")
_INDEX = {c: i for i, c in enumerate(VOCAB)}
DATASETS = ("arith",)
SPLITS = ("train", "val", "test", "hard", "easy")
_WORDS = ("the", "model", "sum", "add", "digits", "carry", "steps", "answer", "check", "write", "now", "each")


def encode(text: str) -> list[int]:
    """Token ids of ``text``; a character outside :data:`VOCAB` is an error naming it."""
    try:
        return [_INDEX[c] for c in text]
    except KeyError as exc:
        raise InvalidParameterError(
            f"character {exc.args[0]!r} is not in the vocabulary; allowed: {VOCAB!r}"
        ) from None


def decode(ids: list[int] | torch.Tensor) -> str:
    """Text of token ids (padding dropped)."""
    seq = ids.tolist() if isinstance(ids, torch.Tensor) else ids
    return "".join(VOCAB[i] for i in seq if i != PAD)


@dataclass(frozen=True)
class Problem:
    """``a + b`` with ``digits`` digits each."""

    a: int
    b: int
    digits: int

    @property
    def prompt(self) -> str:
        return f"{self.a:0{self.digits}d}+{self.b:0{self.digits}d}="

    @property
    def answer(self) -> str:
        return str(self.a + self.b)

    @property
    def completion(self) -> str:
        da, db = f"{self.a:0{self.digits}d}"[::-1], f"{self.b:0{self.digits}d}"[::-1]
        steps, carry = [], 0
        for x, y in zip(da, db):
            s = int(x) + int(y) + carry
            steps.append(f"{x}+{y}+{carry}={s:02d}")
            carry = s // 10
        return ",".join(steps) + "|" + self.answer + "\n"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InvalidParameterError(f"split must be one of {SPLITS}; got {split!r}")


@dataclass
class ArithTask:
    """Splits of the addition task from ``seed``: fixed ``val``/``test`` lists and a ``train`` sampler.

    ``digit_weights[k]`` is the probability of a ``k+1``-digit problem.
    """

    seed: int = 0
    n_val: int = 200
    n_test: int = 400
    max_digits: int = 4
    digit_weights: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)

    def __post_init__(self) -> None:
        if len(self.digit_weights) != self.max_digits:
            raise InvalidParameterError(
                f"ArithTask: digit_weights needs {self.max_digits} entries (one per digit count); "
                f"got {len(self.digit_weights)}"
            )
        rng = np.random.default_rng([self.seed, 1])
        held: list[Problem] = []
        seen: set[tuple[int, int, int]] = set()
        while len(held) < self.n_val + self.n_test:
            p = self._draw(rng)
            key = (p.a, p.b, p.digits)
            if key not in seen:
                seen.add(key)
                held.append(p)
        self._held = seen
        self.test = held[: self.n_test]
        self.val = held[self.n_test :]
        self._train_rng = np.random.default_rng([self.seed, 2])

    @property
    def name(self) -> str:
        return "arith"

    @property
    def max_len(self) -> int:
        """Longest prompt + completion (without prefix)."""
        p = Problem(10**self.max_digits - 1, 10**self.max_digits - 1, self.max_digits)
        return len(p.prompt) + len(p.completion)

    @property
    def n_train_available(self) -> int:
        """How many distinct training problems :meth:`train_problems` can draw (all problems less the held-out)."""
        return sum(100**(k + 1) for k, w in enumerate(self.digit_weights) if w > 0) - len(self._held)

    def _draw(self, rng: np.random.Generator) -> Problem:
        w = np.asarray(self.digit_weights, dtype=float)
        n = int(rng.choice(self.max_digits, p=w / w.sum())) + 1
        a, b = (int(v) for v in rng.integers(0, 10**n, size=2))
        return Problem(a, b, n)

    def train_problems(self, count: int, rng: np.random.Generator | None = None) -> list[Problem]:
        """``count`` training problems (never a test or validation problem)."""
        rng = self._train_rng if rng is None else rng
        out: list[Problem] = []
        while len(out) < count:
            p = self._draw(rng)
            if (p.a, p.b, p.digits) not in self._held:
                out.append(p)
        return out

    def problems(self, split: str, count: int | None = None) -> list[Problem]:
        """Problems of a split: ``val``, ``test``, ``hard`` (max digits), ``easy`` (<= 2 digits), ``train``."""
        _check_split(split)
        if split == "train":
            return self.train_problems(count or self.n_test, np.random.default_rng([self.seed, 3]))
        if split == "val":
            out = self.val
        elif split == "test":
            out = self.test
        elif split == "hard":
            out = [p for p in self.test if p.digits == self.max_digits]
        else:
            out = [p for p in self.test if p.digits <= 2]
        return out if count is None else out[:count]


def random_prefix(rng: np.random.Generator) -> str:
    """A random run of words and ``:`` (training only), or nothing half of the time."""
    if rng.random() < 0.5:
        return ""
    k = int(rng.integers(1, 4))
    return " ".join(rng.choice(_WORDS, size=k).tolist()) + ":"


def lm_batch(
    problems: list[Problem], block_size: int, prefixes: list[str] | str = "", rng: np.random.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets (``-100`` except on completion tokens), shape (batch, longest - 1).

    ``prefixes`` is one string for all, a list (one per problem), or ``"random"``
    for training prefixes drawn from ``rng``. The loss is taken on the
    completion only: the operands are random and cannot be predicted.
    """
    n = len(problems)
    ids = torch.full((n, block_size), PAD, dtype=torch.long)
    tgt = torch.full((n, block_size), -100, dtype=torch.long)
    longest = 2
    for i, p in enumerate(problems):
        if prefixes == "random":
            pre = random_prefix(rng if rng is not None else np.random.default_rng(i))
        elif isinstance(prefixes, str):
            pre = prefixes
        else:
            pre = prefixes[i]
        head, tail = encode(pre + p.prompt), encode(p.completion)
        seq = head + tail
        if len(seq) > block_size:
            raise InvalidParameterError(
                f"problem {p.prompt!r} with prefix {pre!r} needs {len(seq)} tokens; block_size is {block_size}"
            )
        ids[i, : len(seq)] = torch.tensor(seq)
        tgt[i, len(head) : len(seq)] = torch.tensor(tail)
        longest = max(longest, len(seq))
    return ids[:, : longest - 1], tgt[:, 1:longest]


def get_task(name: str, seed: int = 0) -> ArithTask:
    """The task named ``name`` (only ``"arith"``), with splits from ``seed``."""
    if name not in DATASETS:
        raise InvalidParameterError(f"unknown dataset {name!r}; known: {DATASETS}")
    return ArithTask(seed=seed)
