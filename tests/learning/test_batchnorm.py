"""BatchNorm statistics in parameter points, in evaluation and along paths."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from categories import CompositionError, category_law_failures, functor_law_failures
from learning.config import ExperimentConfig, ModelConfig
from learning.data import Dataset
from learning.evaluate import StackedEvaluator, recompute_batchnorm_statistics
from learning.functor import LearningFunctor
from learning.homotopy import loss_barriers
from learning.param import ParamCategory, ParamLayout, ParamPoint, Trajectory
from learning.training import RunResult, initial_model, train_run

LAYOUT = ParamLayout(
    names=("w",), shapes=((3,),), buffer_names=("m",), buffer_shapes=((2,),)
)
PARAM = ParamCategory(LAYOUT)


def _bn_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _inputs(n: int = 64, seed: int = 0) -> torch.Tensor:
    return 2 + 3 * torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ layout


def test_layout_keeps_float_buffers_only() -> None:
    layout = ParamLayout.of(_bn_mlp())
    assert layout.buffer_names == ("1.running_mean", "1.running_var")
    assert layout.buffer_shapes == ((8,), (8,))
    assert layout.buffer_size == 16
    assert "1.num_batches_tracked" not in layout.buffer_names


def test_layout_without_buffers_is_unchanged() -> None:
    module = nn.Linear(3, 2)
    layout = ParamLayout.of(module)
    assert layout == ParamLayout(names=("weight", "bias"), shapes=((2, 3), (2,)))
    assert layout.buffer_size == 0
    assert layout.flatten_buffers(module).shape == (0,)


def test_buffer_round_trip() -> None:
    source = _bn_mlp()
    source.train()
    with torch.no_grad():
        source(_inputs())
    layout = ParamLayout.of(source)
    vector = layout.flatten_buffers(source)
    target = _bn_mlp()
    layout.load_buffers_into(target, vector)
    assert torch.equal(layout.flatten_buffers(target), vector)
    mean = "1.running_mean"
    assert torch.equal(target.state_dict()[mean], source.state_dict()[mean])


def test_unflatten_buffers_keeps_batch() -> None:
    layout = ParamLayout.of(_bn_mlp())
    tensors = layout.unflatten_buffers(torch.zeros(5, 16))
    assert tensors["1.running_var"].shape == (5, 8)


def test_unflatten_buffers_rejects_wrong_length() -> None:
    layout = ParamLayout.of(_bn_mlp())
    with pytest.raises(ValueError, match="buffer vector length 15"):
        layout.unflatten_buffers(torch.zeros(15))


# ------------------------------------------------------------------- Param


@st.composite
def trajectories(draw: st.DrawFn, start: ParamPoint | None = None) -> Trajectory:
    n = draw(st.integers(1, 4))
    gaps = draw(st.lists(st.integers(1, 5), min_size=n - 1, max_size=n - 1))
    steps = [0, *itertools.accumulate(gaps)]
    floats = st.floats(-5, 5, allow_nan=False, width=32)
    values = draw(st.lists(floats, min_size=5 * n, max_size=5 * n))
    table = torch.tensor(values, dtype=torch.float32).reshape(n, 5)
    points, buffers = table[:, :3].clone(), table[:, 3:].clone()
    if start is not None:
        assert start.buffers is not None
        points[0], buffers[0] = start.vector, start.buffers
    return Trajectory(tuple(steps), points, buffers)


@st.composite
def composable_triples(draw: st.DrawFn) -> tuple[Trajectory, Trajectory, Trajectory]:
    f = draw(trajectories())
    g = draw(trajectories(start=f.end))
    h = draw(trajectories(start=g.end))
    return f, g, h


@given(composable_triples())
def test_param_laws_hold_with_buffers(
    triple: tuple[Trajectory, Trajectory, Trajectory],
) -> None:
    f, g, h = triple
    report = category_law_failures(
        PARAM,
        PARAM.objects_of(triple),
        list(triple),
        pairs=[(f, g), (g, h)],
        triples=[triple],
    )
    assert report.ok, report.failures


@given(composable_triples())
def test_composite_keeps_buffers(
    triple: tuple[Trajectory, Trajectory, Trajectory],
) -> None:
    f, g, _ = triple
    composite = PARAM.compose(f, g)
    assert composite.buffers is not None
    assert composite.buffers.shape == (len(composite.steps), 2)
    assert composite.end == g.end
    assert composite.start == f.start


def test_points_differing_in_buffers_are_unequal() -> None:
    a = ParamPoint(torch.ones(3), torch.zeros(2))
    b = ParamPoint(torch.ones(3), torch.ones(2))
    assert a != b
    assert a.digest != b.digest
    assert a != ParamPoint(torch.ones(3))


def test_equal_points_with_buffers_hash_equal() -> None:
    a = ParamPoint(torch.ones(3), torch.zeros(2))
    b = ParamPoint(torch.ones(3), torch.zeros(2))
    assert a == b
    assert hash(a) == hash(b)


def test_compose_rejects_different_junction_buffers() -> None:
    f = Trajectory((0, 1), torch.zeros(2, 3), torch.zeros(2, 2))
    g = Trajectory((0, 1), torch.zeros(2, 3), torch.ones(2, 2))
    with pytest.raises(CompositionError, match="first ends at"):
        PARAM.compose(f, g)


def test_compose_rejects_missing_buffers() -> None:
    f = Trajectory((0, 1), torch.zeros(2, 3), torch.zeros(2, 2))
    g = Trajectory((0, 1), torch.zeros(2, 3))
    with pytest.raises(CompositionError):
        PARAM.compose(f, g)


def test_identity_keeps_buffers() -> None:
    x = ParamPoint(torch.ones(3), torch.arange(2.0))
    unit = PARAM.identity(x)
    assert unit.start == x
    assert unit.buffers is not None
    assert unit.buffers.shape == (1, 2)


def test_segment_keeps_buffers() -> None:
    whole = Trajectory(
        (0, 2, 5), torch.arange(9.0).reshape(3, 3), torch.arange(6.0).reshape(3, 2)
    )
    piece = whole.segment(1, 2)
    assert piece.buffers is not None
    assert torch.equal(piece.buffers, whole.buffers[1:])  # type: ignore[index]
    assert piece.start == whole.point(1)


def test_trajectory_rejects_wrong_buffer_count() -> None:
    with pytest.raises(ValueError, match="buffers must have shape"):
        Trajectory((0, 1), torch.zeros(2, 3), torch.zeros(3, 2))


def test_difference_names_buffers() -> None:
    f = Trajectory((0,), torch.zeros(1, 3), torch.zeros(1, 2))
    g = Trajectory((0,), torch.zeros(1, 3), torch.full((1, 2), 0.5))
    assert "largest buffer difference 0.5" in PARAM.describe_difference(f, g)


# --------------------------------------------------------------- evaluation


def _direct_eval(
    module: nn.Module, point: torch.Tensor, buffers: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    model = copy.deepcopy(module)
    layout = ParamLayout.of(model)
    layout.load_into(model, point)
    layout.load_buffers_into(model, buffers)
    with torch.no_grad():
        out: torch.Tensor = model.eval()(x)
    return out


def test_evaluator_uses_each_point_buffers() -> None:
    module = _bn_mlp()
    layout = ParamLayout.of(module)
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(3, layout.size, generator=generator)
    buffers = torch.rand(3, layout.buffer_size, generator=generator) + 0.5
    x = _inputs(10)
    outputs = StackedEvaluator(module, torch.device("cpu")).outputs(
        points, x, buffers=buffers
    )
    for i in range(3):
        direct = _direct_eval(module, points[i], buffers[i], x)
        assert torch.allclose(outputs[i], direct, atol=1e-6), i


def test_evaluator_rejects_wrong_buffer_shape() -> None:
    evaluator = StackedEvaluator(_bn_mlp(), torch.device("cpu"))
    points = torch.zeros(2, evaluator.layout.size)
    with pytest.raises(ValueError, match="do not match"):
        evaluator.outputs(points, _inputs(4), buffers=torch.zeros(3, 16))


def test_loss_fn_applies_buffers() -> None:
    module = _bn_mlp()
    evaluator = StackedEvaluator(module, torch.device("cpu"))
    layout = evaluator.layout
    x, y = _inputs(20), torch.zeros(20, dtype=torch.long)
    point = layout.flatten(module)
    buffers = torch.cat([torch.full((8,), 2.0), torch.full((8,), 9.0)])
    params = {k: v.unsqueeze(0) for k, v in layout.unflatten(point).items()}
    expected = nn.functional.cross_entropy(_direct_eval(module, point, buffers, x), y)
    loss = evaluator.loss_fn(x, y, buffers)(params)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_recompute_gives_exact_mean_and_variance() -> None:
    module = _bn_mlp()
    layout = ParamLayout.of(module)
    x = _inputs(64)
    point = ParamPoint(layout.flatten(module), layout.flatten_buffers(module))
    recomputed = recompute_batchnorm_statistics(module, point, x, batches=1)
    assert recomputed.buffers is not None
    tensors = layout.unflatten_buffers(recomputed.buffers)
    with torch.no_grad():
        pre_norm = module[0](x)
    assert torch.allclose(tensors["1.running_mean"], pre_norm.mean(0), atol=1e-5)
    assert torch.allclose(
        tensors["1.running_var"], pre_norm.var(0, unbiased=True), rtol=1e-5
    )
    assert torch.equal(recomputed.vector, point.vector)


def test_recompute_averages_batch_statistics() -> None:
    module = _bn_mlp()
    layout = ParamLayout.of(module)
    x = _inputs(60)
    point = ParamPoint(layout.flatten(module))
    recomputed = recompute_batchnorm_statistics(module, point, x, batches=3)
    assert recomputed.buffers is not None
    tensors = layout.unflatten_buffers(recomputed.buffers)
    with torch.no_grad():
        parts = [module[0](part) for part in torch.tensor_split(x, 3)]
    mean = torch.stack([p.mean(0) for p in parts]).mean(0)
    var = torch.stack([p.var(0, unbiased=True) for p in parts]).mean(0)
    assert torch.allclose(tensors["1.running_mean"], mean, atol=1e-5)
    assert torch.allclose(tensors["1.running_var"], var, rtol=1e-5)


def test_recompute_leaves_module_unchanged() -> None:
    module = _bn_mlp()
    before = copy.deepcopy(module.state_dict())
    layout = ParamLayout.of(module)
    point = ParamPoint(layout.flatten(module) + 1.0)
    recompute_batchnorm_statistics(module, point, _inputs(), batches=2)
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert module[1].momentum == 0.1


def test_recompute_rejects_bad_batches() -> None:
    module = _bn_mlp()
    point = ParamPoint(ParamLayout.of(module).flatten(module))
    with pytest.raises(ValueError, match="batches = 0"):
        recompute_batchnorm_statistics(module, point, _inputs(8), batches=0)
    with pytest.raises(ValueError, match="batches = 9"):
        recompute_batchnorm_statistics(module, point, _inputs(8), batches=9)


def test_recompute_without_batch_norm_is_identity() -> None:
    module = nn.Linear(6, 3)
    point = ParamPoint(ParamLayout.of(module).flatten(module))
    assert recompute_batchnorm_statistics(module, point, _inputs(), 1) is point


# ------------------------------------------- a trained pair of BN networks


@pytest.fixture(scope="module")
def bn_config(small_config: ExperimentConfig) -> ExperimentConfig:
    train = small_config.train.model_copy(update={"epochs": 10, "init_seeds": [0, 1]})
    return small_config.model_copy(
        update={"model": ModelConfig(hidden=32, batch_norm=True), "train": train}
    )


@pytest.fixture(scope="module")
def bn_runs(
    bn_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> list[RunResult]:
    return [
        train_run(bn_config, small_dataset, spec, cpu)
        for spec in bn_config.train.run_specs()
    ]


@pytest.fixture(scope="module")
def bn_evaluator(
    bn_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> StackedEvaluator:
    return StackedEvaluator(initial_model(bn_config, small_dataset, 0), cpu)


def _ends(runs: list[RunResult]) -> tuple[torch.Tensor, torch.Tensor]:
    buffers = [run.trajectory.end.buffers for run in runs]
    assert all(b is not None for b in buffers)
    points = torch.stack([run.trajectory.end.vector for run in runs])
    return points, torch.stack(buffers)  # type: ignore[arg-type]


def test_training_records_buffers(
    bn_runs: list[RunResult], bn_evaluator: StackedEvaluator
) -> None:
    trajectory = bn_runs[0].trajectory
    assert trajectory.buffers is not None
    assert trajectory.buffers.shape == (
        len(trajectory.steps),
        bn_evaluator.layout.buffer_size,
    )
    # PyTorch starts running_mean at 0 and running_var at 1; training moves them.
    start = bn_evaluator.layout.unflatten_buffers(trajectory.buffers[0])
    assert torch.equal(start["features.2.running_mean"], torch.zeros(32))
    assert torch.equal(start["features.2.running_var"], torch.ones(32))
    assert not torch.equal(trajectory.buffers[-1], trajectory.buffers[0])


def test_final_metrics_use_stored_buffers(
    bn_runs: list[RunResult],
    bn_evaluator: StackedEvaluator,
    small_dataset: Dataset,
) -> None:
    points, buffers = _ends(bn_runs)
    losses, accuracies = bn_evaluator.loss_and_accuracy(
        points, small_dataset.x_train, small_dataset.y_train, buffers
    )
    for i, run in enumerate(bn_runs):
        assert losses[i].item() == pytest.approx(run.train_loss, abs=1e-6)
        assert accuracies[i].item() == run.train_accuracy


@pytest.mark.parametrize("mode", ["recompute", "interpolate"])
def test_barrier_path_ends_equal_endpoints(
    mode: str,
    bn_runs: list[RunResult],
    bn_evaluator: StackedEvaluator,
    bn_config: ExperimentConfig,
    small_dataset: Dataset,
) -> None:
    x, y = small_dataset.x_train, small_dataset.y_train
    points, buffers = _ends(bn_runs)
    result = loss_barriers(
        bn_evaluator,
        points,
        x,
        y,
        7,
        buffers=buffers,
        bn_statistics=mode,  # type: ignore[arg-type]
    )
    losses, accuracies = bn_evaluator.loss_and_accuracy(points, x, y, buffers)
    assert result.path_losses[0, 1, 0] == losses[0].item()
    assert result.path_losses[0, 1, -1] == losses[1].item()
    assert result.path_accuracies[0, 1, 0] == accuracies[0].item()
    assert result.path_accuracies[0, 1, -1] == accuracies[1].item()
    assert result.bn_statistics == mode

    # The same numbers from a plain nn.Module forward in eval mode.
    model = initial_model(bn_config, small_dataset, 0)
    for end, index in ((0, 0), (-1, 1)):
        logits = _direct_eval(model, points[index], buffers[index], x)
        direct = nn.functional.cross_entropy(logits, y).item()
        hits = (logits.argmax(1) == y).double().mean().item()
        assert result.path_losses[0, 1, end] == pytest.approx(direct, abs=1e-6)
        assert result.path_accuracies[0, 1, end] == pytest.approx(hits, abs=1e-12)


def test_recomputed_barrier_below_interpolated(
    bn_runs: list[RunResult],
    bn_evaluator: StackedEvaluator,
    small_dataset: Dataset,
) -> None:
    # Expected direction: an interior network's activations have other
    # statistics than the average of the ends' statistics, so normalizing it
    # with interpolated ones raises its loss. Measured on this fixed setup
    # (MNIST-1D, 300 training examples, MLP 2x32 with BatchNorm1d, SGD 0.05,
    # 10 epochs, init seeds 0 and 1, 11 alphas) on the CPU with torch 2.13:
    # loss barrier 0.911 nats (error barrier 45.0 points) with recomputed
    # statistics, 1.235 nats (54.0 points) with interpolated ones, both at
    # alpha = 0.5.
    x, y = small_dataset.x_train, small_dataset.y_train
    points, buffers = _ends(bn_runs)
    recomputed = loss_barriers(
        bn_evaluator, points, x, y, 11, buffers=buffers, bn_statistics="recompute"
    )
    interpolated = loss_barriers(
        bn_evaluator, points, x, y, 11, buffers=buffers, bn_statistics="interpolate"
    )
    assert recomputed.barriers[0, 1] < interpolated.barriers[0, 1]
    middle = 5
    assert recomputed.path_losses[0, 1, middle] < interpolated.path_losses[0, 1, middle]


def test_barrier_interior_uses_recomputed_statistics(
    bn_runs: list[RunResult],
    bn_evaluator: StackedEvaluator,
    small_dataset: Dataset,
) -> None:
    x, y = small_dataset.x_train, small_dataset.y_train
    points, buffers = _ends(bn_runs)
    result = loss_barriers(bn_evaluator, points, x, y, 3, buffers=buffers, bn_batches=1)
    middle = ParamPoint((points[0] + points[1]) / 2)
    recomputed = recompute_batchnorm_statistics(
        bn_evaluator.module, middle, x, batches=1
    )
    assert recomputed.buffers is not None
    loss, _ = bn_evaluator.loss_and_accuracy(
        middle.vector.reshape(1, -1), x, y, recomputed.buffers.reshape(1, -1)
    )
    assert result.path_losses[0, 1, 1] == pytest.approx(loss.item(), abs=1e-6)


def test_barrier_requires_buffers(
    bn_runs: list[RunResult],
    bn_evaluator: StackedEvaluator,
    small_dataset: Dataset,
) -> None:
    points, _ = _ends(bn_runs)
    with pytest.raises(ValueError, match="pass each network's stored buffers"):
        loss_barriers(
            bn_evaluator, points, small_dataset.x_train, small_dataset.y_train, 3
        )


def test_barrier_rejects_unknown_statistics(
    bn_runs: list[RunResult],
    bn_evaluator: StackedEvaluator,
    small_dataset: Dataset,
) -> None:
    points, buffers = _ends(bn_runs)
    with pytest.raises(ValueError, match="'average' is not supported"):
        loss_barriers(
            bn_evaluator,
            points,
            small_dataset.x_train,
            small_dataset.y_train,
            3,
            buffers=buffers,
            bn_statistics="average",  # type: ignore[arg-type]
        )


def test_barrier_without_buffers_records_none() -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    evaluator = StackedEvaluator(model, torch.device("cpu"))
    points = torch.randn(
        2, evaluator.layout.size, generator=torch.Generator().manual_seed(2)
    )
    x = _inputs(30)
    y = (x[:, 0] > 2).long()
    result = loss_barriers(evaluator, points, x, y, 5)
    assert result.bn_statistics is None
    assert np.isfinite(result.path_accuracies[0, 1]).all()


# ------------------------------------------------- the learning functor


@pytest.fixture(scope="module")
def image_setup(
    small_config: ExperimentConfig, cpu: torch.device
) -> tuple[ExperimentConfig, Dataset, RunResult]:
    # Synthetic 1x12x12 images whose class sets the brightness of one quadrant.
    generator = torch.Generator().manual_seed(0)
    n = 240
    y = torch.randint(0, 4, (n,), generator=generator)
    x = torch.randn(n, 1, 12, 12, generator=generator)
    for label in range(4):
        rows, cols = divmod(label, 2)
        x[y == label, :, 6 * rows : 6 * rows + 6, 6 * cols : 6 * cols + 6] += 1.5
    dataset = Dataset(
        name="quadrants",
        x_train=x[:200],
        y_train=y[:200],
        x_test=x[200:],
        y_test=y[200:],
        probe=x[200:216],
        n_classes=4,
    )
    model = ModelConfig(kind="cnn2d", channels=4, hidden=8)
    config = small_config.model_copy(update={"model": model})
    run = train_run(config, dataset, config.train.run_specs()[0], cpu)
    return config, dataset, run


def test_functor_uses_checkpoint_statistics(
    image_setup: tuple[ExperimentConfig, Dataset, RunResult], cpu: torch.device
) -> None:
    config, dataset, run = image_setup
    trajectory = run.trajectory
    assert trajectory.buffers is not None
    functor = LearningFunctor(initial_model(config, dataset, 0), dataset.probe, cpu)
    image = functor.map_morphism(trajectory)
    model = initial_model(config, dataset, 0)
    layout = ParamLayout.of(model)
    for k in range(len(trajectory.steps)):
        layout.load_into(model, trajectory.points[k])
        layout.load_buffers_into(model, trajectory.buffers[k])
        with torch.no_grad():
            direct = model.eval().features(dataset.probe)
        assert torch.allclose(image.features[k], direct, atol=1e-5), k

    # The template's initial statistics give other features, so the check
    # above distinguishes stored statistics from the template's.
    without = functor.evaluator.outputs(
        trajectory.points[-1:], dataset.probe, "features"
    )
    assert not torch.allclose(without[0], image.features[-1], atol=1e-3)


def test_functor_object_uses_point_statistics(
    image_setup: tuple[ExperimentConfig, Dataset, RunResult], cpu: torch.device
) -> None:
    config, dataset, run = image_setup
    functor = LearningFunctor(initial_model(config, dataset, 0), dataset.probe, cpu)
    end = run.trajectory.end
    assert end.buffers is not None
    model = initial_model(config, dataset, 0)
    layout = ParamLayout.of(model)
    layout.load_into(model, end.vector)
    layout.load_buffers_into(model, end.buffers)
    with torch.no_grad():
        direct = model.eval().features(dataset.probe)
    assert torch.allclose(functor.map_object(end).features, direct, atol=1e-5)


def test_functor_laws_hold_with_batch_norm(
    image_setup: tuple[ExperimentConfig, Dataset, RunResult], cpu: torch.device
) -> None:
    config, dataset, run = image_setup
    functor = LearningFunctor(initial_model(config, dataset, 0), dataset.probe, cpu)
    segments = run.trajectory.split(3)
    objects = [s.start for s in segments] + [segments[-1].end]
    pairs = list(itertools.pairwise(segments))
    report = functor_law_failures(functor, objects, segments, pairs)
    assert report.ok, [str(f) for f in report.failures]


def test_store_round_trips_batchnorm_statistics(tmp_path: Path) -> None:
    from learning.config import (
        DataConfig,
        ExperimentConfig,
        ModelConfig,
        OptimizerConfig,
        TrainConfig,
    )
    from learning.data import load_dataset
    from learning.store import RunStore
    from learning.training import train_run

    config = ExperimentConfig(
        data=DataConfig(n_train=200, n_test=200, probe_size=16),
        model=ModelConfig(hidden=8, batch_norm=True),
        train=TrainConfig(
            epochs=1,
            batch_size=50,
            checkpoint_every=2,
            init_seeds=[0],
            data_seeds=[0],
            optimizers=[OptimizerConfig(name="sgd", lr=0.05)],
        ),
        device="cpu",
    )
    data = load_dataset(config.data)
    spec = config.train.run_specs()[0]
    run = train_run(config, data, spec, torch.device("cpu"))
    assert run.trajectory.buffers is not None
    store = RunStore(tmp_path)
    store.save(run, "k")
    loaded = store.load(spec, "k")
    assert loaded is not None
    assert loaded.trajectory == run.trajectory
    lazy = store.open_trajectory(spec, "k")
    assert lazy is not None
    assert lazy.load() == run.trajectory
    lazy.close()
    store.close()
