"""Train one run of a sweep and record its trajectory.

A run starts from the initialization fixed by its init seed and visits the
training data in the order fixed by its data seed. It records the flat
parameter vector at step 0, every ``checkpoint_every`` optimizer steps, and
at the last step, each with the flat vector of the network's floating-point
buffers (BatchNorm statistics) when it has any. A run whose loss becomes NaN
or infinite stops at once and is returned as diverged, with the step, instead
of raising.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from learning.config import ExperimentConfig, OptimizerConfig, RunSpec
from learning.data import Dataset
from learning.evaluate import StackedEvaluator
from learning.fisher import NonFiniteError
from learning.models import FeatureClassifier, build_model
from learning.optim import NaturalGradient
from learning.param import ParamLayout, Trajectory

logger = logging.getLogger(__name__)

RunStatus = Literal["complete", "diverged"]


@dataclass
class RunResult:
    """A finished run: its trajectory, final metrics and per-epoch history.

    Metrics are None for a diverged run. Accuracies are fractions in [0, 1];
    losses are mean cross-entropy in nats, on the whole train or test set.
    """

    spec: RunSpec
    status: RunStatus
    trajectory: Trajectory
    diverged_at_step: int | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    test_predictions: np.ndarray | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """The run's id."""
        return self.spec.name

    @property
    def final_point(self) -> torch.Tensor:
        """The parameter vector at the last checkpoint."""
        return self.trajectory.points[-1]

    @property
    def generalization_gap(self) -> float | None:
        """Train accuracy minus test accuracy, or None for a diverged run."""
        if self.train_accuracy is None or self.test_accuracy is None:
            return None
        return self.train_accuracy - self.test_accuracy


