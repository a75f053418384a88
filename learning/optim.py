"""Natural-gradient descent with a damped empirical Fisher, diagonal or low-rank.

`NaturalGradient` updates theta <- theta - lr * (F + damping I)^{-1} grad,
where grad is the gradient left in ``p.grad`` by the caller's backward pass
and F is the Fisher estimate of `learning.fisher.empirical_fisher` on the
current minibatch. Natural gradient is steepest descent under the Fisher
metric, so on Param it moves along the metric's geodesics to first order.

A `torch.optim.Optimizer` receives only parameters and gradients, but a
Fisher estimate needs the model and the batch as well, so one training step
reads::

    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.precondition(x, y)  # estimate F on this batch (when due)
    optimizer.step()

No curvature is estimated per layer (no KFAC); see `learning.fisher` for the
two estimates and for how the empirical Fisher differs from the true one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, overload

import torch
from torch import nn

from learning.fisher import (
    DEFAULT_BATCH_SIZE,
    FISHER_KINDS,
    FisherKind,
    FisherMetric,
    empirical_fisher,
)
from learning.param import ParamLayout

logger = logging.getLogger(__name__)

DEFAULT_DAMPING: dict[FisherKind, float] = {"diagonal": 1e-3, "lowrank": 1e-1}
"""Default lambda of the damping lambda * I for each kind; see `NaturalGradient`."""


class NaturalGradient(torch.optim.Optimizer):
    """Natural-gradient descent on all parameters of one model.

    Parameters
    ----------
    model : nn.Module
        The model whose parameters are updated. The Fisher is estimated over
        all of its parameters as one flat vector in `ParamLayout` order, so
        the optimizer has exactly one parameter group.
    lr : float
        Step size, > 0.
    kind : {"diagonal", "lowrank"}
        The Fisher estimate (see `learning.fisher.empirical_fisher`).
    rank : int, optional
        Components kept by ``"lowrank"``; None keeps min(batch size, P).
    damping : float, optional
        lambda > 0 in (F + lambda I)^{-1}; None takes 1e-3 for
        ``"diagonal"`` and 0.1 for ``"lowrank"``. Without damping, F^{-1} g
        grows like 1 / |g| as the gradient shrinks (the empirical Fisher
        scales with squared gradients), and a low-rank F is singular. With a
        diagonal F, lambda = 1e-3 caps one coordinate's update at
        lr / (2 sqrt(lambda)) ~= 16 lr when the per-example gradients agree
        (F ~= g^2). With a low-rank F, the gradient's part outside the kept
        subspace is divided by lambda alone, so that part moves as plain
        gradient descent at rate lr / lambda; 0.1 keeps that rate at 10 lr.
        Both values are absolute, so rescaling the loss calls for rescaling
        them. They were chosen on MNIST-1D with a 2-layer MLP of width 16
        and batches of 50, where 1e-3 with a rank-20 F diverged at lr 0.01.
    update_every : int
        Steps between Fisher estimates; between them the last one is reused.
    batch_size : int
        Examples per vmap call in the per-example gradients.
    sampled : bool
        Draw the labels of the Fisher estimate from the model's predictive
        distribution (true-Fisher Monte Carlo estimate) instead of using `y`.
    generator : torch.Generator, optional
        CPU generator for the sampled labels.

    Notes
    -----
    `precondition(x, y)` must be called before the first `step()`, and on
    every step that is due for a new estimate; calls in between do nothing.
    The step uses ``p.grad`` as it is, so any regularizer in the loss is
    preconditioned with the cross-entropy gradient. Parameters with
    ``requires_grad=False`` are never changed.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        kind: FisherKind = "diagonal",
        rank: int | None = None,
        damping: float | None = None,
        update_every: int = 1,
        batch_size: int = DEFAULT_BATCH_SIZE,
        sampled: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr = {lr} must be a finite number > 0")
        if kind not in FISHER_KINDS:
            raise ValueError(
                f"Fisher kind {kind!r} is not supported; use one of {FISHER_KINDS}"
            )
        if damping is None:
            damping = DEFAULT_DAMPING[kind]
        if not (math.isfinite(damping) and damping > 0):
            raise ValueError(
                f"damping = {damping} must be a finite number > 0, because the"
                f" Fisher estimate can be singular; try {DEFAULT_DAMPING[kind]}"
            )
        if rank is not None and rank < 1:
            raise ValueError(f"rank = {rank} must be at least 1, or None")
        if update_every < 1:
            raise ValueError(f"update_every = {update_every} must be at least 1")
        if batch_size < 1:
            raise ValueError(f"batch_size = {batch_size} must be at least 1")

        self.model = model
        self.layout = ParamLayout.of(model)
        self.kind: FisherKind = kind
        self.rank = rank
        self.update_every = update_every
        self.batch_size = batch_size
        self.sampled = sampled
        self.generator = generator
        self.metric: FisherMetric | None = None
        self._steps_done = 0
        named = dict(model.named_parameters())
        params = [named[name] for name in self.layout.names]
        super().__init__(params, {"lr": lr, "damping": damping})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add the model's parameter group; a second group is rejected."""
        if self.param_groups:
            raise ValueError(
                "NaturalGradient preconditions all of the model's parameters as"
                " one group; build a separate optimizer for other parameters"
            )
        super().add_param_group(param_group)

    @property
    def fisher_due(self) -> bool:
        """Whether the next `precondition` call estimates a new Fisher."""
        return self.metric is None or self._steps_done % self.update_every == 0

    def precondition(self, x: torch.Tensor, y: torch.Tensor) -> FisherMetric:
        """Estimate the Fisher on the batch (x, y) when due, and return the current one.

        The estimate is at the model's current parameters, so call this after
        the forward and backward passes of the step and before `step()`.

        Raises
        ------
        learning.fisher.NonFiniteError
            If the parameters or the per-example gradients are not finite,
            which a training loop should record as a diverged run.
        """
        if self.fisher_due:
            group = self.param_groups[0]
            self.metric = empirical_fisher(
                self.model,
                self.layout.flatten(self.model),
                x,
                y,
                kind=self.kind,
                rank=self.rank,
                damping=float(group["damping"]),
                batch_size=self.batch_size,
                sampled=self.sampled,
                generator=self.generator,
            )
            logger.debug(
                "estimated a %s Fisher on %d examples at step %d",
                self.kind,
                x.shape[0],
                self._steps_done,
            )
        assert self.metric is not None  # set above when missing
        return self.metric

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update the parameters by -lr * (F + damping I)^{-1} grad.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss; called with gradients
            enabled before the update, as in `torch.optim`.

        Raises
        ------
        RuntimeError
            If `precondition` has not been called since the optimizer was
            built or its state loaded.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.metric is None:
            raise RuntimeError(
                "NaturalGradient has no Fisher estimate; call"
                " optimizer.precondition(x, y) with the batch before step()"
            )

        group = self.param_groups[0]
        params: list[nn.Parameter] = group["params"]
        gradient = torch.cat(
            [
                torch.zeros(p.numel(), device=p.device, dtype=p.dtype)
                if p.grad is None
                else p.grad.reshape(-1)
                for p in params
            ]
        )
        direction = self.metric.solve(gradient, damping=float(group["damping"]))
        pieces = torch.split(direction, list(self.layout.sizes))
        for p, piece in zip(params, pieces):
            if p.requires_grad:
                p.add_(piece.view_as(p).to(p.dtype), alpha=-float(group["lr"]))

        self._steps_done += 1
        self.state[params[0]]["step"] = self._steps_done
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the optimizer state and drop the Fisher estimate, which is not saved.

        The next `precondition` call estimates a new one.
        """
        super().load_state_dict(state_dict)
        params = self.param_groups[0]["params"]
        self._steps_done = int(self.state[params[0]].get("step", 0))
        self.metric = None
