r"""Summary tables (Markdown, CSV) and plots (PNG, matplotlib Agg) of a benchmark's records.

One row per (network, query, eps, backend, pruning variant):

* ``accuracy``, ``params``: of the variant (held-out test fold; nonzero parameters);
  ``accuracy_loss``: points below the unpruned row (the table marks a loss above 1 point);
* ``make_s``: seconds to make the variant (pruning decision plus fine-tuning; cached variants keep the time
  measured when they were made);
* ``unstable``, ``binaries``, ``nonzeros``: medians over the instances (nonzeros of the MILP's constraint matrix);
* ``decided``: instances solved within the time limit (see :mod:`optprune.bench._tasks`);
* ``median_s``, ``max_s``: time to verdict over all instances, an instance not
  decided counting as the time limit (so they are lower bounds when some are not decided);
* ``speedup``: the unpruned row's ``median_s`` over this row's;
  ``speedup_geo``: geometric mean over the instances of
  :math:`t_\mathrm{unpruned} / t_\mathrm{pruned}` (same capped times);
* ``sat`` / ``unsat``: adversarial examples found / robustness proven.

Plots: ``cactus.png`` (instances decided vs time, one line per variant),
``scatter.png`` (time before vs after pruning per instance, log-log, diagonal;
undecided instances at the time limit, hollow), ``accuracy_time.png``
(accuracy vs median time per variant).
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from optprune.bench._store import atomic_file, atomic_write

__all__ = ["summarize", "write_tables", "write_plots", "surrogate_summary", "write_surrogate", "markdown_table",
           "CHECKPOINTS"]

CHECKPOINTS = (0.1, 0.25, 0.5, 1.0)  # fractions of the surrogate time limit


def _group_key(t: dict) -> tuple:
    return (t["network"], t["query"], t.get("eps"), t["backend"])


def _variant_key(t: dict) -> tuple:
    return (t["pruning"], t["ratio"], t["finetuned"])


def _capped_time(rec: dict, limit: float) -> float:
    t = rec.get("time_s")
    if not rec.get("decided") or not isinstance(t, (int, float)):
        return float(limit)
    return float(min(t, limit))


def _instance_times(tasks: list[dict], records: dict) -> dict:
    """{(group, variant): {(instance, rep): capped time}} and per-variant record lists."""
    times: dict = defaultdict(dict)
    for t in tasks:
        rec = records.get(t["id"])
        if rec is None:
            continue
        times[(_group_key(t), _variant_key(t))][(t["instance"], t["rep"])] = _capped_time(rec, t["time_limit"])
    return times


def _median(values: list) -> float | None:
    vals = [v for v in values if isinstance(v, (int, float))]
    return float(statistics.median(vals)) if vals else None


def summarize(tasks: list[dict], records: dict) -> list[dict]:
    """The summary rows (module doc), in config order: groups, then unpruned first, then by method and ratio."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    order: dict = {}
    for t in tasks:
        g, v = _group_key(t), _variant_key(t)
        groups[g][v].append(t)
        order.setdefault(g, len(order))
    times = _instance_times(tasks, records)
    rows = []
    for g in sorted(groups, key=order.get):
        base_key = next((v for v in groups[g] if v[0] == "unpruned"), None)
        base_times = times.get((g, base_key), {}) if base_key else {}
        base_median = base_accuracy = None
        for v in groups[g]:
            vtasks = groups[g][v]
            recs = [records[t["id"]] for t in vtasks if t["id"] in records]
            first = vtasks[0]
            limit = first["time_limit"]
            capped = list(times.get((g, v), {}).values())
            row = {
                "network": g[0], "query": g[1], "eps": g[2], "backend": g[3],
                "pruning": v[0], "scorer": first.get("scorer"), "decision": first.get("decision"), "ratio": v[1],
                "finetuned": v[2], "accuracy": first.get("accuracy"), "params": first.get("params"),
                "unstable": _median([r.get("unstable") for r in recs]),
                "binaries": _median([r.get("binaries") for r in recs]),
                "constraints": _median([r.get("constraints") for r in recs]),
                "nonzeros": _median([r.get("nonzeros") for r in recs]), "make_s": first.get("make_s"),
                "instances": len(vtasks), "done": len(recs),
                "decided": sum(1 for r in recs if r.get("decided")),
                "median_s": _median(capped), "max_s": max(capped) if capped else None,
                "time_limit": limit,
                "sat": sum(1 for r in recs if r.get("verdict") == "sat"),
                "unsat": sum(1 for r in recs if r.get("verdict") == "unsat"),
                "errors": sum(1 for r in recs if r.get("verdict") == "error"),
            }
            if v == base_key:
                base_median = row["median_s"]
                base_accuracy = row["accuracy"]
            rows.append(row)
        for row in rows:
            if (row["network"], row["query"], row["eps"], row["backend"]) != g:
                continue
            v = (row["pruning"], row["ratio"], row["finetuned"])
            row["speedup"] = (base_median / row["median_s"]) if base_median and row["median_s"] else None
            row["accuracy_loss"] = (100 * (base_accuracy - row["accuracy"])
                                    if base_accuracy is not None and row["accuracy"] is not None else None)
            mine = times.get((g, v), {})
            pairs = [(base_times[k], mine[k]) for k in mine if k in base_times and mine[k] > 0 and base_times[k] > 0]
            row["speedup_geo"] = float(np.exp(np.mean([math.log(a / b) for a, b in pairs]))) if pairs else None
    rank = {"unpruned": 0}
    rows.sort(key=lambda r: (order[(r["network"], r["query"], r["eps"], r["backend"])],
                             rank.get(r["pruning"], 1), r["pruning"], r["ratio"], r["finetuned"]))
    return rows