def initial_model(
    config: ExperimentConfig, dataset: Dataset, init_seed: int
) -> FeatureClassifier:
    """Build the network with the initialization fixed by `init_seed`.

    The model is built on the CPU under a forked RNG, so the same seed gives
    the same initial point on every device and the caller's RNG is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return build_model(config.model, dataset.input_shape, dataset.n_classes)


def make_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """Build the optimizer a config names, for the parameters of `model`."""
    params = list(model.parameters())
    if config.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    if config.name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    return NaturalGradient(
        model,
        lr=config.lr,
        kind=config.fisher_kind,
        rank=config.fisher_rank,
        damping=config.damping,
    )


def make_schedule(
    optimizer: torch.optim.Optimizer,
    config: OptimizerConfig,
    steps_per_epoch: int,
    epochs: int,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Build the per-step learning-rate schedule a config names."""
    total = max(steps_per_epoch * epochs, 1)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer,
            step_size=config.step_every * steps_per_epoch,
            gamma=config.step_gamma,
        )
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def train_run(
    config: ExperimentConfig,
    dataset: Dataset,
    spec: RunSpec,
    device: torch.device,
    on_epoch: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Train one run and return its trajectory and metrics.

    Parameters
    ----------
    config : ExperimentConfig
        Model, optimizer schedule and checkpoint interval.
    dataset : Dataset
        Training and test data (on the CPU; batches are moved to `device`).
    spec : RunSpec
        The run's init seed, data seed and optimizer.
    device : torch.device
        Where to train.
    on_epoch : callable, optional
        Called as ``on_epoch(epochs_done, epochs_total)`` after each epoch.
    """
    started = time.perf_counter()
    train = config.train
    model = initial_model(config, dataset, spec.init_seed).to(device)
    layout = ParamLayout.of(model)
    optimizer = make_optimizer(model, spec.optimizer)
    steps_per_epoch = -(-len(dataset.y_train) // train.batch_size)
    schedule = make_schedule(optimizer, spec.optimizer, steps_per_epoch, train.epochs)
    order = torch.Generator().manual_seed(spec.data_seed)

    x_train = dataset.x_train.to(device)
    y_train = dataset.y_train.to(device)
    n = len(y_train)
    steps: list[int] = [0]
    points: list[torch.Tensor] = [layout.flatten(model).cpu()]
    buffers: list[torch.Tensor] = [layout.flatten_buffers(model).cpu()]
    history: list[dict[str, float]] = []
    step = 0
    diverged_at: int | None = None

    # NOTE: the same seeds give the same trajectory bit for bit only on the
    # same device with the same thread count and BLAS; a different reduction
    # order changes the last bits, and training can amplify the difference.
    model.train()
    for epoch in range(train.epochs):
        permutation = torch.randperm(n, generator=order).to(device)
        loss_sum = torch.zeros((), device=device)
        batches = 0
        for start in range(0, n, train.batch_size):
            batch = permutation[start : start + train.batch_size]
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            if not torch.isfinite(loss):
                diverged_at = step
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if isinstance(optimizer, NaturalGradient):
                try:
                    optimizer.precondition(x_train[batch], y_train[batch])
                except NonFiniteError:
                    diverged_at = step
                    break
            optimizer.step()
            schedule.step()
            step += 1
            loss_sum += loss.detach()
            batches += 1
            if step % train.checkpoint_every == 0:
                steps.append(step)
                points.append(layout.flatten(model).cpu())
                buffers.append(layout.flatten_buffers(model).cpu())
        if diverged_at is not None:
            break
        history.append(
            {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": (loss_sum / batches).item(),
            }
        )
        if on_epoch is not None:
            on_epoch(epoch + 1, train.epochs)

    # A step can leave finite loss but non-finite weights; keep only finite checkpoints.
    while len(points) > 1 and not bool(torch.isfinite(points[-1]).all()):
        points.pop()
        buffers.pop()
        steps.pop()
        diverged_at = step if diverged_at is None else diverged_at

    if diverged_at is None and steps[-1] != step:
        last_point = layout.flatten(model).cpu()
        if bool(torch.isfinite(last_point).all()):
            steps.append(step)
            points.append(last_point)
            buffers.append(layout.flatten_buffers(model).cpu())
        else:
            diverged_at = step

    recorded_buffers = torch.stack(buffers) if layout.buffer_size else None
    trajectory = Trajectory(tuple(steps), torch.stack(points), recorded_buffers)
    if diverged_at is not None:
        logger.warning(
            "run %s diverged at step %d (non-finite loss)", spec.name, diverged_at
        )
        return RunResult(
            spec=spec,
            status="diverged",
            trajectory=trajectory,
            diverged_at_step=diverged_at,
            history=history,
            seconds=time.perf_counter() - started,
        )

    final = _evaluate_final(model, dataset, device)
    run = RunResult(
        spec=spec,
        status="complete",
        trajectory=trajectory,
        train_loss=final.train_loss,
        train_accuracy=final.train_accuracy,
        test_loss=final.test_loss,
        test_accuracy=final.test_accuracy,
        test_predictions=final.test_predictions,
        history=history,
        seconds=time.perf_counter() - started,
    )
    if not (np.isfinite(final.train_loss) and np.isfinite(final.test_loss)):
        run.status, run.diverged_at_step = "diverged", step
        logger.warning(
            "run %s ended with a non-finite loss at step %d", spec.name, step
        )
        return run
    logger.info(
        "run %s: train acc %.4f, test acc %.4f (%.1fs)",
        spec.name,
        run.train_accuracy,
        run.test_accuracy,
        run.seconds,
    )
    return run


@dataclass(frozen=True)
class _FinalMetrics:
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    test_predictions: np.ndarray


def _evaluate_final(
    model: nn.Module, dataset: Dataset, device: torch.device
) -> _FinalMetrics:
    evaluator = StackedEvaluator(model, device)
    point = ParamLayout.of(model).flatten(model).reshape(1, -1)
    train_loss, train_acc = evaluator.loss_and_accuracy(
        point, dataset.x_train, dataset.y_train
    )
    test_loss, test_acc, predicted = evaluator.metrics(
        point, dataset.x_test, dataset.y_test
    )
    return _FinalMetrics(
        train_loss=train_loss.item(),
        train_accuracy=train_acc.item(),
        test_loss=test_loss.item(),
        test_accuracy=test_acc.item(),
        test_predictions=predicted[0].numpy().astype(np.int16),
    )
