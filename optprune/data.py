"""Datasets for tests, fine-tuning and benchmarks, with fixed documented splits.

Two datasets, both returned as ``X`` float32 of shape (n, 1, H, W) with pixels
in [0, 1] and ``y`` int64 class labels 0-9:

``"mnist"``
    The 10,000 images of the MNIST *test* set (LeCun et al., 1998), read from
    the IDX files ``mnist/t10k-images-idx3-ubyte[.gz]`` and
    ``mnist/t10k-labels-idx1-ubyte[.gz]`` under :func:`data_dir`; pixels are
    ``uint8 / 255``; H = W = 28. The MNIST training set is not used: every
    figure that trains or fine-tunes on MNIST does so on the ``"train"`` fold
    of these 10,000 images.
``"digits"``
    The 1,797 8x8 images of scikit-learn's ``load_digits`` (UCI optical
    recognition of handwritten digits, bundled with scikit-learn, no
    download); pixels are ``value / 16``; H = W = 8.

Splits (stratified by class, seed 0, fixed forever)
----------------------------------------------------
========  =======  ======  =====  ======
dataset   train    val     test   all
========  =======  ======  =====  ======
mnist     6,000    2,000   2,000  10,000
digits    1,079    359     359    1,797
========  =======  ======  =====  ======

``"all"`` is the whole set in file order (the VNN-COMP 2021 mnistfc networks'
accuracies 0.9808 / 0.9764 are on MNIST ``"all"``). The three folds are
disjoint and cover ``"all"``. They are drawn by :func:`split_indices`: for
``n`` samples the val and test folds hold ``round(0.2 n)`` samples each and
train the rest; every class contributes to each fold in proportion to its size
(largest-remainder rounding, ties to the lower class label), and within each
class the samples are assigned by one permutation from
``numpy.random.default_rng(0)`` (first test, then val, then train). Indices
inside a fold are returned in increasing order.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from optprune.errors import DataNotFoundError, FileFormatError, InvalidParameterError

__all__ = [
    "DATASETS",
    "SPLITS",
    "SPLIT_SEED",
    "DatasetInfo",
    "data_dir",
    "dataset_info",
    "load_dataset",
    "read_idx",
    "split_indices",
    "stratified_split",
]

DATASETS = ("mnist", "digits")
SPLITS = ("train", "val", "test", "all")
SPLIT_SEED = 0
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2

DatasetName = Literal["mnist", "digits"]
SplitName = Literal["train", "val", "test", "all"]

_REPO_ROOT = Path(__file__).resolve().parents[1]
_IDX_MAGIC = {0x08: (np.uint8, "unsigned byte"), 0x09: (np.int8, "signed byte"), 0x0B: (np.dtype(">i2"), "short"),
              0x0C: (np.dtype(">i4"), "int"), 0x0D: (np.dtype(">f4"), "float"), 0x0E: (np.dtype(">f8"), "double")}
_MNIST_FILES = {"images": "t10k-images-idx3-ubyte", "labels": "t10k-labels-idx1-ubyte"}


@dataclass(frozen=True)
class DatasetInfo:
    """Shape and size of a dataset: one sample is ``input_shape`` (C, H, W)."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    n_samples: int
    split_sizes: dict

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The shared data folder.

    Looked up in order: ``path`` if given, else the environment variable
    ``OPTPRUNE_DATA``, else ``<repo>/../shared/data`` (the repository root is
    the folder holding the ``optprune`` package), else ``./../shared/data``
    relative to the working directory. Raises :class:`DataNotFoundError`
    naming every place looked at when none exists.
    """
    if path is not None:
        candidates = [("argument", Path(path))]
    elif os.environ.get("OPTPRUNE_DATA"):
        candidates = [("OPTPRUNE_DATA", Path(os.environ["OPTPRUNE_DATA"]))]
    else:
        candidates = [("repository default", _REPO_ROOT.parent / "shared" / "data"),
                      ("working-directory default", Path.cwd().parent / "shared" / "data")]
    for _, candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    looked = "; ".join(f"{src}: {p}" for src, p in candidates)
    raise DataNotFoundError(
        f"data folder not found (looked at {looked}); pass a path or set OPTPRUNE_DATA to the folder "
        "that holds mnist/ and vnncomp2021-mnistfc/"
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (LeCun's MNIST format), gzip-compressed (``.gz``) or raw.

    The header is two zero bytes, a type byte (0x08 = uint8, ..., 0x0E =
    float64), a byte giving the number of dimensions ``d``, then ``d``
    big-endian uint32 sizes; the data follows in C order. Raises
    :class:`FileFormatError` on a wrong magic number or a size that does not
    match the header, :class:`DataNotFoundError` if the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"IDX file not found: {path}")
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise FileFormatError(f"IDX file {path} could not be read ({exc}); expected gzip or raw IDX data") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_MAGIC or raw[3] == 0:
        raise FileFormatError(
            f"IDX file {path} has a bad magic number {raw[:4].hex() or '<empty>'}; expected 0000 followed by a "
            f"type byte in {sorted(hex(k) for k in _IDX_MAGIC)} and a nonzero number of dimensions"
        )
    dtype, _ = _IDX_MAGIC[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FileFormatError(f"IDX file {path} is truncated inside its header ({len(raw)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims)) * np.dtype(dtype).itemsize
    if len(raw) != expected:
        raise FileFormatError(
            f"IDX file {path} has {len(raw)} bytes; its header (shape {dims}) says it should have {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(np.dtype(dtype).newbyteorder("="))


def _find_mnist_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(f"MNIST file not found: looked for {folder / stem}.gz and {folder / stem}")


@lru_cache(maxsize=4)
def _load_all(name: str, folder: str | None) -> tuple[np.ndarray, np.ndarray]:
    if name == "mnist":
        root = data_dir(folder) / "mnist"
        images = read_idx(_find_mnist_file(root, _MNIST_FILES["images"]))
        labels = read_idx(_find_mnist_file(root, _MNIST_FILES["labels"]))
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise FileFormatError(
                f"MNIST files in {root} do not fit together: images {images.shape}, labels {labels.shape}; "
                "expected (n, 28, 28) and (n,)"
            )
        X = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
        y = labels.astype(np.int64)
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        X = (digits.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
        y = digits.target.astype(np.int64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise InvalidParameterError(f"dataset must be one of {DATASETS}, got {name!r}")


def stratified_split(y: np.ndarray, sizes: tuple[int, ...], seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Split ``range(len(y))`` into disjoint folds of the given ``sizes`` (summing to ``len(y)``), stratified.

    Each class ``c`` with ``n_c`` samples gives fold ``k`` either ``floor(s_k n_c / n)`` or one more sample,
    chosen by largest remainder so the fold totals are exactly ``sizes`` and every class total is exactly
    ``n_c``; ties go to the lower class label. Samples within a class are assigned by one permutation from
    ``numpy.random.default_rng(seed)``, classes in increasing label order. Returns sorted index arrays.
    """
    y = np.asarray(y)
    n = y.shape[0]
    if sum(sizes) != n or min(sizes) < 0:
        raise InvalidParameterError(f"fold sizes {sizes} must be nonnegative and sum to {n}")
    classes, counts = np.unique(y, return_counts=True)
    target = np.outer(counts, np.asarray(sizes, dtype=np.float64)) / n  # (classes, folds)
    alloc = np.floor(target).astype(np.int64)
    frac = target - alloc
    # Fill folds (columns) to their totals, then balance rows, by largest remainder in a fixed order.
    for k in range(len(sizes) - 1):
        need = sizes[k] - alloc[:, k].sum()
        order = np.lexsort((np.arange(len(classes)), -frac[:, k]))
        room = counts - alloc.sum(axis=1)
        chosen = [c for c in order if room[c] > 0][:need]
        alloc[chosen, k] += 1
    alloc[:, -1] = counts - alloc[:, :-1].sum(axis=1)
    if alloc[:, -1].min() < 0 or alloc[:, -1].sum() != sizes[-1]:  # cannot happen for sizes summing to n
        raise InvalidParameterError(f"fold sizes {sizes} cannot be stratified over class counts {counts.tolist()}")
    rng = np.random.default_rng(seed)
    folds: list[list[np.ndarray]] = [[] for _ in sizes]
    for ci, c in enumerate(classes):
        members = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for k in range(len(sizes)):
            folds[k].append(members[start : start + alloc[ci, k]])
            start += alloc[ci, k]
    return [np.sort(np.concatenate(f)) if f else np.zeros(0, dtype=np.int64) for f in folds]


