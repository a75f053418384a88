"""The Fisher metric on Param, and Fisher lengths of optimization trajectories.

At a parameter point theta of a classifier with cross-entropy loss, the
per-example gradient is g_i = grad_theta(-log p_theta(y_i | x_i)). The
*empirical Fisher* uses the data's labels,

    F_emp(theta) = (1/n) sum_i g_i g_i^T,

while the *true Fisher* takes the expectation over the model's own predictive
distribution, F(theta) = (1/n) sum_i E_{y ~ p_theta(. | x_i)} g_i(y) g_i(y)^T.
The true Fisher is the Riemannian metric of information geometry (the Hessian
of the KL divergence between nearby predictive distributions). The two agree
in expectation only when the data's labels follow the model's predictive
distribution, as for a well-specified model at its optimum. Elsewhere they can
differ widely. Where the model fits its training labels, the per-example
gradients shrink and the empirical Fisher shrinks with their squares, so an
update that divides by it grows as the gradient shrinks, while the true Fisher
stays put. ``sampled=True`` replaces each label by one drawn from
p_theta(. | x_i), which gives an unbiased one-sample Monte Carlo estimate of
the true Fisher.

Two approximations of the P x P matrix are stored, never the matrix itself:

- ``"diagonal"``: diag(F), the mean of the squared per-example gradients.
- ``"lowrank"``: F ~= U diag(s) U^T. The columns of U are the top right
  singular vectors of the (n x P) per-example gradient matrix G / sqrt(n),
  and s contains their squared singular values. The thin SVD is exact
  (`torch.linalg.svd`, not a randomized sketch), so with rank min(n, P) the
  factorization equals F_emp.

Both add an optional damping lambda * I. The Fisher length of a
piecewise-linear trajectory theta_0, ..., theta_m is

    sum_k sqrt(d_k^T (F(theta_k) + lambda I) d_k),    d_k = theta_{k+1} - theta_k,

with the metric taken at each segment's *start* (a left Riemann sum of the
length integral, so the length of a composite trajectory is the sum of its
parts' lengths).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from learning.param import ParamLayout, Trajectory

logger = logging.getLogger(__name__)

FisherKind = Literal["diagonal", "lowrank"]
FISHER_KINDS: tuple[FisherKind, ...] = ("diagonal", "lowrank")


class NonFiniteError(ValueError):
    """Raised when a parameter point or its per-example gradients are not finite.

    Training loops can catch it to record a run as diverged instead of crashing.
    """


DEFAULT_BATCH_SIZE = 256
"""Examples per vmap call; one call keeps a (batch, P) block of gradients."""


@dataclass(frozen=True, eq=False)
class FisherMetric:
    """A damped Fisher estimate F + damping * I at one parameter point.

    Exactly one representation is set: ``diagonal`` (shape (P,)) for kind
    ``"diagonal"``, or ``basis`` (shape (P, rank), orthonormal columns) and
    ``eigenvalues`` (shape (rank,), non-negative, descending) for kind
    ``"lowrank"``. Every method accepts vectors of shape (P,) or (..., P) and
    works on the device of the stored tensors.
    """

    kind: FisherKind
    damping: float
    n_examples: int
    sampled: bool = False
    diagonal: torch.Tensor | None = None
    basis: torch.Tensor | None = None
    eigenvalues: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in FISHER_KINDS:
            raise ValueError(
                f"Fisher kind {self.kind!r} is not supported; use one of {FISHER_KINDS}"
            )
        _check_damping(self.damping)
        if self.kind == "diagonal":
            if self.diagonal is None or self.diagonal.ndim != 1:
                raise ValueError(
                    "a diagonal FisherMetric needs `diagonal` of shape (P,); got"
                    f" {None if self.diagonal is None else tuple(self.diagonal.shape)}"
                )
            if self.basis is not None or self.eigenvalues is not None:
                raise ValueError(
                    "a diagonal FisherMetric takes no `basis` or `eigenvalues`;"
                    " pass them only with kind='lowrank'"
                )
            return
        if self.basis is None or self.eigenvalues is None:
            raise ValueError(
                "a low-rank FisherMetric needs both `basis` (P, rank) and"
                " `eigenvalues` (rank,)"
            )
        if self.basis.ndim != 2 or self.eigenvalues.shape != self.basis.shape[1:]:
            raise ValueError(
                f"basis of shape {tuple(self.basis.shape)} and eigenvalues of shape"
                f" {tuple(self.eigenvalues.shape)} do not match; expected (P, rank)"
                " and (rank,)"
            )
        if self.diagonal is not None:
            raise ValueError(
                "a low-rank FisherMetric takes no `diagonal`; pass it only with"
                " kind='diagonal'"
            )

    @property
    def size(self) -> int:
        """Number of parameters P."""
        stored = self.diagonal if self.diagonal is not None else self.basis
        assert stored is not None  # guaranteed by __post_init__
        return int(stored.shape[0])

    @property
    def rank(self) -> int | None:
        """Number of kept components of a low-rank estimate; None for a diagonal one."""
        return None if self.eigenvalues is None else int(self.eigenvalues.shape[0])

    @property
    def device(self) -> torch.device:
        """Device of the stored tensors."""
        stored = self.diagonal if self.diagonal is not None else self.basis
        assert stored is not None  # guaranteed by __post_init__
        return stored.device

    def matvec(self, v: torch.Tensor, damping: float | None = None) -> torch.Tensor:
        """Apply F + damping * I to `v`, (P,) or (..., P).

        `damping` defaults to the metric's own.
        """
        damping = self.damping if damping is None else _check_damping(damping)
        v = self._as_vectors(v)
        if self.diagonal is not None:
            return v * (self.diagonal + damping)
        basis, eigenvalues = self._lowrank()
        return ((v @ basis) * eigenvalues) @ basis.T + damping * v

    def inner(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Return u^T (F + damping I) v; a 0-dim tensor for (P,) inputs, else (...)."""
        return (self._as_vectors(u) * self.matvec(v)).sum(dim=-1)

    def norm(self, v: torch.Tensor) -> torch.Tensor:
        """Return sqrt(v^T (F + damping I) v), the length of `v` under the metric."""
        # F is positive semi-definite, so a negative quadratic form is rounding error.
        return self.inner(v, v).clamp(min=0.0).sqrt()

    def solve(self, g: torch.Tensor, damping: float | None = None) -> torch.Tensor:
        """Return (F + damping I)^{-1} g for `g` of shape (P,) or (..., P).

        `damping` defaults to the metric's own. A low-rank F is inverted with
        the Woodbury identity, which for orthonormal U reduces to

            (U S U^T + lambda I)^{-1} g
                = g / lambda - U diag(s / (lambda (s + lambda))) U^T g,

        at a cost of O(P * rank) per vector.

        Raises
        ------
        ValueError
            If F + damping I is singular: damping 0 with a zero diagonal entry,
            or damping 0 with a low-rank F of rank below P or a zero eigenvalue.
        """
        damping = self.damping if damping is None else _check_damping(damping)
        g = self._as_vectors(g)
        if self.diagonal is not None:
            shifted = self.diagonal + damping
            if damping == 0.0 and not bool((shifted > 0).all()):
                raise ValueError(
                    f"cannot solve with damping 0: {int((shifted <= 0).sum())} of"
                    f" {self.size} diagonal Fisher entries are 0; pass damping > 0"
                )
            return g / shifted

        basis, eigenvalues = self._lowrank()
        if damping == 0.0:
            null = int((eigenvalues <= self._rank_tolerance()).sum())
            if basis.shape[1] < basis.shape[0] or null:
                raise ValueError(
                    f"cannot solve with damping 0: the Fisher estimate keeps"
                    f" {basis.shape[1]} eigenvalues for {basis.shape[0]} parameters,"
                    f" {null} of them numerically 0; pass damping > 0"
                )
            return ((g @ basis) / eigenvalues) @ basis.T
        shrink = eigenvalues / (damping * (eigenvalues + damping))
        return g / damping - ((g @ basis) * shrink) @ basis.T

    def to_dense(self, damping: float | None = None) -> torch.Tensor:
        """Return the P x P matrix F + damping I (for small P and tests).

        `damping` defaults to the metric's own.
        """
        damping = self.damping if damping is None else _check_damping(damping)
        identity = torch.eye(self.size, device=self.device, dtype=self._dtype)
        if self.diagonal is not None:
            return torch.diag(self.diagonal) + damping * identity
        basis, eigenvalues = self._lowrank()
        return (basis * eigenvalues) @ basis.T + damping * identity

    @property
    def _dtype(self) -> torch.dtype:
        stored = self.diagonal if self.diagonal is not None else self.basis
        assert stored is not None  # guaranteed by __post_init__
        return stored.dtype

    def _rank_tolerance(self) -> float:
        # Singular values of G / sqrt(n) below s_max * max(n, P) * eps count as
        # zero, the default of numpy.linalg.matrix_rank (numpy 2.4), and the
        # eigenvalues are their squares. Softmax cross-entropy always leaves
        # such null directions, because adding one vector to every row of a
        # linear head shifts all logits alike and changes no prediction.
        _, eigenvalues = self._lowrank()
        if eigenvalues.numel() == 0:
            return 0.0
        epsilon = torch.finfo(eigenvalues.dtype).eps
        relative = (max(self.n_examples, self.size) * epsilon) ** 2
        return float(eigenvalues.max()) * relative

    def _lowrank(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.basis is not None and self.eigenvalues is not None
        return self.basis, self.eigenvalues

    def _as_vectors(self, v: torch.Tensor) -> torch.Tensor:
        if v.shape[-1:] != (self.size,):
            raise ValueError(
                f"vector of shape {tuple(v.shape)} does not match the metric's"
                f" {self.size} parameters; pass shape ({self.size},) or"
                f" (..., {self.size})"
            )
        return v.to(device=self.device, dtype=self._dtype)


@dataclass(frozen=True)
class FisherLength:
    """Lengths of a piecewise-linear trajectory under the Fisher and Euclidean metrics.

    ``segment_lengths[k]`` is sqrt(d_k^T (F(theta_k) + damping I) d_k) with the
    metric at the segment's start theta_k (or at the last checkpoint where it
    was recomputed, see ``recompute_every``). Euclidean lengths are in the
    units of the parameters. Fisher lengths are in sqrt(nats), because for the
    true Fisher d^T F d / 2 is the KL divergence in nats between the
    predictive distributions at the segment's ends, to second order. The
    empirical Fisher only approximates that.
    """

    length: float
    euclidean_length: float
    segment_lengths: tuple[float, ...]
    euclidean_segment_lengths: tuple[float, ...]
    kind: FisherKind
    rank: int | None
    damping: float
    sampled: bool
    n_examples: int
    recompute_every: int
    evaluated_at: Literal["start"] = "start"

    def as_row(self) -> dict[str, float | int | str | bool | None]:
        """Return the scalar fields as a flat dict, one row of a results table."""
        return {
            "fisher_length": self.length,
            "euclidean_length": self.euclidean_length,
            "segments": len(self.segment_lengths),
            "kind": self.kind,
            "rank": self.rank,
            "damping": self.damping,
            "sampled": self.sampled,
            "n_examples": self.n_examples,
            "recompute_every": self.recompute_every,
            "evaluated_at": self.evaluated_at,
        }


def per_example_gradients(
    module: nn.Module,
    params_vector: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[torch.Tensor]:
    """Yield the per-example cross-entropy gradients at a point, in blocks of rows.

    Each block has shape (b, P) with b <= `batch_size`, rows in the order of
    `x`, columns in `ParamLayout.of(module)` order. The module is called
    through `torch.func.functional_call` at `params_vector`, so its own
    parameters are neither read nor changed. It runs in eval mode, because
    per-example calls cannot use batch statistics, and its mode is restored
    afterwards. With dropout this gives the Fisher of the deterministic network.

    Parameters
    ----------
    module : nn.Module
        The network; its buffers are used as they are.
    params_vector : torch.Tensor
        Flat parameter vector of shape (P,).
    x, y : torch.Tensor
        Inputs (n, ...) and integer class labels (n,).
    batch_size : int
        Examples per vmap call, which bounds memory at about batch_size * P
        gradient entries plus the activations.
    """
    # Validate here rather than in the generator, so bad input raises at the call.
    layout, params = _params_on_module(module, params_vector)
    x, y = _check_batch(module, x, y, batch_size)
    return _gradient_blocks(module, layout, params, x, y, batch_size)


def _gradient_blocks(
    module: nn.Module,
    layout: ParamLayout,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
) -> Iterator[torch.Tensor]:
    buffers = dict(module.named_buffers())

    def example_loss(
        named: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor
    ) -> torch.Tensor:
        logits = functional_call(module, (named, buffers), (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(logits, yi.unsqueeze(0))

    batched: Callable[..., dict[str, torch.Tensor]] = vmap(
        grad(example_loss), in_dims=(None, 0, 0)
    )
    for start in range(0, x.shape[0], batch_size):
        # Eval mode only around each call, so the module is back in its own
        # mode whenever the consumer holds a block.
        with _eval_mode(module):
            grads = batched(
                params, x[start : start + batch_size], y[start : start + batch_size]
            )
        yield torch.cat([grads[name].flatten(1) for name in layout.names], dim=1)


def sample_labels(
    module: nn.Module,
    params_vector: torch.Tensor,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """Draw one label per input from the model's predictive distribution at a point.

    Returns a long tensor of shape (n,) on `x`'s device. The draw happens on
    the CPU, so a CPU `generator` fixes it on every device.
    """
    _, params = _params_on_module(module, params_vector)
    inputs = _inputs_for(module, x)
    labels = []
    with _eval_mode(module), torch.no_grad():
        for start in range(0, inputs.shape[0], batch_size):
            logits = functional_call(
                module, params, (inputs[start : start + batch_size],)
            )
            probs = torch.softmax(logits.double(), dim=-1).cpu()
            labels.append(torch.multinomial(probs, 1, generator=generator).squeeze(1))
    return torch.cat(labels).to(x.device)


def empirical_fisher(
    module: nn.Module,
    params_vector: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    kind: FisherKind = "diagonal",
    rank: int | None = None,
    damping: float = 0.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sampled: bool = False,
    generator: torch.Generator | None = None,
) -> FisherMetric:
    """Estimate the Fisher metric at a point from per-example gradients.

    Parameters
    ----------
    module : nn.Module
        The network, evaluated at `params_vector` (see `per_example_gradients`).
    params_vector : torch.Tensor
        Flat parameter vector of shape (P,) in `ParamLayout.of(module)` order.
    x, y : torch.Tensor
        Inputs (n, ...) and integer class labels (n,), n >= 1.
    kind : {"diagonal", "lowrank"}
        ``"diagonal"`` keeps the mean of the squared gradients. ``"lowrank"``
        keeps the top `rank` eigenpairs of F from an exact thin SVD of the
        stacked (n x P) gradient matrix, which must fit in memory.
    rank : int, optional
        Components kept by ``"lowrank"``; None keeps all min(n, P), which
        reproduces the empirical Fisher exactly. A rank above min(n, P) is
        lowered to it, since F has no more non-zero eigenvalues.
    damping : float
        lambda >= 0 of the damping lambda * I, stored with the metric.
    batch_size : int
        Examples per vmap call.
    sampled : bool
        Replace the labels `y` by labels drawn from the model's predictive
        distribution, which estimates the true Fisher instead of the empirical
        one (see the module docstring).
    generator : torch.Generator, optional
        CPU generator for the sampled labels.

    Returns
    -------
    FisherMetric
        On the device of the module's parameters, in their dtype.

    Raises
    ------
    NonFiniteError
        If the parameter vector (a diverged network) or the gradients are not
        finite.
    ValueError
        On an unknown kind, a rank below 1, a negative damping or mismatched
        shapes.
    """
    if kind not in FISHER_KINDS:
        raise ValueError(
            f"Fisher kind {kind!r} is not supported; use one of {FISHER_KINDS}"
        )
    if rank is not None and rank < 1:
        raise ValueError(f"rank = {rank} must be at least 1, or None for full rank")
    _check_damping(damping)
    if sampled:
        y = sample_labels(module, params_vector, x, generator, batch_size)

    blocks = per_example_gradients(module, params_vector, x, y, batch_size)
    n = x.shape[0]
    if kind == "diagonal":
        total: torch.Tensor | None = None
        for block in blocks:
            squares = block.square().sum(dim=0)
            total = squares if total is None else total + squares
        assert total is not None  # n >= 1 is checked by per_example_gradients
        diagonal = total / n
        _check_finite(diagonal)
        return FisherMetric(
            kind="diagonal",
            damping=damping,
            n_examples=n,
            sampled=sampled,
            diagonal=diagonal,
        )

    gradients = torch.cat(list(blocks)) / math.sqrt(n)
    _check_finite(gradients)
    # G / sqrt(n) = W S V^T gives F = G^T G / n = V S^2 V^T.
    _, singular_values, right = torch.linalg.svd(gradients, full_matrices=False)
    n_kept = (
        singular_values.shape[0] if rank is None else min(rank, len(singular_values))
    )
    return FisherMetric(
        kind="lowrank",
        damping=damping,
        n_examples=n,
        sampled=sampled,
        basis=right[:n_kept].T.contiguous(),
        eigenvalues=singular_values[:n_kept].square(),
    )


def fisher_length(
    module: nn.Module,
    trajectory: Trajectory,
    x: torch.Tensor,
    y: torch.Tensor,
    kind: FisherKind = "diagonal",
    rank: int | None = None,
    damping: float = 0.0,
    recompute_every: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sampled: bool = False,
    generator: torch.Generator | None = None,
) -> FisherLength:
    """Measure a piecewise-linear trajectory's length under the Fisher metric.

    Segment k, from checkpoint theta_k to theta_{k+1}, has length
    sqrt(d_k^T (F + damping I) d_k) with F estimated at its start. With
    ``recompute_every = r`` the metric is estimated at checkpoints 0, r, 2r,
    ... and reused for the segments in between, which costs m / r estimates
    for m segments. Only ``recompute_every = 1`` gives the left Riemann sum;
    a larger r freezes the metric, which the caller must judge acceptable.
    A trajectory with one checkpoint has length 0.

    The remaining parameters are those of `empirical_fisher`; the same `x`,
    `y` and settings must be used for every trajectory that is compared.
    """
    if recompute_every < 1:
        raise ValueError(
            f"recompute_every = {recompute_every} must be at least 1 (1 recomputes"
            " the metric at every checkpoint)"
        )
    layout = ParamLayout.of(module)
    if trajectory.points.shape[1] != layout.size:
        raise ValueError(
            f"trajectory points have {trajectory.points.shape[1]} entries but the"
            f" module has {layout.size} parameters; pass the module it was trained on"
        )

    reference = next(module.parameters())
    points = trajectory.points.to(device=reference.device, dtype=reference.dtype)
    fisher_segments: list[float] = []
    euclidean_segments: list[float] = []
    metric: FisherMetric | None = None
    for k in range(points.shape[0] - 1):
        if k % recompute_every == 0:
            metric = empirical_fisher(
                module,
                points[k],
                x,
                y,
                kind=kind,
                rank=rank,
                damping=damping,
                batch_size=batch_size,
                sampled=sampled,
                generator=generator,
            )
        assert metric is not None  # set at k = 0
        step = points[k + 1] - points[k]
        fisher_segments.append(metric.norm(step).item())
        euclidean_segments.append(torch.linalg.vector_norm(step).item())

    result = FisherLength(
        length=math.fsum(fisher_segments),
        euclidean_length=math.fsum(euclidean_segments),
        segment_lengths=tuple(fisher_segments),
        euclidean_segment_lengths=tuple(euclidean_segments),
        kind=kind,
        rank=None if metric is None else metric.rank,
        damping=damping,
        sampled=sampled,
        n_examples=int(x.shape[0]),
        recompute_every=recompute_every,
    )
    logger.debug(
        "Fisher length %.4g (Euclidean %.4g) over %d segments, kind %s",
        result.length,
        result.euclidean_length,
        len(fisher_segments),
        kind,
    )
    return result


def fisher_lengths_compare(
    module: nn.Module,
    trajectories: Mapping[str, Trajectory],
    x: torch.Tensor,
    y: torch.Tensor,
    kind: FisherKind = "diagonal",
    rank: int | None = None,
    damping: float = 0.0,
    recompute_every: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sampled: bool = False,
    generator: torch.Generator | None = None,
) -> dict[str, FisherLength]:
    """Measure named trajectories under one Fisher metric, for a side-by-side table.

    Every trajectory is measured with the same data and settings (see
    `fisher_length`), so the lengths are comparable. Trajectories with
    different endpoints are not competing paths between the same points, so
    a shorter length alone does not make one closer to a geodesic.

    Returns
    -------
    dict of str to FisherLength
        One entry per name, in the order of `trajectories`.
    """
    table: dict[str, FisherLength] = {}
    for name, trajectory in trajectories.items():
        table[name] = fisher_length(
            module,
            trajectory,
            x,
            y,
            kind=kind,
            rank=rank,
            damping=damping,
            recompute_every=recompute_every,
            batch_size=batch_size,
            sampled=sampled,
            generator=generator,
        )
        logger.info(
            "trajectory %s: Fisher length %.4g, Euclidean length %.4g",
            name,
            table[name].length,
            table[name].euclidean_length,
        )
    return table


def _check_damping(damping: float) -> float:
    if not (math.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping = {damping} must be a finite number >= 0")
    return float(damping)


def _check_finite(values: torch.Tensor) -> None:
    if not bool(torch.isfinite(values).all()):
        raise NonFiniteError(
            "per-example gradients are not finite at this parameter point; check"
            " the inputs for NaN or infinite values"
        )


def _params_on_module(
    module: nn.Module, params_vector: torch.Tensor
) -> tuple[ParamLayout, dict[str, torch.Tensor]]:
    layout = ParamLayout.of(module)
    if params_vector.ndim != 1 or params_vector.shape[0] != layout.size:
        raise ValueError(
            f"params_vector of shape {tuple(params_vector.shape)} does not match the"
            f" module's {layout.size} parameters; pass shape ({layout.size},)"
        )
    if not bool(torch.isfinite(params_vector).all()):
        raise NonFiniteError(
            "params_vector contains NaN or infinite entries, so the network has"
            " diverged; leave this point out of Fisher estimates"
        )
    reference = next(module.parameters())
    vector = params_vector.detach().to(device=reference.device, dtype=reference.dtype)
    return layout, layout.unflatten(vector)


def _check_batch(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if batch_size < 1:
        raise ValueError(f"batch_size = {batch_size} must be at least 1")
    if x.shape[0] == 0:
        raise ValueError("x has no examples; pass at least one")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y of shape {tuple(y.shape)} does not match {x.shape[0]} inputs; pass"
            f" one integer label per input, shape ({x.shape[0]},)"
        )
    return _inputs_for(module, x), y.to(next(module.parameters()).device)


def _inputs_for(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    reference = next(module.parameters())
    if x.is_floating_point():
        return x.to(device=reference.device, dtype=reference.dtype)
    return x.to(reference.device)


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
