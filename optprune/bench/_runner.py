"""The benchmark driver: variants x instances x backends -> tasks -> records -> summary and plots.

Output folder layout (``OUT``)::

    config.toml            the config this run was started with (copied)
    networks/              cached variants: <id>.onnx + <id>.json (accuracy, parameters, decision)
    records.jsonl          one JSON line per (network, pruning, instance, backend, repetition)
    summary.md / .csv      per network and pruning: accuracy, times, decided, speed-up, adversarial
    cactus.png, scatter.png, accuracy_time.png
    surrogate.jsonl, surrogate.md / .csv, surrogate.png     (``--surrogate``)

Every task has a deterministic id (a hash of the variant, the instance, the
query settings, the backend, the time limit and the repetition), so running
the same command again skips what is done and runs only the rest.

A folder belongs to one config: ``config.json`` records the config a run was
started with (after ``--method``), and a run with a different config in a
folder that holds one (or records without one) is an
:class:`~optprune.errors.InvalidParameterError` before any work, so one
``records.jsonl`` never mixes two benchmarks. ``force=True`` (``--force``)
starts such a folder afresh: the files a run writes (:data:`RUN_FILES`, the
``networks/`` cache) are deleted first; other files in the folder are left
alone. Summaries, plots and ``config.*`` are written atomically (temporary
file + :func:`os.replace`); records are fsynced appends (:mod:`._store`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from optprune.bench._config import BenchConfig, QuerySpec, load_config, stable_hash
from optprune.bench._executors import EXECUTORS, execute
from optprune.bench._networks import Variant, prepare_variants
from optprune.bench._store import UNREADABLE_SUFFIX, RecordStore, atomic_write, lock_dir
from optprune.errors import DataNotFoundError, InvalidParameterError

__all__ = ["BenchResult", "run_bench", "build_tasks", "build_surrogate_tasks"]

RECORDS = "records.jsonl"
SURROGATE_RECORDS = "surrogate.jsonl"
CONFIG_RECORD = "config.json"
#: what a run writes into its folder (besides the networks/ cache): deleted by force=True on another config
RUN_FILES = (
    "config.toml", CONFIG_RECORD, RECORDS, RECORDS + UNREADABLE_SUFFIX, SURROGATE_RECORDS,
    SURROGATE_RECORDS + UNREADABLE_SUFFIX, "summary.md", "summary.csv", "cactus.png", "scatter.png",
    "accuracy_time.png", "surrogate.md", "surrogate.csv", "surrogate.png",
)


@dataclass
class BenchResult:
    """What a run produced: the summary rows, the files written, and counts."""

    out: Path
    total: int
    done: int
    ran: int
    rows: list[dict] = field(default_factory=list)
    files: dict = field(default_factory=dict)
    surrogate: bool = False
    wall_s: float = 0.0
    markdown: str = ""

    def to_dict(self) -> dict:
        return {
            "out": str(self.out), "tasks": self.total, "done": self.done, "ran_now": self.ran,
            "surrogate": self.surrogate, "wall_s": round(self.wall_s, 2),
            "files": {k: str(v) for k, v in self.files.items()}, "summary": self.rows,
        }


# ----------------------------------------------------------------------------- instances


def _dataset(variant: Variant) -> str:
    return variant.meta.get("dataset") or "mnist"


def _images(query: QuerySpec, dense: Variant, log: Callable[[str], None]) -> list[dict]:
    """The query's images: indices into its fold, label, and the resolved target class."""
    from optprune.data import load_dataset

    X, y = load_dataset(_dataset(dense), query.split)
    X = X.reshape(X.shape[0], -1)
    net = dense.net
    if X.shape[1] != net.input_size:
        raise InvalidParameterError(
            f"query {query.name!r}: {_dataset(dense)} images have {X.shape[1]} values, "
            f"network {dense.network!r} takes {net.input_size}"
        )
    if query.indices is not None:
        bad = [i for i in query.indices if i >= X.shape[0]]
        if bad:
            raise InvalidParameterError(
                f"config queries ({query.name}).indices: must be < {X.shape[0]} "
                f"(size of the {query.split!r} fold); got {bad[0]}"
            )
        chosen = list(query.indices)
    else:
        pred = net.predict(X)
        pool = [i for i in range(X.shape[0]) if not query.correct_only or pred[i] == y[i]]
        chosen = pool[: query.images]
        if len(chosen) < query.images:
            log(f"query {query.name!r}: only {len(chosen)} suitable images in the {query.split!r} fold")
    out = []
    for i in chosen:
        x0, label = X[i].astype(np.float64), int(y[i])
        if query.target == "runner_up":
            logits = net.forward(x0).copy()
            logits[label] = -np.inf
            target: int | str = int(np.argmax(logits))
        elif query.target == "all":
            target = "all"
        else:
            target = int(query.target)
            if target >= net.output_size:
                raise InvalidParameterError(
                    f"config queries ({query.name}).target: must be a class in 0..{net.output_size - 1}; got {target}"
                )
            if target == label:
                log(f"query {query.name!r}: image {i} has label {label} = target; skipped")
                continue
        out.append({"image": int(i), "label": label, "target": target, "x0": x0})
    return out


