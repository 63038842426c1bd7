"""Bad input to the Python API and to model files: a named optprune error naming the parameter, never a raw
traceback from NumPy, SciPy or HiGHS, and never a silently different model (issue 22, "Bad input")."""

from __future__ import annotations

import numpy as np
import pytest

from optprune.errors import FileFormatError, InvalidParameterError, OptpruneError, ShapeMismatchError
from optprune.formulations import ModelBuilder, embed_network
from optprune.network import AffineLayer, Network
from optprune.solvers import SolveOptions, Status, read_model, solve


def small_net(scale: float = 1.0) -> Network:
    rng = np.random.default_rng(0)
    return Network((
        AffineLayer(rng.normal(size=(4, 2)) * scale, rng.normal(size=4)),
        AffineLayer(rng.normal(size=(2, 4)), rng.normal(size=2), "identity"),
    ))


def small_model():
    b = ModelBuilder()
    x = b.add_vars(2, 0.0, 1.0)
    b.add_rows(np.ones((1, 2)), x, upper=1.5)
    b.set_objective([1.0, 2.0], x, sense="max")
    return b.build()


# ---------------------------------------------------------------- ModelBuilder


@pytest.mark.parametrize("param", ["lower", "upper"])
def test_add_vars_bounds_of_the_wrong_length(param):
    with pytest.raises(ShapeMismatchError, match=rf"add_vars: parameter '{param}' must be a scalar or a 1-D array "
                                                 r"of 3 numbers.*got an array of shape \(2,\)"):
        ModelBuilder().add_vars(3, **{param: np.zeros(2) if param == "lower" else np.ones(2)})


@pytest.mark.parametrize("shape", [(3, 1), (1, 3), (2, 3)])
def test_add_vars_two_dimensional_bounds(shape):
    with pytest.raises(ShapeMismatchError, match=rf"parameter 'lower' must be a scalar or a 1-D array.*"
                                                 rf"got an array of shape \({shape[0]}, {shape[1]}\)"):
        ModelBuilder().add_vars(3, lower=np.zeros(shape))


@pytest.mark.parametrize("value", ["a", "0", ["0", "1", "2"], None, True])
def test_add_vars_bounds_that_are_not_numbers(value):
    # "0" was read as 0.0 before; "a" raised NumPy's "could not convert string to float".
    with pytest.raises(InvalidParameterError, match=r"add_vars: parameter 'upper' must be a number or an array of "
                                                    r"numbers .*; got "):
        ModelBuilder().add_vars(3, upper=value)


def test_add_vars_count_must_be_a_non_negative_int():
    with pytest.raises(InvalidParameterError, match=r"add_vars: parameter 'n' must be an int in \[0, inf\]; got 2.0"):
        ModelBuilder().add_vars(2.0)


def test_add_vars_still_broadcasts_a_scalar_and_takes_a_full_array():
    b = ModelBuilder()
    x = b.add_vars(3, lower=-1, upper=np.array([1.0, 2.0, 3.0]))
    assert np.array_equal(b.column_bounds(x)[1], [1.0, 2.0, 3.0])
    assert np.array_equal(b.column_bounds(x)[0], [-1.0, -1.0, -1.0])


@pytest.mark.parametrize("param", ["lower", "upper"])
def test_add_rows_bounds_of_the_wrong_length(param):
    b = ModelBuilder()
    x = b.add_vars(3, 0.0, 1.0)
    with pytest.raises(ShapeMismatchError, match=rf"add_rows: parameter '{param}' must be a scalar or a 1-D array of "
                                                 r"2 numbers, one per row.*got an array of shape \(3,\)"):
        b.add_rows(np.ones((2, 3)), x, **{param: np.ones(3)})


def test_add_rows_coefficients_that_are_not_numbers():
    b = ModelBuilder()
    x = b.add_vars(2, 0.0, 1.0)
    with pytest.raises(InvalidParameterError, match="add_rows: parameter 'coefficients' must be a number"):
        b.add_rows([["a", "b"]], x, upper=1.0)


