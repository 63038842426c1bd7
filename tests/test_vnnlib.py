"""The VNN-LIB reader: linear-time parsing, the expansion cap, positions in errors, strictness, bad numbers."""

from __future__ import annotations

import re

import numpy as np
import pytest

from optprune.errors import VNNLibError
from optprune.verification.vnnlib import MAX_CONJUNCTIONS, Conjunction, VNNLibCase, parse_vnnlib, read_vnnlib

HEAD = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
BOX = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"


def test_deep_nesting_parses_without_recursion() -> None:
    depth = 20_000  # far past Python's recursion limit
    formula = "(and " * depth + "(>= Y_0 Y_1)" + ")" * depth
    term = "(- " * depth + "Y_0" + ")" * depth  # an even number of negations: Y_0
    prop = parse_vnnlib(HEAD + BOX + f"(assert {formula})\n(assert (>= {term} 0.5))")
    (case,) = prop.cases
    (conj,) = case.disjuncts
    assert np.array_equal(conj.C, [[1, -1], [1, 0]]) and np.array_equal(conj.d, [0, -0.5])


def test_many_asserts_parse_into_one_box() -> None:
    n = 20_000  # the old reader copied the growing conjunction per assert: quadratic
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(n)) + "(declare-const Y_0 Real)\n"
    body = "".join(f"(assert (>= X_{i} {i}))\n(assert (<= X_{i} {i + 0.5}))\n" for i in range(n))
    prop = parse_vnnlib(head + body + "(assert (>= Y_0 0))")
    (case,) = prop.cases
    assert np.array_equal(case.lower, np.arange(n)) and np.array_equal(case.upper, np.arange(n) + 0.5)


def test_a_conjunction_of_ors_over_the_cap_is_a_named_error() -> None:
    ors = "".join(f"(assert (or (>= Y_0 {k}) (<= Y_1 {k})))\n" for k in range(18))
    with pytest.raises(VNNLibError, match=rf"asks for {2**18} conjunctions.*max_conjunctions={MAX_CONJUNCTIONS}"):
        parse_vnnlib(HEAD + BOX + ors)
    small = "".join(f"(assert (or (>= Y_0 {k}) (<= Y_1 {k})))\n" for k in range(4))
    with pytest.raises(VNNLibError, match=r"asks for 16 conjunctions.*max_conjunctions=10\b"):
        parse_vnnlib(HEAD + BOX + small, max_conjunctions=10)
    assert len(parse_vnnlib(HEAD + BOX + small).cases[0].disjuncts) == 16


def test_input_and_output_disjunctions_stay_factored() -> None:
    """1000 boxes x 1000 output conjunctions: 10^6 in DNF, but only 2000 are built and shared."""
    boxes = " ".join(f"(and (>= X_0 {i}) (<= X_0 {i + 0.5}) (>= X_1 0) (<= X_1 1))" for i in range(1000))
    outs = " ".join(f"(>= Y_0 {k})" for k in range(1000))
    prop = parse_vnnlib(HEAD + f"(assert (or {boxes}))\n(assert (or {outs}))")
    assert len(prop.cases) == 1000
    first, last = prop.cases[0], prop.cases[-1]
    assert len(first.disjuncts) == 1000 and first.disjuncts[7] is last.disjuncts[7]
    assert last.lower[0] == 999 and np.array_equal(last.disjuncts[7].d, [-7.0])


def test_mixed_disjunction_of_boxes_with_their_own_outputs() -> None:
    text = HEAD + (
        "(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (>= Y_0 Y_1))\n"
        "            (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (<= Y_0 1))))\n"
        "(assert (or (>= Y_1 5) (>= Y_1 6)))\n"
    )
    first, second = parse_vnnlib(text).cases
    assert first.lower[0] == 0 and second.lower[0] == 2
    assert [c.C.tolist() for c in first.disjuncts] == [[[1, -1], [0, 1]], [[1, -1], [0, 1]]]
    assert [c.d.tolist() for c in second.disjuncts] == [[1, -5], [1, -6]]


@pytest.mark.parametrize(
    "text, message",
    [
        (HEAD + BOX + "(assert (>= Y_0 0)))\n", r"line 9, column 20: unbalanced '\)'"),
        (HEAD + BOX + "(assert (>= Y_0 0)\n", r"line 9, column 1: 1 unclosed '\('"),
        (HEAD + BOX + "(assert (>= Y_0 foo))\n", r"line 9, column 17: unknown symbol 'foo'"),
        (HEAD + BOX + "(assert (>= Y_0 1_000))\n", r"line 9, column 17: unknown symbol '1_000'"),
        (HEAD + BOX + "(assert\n  (exp Y_0))\n", r"line 10, column 4: unsupported operator 'exp'"),
        ("(declare-const X_0 Real)\n(declare-const Y_0)\n", r"line 2, column 1: malformed declare-const"),
        (HEAD + BOX + "(assert (>= Y_7 0))\n", r"line 9, column 13: Y_7 used but only 2 Y variables declared"),
        (HEAD + BOX + "(assert (>= (+ X_0 X_1) 0))\n(assert (>= Y_0 0))",
         r"line 9, column 10: linear constraint over 2 inputs"),
        (HEAD + BOX + "(assert (>= X_0 Y_0))\n", r"line 9, column 10: constraint mixes inputs and outputs"),
        (HEAD + BOX + "(assert (>= (+ (and (>= Y_0 0)) 1) 0))\n", r"line 9, column 16: expected a linear term"),
    ],
)
def test_errors_name_line_and_column(text: str, message: str) -> None:
    with pytest.raises(VNNLibError, match=message):
        parse_vnnlib(text, name="p.vnnlib")