def _vnnlib_paths(query: QuerySpec) -> list[str]:
    from optprune.data import data_dir

    paths: list[str] = []
    for pattern in query.paths:
        if "{data}" in pattern:
            try:
                pattern = pattern.replace("{data}", str(data_dir()))
            except DataNotFoundError as exc:
                raise DataNotFoundError(f"query {query.name!r}: {exc}") from None
        found = sorted(glob.glob(pattern))
        if not found:
            raise DataNotFoundError(f"query {query.name!r}: no VNN-LIB file matches {pattern!r}")
        paths += found
    return list(dict.fromkeys(paths))


def _file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _base_task(config: BenchConfig, variant: Variant, backend: str, rep: int) -> dict:
    return {"bench": config.name, **variant.info(), "backend": backend, "threads": config.threads, "rep": rep}


def build_tasks(config: BenchConfig, dense: dict[str, Variant], variants: list[Variant],
                log: Callable[[str], None] = lambda s: None) -> list[tuple[dict, str, None]]:
    """Every (variant, instance, backend, repetition) task of the benchmark, as executor jobs."""
    instances: dict[tuple[str, str], list[dict]] = {}
    for name, d in dense.items():
        for q in config.queries:
            if q.kind == "max_margin":
                imgs = _images(q, d, log)
                instances[(name, q.name)] = [
                    {**img, "eps": eps, "instance": f"{q.split}:{img['image']}"} for img in imgs for eps in q.eps
                ]
            else:
                instances[(name, q.name)] = [{"path": p, "instance": Path(p).name} for p in _vnnlib_paths(q)]
    jobs = []
    for q in config.queries:
        qkey = {"kind": q.kind, "split": q.split, "mode": q.mode, "bounds": q.bounds, "target": q.target}
        if q.method != "mip":  # the default keeps the ids of runs recorded before methods existed
            qkey["method"] = q.method
        for variant in variants:
            for inst in instances[(variant.network, q.name)]:
                for backend in config.backends:
                    for rep in range(config.repetitions):
                        ident = {k: v for k, v in inst.items() if k not in ("x0", "path")}
                        if "path" in inst:  # a property is identified by its contents, not where it lies
                            ident["sha256"] = _file_hash(inst["path"])
                        tid = stable_hash({"variant": variant.id, "query": qkey, "instance": ident, "backend": backend,
                                           "time_limit": config.time_limit, "threads": config.threads, "rep": rep})
                        task = {"id": tid, **_base_task(config, variant, backend, rep), "query": q.name,
                                "kind": q.kind, "mode": q.mode, "bounds": q.bounds, "time_limit": config.time_limit,
                                "method": q.method,
                                **inst}
                        if q.kind == "max_margin":
                            task["x0"] = inst["x0"].tolist()
                        jobs.append((task, variant.id, None))
    # Instance-major order: the before/after pairs of one instance finish close together.
    order = {v.id: i for i, v in enumerate(variants)}
    jobs.sort(key=lambda j: (j[0]["query"], str(j[0].get("eps")), j[0]["instance"], j[0]["rep"], order[j[1]]))
    return jobs


