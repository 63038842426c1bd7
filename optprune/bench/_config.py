"""The benchmark configuration: a TOML file read into frozen, validated dataclasses.

A config names the networks, the pruning methods and ratios, the fine-tuning
budget, the queries (max-margin adversarial MIPs and/or VNN-LIB properties),
the backends and the time limit. Every key is checked: an unknown key, a wrong
type or a value outside its allowed set raises
:class:`~optprune.errors.InvalidParameterError` naming the key (``pruning[1].decision``),
the allowed values and the value received. See ``instances/README.md`` for the
file format with an example.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from optprune.errors import InvalidParameterError
from optprune.pruning import DECISIONS
from optprune.scoring import NORMALIZERS as SCORE_NORMALIZERS
from optprune.scoring import SCORERS, normalize_scorer_name
from optprune.verification.bounds import BOUND_METHODS
from optprune.verification.engine_registry import ENGINES

__all__ = [
    "DECISIONS",
    "QUERY_KINDS",
    "TARGETS",
    "MODES",
    "NORMS",
    "NetworkSpec",
    "PruningSpec",
    "FinetuneSpec",
    "QuerySpec",
    "SurrogateSpec",
    "BenchConfig",
    "load_config",
    "parse_config",
    "stable_hash",
]

# decisions, scorers and normalisers are read from their registries (torch-free to import): a decision that prunes by
# itself (bmrs-n, bmrs-u, reconvene) trains on the calibration sample for scorer_options.epochs epochs (default 5)
QUERY_KINDS = ("max_margin", "vnnlib")
TARGETS = ("runner_up", "all")
MODES = ("optimize", "decision")
NORMS = ("linf", "l1")
DATASETS = ("mnist", "digits")
SPLITS = ("train", "val", "test", "all")
NORMALIZERS = ("auto", *SCORE_NORMALIZERS)


def stable_hash(payload: Any, length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of the canonical JSON of ``payload`` (sorted keys)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# ----------------------------------------------------------------------------- validation helpers


class _Table:
    """One TOML table being read: every key read is checked, unknown keys are an error at :meth:`done`."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise InvalidParameterError(f"config {where}: must be a table, got {type(data).__name__} {data!r}")
        self.data, self.where, self.seen = dict(data), where, set()

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, allowed: tuple | None = None,
            check: Callable[[Any], bool] | None = None, describe: str = "") -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is ...:
                raise InvalidParameterError(f"config {self._key(key)}: required key is missing ({describe or _kind(kind)})")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if ok and allowed is not None:
            ok = value in allowed
        if ok and check is not None:
            ok = bool(check(value))
        if not ok:
            expect = describe or (f"one of {', '.join(map(repr, allowed))}" if allowed is not None else _kind(kind))
            raise InvalidParameterError(f"config {self._key(key)}: must be {expect}; got {value!r}")
        return value

    def get_list(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, allowed: tuple | None = None,
                 check: Callable[[Any], bool] | None = None, describe: str = "", scalar_ok: bool = True) -> tuple:
        """A list of ``kind`` (a single value is read as a one-element list when ``scalar_ok``)."""
        self.seen.add(key)
        if key not in self.data:
            if default is ...:
                raise InvalidParameterError(f"config {self._key(key)}: required key is missing ({describe})")
            return None if default is None else tuple(default)
        raw = self.data[key]
        values = raw if isinstance(raw, list) else ([raw] if scalar_ok else None)
        expect = describe or (f"a list of {', '.join(map(repr, allowed))}" if allowed else f"a list of {_kind(kind)}")
        if values is None or not values:
            raise InvalidParameterError(f"config {self._key(key)}: must be {expect} (non-empty); got {raw!r}")
        out = []
        kinds = kind if isinstance(kind, tuple) else (kind,)
        for v in values:
            if float in kinds and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            ok = isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)
            ok = ok and (allowed is None or v in allowed) and (check is None or bool(check(v)))
            if not ok:
                raise InvalidParameterError(f"config {self._key(key)}: must be {expect}; got {raw!r} (bad entry {v!r})")
            out.append(v)
        return tuple(out)

    def table(self, key: str, default: Any = ...) -> _Table | None:
        self.seen.add(key)
        if key not in self.data:
            if default is ...:
                raise InvalidParameterError(f"config {self._key(key)}: required table is missing")
            return default
        return _Table(self.data[key], self._key(key))

    def tables(self, key: str) -> list[_Table]:
        self.seen.add(key)
        raw = self.data.get(key, [])
        if isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, list):
            raise InvalidParameterError(f"config {self._key(key)}: must be an array of tables ([[{key}]]); got {raw!r}")
        return [_Table(item, f"{self._key(key)}[{i}]") for i, item in enumerate(raw)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise InvalidParameterError(
                f"config {self.where or '(top level)'}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(self.seen))}"
            )


def _kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


_positive = lambda v: v > 0 and math.isfinite(v)  # noqa: E731
_nonneg = lambda v: v >= 0 and math.isfinite(v)  # noqa: E731


# ----------------------------------------------------------------------------- the specs


@dataclass(frozen=True)
class NetworkSpec:
    """A network: an ONNX file, or an MLP trained on the spot on a dataset's train fold (fixed seed).

    ``onnx`` may contain ``{data}`` (the shared data folder, :func:`optprune.data.data_dir`);
    relative paths are relative to the config file. ``fallback`` is used when
    the file or the dataset is absent (e.g. a digits MLP when ``../shared/data`` is missing).
    ``finetune_epochs`` overrides ``[finetune] epochs`` for this network's pruned
    copies (datasets of different sizes need different budgets).
    """

    name: str
    dataset: str
    onnx: str | None = None
    hidden: tuple[int, ...] | None = None
    epochs: int = 60
    lr: float = 1e-2
    batch_size: int = 128
    seed: int = 0
    finetune_epochs: int | None = None
    fallback: NetworkSpec | None = None

    def key(self) -> dict:
        """What determines the network's weights (its name excluded)."""
        if self.onnx is not None:
            return {"onnx": self.onnx, "dataset": self.dataset}
        return {"hidden": list(self.hidden or ()), "dataset": self.dataset, "epochs": self.epochs, "lr": self.lr,
                "batch_size": self.batch_size, "seed": self.seed}


@dataclass(frozen=True)
class PruningSpec:
    """A pruning method (scorer x decision) at several ratios.

    ``decision``: ``uniform``/``global``/``search`` (structured, through
    :class:`optprune.pruning.Pruner`; ``ratio`` is the fraction of units
    removed, of parameters for ``search``) or ``unstructured`` (global
    magnitude pruning of individual weights; with ``match = "uniform"`` it keeps
    as many parameters as uniform structured pruning at the same ratio keeps,
    with ``match = "none"`` ``ratio`` is the fraction of weights removed) or
    ``none`` (no pruning decision: the dense network, for a variant made only by
    verification-friendly fine-tuning; ``ratios = [0]``).

    ``stability``: verification-friendly fine-tuning for this entry's fine-tuned
    variants (:class:`optprune.stability.StabilityOptions`: ``eps``,
    ``rs_weight``, ``l1_weight``, ``sparsity``, ``prune_after``), in place of
    plain fine-tuning, with the same epochs, learning rate and distillation.
    """

    name: str
    scorer: str
    decision: str
    ratios: tuple[float, ...]
    normalizer: str = "auto"
    scorer_options: dict = field(default_factory=dict)
    search_options: dict = field(default_factory=dict)
    compensate: bool = False
    match: str = "uniform"
    stability: dict = field(default_factory=dict)

    def key(self) -> dict:
        return {"scorer": self.scorer, "decision": self.decision, "normalizer": self.normalizer,
                "scorer_options": self.scorer_options, "search_options": self.search_options,
                "compensate": self.compensate, "match": self.match if self.decision == "unstructured" else None,
                **({"stability": self.stability} if self.stability else {})}


@dataclass(frozen=True)
class FinetuneSpec:
    """Fine-tuning after pruning (:func:`optprune.pruning.finetune`) on the dataset's train fold."""

    epochs: int = 0
    lr: float = 1e-3
    batch_size: int = 64
    distill: bool = True
    alpha: float = 0.5
    temperature: float = 2.0
    seed: int = 0

    def key(self) -> dict | None:
        return asdict(self) if self.epochs > 0 else None


@dataclass(frozen=True)
class QuerySpec:
    """A family of queries run on every network variant.

    ``max_margin``: for each of ``images`` (the first correctly classified
    images of ``split``, or explicit ``indices`` into that fold) and each
    ``eps``: maximise ``y_t - y_label`` over the L-inf ball (one MIP per target;
    ``target = "runner_up"``: the dense network's second-highest class at ``x0``,
    the same target for every variant; ``"all"``: every other class; an integer:
    that class). ``mode = "optimize"`` solves to optimality (decided = optimal);
    ``"decision"`` stops at the first adversarial example or the proof of none.
    ``vnnlib``: every property file in ``paths`` (globs; ``{data}`` allowed),
    decided by ``method`` (``mip``, ``bab`` or ``auto``; see :func:`optprune.verification.verify_property`).
    """

    name: str
    kind: str
    eps: tuple[float, ...] = ()
    split: str = "test"
    images: int = 0
    indices: tuple[int, ...] | None = None
    correct_only: bool = True
    target: str | int = "runner_up"
    mode: str = "optimize"
    bounds: str = "linear"
    paths: tuple[str, ...] = ()
    method: str = "mip"

    def key(self) -> dict:
        d = asdict(self)
        d.pop("name")
        return d


@dataclass(frozen=True)
class SurrogateSpec:
    """``--surrogate`` mode: max-margin MIPs on pruned copies, incumbents scored on the dense network.

    ``linf_eps`` / ``l1_eps``: perturbation budgets (default: the eps of the
    first max-margin query for L-inf, none for L1); ``images``: how many of that
    query's images; ``finetuned``: which variants (fine-tuned and/or not);
    ``polish``: solve the LP of the dense network with the best candidate's
    activation pattern fixed.
    """

    time_limit: float = 60.0
    linf_eps: tuple[float, ...] = ()
    l1_eps: tuple[float, ...] = ()
    images: int = 0
    finetuned: tuple[bool, ...] = (False, True)
    polish: bool = True
    bounds: str = "linear"


@dataclass(frozen=True)
class BenchConfig:
    """A whole benchmark (see module doc)."""

    name: str
    time_limit: float
    backends: tuple[str, ...]
    networks: tuple[NetworkSpec, ...]
    pruning: tuple[PruningSpec, ...]
    queries: tuple[QuerySpec, ...]
    finetune: FinetuneSpec = FinetuneSpec()
    surrogate: SurrogateSpec = SurrogateSpec()
    repetitions: int = 1
    threads: int = 1
    seed: int = 0
    calibration: int = 512
    include_unpruned: bool = True
    source: str = ""

    def with_overrides(self, **changes: Any) -> BenchConfig:
        return replace(self, **changes)


# ----------------------------------------------------------------------------- parsing


def _resolve_path(text: str, base: Path) -> str:
    """Absolute path string; ``{data}`` is kept for lazy resolution (the data folder may be absent)."""
    if "{data}" in text:
        return text
    p = Path(os.path.expanduser(text))
    return str(p if p.is_absolute() else (base / p).resolve())


def _network(t: _Table, base: Path, allow_fallback: bool = True) -> NetworkSpec:
    name = t.get("name", str, check=lambda s: bool(s.strip()), describe="a non-empty string")
    dataset = t.get("dataset", str, allowed=DATASETS)
    onnx = t.get("onnx", str, None)
    hidden = t.get_list("hidden", int, None, check=lambda v: v >= 1, describe="a list of layer widths >= 1",
                        scalar_ok=False)
    if (onnx is None) == (hidden is None):
        raise InvalidParameterError(
            f"config {t.where}: give exactly one of 'onnx' (a file) or 'hidden' (widths of an MLP to train); "
            f"got {'both' if onnx is not None else 'neither'}"
        )
    spec = NetworkSpec(
        name=name, dataset=dataset, onnx=None if onnx is None else _resolve_path(onnx, base),
        hidden=None if hidden is None else tuple(hidden),
        epochs=t.get("epochs", int, 60, check=lambda v: v >= 1, describe="an integer >= 1"),
        lr=t.get("lr", float, 1e-2, check=_positive, describe="a number > 0"),
        batch_size=t.get("batch_size", int, 128, check=lambda v: v >= 1, describe="an integer >= 1"),
        seed=t.get("seed", int, 0),
        finetune_epochs=t.get("finetune_epochs", int, None, check=lambda v: v >= 0, describe="an integer >= 0"),
    )
    fb = t.table("fallback", None) if allow_fallback else None
    if fb is not None:
        spec = replace(spec, fallback=_network(fb, base, allow_fallback=False))
    t.done()
    return spec


def _pruning(t: _Table, default_ratios: tuple[float, ...] | None) -> PruningSpec:
    scorer = t.get("scorer", str, "magnitude")
    decision = t.get("decision", str, "uniform", check=lambda v: v in DECISIONS,
                     describe="one of " + ", ".join(map(repr, DECISIONS.names())))
    if DECISIONS.get(decision).takes_scorer and normalize_scorer_name(scorer) not in SCORERS:
        raise InvalidParameterError(
            f"config {t.where}.scorer: must be one of {', '.join(SCORERS.names())}; got {scorer!r}"
        )
    ratio_check = (lambda v: v == 0) if decision == "none" else (lambda v: 0 < v < 1)  # noqa: E731
    ratio_describe = "[0] (decision 'none' prunes nothing)" if decision == "none" else "a list of fractions in (0, 1)"
    if decision == "none" and "ratios" not in t.data:
        t.seen.add("ratios")
        ratios = (0.0,)
    elif "ratios" in t.data or default_ratios is None:
        ratios = t.get_list("ratios", float, check=ratio_check, describe=ratio_describe)
    else:
        t.seen.add("ratios")
        ratios = default_ratios
    scorer_options = dict(t.get("scorer_options", dict, {}))
    search_options = dict(t.get("search_options", dict, {}))
    _check_options(t.where, decision, scorer, "scorer" in t.data, scorer_options, search_options)
    spec = PruningSpec(
        name=t.get("name", str, f"{scorer}-{decision}"),
        scorer=scorer,
        decision=decision,
        ratios=tuple(sorted(set(ratios))),
        normalizer=t.get("normalizer", str, "auto", allowed=NORMALIZERS),
        scorer_options=scorer_options,
        search_options=search_options,
        compensate=t.get("compensate", bool, False),
        match=t.get("match", str, "uniform", allowed=("uniform", "none")),
        stability=_stability(t),
    )
    t.done()
    return spec


#: a benchmark's defaults for the options of a decision that prunes by itself (MethodDecision.options), where they
#: differ from the decision's own; ``match`` is a key of the pruning entry itself, not of its scorer_options
METHOD_OPTION_DEFAULTS = {"epochs": 5}
_SET_BY_SPEC = ("match",)
#: search_decision's keyword arguments the Pruner sets itself (not search_options)
_SEARCH_SET_BY_PRUNER = ("model", "scores", "input_shape", "return_result")


def _unknown_keys(where: str, options: dict, allowed: list[str], what: str) -> None:
    unknown = sorted(str(k) for k in options if k not in allowed)
    if unknown:
        raise InvalidParameterError(
            f"config {where}: unknown key {unknown[0]!r} {what}; allowed keys: {', '.join(allowed) or '(none)'}"
        )


def _check_options(where: str, decision: str, scorer: str, scorer_given: bool, scorer_options: dict,
                   search_options: dict) -> None:
    """Every option of one pruning decision checked when the config is read, before any network is trained.

    Names come from the registries (scorers, decisions), types and ranges from the constraints the
    estimators and decisions declare (:mod:`optprune._validation`): a scorer's ``_parameter_constraints`` for
    ``scorer_options`` of decisions that take a scorer, the decision's ``options`` for one that prunes by
    itself (``epochs`` of bmrs-n, bmrs-u, reconvene).
    """
    from optprune._validation import validate_params

    rule = DECISIONS.get(decision)
    if not rule.takes_scorer:
        fixed = getattr(rule, "fixed_scorer", None)
        if scorer_given and scorer != fixed:
            uses = (f"{decision} pruning supports only {fixed!r} (it ranks by it itself)" if fixed else
                    f"decision {decision!r} scores units itself and takes no scorer; leave 'scorer' out")
            raise InvalidParameterError(f"config {where}.scorer: {uses}; got {scorer!r}")
        allowed = [k for k in rule.options if k not in _SET_BY_SPEC]
        _unknown_keys(f"{where}.scorer_options", scorer_options, allowed, f"for decision {decision!r}")
        rule.check_options(scorer_options, f"config {where}.scorer_options ({rule!r})")
    else:
        from optprune.scoring import get_scorer

        cls = type(get_scorer(scorer))
        constraints = cls._parameter_constraints
        _unknown_keys(f"{where}.scorer_options", scorer_options, sorted(constraints), f"for scorer {scorer!r}")
        validate_params(f"config {where}.scorer_options ({cls.__name__})", scorer_options,
                        {k: constraints[k] for k in scorer_options})
    if decision != "search":
        if search_options:
            raise InvalidParameterError(
                f"config {where}.search_options: only decision 'search' takes search options; "
                f"got {search_options!r} with decision {decision!r}"
            )
        return
    import inspect

    from optprune.search import search_decision

    allowed = [n for n in inspect.signature(search_decision).parameters if n not in _SEARCH_SET_BY_PRUNER]
    _unknown_keys(f"{where}.search_options", search_options, allowed, "for decision 'search'")


def _stability(t: _Table) -> dict:
    """The ``stability`` table of a pruning entry, checked by :class:`optprune.stability.StabilityOptions`."""
    from optprune.stability import StabilityOptions

    raw = dict(t.get("stability", dict, {}))
    allowed = set(StabilityOptions().key())
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InvalidParameterError(
            f"config {t.where}.stability: unknown keys {unknown}; allowed: {', '.join(sorted(allowed))}"
        )
    try:
        options = StabilityOptions(**{k: float(v) for k, v in raw.items()})
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"config {t.where}.stability: {exc}") from None
    return options.key() if raw else {}


