"""The learning functor L on a real recorded trajectory, and broken imitations of it."""

from __future__ import annotations

import itertools

import pytest
import torch

from categories import functor_law_failures
from learning.config import ExperimentConfig
from learning.data import Dataset
from learning.functor import LearningFunctor
from learning.param import Trajectory
from learning.rep import RepPath, Representation
from learning.training import RunResult, initial_model, train_run


@pytest.fixture(scope="module")
def recorded(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> RunResult:
    return train_run(
        small_config, small_dataset, small_config.train.run_specs()[0], cpu
    )


@pytest.fixture(scope="module")
def functor(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> LearningFunctor:
    return LearningFunctor(
        initial_model(small_config, small_dataset, 0), small_dataset.probe, cpu
    )


def _law_inputs(trajectory: Trajectory) -> tuple[list, list, list]:
    segments = trajectory.split(3)
    objects = [s.start for s in segments] + [segments[-1].end]
    pairs = list(itertools.pairwise(segments))
    return objects, segments, pairs


def test_laws_hold_on_recorded_run(
    functor: LearningFunctor, recorded: RunResult
) -> None:
    objects, segments, pairs = _law_inputs(recorded.trajectory)
    report = functor_law_failures(functor, objects, segments, pairs)
    assert report.ok, [str(f) for f in report.failures]
    assert report.checked["functor.composition"] == 2


def test_object_map_is_penultimate_features(
    functor: LearningFunctor,
    recorded: RunResult,
    small_config: ExperimentConfig,
    small_dataset: Dataset,
) -> None:
    model = initial_model(small_config, small_dataset, 0)
    functor.source.layout.load_into(model, recorded.final_point)
    with torch.no_grad():
        direct = model.features(small_dataset.probe)
    image = functor.map_object(recorded.trajectory.end)
    assert torch.allclose(image.features, direct, atol=1e-5)


def test_morphism_map_keeps_steps(
    functor: LearningFunctor, recorded: RunResult
) -> None:
    image = functor.map_morphism(recorded.trajectory)
    assert image.times == recorded.trajectory.steps


class EndpointsOnly(LearningFunctor):
    """Known-bad: drops the inside of a path, so composites gain a frame."""

    def map_morphism(self, f: Trajectory) -> RepPath:
        whole = super().map_morphism(f)
        if len(whole.times) <= 2:
            return whole
        return RepPath((0, whole.duration), whole.features[[0, -1]])


class Reversed(LearningFunctor):
    """Known-bad: runs paths backwards, so domains and codomains swap."""

    def map_morphism(self, f: Trajectory) -> RepPath:
        whole = super().map_morphism(f)
        times = tuple(whole.duration - t for t in reversed(whole.times))
        return RepPath(times, whole.features.flip(0))


class Scaled(LearningFunctor):
    """Known-bad: objects and morphisms disagree by a factor of two."""

    def map_object(self, x):  # type: ignore[no-untyped-def]
        return Representation(2 * super().map_object(x).features)


def _bad(
    cls: type, small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> LearningFunctor:
    return cls(initial_model(small_config, small_dataset, 0), small_dataset.probe, cpu)


def test_endpoints_only_fails_composition(
    recorded: RunResult,
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
) -> None:
    bad = _bad(EndpointsOnly, small_config, small_dataset, cpu)
    objects, segments, pairs = _law_inputs(recorded.trajectory)
    report = functor_law_failures(bad, objects, segments, pairs)
    assert report.failures_of("functor.composition")
    assert report.failures_of("functor.identity") == []


def test_reversed_fails_domains(
    recorded: RunResult,
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
) -> None:
    bad = _bad(Reversed, small_config, small_dataset, cpu)
    objects, segments, pairs = _law_inputs(recorded.trajectory)
    report = functor_law_failures(bad, objects, segments, pairs)
    assert report.failures_of("functor.domain")
    assert report.failures_of("functor.codomain")


def test_scaled_fails_identity(
    recorded: RunResult,
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
) -> None:
    bad = _bad(Scaled, small_config, small_dataset, cpu)
    objects, segments, pairs = _law_inputs(recorded.trajectory)
    report = functor_law_failures(bad, objects, segments, pairs)
    assert report.failures_of("functor.identity")


def test_missing_feature_module_rejected(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> None:
    model = initial_model(small_config, small_dataset, 0)
    with pytest.raises(ValueError, match="no submodule 'encoder'"):
        LearningFunctor(model, small_dataset.probe, cpu, feature_module="encoder")


def test_object_map_includes_logits(
    functor: LearningFunctor,
    recorded: RunResult,
    small_config: ExperimentConfig,
    small_dataset: Dataset,
) -> None:
    model = initial_model(small_config, small_dataset, 0)
    functor.source.layout.load_into(model, recorded.final_point)
    with torch.no_grad():
        direct = model(small_dataset.probe)
    image = functor.map_object(recorded.trajectory.end)
    assert image.logits is not None
    assert torch.allclose(image.logits, direct, atol=1e-5)


def test_logits_break_equality_when_features_agree() -> None:
    from learning.rep import RepCategory

    rep = RepCategory()
    features = torch.zeros(3, 2)
    a = Representation(features, torch.zeros(3, 4))
    b = Representation(features, torch.ones(3, 4))
    assert rep.equal_objects(a, a)
    assert not rep.equal_objects(a, b)
    assert not rep.equal_objects(a, Representation(features))
