"""Exact reconstruction selection (issue 24 target: proven optimal on every group of <= 64 units within 10 s).

Synthetic groups: ReLU activations ``X`` (N = 2048 samples) of the last hidden layer (n units) of a random MLP
(32 Gaussian inputs, one hidden ReLU layer of 64, then n ReLU units with small random biases), consumer weight
``W`` (n x m) Gaussian / sqrt(n), ridge ``auto``, keep k = n/2. For each method (``exact``: branch and bound on the
perspective relaxation; ``outer``: outer approximation with its master MILP on HiGHS; ``miqp``: the big-M MIQP on
SCIP) prints one JSON line: seconds, status, objective, lower bound, certified gap, and the method's own counters.
One BLAS thread.

    nice python benchmarks/reconstruction_exact.py --sizes 16,32,64 --outputs 10,64 --seeds 0,1,2 --methods exact,outer
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json

import numpy as np


def mlp_problem(n: int, m: int, seed: int = 0, samples: int = 2048, inputs: int = 32, width: int = 64):
    """The synthetic group of the module doc."""
    from optprune.reconstruction import ReconstructionProblem

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, inputs))
    h = np.maximum(x @ rng.normal(size=(inputs, width)) / np.sqrt(inputs) + 0.1 * rng.normal(size=width), 0.0)
    X = np.maximum(h @ rng.normal(size=(width, n)) * np.sqrt(2.0 / width) + 0.1 * rng.normal(size=n), 0.0)
    return ReconstructionProblem.from_activations(X, rng.normal(size=(n, m)) / np.sqrt(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,32,64")
    parser.add_argument("--outputs", default="10,64")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--methods", default="exact")
    parser.add_argument("--time-limit", type=float, default=10.0)
    args = parser.parse_args()
    from optprune.reconstruction._search import solve_reconstruction

    for n in map(int, args.sizes.split(",")):
        for m in map(int, args.outputs.split(",")):
            for seed in map(int, args.seeds.split(",")):
                problem = mlp_problem(n, m, seed)
                for method in args.methods.split(","):
                    result = solve_reconstruction(problem, n // 2, method, time_limit=args.time_limit)
                    row = {"n": n, "m": m, "k": n // 2, "seed": seed, **result.to_dict()}
                    print(json.dumps({key: (round(v, 6) if isinstance(v, float) else v) for key, v in row.items()}),
                          flush=True)


if __name__ == "__main__":
    main()
