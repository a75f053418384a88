"""The learning functor L on a real recorded trajectory, and broken imitations of it."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from categories import functor_law_failures
from learning.analyses import check_functor_laws
from learning.config import ExperimentConfig, ModelConfig
from learning.data import Dataset
from learning.evaluate import StackedEvaluator
from learning.functor import LearningFunctor
from learning.models import build_model
from learning.param import ParamLayout, ParamPoint, Trajectory
from learning.rep import RepPath, Representation
from learning.report import _segments_text
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


def _hooked_output(module: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """Return what submodule `name` gives inside module's own forward pass."""
    seen: list[torch.Tensor] = []
    handle = module.get_submodule(name).register_forward_hook(
        lambda _m, _i, out: seen.append(out)
    )
    with torch.no_grad():
        module.eval()(x)
    handle.remove()
    return seen[0]


class _Wrapped(nn.Module):
    """A network whose feature block does not start at the input."""

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 7), activation
        )
        self.head = nn.Linear(7, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.body(x))
        return out


@pytest.mark.parametrize("batch_norm", [False, True])
def test_every_submodule_read_in_place(batch_norm: bool) -> None:
    # The CNN runs through the batched products without BatchNorm and
    # through vmap with it. Both must read each submodule inside the network.
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="cnn", batch_norm=batch_norm), (40,), 10)
    evaluator = StackedEvaluator(model, torch.device("cpu"))
    point = ParamLayout.of(model).flatten(model).unsqueeze(0)
    x = torch.randn(6, 40)
    for name, _ in model.named_modules():
        if not name:
            continue
        got = evaluator.outputs(point, x, name)[0]
        torch.testing.assert_close(got, _hooked_output(model, name, x), msg=name)


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.GELU()])
def test_features_inside_user_network(activation: nn.Module) -> None:
    # ReLU keeps the network covered by the batched products; GELU does not.
    torch.manual_seed(3)
    model = _Wrapped(activation)
    probe = torch.randn(20, 5)
    layout = ParamLayout.of(model)
    start = ParamPoint(layout.flatten(model))
    moved = ParamPoint(start.vector + 0.1 * torch.randn_like(start.vector))
    for name in ["body", "body.2", "body.3"]:
        functor = LearningFunctor(
            model, probe, torch.device("cpu"), feature_module=name
        )
        features = functor.map_object(start).features
        expected = _hooked_output(model, name, probe)
        torch.testing.assert_close(features, expected, msg=name)
        assert not torch.equal(features, functor.map_object(moved).features), name


def test_feature_module_never_called_is_named() -> None:
    model = _Wrapped(nn.ReLU())
    model.unused = nn.Linear(5, 5)
    functor = LearningFunctor(
        model, torch.randn(4, 5), torch.device("cpu"), feature_module="unused"
    )
    point = ParamPoint(ParamLayout.of(model).flatten(model))
    with pytest.raises(ValueError, match="'unused' is not called in the forward"):
        functor.map_object(point)


def test_law_check_reports_segments_used(
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    recorded: RunResult,
    cpu: torch.device,
) -> None:
    config = small_config.model_copy(update={"functor_segments": 1000})
    laws = check_functor_laws(config, small_dataset, [recorded], cpu)
    checkpoints = len(recorded.trajectory.steps)
    assert laws["segments_requested"] == 1000
    assert laws["segments_per_run"] == [checkpoints - 1]
    text = _segments_text(laws)
    assert text.startswith(f"{checkpoints - 1} segments (1000 were requested")


class _PairEncoder(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x.relu()


def test_feature_module_returning_tuple_is_named() -> None:
    model = nn.Sequential()
    model.add_module("lin", nn.Linear(5, 5))
    model.add_module("enc", _PairEncoder())
    functor = LearningFunctor(
        model, torch.randn(4, 5), torch.device("cpu"), feature_module="enc"
    )
    point = ParamPoint(ParamLayout.of(model).flatten(model))
    with pytest.raises(TypeError, match="'enc' returns a tuple, not a tensor"):
        functor.map_object(point)
