"""Offline data sets: MNIST-1D generated locally and scikit-learn's digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
