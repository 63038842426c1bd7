"""VNN-LIB property reader.

A VNN-LIB file (the format of the VNN-COMP competitions) declares inputs
``X_i`` and outputs ``Y_j`` and asserts the *unsafe* region: an input box and
an output condition. The property is violated (verdict ``sat``) iff some input
in the box produces an output satisfying the condition.

Supported: ``declare-const``; ``assert`` of ``<=``/``>=``/``<``/``>`` between
linear terms (numbers, variables, ``+``, ``-``, ``*`` by a constant); ``and``;
``or``. Input constraints must be bounds of single inputs (a box), possibly as
an ``or`` of boxes; output conditions become a disjunction of conjunctions,
each conjunction stored as ``C y + d >= 0`` (``> 0`` on the rows marked
``strict``: ``<`` and ``>`` stay strict, as in VNN-COMP).

How the reader guards against hostile files:

* Tokenising and parsing are one linear pass with an explicit stack (no
  recursion, so any nesting depth parses; nothing is copied per assert).
* Nested ``and``/``or`` of the same kind are merged, one-child ones dropped.
* The asserts are kept factored where the data model allows it: the
  conjunction of all asserts is split into input-only factors (the input
  boxes), output-only factors (the output disjunction, shared by every box)
  and mixed factors (``(or (and box_1 out_1) (and box_2 out_2))``). The size
  of every disjunctive normal form is computed *before* anything is expanded
  (``or`` adds, ``and`` multiplies; Python integers, so never overflowing);
  if the expansion would build more than ``max_conjunctions`` input regions
  plus output conjunctions (default :data:`MAX_CONJUNCTIONS`), or more than
  ``max_literals`` comparisons in them (default :data:`MAX_LITERALS`),
  :class:`~optprune.errors.VNNLibError` says how many the file asks for.
* Every error names the line and column of the offending token; NaN and
  infinite numbers are refused (they are not "no bound"); ``(or)`` is the
  formula ``false`` and is refused rather than read as an empty property.
"""

from __future__ import annotations

import math
import os
import re
from collections import deque
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import numpy as np

from optprune.errors import DataNotFoundError, VNNLibError

__all__ = [
    "Conjunction",
    "VNNLibCase",
    "VNNLibProperty",
    "read_vnnlib",
    "parse_vnnlib",
    "MAX_CONJUNCTIONS",
    "MAX_LITERALS",
]

MAX_CONJUNCTIONS = 100_000
"""Default cap on the input regions plus output conjunctions one file may expand into."""

MAX_LITERALS = 20_000_000
"""Default cap on the comparisons (over all expanded conjunctions) one file may expand into."""

_TOKEN = re.compile(r";[^\n]*|\(|\)|[^\s();]+")
_VAR = re.compile(r"^([XY])_(\d+)$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_COMPARISONS = ("<=", ">=", "<", ">")


def _bool_vector(values, n: int) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=bool)
    arr = np.asarray(values, dtype=bool).reshape(-1)
    if arr.shape[0] != n:
        raise VNNLibError(f"a strictness mask has {arr.shape[0]} entries, expected {n}")
    return arr


@dataclass(frozen=True)
class Conjunction:
    """Rows ``C y + d >= 0`` that must hold together; ``> 0`` where ``strict``.

    ``strict`` (one flag per row, default all False) records a VNN-LIB ``<``
    or ``>``: such a row holds only with a positive margin, never within a
    tolerance.
    """

    C: np.ndarray
    d: np.ndarray
    strict: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "strict", _bool_vector(self.strict, int(np.asarray(self.d).shape[0])))

    def holds(self, y: np.ndarray, tol: float = 0.0) -> bool:
        """True iff every row holds: ``C_i y + d_i > 0`` (strict rows) or ``>= -tol`` (the others)."""
        values = self.C @ y + self.d
        return bool(np.all(np.where(self.strict, values > 0, values >= -tol)))

    def slack(self, y: np.ndarray) -> float:
        """``min_i (C_i y + d_i)``: >= 0 iff the conjunction holds (> 0 needed on strict rows)."""
        return float(np.min(self.C @ y + self.d))


