"""A bound method and a verification engine are one object plus one registration line.

A toy bound method (interval bounds under another name, counting its calls)
and a toy engine (bounds only, under another name) are registered here, then
used through the Python API, the CLI (``optprune verify --bounds/--method``)
and a bench config's vnnlib query, and unregistered afterwards.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_relu_milp import brute_force_max, tiny_net

from optprune.bench import load_config
from optprune.bench._tasks import _vnnlib
from optprune.cli import main
from optprune.errors import InvalidParameterError
from optprune.io import network_to_onnx
from optprune.verification import verify_property
from optprune.verification.bounds import BOUND_METHODS, BoundMethod, interval_bounds
from optprune.verification.deadline import Deadline
from optprune.verification.engine_registry import ENGINES
from optprune.verification.engines import BoundsEngine
from optprune.verification.vnnlib import read_vnnlib

CALLS: list[str] = []


def _toy_bounds(net, x_lower, x_upper, bounds, *, deadline, solver):
    CALLS.append("toy")
    return interval_bounds(net, x_lower, x_upper)


class ToyEngine(BoundsEngine):
    name = "toy-engine"


@pytest.fixture
def toys():
    BOUND_METHODS.register("toy", BoundMethod("toy", _toy_bounds, None, "interval, renamed (test)"))
    ENGINES.register("toy-engine", ToyEngine(), "bounds only, renamed (test)")
    CALLS.clear()
    yield
    BOUND_METHODS.unregister("toy")
    ENGINES.unregister("toy-engine")


@pytest.fixture
def robust_case(tmp_path):
    """A 3-input net and a property its interval bounds already prove (so the toy engine decides it)."""
    net = tiny_net(17, 3, [4, 3])
    c = np.array([1.0, 0.0, -1.0])
    lo, hi = -0.01 * np.ones(3), 0.01 * np.ones(3)
    d = -float(brute_force_max(net, c, lo, hi)) - 5.0
    prop = tmp_path / "p.vnnlib"
    lines = [f"(declare-const X_{i} Real)" for i in range(3)] + [f"(declare-const Y_{j} Real)" for j in range(3)]
    lines += [f"(assert (>= X_{i} -0.01))\n(assert (<= X_{i} 0.01))" for i in range(3)]
    lines += [f"(assert (>= (- Y_0 Y_2) {-d!r}))"]
    prop.write_text("\n".join(lines) + "\n")
    onnx_path = tmp_path / "n.onnx"
    network_to_onnx(net, onnx_path)
    return net, prop, onnx_path


def test_a_registered_bound_method_runs_in_every_engine_through_the_api(toys, robust_case):
    net, prop, _ = robust_case
    parsed = read_vnnlib(prop, 3, 3)
    for method in ("mip", "bab", "toy-engine"):
        CALLS.clear()
        res = verify_property(net, parsed, method=method, bound_method="toy", time_limit=30)
        assert res.verdict == "unsat" and CALLS, (method, res.to_dict())
    with pytest.raises(InvalidParameterError, match="bound_method must be one of .*toy"):
        verify_property(net, parsed, bound_method="nope")


def test_the_cli_lists_and_runs_registered_methods(toys, robust_case, capsys):
    _, prop, onnx_path = robust_case
    code = main(["verify", str(onnx_path), str(prop), "--method", "toy-engine", "--bounds", "toy", "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code in (0, None) and out["verdict"] == "unsat" and out["method"] == "toy-engine" and CALLS
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(onnx_path), str(prop), "--bounds", "nope", "--json"])
    err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert exc.value.code == 2 and "toy" in err["error"] and "'nope'" in err["error"]


def test_a_bench_vnnlib_query_accepts_registered_names(toys, robust_case, tmp_path):
    net, prop, _ = robust_case
    text = ('[[networks]]\nname = "n"\ndataset = "mnist"\nonnx = "a.onnx"\n'
            '[[queries]]\nkind = "vnnlib"\npaths = ["p.vnnlib"]\nbounds = "toy"\nmethod = "toy-engine"\n')
    (tmp_path / "c.toml").write_text(text)
    query = load_config(tmp_path / "c.toml").queries[0]
    assert (query.bounds, query.method) == ("toy", "toy-engine")
    rec = _vnnlib({"path": str(prop), "backend": "highs", "time_limit": 30.0, "bounds": query.bounds,
                   "threads": 1, "method": query.method}, net)
    assert (rec["verdict"], rec["method"]) == ("unsat", "toy-engine") and CALLS
    (tmp_path / "c.toml").write_text(text.replace('bounds = "toy"', 'bounds = "nope"'))
    with pytest.raises(InvalidParameterError, match="toy"):
        load_config(tmp_path / "c.toml")


def test_every_built_in_name_is_listed_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from optprune.verification.engine_registry import ENGINES; "
            "from optprune.verification.bounds import BOUND_METHODS; "
            "print(ENGINES.names(), BOUND_METHODS.names(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "('auto', 'mip', 'bab', 'bounds', 'coop') ('interval', 'linear', 'alpha', 'obbt') False"


def test_the_deadline_never_hands_out_more_than_is_left():
    d = Deadline(0.5)
    assert d.seconds(0.1, floor=1.0) <= 0.5  # the old attack slice max(1.0, 0.1 * left) overran it
    assert d.share(2.0).end <= d.end
    assert Deadline().left() == math.inf and not Deadline().expired()
    assert Deadline(-1.0).expired() and Deadline(-1.0).seconds(1.0, floor=5.0) == 0.0
