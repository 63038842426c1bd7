"""The benchmark summary's speed-ups and time-out capping, against values computed by hand from a few records."""

from __future__ import annotations

import pytest

from optprune.bench._summary import markdown_table, summarize

LIMIT = 10.0


def _task(pruning: str, ratio: float, instance: int, accuracy: float) -> dict:
    return {"id": f"{pruning}-{instance}", "network": "net", "query": "max_margin", "eps": 0.02, "backend": "highs",
            "pruning": pruning, "ratio": ratio, "finetuned": pruning != "unpruned", "instance": instance, "rep": 0,
            "time_limit": LIMIT, "accuracy": accuracy, "params": 100, "scorer": None, "decision": None,
            "make_s": None}


def _rec(time_s, decided: bool, verdict: str) -> dict:
    return {"time_s": time_s, "decided": decided, "verdict": verdict}


# (time_s, decided, verdict) per instance; the capped time (what the summary must use) in the comment
UNPRUNED = [
    (8.0, True, "unsat"),     # 8
    (12.5, False, "unknown"),  # timed out (ran past the limit): 10
    (2.0, True, "sat"),       # 2
    (4.0, True, "unsat"),     # 4
    (None, False, "error"),   # an error counts as the limit: 10
]
PRUNED = [
    (2.0, True, "unsat"),     # 2
    (5.0, True, "unsat"),     # 5
    (0.5, True, "sat"),       # 0.5
    (3.0, False, "unknown"),  # gave up undecided after 3 s: counts as the limit, 10
    (12.0, True, "unsat"),    # decided but past the limit: capped at 10
]
PARTIAL = {0: (4.0, True, "unsat"), 2: (1.0, True, "sat")}  # only 2 of 5 instances have run: 4 and 1


@pytest.fixture
def rows() -> dict:
    tasks, records = [], {}
    for pruning, ratio, acc, recs in (("unpruned", 0.0, 0.98, dict(enumerate(UNPRUNED))),
                                      ("magnitude", 0.5, 0.97, dict(enumerate(PRUNED))),
                                      ("flap", 0.7, 0.95, PARTIAL)):
        for i in range(5):
            t = _task(pruning, ratio, i, acc)
            tasks.append(t)
            if i in recs:
                records[t["id"]] = _rec(*recs[i])
    return {r["pruning"]: r for r in summarize(tasks, records)}


def test_capped_times_medians_and_counts(rows) -> None:
    u, p, q = rows["unpruned"], rows["magnitude"], rows["flap"]
    # unpruned capped times 8, 10, 2, 4, 10 -> sorted 2, 4, 8, 10, 10
    assert u["median_s"] == 8.0 and u["max_s"] == 10.0
    # pruned capped times 2, 5, 0.5, 10, 10 -> sorted 0.5, 2, 5, 10, 10 (12 s capped at the limit, not 12)
    assert p["median_s"] == 5.0 and p["max_s"] == 10.0
    # two of five have run: 4 and 1
    assert q["median_s"] == 2.5 and q["max_s"] == 4.0
    assert (u["instances"], u["done"], u["decided"], u["sat"], u["unsat"], u["errors"]) == (5, 5, 3, 1, 2, 1)
    assert (p["instances"], p["done"], p["decided"], p["sat"], p["unsat"], p["errors"]) == (5, 5, 4, 1, 3, 0)
    assert (q["instances"], q["done"], q["decided"]) == (5, 2, 2)
    assert p["accuracy_loss"] == pytest.approx(1.0) and q["accuracy_loss"] == pytest.approx(3.0)


def test_median_and_geometric_mean_speedups(rows) -> None:
    u, p, q = rows["unpruned"], rows["magnitude"], rows["flap"]
    assert u["speedup"] == 1.0 and u["speedup_geo"] == pytest.approx(1.0)
    # median ratio: 8 / 5
    assert p["speedup"] == pytest.approx(1.6)
    # per instance unpruned / pruned on capped times: 8/2, 10/5, 2/0.5, 4/10, 10/10 = 4, 2, 4, 0.4, 1
    assert p["speedup_geo"] == pytest.approx((4 * 2 * 4 * 0.4 * 1) ** (1 / 5))  # 12.8 ** 0.2 = 1.66511
    assert p["speedup_geo"] == pytest.approx(1.66511, abs=1e-5)
    # only instances both have run: 8/4, 2/1 -> geometric mean 2; median ratio 8 / 2.5
    assert q["speedup"] == pytest.approx(3.2)
    assert q["speedup_geo"] == pytest.approx(2.0)


def test_markdown_marks_capped_times_and_prints_speedups(rows) -> None:
    md = markdown_table(list(rows.values()))
    line = {r: next(x for x in md.splitlines() if f"| {r} |" in x) for r in rows}
    cells = {r: [c.strip() for c in line[r].strip("|").split("|")] for r in rows}
    head = [c.strip() for c in md.splitlines()[0].strip("|").split("|")]
    col = {h: i for i, h in enumerate(head)}
    assert cells["unpruned"][col["median time (s)"]] == "8.00"
    assert cells["unpruned"][col["max time (s)"]] == ">=10.00"
    assert cells["magnitude"][col["speed-up"]] == "1.60x"
    assert cells["magnitude"][col["speed-up (geo. mean)"]] == f"{12.8 ** 0.2:.2f}x" == "1.67x"
    assert cells["flap"][col["decided"]] == "2/5 (2 run)"
    assert "Time limit 10 s per instance" in md
