"""Homotopy classes of trained networks from loss barriers on straight lines.

For final networks a and b, with l the training loss, the barrier is

    B(a, b) = max over alpha in [0, 1] of
              l((1 - alpha) a + alpha b) - ((1 - alpha) l(a) + alpha l(b)),

evaluated on ``n_alpha`` evenly spaced alphas, ends included (so B >= 0).
Pairs with B <= tau are joined by an edge; the homotopy classes are the
connected components of that graph. Straight lines are one path family:
two networks joined by a low-loss curve but not by a low-loss line are put
in different classes here.

For networks with BatchNorm a point on the line also needs running
statistics. By default (``bn_statistics="recompute"``) every interior point
gets the statistics of its own activations on the training inputs, from
`learning.evaluate.recompute_batchnorm_statistics`. The two ends keep the
statistics stored with the networks, so the path's ends give exactly the
endpoints' own loss and accuracy. Interpolating the stored statistics
(``"interpolate"``) normalizes an interior network with statistics that are
not its own and inflates the barrier.

NOTE: with recomputed statistics the path is not continuous at its ends.
Stored statistics are a moving average over training batches, so an
endpoint's loss can differ from the loss of the same network with
recomputed statistics, and the first interior point can lie below the
chord.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import networkx as nx
import numpy as np
import torch

from learning.evaluate import StackedEvaluator

logger = logging.getLogger(__name__)

BatchNormStatistics = Literal["recompute", "interpolate"]


@dataclass(frozen=True)
class BarrierMatrix:
    """Pairwise loss barriers, with where on the line each maximum lies.

    ``path_losses[i, j, k]`` and ``path_accuracies[i, j, k]`` are the
    training loss (nats) and accuracy (fraction) at ``alphas[k]`` on the line
    from network i to network j. Only i < j is filled and the rest is NaN.
    ``bn_statistics`` records how interior points got their BatchNorm
    statistics, or is None for networks without buffers.
    """

    barriers: np.ndarray
    argmax_alpha: np.ndarray
    endpoint_losses: np.ndarray
    alphas: np.ndarray
    path_losses: np.ndarray
    endpoint_accuracies: np.ndarray
    path_accuracies: np.ndarray
    bn_statistics: BatchNormStatistics | None


def loss_barriers(
    evaluator: StackedEvaluator,
    points: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    n_alpha: int,
    progress: Callable[[int, int], None] | None = None,
    *,
    buffers: torch.Tensor | None = None,
    bn_statistics: BatchNormStatistics = "recompute",
    bn_batches: int | None = None,
) -> BarrierMatrix:
    """Compute the loss barrier of every pair of networks on straight lines.

    Parameters
    ----------
    evaluator : StackedEvaluator
        The architecture, evaluated at many points at once.
    points : Tensor
        Final networks as flat vectors, shape (n, size).
    x, y : Tensor
        Training inputs and labels on which the loss is measured.
    n_alpha : int
        Points per line, both ends included.
    progress : callable, optional
        Called as ``progress(pairs_done, pairs_total)``.
    buffers : Tensor, optional
        The networks' stored buffers, shape (n, buffer_size); required when
        the architecture has floating-point buffers (BatchNorm statistics).
    bn_statistics : {"recompute", "interpolate"}
        How interior points get their buffers: BatchNorm statistics
        recomputed on `x` for each point (other floating-point buffers are
        interpolated), or all buffers interpolated like the parameters. The
        ends always keep the stored `buffers`. Unused without buffers.
    bn_batches : int, optional
        Mini-batches `x` is cut into for the recomputation; by default
        ceil(n / evaluator.example_chunk), so one batch is no larger than
        the evaluator's example chunk.

    Raises
    ------
    ValueError
        If the architecture has buffers and `buffers` is missing, or
        `bn_statistics` is not one of the two choices.
    """
    if n_alpha < 3:
        raise ValueError(
            f"n_alpha = {n_alpha} leaves no interior point on a line; pass 3 or more"
            " (the ends are included)"
        )
    if bn_statistics not in ("recompute", "interpolate"):
        raise ValueError(
            f"bn_statistics = {bn_statistics!r} is not supported; use 'recompute'"
            " or 'interpolate'"
        )
    has_buffers = evaluator.layout.buffer_size > 0
    if has_buffers and buffers is None:
        raise ValueError(
            f"the architecture has buffers {list(evaluator.layout.buffer_names)[:3]}"
            " (BatchNorm statistics); pass each network's stored buffers as"
            " buffers=, shape (n, buffer_size)"
        )
    if not has_buffers:
        buffers = None
    if bn_batches is None:
        bn_batches = max(1, math.ceil(x.shape[0] / evaluator.example_chunk))

    n = points.shape[0]
    alphas = np.linspace(0.0, 1.0, n_alpha)
    endpoint_losses, endpoint_accuracies = evaluator.loss_and_accuracy(
        points, x, y, buffers
    )
    ends = endpoint_losses.double().numpy()
    end_accuracies = endpoint_accuracies.double().numpy()
    barriers = np.zeros((n, n))
    argmax = np.zeros((n, n))
    path_losses = np.full((n, n, n_alpha), np.nan)
    path_accuracies = np.full((n, n, n_alpha), np.nan)

    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    inner = torch.tensor(alphas[1:-1], dtype=points.dtype).reshape(-1, 1)
    for done, (i, j) in enumerate(pairs, start=1):
        line = (1 - inner) * points[i] + inner * points[j]
        line_buffers = None
        if buffers is not None:
            weights = inner.to(buffers.dtype)
            line_buffers = (1 - weights) * buffers[i] + weights * buffers[j]
            if bn_statistics == "recompute":
                line_buffers = evaluator.recompute_buffers(
                    line, x, bn_batches, line_buffers
                )
        losses_inner, accuracies_inner = evaluator.loss_and_accuracy(
            line, x, y, line_buffers
        )
        # The ends are the endpoint networks' own values, not re-evaluated,
        # so that a path's ends equal its endpoints exactly.
        losses = np.concatenate([[ends[i]], losses_inner.double().numpy(), [ends[j]]])
        path_accuracies[i, j] = np.concatenate(
            [
                [end_accuracies[i]],
                accuracies_inner.double().numpy(),
                [end_accuracies[j]],
            ]
        )
        excess = losses - ((1 - alphas) * ends[i] + alphas * ends[j])
        k = int(np.nanargmax(excess)) if np.isfinite(excess).any() else 0
        value = float(excess[k]) if np.isfinite(excess).all() else float("inf")
        barriers[i, j] = barriers[j, i] = value
        argmax[i, j] = argmax[j, i] = alphas[k]
        path_losses[i, j] = losses
        if progress is not None:
            progress(done, len(pairs))

    return BarrierMatrix(
        barriers,
        argmax,
        ends,
        alphas,
        path_losses,
        end_accuracies,
        path_accuracies,
        bn_statistics if has_buffers else None,
    )


def homotopy_classes(barriers: np.ndarray, tau: float) -> list[list[int]]:
    """Return the connected components of the graph joining pairs with barrier <= tau.

    Classes are sorted by size (largest first), then by their smallest member;
    each class lists its members in increasing order.
    """
    n = barriers.shape[0]
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    for i in range(n):
        for j in range(i + 1, n):
            if barriers[i, j] <= tau:
                graph.add_edge(i, j)
    classes = [sorted(component) for component in nx.connected_components(graph)]
    return sorted(classes, key=lambda c: (-len(c), c[0]))


def class_labels(classes: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """Return an array giving each of n members the index of its class."""
    labels = np.full(n, -1, dtype=int)
    for label, members in enumerate(classes):
        labels[list(members)] = label
    if (labels < 0).any():
        raise ValueError(
            f"classes do not cover members {np.flatnonzero(labels < 0).tolist()}"
        )
    return labels