def _query(t: _Table, index: int) -> QuerySpec:
    kind = t.get("kind", str, "max_margin", allowed=QUERY_KINDS)
    name = t.get("name", str, f"q{index}")
    if kind == "vnnlib":
        paths = t.get_list("paths", str, describe="a list of .vnnlib files or globs")
        spec = QuerySpec(name=name, kind=kind, paths=paths, bounds=t.get("bounds", str, "linear", allowed=BOUND_METHODS.names()),
                         method=t.get("method", str, "mip", allowed=ENGINES.names()))
        t.done()
        return spec
    eps = t.get_list("eps", float, check=_positive, describe="a list of radii > 0")
    indices = t.get_list("indices", int, None, check=lambda v: v >= 0, describe="a list of indices >= 0")
    images = t.get("images", int, 0 if indices else 20, check=lambda v: v >= 0, describe="an integer >= 0")
    if indices is None and images < 1:
        raise InvalidParameterError(f"config {t.where}.images: must be an integer >= 1 when no 'indices' are given; got {images}")
    target = t.get("target", (str, int), "runner_up",
                   check=lambda v: v in TARGETS if isinstance(v, str) else v >= 0,
                   describe=f"one of {', '.join(map(repr, TARGETS))} or a class index >= 0")
    spec = QuerySpec(
        name=name, kind=kind, eps=tuple(eps), split=t.get("split", str, "test", allowed=SPLITS),
        images=images, indices=None if indices is None else tuple(indices),
        correct_only=t.get("correct_only", bool, True), target=target,
        mode=t.get("mode", str, "optimize", allowed=MODES), bounds=t.get("bounds", str, "linear", allowed=BOUND_METHODS.names()),
    )
    t.done()
    return spec


