"""Natural-gradient descent: its update, its contract, and its behaviour in training."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from learning.config import ExperimentConfig
from learning.data import Dataset
from learning.fisher import FisherKind, fisher_lengths_compare
from learning.optim import NaturalGradient
from learning.param import ParamLayout, Trajectory
from learning.training import initial_model

logger = logging.getLogger(__name__)


def _logistic_data(
    n: int, scale: float = 1.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return two features, the second multiplied by `scale`, and noisy labels.

    The labels are drawn from a logistic model, so the classes overlap and
    the loss has a finite minimum.
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    logits = 2.0 * z[:, 0] - 1.5 * z[:, 1]
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(logits)).long()
    return z * torch.tensor([1.0, scale], dtype=torch.float64), y


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(2, 2).double()


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def _train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> float:
    optimizer.zero_grad()
    loss = _loss(model, x, y)
    loss.backward()  # type: ignore[no-untyped-call]
    if isinstance(optimizer, NaturalGradient):
        optimizer.precondition(x, y)
    optimizer.step()
    return loss.item()


def _minimum_loss(x: torch.Tensor, y: torch.Tensor) -> float:
    model = _linear()
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        max_iter=500,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
    )

    def closure() -> float:
        optimizer.zero_grad()
        loss = _loss(model, x, y)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss.item()

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    return _loss(model, x, y).item()


@pytest.mark.parametrize("kind", ["diagonal", "lowrank"])
def test_natural_gradient_decreases_logistic_loss(kind: FisherKind) -> None:
    x, y = _logistic_data(64)
    model = _linear()
    optimizer = NaturalGradient(model, lr=0.3, kind=kind)
    losses = [_train_step(model, optimizer, x, y) for _ in range(15)]
    final = _loss(model, x, y).item()
    assert final < 0.8 * losses[0]
    assert final < losses[-1]


def _steps_to_reach(
    make: Callable[[nn.Module], torch.optim.Optimizer],
    x: torch.Tensor,
    y: torch.Tensor,
    target: float,
    max_steps: int,
) -> int | None:
    """Return the first step whose full-batch loss is <= target, or None."""
    model = _linear()
    optimizer = make(model)
    for step in range(max_steps + 1):
        loss = _loss(model, x, y).item()
        if not math.isfinite(loss) or loss > 1e3:
            return None  # diverged
        if loss <= target:
            return step
        if step < max_steps:
            _train_step(model, optimizer, x, y)
    return None


def _plain_sgd(lr: float) -> Callable[[nn.Module], torch.optim.Optimizer]:
    return lambda model: torch.optim.SGD(model.parameters(), lr=lr)


def _natural_gradient(lr: float) -> Callable[[nn.Module], torch.optim.Optimizer]:
    return lambda model: NaturalGradient(model, lr=lr)


def test_natural_gradient_faster_when_ill_conditioned() -> None:
    # The second feature is 10 times larger, so the curvature along its
    # weights is about 100 times larger. SGD's rate is capped by that
    # direction and crawls along the other one. Both methods get the same
    # grid of rates and the same step budget. SGD's best rate on a wider grid
    # is 0.1 (77 steps); 0.03 needs 212 steps and 0.3 diverges.
    x, y = _logistic_data(64, scale=10.0)
    target = _minimum_loss(x, y) + 0.01
    rates = (0.1, 0.3, 1.0)
    budget = 200

    model = _linear()
    probe = NaturalGradient(model, lr=1.0)
    _loss(model, x, y).backward()  # type: ignore[no-untyped-call]
    diagonal = probe.precondition(x, y).diagonal
    assert diagonal is not None
    weights = diagonal[:4].reshape(2, 2)
    assert (weights[:, 1] / weights[:, 0]).min().item() > 30  # badly conditioned

    sgd_steps = [_steps_to_reach(_plain_sgd(lr), x, y, target, budget) for lr in rates]
    sgd_best = min((s for s in sgd_steps if s is not None), default=budget + 1)
    # Natural gradient only has to beat SGD's best, so its runs stop there.
    natural_steps = [
        _steps_to_reach(_natural_gradient(lr), x, y, target, sgd_best - 1)
        for lr in rates
    ]
    logger.info(
        "steps to target: SGD %s, natural gradient %s", sgd_steps, natural_steps
    )
    assert sgd_best <= budget, f"SGD never reached the target: {sgd_steps}"
    assert any(s is not None for s in natural_steps), (
        f"natural gradient needed at least SGD's {sgd_best} steps at every rate"
    )


@pytest.mark.parametrize("kind", ["diagonal", "lowrank"])
def test_step_applies_damped_natural_direction(kind: FisherKind) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = _logistic_data(20)
    x = torch.cat([x, x[:, :1]], dim=1)
    layout = ParamLayout.of(model)
    optimizer = NaturalGradient(model, lr=0.5, kind=kind, rank=5, damping=0.2)
    optimizer.zero_grad()
    _loss(model, x, y).backward()  # type: ignore[no-untyped-call]
    gradient = torch.cat(
        [p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]
    )
    before = layout.flatten(model)
    metric = optimizer.precondition(x, y)
    optimizer.step()
    expected = before - 0.5 * metric.solve(gradient)
    assert metric.damping == 0.2
    assert metric.rank == (5 if kind == "lowrank" else None)
    assert torch.allclose(layout.flatten(model), expected, rtol=0, atol=1e-14)


@settings(max_examples=10)
@given(update_every=st.integers(1, 4), steps=st.integers(1, 8))
def test_update_every_reuses_estimate(update_every: int, steps: int) -> None:
    x, y = _logistic_data(16)
    model = _linear()
    optimizer = NaturalGradient(model, lr=0.1, update_every=update_every)
    metrics = []
    for _ in range(steps):
        optimizer.zero_grad()
        _loss(model, x, y).backward()  # type: ignore[no-untyped-call]
        metrics.append(optimizer.precondition(x, y))
        optimizer.step()
    new_estimates = [
        k for k in range(steps) if k == 0 or metrics[k] is not metrics[k - 1]
    ]
    assert new_estimates == list(range(0, steps, update_every))


def test_step_before_precondition_raises() -> None:
    model = _linear()
    optimizer = NaturalGradient(model, lr=0.1)
    x, y = _logistic_data(8)
    _loss(model, x, y).backward()  # type: ignore[no-untyped-call]
    with pytest.raises(RuntimeError, match=r"call optimizer.precondition\(x, y\)"):
        optimizer.step()


def test_closure_loss_is_returned() -> None:
    x, y = _logistic_data(8)
    model = _linear()
    optimizer = NaturalGradient(model, lr=0.1)

    def closure() -> float:
        optimizer.zero_grad()
        loss = _loss(model, x, y)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss.item()

    expected = _loss(model, x, y).item()
    optimizer.precondition(x, y)
    assert optimizer.step(closure) == expected


def test_frozen_parameters_stay_unchanged() -> None:
    x, y = _logistic_data(16)
    model = _linear()
    model.bias.requires_grad_(False)
    bias = model.bias.detach().clone()
    optimizer = NaturalGradient(model, lr=0.5, kind="lowrank")
    _train_step(model, optimizer, x, y)
    assert torch.equal(model.bias, bias)


def test_state_dict_round_trip_requires_new_estimate() -> None:
    x, y = _logistic_data(16)
    model = _linear()
    optimizer = NaturalGradient(model, lr=0.1, update_every=3)
    for _ in range(2):
        _train_step(model, optimizer, x, y)
    restored = NaturalGradient(model, lr=0.1, update_every=3)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.metric is None
    assert restored.fisher_due
    assert restored.state[model.weight]["step"] == 2


def test_scheduler_sets_learning_rate() -> None:
    x, y = _logistic_data(16)
    model = _linear()
    layout = ParamLayout.of(model)
    optimizer = NaturalGradient(model, lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.0)
    _train_step(model, optimizer, x, y)
    scheduler.step()
    before = layout.flatten(model)
    _train_step(model, optimizer, x, y)
    assert torch.equal(layout.flatten(model), before)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr = 0.0 must be a finite number > 0"),
        ({"lr": math.inf}, "lr = inf must be a finite number > 0"),
        ({"damping": 0.0}, "damping = 0.0 must be a finite number > 0"),
        ({"kind": "kfac"}, "kind 'kfac' is not supported"),
        ({"rank": 0}, "rank = 0 must be at least 1"),
        ({"update_every": 0}, "update_every = 0 must be at least 1"),
        ({"batch_size": 0}, "batch_size = 0 must be at least 1"),
    ],
)
def test_invalid_settings_rejected(kwargs: dict[str, object], message: str) -> None:
    settings_: dict[str, object] = {"lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        NaturalGradient(_linear(), **settings_)  # type: ignore[arg-type]


def test_default_damping_depends_on_kind() -> None:
    diagonal = NaturalGradient(_linear(), lr=0.1)
    lowrank = NaturalGradient(_linear(), lr=0.1, kind="lowrank")
    assert diagonal.param_groups[0]["damping"] == 1e-3
    assert lowrank.param_groups[0]["damping"] == 0.1


def test_second_parameter_group_rejected() -> None:
    optimizer = NaturalGradient(_linear(), lr=0.1)
    with pytest.raises(ValueError, match="separate optimizer"):
        optimizer.add_param_group({"params": [nn.Parameter(torch.zeros(2))]})


# --- SGD, Adam and natural gradient from one initialization ----------------


def train_three(
    config: ExperimentConfig,
    dataset: Dataset,
    steps: int = 60,
    batch_size: int = 50,
    checkpoint_every: int = 10,
) -> dict[str, tuple[Trajectory, float]]:
    """Train SGD, Adam and natural gradient from init seed 0 on the same batches.

    Returns each optimizer's trajectory and its final full-training-set loss.
    The rates (SGD 0.15 with momentum 0.9, Adam 0.01, diagonal natural
    gradient 0.01 with damping 1e-3) were chosen so that the three final
    losses are close after 60 steps, which makes their lengths comparable.
    """
    makers: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
        "sgd": lambda m: torch.optim.SGD(m.parameters(), lr=0.15, momentum=0.9),
        "adam": lambda m: torch.optim.Adam(m.parameters(), lr=0.01),
        "natural_gradient": lambda m: NaturalGradient(m, lr=0.01),
    }
    x, y = dataset.x_train, dataset.y_train
    results: dict[str, tuple[Trajectory, float]] = {}
    for name, make in makers.items():
        model = initial_model(config, dataset, init_seed=0)
        layout = ParamLayout.of(model)
        optimizer = make(model)
        order = torch.Generator().manual_seed(0)
        points, recorded, step = [layout.flatten(model)], [0], 0
        while step < steps:
            permutation = torch.randperm(len(y), generator=order)
            for start in range(0, len(y), batch_size):
                batch = permutation[start : start + batch_size]
                _train_step(model, optimizer, x[batch], y[batch])
                step += 1
                if step % checkpoint_every == 0 or step == steps:
                    points.append(layout.flatten(model))
                    recorded.append(step)
                if step == steps:
                    break
        with torch.no_grad():
            final_loss = _loss(model, x, y).item()
        results[name] = (Trajectory(tuple(recorded), torch.stack(points)), final_loss)
    return results


def test_fisher_lengths_of_three_optimizers(
    small_config: ExperimentConfig, small_dataset: Dataset
) -> None:
    # Measures the claim that natural gradient takes the shortest path in
    # the Fisher metric. The numbers are logged, but which path is shortest
    # is deliberately not asserted.
    trained = train_three(small_config, small_dataset)
    with torch.no_grad():
        start = initial_model(small_config, small_dataset, init_seed=0)
        initial_loss = _loss(start, small_dataset.x_train, small_dataset.y_train).item()
    final_losses = {name: loss for name, (_, loss) in trained.items()}
    table = fisher_lengths_compare(
        start,
        {name: trajectory for name, (trajectory, _) in trained.items()},
        small_dataset.x_train,
        small_dataset.y_train,
    )
    for name, result in table.items():
        logger.info(
            "%s: final loss %.4f, Fisher length %.4f, Euclidean length %.4f",
            name,
            final_losses[name],
            result.length,
            result.euclidean_length,
        )

    assert set(table) == {"sgd", "adam", "natural_gradient"}
    for name, result in table.items():
        assert math.isfinite(result.length), name
        assert result.length > 0, name
        assert math.isfinite(result.euclidean_length), name
        assert result.euclidean_length > 0, name
        assert len(result.segment_lengths) == 6, name
    # Similar final losses are the precondition for comparing the lengths.
    assert max(final_losses.values()) < initial_loss - 0.8
    assert max(final_losses.values()) - min(final_losses.values()) < 0.2
