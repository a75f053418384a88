"""Vectorized ensemble training reproduces train_run, run by run.

The vectorized pass batches the runs' matrix products and convolutions into
one kernel (learning.stacked's batched products, or vmap for layers those do
not cover), which may sum in another order than one run's own forward pass. Trajectories
are therefore compared within a float tolerance, not bit for bit. Every
checkpoint of every run must lie within ``ATOL`` of train_run's, as the max
absolute difference over its entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import learning.ensemble
from learning.config import (
    ExperimentConfig,
    ModelConfig,
    OptimizerConfig,
    RunSpec,
    TrainConfig,
)
from learning.data import Dataset
from learning.ensemble import _StackedAdam, _StackedSGD, train_ensemble
from learning.models import FeatureClassifier
from learning.training import RunResult, train_run

ATOL = 1e-5
"""Largest absolute parameter difference allowed between the two trainings."""

LOSS_ATOL = 1e-5
"""Largest difference allowed between two mean losses, in nats."""

LOSS_RTOL = 1e-5
"""Largest relative difference allowed between two mean losses (huge losses)."""

PREDICTION_MISMATCH = 0.01
"""Largest fraction of test predictions allowed to differ (near-ties)."""


def specs_for(
    optimizers: list[OptimizerConfig], init_seeds: list[int], data_seeds: list[int]
) -> list[RunSpec]:
    return [
        RunSpec(index=i, init_seed=a, data_seed=b, optimizer=opt)
        for i, (opt, a, b) in enumerate(
            zip(optimizers, init_seeds, data_seeds, strict=True)
        )
    ]


def assert_same_run(ours: RunResult, reference: RunResult, rtol: float = 0.0) -> None:
    """Assert that an ensemble run matches train_run's run within the tolerances."""
    assert ours.spec == reference.spec
    assert ours.status == reference.status
    assert ours.diverged_at_step == reference.diverged_at_step
    assert ours.trajectory.steps == reference.trajectory.steps
    gap = (ours.trajectory.points - reference.trajectory.points).abs()
    # Rounding in a step is relative to the largest values it sums, so the
    # bound scales with each checkpoint's largest entry. In a diverging run
    # some entries are differences of values 10^6 times their size, which
    # float32 rounding changes by far more than rtol of their own size.
    scale = reference.trajectory.points.abs().amax(dim=1, keepdim=True)
    allowed = ATOL + rtol * scale
    assert bool((gap <= allowed).all()), f"largest gap {gap.max().item():.3g}"
    assert bool(torch.isfinite(ours.trajectory.points).all())

    assert len(ours.history) == len(reference.history)
    for mine, theirs in zip(ours.history, reference.history, strict=True):
        assert mine["epoch"] == theirs["epoch"]
        assert mine["step"] == theirs["step"]
        assert mine["train_loss"] == pytest.approx(
            theirs["train_loss"], rel=LOSS_RTOL, abs=LOSS_ATOL, nan_ok=True
        )

    if reference.train_loss is None:
        assert ours.train_loss is None
        assert ours.test_predictions is None
        return
    assert ours.train_loss == pytest.approx(
        reference.train_loss, rel=LOSS_RTOL, abs=LOSS_ATOL, nan_ok=True
    )
    assert ours.test_loss == pytest.approx(
        reference.test_loss, rel=LOSS_RTOL, abs=LOSS_ATOL, nan_ok=True
    )
    assert ours.train_accuracy == pytest.approx(
        reference.train_accuracy, abs=PREDICTION_MISMATCH
    )
    assert ours.test_accuracy == pytest.approx(
        reference.test_accuracy, abs=PREDICTION_MISMATCH
    )
    assert ours.test_predictions is not None
    assert reference.test_predictions is not None
    assert ours.test_predictions.dtype == reference.test_predictions.dtype
    mismatch = np.mean(ours.test_predictions != reference.test_predictions)
    assert mismatch <= PREDICTION_MISMATCH