def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.{digits}f}"
    return str(v)


COLUMNS = [
    ("network", "network"), ("query", "query"), ("eps", "eps"), ("backend", "backend"), ("pruning", "pruning"),
    ("ratio", "ratio"), ("accuracy", "accuracy"), ("params", "params"), ("make_s", "made in (s)"),
    ("unstable", "unstable (median)"), ("binaries", "binaries (median)"), ("nonzeros", "MILP nonzeros (median)"),
    ("decided", "decided"), ("median_s", "median time (s)"),
    ("max_s", "max time (s)"), ("speedup", "speed-up"), ("speedup_geo", "speed-up (geo. mean)"),
    ("sat", "adversarial found"), ("unsat", "proven robust"),
]


def markdown_table(rows: list[dict]) -> str:
    """The summary as a Markdown table (times of undecided instances count as the limit: marked ``>=``)."""
    if not rows:
        return "(no records)\n"
    drop = set()
    for key in ("query", "eps", "backend"):
        if len({r.get(key) for r in rows}) == 1:
            drop.add(key)
    cols = [(k, h) for k, h in COLUMNS if k not in drop]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k)
            if k == "accuracy" and isinstance(v, float):
                loss = r.get("accuracy_loss")
                flag = f" (-{loss:.2f} pt, over 1 pt)" if loss is not None and loss > 1.0 else ""
                cells.append(f"{100 * v:.2f}%{flag}")
            elif k == "make_s":
                cells.append("-" if v is None else f"{v:.1f}")
            elif k == "decided":
                cells.append(f"{r['decided']}/{r['instances']}" + ("" if r["done"] == r["instances"] else f" ({r['done']} run)"))
            elif k in ("median_s", "max_s") and isinstance(v, float):
                cells.append((">=" if v >= r["time_limit"] - 1e-9 else "") + f"{v:.2f}")
            elif k in ("speedup", "speedup_geo") and isinstance(v, float):
                cells.append(f"{v:.2f}x")
            elif k == "ratio":
                cells.append("-" if r["pruning"] == "unpruned" else f"{v:g}" + ("" if r["finetuned"] else " (no ft)"))
            elif k == "eps" and isinstance(v, float):
                cells.append(f"{v:g}")
            elif k in ("unstable", "binaries", "nonzeros") and isinstance(v, float):
                cells.append(f"{v:g}")
            else:
                cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    limits = sorted({r["time_limit"] for r in rows})
    note = (f"\nTime limit {', '.join(f'{x:g}' for x in limits)} s per instance; an instance not decided within it "
            "counts as the limit in the times (marked >=) and speed-ups.\n")
    return "\n".join(lines) + "\n" + note


def _with_header(header: str, body: str) -> str:
    """``body`` under the provenance ``header`` (:func:`optprune.bench._provenance.provenance_header`), if any."""
    return f"{header.rstrip()}\n\n{body}" if header else body


def _write_csv(path: Path, rows: list[dict], keys: list[str]) -> None:
    """``rows`` as CSV with columns ``keys`` (None as an empty cell), written atomically."""
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})


