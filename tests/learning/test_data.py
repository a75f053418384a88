"""Offline data sets: MNIST-1D generated locally and scikit-learn's digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from learning.config import DataConfig
from learning.data import load_dataset


def test_mnist1d_sizes_and_probe() -> None:
    data = load_dataset(DataConfig(n_train=200, n_test=300, probe_size=16))
    assert data.x_train.shape == (200, 40)
    assert data.x_test.shape == (300, 40)
    assert torch.equal(data.probe, data.x_test[:16])
    assert set(data.y_train.tolist()) <= set(range(10))


def test_mnist1d_is_deterministic() -> None:
    config = DataConfig(n_train=100, n_test=100, probe_size=8)
    assert torch.equal(load_dataset(config).x_train, load_dataset(config).x_train)


def test_mnist1d_restores_numpy_global_state() -> None:
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    load_dataset(DataConfig(n_train=100, n_test=100, probe_size=8))
    assert np.random.random() == expected


def test_digits_split() -> None:
    data = load_dataset(
        DataConfig(name="digits", n_train=1000, n_test=797, probe_size=32)
    )
    assert data.x_train.shape == (1000, 64)
    assert data.x_test.shape == (797, 64)
    assert float(data.x_train.max()) <= 1.0


def test_digits_too_many_examples() -> None:
    with pytest.raises(ValueError, match="digits has 1797 examples"):
        load_dataset(DataConfig(name="digits", n_train=4000, n_test=1000))


def _write_idx(path: Path, array: np.ndarray) -> None:
    # IDX: two zero bytes, type code 0x08 (unsigned byte), the number of
    # dimensions, big-endian sizes, then the data.
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_local_mnist_folder_read_and_subsampled(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 30)):
        _write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28))
        )
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    config = DataConfig(
        name="mnist", root=str(tmp_path), n_train=40, n_test=20, probe_size=8
    )
    data = load_dataset(config)
    assert data.x_train.shape == (40, 28, 28)
    assert data.x_test.shape == (20, 28, 28)
    assert torch.equal(data.probe, data.x_test[:8])


def test_local_data_needs_root() -> None:
    with pytest.raises(ValidationError, match="set data.root"):
        DataConfig(name="cifar10")


def test_local_missing_folder_names_path(tmp_path: Path) -> None:
    from learning.readers import DatasetNotFoundError

    config = DataConfig(name="fashion_mnist", root=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        load_dataset(config)


def test_local_split_too_large(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        _write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28))
        )
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    config = DataConfig(
        name="mnist", root=str(tmp_path), n_train=20, n_test=50, probe_size=8
    )
    with pytest.raises(ValueError, match="n_test = 50 exceeds the 10 examples"):
        load_dataset(config)
