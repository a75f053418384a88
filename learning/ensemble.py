"""Train many runs of one architecture at once, vectorized over the runs.

`train_ensemble` returns the same `RunResult`s as calling
`learning.training.train_run` on each spec, but trains all runs that share an
optimizer (name, weight decay and, for SGD, momentum) in one pass, whatever
their learning rates. The runs' parameters live in one (n_runs, size) tensor, the
flat layout of `ParamLayout` with a leading run dimension. Each step gathers
every run's own minibatch into an (n_runs, batch, ...) tensor, then
computes the per-run losses and the gradient of their sum with respect to
the stacked parameters. The runs share no parameter, so row i of that
gradient is run i's own gradient. Where `learning.stacked` covers the
model's layers (MLPs and the CNNs without BatchNorm), both come from
`StackedNetwork.loss_and_grad`: batched matrix products over the runs and
hand-written backward passes, with scratch buffers kept from step to step.
Otherwise autograd differentiates `torch.func.vmap` over
`torch.func.functional_call`.

`_StackedSGD` and `_StackedAdam` update the stacked tensor with the tensor
operations of the single-tensor ``torch.optim.SGD`` and ``torch.optim.Adam``
of torch 2.13, the implementations PyTorch runs on the CPU. Both optimizers
act entry by entry, and Adam's step count is the same for every run, so
``torch.optim`` run on the stacked tensor would compute each row exactly as
that run's own optimizer does. It is not used here for two reasons: it cannot
leave a diverged run's row untouched, and it takes one learning rate per
tensor, not one per row.

The results agree with `train_run`'s to float rounding, not bit for bit.
Both vectorized paths compute the runs' matrix products and convolutions
with batched kernels, which may sum in another order. Where the runs' learning
rates differ, the step multiplies by a tensor of rates instead of a scalar,
which can round differently. Training amplifies such last-bit differences
over many steps.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from learning.config import ExperimentConfig, OptimizerConfig, RunSpec
from learning.data import Dataset
from learning.evaluate import StackedEvaluator
from learning.models import FeatureClassifier
from learning.param import ParamLayout, Trajectory
from learning.stacked import StackedNetwork
from learning.training import RunResult, initial_model

logger = logging.getLogger(__name__)

ADAM_BETAS = (0.9, 0.999)
"""Adam's decay rates, PyTorch's defaults (what `make_optimizer` uses)."""

ADAM_EPS = 1e-8
"""Adam's denominator term, PyTorch's default."""

CPU_EVAL_CHUNKS = (8, 512)
"""Points and examples per batched call of the final evaluation on the CPU.