def _fold_sizes(n: int) -> tuple[int, int, int]:
    n_test = int(round(TEST_FRACTION * n))
    n_val = int(round(VAL_FRACTION * n))
    return n_test, n_val, n - n_test - n_val


@lru_cache(maxsize=4)
def _split_cache(name: str, folder: str | None) -> dict[str, np.ndarray]:
    _, y = _load_all(name, folder)
    test, val, train = stratified_split(y, _fold_sizes(y.shape[0]), SPLIT_SEED)
    out = {"train": train, "val": val, "test": test, "all": np.arange(y.shape[0])}
    for arr in out.values():
        arr.setflags(write=False)
    return out


def _folder_key(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def split_indices(name: DatasetName, split: SplitName, data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Indices (into ``"all"``) of a fold of the fixed split documented in this module (read-only array)."""
    _check_name(name)
    if split not in SPLITS:
        raise InvalidParameterError(f"split must be one of {SPLITS}, got {split!r}")
    key = _folder_key(data_dir) if name == "mnist" else None
    return _split_cache(name, key)[split]


def load_dataset(
    name: DatasetName, split: SplitName = "all", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of one fold: X float32 (n, 1, H, W) in [0, 1], y int64 (writable copies)."""
    idx = split_indices(name, split, data_dir)
    X, y = _load_all(name, _folder_key(data_dir) if name == "mnist" else None)
    return X[idx], y[idx]


def dataset_info(name: DatasetName) -> DatasetInfo:
    """Input shape, class count and fold sizes of a dataset (reads no file)."""
    _check_name(name)
    shape, n = ((1, 28, 28), 10_000) if name == "mnist" else ((1, 8, 8), 1_797)
    n_test, n_val, n_train = _fold_sizes(n)
    return DatasetInfo(
        name=name,
        input_shape=shape,
        num_classes=10,
        n_samples=n,
        split_sizes={"train": n_train, "val": n_val, "test": n_test, "all": n},
    )
