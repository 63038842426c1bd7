"""Branch and bound (``optprune.verification.bab``) against brute force, and against the MIP on real instances.

Brute force: the maximum of ``c @ y`` over the box equals the best LP over all
activation patterns (``brute_force_max`` of ``test_relu_milp``, solved by
SciPy's ``linprog``, a path independent of the bounds). A property whose true
maximum slack is ``+gap`` must come back ``sat`` with a checked point, one at
``-gap`` must come back ``unsat``; both split modes are checked.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_relu_milp import brute_force_max, tiny_net

from optprune.errors import InvalidParameterError
from optprune.verification.bab import BaBSettings, bab_verify_case
from optprune.verification.vnnlib import Conjunction, VNNLibCase


def _case(net, lo, hi, rows, d):
    return VNNLibCase(lo, hi, tuple(Conjunction(np.atleast_2d(r), np.atleast_1d(v)) for r, v in zip(rows, d)))


def _decide(net, case, split, **kw):
    settings_ = BaBSettings(split=split, attack=False, batch=4, **kw)
    return bab_verify_case(net, case, deadline=time.perf_counter() + 60, settings=settings_)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None)
@given(seed=st.integers(0, 10_000), n_in=st.integers(2, 3), hidden=st.lists(st.integers(2, 4), min_size=1, max_size=2),
       sign=st.sampled_from([1.0, -1.0]), split=st.sampled_from(["relu", "input"]))
def test_bab_verdict_equals_activation_pattern_enumeration(seed, n_in, hidden, sign, split):
    net = tiny_net(seed, n_in, hidden)
    lo, hi = -np.ones(n_in), np.ones(n_in)
    c = np.array([-1.0, 1.0, 0.0])  # y_1 - y_0 >= -d
    best = brute_force_max(net, c[None, :], lo, hi)
    gap = 0.05 * (1.0 + abs(best))
    d = -best + sign * gap  # true max slack is sign * gap
    res = _decide(net, _case(net, lo, hi, [c], [d]), split)
    assert res.verdict == ("sat" if sign > 0 else "unsat"), res.to_dict()
    if res.verdict == "sat":
        y = net.forward(res.counterexample)
        assert c @ y + d >= 0 and np.all(res.counterexample >= lo) and np.all(res.counterexample <= hi)


def test_input_splitting_reaches_a_maximum_that_one_split_cannot_improve():
    # Found by random draws of the test above: the maximum lies inside the third input's range, so halving that
    # input gains nothing in one step, and the look-ahead kept bisecting the other two (already ~1e-8 wide) by
    # rounding-noise gains, its bound stuck at 0.1289 above a true maximum slack of 0.091.
    net = tiny_net(629, 3, [3, 2])
    lo, hi = -np.ones(3), np.ones(3)
    c = np.array([-1.0, 1.0, 0.0])
    best = brute_force_max(net, c[None, :], lo, hi)
    d = -best + 0.05 * (1.0 + abs(best))
    settings_ = BaBSettings(split="input", attack=False, batch=4)
    res = bab_verify_case(net, _case(net, lo, hi, [c], [d]), deadline=time.perf_counter() + 20, settings=settings_)
    assert res.verdict == "sat", res.to_dict()
    assert res.domains < 2000  # about 100 with thin inputs left alone; the stalled search bounded 7,000 in 10 s
    x = res.counterexample
    assert c @ net.forward(x) + d >= 0 and np.all(x >= lo) and np.all(x <= hi)


@pytest.mark.parametrize("split", ["relu", "input"])
def test_disjunction_is_unsat_only_when_every_disjunct_is(split):
    net = tiny_net(7, 2, [4, 3])
    lo, hi = -np.ones(2), np.ones(2)
    rows = [np.array([1.0, -1.0, 0.0]), np.array([0.0, 1.0, -1.0])]
    maxima = [brute_force_max(net, r[None, :], lo, hi) for r in rows]
    unsat_d = [-m - 0.1 for m in maxima]
    assert _decide(net, _case(net, lo, hi, rows, unsat_d), split).verdict == "unsat"
    sat_d = [unsat_d[0], -maxima[1] + 0.1]  # only the second disjunct is reachable
    res = _decide(net, _case(net, lo, hi, rows, sat_d), split)
    assert res.verdict == "sat"
    y = net.forward(res.counterexample)
    assert rows[1] @ y + sat_d[1] >= 0


def test_multi_row_conjunction_needs_every_row():
    """Rows reachable one at a time but not together: brute force over a grid says so, BaB must not say sat."""
    net = tiny_net(3, 2, [4])
    lo, hi = -np.ones(2), np.ones(2)
    r1, r2 = np.array([1.0, 0.0, 0.0]), np.array([-1.0, 0.0, 0.0])
    m1 = brute_force_max(net, r1[None, :], lo, hi)
    m2 = brute_force_max(net, r2[None, :], lo, hi)
    # y_0 >= m1 - 0.01 and -y_0 >= m2 - 0.01 both hold only if the range of y_0 is tiny: it is not here.
    assert m1 + m2 > 0.1
    conj = Conjunction(np.vstack([r1, r2]), np.array([-(m1 - 0.01), -(m2 - 0.01)]))
    res = bab_verify_case(net, VNNLibCase(lo, hi, (conj,)), deadline=time.perf_counter() + 60,
                          settings=BaBSettings(split="relu", attack=False))
    assert res.verdict == "unsat"


def test_root_closed_by_bounds_is_reported_as_bounds():
    net = tiny_net(11, 3, [3])
    lo, hi = -np.ones(3), np.ones(3)
    c = np.array([1.0, -1.0, 0.0])
    d = -brute_force_max(net, c[None, :], lo, hi) - 100.0
    res = _decide(net, _case(net, lo, hi, [c], [d]), "relu")
    assert (res.verdict, res.decided_by, res.rounds) == ("unsat", "bounds", 0)


def test_time_limit_gives_unknown():
    net = tiny_net(5, 3, [4, 4])
    lo, hi = -np.ones(3), np.ones(3)
    c = np.array([1.0, -1.0, 0.0])
    d = -brute_force_max(net, c[None, :], lo, hi) - 1e-3
    res = bab_verify_case(net, _case(net, lo, hi, [c], [d]), deadline=time.perf_counter() - 1.0,
                          settings=BaBSettings(split="relu", attack=False, root_iters=0))
    assert res.verdict in ("unknown", "unsat")
    if res.verdict == "unsat":
        assert res.decided_by == "bounds"  # closed at the root, before the clock is read
    else:
        assert "time limit" in res.message


@pytest.mark.parametrize("cap", [{"max_domains": 2}, {"max_memory": 1e-6}])  # 1e-6 GiB: a few open subdomains
def test_memory_bound_gives_unknown(cap):
    net = tiny_net(3, 2, [4, 4])
    lo, hi = -np.ones(2), np.ones(2)
    c = np.array([1.0, -1.0, 0.0])
    d = -brute_force_max(net, c[None, :], lo, hi) - 1e-4  # barely unsat: about 13 subdomains open at once
    plain = BaBSettings(split="input", attack=False, root_iters=0, iters=0, batch=1)
    capped = BaBSettings(split="input", attack=False, root_iters=0, iters=0, batch=1, **cap)
    assert bab_verify_case(net, _case(net, lo, hi, [c], [d]), deadline=time.perf_counter() + 60,
                           settings=plain).verdict == "unsat"
    res = bab_verify_case(net, _case(net, lo, hi, [c], [d]), deadline=time.perf_counter() + 60, settings=capped)
    assert res.verdict == "unknown" and "memory" in res.message


@pytest.mark.parametrize(("n_rows", "reachable"), [(3, None), (3, 0), (3, 2), (1, None)])
def test_workers_decide_what_one_search_decides(n_rows, reachable, monkeypatch):
    """Two forked workers sharing the open subdomains as pieces: unsat only when every piece is closed, sat from
    a checked point; with fewer open conjunctions than pieces the search splits here first."""
    from optprune.verification import bab_workers

    monkeypatch.setattr(bab_workers, "PIECES_PER_WORKER", 2)  # 4 pieces: a tiny net's search reaches that
    net = tiny_net(7, 2, [5, 4])
    lo, hi = -np.ones(2), np.ones(2)
    rows = [np.array([1.0, -1.0, 0.0]), np.array([0.0, 1.0, -1.0]), np.array([-1.0, 0.0, 1.0])][:n_rows]
    maxima = [brute_force_max(net, r[None, :], lo, hi) for r in rows]
    d = [-m - 1e-4 * (1.0 + abs(m)) for m in maxima]  # barely unsat: the root leaves them open
    if reachable is not None:
        d[reachable] = -maxima[reachable] + 0.05
    case = _case(net, lo, hi, rows, d)
    expected = "unsat" if reachable is None else "sat"
    one = bab_verify_case(net, case, deadline=time.perf_counter() + 60,
                          settings=BaBSettings(split="relu", attack=False, batch=1))
    two = bab_verify_case(net, case, deadline=time.perf_counter() + 60, threads=2,
                          settings=BaBSettings(split="relu", attack=False, batch=1, parallel="workers"))
    assert one.verdict == two.verdict == expected, (one.to_dict(), two.to_dict())
    if expected == "sat":
        x = two.counterexample
        assert rows[reachable] @ net.forward(x) + d[reachable] >= 0 and np.all(x >= lo) and np.all(x <= hi)
    else:
        assert (one.workers, two.workers) == (1, 2), two.to_dict()  # the pieces were searched in two processes
        assert two.closed_conjunctions == list(range(n_rows)) and two.decided_by == "bab"


def test_depth_first_near_the_memory_bound_finishes_what_best_first_gives_up(monkeypatch):
    """With room for half the open subdomains that best-first needs, the depth-first rounds near the memory bound
    still decide; without them (``DEPTH_FIRST_SHARE = 0``) the search stops at the bound, undecided."""
    import optprune.verification.bab as bab

    net = tiny_net(6, 3, [6, 6, 6])
    lo, hi = -np.ones(3), np.ones(3)
    c = np.array([-1.0, 1.0, 0.0])
    sampled = float((net.forward(np.random.default_rng(0).uniform(lo, hi, size=(20000, 3))) @ c).max())
    case = _case(net, lo, hi, [c], [-sampled - 0.03 * (1 + abs(sampled))])
    kw = dict(split="relu", attack=False, batch=1, root_iters=0, iters=3, fsb_k=0)
    free = bab_verify_case(net, case, deadline=time.perf_counter() + 60, settings=BaBSettings(**kw))
    assert free.verdict == "unsat" and free.shrink_rounds == 0 and free.max_open >= 20
    tight = BaBSettings(max_domains=free.max_open // 2, **kw)
    res = bab_verify_case(net, case, deadline=time.perf_counter() + 60, settings=tight)
    assert res.verdict == "unsat" and res.shrink_rounds > 0, res.to_dict()
    assert res.max_open <= tight.max_domains + tight.batch
    monkeypatch.setattr(bab, "DEPTH_FIRST_SHARE", 0.0)
    best_first = bab_verify_case(net, case, deadline=time.perf_counter() + 60, settings=tight)
    assert best_first.verdict == "unknown" and "memory bound" in best_first.message


@pytest.mark.parametrize(("field", "value"), [("split", "sideways"), ("batch", 0), ("max_domains", 0), ("iters", -1),
                                                   ("max_memory", 0.0), ("max_memory", float("nan")),
                                                   ("parallel", "gpu"), ("intermediate", "lp")])
def test_settings_are_validated(field, value):
    with pytest.raises(InvalidParameterError, match=field):
        BaBSettings(**{field: value})


# ---------------------------------------------------------------------------- real instances

FAST_256X2 = [("prop_0_0.03.vnnlib", "unsat"), ("prop_2_0.03.vnnlib", "unsat"), ("prop_7_0.03.vnnlib", "sat"),
              ("prop_1_0.05.vnnlib", "sat")]


@pytest.mark.parametrize(("prop", "expected"), FAST_256X2)
def test_bab_and_mip_agree_on_mnistfc_256x2(mnistfc, prop, expected):
    from optprune.io import load_network
    from optprune.verification import verify_property
    from optprune.verification.vnnlib import read_vnnlib

    path = mnistfc / "mnist-net_256x2.onnx"
    net = load_network(path)
    p = read_vnnlib(mnistfc / prop, net.input_size, net.output_size)
    res = verify_property(net, p, time_limit=120, method="bab", onnx_model=path)
    mip = verify_property(net, p, time_limit=120, bound_method="linear", method="mip")
    assert res.verdict == expected == mip.verdict, (res.to_dict(), mip.verdict)
    assert (res.method, mip.method) == ("bab", "mip") and res.bab_domains >= 1 and mip.bab_domains == 0
    if expected == "sat":
        assert p.cases[0].violated_by(res.counterexample, net.forward(res.counterexample))


@pytest.mark.parametrize("method", ["bab", "auto"])
def test_verify_property_method_matches_brute_force(method):
    from optprune.verification import verify_property
    from optprune.verification.vnnlib import VNNLibProperty

    net = tiny_net(17, 3, [4, 3])
    lo, hi = -np.ones(3), np.ones(3)
    c = np.array([1.0, 0.0, -1.0])
    best = brute_force_max(net, c[None, :], lo, hi)
    for sign in (1.0, -1.0):
        d = -best + sign * 0.05 * (1 + abs(best))
        prop = VNNLibProperty(3, 3, (_case(net, lo, hi, [c], [d]),))
        res = verify_property(net, prop, time_limit=60, method=method, attack=False)
        assert res.verdict == ("sat" if sign > 0 else "unsat") and res.method == "bab"


def test_verify_property_rejects_an_unknown_method():
    from optprune.verification import verify_property
    from optprune.verification.vnnlib import VNNLibProperty

    net = tiny_net(1, 2, [2])
    prop = VNNLibProperty(2, 3, (_case(net, -np.ones(2), np.ones(2), [np.array([1.0, -1.0, 0.0])], [0.0]),))
    with pytest.raises(InvalidParameterError, match="method"):
        verify_property(net, prop, method="guess")


@pytest.mark.parametrize(("intermediate", "fsb_k"), [("crown", 0), ("root", 3), ("beta", 3), ("beta", 0)])
def test_bab_options_keep_the_verdict(intermediate, fsb_k):
    """Intermediate-bound recomputation and filtered smart branching change the search, never the verdict."""
    net = tiny_net(13, 3, [4, 4, 4])
    lo, hi = -np.ones(3), np.ones(3)
    c = np.array([0.0, 1.0, -1.0])
    best = brute_force_max(net, c[None, :], lo, hi)
    for sign in (1.0, -1.0):
        d = -best + sign * 0.05 * (1 + abs(best))
        res = _decide(net, _case(net, lo, hi, [c], [d]), "relu", intermediate=intermediate, fsb_k=fsb_k)
        assert res.verdict == ("sat" if sign > 0 else "unsat")


def test_cli_verify_method(tmp_path, capsys):
    """``optprune verify --method bab`` decides and says so; an unknown method is a named error, exit 2."""
    import json

    from optprune.cli import main
    from optprune.io import network_to_onnx

    net = tiny_net(17, 3, [4, 3])
    onnx_path = tmp_path / "net.onnx"
    network_to_onnx(net, onnx_path)
    lo, hi = -np.ones(3), np.ones(3)
    c = np.array([1.0, 0.0, -1.0])
    d = -float(brute_force_max(net, c, lo, hi)) - 0.1  # unsat
    prop = tmp_path / "p.vnnlib"
    lines = [f"(declare-const X_{i} Real)" for i in range(3)] + [f"(declare-const Y_{j} Real)" for j in range(3)]
    lines += [f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))" for i in range(3)]
    lines += [f"(assert (>= (- Y_0 Y_2) {-d!r}))"]  # Y_0 - Y_2 + d >= 0
    prop.write_text("\n".join(lines) + "\n")
    code = main(["verify", str(onnx_path), str(prop), "--method", "bab", "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code in (0, None) and out["verdict"] == "unsat" and out["method"] == "bab" and out["bab_domains"] >= 1
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(onnx_path), str(prop), "--method", "guess", "--json"])
    code = exc.value.code
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 2 and "--method" in out["error"] and "guess" in out["error"]


def test_bench_vnnlib_queries_take_a_method(tmp_path):
    """``method`` in a vnnlib query is validated, reaches verify_property, and the record says who decided."""
    from optprune.bench import load_config
    from optprune.bench._tasks import _vnnlib

    cfg_text = ('[[networks]]\nname = "n"\ndataset = "mnist"\nonnx = "a.onnx"\n'
                '[[queries]]\nkind = "vnnlib"\npaths = ["p.vnnlib"]\n')
    for method in ("mip", "bab", "auto"):
        (tmp_path / "c.toml").write_text(cfg_text + f'method = "{method}"\n')
        assert load_config(tmp_path / "c.toml").queries[0].method == method
    (tmp_path / "c.toml").write_text(cfg_text + 'method = "guess"\n')
    with pytest.raises(InvalidParameterError, match="method"):
        load_config(tmp_path / "c.toml")

    net = tiny_net(17, 3, [4, 3])
    c = np.array([1.0, 0.0, -1.0])
    d = -float(brute_force_max(net, c, -np.ones(3), np.ones(3))) - 0.1
    prop = tmp_path / "p.vnnlib"
    lines = [f"(declare-const X_{i} Real)" for i in range(3)] + [f"(declare-const Y_{j} Real)" for j in range(3)]
    lines += [f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))" for i in range(3)]
    lines += [f"(assert (>= (- Y_0 Y_2) {-d!r}))"]
    prop.write_text("\n".join(lines) + "\n")
    task = {"path": str(prop), "backend": "highs", "time_limit": 30.0, "bounds": "linear", "threads": 1}
    rec = _vnnlib({**task, "method": "bab"}, net)
    assert (rec["verdict"], rec["method"]) == ("unsat", "bab") and rec["bab_domains"] >= 1
    rec = _vnnlib(task, net)  # a task recorded before methods existed runs the MIP pipeline
    assert (rec["verdict"], rec["method"], rec["bab_domains"]) == ("unsat", "mip", 0)


def test_fully_split_leaves_are_closed_by_lp_duals_and_farkas_multipliers(monkeypatch):
    """Without slope optimisation, tight properties end in fully split leaves: feasible ones are closed by their
    LP duals, empty ones by phase-1 (Farkas) multipliers; the verdicts still equal brute force."""
    import optprune.verification.bab as bab_module

    calls = {"farkas": 0}
    real = bab_module._farkas_betas

    def counting(*args):
        calls["farkas"] += 1
        return real(*args)

    monkeypatch.setattr(bab_module, "_farkas_betas", counting)
    leaves = 0
    for seed in range(6):
        net = tiny_net(seed, 2, [4, 4])
        lo, hi = -np.ones(2), np.ones(2)
        c = np.array([1.0, -1.0, 0.0])
        best = brute_force_max(net, c[None, :], lo, hi)
        for sign in (1.0, -1.0):
            res = bab_verify_case(net, _case(net, lo, hi, [c], [-best + sign * 1e-3]),
                                  deadline=time.perf_counter() + 60,
                                  settings=BaBSettings(split="relu", attack=False, root_iters=0, iters=0))
            assert res.verdict == ("sat" if sign > 0 else "unsat"), (seed, sign, res.to_dict())
            leaves += res.lp_leaves
    assert leaves > 0 and calls["farkas"] > 0


def test_pool_keeps_every_open_subdomain_through_pops_and_pushes():
    """The slot pool (bab._Pool) returns exactly what was pushed, whatever the order of pops and pushes, fills a
    field that the first batch lacked (None) with what None stands for, and refuses more than its slots."""
    import torch

    from optprune.verification.bab import _Domains, _Pool
    from optprune.verification.crown import default_alpha

    rng = np.random.default_rng(0)

    def batch(ids, with_beta):
        n = len(ids)
        lo = [torch.as_tensor(rng.uniform(-2, 0, (n, 3))), torch.as_tensor(rng.uniform(-2, 0, (n, 2)))]
        hi = [torch.as_tensor(rng.uniform(0, 2, (n, 3))), torch.as_tensor(rng.uniform(0, 2, (n, 2)))]
        return _Domains(
            spec=torch.as_tensor(ids), lowers=lo, uppers=hi,
            splits=[torch.zeros(n, 3, dtype=torch.int8), torch.zeros(n, 2, dtype=torch.int8)],
            alpha=[torch.rand(n, 1, 3), None], beta=[torch.rand(n, 1, 3), None] if with_beta else [None, None],
            x_lo=torch.zeros(n, 2, dtype=torch.float64), x_hi=torch.ones(n, 2, dtype=torch.float64),
            value=torch.as_tensor(np.asarray(ids, dtype=np.float64)), tag=torch.full((n,), -1, dtype=torch.long))

    first = batch([0, 1, 2], with_beta=False)
    pool = _Pool(first, capacity=9)
    expected = {i: (first.lowers[0][k].clone(), None) for k, i in enumerate([0, 1, 2])}
    popped = pool.pop(torch.topk(pool.key(), 2).indices)
    assert sorted(popped.spec.tolist()) == [1, 2] and len(pool) == 1
    for k in (1, 2):
        expected.pop(k)
    more = batch(list(range(10, 17)), with_beta=True)
    pool.push(more)
    for k, i in enumerate(range(10, 17)):
        expected[i] = (more.lowers[0][k].clone(), more.beta[0][k].clone())
    assert len(pool) == 8
    got = pool.open()
    assert sorted(got.spec.tolist()) == sorted(expected)
    for k, i in enumerate(got.spec.tolist()):
        lo0, beta0 = expected[i]
        assert torch.equal(got.lowers[0][k], lo0)
        assert torch.equal(got.beta[0][k], beta0 if beta0 is not None else torch.zeros(1, 3))
    assert got.beta[1] is None and got.alpha[1] is None
    assert bool(torch.isinf(pool.key()[~pool.alive]).all())
    assert float(pool.key().max()) == 16.0
    assert pool.open_bytes() == 8 * _Pool.row_bytes(got)
    # a batch without alpha for layer 0 gets CROWN's default slopes in its slots
    bare = batch([20], with_beta=True)
    bare.alpha = [None, None]
    pool.push(bare)
    got = pool.open()
    k = got.spec.tolist().index(20)
    assert torch.equal(got.alpha[0][k], default_alpha(bare.lowers[0], bare.uppers[0]).to(torch.float32))
    with pytest.raises(RuntimeError, match="pool full"):
        pool.push(batch([30], with_beta=True))


def test_compact_pool_rebuilds_the_bounds_and_box_of_relu_split_subdomains():
    """Without recomputed bounds a ReLU-split subdomain's intermediate bounds are the root's but at its split
    neurons, and its box is the property's: the pool (with a bab._Root) stores neither and gives back the
    same tensors, in fewer bytes."""
    import torch

    from optprune.verification.bab import _Domains, _Pool, _Root, _Spec, _split_relu
    from optprune.verification.bounds import linear_bounds
    from optprune.verification.crown import DTYPE, TorchNetwork

    net = tiny_net(5, 3, [6, 5])
    lo, hi = -np.ones(3), np.ones(3)
    case = _case(net, lo, hi, [np.array([1.0, -1.0, 0.0])], [0.0])
    tn, spec = TorchNetwork.from_network(net), _Spec(case)
    b = linear_bounds(net, lo, hi)
    x_lo, x_hi = torch.as_tensor(lo).reshape(1, -1), torch.as_tensor(hi).reshape(1, -1)
    root_dom = _Domains(
        spec=torch.zeros(1, dtype=torch.long),
        lowers=[torch.as_tensor(v, dtype=DTYPE).unsqueeze(0) for v, _ in b[:-1]],
        uppers=[torch.as_tensor(v, dtype=DTYPE).unsqueeze(0) for _, v in b[:-1]],
        splits=[torch.zeros(1, n, dtype=torch.int8) for n in tn.hidden_widths], alpha=[None, None], beta=[None, None],
        x_lo=x_lo, x_hi=x_hi, value=torch.ones(1, dtype=DTYPE), tag=torch.full((1,), -1, dtype=torch.long))
    root = _Root(root_dom.lowers, root_dom.uppers, x_lo, x_hi)
    pool = _Pool(root_dom, capacity=64, root=root)
    made = []
    for _ in range(4):  # split the worst open subdomain a few times, as the search does
        parents = pool.pop(torch.topk(pool.key(), 1).indices)
        kids, _, _ = _split_relu(tn, spec, parents)
        kids.value = torch.rand(len(kids), dtype=DTYPE)
        made.append(kids)
        pool.push(kids)
    got = pool.open()
    kids = _Domains.cat(made)
    for k in range(len(got)):  # every open one is a child pushed above, with the same bounds and box
        match = [i for i in range(len(kids)) if all(torch.equal(a[i], b_[k]) for a, b_ in zip(kids.splits, got.splits))]
        assert len(match) == 1
        i = match[0]
        for a, b_ in zip(kids.lowers + kids.uppers, got.lowers + got.uppers):
            assert torch.equal(a[i], b_[k])
        assert torch.equal(kids.x_lo[i], got.x_lo[k]) and torch.equal(kids.x_hi[i], got.x_hi[k])
    assert pool.open_bytes() == len(pool) * _Pool.row_bytes(got, compact=True) < len(pool) * _Pool.row_bytes(got)
