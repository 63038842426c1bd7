"""End-to-end benchmark runs on a tiny digits config: records, summary, plots, resume after SIGKILL, Ray, surrogate.

The network is an MLP trained on the spot on scikit-learn's digits (no shared data needed).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from optprune.bench import (
    build_tasks,
    load_config,
    margin_verdict,
    polish_on_dense,
    prepare_variants,
    read_records,
    run_bench,
    with_l1_ball,
)
from optprune.milp import MILP, Sense
from optprune.network import AffineLayer, Network
from optprune.verification.verdicts import DECISION_DELTA

TINY = """
[bench]
name = "tiny"
time_limit = 20
ratios = [0.5]
calibration = 64

[[networks]]
name = "digits-12x2"
dataset = "digits"
hidden = [12, 12]
epochs = 15

[[pruning]]
scorer = "magnitude"
decision = "uniform"

[[pruning]]
name = "unstructured"
scorer = "magnitude"
decision = "unstructured"

[finetune]
epochs = 1

[[queries]]
name = "adv"
images = 3
eps = [0.05]
target = "{target}"

[surrogate]
time_limit = 5
l1_eps = [0.5]
images = 2
"""

COMPARED = ("id", "network", "pruning", "ratio", "instance", "label", "target", "verdict", "decided", "status",
            "unstable", "binaries", "variables", "constraints", "nonzeros", "accuracy", "params", "adversarial")


def _config(folder: Path, target: str = "runner_up") -> Path:
    path = folder / f"tiny_{target}.toml"
    path.write_text(TINY.replace("{target}", target))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    cfg = _config(folder)
    result = run_bench(cfg, folder / "out", workers=2, progress=False, log=lambda s: None)
    return cfg, folder / "out", result


def _seed_cache(src: Path, dst: Path) -> None:
    """Reuse the fixture's trained and pruned networks (same ids), so only the execution is compared."""
    shutil.copytree(src / "networks", dst / "networks")


def test_end_to_end_records_summary_and_plots(tiny_run):
    cfg, out, result = tiny_run
    records = read_records(out / "records.jsonl")
    assert result.total == 9 and result.done == 9 and result.ran == 9  # 3 variants x 3 images
    assert len({r["id"] for r in records}) == len(records) == 9
    by_variant = {}
    for r in records:
        assert r["error"] is None, r["error"]
        if r["verdict"] == "sat":
            assert r["adversarial"] and r["objective"] > 0 and r["predicted"] != r["label"]
        elif r["verdict"] == "unsat":  # a proof: a dual bound below -delta (optimize mode has no cutoff)
            assert r["bound"] is not None and r["bound"] < -DECISION_DELTA and not r["adversarial"]
        else:
            assert r["verdict"] == "unknown" and not r["adversarial"]
        if r["decided"]:  # optimize mode: optimal within HiGHS' default relative gap (1e-4)
            assert r["status"] == "optimal"
            assert abs(r["objective"] - r["bound"]) <= 1e-4 * max(1, abs(r["bound"])) + 1e-6
        assert r["binaries"] <= r["unstable"] and r["constraints"] > 0 and r["time_s"] > 0
        by_variant.setdefault((r["pruning"], r["ratio"]), []).append(r)
    dense = by_variant[("unpruned", 0.0)][0]
    for (pruning, _), recs in by_variant.items():
        if pruning != "unpruned":
            assert recs[0]["params"] < dense["params"]
    assert by_variant[("magnitude-uniform", 0.5)][0]["widths"] == [64, 6, 6, 10]
    assert by_variant[("unstructured", 0.5)][0]["widths"] == [64, 12, 12, 10]
    # Unstructured pruning keeps as many parameters as uniform structured pruning at the same ratio.
    assert by_variant[("unstructured", 0.5)][0]["params"] == by_variant[("magnitude-uniform", 0.5)][0]["params"]

    rows = {(r["pruning"], r["ratio"]): r for r in result.rows}
    assert set(rows) == set(by_variant)
    assert rows[("unpruned", 0.0)]["speedup"] == pytest.approx(1.0)
    for row in result.rows:
        recs = by_variant[(row["pruning"], row["ratio"])]
        assert row["decided"] == sum(r["decided"] for r in recs)
        assert row["sat"] == sum(r["verdict"] == "sat" for r in recs)
        assert row["max_s"] >= row["median_s"] > 0
    md = (out / "summary.md").read_text()
    assert "| network | pruning |" in md and "unpruned" in md and "magnitude-uniform" in md
    assert len((out / "summary.csv").read_text().strip().splitlines()) == 1 + 3
    for name in ("cactus.png", "scatter.png", "accuracy_time.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "config.toml").read_text() == cfg.read_text()


def test_second_run_resumes_without_rerunning_or_rebuilding(tiny_run):
    cfg, out, _ = tiny_run
    before = (out / "records.jsonl").read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "networks").iterdir()}
    again = run_bench(cfg, out, workers=1, progress=False, plots=False, log=lambda s: None)
    assert again.ran == 0 and again.done == 9
    assert (out / "records.jsonl").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in (out / "networks").iterdir()} == stamps