def assert_matches_train_run(
    config: ExperimentConfig,
    dataset: Dataset,
    specs: list[RunSpec],
    device: torch.device,
    rtol: float = 0.0,
    batched_products: bool = True,
) -> list[RunResult]:
    """Train `specs` both ways, compare them run by run and return train_run's."""
    ensemble = train_ensemble(
        config, dataset, specs, device, batched_products=batched_products
    )
    references = [train_run(config, dataset, spec, device) for spec in specs]
    assert len(ensemble) == len(specs)
    for ours, reference in zip(ensemble, references, strict=True):
        assert_same_run(ours, reference, rtol)
    return references


@pytest.mark.parametrize(
    "optimizer",
    [
        OptimizerConfig(name="sgd", lr=0.05),
        OptimizerConfig(name="adam", lr=1e-3),
    ],
    ids=["sgd", "adam"],
)
def test_ensemble_matches_train_run(
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
    optimizer: OptimizerConfig,
) -> None:
    specs = specs_for([optimizer] * 3, [0, 1, 2], [5, 6, 7])
    references = assert_matches_train_run(small_config, small_dataset, specs, cpu)
    assert all(run.status == "complete" for run in references)
    assert references[0].trajectory.steps == tuple(range(0, 13, 3))


@pytest.mark.parametrize(
    "optimizer",
    [
        OptimizerConfig(name="sgd", lr=0.05),
        OptimizerConfig(name="adam", lr=1e-3),
    ],
    ids=["sgd", "adam"],
)
@pytest.mark.parametrize("path", ["stacked", "vmap"])
def test_cnn_ensemble_matches_train_run(
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
    optimizer: OptimizerConfig,
    path: str,
) -> None:
    # The CNN's convolutions are batched products over gathered windows on
    # the stacked path, and one grouped convolution over the runs under vmap:
    # both are other kernels than the one train_run calls.
    config = small_config.model_copy(
        update={"model": ModelConfig(kind="cnn", channels=4, hidden=16)}
    )
    specs = specs_for([optimizer] * 3, [0, 1, 2], [5, 6, 7])
    references = assert_matches_train_run(
        config, small_dataset, specs, cpu, batched_products=path == "stacked"
    )
    assert all(run.status == "complete" for run in references)