@dataclass(frozen=True)
class VNNLibCase:
    """One input box with the output disjunction that would violate the property.

    The box ``[lower, upper]`` is closed; ``strict_lower`` / ``strict_upper``
    (default all False) record bounds written with ``<`` or ``>``, which
    :meth:`violated_by` enforces strictly.
    """

    lower: np.ndarray
    upper: np.ndarray
    disjuncts: tuple[Conjunction, ...]
    strict_lower: np.ndarray | None = field(default=None)
    strict_upper: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        n = int(np.asarray(self.lower).shape[0])
        object.__setattr__(self, "strict_lower", _bool_vector(self.strict_lower, n))
        object.__setattr__(self, "strict_upper", _bool_vector(self.strict_upper, n))

    def violated_by(self, x: np.ndarray, y: np.ndarray, tol: float = 0.0) -> bool:
        """``x`` in the box (within ``tol``; strictly inside on strict bounds) and ``y`` meets a disjunct."""
        x = np.asarray(x, dtype=np.float64)
        inside = bool(np.all(x >= self.lower - tol) and np.all(x <= self.upper + tol))
        inside = inside and bool(np.all(x[self.strict_lower] > self.lower[self.strict_lower]))
        inside = inside and bool(np.all(x[self.strict_upper] < self.upper[self.strict_upper]))
        return inside and any(conj.holds(y) for conj in self.disjuncts)


@dataclass(frozen=True)
class VNNLibProperty:
    n_inputs: int
    n_outputs: int
    cases: tuple[VNNLibCase, ...]
    name: str = ""


# ----------------------------------------------------------------------------- terms


class _Term:
    """A linear term ``scale * (sum x_i a_i + sum y_j b_j) + const``, owned by one parent.

    The scale is lazy so that ``(- (- (- t)))`` costs O(1) per level; sums
    merge the smaller term into the larger, so any nesting costs O(n log n).
    """

    __slots__ = ("x", "y", "scale", "const")

    def __init__(self, x: dict | None = None, y: dict | None = None, const: float = 0.0) -> None:
        self.x: dict[int, float] = x if x is not None else {}
        self.y: dict[int, float] = y if y is not None else {}
        self.scale = 1.0
        self.const = float(const)

    def size(self) -> int:
        return len(self.x) + len(self.y)

    def scale_by(self, s: float) -> _Term:
        if s == 0.0:
            self.x, self.y, self.scale = {}, {}, 1.0
        else:
            self.scale *= s
        self.const *= s
        return self

    def add(self, other: _Term) -> _Term:
        """``self + other``, reusing the larger of the two."""
        big, small = (self, other) if self.size() >= other.size() else (other, self)
        ratio = small.scale / big.scale
        for mine, theirs in ((big.x, small.x), (big.y, small.y)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0.0) + v * ratio
        big.const += small.const
        return big

    def coefficients(self, which: str) -> dict[int, float]:
        coefs = self.x if which == "x" else self.y
        return {k: v * self.scale for k, v in coefs.items() if v != 0.0}

    @property
    def is_constant(self) -> bool:
        return not any(self.x.values()) and not any(self.y.values())


# ----------------------------------------------------------------------------- formulas


class _Leaf:
    """One comparison ``term >= 0`` (``> 0`` when strict) over inputs only, outputs only, or constants.

    Input leaves are stored as a bound ``x_index >= bound`` (``is_lower``) or
    ``x_index <= bound``; output leaves as a sparse row ``cols, vals`` and
    constant ``const``.
    """

    __slots__ = ("kind", "strict", "index", "bound", "is_lower", "cols", "vals", "const", "token")

    count = 1
    literals = 1
    op = "leaf"

    def __init__(self, kind: str, strict: bool, token: int) -> None:
        self.kind, self.strict, self.token = kind, strict, token


