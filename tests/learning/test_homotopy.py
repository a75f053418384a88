"""Loss barriers and homotopy classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from learning.evaluate import StackedEvaluator
from learning.homotopy import class_labels, homotopy_classes, loss_barriers
from learning.param import ParamLayout


def _data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x, y


def test_linear_model_has_zero_barrier() -> None:
    # Cross-entropy is convex in a linear model's weights, so the loss on a
    # line never exceeds the chord and the barrier is exactly 0.
    model = nn.Linear(6, 3)
    evaluator = StackedEvaluator(model, torch.device("cpu"))
    x, y = _data()
    points = torch.randn(
        4, evaluator.layout.size, generator=torch.Generator().manual_seed(1)
    )
    result = loss_barriers(evaluator, points, x, y, n_alpha=11)
    assert np.allclose(result.barriers, 0.0, atol=1e-9)


def test_permuted_copy_keeps_outputs_but_has_barrier() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = _data()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    layout = ParamLayout.of(model)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    permuted = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        permuted[0].weight.copy_(model[0].weight[perm])
        permuted[0].bias.copy_(model[0].bias[perm])
        permuted[2].weight.copy_(model[2].weight[:, perm])
        permuted[2].bias.copy_(model[2].bias)
    assert torch.allclose(model(x), permuted(x), atol=1e-6)

    evaluator = StackedEvaluator(model, torch.device("cpu"))
    points = torch.stack([layout.flatten(model), layout.flatten(permuted)])
    result = loss_barriers(evaluator, points, x, y, n_alpha=21)
    assert result.barriers[0, 1] > 0.01


def test_path_ends_equal_endpoint_losses() -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    evaluator = StackedEvaluator(model, torch.device("cpu"))
    x, y = _data()
    points = torch.randn(
        2, evaluator.layout.size, generator=torch.Generator().manual_seed(2)
    )
    result = loss_barriers(evaluator, points, x, y, n_alpha=5)
    direct, _ = evaluator.loss_and_accuracy(points, x, y)
    assert result.path_losses[0, 1, 0] == pytest.approx(direct[0].item(), abs=1e-6)
    assert result.path_losses[0, 1, -1] == pytest.approx(direct[1].item(), abs=1e-6)
    assert result.barriers[0, 1] >= 0


def test_classes_join_below_threshold() -> None:
    barriers = np.array([[0, 0.05, 2.0], [0.05, 0, 2.0], [2.0, 2.0, 0]])
    assert homotopy_classes(barriers, 0.1) == [[0, 1], [2]]


def test_classes_threshold_is_inclusive() -> None:
    barriers = np.array([[0, 0.1], [0.1, 0]])
    assert homotopy_classes(barriers, 0.1) == [[0, 1]]


def test_classes_are_transitive_closure() -> None:
    barriers = np.array([[0, 0.01, 5.0], [0.01, 0, 0.01], [5.0, 0.01, 0]])
    assert homotopy_classes(barriers, 0.1) == [[0, 1, 2]]


@given(
    st.integers(1, 8).flatmap(
        lambda n: st.lists(st.floats(0, 3), min_size=n * n, max_size=n * n).map(
            lambda v: np.array(v).reshape(n, n)
        )
    ),
    st.floats(0, 3),
)
def test_classes_partition_runs(matrix: np.ndarray, tau: float) -> None:
    barriers = (matrix + matrix.T) / 2
    classes = homotopy_classes(barriers, tau)
    members = sorted(m for c in classes for m in c)
    assert members == list(range(len(barriers)))
    labels = class_labels(classes, len(barriers))
    for i in range(len(barriers)):
        for j in range(len(barriers)):
            if barriers[i, j] <= tau:
                assert labels[i] == labels[j]


def test_labels_reject_uncovered_member() -> None:
    with pytest.raises(ValueError, match=r"members \[2\]"):
        class_labels([[0, 1]], 3)