@pytest.mark.parametrize("number", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
def test_nan_and_infinite_numbers_are_refused(number: str) -> None:
    text = HEAD + "(assert (>= X_0 0))\n(assert (<= X_0 " + number + "))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
    with pytest.raises(VNNLibError, match=r"line 6, column 17: .*(not a finite number|overflows)"):
        parse_vnnlib(text + "(assert (>= Y_0 0))")


def test_a_non_utf8_byte_names_its_offset(tmp_path) -> None:
    raw = (HEAD + BOX).encode() + b"; caf\xe9\n(assert (>= Y_0 0))\n"
    path = tmp_path / "latin1.vnnlib"
    path.write_bytes(raw)
    offset = raw.index(b"\xe9")
    with pytest.raises(VNNLibError, match=rf"byte {offset} \(line 9\) is b'\\xe9', not valid UTF-8"):
        read_vnnlib(path)


def test_the_empty_disjunction_is_false_not_an_empty_region() -> None:
    with pytest.raises(VNNLibError, match=r"line 9, column 9: \(or\) .*empty disjunction.*asserts false"):
        parse_vnnlib(HEAD + BOX + "(assert (or))\n(assert (>= Y_0 0))")


def test_a_property_without_output_constraint_is_refused() -> None:
    with pytest.raises(VNNLibError, match="no output constraint"):
        parse_vnnlib(HEAD + BOX)
    with pytest.raises(VNNLibError, match="constrains no output"):
        parse_vnnlib(HEAD + "(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1))"
                            " (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (>= Y_0 0))))")


def test_strict_output_rows_hold_only_with_a_margin() -> None:
    prop = parse_vnnlib(HEAD + BOX + "(assert (and (< Y_0 Y_1) (>= Y_0 -1)))")
    (conj,) = prop.cases[0].disjuncts
    assert conj.strict.tolist() == [True, False]
    assert not conj.holds(np.array([1.0, 1.0]), tol=1e-3)  # Y_1 - Y_0 = 0: not > 0, whatever the tolerance
    assert conj.holds(np.array([1.0, 1.0 + 1e-9]))
    assert conj.holds(np.array([-1.0 - 1e-4, 0.0]), tol=1e-3)  # the non-strict row keeps its tolerance
    assert conj.slack(np.array([1.0, 1.0])) == 0.0


def test_strict_input_bounds_keep_a_closed_box_and_are_enforced() -> None:
    text = HEAD + "(assert (> X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (< X_1 1))\n(assert (>= Y_0 0))"
    (case,) = parse_vnnlib(text).cases
    assert case.lower.tolist() == [0, 0] and case.upper.tolist() == [1, 1]
    assert case.strict_lower.tolist() == [True, False] and case.strict_upper.tolist() == [False, True]
    y = np.array([1.0, 0.0])
    assert not case.violated_by(np.array([0.0, 0.5]), y, tol=1e-6)
    assert case.violated_by(np.array([1e-9, 0.5]), y)
    assert not case.violated_by(np.array([0.5, 1.0]), y, tol=1e-6)
    assert not parse_vnnlib(text.replace("(> X_0 0)", "(>= X_0 0)")).cases[0].strict_lower.any()


def test_default_constructors_stay_non_strict() -> None:
    conj = Conjunction(np.array([[1.0, -1.0]]), np.zeros(1))
    assert conj.strict.tolist() == [False] and conj.holds(np.array([1.0, 1.0 + 1e-7]), tol=1e-6)
    case = VNNLibCase(np.zeros(2), np.ones(2), (conj,))
    assert case.violated_by(np.array([-1e-9, 1.0]), np.array([1.0, 1.0]), tol=1e-6)


def test_false_constant_comparisons_drop_their_conjunction() -> None:
    prop = parse_vnnlib(HEAD + BOX + "(assert (or (and (>= Y_0 0) (< 1 1)) (>= Y_1 2)))")
    (conj,) = prop.cases[0].disjuncts
    assert np.array_equal(conj.C, [[0, 1]]) and np.array_equal(conj.d, [-2])
    with pytest.raises(VNNLibError, match="asserts false"):
        parse_vnnlib(HEAD + BOX + "(assert (and (>= Y_0 0) (<= 2 1)))")


# ----------------------------------------------------------------------------- the shared mnistfc properties


# The ``mnistfc`` fixture (the shared folder, or a skip saying why) lives in conftest.py.


_BOUND = re.compile(r"\(assert \((<=|>=) X_(\d+) ([^\s()]+)\)\)")
_OUT = re.compile(r"\(and \(>= Y_(\d+) Y_(\d+)\)\)")


def test_shared_properties_parse_as_a_plain_reading_says(mnistfc) -> None:
    """Each of the 30 files: one box (read here with a regex), 9 one-row conjunctions ``Y_j - Y_label >= 0``."""
    files = sorted(mnistfc.glob("prop_*.vnnlib"))
    assert len(files) == 30
    for path in files:
        text = path.read_text()
        lower, upper = np.full(784, np.nan), np.full(784, np.nan)
        for op, i, value in _BOUND.findall(text):
            (lower if op == ">=" else upper)[int(i)] = float(value)
        pairs = [(int(a), int(b)) for a, b in _OUT.findall(text)]
        (case,) = read_vnnlib(path, 784, 10).cases
        assert np.array_equal(case.lower, lower) and np.array_equal(case.upper, upper), path.name
        assert not case.strict_lower.any() and not case.strict_upper.any()
        assert len(case.disjuncts) == 9 == len(pairs)
        for conj, (j, label) in zip(case.disjuncts, pairs, strict=True):
            expected = np.zeros((1, 10))
            expected[0, j], expected[0, label] = 1.0, -1.0
            assert np.array_equal(conj.C, expected) and np.array_equal(conj.d, [0.0]) and not conj.strict.any()