def _savefig(fig, path: Path) -> None:
    with atomic_file(path) as tmp:  # the same suffix: matplotlib picks PNG from it
        fig.savefig(tmp, dpi=120)


def write_tables(rows: list[dict], out: Path, header: str = "") -> dict:
    """``summary.md`` (``header`` first: the run's provenance) and ``summary.csv`` in ``out``."""
    md = out / "summary.md"
    atomic_write(md, _with_header(header, markdown_table(rows)))
    path = out / "summary.csv"
    keys = list(rows[0].keys()) if rows else [k for k, _ in COLUMNS]
    _write_csv(path, rows, keys)
    return {"markdown": md, "csv": path}


# ----------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _plain_log_ticks(ax) -> None:
    """Plain numbers (0.5, 2, 10) instead of powers of ten on a log x axis (minor labels only within a decade)."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    axis = ax.xaxis
    lo, hi = sorted(ax.get_xlim())
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(FormatStrFormatter("%g") if lo > 0 and hi / lo < 12 else NullFormatter())


def _vorder(v: tuple) -> tuple:
    return (v[0] != "unpruned", v[0], v[1], v[2])


def _label(v: tuple) -> str:
    pruning, ratio, ft = v
    if pruning == "unpruned":
        return "unpruned"
    return f"{pruning} {ratio:g}" + ("" if ft else " (no ft)")


def _grid(n: int):
    plt = _plt()
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat[:n])


def _title(g: tuple, groups: list) -> str:
    parts = [g[0]]
    if len({x[1] for x in groups}) > 1:
        parts.append(g[1])
    if g[2] is not None:
        parts.append(f"eps {g[2]:g}")
    if len({x[3] for x in groups}) > 1:
        parts.append(g[3])
    return ", ".join(parts)


def write_plots(rows: list[dict], tasks: list[dict], records: dict, out: Path) -> dict:
    """cactus.png, scatter.png, accuracy_time.png (module doc)."""
    plt = _plt()
    by_group: dict = defaultdict(lambda: defaultdict(list))
    for t in tasks:
        rec = records.get(t["id"])
        if rec is not None:
            by_group[_group_key(t)][_variant_key(t)].append((t, rec))
    groups = list(by_group)
    files = {}
    if not groups:
        return files

    # Cactus: instances decided vs time.
    _, fig, axes = _grid(len(groups))
    for ax, g in zip(axes, groups):
        limit = None
        for v, items in sorted(by_group[g].items(), key=lambda kv: _vorder(kv[0])):
            limit = items[0][0]["time_limit"]
            ts = sorted(float(r["time_s"]) for _, r in items if r.get("decided") and r.get("time_s") is not None)
            xs = [ts[0] if ts else limit] + ts + [limit]
            ys = [0] + list(range(1, len(ts) + 1)) + [len(ts)]
            ax.step(xs, ys, where="post", label=f"{_label(v)} ({len(ts)}/{len(items)})",
                    lw=2.2 if v[0] == "unpruned" else 1.4, color="black" if v[0] == "unpruned" else None)
        ax.set_xscale("log")
        _plain_log_ticks(ax)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("instances decided")
        ax.set_title(_title(g, groups))
        ax.axvline(limit, color="grey", ls=":", lw=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    files["cactus"] = out / "cactus.png"
    _savefig(fig, files["cactus"])
    plt.close(fig)

    # Scatter: time before (unpruned) vs after pruning, per instance.
    _, fig, axes = _grid(len(groups))
    for ax, g in zip(axes, groups):
        base = next((v for v in by_group[g] if v[0] == "unpruned"), None)
        if base is None:
            ax.set_title(_title(g, groups) + " (no unpruned baseline)")
            continue
        limit = by_group[g][base][0][0]["time_limit"]
        bt = {(t["instance"], t["rep"]): _capped_time(r, limit) for t, r in by_group[g][base]}
        lo = limit
        for v, items in sorted(by_group[g].items(), key=lambda kv: _vorder(kv[0])):
            if v == base:
                continue
            pts = [(bt[(t["instance"], t["rep"])], _capped_time(r, limit), bool(r.get("decided")))
                   for t, r in items if (t["instance"], t["rep"]) in bt]
            if not pts:
                continue
            xs, ys, dec = (np.array(a) for a in zip(*pts))
            lo = min(lo, xs.min(), ys.min())
            sc = ax.scatter(xs[dec], ys[dec], s=18, label=_label(v))
            ax.scatter(xs[~dec], ys[~dec], s=24, facecolors="none", edgecolors=sc.get_facecolor()[0] if len(xs[dec]) else "C0")
        lo = max(lo * 0.7, 1e-3)
        ax.plot([lo, limit * 1.3], [lo, limit * 1.3], color="grey", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, limit * 1.3)
        ax.set_ylim(lo, limit * 1.3)
        ax.set_xlabel("time unpruned (s)")
        ax.set_ylabel("time pruned (s)")
        ax.set_title(_title(g, groups) + " (hollow: not decided)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    files["scatter"] = out / "scatter.png"
    _savefig(fig, files["scatter"])
    plt.close(fig)

    # Accuracy vs median time per variant.
    _, fig, axes = _grid(len(groups))
    for ax, g in zip(axes, groups):
        mine = [r for r in rows if (r["network"], r["query"], r["eps"], r["backend"]) == g]
        methods = sorted({r["pruning"] for r in mine})
        for i, m in enumerate(methods):
            pts = [r for r in mine if r["pruning"] == m and r["median_s"] and r["accuracy"] is not None]
            if not pts:
                continue
            pts.sort(key=lambda r: r["ratio"])
            marker = "*" if m == "unpruned" else "os^dvP<>"[i % 8]
            ax.plot([r["median_s"] for r in pts], [100 * r["accuracy"] for r in pts], marker=marker, ms=12 if m == "unpruned" else 7,
                    ls="-" if len(pts) > 1 else "", label=m, color="black" if m == "unpruned" else None)
            for r in pts:
                if m != "unpruned":
                    ax.annotate(f"{r['ratio']:g}", (r["median_s"], 100 * r["accuracy"]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        _plain_log_ticks(ax)
        ax.set_xlabel("median time to verdict (s)")
        ax.set_ylabel("test-fold accuracy (%)")
        ax.set_title(_title(g, groups))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    files["accuracy_time"] = out / "accuracy_time.png"
    _savefig(fig, files["accuracy_time"])
    plt.close(fig)
    return files


# ----------------------------------------------------------------------------- surrogate


def _best_at(trace: list, t: float) -> float:
    vals = [m for (s, m, *_rest) in trace if s <= t and m is not None]
    return max(vals) if vals else -math.inf


def surrogate_summary(tasks: list[dict], records: dict) -> list[dict]:
    """Per (network, norm, eps, variant): best dense objective at fractions of the time limit vs the dense MIP.

    For every instance and checkpoint ``t`` the best dense margin found by time
    ``t`` is compared with the dense MIP's on the same instance: ``wins`` /
    ``losses`` count instances where the variant is ahead / behind by more than
    1e-6; ``median`` is over the instances (``-inf``, printed ``-``, while more
    than half have no incumbent yet); ``adv`` counts margins > 0 (adversarial
    examples of the dense network).
    """
    groups: dict = defaultdict(lambda: defaultdict(dict))
    order: dict = {}
    for t in tasks:
        rec = records.get(t["id"])
        if rec is None:
            continue
        g = (t["network"], t["norm"], t["eps"])
        order.setdefault(g, len(order))
        groups[g][_variant_key(t)][t["instance"]] = (t, rec)
    rows = []
    for g in sorted(groups, key=order.get):
        base = groups[g].get(("unpruned", 0.0, False), {})
        for v, inst in groups[g].items():
            t0 = next(iter(inst.values()))[0]
            limit = t0["time_limit"]
            row = {"network": g[0], "norm": g[1], "eps": g[2], "pruning": v[0], "ratio": v[1], "finetuned": v[2],
                   "accuracy": t0.get("accuracy"), "params": t0.get("params"), "instances": len(inst),
                   "unstable": _median([r.get("unstable") for _, r in inst.values()]),
                   "time_limit": limit,
                   "polish_gain": _median([(r.get("polishing") or {}).get("gain") for _, r in inst.values()
                                           if (r.get("polishing") or {}).get("applied")]),
                   "errors": sum(1 for _, r in inst.values() if r.get("verdict") == "error")}
            for frac in CHECKPOINTS:
                t = frac * limit
                mine = {k: _best_at(r.get("trace") or [], t) for k, (_, r) in inst.items()}
                vals = sorted(mine.values())
                row[f"median@{frac:g}"] = float(np.median(vals)) if vals else None
                row[f"adv@{frac:g}"] = sum(1 for x in vals if x > 0)
                if base:
                    theirs = {k: _best_at(r.get("trace") or [], t) for k, (_, r) in base.items()}
                    both = [k for k in mine if k in theirs]
                    row[f"wins@{frac:g}"] = sum(1 for k in both if mine[k] > theirs[k] + 1e-6)
                    row[f"losses@{frac:g}"] = sum(1 for k in both if mine[k] < theirs[k] - 1e-6)
            rows.append(row)
    rows.sort(key=lambda r: (order[(r["network"], r["norm"], r["eps"])], r["pruning"] != "unpruned", r["pruning"],
                             r["ratio"], r["finetuned"]))
    return rows


def _surrogate_markdown(rows: list[dict]) -> str:
    if not rows:
        return "(no records)\n"
    head = ["network", "norm", "eps", "variant", "accuracy", "unstable"]
    for frac in CHECKPOINTS:
        head += [f"median margin @{frac:g}T", f"adv @{frac:g}T", f"better/worse than dense @{frac:g}T"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        variant = "dense MIP" if r["pruning"] == "unpruned" else f"{r['pruning']} {r['ratio']:g}" + (
            " fine-tuned" if r["finetuned"] else " not fine-tuned")
        cells = [r["network"], r["norm"], f"{r['eps']:g}", variant,
                 "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%", _fmt(r["unstable"], 0)]
        for frac in CHECKPOINTS:
            med = r.get(f"median@{frac:g}")
            cells += [_fmt(med, 3), f"{r[f'adv@{frac:g}']}/{r['instances']}",
                      "-" if r["pruning"] == "unpruned" or f"wins@{frac:g}" not in r
                      else f"{r[f'wins@{frac:g}']}/{r[f'losses@{frac:g}']}"]
        lines.append("| " + " | ".join(cells) + " |")
    limits = sorted({r["time_limit"] for r in rows})
    note = (f"\nT = {', '.join(f'{x:g}' for x in limits)} s per MIP. Margins are f_t(x) - f_label(x) of the DENSE network at the best "
            "incumbent found by that time (wall time from the task's start, bounds and model building included; "
            "polishing counted at the end). '-': more than half the instances have no incumbent yet.\n")
    return "\n".join(lines) + "\n" + note


def write_surrogate(rows: list[dict], tasks: list[dict], records: dict, out: Path, plots: bool = True,
                    header: str = "") -> dict:
    """``surrogate.md`` (``header`` first), ``surrogate.csv`` and ``surrogate.png`` (median best dense margin vs time)."""
    files = {"markdown": out / "surrogate.md", "csv": out / "surrogate.csv"}
    atomic_write(files["markdown"], _with_header(header, _surrogate_markdown(rows)))
    keys = list(rows[0].keys()) if rows else ["network"]
    _write_csv(files["csv"], rows, keys)
    if not plots or not rows:
        return files
    groups: dict = defaultdict(lambda: defaultdict(list))
    for t in tasks:
        rec = records.get(t["id"])
        if rec is not None:
            groups[(t["network"], t["norm"], t["eps"])][_variant_key(t)].append(rec)
    plt, fig, axes = _grid(len(groups))
    for ax, (g, variants) in zip(axes, groups.items()):
        limit = max(t["time_limit"] for t in tasks)
        grid = np.linspace(0, limit, 200)
        for v, recs in sorted(variants.items(), key=lambda kv: _vorder(kv[0])):
            curves = np.array([[_best_at(r.get("trace") or [], s) for s in grid] for r in recs])
            med = np.median(curves, axis=0)
            med = np.where(np.isfinite(med), med, np.nan)
            ax.plot(grid, med, label="dense MIP" if v[0] == "unpruned" else _label(v),
                    lw=2.2 if v[0] == "unpruned" else 1.4, color="black" if v[0] == "unpruned" else None,
                    ls="-" if v[2] or v[0] == "unpruned" else "--")
        lo, hi = ax.get_ylim()
        if lo <= 0 <= hi:  # the adversarial threshold, when it is in view
            ax.axhline(0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("best dense margin (median over instances)")
        ax.set_title(f"{g[0]}, {g[1]} eps {g[2]:g}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    files["plot"] = out / "surrogate.png"
    _savefig(fig, files["plot"])
    plt.close(fig)
    return files