def test_weight_decay_and_mixed_learning_rates(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    optimizers = [
        OptimizerConfig(name="sgd", lr=0.05, momentum=0.0, weight_decay=0.01),
        OptimizerConfig(name="sgd", lr=0.2, momentum=0.0, weight_decay=0.01),
        OptimizerConfig(name="adam", lr=1e-3, weight_decay=0.01),
        OptimizerConfig(name="adam", lr=3e-3, weight_decay=0.01),
    ]
    specs = specs_for(optimizers, [0, 1, 2, 3], [0, 1, 2, 3])
    assert_matches_train_run(small_config, small_dataset, specs, cpu)


def test_uneven_last_batch_and_final_checkpoint(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    # 300 examples in batches of 70 give 5 steps per epoch, the last of 20
    # examples; 10 steps with a checkpoint every 4 end off the interval.
    config = small_config.model_copy(
        update={"train": TrainConfig(epochs=2, batch_size=70, checkpoint_every=4)}
    )
    specs = specs_for([OptimizerConfig(name="sgd", lr=0.05)] * 2, [0, 1], [0, 1])
    references = assert_matches_train_run(config, small_dataset, specs, cpu)
    assert references[0].trajectory.steps == (0, 4, 8, 10)


def test_results_follow_spec_order_across_groups(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    sgd = OptimizerConfig(name="sgd", lr=0.05)
    adam = OptimizerConfig(name="adam", lr=1e-3)
    specs = specs_for([adam, sgd, adam, sgd], [0, 1, 2, 3], [0, 0, 1, 1])
    results = train_ensemble(small_config, small_dataset, specs, cpu)
    assert [run.spec for run in results] == specs
    alone = train_ensemble(small_config, small_dataset, specs[2:3], cpu)[0]
    assert_same_run(results[2], alone)


def test_diverging_run_in_ensemble(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    optimizers = [
        OptimizerConfig(name="sgd", lr=0.05),
        OptimizerConfig(name="sgd", lr=1e12),
        OptimizerConfig(name="sgd", lr=0.05),
    ]
    specs = specs_for(optimizers, [0, 1, 2], [3, 4, 5])
    references = assert_matches_train_run(small_config, small_dataset, specs, cpu)
    statuses = [run.status for run in references]
    assert statuses == ["complete", "diverged", "complete"]


def test_divergence_at_several_steps(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    # With 3 steps per epoch, these rates make train_run diverge in the first
    # or the second epoch, on a checkpoint step or between two. One run
    # diverges only in the final evaluation. The ensemble must agree on each.
    config = small_config.model_copy(
        update={"train": TrainConfig(epochs=4, batch_size=120, checkpoint_every=2)}
    )
    rates = [0.05, 1e3, 2e3, 1e4, 1e12, 0.1]
    optimizers = [OptimizerConfig(name="sgd", lr=lr) for lr in rates]
    specs = specs_for(optimizers, [0, 2, 0, 3, 1, 3], [10, 12, 10, 13, 11, 13])
    references = assert_matches_train_run(config, small_dataset, specs, cpu, 1e-5)
    statuses = [run.status for run in references]
    assert "complete" in statuses
    assert "diverged" in statuses


def test_diverged_run_frozen(
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This rate makes the run diverge at step 4, a checkpoint step, so its
    # frozen parameters must stay equal to that checkpoint until the end.
    config = small_config.model_copy(
        update={"train": TrainConfig(epochs=4, batch_size=120, checkpoint_every=2)}
    )
    optimizers = [OptimizerConfig(name="sgd", lr=lr) for lr in (0.05, 1e3)]
    specs = specs_for(optimizers, [0, 2], [10, 12])
    captured: list[torch.Tensor] = []
    finish_runs = learning.ensemble._finish_runs

    def capture(*args: Any) -> list[RunResult]:
        captured.append(args[5].clone())
        return finish_runs(*args)

    monkeypatch.setattr(learning.ensemble, "_finish_runs", capture)
    results = train_ensemble(config, small_dataset, specs, cpu)
    diverged = results[1]
    assert diverged.status == "diverged"
    assert diverged.diverged_at_step == diverged.trajectory.steps[-1]
    assert torch.equal(captured[0][1], diverged.trajectory.points[-1])
    assert torch.equal(captured[0][0], results[0].final_point)


def test_every_run_diverges(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    specs = specs_for([OptimizerConfig(name="sgd", lr=1e30)] * 2, [0, 1], [0, 1])
    references = assert_matches_train_run(small_config, small_dataset, specs, cpu)
    assert all(run.status == "diverged" for run in references)


def test_empty_specs_give_no_runs(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    assert train_ensemble(small_config, small_dataset, [], cpu) == []


def test_model_with_buffers_rejected(
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def with_batch_norm(
        config: ExperimentConfig, dataset: Dataset, init_seed: int
    ) -> FeatureClassifier:
        features = nn.Sequential(nn.Linear(40, 8), nn.BatchNorm1d(8))
        return FeatureClassifier(features, nn.Linear(8, 10))

    monkeypatch.setattr(learning.ensemble, "initial_model", with_batch_norm)
    specs = specs_for([OptimizerConfig(name="sgd", lr=0.05)], [0], [0])
    with pytest.raises(ValueError, match="buffers"):
        train_ensemble(small_config, small_dataset, specs, cpu)


@st.composite
def optimizer_cases(
    draw: st.DrawFn, name: str
) -> tuple[OptimizerConfig, list[float], int]:
    """Draw an optimizer config, per-run learning rates and a number of steps."""
    n_runs = draw(st.integers(1, 4))
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
    weight_decay = draw(st.sampled_from([0.0, 0.01]))
    lr = st.floats(1e-4, 1.0)
    if draw(st.booleans()):
        rates = [draw(lr)] * n_runs
    else:
        rates = draw(st.lists(lr, min_size=n_runs, max_size=n_runs))
    config = OptimizerConfig(
        name=name,
        lr=rates[0],
        momentum=momentum,
        weight_decay=weight_decay,
    )
    return config, rates, draw(st.integers(1, 4))


def run_stacked_and_torch(
    config: OptimizerConfig, rates: list[float], steps: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step a stacked optimizer, and torch.optim per row, on the same gradients."""
    generator = torch.Generator().manual_seed(seed)
    n_runs, size = len(rates), 7
    start = torch.randn(n_runs, size, generator=generator)
    grads = [torch.randn(n_runs, size, generator=generator) for _ in range(steps)]
    learning_rates = torch.tensor(rates).unsqueeze(1)
    shared = rates[0] if len(set(rates)) == 1 else None

    stacked: _StackedSGD | _StackedAdam
    if config.name == "sgd":
        stacked = _StackedSGD(config, learning_rates, shared)
    else:
        stacked = _StackedAdam(config, learning_rates, shared, start)
    params = start.clone()
    for grad in grads:
        params = stacked.updated(params, grad)

    rows = []
    for i, lr in enumerate(rates):
        leaf = nn.Parameter(start[i].clone())
        optimizer: torch.optim.Optimizer
        if config.name == "sgd":
            optimizer = torch.optim.SGD(
                [leaf],
                lr=lr,
                momentum=config.momentum,
                weight_decay=config.weight_decay,
            )
        else:
            optimizer = torch.optim.Adam(
                [leaf], lr=lr, weight_decay=config.weight_decay
            )
        for grad in grads:
            leaf.grad = grad[i].clone()
            optimizer.step()
        rows.append(leaf.detach())
    return params, torch.stack(rows)


@given(optimizer_cases("sgd"), st.integers(0, 2**16))
def test_stacked_sgd_matches_torch_optim(
    case: tuple[OptimizerConfig, list[float], int], seed: int
) -> None:
    config, rates, steps = case
    ours, reference = run_stacked_and_torch(config, rates, steps, seed)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)


@given(optimizer_cases("adam"), st.integers(0, 2**16))
def test_stacked_adam_matches_torch_optim(
    case: tuple[OptimizerConfig, list[float], int], seed: int
) -> None:
    config, rates, steps = case
    ours, reference = run_stacked_and_torch(config, rates, steps, seed)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)


@settings(max_examples=6)
@given(
    st.lists(st.integers(0, 20), min_size=1, max_size=4, unique=True),
    st.integers(0, 20),
)
def test_run_independent_of_companions(
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
    init_seeds: list[int],
    data_seed: int,
) -> None:
    config = small_config.model_copy(
        update={"train": small_config.train.model_copy(update={"epochs": 1})}
    )
    optimizer = OptimizerConfig(name="adam", lr=1e-3)
    n = len(init_seeds)
    specs = specs_for([optimizer] * n, init_seeds, [data_seed] * n)
    together = train_ensemble(config, small_dataset, specs, cpu)
    alone = train_ensemble(config, small_dataset, specs[-1:], cpu)[0]
    assert_same_run(together[-1], alone)


@pytest.mark.parametrize(
    "optimizer",
    [
        OptimizerConfig(name="adamw", lr=1e-3),
        OptimizerConfig(name="sgd", lr=0.05, nesterov=True),
        OptimizerConfig(name="sgd", lr=0.05, schedule="cosine"),
    ],
    ids=["adamw", "nesterov", "cosine"],
)
def test_unsupported_optimizer_rejected(
    optimizer: OptimizerConfig,
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
) -> None:
    spec = RunSpec(index=0, init_seed=0, data_seed=0, optimizer=optimizer)
    with pytest.raises(ValueError, match="train it with train_run"):
        train_ensemble(small_config, small_dataset, [spec], cpu)
