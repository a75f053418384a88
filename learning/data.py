"""Data sets, all available offline: MNIST-1D generated locally and scikit-learn's digits.

Nothing is downloaded. MNIST-1D comes from `mnist1d.data.make_dataset`, which
builds the examples from ten 1-D templates with seeded random transforms.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from learning.config import DataConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Train and test tensors of a classification task, on the CPU.

    ``probe`` is the fixed set of held-out inputs on which the learning
    functor computes features: the first ``probe_size`` test inputs.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    probe: torch.Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(self.x_train.shape[1:])


def load_dataset(config: DataConfig) -> Dataset:
    """Build the data set a config names, with its train/test split and probe set."""
    if config.name == "mnist1d":
        x_train, y_train, x_test, y_test = _mnist1d(config)
    elif config.name == "digits":
        x_train, y_train, x_test, y_test = _digits(config)
    else:
        x_train, y_train, x_test, y_test = _local(config)

    dataset = Dataset(
        name=config.name,
        x_train=torch.as_tensor(x_train, dtype=torch.float32),
        y_train=torch.as_tensor(y_train, dtype=torch.long),
        x_test=torch.as_tensor(x_test, dtype=torch.float32),
        y_test=torch.as_tensor(y_test, dtype=torch.long),
        probe=torch.as_tensor(x_test[: config.probe_size], dtype=torch.float32),
        n_classes=10,
    )
    logger.info(
        "loaded %s: %d train, %d test, input shape %s",
        config.name,
        len(dataset.y_train),
        len(dataset.y_test),
        dataset.input_shape,
    )
    return dataset


def _mnist1d(config: DataConfig) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = config.n_train + config.n_test
    args.train_split = config.n_train / args.num_samples
    args.seed = config.seed

    # make_dataset seeds numpy's global generator; restore it so that loading
    # data does not change random draws elsewhere in the caller's program.
    state = np.random.get_state()
    try:
        generated = make_dataset(args)
    finally:
        np.random.set_state(state)
    return generated["x"], generated["y"], generated["x_test"], generated["y_test"]


def _local(config: DataConfig) -> tuple[np.ndarray, ...]:
    from learning.readers import load_cifar10, load_mnist

    assert config.root is not None  # DataConfig requires it for these names
    if config.name == "cifar10":
        local = load_cifar10(config.root)
    else:
        local = load_mnist(config.root, kind=config.name)  # type: ignore[arg-type]
    x_train, x_test = local.to_float(normalize=True)
    if x_train.ndim == 4:  # CIFAR-10 comes channels-last; torch wants NCHW
        x_train, x_test = np.moveaxis(x_train, -1, 1), np.moveaxis(x_test, -1, 1)

    rng = np.random.default_rng(config.seed)
    picked: list[np.ndarray] = []
    for x, y, n, split in (
        (x_train, local.y_train, config.n_train, "n_train"),
        (x_test, local.y_test, config.n_test, "n_test"),
    ):
        if n > len(y):
            raise ValueError(
                f"{split} = {n} exceeds the {len(y)} examples of {config.name}'s"
                f" {split[2:]} split; lower {split}"
            )
        index = np.sort(rng.choice(len(y), size=n, replace=False))
        picked += [np.ascontiguousarray(x[index]), y[index]]
    return tuple(picked)


def _digits(config: DataConfig) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / 16.0
    y = bunch.target
    available = len(y)
    if config.n_train + config.n_test > available:
        raise ValueError(
            f"digits has {available} examples, but n_train + n_test ="
            f" {config.n_train + config.n_test}; lower them (for example"
            " n_train=1000, n_test=797)"
        )
    order = np.random.default_rng(config.seed).permutation(available)
    train = order[: config.n_train]
    test = order[config.n_train : config.n_train + config.n_test]
    return x[train], y[train], x[test], y[test]
