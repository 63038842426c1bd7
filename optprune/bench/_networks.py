"""The network variants a benchmark runs on: dense networks and their pruned (fine-tuned) copies.

Every variant is built once and cached under ``OUT/networks/`` as an ONNX
file plus a JSON file of metadata (accuracy, parameter count, widths, the
pruning decision). The JSON is written last, atomically, so its presence
marks a complete entry; a resumed run loads the cache instead of pruning and
fine-tuning again. MIPs always run on the network read back from the cached
ONNX file, so a first run and a resumed run see the same weights.

Accuracies are on the dataset's fixed held-out ``test`` fold
(:mod:`optprune.data`); calibration and fine-tuning use its ``train`` fold.
Pruning (structured and the unstructured baseline) lives in
:mod:`optprune.pruning`; parameter counts of pruned variants are measured on
the network read back from ONNX (nonzero weights and biases).

The torch-facing modules (pruning, training, the torch readers) are imported
inside the functions that need them: torch takes seconds to import, and a
resumed run or a config check needs none of it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from optprune.bench._config import (
    METHOD_OPTION_DEFAULTS,
    BenchConfig,
    FinetuneSpec,
    NetworkSpec,
    PruningSpec,
    stable_hash,
)
from optprune.bench._store import atomic_write
from optprune.errors import DataNotFoundError, InvalidParameterError
from optprune.network import Network

__all__ = ["Variant", "resolve_network", "prepare_variants"]

CACHE_VERSION = 1


@dataclass
class Variant:
    """One network the queries run on: a dense network or a pruned copy of it."""

    id: str
    network: str  # network name from the config
    pruning: str  # pruning name from the config, "unpruned" for the dense network
    scorer: str
    decision: str
    ratio: float
    finetuned: bool
    path: Path  # the cached (or original) ONNX file
    meta: dict = field(default_factory=dict)
    net: Network | None = None

    @property
    def label(self) -> str:
        if self.pruning == "unpruned":
            return f"{self.network} unpruned"
        return f"{self.network} {self.pruning} {self.ratio:g}{'' if self.finetuned else ' (no fine-tune)'}"

    def info(self) -> dict:
        """The variant's fields that go into every record."""
        return {
            "network": self.network, "pruning": self.pruning, "scorer": self.scorer, "decision": self.decision,
            "ratio": self.ratio, "finetuned": self.finetuned, "variant": self.id,
            "accuracy": self.meta.get("accuracy"), "params": self.meta.get("params"), "widths": self.meta.get("widths"),
            "make_s": self.meta.get("make_s"),
        }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "net"


def _data_available(dataset: str) -> bool:
    if dataset != "mnist":
        return True
    from optprune.data import data_dir

    try:
        root = data_dir() / "mnist"
    except DataNotFoundError:
        return False
    return any((root / f"t10k-images-idx3-ubyte{s}").is_file() for s in (".gz", ""))


def _expand(path: str) -> str:
    if "{data}" not in path:
        return path
    from optprune.data import data_dir

    return path.replace("{data}", str(data_dir()))


def resolve_network(spec: NetworkSpec, log: Callable[[str], None] = lambda s: None) -> NetworkSpec:
    """The spec that will be used: ``{data}`` expanded, or the fallback when the file or dataset is absent."""
    problem = None
    if not _data_available(spec.dataset):
        problem = f"dataset {spec.dataset!r} is not available (data folder missing)"
    elif spec.onnx is not None:
        try:
            path = _expand(spec.onnx)
        except DataNotFoundError as exc:
            problem = str(exc)
        else:
            if Path(path).is_file():
                return replace(spec, onnx=str(Path(path).resolve()), fallback=None)
            problem = f"network file not found: {path}"
    else:
        return replace(spec, fallback=None)
    if spec.fallback is None:
        raise DataNotFoundError(
            f"network {spec.name!r}: {problem}; add a [networks.fallback] table to train one instead"
        )
    log(f"network {spec.name!r}: {problem}; using its fallback {spec.fallback.name!r}")
    return resolve_network(spec.fallback, log)


