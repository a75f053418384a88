"""L's laws checked by Hypothesis on sub-trajectories of real recorded runs."""

from __future__ import annotations

import pytest
import torch

from learning.config import ExperimentConfig
from learning.data import Dataset
from learning.functor import LearningFunctor
from learning.laws import RecordedParam, check_learning_functor
from learning.param import Trajectory
from learning.rep import RepPath
from learning.training import initial_model, train_run


@pytest.fixture(scope="module")
def trajectories(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> list[Trajectory]:
    specs = small_config.train.run_specs()
    other = specs[0].model_copy(update={"data_seed": 7})
    return [
        train_run(small_config, small_dataset, spec, cpu).trajectory
        for spec in (specs[0], other)
    ]


@pytest.fixture(scope="module")
def functor(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> LearningFunctor:
    model = initial_model(small_config, small_dataset, 0)
    return LearningFunctor(model, small_dataset.probe, cpu)


def test_laws_hold_on_drawn_sub_trajectories(
    functor: LearningFunctor, trajectories: list[Trajectory]
) -> None:
    report = check_learning_functor(functor, trajectories, max_examples=40)
    assert report.ok, [str(f) for f in report.failures]
    assert report.checked["functor.composition"] == 40


class Truncating(LearningFunctor):
    """Known-bad: drops the last frame of every path longer than two frames."""

    def map_morphism(self, f: Trajectory) -> RepPath:
        whole = super().map_morphism(f)
        if len(whole.times) <= 2:
            return whole
        return RepPath(whole.times[:-1], whole.features[:-1])


def test_truncating_functor_rejected(
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
    trajectories: list[Trajectory],
) -> None:
    bad = Truncating(
        initial_model(small_config, small_dataset, 0), small_dataset.probe, cpu
    )
    report = check_learning_functor(bad, trajectories, max_examples=40)
    assert report.failures_of("functor.codomain")


def test_shared_initialization_is_one_object(
    functor: LearningFunctor, trajectories: list[Trajectory]
) -> None:
    recorded = RecordedParam(functor.source, trajectories)
    starts = {trajectory.start for trajectory in trajectories}
    assert len(starts) == 1  # both runs share init seed 0
    assert len(recorded.checkpoints()) == sum(len(t.steps) for t in trajectories) - 1


def test_recorded_param_needs_runs(functor: LearningFunctor) -> None:
    with pytest.raises(ValueError, match="at least one recorded trajectory"):
        RecordedParam(functor.source, [])