def test_task_ids_are_deterministic_and_follow_the_settings(tiny_run):
    cfg_path, out, _ = tiny_run
    cfg = load_config(cfg_path)
    dense, variants = prepare_variants(cfg, out)
    ids = [t["id"] for t, _, _ in build_tasks(cfg, dense, variants)]
    assert ids == [t["id"] for t, _, _ in build_tasks(cfg, dense, variants)]
    assert len(set(ids)) == 9
    longer = cfg.with_overrides(time_limit=cfg.time_limit + 1)
    assert not set(ids) & {t["id"] for t, _, _ in build_tasks(longer, dense, variants)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(tiny_run, tmp_path):
    _, fixture_out, _ = tiny_run
    cfg = _config(tmp_path, target="all")  # 9 MIPs per task: slow enough to kill mid-run
    out = tmp_path / "out"
    _seed_cache(fixture_out, out)
    cmd = [sys.executable, "-c", "from optprune.cli import main; main()", "bench", str(cfg), "--out", str(out),
           "--workers", "1", "--no-progress", "--no-plots"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = out / "records.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if records.exists() and records.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = read_records(records)
    assert 1 <= len(first) < 9, "the run should have been killed after its first record and before its last"
    if sys.platform.startswith("linux"):  # the pool's workers die with the parent (PR_SET_PDEATHSIG)
        pids = {int(r["worker"].rsplit(":", 1)[1]) for r in first}
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    with open(records, "ab") as fh:  # as if the kill had cut a line in half
        fh.write(b'{"id": "half-writ')

    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert payload["tasks"] == 9 and payload["done"] == 9 and payload["ran_now"] == 9 - len(first)
    final = read_records(records)
    assert len(final) == 9 and len({r["id"] for r in final}) == 9
    assert final[: len(first)] == first  # finished records are kept as they were
    assert b"half-writ" not in records.read_bytes()
    assert all(r["target"] == "all" and r["mips"] >= 1 for r in final)


def test_ray_executor_gives_the_same_records(tiny_run, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'optprune[ray]'")
    cfg, fixture_out, _ = tiny_run
    out = tmp_path / "out"
    _seed_cache(fixture_out, out)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_bench(cfg, out, executor="ray", workers=2, progress=False, plots=False, log=lambda s: None)
    finally:
        ray.shutdown()
    assert result.ran == 9
    local = {r["id"]: r for r in read_records(fixture_out / "records.jsonl")}
    remote = {r["id"]: r for r in read_records(out / "records.jsonl")}
    assert set(local) == set(remote)
    for rid, a in local.items():
        b = remote[rid]
        assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}
        for key in ("objective", "bound"):
            if a[key] is None or b[key] is None:
                assert a[key] == b[key]
            else:
                assert a[key] == pytest.approx(b[key], abs=1e-6)


def test_surrogate_mode_traces_dense_objective(tiny_run, tmp_path):
    cfg, fixture_out, _ = tiny_run
    out = tmp_path / "out"
    _seed_cache(fixture_out, out)
    result = run_bench(cfg, out, surrogate=True, workers=2, progress=False, log=lambda s: None)
    # 2 images x (linf 0.05, l1 0.5) x (dense + 2 methods x {fine-tuned, not})
    assert result.total == 20 and result.done == 20
    records = read_records(out / "surrogate.jsonl")
    assert len(records) == 20
    for r in records:
        assert r["error"] is None, r["error"]
        trace = r["trace"]
        assert trace, r
        times = [t for t, _, _ in trace]
        assert times == sorted(times) and times[-1] <= r["time_s"] + 1e-3  # trace times are rounded to 0.1 ms
        assert r["dense_best"] == pytest.approx(max(m for _, m, _ in trace))
        assert r["polishing"]["applied"] and r["polishing"]["gain"] >= -1e-9
        if r["pruning"] == "unpruned":  # the dense MIP's own objective is the dense margin
            for _, margin, obj in trace:
                if obj is not None:
                    assert margin == pytest.approx(obj, abs=1e-6)
            if r["status"] == "optimal":
                assert r["dense_best"] == pytest.approx(r["objective"], abs=1e-6)
    by = {(r["norm"], r["instance"], r["pruning"], r["ratio"], r["finetuned"]): r for r in records}
    for (norm, inst, _, _, _), r in by.items():  # nothing beats the dense optimum (up to HiGHS' 1e-4 gap)
        dense = by[(norm, inst, "unpruned", 0.0, False)]
        if dense["status"] == "optimal":
            assert r["dense_best"] <= dense["bound"] + 1e-6
    md = (out / "surrogate.md").read_text()
    assert "dense MIP" in md and "not fine-tuned" in md and "| l1 |" in md
    assert (out / "surrogate.png").read_bytes()[:4] == b"\x89PNG"


def test_with_l1_ball_spends_the_budget_on_the_best_coordinate():
    from optprune.solvers import SolveOptions, get_backend

    w = np.array([0.5, -2.0, 1.0])
    x0 = np.full(3, 0.5)
    lp = MILP(c=w, A=None, row_lower=[], row_upper=[], col_lower=np.zeros(3), col_upper=np.ones(3),
              integrality=None, sense=Sense.MAXIMIZE, groups={"input": np.arange(3)})
    sol = get_backend("highs").solve(with_l1_ball(lp, np.arange(3), x0, 0.3), SolveOptions())
    x = sol.x[:3]
    assert sol.objective == pytest.approx(w @ x0 + 0.3 * 2.0)
    assert np.abs(x - x0).sum() == pytest.approx(0.3) and x[1] == pytest.approx(0.2)


def _random_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return Network((
        AffineLayer(rng.normal(size=(8, 5)), rng.normal(size=8) * 0.3, "relu", "l1"),
        AffineLayer(rng.normal(size=(6, 8)), rng.normal(size=6) * 0.3, "relu", "l2"),
        AffineLayer(rng.normal(size=(3, 6)), rng.normal(size=3) * 0.3, "identity", "out"),
    ))


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_polishing_stays_in_the_ball_and_never_loses(norm):
    net = _random_net(3)
    rng = np.random.default_rng(4)
    x0 = rng.uniform(0.2, 0.8, size=5)
    eps = 0.1 if norm == "linf" else 0.3
    for _ in range(5):
        d = rng.uniform(-1, 1, size=5)
        d *= (eps / np.abs(d).max()) if norm == "linf" else (eps / np.abs(d).sum())
        x = np.clip(x0 + 0.5 * d, 0, 1)
        y = net.forward(x)
        before = float(y[1] - y[0])
        xp, after = polish_on_dense(net, x, x0, eps, norm, 0, 1)
        yp = net.forward(xp)
        assert after == pytest.approx(float(yp[1] - yp[0]))
        assert after >= before - 1e-12
        assert np.all(xp >= -1e-9) and np.all(xp <= 1 + 1e-9)
        dist = np.abs(xp - x0).max() if norm == "linf" else np.abs(xp - x0).sum()
        assert dist <= eps + 1e-7
        # Polishing is the LP over x's linear region: the activation pattern is kept (up to ties at 0).
        pre_x, pre_p = net.forward(x, return_all=True), net.forward(xp, return_all=True)
        for a, b in zip(pre_x[:-1], pre_p[:-1]):
            assert np.all((a > 0) <= (b >= -1e-7)) and np.all((a <= 0) <= (b <= 1e-7))


def test_margin_verdict_rules():
    from optprune.verification import AdversarialResult

    def res(obj, bound, status, per_target, adversarial=False, targets=(1,)):
        out = np.array([0.0, 1.0]) if adversarial else np.array([1.0, 0.0])
        return AdversarialResult(label=0, target=1, objective=obj, bound=bound, status=status,
                                 x=np.zeros(2) if obj > -math.inf else None, output=out, per_target=per_target,
                                 targets=list(targets))

    sat = res(0.5, 0.5, "optimal", {1: {"status": "optimal", "objective": 0.5, "bound": 0.5}}, adversarial=True)
    assert margin_verdict(sat, [1], "optimize") == ("sat", True)
    robust = res(-0.3, -0.3, "optimal", {1: {"status": "optimal", "objective": -0.3, "bound": -0.3}})
    assert margin_verdict(robust, [1], "optimize") == ("unsat", True)
    # Time limit with a negative dual bound: robustness is proven but the MIP was not solved to optimality.
    proven = res(-0.5, -0.1, "time_limit", {1: {"status": "feasible", "objective": -0.5, "bound": -0.1}})
    assert margin_verdict(proven, [1], "optimize") == ("unsat", False)
    assert margin_verdict(proven, [1], "decision") == ("unsat", True)
    open_ = res(-0.5, 0.2, "time_limit", {1: {"status": "feasible", "objective": -0.5, "bound": 0.2}})
    assert margin_verdict(open_, [1], "decision") == ("unknown", False)
    # An optimum within delta of zero is no proof, whatever the status says.
    tiny = -0.5 * DECISION_DELTA
    close = res(tiny, tiny, "optimal", {1: {"status": "optimal", "objective": tiny, "bound": tiny}})
    assert margin_verdict(close, [1], "optimize") == ("unknown", True)
    # Decision mode: targets ruled out by bounds or an infeasible cutoff model count as proven.
    cut = res(-math.inf, -0.2, "infeasible", {1: {"status": "infeasible", "objective": None, "bound": None, "cutoff": True},
                                              2: {"status": "bounds", "objective": None, "bound": -0.2}},
              targets=(1, 2))
    assert margin_verdict(cut, [1, 2], "decision") == ("unsat", True)
    assert margin_verdict(cut, [1, 2, 3], "decision") == ("unknown", False)  # target 3 never solved
    # INFEASIBLE without a cutoff proves nothing.
    no_cut = res(-math.inf, -0.2, "infeasible", {1: {"status": "infeasible", "objective": None, "bound": None}})
    assert margin_verdict(no_cut, [1], "decision") == ("unknown", False)
    # A result computed on a surrogate proves nothing for the reference.
    surrogate = res(-0.3, -0.3, "optimal", {1: {"status": "optimal", "objective": -0.3, "bound": -0.3}})
    surrogate.on_reference = False
    assert margin_verdict(surrogate, [1], "optimize")[0] == "unknown"


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_start_vector_is_feasible_for_the_big_m_model(norm):
    from optprune.bench._surrogate import start_vector
    from optprune.formulations.relu_milp import build_spec_milp
    from optprune.verification.bounds import compute_bounds

    net = _random_net(5)
    x0 = np.random.default_rng(6).uniform(0.1, 0.9, size=5)
    eps = 0.2
    lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
    bounds = compute_bounds(net, lo, hi, "linear")
    model, enc = build_spec_milp(net, bounds, lo, hi, np.array([[-1.0, 1.0, 0.0]]), 0.0)
    assert enc.n_binaries > 0
    if norm == "l1":
        model = with_l1_ball(model, model.groups["input"], x0, eps)
    v = start_vector(net, enc, bounds, x0, model.n_vars)
    assert model.max_violation(v) <= 1e-9
    y = net.forward(x0)
    assert model.objective_value(v) == pytest.approx(y[1] - y[0])
