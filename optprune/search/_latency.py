"""Latency lookup tables: torch CPU time of each Linear / Conv2d over a grid of (input, output) widths.

The latency model of a plan is the sum over the model's ``nn.Linear`` and
``nn.Conv2d`` layers of the time one forward call of that layer takes at the
plan's input and output widths (HALP, Shen et al. NeurIPS 2022, section 3.2,
uses the same per-layer lookup table). Element-wise layers, pooling and
normalisation are not counted. Each layer is timed on its own: a fresh layer of
the pruned size, a batch of ``batch_size`` inputs of the original spatial size,
``repeats`` timings of enough calls to last about a millisecond, the median
taken. Widths between grid points are interpolated bilinearly by
:class:`~optprune.formulations.structure_search.Table`.

Tables are cached as JSON under ``$OPTPRUNE_CACHE_DIR/latency`` (default
``~/.cache/optprune/latency``), keyed by a hash of the architecture, the grid,
the batch size, torch's version and thread count and the CPU model: a table is
only reused on the same machine for the same layers.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from optprune.errors import FileFormatError, InvalidParameterError, UnsupportedLayerError
from optprune.formulations.structure_search import LayerCost, Table, width_grid
from optprune.search._instances import read_json
from optprune.search._specs import module_specs

__all__ = ["latency_layers", "measure_latency_tables", "save_latency_tables", "load_latency_layers", "cache_dir",
           "FORMAT"]

FORMAT = "optprune-latency-table"


def cache_dir() -> Path:
    """``$OPTPRUNE_CACHE_DIR/latency`` or ``~/.cache/optprune/latency``."""
    root = os.environ.get("OPTPRUNE_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "optprune"
    return base / "latency"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _axis(grid: np.ndarray, points: int) -> np.ndarray:
    """``points`` widths spread evenly over an allowed grid (its ends included)."""
    if grid.size <= points:
        return grid.astype(np.int64)
    pick = np.unique(np.round(np.linspace(0, grid.size - 1, points)).astype(np.int64))
    return grid[pick].astype(np.int64)


def _side(spec, segments, fixed: int, what: str):
    if len(segments) > 1:
        raise UnsupportedLayerError(
            spec.name, f"{type(spec.module).__name__} with {len(segments)} prunable {what} groups",
            ("layers whose input and output each belong to at most one prunable group",),
        )
    return (segments[0] if segments else None), int(fixed)


def _time_call(fn, repeats: int) -> float:
    """Median seconds per call over ``repeats`` timings of enough calls to last about 1 ms."""
    fn()
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, min(1000, int(1e-3 / once)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return float(statistics.median(samples))


def _measure(spec, n_in: int, n_out: int, batch_size: int, repeats: int) -> float:
    mod = spec.module
    if n_in <= 0 or n_out <= 0:
        return 0.0
    if isinstance(mod, nn.Linear):
        layer = nn.Linear(n_in, n_out, bias=mod.bias is not None)
        lead = tuple(spec.in_shape[:-1]) if len(spec.in_shape) > 1 else ()
        x = torch.randn((batch_size, *lead, n_in))
    else:
        depthwise = mod.groups > 1
        layer = nn.Conv2d(n_in, n_out if not depthwise else n_in, mod.kernel_size, mod.stride, mod.padding,
                          mod.dilation, groups=n_in if depthwise else 1, bias=mod.bias is not None)
        x = torch.randn((batch_size, n_in, *spec.in_shape[1:]))
    layer.eval()
    with torch.inference_mode():
        return _time_call(lambda: layer(x), repeats)


def _architecture(specs) -> list:
    return [
        [s.name, repr(s.module), list(s.in_shape), list(s.out_shape), s.in_segments, s.out_segments,
         s.channel_segments, s.fixed_in, s.fixed_out, s.fixed_channels]
        for s in specs
    ]


def measure_latency_tables(
    model: nn.Module,
    *,
    input_shape: Sequence[int] | None = None,
    grids: Mapping[str, np.ndarray] | None = None,
    specs=None,
    points: int = 6,
    repeats: int = 5,
    batch_size: int = 1,
    use_cache: bool = True,
    refresh: bool = False,
    progress=None,
) -> dict:
    """The latency tables of every Linear / Conv2d of ``model`` (JSON-ready dict; cached).

    ``grids``: allowed widths per prunable group (default: every width); the
    table samples ``points`` of them per axis. ``progress(done, total)`` is
    called after each layer.
    """
    for name, value, low in (("points", points, 2), ("repeats", repeats, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InvalidParameterError(
                f"measure_latency_tables: {name} must be an integer >= {low}"
                f"{' (a table spans both ends of each width axis)' if name == 'points' else ''}; got {value!r}"
            )
    if specs is None or grids is None:
        groups, found = module_specs(model, input_shape)
        specs = specs if specs is not None else found
        grids = {g.name: width_grid(g.width) for g in groups} if grids is None else grids
    timed = [s for s in specs if isinstance(s.module, (nn.Linear, nn.Conv2d))]
    plan = []
    for spec in timed:
        mod = spec.module
        depthwise = isinstance(mod, nn.Conv2d) and mod.groups > 1
        if isinstance(mod, nn.Conv2d) and depthwise and not (mod.groups == mod.in_channels == mod.out_channels):
            raise UnsupportedLayerError(spec.name, "grouped Conv2d", ("Conv2d with groups=1", "depthwise Conv2d"))
        if depthwise:
            seg_in, fix_in = _side(spec, spec.channel_segments, spec.fixed_channels, "channel")
            seg_out, fix_out = None, 0
        else:
            seg_in, fix_in = _side(spec, spec.in_segments, spec.fixed_in, "input")
            seg_out, fix_out = _side(spec, spec.out_segments, spec.fixed_out, "output")
        axes = []
        for seg, fix in ((seg_in, fix_in), (seg_out, fix_out)):
            if seg is None:
                axes.append(np.array([fix], dtype=np.int64))
            else:
                if seg[0] not in grids:
                    raise InvalidParameterError(
                        f"latency table for {spec.name!r} needs the allowed widths of group {seg[0]!r}; "
                        f"grids has {sorted(grids)}"
                    )
                grid = np.asarray(grids[seg[0]])
                axes.append(_axis(grid, points))
        plan.append((spec, seg_in, fix_in, seg_out, fix_out, axes, depthwise))
    meta = {
        "architecture": _architecture(specs),
        "axes": [[a.tolist() for a in p[5]] for p in plan],
        "batch_size": batch_size,
        "repeats": repeats,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
    }
    key = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = cache_dir() / f"{key}.json"
    if use_cache and not refresh and path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("format") == FORMAT and data.get("key") == key:
                data["cached"] = True
                return data
        except (OSError, json.JSONDecodeError):
            pass
    tables = {}
    for done, (spec, seg_in, fix_in, seg_out, fix_out, axes, _depthwise) in enumerate(plan, start=1):
        values = np.zeros((axes[0].size, axes[1].size))
        for i, k_in in enumerate(axes[0]):
            n_in = int(k_in) * seg_in[1] + fix_in if seg_in is not None else int(k_in)
            for j, k_out in enumerate(axes[1]):
                n_out = int(k_out) * seg_out[1] + fix_out if seg_out is not None else int(k_out)
                values[i, j] = _measure(spec, n_in, n_out if not _depthwise else n_in, batch_size, repeats)
        tables[spec.name] = {
            "input": seg_in[0] if seg_in is not None else int(fix_in),
            "output": seg_out[0] if seg_out is not None else int(fix_out),
            "in_widths": axes[0].tolist(),
            "out_widths": axes[1].tolist(),
            "values": values.tolist(),
        }
        if progress is not None:
            progress(done, len(plan))
    data = {"format": FORMAT, "version": 1, "key": key, "unit": "seconds", "meta": meta, "tables": tables,
            "cached": False}
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data) + "\n")
        except OSError:
            pass
    return data


def _layers_from_tables(data: Mapping) -> dict[str, LayerCost]:
    out = {}
    for name, t in data["tables"].items():
        out[name] = LayerCost(f"{name}[latency]", t["input"], t["output"],
                              {"latency": Table(t["in_widths"], t["out_widths"], t["values"])})
    return out


def latency_layers(model: nn.Module, *, input_shape: Sequence[int] | None = None,
                   grids: Mapping[str, np.ndarray] | None = None, specs=None, **kwargs) -> dict[str, LayerCost]:
    """``{module name: LayerCost}`` with a ``latency`` Table each (measured or from the cache)."""
    return _layers_from_tables(measure_latency_tables(model, input_shape=input_shape, grids=grids, specs=specs,
                                                      **kwargs))


def save_latency_tables(data: Mapping, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(data)) + "\n")
    return path


def load_latency_layers(path: str | os.PathLike) -> dict[str, LayerCost]:
    """The latency ``LayerCost`` of every table in a file written by :func:`save_latency_tables`."""
    data = read_json(path, "latency table")
    if not isinstance(data, dict):
        raise FileFormatError(f"{path}: a latency table is a JSON object; got a JSON {type(data).__name__}")
    if data.get("format") != FORMAT or "tables" not in data:
        raise FileFormatError(f"{path}: not an optprune latency table (format {data.get('format')!r})")
    return _layers_from_tables(data)