StackedEvaluator's defaults (32 and 4096) suit a GPU. On the CPU they give
the CNN's layers activations of hundreds of MB per call. The final metrics of
32 CNN runs (4,000 training and 1,000 test examples) took 0.60 to 0.83 s
with those defaults and 0.28 to 0.36 s with these, on an idle 2-core CPU
with torch 2.13 (two tries each).
"""


def train_ensemble(
    config: ExperimentConfig,
    dataset: Dataset,
    specs: Sequence[RunSpec],
    device: torch.device,
    *,
    batched_products: bool = True,
) -> list[RunResult]:
    """Train several runs of one architecture in vectorized passes.

    The specs are grouped by optimizer. Runs with the same optimizer name,
    weight decay and (for SGD) momentum are trained in one pass, even where
    their learning rates or seeds differ. A run's result does not depend on
    the other runs in its pass, up to float rounding (see the module notes).

    Each run starts from the initialization `initial_model` builds for its
    init seed and visits the data in the order its data seed fixes. It is
    recorded as `train_run` records it, with checkpoints at step 0, every
    ``checkpoint_every`` steps and at the end, and the same final metrics
    and per-epoch history. A run whose loss becomes NaN or infinite is
    frozen and returned as diverged at that step, while the other runs
    continue.

    Parameters
    ----------
    config : ExperimentConfig
        Model, epochs, batch size and checkpoint interval.
    dataset : Dataset
        Training and test data (on the CPU; they are moved to `device`).
    specs : sequence of RunSpec
        The runs to train.
    device : torch.device
        Where to train.
    batched_products : bool
        Compute the losses with `learning.stacked` where it covers the model
        (the default); False always uses vmap, as a baseline to compare with.

    Returns
    -------
    list of RunResult
        One result per spec, in the order of `specs`. Each run's ``seconds``
        is its group's wall-clock time divided by the group's number of runs.

    Raises
    ------
    ValueError
        If the model has buffers (BatchNorm running statistics, say), whose
        in-place updates the vectorized pass does not support.

    Notes
    -----
    NOTE: a pass keeps the activations of all its runs in memory at once, so
    memory grows with the number of runs. Where that is too much, call this
    on subsets of the specs; their results are the same.
    """
    for spec in specs:
        _require_supported(spec)
    groups: dict[tuple[str, float, float], list[int]] = {}
    for position, spec in enumerate(specs):
        groups.setdefault(_group_key(spec.optimizer), []).append(position)

    results: list[RunResult | None] = [None] * len(specs)
    for (name, _, _), positions in groups.items():
        logger.info("training %d %s runs in one vectorized pass", len(positions), name)
        group = _train_group(
            config,
            dataset,
            [specs[i] for i in positions],
            device,
            batched_products,
        )
        for position, result in zip(positions, group, strict=True):
            results[position] = result
    return [result for result in results if result is not None]


def supports(spec: RunSpec) -> bool:
    """Return whether `train_ensemble` implements the run's optimizer exactly."""
    return not unsupported_features(spec)


def _require_supported(spec: RunSpec) -> None:
    """Raise unless the vectorized pass implements the run's optimizer exactly."""
    problems = unsupported_features(spec)
    if problems:
        raise ValueError(
            f"run {spec.name} uses {' and '.join(problems)}, which train_ensemble"
            " does not implement; train it with train_run instead"
        )


def unsupported_features(spec: RunSpec) -> list[str]:
    """Return what in the run's optimizer train_ensemble does not implement."""
    optimizer = spec.optimizer
    problems = []
    if optimizer.name not in ("sgd", "adam"):
        problems.append(f"optimizer {optimizer.name!r} (supported: 'sgd', 'adam')")
    if optimizer.nesterov:
        problems.append("Nesterov momentum")
    if optimizer.schedule != "constant":
        problems.append(f"the {optimizer.schedule!r} learning-rate schedule")
    return problems


def _group_key(optimizer: OptimizerConfig) -> tuple[str, float, float]:
    """Return the settings that runs trained in one pass must share."""
    # Adam ignores the momentum field, so it does not split Adam runs.
    momentum = optimizer.momentum if optimizer.name == "sgd" else 0.0
    return (optimizer.name, momentum, optimizer.weight_decay)