def build_surrogate_tasks(config: BenchConfig, dense: dict[str, Variant], variants: list[Variant],
                          log: Callable[[str], None] = lambda s: None) -> list[tuple[dict, str, str]]:
    """Surrogate tasks: every variant x image x (norm, eps), each scored on its dense network."""
    sg = config.surrogate
    mm = [q for q in config.queries if q.kind == "max_margin"]
    if not mm:
        raise InvalidParameterError("--surrogate needs a [[queries]] table with kind = 'max_margin' (its images)")
    q = mm[0]
    budgets = [("linf", e) for e in (sg.linf_eps or q.eps)] + [("l1", e) for e in sg.l1_eps]
    jobs = []
    for name, d in dense.items():
        imgs = _images(q, d, log)
        if sg.images:
            imgs = imgs[: sg.images]
        for img in imgs:
            if img["target"] == "all":
                logits = d.net.forward(img["x0"]).copy()
                logits[img["label"]] = -np.inf
                img = {**img, "target": int(np.argmax(logits))}
            for norm, eps in budgets:
                for variant in variants:
                    if variant.network != name:
                        continue
                    ident = {"image": img["image"], "label": img["label"], "target": img["target"], "split": q.split,
                             "norm": norm, "eps": eps}
                    tid = stable_hash({"variant": variant.id, "dense": d.id, "instance": ident, "bounds": sg.bounds,
                                       "polish": sg.polish, "time_limit": sg.time_limit, "threads": config.threads,
                                       "kind": "surrogate"})
                    task = {"id": tid, **_base_task(config, variant, "highs", 0), "query": q.name,
                            "kind": "surrogate", "instance": f"{q.split}:{img['image']}", "image": img["image"],
                            "label": img["label"], "target": img["target"], "norm": norm, "eps": eps,
                            "bounds": sg.bounds, "polish": sg.polish, "time_limit": sg.time_limit,
                            "x0": img["x0"].tolist()}
                    jobs.append((task, variant.id, d.id))
    return jobs


# ----------------------------------------------------------------------------- progress


