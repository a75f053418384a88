"""Homotopy classes of trained networks from loss barriers on straight lines.

For final networks a and b, with l the training loss, the barrier is

    B(a, b) = max over alpha in [0, 1] of
              l((1 - alpha) a + alpha b) - ((1 - alpha) l(a) + alpha l(b)),

evaluated on ``n_alpha`` evenly spaced alphas, ends included (so B >= 0).
Pairs with B <= tau are joined by an edge; the homotopy classes are the
connected components of that graph. Straight lines are one path family:
two networks joined by a low-loss curve but not by a low-loss line are put
in different classes here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch

from learning.evaluate import StackedEvaluator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BarrierMatrix:
    """Pairwise loss barriers, with where on the line each maximum lies.

    ``path_losses[i, j, k]`` is the training loss at ``alphas[k]`` on the
    line from network i to network j (only i < j is filled).
    """

    barriers: np.ndarray
    argmax_alpha: np.ndarray
    endpoint_losses: np.ndarray
    alphas: np.ndarray
    path_losses: np.ndarray


def loss_barriers(
    evaluator: StackedEvaluator,
    points: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    n_alpha: int,
    progress: Callable[[int, int], None] | None = None,
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
    """
    n = points.shape[0]
    alphas = np.linspace(0.0, 1.0, n_alpha)
    endpoint_losses, _ = evaluator.loss_and_accuracy(points, x, y)
    ends = endpoint_losses.double().numpy()
    barriers = np.zeros((n, n))
    argmax = np.zeros((n, n))
    path_losses = np.full((n, n, n_alpha), np.nan)

    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    inner = torch.tensor(alphas[1:-1], dtype=points.dtype).reshape(-1, 1)
    for done, (i, j) in enumerate(pairs, start=1):
        line = (1 - inner) * points[i] + inner * points[j]
        losses_inner, _ = evaluator.loss_and_accuracy(line, x, y)
        losses = np.concatenate([[ends[i]], losses_inner.double().numpy(), [ends[j]]])
        excess = losses - ((1 - alphas) * ends[i] + alphas * ends[j])
        k = int(np.nanargmax(excess)) if np.isfinite(excess).any() else 0
        value = float(excess[k]) if np.isfinite(excess).all() else float("inf")
        barriers[i, j] = barriers[j, i] = value
        argmax[i, j] = argmax[j, i] = alphas[k]
        path_losses[i, j] = losses
        if progress is not None:
            progress(done, len(pairs))

    return BarrierMatrix(barriers, argmax, ends, alphas, path_losses)


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
