"""optprune beside today's peers (NeuralSAT, Marabou) on VNN-COMP 2021 mnistfc, same machine, limit and threads.

Usage::

    nice -n 5 python benchmarks/vnncomp_peers.py --peer neuralsat --peer-python /tmp/peer_neuralsat/bin/python
        [--peer marabou --peer-python /tmp/peer_marabou/bin/python] [--nets 256x2 256x4]
        [--limits 256x2=120 256x4=60] [--props prop_0_0.03 ...] [--first N] [--threads 2] [--grace 10]
        [--out results/vnncomp_peers] [--allow-dirty]

Every tool runs as its own process, one at a time, on each selected instance, the order of the tools rotating
from one instance to the next so that a change of machine load falls on all of them alike: optprune as
``python -m optprune verify NET PROP --json --threads T --timeout L`` (its command line), NeuralSAT as its
``main.py --net NET --spec PROP --timeout L --device cpu --result_file F --export_cex`` and Marabou through
``benchmarks/_peers/marabou_driver.py`` (one maraboupy query per output disjunct; that file says why). Each gets
``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=T`` (torch's intra-op threads for NeuralSAT, which has no
thread option; Marabou's driver runs T disjunct queries at once), the same limit ``L`` and a hard kill of the
process group at ``L + grace``. The time is end to end, from starting the process to its exit (interpreter
start-up, imports and reading the network included, as VNN-COMP counts). A verdict counts as decided only when
it came within ``L``; one that came later is recorded as ``late``.

Checks: every ``sat`` with a counterexample is re-run through optprune's float64 forward pass of the ONNX
network and the property (:func:`optprune.verification.counterexample.check_counterexample`); a sat whose point
fails, or a sat without a point, is listed as wrong, and so is any verdict that differs from the competition's
(``verdicts_256x2.csv`` / ``verdicts_256x4.csv``) or an unsat where another tool's sat passed the check.

Records go to ``OUT/records.jsonl`` as they arrive (keyed by tool, instance, limit and threads; a rerun resumes
and shares optprune's records between peers); ``OUT/summary.md`` (under the provenance header, with the peers'
versions) gives per instance the verdict and time of every tool beside the competition's verdict and its
fastest 2021 tool (their hardware), then per network and tool the decided count, wrong verdicts, late answers,
the instances a peer decides that optprune leaves open (with times), and on the instances both decide the
per-instance time ratio peer / optprune (geometric mean) and on how many optprune is faster.

Installing the peers (each in its own venv, never in the project's; only the package index is needed):

- NeuralSAT 0.2.17 (CPU here)::

      python3 -m venv /tmp/peer_neuralsat
      /tmp/peer_neuralsat/bin/pip install torch==2.13.0 torchvision==0.28.0 neuralsat==0.2.17

  torch must be the package index's own 2.13.0 build, not a ``+cpu`` wheel: NeuralSAT's ONNX reader imports
  torchvision, and the index's torchvision 0.28.0 is linked against that build (with a ``+cpu`` torch the import
  fails with ``operator torchvision::nms does not exist``). That build runs on CPU where there is no GPU; the
  harness passes ``--device cpu``. NeuralSAT also installs gurobipy and uses it with the pip package's
  size-limited licence.
- Marabou 2.0.0::

      python3 -m venv /tmp/peer_marabou
      /tmp/peer_marabou/bin/pip install maraboupy==2.0.0 onnx onnxruntime

  (maraboupy's ONNX reader needs onnx and onnxruntime, which the wheel does not require).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _siblings import sibling

from optprune.bench import RecordStore
from optprune.bench._provenance import script_command, start_run
from optprune.data import data_dir
from optprune.io import network_from_onnx
from optprune.verification.counterexample import check_counterexample
from optprune.verification.vnnlib import read_vnnlib

TOOLS = ("optprune", "neuralsat", "marabou")
PEERS = {  # name -> (distribution to look for in the peer's Python, how to install it)
    "neuralsat": ("neuralsat", "python3 -m venv /tmp/peer_neuralsat && /tmp/peer_neuralsat/bin/pip install "
                               "torch==2.13.0 torchvision==0.28.0 neuralsat==0.2.17"),
    "marabou": ("maraboupy", "python3 -m venv /tmp/peer_marabou && /tmp/peer_marabou/bin/pip install "
                             "maraboupy==2.0.0 onnx onnxruntime"),
}
DECIDED = ("sat", "unsat")
HERE = Path(__file__).resolve().parent


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peer_info(name: str, python: str) -> dict:
    """Versions of the peer's package, torch and Python in ``python``; for NeuralSAT the path of its ``main.py``.

    Raises SystemExit with the install command when ``python`` is missing or lacks the package.
    """
    dist, install = PEERS[name]
    code = ("import importlib.metadata as m, json, platform\n"
            f"d = m.distribution({dist!r})\n"
            "v = {'version': d.version, 'python_version': platform.python_version()}\n"
            "for p in ('torch', 'gurobipy', 'onnxruntime'):\n"
            "    try: v[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\n"
            "v['main'] = str(d.locate_file('src/main.py'))\n"
            "print(json.dumps(v))\n")
    if not Path(python).is_file():
        raise SystemExit(f"--peer {name}: --peer-python {python!r} does not exist; install the peer with: {install}")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(f"--peer {name}: {python} has no {dist} ({proc.stderr.strip().splitlines()[-1:]}); "
                         f"install the peer with: {install}")
    info = json.loads(proc.stdout)
    if name == "neuralsat" and not Path(info["main"]).is_file():
        raise SystemExit(f"--peer neuralsat: {dist} {info['version']} in {python} has no src/main.py; install "
                         f"the peer with: {install}")
    return info


def parse_assignment(text: str, n_inputs: int) -> np.ndarray | None:
    """The input point ``(X_i v)`` of a VNN-COMP counterexample string (NeuralSAT's result file); None if absent."""
    import re

    values = {int(i): float(v) for i, v in re.findall(r"\(X_(\d+)\s+([-+0-9.eEinfa]+)\)", text)}
    if not values:
        return None
    if sorted(values) != list(range(n_inputs)):
        raise ValueError(f"counterexample gives X_{min(values)}..X_{max(values)} ({len(values)} values), "
                         f"the network has {n_inputs} inputs")
    return np.array([values[i] for i in range(n_inputs)])


def _run(cmd: list[str], env: dict, cwd: str, hard_s: float, workdir: Path) -> tuple[int | None, float, str, str]:
    """Run ``cmd`` in its own process group; kill the group at ``hard_s``. (exit code or None if killed,
    wall seconds, stdout, the tail of stderr)."""
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=hard_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        wall = time.perf_counter() - t
    try:  # children left behind by a tool that exited (e.g. pool workers) go too
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return (code, wall, out_path.read_bytes().decode("utf-8", "replace"),
            err_path.read_bytes()[-3000:].decode("utf-8", "replace"))


def run_tool(tool: str, onnx: Path, prop: Path, limit_s: float, threads: int, grace: float, peers: dict,
             case, n_inputs: int) -> dict:
    """One tool on one instance: verdict, end-to-end seconds, counterexample (input point) and a message."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    rec: dict = {"tool": tool, "load_1m": round(os.getloadavg()[0], 2)}  # the machine's load as the tool starts
    with tempfile.TemporaryDirectory(prefix=f"peers_{tool}_") as tmp:
        work = Path(tmp)
        cwd = str(work)
        if tool == "optprune":
            cmd = [sys.executable, "-m", "optprune", "verify", str(onnx), str(prop), "--json", "--threads",
                   str(threads), "--timeout", f"{limit_s:g}"]
        elif tool == "neuralsat":
            result = work / "result.txt"
            main = peers["neuralsat"]["main"]
            cmd = [peers["neuralsat"]["python"], main, "--net", str(onnx), "--spec", str(prop), "--timeout",
                   f"{limit_s:g}", "--device", "cpu", "--verbosity", "0", "--result_file", str(result),
                   "--export_cex"]
            cwd = str(Path(main).parent)  # its modules import each other as top-level names
        elif tool == "marabou":
            spec = work / "spec.json"
            spec.write_text(json.dumps({"lower": case.lower.tolist(), "upper": case.upper.tolist(),
                                        "disjuncts": [{"C": c.C.tolist(), "d": c.d.tolist()}
                                                      for c in case.disjuncts]}))
            result = work / "result.json"
            cmd = [peers["marabou"]["python"], str(HERE / "_peers" / "marabou_driver.py"), "--net", str(onnx),
                   "--spec", str(spec), "--timeout", f"{limit_s:g}", "--threads", str(threads), "--out",
                   str(result), "--start", f"{time.time():.3f}"]
        else:
            raise ValueError(f"unknown tool {tool!r}; known: {', '.join(TOOLS)}")
        code, wall, stdout, tail = _run(cmd, env, cwd, limit_s + grace, work)
        rec.update(time_s=round(wall, 3), exit_code=code)
        verdict, x, message = "error", None, ""
        try:
            if code is None:
                verdict, message = "killed", f"killed at {limit_s + grace:g} s (limit + grace)"
            elif tool == "optprune":
                lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
                payload = json.loads(lines[-1]) if lines else None
                if payload is None:
                    raise ValueError("no JSON object on stdout")
                verdict, message = payload["verdict"], payload.get("message") or ""
                rec["decided_by"] = payload.get("decided_by")
                if payload.get("counterexample") is not None:
                    x = np.asarray(payload["counterexample"], dtype=np.float64).reshape(-1)
            elif tool == "neuralsat":
                text = result.read_text() if result.exists() else ""
                if not text:
                    raise ValueError("no result file")
                verdict = text.splitlines()[0].strip().split(",")[0]
                x = parse_assignment(text, n_inputs) if verdict == "sat" else None
            else:
                payload = json.loads(result.read_text()) if result.exists() else None
                if payload is None:
                    raise ValueError("no result file")
                verdict, message = payload["verdict"], payload.get("message", "")
                x = None if payload.get("counterexample") is None else np.asarray(payload["counterexample"])
        except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
            verdict, message = "error", f"{type(exc).__name__}: {exc}"
        if verdict == "error":
            rec["output_tail"] = (stdout[-1000:] + "\n" + tail[-1500:]).strip()
    rec["verdict"] = verdict
    rec["message"] = message[:500]
    rec["late"] = verdict in DECIDED and wall > limit_s
    rec["cex_ok"] = None
    if verdict == "sat" and x is not None:
        ok, y = check_counterexample(_NETS[onnx], case, x)
        rec["cex_ok"], rec["cex_output"] = bool(ok), [round(float(v), 6) for v in y]
    return rec


_NETS: dict = {}


def decided(rec: dict | None) -> bool:
    """A sat/unsat that came within the limit."""
    return rec is not None and rec["verdict"] in DECIDED and not rec["late"]


def wrong_reason(rec: dict, expected: str, others: list[dict]) -> str:
    """Why ``rec``'s verdict is wrong ("" if it is not): the competition disagrees, a sat without a checked point,
    or an unsat where another tool's sat passed the check."""
    if rec["verdict"] not in DECIDED:
        return ""
    if expected in DECIDED and rec["verdict"] != expected:
        return f"competition: {expected}"
    if rec["verdict"] == "sat" and rec.get("cex_ok") is not True:
        return "sat without a counterexample that passes the float64 check"
    if rec["verdict"] == "unsat" and any(o["verdict"] == "sat" and o.get("cex_ok") for o in others):
        return "another tool's checked counterexample"
    return ""


def _cell(rec: dict | None) -> str:
    if rec is None:
        return "-"
    v = rec["verdict"] + (" (late)" if rec["late"] else "")
    if rec["verdict"] == "sat":
        v += {True: " ✓", False: " ✗ cex fails", None: " (no cex)"}[rec.get("cex_ok")]
    return f"{v} {rec['time_s']:.1f}"


def gmean(values: list[float]) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values))) if values else float("nan")


