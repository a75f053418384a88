"""Rep: representations on a fixed probe set, and paths of them, as a category.

An object is the function a network computes, restricted to a fixed probe
set: its penultimate features, a tensor of shape (n_probe, n_features). A
morphism is a path of representations: features at increasing times (the
optimizer steps of the trajectory they came from), shape
(n_times, n_probe, n_features). Composition is concatenation, as in Param.

Python's ``==`` on these values is exact and agrees with ``hash``. The
category's own equality, used by every law check, is coarser: two
representations are equal when ``torch.allclose(a, b, rtol, atol)`` holds,
which absorbs the floating-point differences between evaluating a network
alone and inside a batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from categories import Category, CompositionError

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(str(array.shape).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Representation:
    """Penultimate features of one network on the probe set, (n_probe, n_features)."""

    features: torch.Tensor

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the features' bytes."""
        return _digest(self.features.detach().cpu().numpy())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Representation):
            return NotImplemented
        return self.features.shape == other.features.shape and bool(
            torch.equal(self.features, other.features)
        )

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        shape = tuple(self.features.shape)
        return f"Representation(shape={shape}, sha256={self.digest[:10]})"


@dataclass(frozen=True, eq=False)
class RepPath:
    """Representations at increasing times; ``times[0]`` is 0."""

    times: tuple[int, ...]
    features: torch.Tensor

    def __post_init__(self) -> None:
        if not self.times or self.times[0] != 0:
            raise ValueError(f"a path's times must start at 0; got {self.times[:3]}")
        if self.features.ndim != 3 or self.features.shape[0] != len(self.times):
            raise ValueError(
                f"features must have shape ({len(self.times)}, n_probe, n_features);"
                f" got {tuple(self.features.shape)}"
            )

    @property
    def start(self) -> Representation:
        """The representation at time 0."""
        return Representation(self.features[0])

    @property
    def end(self) -> Representation:
        """The representation at the last time."""
        return Representation(self.features[-1])

    @property
    def duration(self) -> int:
        """The last time."""
        return self.times[-1]

    @cached_property
    def digest(self) -> str:
        """SHA-256 of times and features."""
        return _digest(np.asarray(self.times), self.features.detach().cpu().numpy())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RepPath):
            return NotImplemented
        return self.times == other.times and bool(
            torch.equal(self.features, other.features)
        )

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return (
            f"RepPath(duration={self.duration}, frames={len(self.times)},"
            f" sha256={self.digest[:10]})"
        )


class RepCategory(Category[Representation, RepPath]):
    """The category Rep, with equality up to ``torch.allclose(rtol, atol)``."""

    name = "Rep"

    def __init__(self, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> None:
        if rtol < 0 or atol < 0:
            raise ValueError(f"tolerances must be >= 0; got rtol={rtol}, atol={atol}")
        self.rtol = rtol
        self.atol = atol

    def _close(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        if a.shape != b.shape:
            return False
        return bool(torch.allclose(a, b, rtol=self.rtol, atol=self.atol))

    def dom(self, f: RepPath) -> Representation:
        """Return the path's first representation."""
        return f.start

    def cod(self, f: RepPath) -> Representation:
        """Return the path's last representation."""
        return f.end

    def identity(self, x: Representation) -> RepPath:
        """Return the path of duration zero at `x`."""
        return RepPath((0,), x.features.unsqueeze(0))

    def compose(self, f: RepPath, g: RepPath) -> RepPath:
        """Return f;g; the junction keeps f's last frame."""
        if not self.composable(f, g):
            raise CompositionError(
                f"cannot compose {f!r} then {g!r}: the first ends at {f.end!r},"
                f" which is not within rtol={self.rtol}, atol={self.atol} of the"
                f" second's start {g.start!r}"
            )
        times = f.times + tuple(t + f.duration for t in g.times[1:])
        return RepPath(times, torch.cat([f.features, g.features[1:]]))

    def equal_objects(self, x: Representation, y: Representation) -> bool:
        """Return whether two representations agree within the tolerance."""
        return self._close(x.features, y.features)

    def equal_morphisms(self, f: RepPath, g: RepPath) -> bool:
        """Return whether two paths have the same times and close features."""
        return f.times == g.times and self._close(f.features, g.features)

    def describe_difference(self, f: RepPath, g: RepPath) -> str:
        """Return how two paths differ: their times or largest feature gap."""
        if f.times != g.times:
            return f"times differ: {f.times} vs {g.times}"
        if f.features.shape != g.features.shape:
            shapes = f"{tuple(f.features.shape)} vs {tuple(g.features.shape)}"
            return f"feature shapes differ: {shapes}"
        gap = (f.features - g.features).abs().max().item()
        return (
            f"largest feature difference {gap:.3g} (atol={self.atol}, rtol={self.rtol})"
        )