# ----------------------------------------------------------------------------- data


def _folds(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from optprune.data import load_dataset

    X_train, y_train = load_dataset(dataset, "train")
    X_test, y_test = load_dataset(dataset, "test")
    return X_train, y_train, X_test, y_test


def _shape(model, n_features: int) -> tuple[int, ...]:
    shape = tuple(getattr(model, "input_shape", None) or (n_features,))
    return shape if int(np.prod(shape)) == n_features else (n_features,)


# ----------------------------------------------------------------------------- pruning


def _prune(dense_model, spec: PruningSpec, ratio: float, calib, shape: tuple[int, ...]):
    """A pruned copy of ``dense_model`` and its decision metadata (the decision looked up in the registry)."""
    import torch

    from optprune.pruning import DECISIONS, Pruner

    torch.manual_seed(0)
    rule = DECISIONS.get(spec.decision, "decision")
    if not rule.takes_scorer:  # a decision that prunes by itself, trained on the calibration sample
        options = {k: v for k, v in METHOD_OPTION_DEFAULTS.items() if k in rule.options}
        options.update(spec.scorer_options)
        if "match" in rule.options:
            options["match"] = spec.match
        outcome = rule.prune(dense_model, calib, shape, ratio, seed=0, **options)
        info = (dict(outcome.info) if outcome.decision is None else
                {"group_widths": dict(outcome.decision.new_widths), "decision": outcome.decision.to_dict()})
        if outcome.masks is not None:
            info["masks"] = outcome.masks
        return outcome.model, info

    pruner = Pruner(
        scorer=spec.scorer, ratio=ratio, decision=spec.decision, normalizer=spec.normalizer,
        scorer_kwargs=dict(spec.scorer_options) or None, search_kwargs=dict(spec.search_options) or None,
        compensate=spec.compensate, input_shape=shape,
    ).fit(dense_model, calib)
    return pruner.transform(), {"group_widths": dict(pruner.widths_), "decision": pruner.decision_.to_dict()}


def _finetune(model, teacher, data, ft: FinetuneSpec, stability: dict | None = None) -> str:
    from optprune.pruning import finetune

    if stability:
        from optprune.stability import StabilityOptions, stabilize

        stabilize(model, data, ft.epochs, StabilityOptions(**stability), teacher=teacher if ft.distill else None,
                  alpha=ft.alpha, temperature=ft.temperature, lr=ft.lr, batch_size=ft.batch_size, seed=ft.seed,
                  progress=False)
        how = f"optprune.stability.stabilize {stability}"
        return how + (" (distilled from the unpruned network)" if ft.distill else "")
    finetune(model, data, ft.epochs, teacher=teacher if ft.distill else None, alpha=ft.alpha,
             temperature=ft.temperature, lr=ft.lr, batch_size=ft.batch_size, seed=ft.seed, progress=False)
    return "optprune.pruning.finetune" + (" (distilled from the unpruned network)" if ft.distill else "")


# ----------------------------------------------------------------------------- cache


class _Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def paths(self, vid: str) -> tuple[Path, Path]:
        return self.root / f"{vid}.onnx", self.root / f"{vid}.json"

    def get(self, vid: str) -> dict | None:
        onnx_path, meta_path = self.paths(vid)
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, OSError):
            return None
        path = Path(meta.get("onnx", onnx_path))
        complete = meta.get("cache_version") == CACHE_VERSION and "accuracy" in meta and path.is_file()
        return meta if complete else None

    def put_onnx(self, vid: str, model, shape: tuple[int, ...]) -> Path:
        """Write ``model`` as ONNX (atomically); the entry is complete only once :meth:`put_meta` ran."""
        from optprune.io import network_from_torch, network_to_onnx

        onnx_path = self.paths(vid)[0]
        proto = network_to_onnx(network_from_torch(model, shape, name=vid))
        atomic_write(onnx_path, proto.SerializeToString())
        return onnx_path

    def put_meta(self, vid: str, meta: dict) -> dict:
        meta = {**meta, "cache_version": CACHE_VERSION}
        atomic_write(self.paths(vid)[1], (json.dumps(meta, indent=1, default=str) + "\n").encode())
        return meta

    def put(self, vid: str, model, shape: tuple[int, ...], meta: dict, X_test, y_test) -> dict:
        """ONNX, then the network read back from it measured (accuracy, parameters), then the JSON."""
        path = self.put_onnx(vid, model, shape)
        measured = _measure(_load_net(path, vid), X_test, y_test)
        return self.put_meta(vid, {**meta, **measured, "onnx": str(path)})


