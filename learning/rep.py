"""Rep: representations on a fixed probe set, and paths of them, as a category.

An object is the function a network computes, restricted to a fixed probe
set: its penultimate features, a tensor of shape (n_probe, n_features), and
optionally its logits, (n_probe, n_classes). A morphism is a path of
representations: features (and logits) at increasing times (the optimizer
steps of the trajectory they came from), shape (n_times, n_probe, ...).
Composition is concatenation, as in Param.

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


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(torch.equal(a, b))


@dataclass(frozen=True, eq=False)
class Representation:
    """Penultimate features (n_probe, n_features) and logits of one network."""

    features: torch.Tensor
    logits: torch.Tensor | None = None

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the features' (and logits') bytes."""
        arrays = [self.features.detach().cpu().numpy()]
        if self.logits is not None:
            arrays.append(self.logits.detach().cpu().numpy())
        return _digest(*arrays)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Representation):
            return NotImplemented
        return _same(self.features, other.features) and _same(self.logits, other.logits)

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
    logits: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not self.times or self.times[0] != 0:
            raise ValueError(f"a path's times must start at 0; got {self.times[:3]}")
        if self.features.ndim != 3 or self.features.shape[0] != len(self.times):
            raise ValueError(
                f"features must have shape ({len(self.times)}, n_probe, n_features);"
                f" got {tuple(self.features.shape)}"
            )
        if self.logits is not None and (
            self.logits.ndim != 3 or self.logits.shape[:2] != self.features.shape[:2]
        ):
            raise ValueError(
                f"logits must have shape ({len(self.times)}, n_probe, n_classes)"
                f" matching the features; got {tuple(self.logits.shape)}"
            )

    def frame(self, index: int) -> Representation:
        """Return the representation at position `index` of the path."""
        logits = None if self.logits is None else self.logits[index]
        return Representation(self.features[index], logits)

    @property
    def start(self) -> Representation:
        """The representation at time 0."""
        return self.frame(0)

    @property
    def end(self) -> Representation:
        """The representation at the last time."""
        return self.frame(-1)

    @property
    def duration(self) -> int:
        """The last time."""
        return self.times[-1]

    @cached_property
    def digest(self) -> str:
        """SHA-256 of times, features and logits."""
        arrays = [np.asarray(self.times), self.features.detach().cpu().numpy()]
        if self.logits is not None:
            arrays.append(self.logits.detach().cpu().numpy())
        return _digest(*arrays)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RepPath):
            return NotImplemented
        return (
            self.times == other.times
            and _same(self.features, other.features)
            and _same(self.logits, other.logits)
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

    def _close(self, a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
        if a is None or b is None:
            return a is None and b is None
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
        logits = None if x.logits is None else x.logits.unsqueeze(0)
        return RepPath((0,), x.features.unsqueeze(0), logits)

    def compose(self, f: RepPath, g: RepPath) -> RepPath:
        """Return f;g; the junction keeps f's last frame."""
        if not self.composable(f, g):
            raise CompositionError(
                f"cannot compose {f!r} then {g!r}: the first ends at {f.end!r},"
                f" which is not within rtol={self.rtol}, atol={self.atol} of the"
                f" second's start {g.start!r}"
            )
        times = f.times + tuple(t + f.duration for t in g.times[1:])
        logits = None
        if f.logits is not None and g.logits is not None:
            logits = torch.cat([f.logits, g.logits[1:]])
        return RepPath(times, torch.cat([f.features, g.features[1:]]), logits)

    def equal_objects(self, x: Representation, y: Representation) -> bool:
        """Return whether features (and logits) agree within the tolerance."""
        return self._close(x.features, y.features) and self._close(x.logits, y.logits)

    def equal_morphisms(self, f: RepPath, g: RepPath) -> bool:
        """Return whether two paths have the same times and close features and logits."""
        return (
            f.times == g.times
            and self._close(f.features, g.features)
            and self._close(f.logits, g.logits)
        )

    def describe_difference(self, f: RepPath, g: RepPath) -> str:
        """Return how two paths differ: their times or largest feature gap."""
        if f.times != g.times:
            return f"times differ: {f.times} vs {g.times}"
        if f.features.shape != g.features.shape:
            shapes = f"{tuple(f.features.shape)} vs {tuple(g.features.shape)}"
            return f"feature shapes differ: {shapes}"
        gap = (
            (f.features - g.features).abs().max().item() if f.features.numel() else 0.0
        )
        text = f"largest feature difference {gap:.3g}"
        if (f.logits is None) != (g.logits is None):
            text += "; one path has logits and the other has none"
        elif (
            f.logits is not None
            and g.logits is not None
            and f.logits.shape == g.logits.shape
            and f.logits.numel()
        ):
            text += f", logit difference {(f.logits - g.logits).abs().max().item():.3g}"
        return f"{text} (atol={self.atol}, rtol={self.rtol})"
