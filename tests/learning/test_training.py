"""Training records trajectories reproducibly and survives divergence."""

from __future__ import annotations

import torch

from learning.config import ExperimentConfig, OptimizerConfig, RunSpec
from learning.data import Dataset
from learning.training import train_run


def test_same_seeds_same_trajectory(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    spec = small_config.train.run_specs()[0]
    first = train_run(small_config, small_dataset, spec, cpu)
    second = train_run(small_config, small_dataset, spec, cpu)
    assert first.trajectory == second.trajectory


def test_data_seed_changes_trajectory(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    spec = small_config.train.run_specs()[0]
    other = spec.model_copy(update={"data_seed": spec.data_seed + 1})
    first = train_run(small_config, small_dataset, spec, cpu)
    second = train_run(small_config, small_dataset, other, cpu)
    assert torch.equal(first.trajectory.points[0], second.trajectory.points[0])
    assert not torch.equal(first.trajectory.points[-1], second.trajectory.points[-1])


def test_checkpoints_at_interval_and_end(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    run = train_run(small_config, small_dataset, small_config.train.run_specs()[0], cpu)
    steps_per_epoch = 300 // 50
    total = small_config.train.epochs * steps_per_epoch
    assert run.trajectory.steps == tuple(range(0, total + 1, 3))


def test_metrics_are_fractions(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    run = train_run(small_config, small_dataset, small_config.train.run_specs()[0], cpu)
    assert run.status == "complete"
    assert 0 <= run.train_accuracy <= 1  # type: ignore[operator]
    assert 0 <= run.test_accuracy <= 1  # type: ignore[operator]
    assert run.test_predictions is not None
    assert run.test_predictions.shape == (400,)


def test_diverging_run_recorded_not_raised(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    spec = RunSpec(
        index=0,
        init_seed=0,
        data_seed=0,
        optimizer=OptimizerConfig(name="sgd", lr=1e12),
    )
    run = train_run(small_config, small_dataset, spec, cpu)
    assert run.status == "diverged"
    assert run.diverged_at_step is not None
    assert run.test_accuracy is None
    assert bool(torch.isfinite(run.trajectory.points).all())