def parse_config(data: Mapping, source: str | os.PathLike = "<config>", base: str | os.PathLike | None = None) -> BenchConfig:
    """Validate a config already read from TOML (``base``: the folder relative paths start from)."""
    base = Path(base) if base is not None else Path.cwd()
    top = _Table(data, "")
    b = top.table("bench", None) or _Table({}, "bench")
    name = b.get("name", str, Path(str(source)).stem or "bench")
    time_limit = b.get("time_limit", float, 60.0, check=_positive, describe="a number of seconds > 0")
    backends = b.get_list("backends", str, ("highs",), describe="a list of solver backend names")
    from optprune.solvers import backend_names

    known = backend_names()
    for be in backends:
        if be not in known:
            raise InvalidParameterError(f"config bench.backends: must be a list of {', '.join(known)}; got {be!r}")
    ratios = b.get_list("ratios", float, None, check=lambda v: 0 < v < 1, describe="a list of fractions in (0, 1)")
    cfg_kw = dict(
        repetitions=b.get("repetitions", int, 1, check=lambda v: v >= 1, describe="an integer >= 1"),
        threads=b.get("threads", int, 1, check=lambda v: v >= 1, describe="an integer >= 1"),
        seed=b.get("seed", int, 0),
        calibration=b.get("calibration", int, 512, check=lambda v: v >= 1, describe="an integer >= 1"),
        include_unpruned=b.get("include_unpruned", bool, True),
    )
    b.done()

    nets = tuple(_network(t, base) for t in top.tables("networks"))
    if not nets:
        raise InvalidParameterError("config networks: at least one [[networks]] table is required")
    _unique([n.name for n in nets], "networks", "name")
    pruning = tuple(_pruning(t, ratios) for t in top.tables("pruning"))
    _unique([p.name for p in pruning], "pruning", "name")
    queries = tuple(_query(t, i) for i, t in enumerate(top.tables("queries")))
    if not queries:
        raise InvalidParameterError("config queries: at least one [[queries]] table is required")
    _unique([q.name for q in queries], "queries", "name")

    ft = top.table("finetune", None)
    finetune = FinetuneSpec()
    if ft is not None:
        finetune = FinetuneSpec(
            epochs=ft.get("epochs", int, 0, check=lambda v: v >= 0, describe="an integer >= 0"),
            lr=ft.get("lr", float, 1e-3, check=_positive, describe="a number > 0"),
            batch_size=ft.get("batch_size", int, 64, check=lambda v: v >= 1, describe="an integer >= 1"),
            distill=ft.get("distill", bool, True),
            alpha=ft.get("alpha", float, 0.5, check=lambda v: 0 <= v <= 1, describe="a number in [0, 1]"),
            temperature=ft.get("temperature", float, 2.0, check=_positive, describe="a number > 0"),
            seed=ft.get("seed", int, 0),
        )
        ft.done()

    sg = top.table("surrogate", None)
    surrogate = SurrogateSpec()
    if sg is not None:
        surrogate = SurrogateSpec(
            time_limit=sg.get("time_limit", float, time_limit, check=_positive, describe="a number of seconds > 0"),
            linf_eps=sg.get_list("linf_eps", float, (), check=_positive, describe="a list of radii > 0"),
            l1_eps=sg.get_list("l1_eps", float, (), check=_positive, describe="a list of radii > 0"),
            images=sg.get("images", int, 0, check=lambda v: v >= 0, describe="an integer >= 0"),
            finetuned=sg.get_list("finetuned", bool, (False, True), describe="a list of true/false"),
            polish=sg.get("polish", bool, True),
            bounds=sg.get("bounds", str, "linear", allowed=BOUND_METHODS.names()),
        )
        sg.done()
    else:
        surrogate = replace(surrogate, time_limit=time_limit)
    top.done()
    return BenchConfig(
        name=name, time_limit=time_limit, backends=tuple(backends), networks=nets, pruning=pruning, queries=queries,
        finetune=finetune, surrogate=surrogate, source=str(source), **cfg_kw,
    )


def _unique(names: list[str], where: str, key: str) -> None:
    seen = set()
    for i, n in enumerate(names):
        if n in seen:
            raise InvalidParameterError(f"config {where}[{i}].{key}: {n!r} is used twice; names must be unique")
        seen.add(n)


def _toml():
    """``tomllib`` (Python >= 3.11) or its backport ``tomli``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the backport, a dependency there (pyproject.toml)
        import tomli as tomllib
    return tomllib


def load_config(path: str | os.PathLike) -> BenchConfig:
    """Read and validate a benchmark config (TOML). Relative paths in it are relative to its folder."""
    path = Path(path)
    if not path.is_file():
        from optprune.errors import DataNotFoundError

        raise DataNotFoundError(f"benchmark config not found: {path}")
    tomllib = _toml()
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        from optprune.errors import FileFormatError

        raise FileFormatError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(data, source=path, base=path.resolve().parent)
