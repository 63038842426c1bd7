"""Run Marabou (maraboupy 2.0) on one VNN-LIB instance, one query per output disjunct; run by the peer's Python.

Not part of optprune: ``benchmarks/vnncomp_peers.py`` starts this file with the Python of the venv that holds
``maraboupy`` (it imports nothing from optprune), and hands it the property already read by optprune's VNN-LIB
reader as a JSON file (the input box, and the output disjunction as conjunctions of rows ``C y + d >= 0``).

Why one query per disjunct: Marabou 2.0's own VNN-LIB path (``python -m maraboupy NET.onnx PROP.vnnlib``, which
encodes the disjunction as one disjunction constraint) did not decide mnistfc 256x2 ``prop_0_0.03`` in 40 s on
this machine, where the nine single-disjunct queries took 23 s in all (each unsat). The property is violated iff
some disjunct is satisfiable, so the answers combine soundly: ``sat`` at the first satisfiable disjunct (its
assignment is the counterexample), ``unsat`` when every disjunct is unsat, else ``unknown``.

``--threads T`` runs T disjunct queries at once in forked processes (Marabou's DeepSoI search is sequential; its
``--num-workers`` applies to split-and-conquer mode only). Each query gets the time left of ``--timeout``, counted
from ``--start`` (the epoch second at which the harness started this process, so start-up counts).

Writes one JSON object to ``--out``: ``verdict`` (sat/unsat/unknown), ``counterexample`` (the input point of a
sat, else null), ``queries`` (per disjunct: Marabou's exit code and seconds), ``message``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
import warnings
from collections.abc import Iterator
from typing import Any

warnings.filterwarnings("ignore")  # maraboupy warns that its TensorFlow parser is unavailable

from maraboupy import Marabou  # noqa: E402

_NET: Any = None  # the network, read once before the workers fork
_SPEC: dict = {}
_DEADLINE = 0.0


def _solve(k: int) -> tuple[int, str, list | None, float]:
    """Marabou on disjunct ``k``: (k, exit code, input assignment of a sat or None, seconds)."""
    t = time.time()
    left = _DEADLINE - t
    if left < 1.0:
        return k, "TIMEOUT", None, 0.0
    net = _NET
    net.clearProperty()
    inputs = net.inputVars[0].flatten()
    outputs = net.outputVars[0].flatten()
    for var, lo, hi in zip(inputs, _SPEC["lower"], _SPEC["upper"]):
        net.setLowerBound(int(var), float(lo))
        net.setUpperBound(int(var), float(hi))
    conj = _SPEC["disjuncts"][k]
    for row, d in zip(conj["C"], conj["d"]):  # C y + d >= 0  <=>  sum(-C_j y_j) <= d
        nz = [j for j, c in enumerate(row) if c != 0.0]
        net.addInequality([int(outputs[j]) for j in nz], [-float(row[j]) for j in nz], float(d))
    options = Marabou.createOptions(timeoutInSeconds=max(1, int(left)), verbosity=0)
    code, vals, _ = net.solve(options=options, verbose=False)
    x = [float(vals[int(v)]) for v in inputs] if code == "sat" else None
    return k, code, x, time.time() - t


def main() -> int:
    global _NET, _SPEC, _DEADLINE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", required=True)
    ap.add_argument("--spec", required=True, help="JSON: lower, upper, disjuncts [{C, d}]")
    ap.add_argument("--timeout", type=float, required=True)
    ap.add_argument("--start", type=float, default=None, help="epoch second the harness started this process")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    _DEADLINE = (args.start or time.time()) + args.timeout
    with open(args.spec) as fh:
        _SPEC = json.load(fh)
    _NET = Marabou.read_onnx(args.net)
    n = len(_SPEC["disjuncts"])
    queries: dict[int, tuple[str, float]] = {}
    verdict, cex = "unsat", None
    answers: Iterator[tuple[int, str, list | None, float]]
    if args.threads > 1:
        pool = mp.get_context("fork").Pool(min(args.threads, n))
        answers = pool.imap_unordered(_solve, range(n))
    else:
        pool, answers = None, map(_solve, range(n))
    for k, code, x, secs in answers:
        queries[k] = (code, round(secs, 3))
        if code == "sat":
            verdict, cex = "sat", x
            break
        if code != "unsat":
            verdict = "unknown"
    if pool is not None:
        pool.terminate()
    if verdict == "unsat" and len(queries) < n:
        verdict = "unknown"
    message = ", ".join(f"disjunct {k}: {c} {s:g}s" for k, (c, s) in sorted(queries.items()))
    with open(args.out, "w") as fh:
        json.dump({"verdict": verdict, "counterexample": cex, "queries": {str(k): v for k, v in queries.items()},
                   "message": message}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