# ---------------------------------------------------------------- embed_network


def test_embed_network_refuses_what_is_not_a_network():
    b = ModelBuilder()
    x = b.add_vars(2, 0.0, 1.0)
    with pytest.raises(InvalidParameterError, match=r"embed_network: parameter 'net' must be an instance of "
                                                    r"Network; got 'str'"):
        embed_network(b, "str", x)
    with pytest.raises(InvalidParameterError, match="embed_network: parameter 'builder' must be an instance of "
                                                    "ModelBuilder"):
        embed_network(None, small_net(), x)
    with pytest.raises(InvalidParameterError, match="parameter 'bound_method' must be one of 'interval', 'linear'"):
        embed_network(b, small_net(), x, bound_method="exact")


@pytest.mark.parametrize("bound", [1e300, 1e200, 1e13])
def test_embed_network_refuses_input_bounds_beyond_the_limit_naming_the_inputs(bound):
    # 1e300 was accepted and build() then failed with "A[..] is nan" from the overflowing big-M rows.
    b = ModelBuilder()
    b.add_vars(1, 0.0, 1.0)
    x = b.add_vars(2, lower=[0.0, -bound], upper=[1.0, bound])
    with pytest.raises(InvalidParameterError, match=r"embed_network: input bounds must be within \+-1e\+12 .*"
                                                    r"input bounds within \+-[0-9.e+]+ are always small enough.*"
                                                    r"inputs \[1\] \(1 in all\) \(columns \[2\] \(1 in all\)\)"):
        embed_network(b, small_net(), x)


def test_embed_network_refuses_bounds_whose_products_overflow():
    # Input bounds within the limit, but the weights multiply them past it (1e200 weights overflow outright).
    for scale, bound in ((1e3, 1e11), (1e200, 1.0)):
        b = ModelBuilder()
        x = b.add_vars(2, -bound, bound)
        with pytest.raises(InvalidParameterError, match=r"embed_network: over the input box, neuron \d+ of layer 0 .*"
                                                        r"must be finite and within \+-1e\+12.*inputs \[0, 1\]"):
            embed_network(b, small_net(scale), x)


def test_embed_network_refuses_given_bounds_that_are_not_finite():
    from optprune.verification.bounds import interval_bounds

    net = small_net()
    b = ModelBuilder()
    x = b.add_vars(2, 0.0, 1.0)
    bounds = interval_bounds(net, np.zeros(2), np.ones(2))
    bounds[0] = (bounds[0][0], np.full(4, np.inf))
    with pytest.raises(InvalidParameterError, match="in the given bounds, neuron 0 of layer 0"):
        embed_network(b, net, x, bounds=bounds)


def test_embed_network_still_accepts_wide_finite_boxes():
    from optprune.formulations.embed import BIG_M_LIMIT

    b = ModelBuilder()
    x = b.add_vars(2, -1e6, 1e6)
    y = embed_network(b, small_net(), x)
    b.set_objective([1.0], y[[0]], sense="max")
    result = solve(b.build(), "highs", time_limit=30)
    assert result.status == Status.OPTIMAL
    assert BIG_M_LIMIT == 1e12


# ---------------------------------------------------------------- solve


@pytest.mark.parametrize("solver", [None, 3, ["highs"]])
def test_solve_solver_must_be_a_backend_name(solver):
    with pytest.raises(InvalidParameterError, match=r"solve: parameter 'solver' must be a backend name \(one of "
                                                    r"'highs', .*\); got "):
        solve(small_model(), solver)


def test_solve_model_must_be_a_milp():
    with pytest.raises(InvalidParameterError, match=r"solve: parameter 'model' must be an instance of MILP; got None"):
        solve(None, "highs")


def test_solve_options_are_type_checked():
    with pytest.raises(InvalidParameterError, match=r"SolveOptions: parameter 'time_limit' must be a float in "
                                                    r"\(0, inf\) or None; got '10'"):
        solve(small_model(), "highs", time_limit="10")
    with pytest.raises(InvalidParameterError, match=r"parameter 'threads' must be an int"):
        SolveOptions(threads="2")
    with pytest.raises(InvalidParameterError, match=r"parameter 'cutoff' must be a float"):
        SolveOptions(cutoff=float("nan"))
    with pytest.raises(InvalidParameterError, match=r"parameter 'options' must be an instance of SolveOptions"):
        solve(small_model(), "highs", {"time_limit": 1})


