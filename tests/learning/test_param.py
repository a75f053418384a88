"""Param: layouts, trajectories as Moore paths, and the category laws on them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from categories import CompositionError, category_law_failures
from learning.param import ParamCategory, ParamLayout, ParamPoint, Trajectory

LAYOUT = ParamLayout(names=("w",), shapes=((3,),))
PARAM = ParamCategory(LAYOUT)


@st.composite
def trajectories(draw: st.DrawFn, start: torch.Tensor | None = None) -> Trajectory:
    n = draw(st.integers(1, 4))
    gaps = draw(st.lists(st.integers(1, 5), min_size=n - 1, max_size=n - 1))
    steps = [0]
    for gap in gaps:
        steps.append(steps[-1] + gap)
    values = draw(
        st.lists(
            st.floats(-5, 5, allow_nan=False, width=32), min_size=3 * n, max_size=3 * n
        )
    )
    points = torch.tensor(values, dtype=torch.float32).reshape(n, 3)
    if start is not None:
        points[0] = start
    return Trajectory(tuple(steps), points)


@st.composite
def composable_triples(draw: st.DrawFn) -> tuple[Trajectory, Trajectory, Trajectory]:
    f = draw(trajectories())
    g = draw(trajectories(start=f.points[-1]))
    h = draw(trajectories(start=g.points[-1]))
    return f, g, h


@given(composable_triples())
def test_param_laws_hold_exactly(
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
def test_composition_adds_durations(
    triple: tuple[Trajectory, Trajectory, Trajectory],
) -> None:
    f, g, _ = triple
    assert PARAM.compose(f, g).duration == f.duration + g.duration


class OffByOneParam(ParamCategory):
    """Known-bad: concatenation that shifts the second path one step too far."""

    def compose(self, f: Trajectory, g: Trajectory) -> Trajectory:
        steps = f.steps + tuple(s + f.duration + 1 for s in g.steps)
        return Trajectory(steps, torch.cat([f.points, g.points]))


def test_checker_rejects_off_by_one_concatenation() -> None:
    f = Trajectory((0, 2), torch.zeros(2, 3))
    g = Trajectory((0, 1), torch.zeros(2, 3))
    report = category_law_failures(OffByOneParam(LAYOUT), [f.start], [f, g])
    assert report.failures_of("identity.left")
    assert report.failures_of("identity.right")
    assert "steps differ" in report.failures_of("identity.left")[0].detail


def test_compose_rejects_mismatched_ends() -> None:
    f = Trajectory((0, 1), torch.zeros(2, 3))
    g = Trajectory((0, 1), torch.ones(2, 3))
    with pytest.raises(CompositionError, match="first ends at"):
        PARAM.compose(f, g)


def test_identity_has_duration_zero() -> None:
    unit = PARAM.identity(ParamPoint(torch.ones(3)))
    assert unit.duration == 0
    assert unit.steps == (0,)


def test_trajectory_rejects_steps_not_from_zero() -> None:
    with pytest.raises(ValueError, match="start at 0"):
        Trajectory((1, 2), torch.zeros(2, 3))


def test_trajectory_rejects_decreasing_steps() -> None:
    with pytest.raises(ValueError, match="increase"):
        Trajectory((0, 3, 3), torch.zeros(3, 3))


def test_trajectory_rejects_wrong_point_count() -> None:
    with pytest.raises(ValueError, match="shape"):
        Trajectory((0, 1), torch.zeros(3, 3))


def test_split_recomposes_to_whole() -> None:
    whole = Trajectory((0, 2, 5, 6, 9), torch.arange(15.0).reshape(5, 3))
    pieces = whole.split(3)
    assert len(pieces) == 3
    assert PARAM.compose_all(pieces) == whole


def test_segment_out_of_range_rejected() -> None:
    whole = Trajectory((0, 1), torch.zeros(2, 3))
    with pytest.raises(IndexError, match="outside"):
        whole.segment(0, 2)


def test_equal_points_hash_equal() -> None:
    a, b = ParamPoint(torch.tensor([1.0, 2.0])), ParamPoint(torch.tensor([1.0, 2.0]))
    assert a == b
    assert hash(a) == hash(b)
    assert {a: "x"}[b] == "x"


def test_layout_round_trip() -> None:
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    layout = ParamLayout.of(module)
    vector = layout.flatten(module)
    assert vector.shape == (3 * 4 + 4 + 4 * 2 + 2,)
    target = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    layout.load_into(target, vector)
    assert torch.equal(layout.flatten(target), vector)


def test_layout_unflatten_keeps_batch() -> None:
    module = nn.Linear(3, 2)
    layout = ParamLayout.of(module)
    tensors = layout.unflatten(torch.zeros(5, layout.size))
    assert tensors["weight"].shape == (5, 2, 3)
    assert tensors["bias"].shape == (5, 2)


def test_layout_rejects_wrong_length() -> None:
    layout = ParamLayout.of(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="does not match"):
        layout.unflatten(torch.zeros(7))