class _Progress:
    """done/total and the running median time, on stderr (rich)."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.times: list[float] = []
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]bench[/]"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("median {task.fields[median]}"), TextColumn("{task.fields[last]}"),
                            TimeElapsedColumn(), console=Console(stderr=True))
        self.task = self.bar.add_task("bench", total=total, completed=done, median="-", last="")
        self.bar.start()

    def update(self, record: dict) -> None:
        t = record.get("time_s")
        if isinstance(t, (int, float)):
            self.times.append(float(t))
        if self.bar is not None:
            med = f"{statistics.median(self.times):.2f}s" if self.times else "-"
            last = (f"{record.get('pruning')} {record.get('ratio', 0):g} {record.get('instance')}: "
                    f"{record.get('verdict')}")
            self.bar.update(self.task, advance=1, median=med, last=last[:60])

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# ----------------------------------------------------------------------------- run


def _config_record(config: BenchConfig) -> dict:
    """What identifies a benchmark: the validated config as JSON, without where its file lies."""
    record = json.loads(json.dumps(asdict(config), default=str))
    record.pop("source", None)
    return record


def _claim_folder(out: Path, config: BenchConfig, force: bool, log: Callable[[str], None]) -> None:
    """Refuse (or, with ``force``, clear) a folder that holds a benchmark of another config (module doc)."""
    marker = out / CONFIG_RECORD
    records = [name for name in (RECORDS, SURROGATE_RECORDS) if (out / name).exists()]
    if not marker.exists() and not records:
        return  # a new folder
    try:
        before = json.loads(marker.read_text()) if marker.exists() else None
    except (OSError, ValueError):
        before = None
    if isinstance(before, dict):
        before.pop("source", None)
    now = _config_record(config)
    if before == now:
        return  # the same benchmark: resume
    if isinstance(before, dict):
        keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        what = f"a benchmark of another config ({before.get('name')!r}; differs in {', '.join(keys)})"
    elif marker.exists():
        what = f"an unreadable {CONFIG_RECORD}"
    else:
        what = f"{', '.join(records)} without the {CONFIG_RECORD} of its config"
    if not force:
        raise InvalidParameterError(
            f"--out {out} holds {what}; a bench folder belongs to one config: resume it with the same config, "
            "choose another folder, or pass --force to start it afresh (deletes its records, summaries and "
            "cached networks)"
        )
    removed = [name for name in RUN_FILES if (out / name).is_file()]
    for name in removed:
        (out / name).unlink()
    if (out / "networks").is_dir():
        shutil.rmtree(out / "networks")
        removed.append("networks/")
    log(f"--force: {out} held {what}; removed {', '.join(removed) or 'nothing'} and started afresh")


def _log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_bench(
    config: BenchConfig | str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    surrogate: bool = False,
    progress: bool = True,
    plots: bool = True,
    log: Callable[[str], None] = _log_to_stderr,
    command: list[str] | None = None,
    method: str | None = None,
    allow_dirty: bool = False,
    force: bool = False,
) -> BenchResult:
    """Run (or resume) a benchmark into ``out`` and write its summary and plots (module doc).

    ``method`` (``mip``, ``bab``, ``auto``) overrides the method of every ``vnnlib`` query of the config.
    ``out`` that holds a benchmark of another config is refused, or with ``force`` emptied of it first.

    The summary starts with the provenance header (:func:`optprune.bench._provenance.provenance_header`):
    ``command`` (default: this process's ``sys.argv``), commit and clean tree, date, wall time, machine and
    library versions. Writing under ``results/`` from a dirty tree is refused unless ``allow_dirty``.
    """
    from optprune.bench._provenance import start_run
    from optprune.bench._summary import summarize, surrogate_summary, write_plots, write_surrogate, write_tables

    if executor not in EXECUTORS:
        raise InvalidParameterError(f"executor must be one of {EXECUTORS}; got {executor!r}")
    source = None
    if not isinstance(config, BenchConfig):
        source = Path(config)
        config = load_config(source)
    if method is not None:
        from dataclasses import replace

        from optprune.verification.engine_registry import ENGINES

        ENGINES.check(method, "method")
        config = replace(config, queries=tuple(replace(q, method=method) if q.kind == "vnnlib" else q
                                               for q in config.queries))
    if workers is None:
        workers = max(1, (os.cpu_count() or 1) // config.threads)
    if not isinstance(workers, int) or workers < 1:
        raise InvalidParameterError(f"workers must be an integer >= 1; got {workers!r}")
    out = Path(out)
    started = time.perf_counter()
    run = start_run(out, [Path(sys.argv[0]).name, *sys.argv[1:]] if command is None else command,
                    allow_dirty=allow_dirty)
    lock = lock_dir(out)
    try:
        _claim_folder(out, config, force, log)
        if source is not None and source.resolve() != (out / "config.toml").resolve():
            atomic_write(out / "config.toml", source.read_bytes())
        atomic_write(out / CONFIG_RECORD, json.dumps(asdict(config), indent=1, default=str) + "\n")
        finetuned = config.surrogate.finetuned if surrogate else None
        dense, variants = prepare_variants(config, out, finetuned=finetuned, log=log)
        if surrogate:
            jobs = build_surrogate_tasks(config, dense, variants, log)
            store_path = out / SURROGATE_RECORDS
        else:
            jobs = build_tasks(config, dense, variants, log)
            store_path = out / RECORDS
        nets = {v.id: v.net for v in variants} | {d.id: d.net for d in dense.values()}
        store = RecordStore(store_path).open()
        try:
            todo = [j for j in jobs if j[0]["id"] not in store]
            done_before = len(jobs) - len(todo)
            run.resumed(done_before, len(jobs))
            log(f"{config.name}: {len(jobs)} tasks, {done_before} already done, {len(todo)} to run "
                f"({executor}, {workers} worker{'s' if workers != 1 else ''})")
            bar = _Progress(len(jobs), done_before, progress)
            ran = 0
            try:
                for _, record in execute(todo, nets, executor=executor, workers=workers, address=address):
                    store.append(record)
                    ran += 1
                    bar.update(record)
            finally:
                bar.stop()
            records = {j[0]["id"]: store.records[j[0]["id"]] for j in jobs if j[0]["id"] in store.records}
        finally:
            store.close()
        tasks = [j[0] for j in jobs]
        header = run.header()
        result = BenchResult(out=out, total=len(jobs), done=len(records), ran=ran, surrogate=surrogate)
        if surrogate:
            rows = surrogate_summary(tasks, records)
            result.files.update(write_surrogate(rows, tasks, records, out, plots=plots, header=header))
        else:
            rows = summarize(tasks, records)
            result.files.update(write_tables(rows, out, header=header))
            if plots:
                result.files.update(write_plots(rows, tasks, records, out))
        result.files["records"] = store_path
        result.rows = rows
        result.markdown = Path(result.files["markdown"]).read_text() if "markdown" in result.files else ""
        errors = [r for r in records.values() if r.get("verdict") == "error"]
        if errors:
            log(f"{len(errors)} task(s) failed; first: {errors[0].get('error')}")
        result.wall_s = time.perf_counter() - started
        return result
    finally:
        lock.close()

