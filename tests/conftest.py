"""Shared fixtures: a small MNIST-1D split and a small config, built once per session."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

from learning.config import (
    DataConfig,
    ExperimentConfig,
    LandscapeConfig,
    ModelConfig,
    OptimizerConfig,
    TrainConfig,
)
from learning.data import Dataset, load_dataset

settings.register_profile("ci", deadline=None, max_examples=50)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def small_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="test",
        data=DataConfig(n_train=300, n_test=400, probe_size=32),
        model=ModelConfig(hidden=16),
        train=TrainConfig(
            epochs=2,
            batch_size=50,
            checkpoint_every=3,
            init_seeds=[0],
            data_seeds=[0],
            optimizers=[OptimizerConfig(name="sgd", lr=0.05)],
        ),
        landscape=LandscapeConfig(resolution=5, n_examples=100),
        device="cpu",
    )


@pytest.fixture(scope="session")
def small_dataset(small_config: ExperimentConfig) -> Dataset:
    return load_dataset(small_config.data)


@pytest.fixture(scope="session")
def cpu() -> torch.device:
    return torch.device("cpu")