class _StackedSGD:
    """SGD with momentum on an (n_runs, size) tensor, as ``torch.optim.SGD`` does.

    The update is buf = momentum * buf + (grad + weight_decay * p), with buf
    set to the first gradient, then p = p - lr * buf (no dampening, no
    Nesterov). With momentum 0 there is no buffer and p = p - lr * grad.
    `learning_rates` contains one learning rate per run, shape (n_runs, 1).
    `shared_lr` is the learning rate of every run when they all have one.
    """

    def __init__(
        self,
        config: OptimizerConfig,
        learning_rates: torch.Tensor,
        shared_lr: float | None,
    ) -> None:
        self.lr = shared_lr
        self.negative_lr = -learning_rates
        self.momentum = config.momentum
        self.weight_decay = config.weight_decay
        self.buffer: torch.Tensor | None = None

    def updated(self, params: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Advance the state and return the parameters after one step."""
        if self.weight_decay != 0:
            grad = grad.add(params, alpha=self.weight_decay)
        direction = grad
        if self.momentum != 0:
            if self.buffer is None:
                self.buffer = grad.detach().clone()
            else:
                self.buffer.mul_(self.momentum).add_(grad)
            direction = self.buffer
        if self.lr is not None:
            return params.add(direction, alpha=-self.lr)
        return params.addcmul(direction, self.negative_lr)


class _StackedAdam:
    """Adam on an (n_runs, size) tensor, as ``torch.optim.Adam`` does by default.

    L2 weight decay is added to the gradient (not decoupled), both moments
    are bias-corrected, and eps is added after the square root. All runs
    take their steps together, so one step count serves every row.
    `learning_rates` contains one learning rate per run, shape (n_runs, 1).
    `shared_lr` is the learning rate of every run when they all have one.
    """

    def __init__(
        self,
        config: OptimizerConfig,
        learning_rates: torch.Tensor,
        shared_lr: float | None,
        params: torch.Tensor,
    ) -> None:
        self.lr = shared_lr
        self.learning_rates = learning_rates
        self.weight_decay = config.weight_decay
        self.step = 0
        self.exp_avg = torch.zeros_like(params)
        self.exp_avg_sq = torch.zeros_like(params)

    def updated(self, params: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Advance the state and return the parameters after one step."""
        beta1, beta2 = ADAM_BETAS
        self.step += 1
        if self.weight_decay != 0:
            grad = grad.add(params, alpha=self.weight_decay)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

        correction1 = 1 - beta1**self.step
        correction2_sqrt = (1 - beta2**self.step) ** 0.5
        if self.lr is not None:
            denominator = (self.exp_avg_sq.sqrt() / correction2_sqrt).add_(ADAM_EPS)
            step_size = self.lr / correction1
            return params.addcdiv(self.exp_avg, denominator, value=-step_size)

        # One step size per run: fold it into the denominator, as PyTorch's
        # capturable Adam folds its tensor step size.
        negative_step = -self.learning_rates / correction1
        denominator = (
            self.exp_avg_sq.sqrt() / (correction2_sqrt * negative_step)
        ).add_(ADAM_EPS / negative_step)
        return params.addcdiv(self.exp_avg, denominator)


def _make_stacked_optimizer(
    specs: list[RunSpec], params: torch.Tensor
) -> _StackedSGD | _StackedAdam:
    config = specs[0].optimizer
    rates = [spec.optimizer.lr for spec in specs]
    learning_rates = torch.tensor(rates, dtype=params.dtype, device=params.device)
    # A learning rate all runs share stays a Python float, so that the step
    # takes the same scalar path, with the same rounding, as torch.optim's.
    shared_lr = rates[0] if len(set(rates)) == 1 else None
    if config.name == "sgd":
        return _StackedSGD(config, learning_rates.unsqueeze(1), shared_lr)
    return _StackedAdam(config, learning_rates.unsqueeze(1), shared_lr, params)


@dataclass
class _RunRecord:
    """One run's checkpoints and per-epoch history, as recorded so far."""

    steps: list[int] = field(default_factory=lambda: [0])
    points: list[torch.Tensor] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


def _stack_models(
    models: list[FeatureClassifier], layout: ParamLayout, device: torch.device
) -> torch.Tensor:
    """Return the models' parameters as one (n_runs, size) tensor on `device`."""
    buffers = [name for name, _ in models[0].named_buffers()]
    if buffers:
        raise ValueError(
            f"the model has buffers {buffers}, which the vectorized pass cannot"
            " update in place; train these runs one at a time with train_run"
        )
    stacked, _ = stack_module_state(models)
    flat = torch.cat([stacked[name].detach().flatten(1) for name in layout.names], 1)
    return flat.to(device)


def _make_loss_and_grad(
    model: nn.Module, layout: ParamLayout, batched_products: bool
) -> Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]
]:
    """Return (params, x, y) -> (per-run losses, their gradient).

    Its inputs have shapes (R, size), (R, batch, ...) and (R, batch). It
    returns losses of shape (R,) and the gradient of their sum, (R, size).
    Row r of that gradient is run r's own gradient.
    """
    network = StackedNetwork.of(model) if batched_products else None
    if network is not None:
        stacked = network

        def by_products(
            flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            losses, grads = stacked.loss_and_grad(layout.unflatten(flat), x, y)
            runs = flat.shape[0]
            grad = torch.cat([grads[n].reshape(runs, -1) for n in layout.names], 1)
            return losses, grad

        return by_products

    # Every call passes all parameters, so the module's own tensors are never
    # read. A copy on the meta device allocates no memory for them.
    skeleton = copy.deepcopy(model).to("meta")

    def run_loss(
        params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        logits: torch.Tensor = functional_call(skeleton, params, (x,))
        return nn.functional.cross_entropy(logits, y)

    batched: Callable[..., torch.Tensor] = vmap(run_loss)

    def through_vmap(
        flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            leaf = flat.detach().requires_grad_(True)
            losses = batched(layout.unflatten(leaf), x, y)
            (grad,) = torch.autograd.grad(losses.sum(), leaf)
        return losses.detach(), grad

    return through_vmap


def _train_group(
    config: ExperimentConfig,
    dataset: Dataset,
    specs: list[RunSpec],
    device: torch.device,
    batched_products: bool,
) -> list[RunResult]:
    """Train runs that share one optimizer config in one vectorized pass."""
    started = time.perf_counter()
    train = config.train
    n_runs = len(specs)
    models = [initial_model(config, dataset, spec.init_seed) for spec in specs]
    layout = ParamLayout.of(models[0])
    params = _stack_models(models, layout, device)
    optimizer = _make_stacked_optimizer(specs, params)
    loss_and_grad = _make_loss_and_grad(models[0], layout, batched_products)
    orders = [torch.Generator().manual_seed(spec.data_seed) for spec in specs]

    x_train = dataset.x_train.to(device)
    y_train = dataset.y_train.to(device)
    n = len(y_train)
    start_points = params.detach().to("cpu", copy=True)
    records = [_RunRecord(points=[start_points[i]]) for i in range(n_runs)]

    # `active` and `diverged_at` stay on the device and are read only at
    # checkpoints and epoch ends, so that no step waits for a device sync. A
    # run leaves `active` at its first non-finite loss, and from then on every
    # update of its row is masked out, so later steps need no rollback. Its
    # row still goes through the forward and backward passes until the end.
    active = torch.ones(n_runs, dtype=torch.bool, device=device)
    diverged_at = torch.full((n_runs,), -1, dtype=torch.long, device=device)
    step = 0

    for epoch in range(train.epochs):
        permutations = torch.stack(
            [torch.randperm(n, generator=order) for order in orders]
        ).to(device)
        loss_sum = torch.zeros(n_runs, device=device)
        batches = 0
        for start in range(0, n, train.batch_size):
            batch = permutations[:, start : start + train.batch_size]
            losses, grad = loss_and_grad(params, x_train[batch], y_train[batch])

            with torch.no_grad():
                finite = torch.isfinite(losses)
                diverged_at.masked_fill_(active & ~finite, step)
                active &= finite
                updated = optimizer.updated(params, grad)
                # On the CPU, reading `active` costs no device sync, and while
                # every run is active the new tensor needs no masking.
                if device.type != "cpu" or not bool(active.all()):
                    updated = torch.where(active.unsqueeze(1), updated, params)
                params = updated
                loss_sum += losses

            step += 1
            batches += 1
            if step % train.checkpoint_every == 0:
                _record_checkpoint(records, step, params, active)

        if not _record_history(records, epoch + 1, step, loss_sum / batches, active):
            break

    results = _finish_runs(
        models[0],
        dataset,
        device,
        specs,
        records,
        params.detach().to("cpu", copy=True),
        [int(d) if d >= 0 else None for d in diverged_at.tolist()],
        step,
    )
    seconds = (time.perf_counter() - started) / n_runs
    for result in results:
        result.seconds = seconds
    return results


def _record_history(
    records: list[_RunRecord],
    epoch: int,
    step: int,
    mean_losses: torch.Tensor,
    active: torch.Tensor,
) -> bool:
    """Append the epoch's mean training loss of every run that has not diverged.

    Return whether any run has not diverged. Like train_run, a run that
    diverges during an epoch records no entry for that epoch.
    """
    still_active = active.cpu()
    losses = mean_losses.cpu()
    for i in torch.nonzero(still_active).flatten().tolist():
        entry = {"epoch": epoch, "step": step, "train_loss": losses[i].item()}
        records[i].history.append(entry)
    return bool(still_active.any())


def _record_checkpoint(
    records: list[_RunRecord], step: int, params: torch.Tensor, active: torch.Tensor
) -> None:
    """Append the current point of every run that has not diverged."""
    # A run that diverges at step d stops before its update d + 1, so like
    # train_run it has checkpoints at d and before, and none after.
    snapshot = params.detach().to("cpu", copy=True)
    for i in torch.nonzero(active.cpu()).flatten().tolist():
        records[i].steps.append(step)
        records[i].points.append(snapshot[i])


def _finish_runs(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    specs: list[RunSpec],
    records: list[_RunRecord],
    final_points: torch.Tensor,
    diverged_steps: list[int | None],
    total_steps: int,
) -> list[RunResult]:
    """Close every run's trajectory as train_run does and attach final metrics."""
    results: list[RunResult] = []
    complete: list[int] = []
    for i, (spec, record) in enumerate(zip(specs, records, strict=True)):
        diverged_at = diverged_steps[i]
        last_step = total_steps if diverged_at is None else diverged_at
        steps, points = record.steps, record.points

        # A step can leave a finite loss but non-finite weights, so only
        # finite checkpoints are kept, as train_run keeps them.
        while len(points) > 1 and not bool(torch.isfinite(points[-1]).all()):
            points.pop()
            steps.pop()
            diverged_at = last_step if diverged_at is None else diverged_at

        if diverged_at is None and steps[-1] != last_step:
            if bool(torch.isfinite(final_points[i]).all()):
                steps.append(last_step)
                points.append(final_points[i])
            else:
                diverged_at = last_step

        result = RunResult(
            spec=spec,
            status="complete" if diverged_at is None else "diverged",
            trajectory=Trajectory(tuple(steps), torch.stack(points)),
            diverged_at_step=diverged_at,
            history=record.history,
        )
        if diverged_at is None:
            complete.append(i)
        else:
            logger.warning(
                "run %s diverged at step %d (non-finite loss)", spec.name, diverged_at
            )
        results.append(result)

    if complete:
        _attach_final_metrics(
            model, dataset, device, [results[i] for i in complete], total_steps
        )
    return results


def _make_evaluator(model: nn.Module, device: torch.device) -> StackedEvaluator:
    if device.type == "cpu":
        points, examples = CPU_EVAL_CHUNKS
        return StackedEvaluator(
            model, device, point_chunk=points, example_chunk=examples
        )
    return StackedEvaluator(model, device)


def _attach_final_metrics(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    runs: list[RunResult],
    total_steps: int,
) -> None:
    """Evaluate the final points of complete runs and store their metrics."""
    evaluator = _make_evaluator(model, device)
    points = torch.stack([run.final_point for run in runs])
    train_loss, train_accuracy = evaluator.loss_and_accuracy(
        points, dataset.x_train, dataset.y_train
    )
    test_loss, test_accuracy, predictions = evaluator.metrics(
        points, dataset.x_test, dataset.y_test
    )

    for i, run in enumerate(runs):
        run.train_loss = train_loss[i].item()
        run.train_accuracy = train_accuracy[i].item()
        run.test_loss = test_loss[i].item()
        run.test_accuracy = test_accuracy[i].item()
        run.test_predictions = predictions[i].numpy().astype(np.int16)
        if not (np.isfinite(run.train_loss) and np.isfinite(run.test_loss)):
            run.status, run.diverged_at_step = "diverged", total_steps
            logger.warning(
                "run %s ended with a non-finite loss at step %d",
                run.name,
                total_steps,
            )
            continue
        logger.info(
            "run %s: train acc %.4f, test acc %.4f",
            run.name,
            run.train_accuracy,
            run.test_accuracy,
        )
