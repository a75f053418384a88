"""Param: parameter points and optimization trajectories as a category.

Objects are parameter points of one architecture, stored as flat vectors
whose layout (`ParamLayout`) keeps the module's named tensors. A network
with floating-point buffers (BatchNorm's running mean and variance) carries
them as a second flat vector beside the parameters, because they change its
outputs in eval mode and so are part of the network. Morphisms are
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
    """Names and shapes of a module's parameters and floating-point buffers.

    Parameters are in `named_parameters` order and buffers in `named_buffers`
    order. Only floating-point buffers are kept (BatchNorm's
    ``running_mean`` and ``running_var``). Integer buffers such as
    BatchNorm's ``num_batches_tracked`` are left out: they are counters, not
    coordinates of the network, and a flat float vector cannot hold them
    exactly. In eval mode the counter has no effect on the outputs.
    A layout built without buffers (the default) describes parameters only.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    buffer_names: tuple[str, ...] = ()
    buffer_shapes: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def of(cls, module: nn.Module) -> ParamLayout:
        """Return the layout of a module's parameters and floating-point buffers."""
        named = list(module.named_parameters())
        buffers = [(n, b) for n, b in module.named_buffers() if b.is_floating_point()]
        return cls(
            names=tuple(name for name, _ in named),
            shapes=tuple(tuple(p.shape) for _, p in named),
            buffer_names=tuple(name for name, _ in buffers),
            buffer_shapes=tuple(tuple(b.shape) for _, b in buffers),
        )

    @cached_property
    def sizes(self) -> tuple[int, ...]:
        """Number of entries of each tensor."""
        # Cached: flat vectors are split at every optimizer step.
        return tuple(int(np.prod(shape)) for shape in self.shapes)

    @cached_property
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

    @cached_property
    def buffer_sizes(self) -> tuple[int, ...]:
        """Number of entries of each floating-point buffer."""
        return tuple(int(np.prod(shape)) for shape in self.buffer_shapes)

    @cached_property
    def buffer_size(self) -> int:
        """Length of the flat buffer vector (0 for a module without buffers)."""
        return sum(self.buffer_sizes)

    def flatten_buffers(self, module: nn.Module) -> torch.Tensor:
        """Return a module's floating-point buffers as one detached flat vector.

        A layout without buffers gives an empty vector.
        """
        buffers = dict(module.named_buffers())
        if not self.buffer_names:
            return torch.zeros(0)
        return torch.cat(
            [buffers[name].detach().reshape(-1) for name in self.buffer_names]
        )

    def unflatten_buffers(self, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split flat buffer vectors into named tensors (views, no copy).

        `vectors` has shape (buffer_size,) or (batch, buffer_size); every
        returned tensor keeps the leading batch dimension when there is one.
        """
        if vectors.shape[-1] != self.buffer_size:
            raise ValueError(
                f"buffer vector length {vectors.shape[-1]} does not match the"
                f" layout's {self.buffer_size} buffer entries"
            )
        batch = tuple(vectors.shape[:-1])
        pieces = torch.split(vectors, list(self.buffer_sizes), dim=-1)
        return {
            name: piece.reshape(*batch, *shape)
            for name, piece, shape in zip(self.buffer_names, pieces, self.buffer_shapes)
        }

    def load_buffers_into(self, module: nn.Module, vector: torch.Tensor) -> None:
        """Copy a flat buffer vector into a module's floating-point buffers in place."""
        tensors = self.unflatten_buffers(vector)
        with torch.no_grad():
            for name, buffer in module.named_buffers():
                if name in tensors:
                    buffer.copy_(tensors[name].to(buffer.device, buffer.dtype))


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(str(array.dtype).encode())
        h.update(str(array.shape).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Return whether two optional tensors are both None or equal in shape and value."""
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(torch.equal(a, b))


@dataclass(frozen=True, eq=False)
class ParamPoint:
    """A parameter point: a flat float vector and its buffers (on the CPU).

    ``buffers`` is the flat vector of the network's floating-point buffers
    in `ParamLayout` order (BatchNorm's running statistics), or None for a
    network without them. Two points are equal only when both parts are.
    """

    vector: torch.Tensor
    buffers: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.buffers is not None and self.buffers.ndim != 1:
            raise ValueError(
                f"a point's buffers must be a flat vector; got shape"
                f" {tuple(self.buffers.shape)}"
            )

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the vector's and the buffers' bytes; equal points hash equal.

        A point without buffers hashes its vector alone, as points did before
        buffers were kept.
        """
        if self.buffers is None:
            return _digest(self.vector.detach().cpu().numpy())
        return _digest(
            self.vector.detach().cpu().numpy(), self.buffers.detach().cpu().numpy()
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParamPoint):
            return NotImplemented
        return _same(self.vector, other.vector) and _same(self.buffers, other.buffers)

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        buffers = "" if self.buffers is None else f", buffers={self.buffers.numel()}"
        return (
            f"ParamPoint(size={self.vector.numel()}{buffers},"
            f" sha256={self.digest[:10]})"
        )


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A Moore path in parameter space: checkpoints at increasing optimizer steps.

    ``steps[0]`` is 0 and ``steps[-1]`` is the duration. ``points[i]`` is the
    parameter vector at ``steps[i]`` and ``buffers[i]`` the flat buffer
    vector recorded with it. ``buffers`` is None for a network without
    buffers. A trajectory of duration zero has one checkpoint.
    """

    steps: tuple[int, ...]
    points: torch.Tensor
    buffers: torch.Tensor | None = None

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
        if self.buffers is not None and (
            self.buffers.ndim != 2 or self.buffers.shape[0] != len(self.steps)
        ):
            raise ValueError(
                f"buffers must have shape ({len(self.steps)}, buffer_size) for"
                f" {len(self.steps)} steps; got {tuple(self.buffers.shape)}"
            )

    @property
    def duration(self) -> int:
        """Length of the path in optimizer steps."""
        return self.steps[-1]

    @property
    def start(self) -> ParamPoint:
        """The point at step 0."""
        return self.point(0)

    @property
    def end(self) -> ParamPoint:
        """The point at the last step."""
        return self.point(-1)

    def point(self, index: int) -> ParamPoint:
        """Return the point, with its buffers, at checkpoint `index`."""
        buffers = None if self.buffers is None else self.buffers[index]
        return ParamPoint(self.points[index], buffers)

    def segment(self, first: int, last: int) -> Trajectory:
        """Return the sub-path from checkpoint `first` to checkpoint `last`, rebased to 0."""
        if not 0 <= first <= last < len(self.steps):
            raise IndexError(
                f"segment({first}, {last}) is outside checkpoints 0..{len(self.steps) - 1}"
            )
        offset = self.steps[first]
        steps = tuple(s - offset for s in self.steps[first : last + 1])
        buffers = None if self.buffers is None else self.buffers[first : last + 1]
        return Trajectory(steps, self.points[first : last + 1], buffers)

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
        """SHA-256 of steps, points and buffers (when there are buffers)."""
        arrays = [np.asarray(self.steps), self.points.detach().cpu().numpy()]
        if self.buffers is not None:
            arrays.append(self.buffers.detach().cpu().numpy())
        return _digest(*arrays)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trajectory):
            return NotImplemented
        return (
            self.steps == other.steps
            and _same(self.points, other.points)
            and _same(self.buffers, other.buffers)
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
    q's first point exactly, buffers included, so a trajectory with buffers
    never composes with one without.
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
        buffers = None if x.buffers is None else x.buffers.reshape(1, -1)
        return Trajectory((0,), x.vector.reshape(1, -1), buffers)

    def compose(self, f: Trajectory, g: Trajectory) -> Trajectory:
        """Return f;g, the concatenation of g after f."""
        if not self.composable(f, g):
            raise CompositionError(
                f"cannot compose {f!r} then {g!r}: the first ends at {f.end!r}"
                f" but the second starts at {g.start!r}"
            )
        steps = f.steps + tuple(s + f.duration for s in g.steps[1:])
        buffers = None
        if f.buffers is not None and g.buffers is not None:
            buffers = torch.cat([f.buffers, g.buffers[1:]])
        return Trajectory(steps, torch.cat([f.points, g.points[1:]]), buffers)

    def describe_difference(self, f: Trajectory, g: Trajectory) -> str:
        """Return how two trajectories differ: steps, buffers or largest entry gap."""
        if f.steps != g.steps:
            return f"steps differ: {f.steps} vs {g.steps}"
        if (f.buffers is None) != (g.buffers is None):
            return "one trajectory has buffers and the other has none"
        gap = (f.points - g.points).abs().max().item()
        text = f"largest parameter difference {gap:.3g}"
        if f.buffers is not None and g.buffers is not None and f.buffers.numel():
            buffer_gap = (f.buffers - g.buffers).abs().max().item()
            text += f", largest buffer difference {buffer_gap:.3g}"
        return text

    def objects_of(self, trajectories: Sequence[Trajectory]) -> list[ParamPoint]:
        """Return the start and end points of the given trajectories."""
        points: list[ParamPoint] = []
        for t in trajectories:
            points += [t.start, t.end]
        return points
