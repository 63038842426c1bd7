"""VNN-LIB property reader.

A VNN-LIB file (the format of the VNN-COMP competitions) declares inputs
``X_i`` and outputs ``Y_j`` and asserts the *unsafe* region: an input box and
an output condition. The property is violated (verdict ``sat``) iff some input
in the box produces an output satisfying the condition.

Supported: ``declare-const``; ``assert`` of ``<=``/``>=``/``<``/``>`` between
linear terms (numbers, variables, ``+``, ``-``, ``*`` by a constant); ``and``;
``or``. Input constraints must be bounds of single inputs (a box), possibly as
an ``or`` of boxes; output conditions become a disjunction of conjunctions,
each conjunction stored as ``C y + d >= 0``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from optprune.errors import DataNotFoundError, VNNLibError

__all__ = ["Conjunction", "VNNLibCase", "VNNLibProperty", "read_vnnlib", "parse_vnnlib"]

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_VAR = re.compile(r"^([XY])_(\d+)$")


@dataclass(frozen=True)
class Conjunction:
    """Rows ``C y + d >= 0`` that must hold together."""

    C: np.ndarray
    d: np.ndarray

    def holds(self, y: np.ndarray, tol: float = 0.0) -> bool:
        return bool(np.all(self.C @ y + self.d >= -tol))

    def slack(self, y: np.ndarray) -> float:
        """``min_i (C_i y + d_i)``: >= 0 iff the conjunction holds."""
        return float(np.min(self.C @ y + self.d))


@dataclass(frozen=True)
class VNNLibCase:
    """One input box with the output disjunction that would violate the property."""

    lower: np.ndarray
    upper: np.ndarray
    disjuncts: tuple[Conjunction, ...]

    def violated_by(self, x: np.ndarray, y: np.ndarray, tol: float = 0.0) -> bool:
        inside = bool(np.all(x >= self.lower - tol) and np.all(x <= self.upper + tol))
        return inside and any(conj.holds(y) for conj in self.disjuncts)


@dataclass(frozen=True)
class VNNLibProperty:
    n_inputs: int
    n_outputs: int
    cases: tuple[VNNLibCase, ...]
    name: str = ""


def _tokenize(text: str) -> list[str]:
    text = re.sub(r";[^\n]*", " ", text)
    return _TOKEN.findall(text)


def _parse_sexprs(tokens: list[str], source: str) -> list:
    stack: list[list] = [[]]
    for tok in tokens:
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise VNNLibError(f"{source}: unbalanced ')'")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise VNNLibError(f"{source}: {len(stack) - 1} unclosed '('")
    return stack[0]


class _Linear:
    """A linear term over X and Y: coefficient dicts plus a constant."""

    def __init__(self, x=None, y=None, const=0.0) -> None:
        self.x: dict[int, float] = dict(x or {})
        self.y: dict[int, float] = dict(y or {})
        self.const = float(const)

    def scaled(self, s: float) -> _Linear:
        return _Linear({k: s * v for k, v in self.x.items()}, {k: s * v for k, v in self.y.items()}, s * self.const)

    def plus(self, other: _Linear) -> _Linear:
        out = _Linear(self.x, self.y, self.const + other.const)
        for k, v in other.x.items():
            out.x[k] = out.x.get(k, 0.0) + v
        for k, v in other.y.items():
            out.y[k] = out.y.get(k, 0.0) + v
        return out

    @property
    def is_constant(self) -> bool:
        return not self.x and not self.y


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.n_x = 0
        self.n_y = 0

    def term(self, expr) -> _Linear:
        if isinstance(expr, str):
            m = _VAR.match(expr)
            if m:
                idx = int(m.group(2))
                limit = self.n_x if m.group(1) == "X" else self.n_y
                if idx >= limit:
                    raise VNNLibError(f"{self.source}: {expr} used but only {limit} {m.group(1)} variables declared")
                return _Linear({idx: 1.0}) if m.group(1) == "X" else _Linear(y={idx: 1.0})
            try:
                return _Linear(const=float(expr))
            except ValueError:
                raise VNNLibError(f"{self.source}: unknown symbol {expr!r} (expected X_i, Y_j or a number)") from None
        if not expr:
            raise VNNLibError(f"{self.source}: empty expression ()")
        op, args = expr[0], [self.term(a) for a in expr[1:]]
        if op == "+":
            out = _Linear()
            for a in args:
                out = out.plus(a)
            return out
        if op == "-":
            if len(args) == 1:
                return args[0].scaled(-1.0)
            out = args[0]
            for a in args[1:]:
                out = out.plus(a.scaled(-1.0))
            return out
        if op == "*":
            consts = [a for a in args if a.is_constant]
            others = [a for a in args if not a.is_constant]
            if len(others) > 1:
                raise VNNLibError(f"{self.source}: non-linear product {expr}")
            s = float(np.prod([c.const for c in consts])) if consts else 1.0
            return others[0].scaled(s) if others else _Linear(const=s)
        raise VNNLibError(f"{self.source}: unsupported operator {op!r} in a term; supported: + - *")

    def formula(self, expr) -> list[list[_Linear]]:
        """A formula in disjunctive normal form: a list of conjunctions of ``term >= 0``."""
        if not isinstance(expr, list) or not expr:
            raise VNNLibError(f"{self.source}: expected a formula, got {expr!r}")
        op = expr[0]
        if op in ("<=", ">=", "<", ">"):
            if len(expr) != 3:
                raise VNNLibError(f"{self.source}: comparison {op} needs two operands, got {len(expr) - 1}")
            a, b = self.term(expr[1]), self.term(expr[2])
            diff = a.plus(b.scaled(-1.0)) if op in (">=", ">") else b.plus(a.scaled(-1.0))
            return [[diff]]
        if op == "and":
            parts = [self.formula(e) for e in expr[1:]]
            return [sum(combo, []) for combo in product(*parts)]
        if op == "or":
            return [conj for e in expr[1:] for conj in self.formula(e)]
        raise VNNLibError(f"{self.source}: unsupported operator {op!r}; supported: and, or, <=, >=, <, >")


def parse_vnnlib(text: str, n_inputs: int | None = None, n_outputs: int | None = None, name: str = "<string>") -> VNNLibProperty:
    """Parse VNN-LIB ``text``; ``n_inputs``/``n_outputs`` are checked against the declarations."""
    parser = _Parser(name)
    commands = _parse_sexprs(_tokenize(text), name)
    asserts = []
    for cmd in commands:
        if not isinstance(cmd, list) or not cmd:
            raise VNNLibError(f"{name}: expected a command in parentheses, got {cmd!r}")
        if cmd[0] == "declare-const":
            if len(cmd) != 3 or not isinstance(cmd[1], str):
                raise VNNLibError(f"{name}: malformed declare-const {cmd}")
            m = _VAR.match(cmd[1])
            if not m:
                raise VNNLibError(f"{name}: declared name {cmd[1]!r} is not X_i or Y_j")
            if m.group(1) == "X":
                parser.n_x = max(parser.n_x, int(m.group(2)) + 1)
            else:
                parser.n_y = max(parser.n_y, int(m.group(2)) + 1)
        elif cmd[0] == "assert":
            if len(cmd) != 2:
                raise VNNLibError(f"{name}: assert takes one formula, got {len(cmd) - 1}")
            asserts.append(cmd[1])
        else:
            raise VNNLibError(f"{name}: unsupported command {cmd[0]!r}; supported: declare-const, assert")
    if parser.n_x == 0 or parser.n_y == 0:
        raise VNNLibError(f"{name}: no X_i or no Y_j declared")
    for label, found, expected in (("inputs", parser.n_x, n_inputs), ("outputs", parser.n_y, n_outputs)):
        if expected is not None and found != expected:
            raise VNNLibError(f"{name}: property declares {found} {label}, the network has {expected}")

    # The conjunction of all asserts, in DNF.
    dnf: list[list[_Linear]] = [[]]
    for a in asserts:
        dnf = [left + right for left in dnf for right in parser.formula(a)]
    boxes: dict[bytes, tuple[np.ndarray, np.ndarray, list[Conjunction]]] = {}
    for conj in dnf:
        lower = np.full(parser.n_x, -np.inf)
        upper = np.full(parser.n_x, np.inf)
        rows = []
        for term in conj:
            if term.x and term.y:
                raise VNNLibError(f"{name}: constraint mixes inputs and outputs; only input boxes are supported")
            if term.x:
                if len(term.x) != 1:
                    raise VNNLibError(f"{name}: linear constraint over several inputs; only input bounds (a box) are supported")
                (i, coef), = term.x.items()
                bound = -term.const / coef
                if coef > 0:
                    lower[i] = max(lower[i], bound)
                else:
                    upper[i] = min(upper[i], bound)
            elif term.y:
                row = np.zeros(parser.n_y)
                for j, v in term.y.items():
                    row[j] = v
                rows.append((row, term.const))
            elif term.const < 0:
                rows = None  # a false constant comparison: this conjunction is empty
                break
        if rows is None:
            continue
        if not np.all(np.isfinite(lower)) or not np.all(np.isfinite(upper)):
            missing = int(np.sum(~np.isfinite(lower) | ~np.isfinite(upper)))
            raise VNNLibError(f"{name}: {missing} inputs have no lower or upper bound; every X_i needs both")
        if np.any(lower > upper):
            continue  # empty box
        C = np.array([r for r, _ in rows]).reshape(len(rows), parser.n_y)
        d = np.array([c for _, c in rows])
        key = lower.tobytes() + upper.tobytes()
        boxes.setdefault(key, (lower, upper, []))[2].append(Conjunction(C, d))
    cases = [VNNLibCase(lo, hi, tuple(conjs)) for lo, hi, conjs in boxes.values()]
    if not cases:
        raise VNNLibError(f"{name}: the property's input region is empty")
    return VNNLibProperty(parser.n_x, parser.n_y, tuple(cases), name)


def read_vnnlib(path: str | os.PathLike, n_inputs: int | None = None, n_outputs: int | None = None) -> VNNLibProperty:
    """Read a ``.vnnlib`` file (see :func:`parse_vnnlib`)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"VNN-LIB file {str(path)!r} does not exist")
    return parse_vnnlib(path.read_text(), n_inputs, n_outputs, name=path.name)