class _Node:
    """``and`` / ``or`` of formulas, with the size of its disjunctive normal form.

    ``count``: conjunctions in the DNF; ``literals``: comparisons over all of
    them. ``or`` adds both; ``and`` multiplies the counts and, for literals,
    ``sum_i literals_i * prod_{j != i} count_j``.
    """

    __slots__ = ("op", "children", "count", "literals", "kinds", "token")

    def __init__(self, op: str, children: deque, token: int) -> None:
        self.op, self.children, self.token = op, children, token
        self.kinds: set[str] = set()
        if op == "or":
            self.count = sum(c.count for c in children)
            self.literals = sum(c.literals for c in children)
        else:
            count, literals = 1, 0
            for c in children:
                literals = literals * c.count + c.literals * count
                count *= c.count
            self.count, self.literals = count, literals
        for c in children:
            self.kinds |= c.kinds if isinstance(c, _Node) else {c.kind}


def _combine(op: str, children: list, token: int):
    """``op`` of ``children``, merging nested nodes of the same ``op`` (largest first, order kept)."""
    same = [i for i, c in enumerate(children) if isinstance(c, _Node) and c.op == op]
    if same:
        pivot = max(same, key=lambda i: len(children[i].children))
        items = children[pivot].children  # stolen: each child value has exactly one parent
        for c in reversed(children[:pivot]):
            if isinstance(c, _Node) and c.op == op:
                items.extendleft(reversed(c.children))
            else:
                items.appendleft(c)
        for c in children[pivot + 1:]:
            if isinstance(c, _Node) and c.op == op:
                items.extend(c.children)
            else:
                items.append(c)
    else:
        items = deque(children)
    if len(items) == 1:
        return items[0]
    return _Node(op, items, token)


def _expand(root) -> list[list[_Leaf]]:
    """The disjunctive normal form of ``root``: a list of conjunctions, each a list of leaves.

    Iterative post-order; an ``and`` builds tuples referring to its
    children's conjunctions (no copying), flattened once at the end. The
    caller has checked ``root.count`` and ``root.literals`` against the caps.
    """
    done: dict[int, list] = {}
    stack = [(root, False)]
    while stack:
        node, visited = stack.pop()
        if isinstance(node, _Leaf):
            done[id(node)] = [node]
        elif not visited:
            stack.append((node, True))
            stack.extend((c, False) for c in node.children)
        elif node.op == "or":
            out: list = []
            for c in node.children:
                out.extend(done.pop(id(c)))
            done[id(node)] = out
        else:
            parts = [done.pop(id(c)) for c in node.children]
            done[id(node)] = list(product(*parts))
    flat = []
    for rope in done[id(root)]:
        leaves: list[_Leaf] = []
        todo = [rope]
        while todo:
            item = todo.pop()
            if isinstance(item, tuple):
                todo.extend(reversed(item))
            else:
                leaves.append(item)
        flat.append(leaves)
    return flat


# ----------------------------------------------------------------------------- parser