def _load_net(path: Path, name: str) -> Network:
    from dataclasses import replace as dc_replace

    from optprune.io import network_from_onnx

    return dc_replace(network_from_onnx(path), name=name)


def _measure(net: Network, X_test, y_test) -> dict:
    from optprune.training import accuracy

    return {"accuracy": accuracy(net, X_test, y_test), "params": _network_nonzero(net), "widths": net.widths}


def _network_nonzero(net: Network) -> int:
    """Nonzero weights and biases (equals the parameter count unless weights were pruned individually)."""
    import scipy.sparse as sp

    total = 0
    for layer in net.layers:
        w = layer.weight
        total += int(w.count_nonzero() if sp.issparse(w) else np.count_nonzero(w)) + int(np.count_nonzero(layer.bias))
    return total


def prepare_variants(
    config: BenchConfig,
    out: Path,
    *,
    finetuned: tuple[bool, ...] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[dict[str, Variant], list[Variant]]:
    """Build or load every variant: ``({network name: dense variant}, all variants)``.

    ``finetuned`` lists which pruned variants to produce (default: fine-tuned
    when the config's ``finetune.epochs > 0``, else not).
    """
    import torch

    if finetuned is None:
        finetuned = (config.finetune.epochs > 0,)
    cache = _Cache(out / "networks")
    dense_by_name: dict[str, Variant] = {}
    variants: list[Variant] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: single-threaded is fastest and deterministic
    try:
        for spec in config.networks:
            eff = resolve_network(spec, log)
            dense, dense_model, data = _dense_variant(config, eff.name, eff, cache, log)
            dense_by_name[eff.name] = dense
            ft = config.finetune
            if eff.finetune_epochs is not None:
                ft = replace(config.finetune, epochs=eff.finetune_epochs)
            if True in finetuned and config.pruning and ft.epochs == 0:
                raise InvalidParameterError(
                    f"network {eff.name!r}: fine-tuned variants need finetune.epochs (or the network's "
                    "finetune_epochs) >= 1; got 0"
                )
            if config.include_unpruned:
                variants.append(dense)
            for pspec in config.pruning:
                for ratio in pspec.ratios:
                    variants += _pruned_variants(config, ft, dense, dense_model, data, pspec, ratio, finetuned, cache,
                                                 log)
    finally:
        torch.set_num_threads(threads)
    return dense_by_name, variants


def _dense_variant(config: BenchConfig, name: str, eff: NetworkSpec, cache: _Cache, log):
    from optprune.io import load_torch_model

    key = {"network": eff.key(), "v": CACHE_VERSION}
    if eff.onnx is not None:  # the file's contents, not only its path, identify the network
        key["sha256"] = hashlib.sha256(Path(eff.onnx).read_bytes()).hexdigest()[:16]
    vid = f"{_slug(name)}--dense-{stable_hash(key, 10)}"
    data = _folds(eff.dataset)
    X_train, y_train, X_test, y_test = data
    meta = cache.get(vid)
    if meta is None:
        if eff.onnx is not None:
            net = _load_net(Path(eff.onnx), name)
            meta = cache.put_meta(vid, {"source": eff.onnx, "dataset": eff.dataset, "onnx": eff.onnx,
                                        **_measure(net, X_test, y_test)})
        else:
            import torch

            from optprune.training import make_mlp, train_classifier

            log(f"training {name}: MLP {list(eff.hidden)} on {eff.dataset} ({eff.epochs} epochs, seed {eff.seed})")
            torch.manual_seed(eff.seed)
            shape = tuple(X_train.shape[1:])
            model = make_mlp([int(np.prod(shape)), *eff.hidden, 10], shape)
            train_classifier(model, (X_train, y_train), epochs=eff.epochs, seed=eff.seed, lr=eff.lr,
                             batch_size=eff.batch_size, progress=False)
            meta = cache.put(vid, model, shape, {"source": f"trained MLP {list(eff.hidden)}", "dataset": eff.dataset},
                             X_test, y_test)
    path = Path(meta["onnx"])
    net = _load_net(path, name)
    model = load_torch_model(path)
    meta["spec"] = eff.key()
    variant = Variant(vid, name, "unpruned", "", "none", 0.0, False, path, meta, net)
    log(f"{variant.label}: accuracy {meta['accuracy']:.4f}, {meta['params']} parameters, widths {meta['widths']}")
    return variant, model, data


def _pruned_variants(config, ft_spec: FinetuneSpec, dense: Variant, dense_model, data, pspec: PruningSpec, ratio: float,
                     finetuned: tuple[bool, ...], cache: _Cache, log) -> list[Variant]:
    X_train, y_train, X_test, y_test = data
    n_features = int(np.prod(X_train.shape[1:]))
    shape = _shape(dense_model, n_features)
    base_key = {"dense": dense.id, "pruning": pspec.key(), "ratio": ratio, "calibration": config.calibration,
                "seed": config.seed, "v": CACHE_VERSION}
    ids = {
        False: f"{_slug(dense.network)}--{_slug(pspec.name)}-{ratio:g}-noft-{stable_hash(base_key, 10)}",
        True: f"{_slug(dense.network)}--{_slug(pspec.name)}-{ratio:g}-ft-"
              f"{stable_hash({**base_key, 'finetune': ft_spec.key()}, 10)}",
    }
    metas = {ft: cache.get(ids[ft]) for ft in (False, True)}
    if any(metas[ft] is None for ft in finetuned):
        rng = np.random.default_rng(config.seed)
        calib_idx = np.sort(rng.choice(len(X_train), size=min(config.calibration, len(X_train)), replace=False))
        Xs = X_train.reshape(len(X_train), *shape)
        calib = (Xs[calib_idx], y_train[calib_idx])
        started = time.perf_counter()
        model, info = _prune(dense_model, pspec, ratio, calib, shape)
        prune_s = time.perf_counter() - started
        masks = info.pop("masks", None)
        base_meta = {"dataset": dense.meta.get("dataset"), "dense": dense.id, "pruning": pspec.name,
                     "scorer": pspec.scorer, "decision_mode": pspec.decision, "ratio": ratio, **info}
        plain = model
        if metas[False] is None:
            metas[False] = cache.put(ids[False], plain, shape, {**base_meta, "finetuned": False,
                                                                "make_s": round(prune_s, 3)}, X_test, y_test)
        if True in finetuned and metas[True] is None:
            import copy

            from optprune.pruning import attach_masks, remove_masks

            model = copy.deepcopy(plain)
            if masks is not None:
                attach_masks(model, masks)
            started = time.perf_counter()
            how = _finetune(model, dense_model, (Xs, y_train), ft_spec, pspec.stability)
            finetune_s = time.perf_counter() - started
            remove_masks(model)
            metas[True] = cache.put(ids[True], model, shape, {**base_meta, "finetuned": True, "finetune": how,
                                                              "accuracy_before_finetune": metas[False]["accuracy"],
                                                              "make_s": round(prune_s + finetune_s, 3)},
                                    X_test, y_test)
    out = []
    for ft in finetuned:
        meta = metas[ft]
        path = Path(meta["onnx"])
        v = Variant(ids[ft], dense.network, pspec.name, pspec.scorer, pspec.decision, ratio, ft, path, meta,
                    _load_net(path, ids[ft]))
        log(f"{v.label}: accuracy {meta['accuracy']:.4f}, {meta['params']} parameters, widths {meta['widths']}")
        out.append(v)
    return out