def test_solve_unknown_option_names_the_allowed_ones():
    with pytest.raises(InvalidParameterError, match=r"solve: unknown option 'bogus'; the options \(SolveOptions "
                                                    r"fields\) are time_limit, mip_gap, .*extra"):
        solve(small_model(), "highs", bogus=1)
    with pytest.raises(InvalidParameterError, match="unknown option 'bogus'"):
        solve(small_model(), "highs", SolveOptions(), bogus=1)


def test_solve_with_good_options_still_solves():
    result = solve(small_model(), "highs", time_limit=10, threads=1, mip_gap=0.0, verbose=False)
    assert result.status == Status.OPTIMAL and result.objective == pytest.approx(2.5)


# ---------------------------------------------------------------- model files

_MPS = """NAME          TEST
ROWS
 N  obj
 L  c1
COLUMNS
    x         obj       1.0          c1        {coef}
    y         obj       2.0          c1        1.0
RHS
    rhs       c1        4.0
BOUNDS
 UP BND       x         3.0
 UP BND       y         {bound}
ENDATA
"""

_LP = """Maximize
 obj: x + 2 y
Subject To
 c1: x + y <= 4
Bounds
 0 <= x <= {bound}
 x1e400 <= 5
End
"""


@pytest.mark.parametrize("coef", ["abc", "1.5x", "--1"])
def test_mps_coefficient_that_is_not_a_number_names_the_line(tmp_path, coef):
    # HiGHS read "abc" as 0 (and "1.5x" as 1.5): the model solved "optimal".
    path = tmp_path / "bad.mps"
    path.write_text(_MPS.format(coef=coef, bound="1.0"))
    with pytest.raises(FileFormatError, match=rf"bad\.mps' line 6: the coefficient of column 'x' in row 'c1' is "
                                              rf"'{coef}', which is not a number; expected a decimal number"):
        read_model(path)


def test_mps_bound_that_overflows_names_the_line(tmp_path):
    path = tmp_path / "big.mps"
    path.write_text(_MPS.format(coef="1.0", bound="1e400"))
    with pytest.raises(FileFormatError, match=r"big\.mps' line 12: the UP bound of column 'y' is '1e400', which "
                                              r"overflows a 64-bit float"):
        read_model(path)


@pytest.mark.parametrize("bound", ["inf", "Infinity", "+INF", "1e30"])
def test_mps_explicit_infinity_stays_allowed(tmp_path, bound):
    path = tmp_path / "ok.mps"
    path.write_text(_MPS.format(coef="1.0", bound=bound))
    model = read_model(path)
    assert model.A.toarray().tolist() == [[1.0, 1.0]]


def test_lp_bound_that_overflows_names_the_line(tmp_path):
    # HiGHS took 1e400 as infinity; the name x1e400 is a name, not a number.
    path = tmp_path / "big.lp"
    path.write_text(_LP.format(bound="1e400"))
    with pytest.raises(FileFormatError, match=r"big\.lp' line 6, column 12: the number '1e400' overflows a 64-bit "
                                              r"float.*or inf / infinity for an infinite bound"):
        read_model(path)


@pytest.mark.parametrize("bound", ["inf", "infinity", "1e300"])
def test_lp_explicit_infinity_and_large_finite_numbers_stay_allowed(tmp_path, bound):
    path = tmp_path / "ok.lp"
    path.write_text(_LP.format(bound=bound) + "\\ a comment with 1e999 in it\n")
    model = read_model(path)
    assert model.n_vars == 3


def test_every_bad_input_error_is_an_optprune_error():
    for error in (ShapeMismatchError, InvalidParameterError, FileFormatError):
        assert issubclass(error, OptpruneError)