def summary_markdown(selected: list[tuple[str, str, float, str]], recs: dict, tools: list[str], truth: dict,
                     fastest: dict, header: str, threads: int, peer_lines: list[str]) -> str:
    """The per-instance table and per-network/tool figures (module doc)."""
    lines = [header.rstrip(), *peer_lines, "",
             f"# VNN-COMP 2021 mnistfc: optprune beside {', '.join(t for t in tools if t != 'optprune')} "
             f"(--threads {threads}, one instance and one tool at a time)", "",
             "| network | property | competition | fastest 2021 tool (s, their hardware) | limit (s) | "
             + " | ".join(f"{t} (s)" for t in tools) + " |",
             "|---|---|---|---|---|" + "---|" * len(tools)]
    for net, prop, limit, _ in selected:
        row = [recs.get((t, net, prop)) for t in tools]
        lines.append(f"| {net.replace('mnist-net_', '').replace('.onnx', '')} | {prop.replace('.vnnlib', '')} | "
                     f"{truth.get((net, prop), '-')} | {fastest.get((net, prop)) or '-'} | {limit:g} | "
                     + " | ".join(_cell(r) for r in row) + " |")
    lines += ["", "✓: counterexample passes optprune's float64 forward pass of the property; times are end to end "
              "(process start to exit).", ""]
    nets = list(dict.fromkeys(s[0] for s in selected))
    lines += ["| network | limit (s) | tool | run | decided | sat | unsat | wrong | late | killed/error | "
              "median time of decided (s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    wrong_rows = []
    for net in nets:
        insts = [s for s in selected if s[0] == net]
        for t in tools:
            rs: list[tuple[tuple, dict]] = [(s, recs[(t, net, s[1])]) for s in insts if (t, net, s[1]) in recs]
            dec = [r for _, r in rs if decided(r)]
            wr = []
            for s, r in rs:
                others = [o for o in (recs.get((u, net, s[1])) for u in tools if u != t) if o is not None]
                why = wrong_reason(r, truth.get((net, s[1]), ""), others)
                if why:
                    wr.append(r)
                    wrong_rows.append(f"- {t} {net} {s[1]}: {r['verdict']} ({why})")
            limits = sorted({s[2] for s in insts})
            lines.append(f"| {net.replace('.onnx', '')} | {'/'.join(f'{v:g}' for v in limits)} | {t} | {len(rs)} | "
                         f"{len(dec)} | {sum(r['verdict'] == 'sat' for r in dec)} | "
                         f"{sum(r['verdict'] == 'unsat' for r in dec)} | {len(wr)} | {sum(r['late'] for _, r in rs)} | "
                         f"{sum(r['verdict'] in ('killed', 'error') for _, r in rs)} | "
                         f"{statistics.median([r['time_s'] for r in dec]) if dec else float('nan'):.1f} |")
    lines += ["", "Wrong verdicts: " + ("none" if not wrong_rows else ""), *wrong_rows, ""]
    for t in tools:
        if t == "optprune":
            continue
        lines += [f"## {t} against optprune", ""]
        for net in nets:
            insts = [s for s in selected if s[0] == net and (t, net, s[1]) in recs and ("optprune", net, s[1]) in recs]
            if not insts:
                continue
            peer_only = [(s, recs[(t, net, s[1])], recs[("optprune", net, s[1])]) for s in insts
                         if decided(recs[(t, net, s[1])]) and not decided(recs[("optprune", net, s[1])])]
            ours_only = [s for s in insts if decided(recs[("optprune", net, s[1])])
                         and not decided(recs[(t, net, s[1])])]
            both = [(recs[(t, net, s[1])]["time_s"], recs[("optprune", net, s[1])]["time_s"]) for s in insts
                    if decided(recs[(t, net, s[1])]) and decided(recs[("optprune", net, s[1])])]
            peer_dec = [s for s in insts if decided(recs[(t, net, s[1])])]
            ahead = sum(1 for s in peer_dec if decided(recs[("optprune", net, s[1])])
                        and recs[("optprune", net, s[1])]["time_s"] < recs[(t, net, s[1])]["time_s"])
            ratios = [p / o for p, o in both]
            name = net.replace("mnist-net_", "").replace(".onnx", "")
            lines.append(f"- **{name}** ({len(insts)} instances): {t} decides {len(peer_dec)}, optprune "
                         f"{sum(decided(recs[('optprune', net, s[1])]) for s in insts)}; both decide {len(both)}, "
                         f"time ratio {t} / optprune geometric mean {gmean(ratios):.2f} "
                         f"(min {min(ratios, default=0):.2f}, "
                         f"max {max(ratios, default=0):.2f}), optprune faster on {sum(r > 1 for r in ratios)}; "
                         f"optprune ahead (decides, and faster) on {ahead} of the {len(peer_dec)} instances {t} "
                         f"decides; optprune alone decides {len(ours_only)}.")
            for s, r, o in peer_only:
                lines.append(f"  - {t} decides, optprune leaves open: {s[1].replace('.vnnlib', '')} — {t} "
                             f"{r['verdict']} in {r['time_s']:.1f} s; optprune {o['verdict']} after "
                             f"{o['time_s']:.1f} s")
        lines.append("")
    notes = sorted({f"{s[0].replace('mnist-net_', '').replace('.onnx', '')}: {s[2]:g} s here, the competition's "
                    f"limit is {s[3]} s" for s in selected if float(s[3]) != s[2]})
    if notes:
        lines += ["Limits below the competition's: " + "; ".join(notes) + ".", ""]
    loads = [r["load_1m"] for r in recs.values() if "load_1m" in r]
    if loads:
        lines += [f"Machine load (1-minute load average as each tool started, {os.cpu_count()} logical cores): "
                  f"median {statistics.median(loads):.1f}, max {max(loads):.1f}; other jobs on the machine slow "
                  "every tool alike only on average, which is why the tools alternate per instance.", ""]
    lines += ["The competition's verdicts and fastest 2021 tools are from `verdicts_256x2.csv` / `verdicts_256x4.csv` "
              "(`unknown`: no 2021 tool decided it; there a sat is checked by its counterexample, an unsat only by the "
              "other tools' answers here). Decided = sat or unsat within the limit; `late`: a verdict after the "
              "limit, not counted; `killed`: no answer by limit + grace."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", action="append", default=[], choices=sorted(PEERS),
                    help="a peer to run beside optprune (repeat for several; each with its --peer-python)")
    ap.add_argument("--peer-python", action="append", default=[], metavar="PATH",
                    help="the Python of the peer's venv, in the order of --peer")
    ap.add_argument("--no-optprune", action="store_true", help="run only the peers (optprune's records resumed)")
    ap.add_argument("--nets", nargs="+", default=["256x2", "256x4"], choices=["256x2", "256x4"])
    ap.add_argument("--limits", nargs="+", default=[], metavar="NET=S",
                    help="seconds per instance per network (default: instances.csv's, 120 and 300)")
    ap.add_argument("--props", nargs="+", default=None, metavar="NAME", help="only these properties")
    ap.add_argument("--first", type=int, default=None, metavar="N", help="only the first N instances per network")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grace", type=float, default=10.0, help="seconds past the limit before the hard kill")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/vnncomp_peers"))
    ap.add_argument("--allow-dirty", action="store_true")
    args = ap.parse_args(argv)
    if len(args.peer) != len(args.peer_python):
        ap.error(f"give one --peer-python per --peer (got {len(args.peer)} --peer, {len(args.peer_python)} "
                 f"--peer-python); install commands: " + "; ".join(f"{k}: {v[1]}" for k, v in PEERS.items()))
    if args.threads < 1 or args.grace < 0:
        ap.error(f"--threads must be >= 1 and --grace >= 0, got {args.threads} and {args.grace}")
    limits: dict[str, float] = {}
    for item in args.limits:
        net, _, value = item.partition("=")
        try:
            limits[net] = float(value)
        except ValueError:
            ap.error(f"--limits: {item!r} is not NET=SECONDS (e.g. 256x4=60)")
        if net not in ("256x2", "256x4") or limits[net] <= 0:
            ap.error(f"--limits: {item!r}: NET is 256x2 or 256x4 and SECONDS > 0")
    peers = {}
    for name, python in zip(args.peer, args.peer_python):
        peers[name] = {**peer_info(name, python), "python": python}
    tools = ([] if args.no_optprune else ["optprune"]) + list(peers)
    if not tools:
        ap.error("nothing to run: give --peer, or drop --no-optprune")
    if args.no_optprune:
        tools = ["optprune", *peers]  # optprune's records are read from the store, never run

    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    folder = data_dir(args.data_dir) / "vnncomp2021-mnistfc"
    with open(folder / "instances.csv") as fh:
        instances = [row for row in csv.reader(fh) if row]
    truth, fastest = sibling("vnncomp_mnistfc").read_verdicts([folder / "verdicts_256x2.csv",
                                                                folder / "verdicts_256x4.csv"])
    selected = []
    for onnx_name, prop, comp_limit in instances:
        net = onnx_name.replace("mnist-net_", "").replace(".onnx", "")
        if net in args.nets:
            selected.append((onnx_name, prop, limits.get(net, float(comp_limit)), comp_limit))
    if args.props:
        wanted = {p if p.endswith(".vnnlib") else f"{p}.vnnlib" for p in args.props}
        unknown = wanted - {s[1] for s in selected}
        if unknown:
            ap.error(f"--props: no such property: {', '.join(sorted(unknown))}")
        selected = [s for s in selected if s[1] in wanted]
    if args.first:
        selected = [s for s in selected if [t[1] for t in selected if t[0] == s[0]].index(s[1]) < args.first]

    recs: dict = {}
    done_before, total = 0, 0
    with RecordStore(args.out / "records.jsonl") as store:
        for i, (onnx_name, prop, limit_s, _) in enumerate(selected):
            onnx, prop_path = folder / onnx_name, folder / prop
            order = tools[i % len(tools):] + tools[:i % len(tools)]
            for tool in order:
                rid = f"{tool}|{onnx_name}|{prop}|{limit_s:g}|threads={args.threads}"
                total += 1
                if rid in store:
                    done_before += 1
                elif tool == "optprune" and args.no_optprune:
                    continue
                else:
                    net = _NETS.setdefault(onnx, network_from_onnx(onnx))
                    parsed = read_vnnlib(prop_path, net.input_size, net.output_size)
                    if len(parsed.cases) != 1:
                        raise SystemExit(f"{prop}: {len(parsed.cases)} input regions; this harness handles one")
                    rec = run_tool(tool, onnx, prop_path, limit_s, args.threads, args.grace, peers,
                                   parsed.cases[0], net.input_size)
                    version = "" if tool == "optprune" else peers[tool]["version"]
                    store.append({"id": rid, "network": onnx_name, "property": prop, "limit_s": limit_s,
                                  "threads": args.threads, "version": version, **rec})
                r = recs[(tool, onnx_name, prop)] = store.records[rid]
                log(f"{i + 1}/{len(selected)} {onnx_name} {prop} {tool}: {r['verdict']} in {r['time_s']:.1f}s"
                    + (" (late)" if r["late"] else "") + (f" cex_ok={r['cex_ok']}" if r["verdict"] == "sat" else ""))
    run.resumed(done_before, total)
    peer_lines = [f"- peer {name}: {PEERS[name][0]} {p['version']} (Python {p['python_version']}"
                  + "".join(f", {k} {p[k]}" for k in ("torch", "gurobipy", "onnxruntime") if k in p) + ")"
                  for name, p in peers.items()]
    text = summary_markdown(selected, recs, tools, truth, fastest, run.header(), args.threads, peer_lines)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
