"""Param: parameter points and optimization trajectories as a category.

Objects are parameter points of one architecture, stored as flat vectors
whose layout (`ParamLayout`) keeps the module's named tensors. Morphisms are
trajectories as Moore paths: a duration in optimizer steps with the
checkpoints recorded along it, the first at step 0 and the last at the
duration. Composition is concatenation and the identity on a point is the
path of duration zero, so the unit and associativity laws hold exactly, not
merely up to reparametrization.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import nn

from categories import Category, CompositionError


@dataclass(frozen=True)
class ParamLayout:
    """Names and shapes of a module's parameters, in `named_parameters` order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, module: nn.Module) -> ParamLayout:
        """Return the layout of a module's parameters."""
        named = list(module.named_parameters())
        return cls(
            names=tuple(name for name, _ in named),
            shapes=tuple(tuple(p.shape) for _, p in named),
        )

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of entries of each tensor."""
        return tuple(int(np.prod(shape)) for shape in self.shapes)

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return sum(self.sizes)

    def flatten(self, module: nn.Module) -> torch.Tensor:
        """Return a module's parameters as one detached flat vector."""
        params = dict(module.named_parameters())
        return torch.cat([params[name].detach().reshape(-1) for name in self.names])

    def unflatten(self, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split flat vectors into named tensors (views, no copy).

        `vectors` has shape (size,) or (batch, size); every returned tensor
        keeps the leading batch dimension when there is one.
        """
        if vectors.shape[-1] != self.size:
            raise ValueError(
                f"vector length {vectors.shape[-1]} does not match the layout's"
                f" {self.size} parameters"
            )
        batch = tuple(vectors.shape[:-1])
        pieces = torch.split(vectors, list(self.sizes), dim=-1)
        return {
            name: piece.reshape(*batch, *shape)
            for name, piece, shape in zip(self.names, pieces, self.shapes)
        }

    def load_into(self, module: nn.Module, vector: torch.Tensor) -> None:
        """Copy a flat vector into a module's parameters in place."""
        tensors = self.unflatten(vector)
        with torch.no_grad():
            for name, param in module.named_parameters():
                param.copy_(tensors[name].to(param.device, param.dtype))


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(str(array.dtype).encode())
        h.update(str(array.shape).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class ParamPoint:
    """A parameter point: a flat float vector (on the CPU)."""

    vector: torch.Tensor

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the vector's bytes; equal points have equal digests."""
        return _digest(self.vector.detach().cpu().numpy())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParamPoint):
            return NotImplemented
        return self.vector.shape == other.vector.shape and bool(
            torch.equal(self.vector, other.vector)
        )

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"ParamPoint(size={self.vector.numel()}, sha256={self.digest[:10]})"


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A Moore path in parameter space: checkpoints at increasing optimizer steps.

    ``steps[0]`` is 0 and ``steps[-1]`` is the duration; ``points[i]`` is the
    parameter vector at ``steps[i]``. A trajectory of duration zero has one
    checkpoint.
    """

    steps: tuple[int, ...]
    points: torch.Tensor

    def __post_init__(self) -> None:
        if not self.steps or self.steps[0] != 0:
            raise ValueError(
                f"a trajectory's steps must start at 0; got {self.steps[:3]}"
            )
        if any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"a trajectory's steps must increase; got {self.steps}")
        if self.points.ndim != 2 or self.points.shape[0] != len(self.steps):
            raise ValueError(
                f"points must have shape ({len(self.steps)}, size) for"
                f" {len(self.steps)} steps; got {tuple(self.points.shape)}"
            )

    @property
    def duration(self) -> int:
        """Length of the path in optimizer steps."""
        return self.steps[-1]

    @property
    def start(self) -> ParamPoint:
        """The point at step 0."""
        return ParamPoint(self.points[0])

    @property
    def end(self) -> ParamPoint:
        """The point at the last step."""
        return ParamPoint(self.points[-1])

    def segment(self, first: int, last: int) -> Trajectory:
        """Return the sub-path from checkpoint `first` to checkpoint `last`, rebased to 0."""
        if not 0 <= first <= last < len(self.steps):
            raise IndexError(
                f"segment({first}, {last}) is outside checkpoints 0..{len(self.steps) - 1}"
            )
        offset = self.steps[first]
        steps = tuple(s - offset for s in self.steps[first : last + 1])
        return Trajectory(steps, self.points[first : last + 1])

    def split(self, n_segments: int) -> list[Trajectory]:
        """Cut the path at checkpoints into `n_segments` consecutive segments."""
        n_checkpoints = len(self.steps)
        if not 1 <= n_segments <= max(n_checkpoints - 1, 1):
            raise ValueError(
                f"cannot cut {n_checkpoints} checkpoints into {n_segments} segments"
            )
        cuts = np.linspace(0, n_checkpoints - 1, n_segments + 1).round().astype(int)
        return [self.segment(int(a), int(b)) for a, b in itertools.pairwise(cuts)]

    @cached_property
    def digest(self) -> str:
        """SHA-256 of steps and points."""
        return _digest(np.asarray(self.steps), self.points.detach().cpu().numpy())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trajectory):
            return NotImplemented
        return self.steps == other.steps and bool(
            torch.equal(self.points, other.points)
        )

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return (
            f"Trajectory(duration={self.duration}, checkpoints={len(self.steps)},"
            f" sha256={self.digest[:10]})"
        )


class ParamCategory(Category[ParamPoint, Trajectory]):
    """The category Param of one architecture: points and trajectories.

    Composition p;q concatenates q after p, shifting q's steps by p's duration
    and sharing the junction checkpoint. It requires p's last point to equal
    q's first point exactly.
    """

    name = "Param"

    def __init__(self, layout: ParamLayout) -> None:
        self.layout = layout

    def dom(self, f: Trajectory) -> ParamPoint:
        """Return the trajectory's start."""
        return f.start

    def cod(self, f: Trajectory) -> ParamPoint:
        """Return the trajectory's end."""
        return f.end

    def identity(self, x: ParamPoint) -> Trajectory:
        """Return the path of duration zero at `x`."""
        return Trajectory((0,), x.vector.reshape(1, -1))

    def compose(self, f: Trajectory, g: Trajectory) -> Trajectory:
        """Return f;g, the concatenation of g after f."""
        if not self.composable(f, g):
            raise CompositionError(
                f"cannot compose {f!r} then {g!r}: the first ends at {f.end!r}"
                f" but the second starts at {g.start!r}"
            )
        steps = f.steps + tuple(s + f.duration for s in g.steps[1:])
        return Trajectory(steps, torch.cat([f.points, g.points[1:]]))

    def describe_difference(self, f: Trajectory, g: Trajectory) -> str:
        """Return how two trajectories differ: their steps or largest entry gap."""
        if f.steps != g.steps:
            return f"steps differ: {f.steps} vs {g.steps}"
        gap = (f.points - g.points).abs().max().item()
        return f"largest parameter difference {gap:.3g}"

    def objects_of(self, trajectories: Sequence[Trajectory]) -> list[ParamPoint]:
        """Return the start and end points of the given trajectories."""
        points: list[ParamPoint] = []
        for t in trajectories:
            points += [t.start, t.end]
        return points
