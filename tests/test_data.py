"""optprune.data: data folder lookup, IDX reader, fixed stratified splits."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from optprune import data
from optprune.data import data_dir, dataset_info, load_dataset, read_idx, split_indices, stratified_split
from optprune.errors import DataNotFoundError, FileFormatError, InvalidParameterError


def _idx_bytes(arr: np.ndarray, type_byte: int = 0x08) -> bytes:
    return bytes([0, 0, type_byte, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _fake_mnist(folder, n=50, seed=0, gz=True):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    (folder / "mnist").mkdir(parents=True)
    for stem, arr in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        raw = _idx_bytes(arr)
        if gz:
            (folder / "mnist" / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / "mnist" / stem).write_bytes(raw)
    return images, labels


def _check_split(name, y_all, folder=None):
    folds = {s: split_indices(name, s, folder) for s in ("train", "val", "test")}
    info = dataset_info(name) if folder is None else None
    allidx = np.concatenate(list(folds.values()))
    assert np.array_equal(np.sort(allidx), np.arange(len(y_all)))  # disjoint and covering
    n = len(y_all)
    assert len(folds["test"]) == len(folds["val"]) == round(0.2 * n)
    if info is not None:
        assert {s: len(v) for s, v in folds.items()} == {k: v for k, v in info.split_sizes.items() if k != "all"}
    counts = np.bincount(y_all, minlength=10)
    for idx in folds.values():
        frac = len(idx) / n
        per_class = np.bincount(y_all[idx], minlength=10)
        assert np.all(np.abs(per_class - counts * frac) < 1.0 + 1e-9)  # stratified to within one sample
    return folds


def test_digits_splits():
    X, y = load_dataset("digits", "all")
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    folds = _check_split("digits", y)
    assert [len(folds[s]) for s in ("train", "val", "test")] == [1079, 359, 359]
    Xt, yt = load_dataset("digits", "test")
    np.testing.assert_array_equal(Xt, X[folds["test"]])
    np.testing.assert_array_equal(yt, y[folds["test"]])


def test_splits_are_deterministic_across_cache_clears():
    before = {s: split_indices("digits", s).copy() for s in ("train", "val", "test")}
    data._split_cache.cache_clear()
    data._load_all.cache_clear()
    for s, idx in before.items():
        np.testing.assert_array_equal(split_indices("digits", s), idx)


def test_returned_arrays_are_writable_copies():
    X, y = load_dataset("digits", "train")
    X[0] = 5.0
    assert load_dataset("digits", "train")[0][0].max() <= 1.0


def test_stratified_split_exact_sizes_and_seed():
    y = np.repeat(np.arange(3), [7, 11, 2])
    a = stratified_split(y, (4, 4, 12), seed=0)
    b = stratified_split(y, (4, 4, 12), seed=0)
    c = stratified_split(y, (4, 4, 12), seed=1)
    assert [len(f) for f in a] == [4, 4, 12]
    assert all(np.array_equal(f, g) for f, g in zip(a, b))
    assert not all(np.array_equal(f, g) for f, g in zip(a, c))
    with pytest.raises(InvalidParameterError, match="sum to 20"):
        stratified_split(y, (4, 4, 4))


def test_mnist_from_a_fake_folder(tmp_path):
    images, labels = _fake_mnist(tmp_path, n=50)
    X, y = load_dataset("mnist", "all", data_dir=tmp_path)
    assert X.shape == (50, 1, 28, 28) and X.dtype == np.float32
    np.testing.assert_allclose(X[:, 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    folds = _check_split("mnist", y, tmp_path)
    assert [len(folds[s]) for s in ("train", "val", "test")] == [30, 10, 10]


def test_raw_idx_files_are_read(tmp_path):
    images, _ = _fake_mnist(tmp_path, n=20, gz=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte"), images)


def test_corrupt_idx_files(tmp_path):
    good = _idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    (tmp_path / "magic").write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(FileFormatError, match="bad magic number"):
        read_idx(tmp_path / "magic")
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(FileFormatError, match="header .*should have 24"):
        read_idx(tmp_path / "short")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(FileFormatError, match="could not be read"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(DataNotFoundError):
        read_idx(tmp_path / "absent")
    np.testing.assert_array_equal(read_idx_bytes(tmp_path, good), np.arange(12).reshape(3, 4))


def read_idx_bytes(folder, raw):
    (folder / "good").write_bytes(raw)
    return read_idx(folder / "good")


def test_data_dir_lookup(tmp_path, monkeypatch):
    assert data_dir(tmp_path) == tmp_path.resolve()
    monkeypatch.setenv("OPTPRUNE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="OPTPRUNE_DATA.*nowhere"):
        data_dir()
    with pytest.raises(DataNotFoundError, match="mnist"):
        load_dataset("mnist", "all", data_dir=tmp_path)


def test_invalid_names():
    with pytest.raises(InvalidParameterError, match="'cifar'"):
        load_dataset("cifar", "all")
    with pytest.raises(InvalidParameterError, match="'holdout'"):
        load_dataset("digits", "holdout")


def test_dataset_info():
    info = dataset_info("mnist")
    assert info.input_shape == (1, 28, 28) and info.num_classes == 10 and info.input_size == 784
    assert info.split_sizes == {"train": 6000, "val": 2000, "test": 2000, "all": 10000}
    assert dataset_info("digits").input_shape == (1, 8, 8)


def test_real_mnist_splits():
    try:
        folder = data_dir()
    except DataNotFoundError as exc:
        pytest.skip(f"shared data folder absent ({exc})")
    X, y = load_dataset("mnist", "all", folder)
    assert X.shape == (10000, 1, 28, 28)
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    folds = _check_split("mnist", y, folder)
    assert [len(folds[s]) for s in ("train", "val", "test")] == [6000, 2000, 2000]