class _Parser:
    """One pass over the tokens with an explicit stack; builds terms and formulas bottom-up."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.tokens: list[str] = _TOKEN.findall(text)
        self.n_x = 0
        self.n_y = 0
        self.max_used = {"X": (-1, 0), "Y": (-1, 0)}  # (largest index used, its token)
        self.asserts: list = []

    # -- error positions: token index -> line and column, computed only when raising
    def where(self, token: int) -> str:
        if token < 0:
            return "end of file"
        for k, match in enumerate(_TOKEN.finditer(self.text)):
            if k == token:
                pos = match.start()
                line = self.text.count("\n", 0, pos) + 1
                return f"line {line}, column {pos - self.text.rfind(chr(10), 0, pos)}"
        return "end of file"

    def error(self, token: int, message: str) -> VNNLibError:
        return VNNLibError(f"{self.source}, {self.where(token)}: {message}")

    def parse(self) -> None:
        frames: list[tuple[int, list, list]] = []  # (token of '(', values, their tokens)
        for k, tok in enumerate(self.tokens):
            if tok == "(":
                frames.append((k, [], []))
            elif tok == ")":
                if not frames:
                    raise self.error(k, "unbalanced ')' (no '(' is open)")
                start, items, where = frames.pop()
                if frames:
                    frames[-1][1].append(self.reduce(start, items, where))
                    frames[-1][2].append(start)
                else:
                    self.command(start, items, where)
            elif tok[0] == ";":
                continue
            elif frames:
                if len(frames) == 1 and not frames[0][1] and tok not in ("declare-const", "assert"):
                    raise self.error(k, f"unsupported command {tok!r}; supported: declare-const, assert")
                frames[-1][1].append(tok)
                frames[-1][2].append(k)
            else:
                raise self.error(k, f"expected a command in parentheses, got {tok!r}")
        if frames:
            raise self.error(frames[-1][0], f"{len(frames)} unclosed '(' (the innermost opens here)")

    # -- atoms
    def atom_term(self, tok: str, k: int) -> _Term:
        m = _VAR.match(tok)
        if m:
            letter, idx = m.group(1), int(m.group(2))
            if idx > self.max_used[letter][0]:
                self.max_used[letter] = (idx, k)
            return _Term({idx: 1.0}) if letter == "X" else _Term(y={idx: 1.0})
        if _NUMBER.match(tok):
            value = float(tok)
            if not math.isfinite(value):
                raise self.error(k, f"number {tok} overflows to {value}; VNN-LIB numbers must be finite")
            return _Term(const=value)
        try:
            value = float(tok)
        except ValueError:
            value = None
        if value is not None and not math.isfinite(value):
            raise self.error(k, f"{tok!r} is not a finite number; NaN and infinity are not allowed as bounds or coefficients")
        raise self.error(k, f"unknown symbol {tok!r} (expected X_i, Y_j or a decimal number)")

    def term(self, value, k: int) -> _Term:
        if isinstance(value, str):
            return self.atom_term(value, k)
        if isinstance(value, _Term):
            return value
        raise self.error(k, "expected a linear term (number, X_i, Y_j, +, -, *), got a formula (and/or/comparison)")

    def formula(self, value, k: int):
        if isinstance(value, (_Leaf, _Node)):
            return value
        got = repr(value) if isinstance(value, str) else "a linear term"
        raise self.error(k, f"expected a formula (and, or, <=, >=, <, >), got {got}")

    # -- lists
    def reduce(self, start: int, items: list, where: list):
        if not items:
            raise self.error(start, "empty expression ()")
        op = items[0]
        if not isinstance(op, str):
            raise self.error(where[0], "an expression must start with an operator, got a nested expression")
        args, spots = items[1:], where[1:]
        if op in ("+", "-", "*"):
            terms = [self.term(a, s) for a, s in zip(args, spots, strict=True)]
            if not terms:
                raise self.error(where[0], f"operator {op!r} needs at least one operand")
            return self.arithmetic(op, terms, where[0])
        if op in _COMPARISONS:
            if len(args) != 2:
                raise self.error(where[0], f"comparison {op} needs two operands, got {len(args)}")
            a, b = self.term(args[0], spots[0]), self.term(args[1], spots[1])
            diff = a.add(b.scale_by(-1.0)) if op in (">=", ">") else b.add(a.scale_by(-1.0))
            return self.leaf(diff, op in ("<", ">"), where[0])
        if op in ("and", "or"):
            parts = [self.formula(a, s) for a, s in zip(args, spots, strict=True)]
            if op == "or" and not parts:
                raise self.error(
                    start, "(or) with no operands is the empty disjunction, i.e. the formula false; "
                    "the file asserts false, so there is no property to verify"
                )
            if not parts:
                return _Node("and", deque(), start)  # (and) is true: one empty conjunction
            return _combine(op, parts, start)
        raise self.error(
            where[0], f"unsupported operator {op!r}; supported: and, or, <=, >=, <, > and in terms +, -, *"
        )

    def arithmetic(self, op: str, terms: list[_Term], k: int) -> _Term:
        if op == "+":
            out = terms[0]
            for t in terms[1:]:
                out = out.add(t)
            return out
        if op == "-":
            if len(terms) == 1:
                return terms[0].scale_by(-1.0)
            out = terms[0]
            for t in terms[1:]:
                out = out.add(t.scale_by(-1.0))
            return out
        others = [t for t in terms if not t.is_constant]
        if len(others) > 1:
            raise self.error(k, "non-linear product: '*' may multiply at most one non-constant term")
        s = 1.0
        for t in terms:
            if t.is_constant:
                s *= t.const
        if not math.isfinite(s):
            raise self.error(k, f"the product of the constants overflows to {s}")
        return others[0].scale_by(s) if others else _Term(const=s)

    def leaf(self, term: _Term, strict: bool, k: int) -> _Leaf:
        """``term >= 0`` (``> 0`` if strict) as a leaf; an input leaf must bound a single input."""
        x, y = term.coefficients("x"), term.coefficients("y")
        numbers = [term.const, *x.values(), *y.values()]
        if not all(math.isfinite(v) for v in numbers):
            raise self.error(k, "a coefficient or constant of this comparison is not finite (overflow)")
        if x and y:
            raise self.error(k, "constraint mixes inputs and outputs; only input boxes and output conditions are supported")
        if x:
            if len(x) != 1:
                raise self.error(
                    k, f"linear constraint over {len(x)} inputs; only bounds of single inputs (a box) are supported"
                )
            leaf = _Leaf("x", strict, k)
            ((i, coef),) = x.items()
            bound = -term.const / coef
            if not math.isfinite(bound):
                raise self.error(k, f"the bound on X_{i} overflows to {bound}")
            leaf.index, leaf.bound, leaf.is_lower = i, bound, coef > 0
            return leaf
        if y:
            leaf = _Leaf("y", strict, k)
            leaf.cols = np.fromiter(y.keys(), dtype=np.int64, count=len(y))
            leaf.vals = np.fromiter(y.values(), dtype=np.float64, count=len(y))
            leaf.const = term.const
            return leaf
        leaf = _Leaf("const", strict, k)
        leaf.const = term.const
        return leaf

    # -- top level
    def command(self, start: int, items: list, where: list) -> None:
        if not items or not isinstance(items[0], str):
            raise self.error(start, "expected a command (declare-const or assert)")
        cmd = items[0]
        if cmd == "declare-const":
            if len(items) != 3 or not isinstance(items[1], str) or not isinstance(items[2], str):
                raise self.error(start, "malformed declare-const; expected (declare-const X_i Real)")
            m = _VAR.match(items[1])
            if not m:
                raise self.error(where[1], f"declared name {items[1]!r} is not X_i or Y_j")
            if m.group(1) == "X":
                self.n_x = max(self.n_x, int(m.group(2)) + 1)
            else:
                self.n_y = max(self.n_y, int(m.group(2)) + 1)
        elif cmd == "assert":
            if len(items) != 2:
                raise self.error(start, f"assert takes one formula, got {len(items) - 1}")
            self.asserts.append(self.formula(items[1], where[1]))
        else:
            raise self.error(where[0], f"unsupported command {cmd!r}; supported: declare-const, assert")


def _boxes(conjs: list[list[_Leaf]], n_x: int):
    """Yield ``(lower, upper, strict_lower, strict_upper, y_leaves)`` per conjunction; None if one is false."""
    for leaves in conjs:
        xs = [leaf for leaf in leaves if leaf.kind == "x"]
        ys = [leaf for leaf in leaves if leaf.kind == "y"]
        consts = [leaf for leaf in leaves if leaf.kind == "const"]
        if any((leaf.const <= 0) if leaf.strict else (leaf.const < 0) for leaf in consts):
            yield None
            continue
        idx = np.fromiter((leaf.index for leaf in xs), dtype=np.int64, count=len(xs))
        bound = np.fromiter((leaf.bound for leaf in xs), dtype=np.float64, count=len(xs))
        is_lower = np.fromiter((leaf.is_lower for leaf in xs), dtype=bool, count=len(xs))
        strict = np.fromiter((leaf.strict for leaf in xs), dtype=bool, count=len(xs))
        lower = np.full(n_x, -np.inf)
        upper = np.full(n_x, np.inf)
        np.maximum.at(lower, idx[is_lower], bound[is_lower])
        np.minimum.at(upper, idx[~is_lower], bound[~is_lower])
        strict_lower = np.zeros(n_x, dtype=bool)
        strict_upper = np.zeros(n_x, dtype=bool)
        hit_lo = is_lower & strict & (bound == lower[idx])
        hit_hi = ~is_lower & strict & (bound == upper[idx])
        strict_lower[idx[hit_lo]] = True
        strict_upper[idx[hit_hi]] = True
        yield lower, upper, strict_lower, strict_upper, ys


def _conjunction(ys: list[_Leaf], n_y: int) -> Conjunction:
    """The output rows ``C y + d >= 0`` of the output leaves ``ys``."""
    C = np.zeros((len(ys), n_y))
    d = np.zeros(len(ys))
    strict = np.zeros(len(ys), dtype=bool)
    for r, leaf in enumerate(ys):
        C[r, leaf.cols] = leaf.vals
        d[r], strict[r] = leaf.const, leaf.strict
    return Conjunction(C, d, strict)


def parse_vnnlib(
    text: str,
    n_inputs: int | None = None,
    n_outputs: int | None = None,
    name: str = "<string>",
    *,
    max_conjunctions: int = MAX_CONJUNCTIONS,
    max_literals: int = MAX_LITERALS,
) -> VNNLibProperty:
    """Parse VNN-LIB ``text``; ``n_inputs``/``n_outputs`` are checked against the declarations.

    ``max_conjunctions`` caps the input regions plus output conjunctions the
    asserts expand into, ``max_literals`` the comparisons in them (see the
    module doc); a file asking for more raises :class:`VNNLibError` with the
    numbers.
    """
    parser = _Parser(text, name)
    parser.parse()
    if parser.n_x == 0 or parser.n_y == 0:
        raise VNNLibError(f"{name}: no X_i or no Y_j declared (found {parser.n_x} inputs, {parser.n_y} outputs)")
    for letter, declared in (("X", parser.n_x), ("Y", parser.n_y)):
        idx, k = parser.max_used[letter]
        if idx >= declared:
            raise parser.error(k, f"{letter}_{idx} used but only {declared} {letter} variables declared")
    for label, found, expected in (("inputs", parser.n_x, n_inputs), ("outputs", parser.n_y, n_outputs)):
        if expected is not None and found != expected:
            raise VNNLibError(f"{name}: property declares {found} {label}, the network has {expected}")
    if not parser.asserts:
        raise VNNLibError(f"{name}: no assert; a property needs input bounds and an output condition")

    # The conjunction of all asserts, factored by what each factor constrains.
    top = _combine("and", parser.asserts, -1)
    factors = list(top.children) if isinstance(top, _Node) and top.op == "and" else [top]
    groups: dict[str, list] = {"inputs": [], "outputs": [], "mixed": []}
    for f in factors:
        kinds = _kinds(f)
        groups["mixed" if "x" in kinds and "y" in kinds else "outputs" if "y" in kinds else "inputs"].append(f)
    nodes = {key: _combine("and", fs, -1) if fs else _Node("and", deque(), -1) for key, fs in groups.items()}
    c_in, c_out, c_mix = (nodes[k].count for k in ("inputs", "outputs", "mixed"))
    l_in, l_out, l_mix = (nodes[k].literals for k in ("inputs", "outputs", "mixed"))
    regions, outputs = c_mix * c_in, c_mix * c_out
    literals = l_mix * (c_in + c_out) + l_in * c_mix + l_out * c_mix
    if regions + outputs > max_conjunctions or literals > max_literals:
        raise VNNLibError(
            f"{name}: the property asks for {c_mix * c_in * c_out} conjunctions in disjunctive normal form "
            f"({regions} input regions x {c_out} output conjunctions each; a conjunction of or's multiplies "
            f"their sizes); expanding it needs {regions + outputs} conjunctions with {literals} comparisons, "
            f"more than the caps max_conjunctions={max_conjunctions}, max_literals={max_literals}"
        )

    out_conjs = [_conjunction_or_false(leaves, parser.n_y) for leaves in _expand(nodes["outputs"])]
    in_conjs = _expand(nodes["inputs"])
    mixed = _expand(nodes["mixed"])
    cases: dict[bytes, tuple] = {}
    for m_leaves in mixed:
        m_box = next(_boxes([m_leaves], parser.n_x))
        if m_box is None:
            continue
        own_rows = m_box[4]
        own = _conjunction_or_false(own_rows, parser.n_y) if own_rows else None
        if own_rows and own is None:
            continue
        disjuncts = [_join(own, c) for c in out_conjs if c is not None] if own_rows else [c for c in out_conjs if c is not None]
        if not disjuncts:
            continue
        for box in _boxes([leaves + m_leaves for leaves in in_conjs], parser.n_x):
            if box is None:
                continue
            lower, upper, strict_lower, strict_upper, _ = box
            if not np.all(np.isfinite(lower)) or not np.all(np.isfinite(upper)):
                missing = np.flatnonzero(~np.isfinite(lower) | ~np.isfinite(upper))
                raise VNNLibError(
                    f"{name}: {missing.size} inputs have no lower or upper bound (first: X_{int(missing[0])}); "
                    "every X_i needs both"
                )
            if np.any(lower > upper) or np.any((lower == upper) & (strict_lower | strict_upper)):
                continue  # empty box
            if any(c.d.shape[0] == 0 for c in disjuncts):
                raise _no_output_error(name, factors)
            key = lower.tobytes() + upper.tobytes() + strict_lower.tobytes() + strict_upper.tobytes()
            cases.setdefault(key, (lower, upper, strict_lower, strict_upper, []))[4].extend(disjuncts)
    if not cases:
        raise VNNLibError(
            f"{name}: the property's unsafe region is empty (every input box is empty or every output condition "
            "is a false constant comparison); the file asserts false"
        )
    result = tuple(VNNLibCase(lo, hi, tuple(conjs), slo, shi) for lo, hi, slo, shi, conjs in cases.values())
    return VNNLibProperty(parser.n_x, parser.n_y, result, name)


def _no_output_error(name: str, factors: list) -> VNNLibError:
    if not any("y" in _kinds(f) for f in factors):
        return VNNLibError(
            f"{name}: the property has no output constraint (no comparison involves a Y_j); "
            "VNN-LIB properties assert the unsafe output region, e.g. (assert (>= Y_0 Y_1))"
        )
    return VNNLibError(
        f"{name}: a disjunct of the property constrains no output (an input region with no output "
        "condition); every disjunct needs at least one comparison over Y_j"
    )


def _kinds(formula) -> set[str]:
    return formula.kinds if isinstance(formula, _Node) else {formula.kind}


def _conjunction_or_false(leaves: list[_Leaf], n_y: int) -> Conjunction | None:
    """The output conjunction of ``leaves`` (outputs and constants); None if a constant in it is false."""
    consts = [leaf for leaf in leaves if leaf.kind == "const"]
    if any((leaf.const <= 0) if leaf.strict else (leaf.const < 0) for leaf in consts):
        return None
    return _conjunction([leaf for leaf in leaves if leaf.kind == "y"], n_y)


def _join(first: Conjunction, second: Conjunction) -> Conjunction:
    return Conjunction(
        np.vstack([first.C, second.C]), np.concatenate([first.d, second.d]),
        np.concatenate([first.strict, second.strict]),
    )


def read_vnnlib(path: str | os.PathLike, n_inputs: int | None = None, n_outputs: int | None = None,
                **kwargs) -> VNNLibProperty:
    """Read a ``.vnnlib`` file (UTF-8; see :func:`parse_vnnlib` for the keyword arguments)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"VNN-LIB file {str(path)!r} does not exist or is not a file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise VNNLibError(
            f"{path.name}: byte {exc.start} (line {line}) is {raw[exc.start:exc.start + 1]!r}, not valid UTF-8; "
            "VNN-LIB files are UTF-8 text"
        ) from None
    return parse_vnnlib(text, n_inputs, n_outputs, name=path.name, **kwargs)
