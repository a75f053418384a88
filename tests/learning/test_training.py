"""Training records trajectories reproducibly and survives divergence."""

from __future__ import annotations

import pytest
import torch

from learning.config import ExperimentConfig, OptimizerConfig, RunSpec
from learning.data import Dataset
from learning.evaluate import StackedEvaluator
from learning.training import initial_model, make_optimizer, make_schedule, train_run


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


@pytest.mark.parametrize(
    "optimizer",
    [
        OptimizerConfig(name="sgd", lr=0.05, nesterov=True),
        OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.01),
        OptimizerConfig(name="rmsprop", lr=1e-3, momentum=0.0),
        OptimizerConfig(name="natural_gradient", lr=0.01),
        OptimizerConfig(
            name="natural_gradient", lr=0.01, fisher_kind="lowrank", fisher_rank=8
        ),
        OptimizerConfig(name="sgd", lr=0.05, schedule="cosine"),
        OptimizerConfig(
            name="adam", lr=1e-3, schedule="step", step_every=1, step_gamma=0.5
        ),
    ],
    ids=lambda o: f"{o.name}-{o.schedule}-{o.fisher_kind}",
)
def test_every_optimizer_trains(
    optimizer: OptimizerConfig,
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
) -> None:
    spec = RunSpec(index=0, init_seed=0, data_seed=0, optimizer=optimizer)
    run = train_run(small_config, small_dataset, spec, cpu)
    assert run.status == "complete"
    evaluator = StackedEvaluator(initial_model(small_config, small_dataset, 0), cpu)
    ends = run.trajectory.points[[0, -1]]
    losses, _ = evaluator.loss_and_accuracy(
        ends, small_dataset.x_train, small_dataset.y_train
    )
    assert losses[1] < losses[0]


def test_cosine_schedule_ends_near_zero() -> None:
    model = torch.nn.Linear(2, 2)
    config = OptimizerConfig(name="sgd", lr=1.0, schedule="cosine")
    optimizer = make_optimizer(model, config)
    schedule = make_schedule(optimizer, config, steps_per_epoch=5, epochs=2)
    for _ in range(10):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_step_schedule_multiplies_each_period() -> None:
    model = torch.nn.Linear(2, 2)
    config = OptimizerConfig(
        name="sgd", lr=1.0, schedule="step", step_every=1, step_gamma=0.5
    )
    optimizer = make_optimizer(model, config)
    schedule = make_schedule(optimizer, config, steps_per_epoch=3, epochs=4)
    for _ in range(6):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)


def test_nesterov_needs_sgd() -> None:
    with pytest.raises(ValueError, match="nesterov = true needs name = 'sgd'"):
        OptimizerConfig(name="adam", lr=1e-3, nesterov=True)


def test_lowrank_needs_rank() -> None:
    with pytest.raises(ValueError, match="needs fisher_rank"):
        OptimizerConfig(name="natural_gradient", lr=0.01, fisher_kind="lowrank")
