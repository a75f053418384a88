"""Training-loss landscapes on a random plane through a set of parameters.

The plane is spanned by two filter-normalized random directions, the method of
Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets" (NeurIPS). The
loss is evaluated on a square grid in that plane, many grid points per call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def _filter_normalized_direction(
    params: Mapping[str, torch.Tensor], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    direction: dict[str, torch.Tensor] = {}
    for name, parameter in params.items():
        if not parameter.is_floating_point():
            raise ValueError(
                f"parameter {name!r} has dtype {parameter.dtype}, but directions "
                "exist only for floating-point tensors; pass the trainable "
                "parameters, for example dict(model.named_parameters())"
            )
        if parameter.ndim <= 1:
            direction[name] = torch.zeros_like(parameter, requires_grad=False)
            continue

        # Drawn on the generator's device and then moved, so a CPU generator
        # gives the same directions for CPU and CUDA parameters.
        noise = torch.randn(
            parameter.shape,
            generator=generator,
            dtype=parameter.dtype,
            device=generator.device,
        ).to(parameter.device)
        filter_dims = tuple(range(1, parameter.ndim))
        noise_norms = torch.linalg.vector_norm(noise, dim=filter_dims, keepdim=True)
        parameter_norms = torch.linalg.vector_norm(
            parameter.detach(), dim=filter_dims, keepdim=True
        )
        # The clamp only matters for filters with no entries, whose norm is 0.
        scale = parameter_norms / noise_norms.clamp_min(torch.finfo(noise.dtype).tiny)
        direction[name] = noise * scale
    return direction


def random_plane(
    params: Mapping[str, torch.Tensor], generator: torch.Generator
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Draw two independent filter-normalized random directions.

    For each parameter with ``ndim >= 2``, a standard Gaussian tensor of its shape
    is drawn from ``generator``. Each filter of it, a slice along dim 0, is then
    rescaled to the Frobenius norm of the same slice of the parameter (Li et al.
    2018). A fully connected weight counts as a stack of 1x1 filters, one per
    output unit. Parameters with ``ndim <= 1`` (biases, normalization scales and
    shifts) get a zero direction, so the plane leaves them fixed. This matches
    the default ``ignore='biasbn'`` of the authors' ``net_plotter.py``
    (github.com/tomgoldstein/loss-landscape). A filter whose parameter slice is
    zero gets a zero direction.

    Parameters
    ----------
    params : mapping of str to torch.Tensor
        Floating-point parameters, for example ``dict(model.named_parameters())``.
    generator : torch.Generator
        Source of randomness. The first direction is drawn for all parameters,
        in the mapping's order, before the second. The same seed and the same
        parameter order give the same plane. The noise is drawn on the
        generator's device and moved to each parameter's device.

    Returns
    -------
    tuple of two dict of str to torch.Tensor
        Directions with the keys, shapes, dtypes and devices of ``params``. They do
        not require gradients.

    Raises
    ------
    ValueError
        If a parameter is not a floating-point tensor.
    """
    with torch.no_grad():
        first = _filter_normalized_direction(params, generator)
        second = _filter_normalized_direction(params, generator)
    return first, second


@dataclass(frozen=True, eq=False)
class LossSurface:
    """Loss values on a square grid in a plane through the parameters.

    The constructor copies the arrays and makes the copies read-only. Equality is
    identity.

    Attributes
    ----------
    coords : numpy.ndarray
        Grid coordinates along both directions, shape (resolution,).
    values : numpy.ndarray
        Float64 loss at each grid point, shape (resolution, resolution).
        ``values[i, j]`` is the loss at ``params + coords[i] * d1 + coords[j] * d2``.
        Non-finite values, from points where the loss overflowed, are kept.
    span : float
        Half-width of the grid. Coordinates run from -span to span.
    resolution : int
        Number of grid points along each direction.
    """

    coords: FloatArray
    values: FloatArray
    span: float
    resolution: int

    def __post_init__(self) -> None:
        coords = np.array(self.coords, dtype=np.float64)
        values = np.array(self.values, dtype=np.float64)
        expected = (self.resolution, self.resolution)
        if coords.shape != (self.resolution,):
            raise ValueError(
                f"coords has shape {coords.shape}, expected ({self.resolution},) "
                "for the given resolution"
            )
        if values.shape != expected:
            raise ValueError(
                f"values has shape {values.shape}, expected {expected} for the "
                "given resolution"
            )
        coords.setflags(write=False)
        values.setflags(write=False)
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "values", values)


def _check_grid(span: float, resolution: int, batch_size: int) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise TypeError(f"resolution must be an int, got {resolution!r}")
    if resolution < 2:
        raise ValueError(
            f"resolution must be >= 2 grid points per axis, got {resolution}; "
            "use an odd value such as 21 so that the grid contains its centre"
        )
    if not (math.isfinite(span) and span > 0):
        raise ValueError(
            f"span must be positive and finite, got {span}; it is the half-width "
            "of the grid in units of the direction vectors, for example 1.0"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _check_directions(
    params: Mapping[str, torch.Tensor],
    directions: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]],
) -> None:
    if len(params) == 0:
        raise ValueError("params is empty; pass at least one parameter tensor")
    if len(directions) != 2:
        raise ValueError(
            f"directions must contain exactly 2 mappings, got {len(directions)}; "
            "pass the pair that random_plane returns"
        )
    for index, direction in enumerate(directions):
        missing = sorted(set(params) - set(direction))
        extra = sorted(set(direction) - set(params))
        if missing or extra:
            raise ValueError(
                f"directions[{index}] keys differ from params: missing {missing}, "
                f"extra {extra}; build the directions from the same params"
            )
        for name, parameter in params.items():
            vector = direction[name]
            if not parameter.is_floating_point():
                raise ValueError(
                    f"parameter {name!r} has dtype {parameter.dtype}; only "
                    "floating-point parameters can be moved along a direction"
                )
            if vector.shape != parameter.shape:
                raise ValueError(
                    f"directions[{index}][{name!r}] has shape {tuple(vector.shape)}, "
                    f"but the parameter has shape {tuple(parameter.shape)}; build "
                    "the directions from the same params"
                )
            if vector.dtype != parameter.dtype or vector.device != parameter.device:
                raise ValueError(
                    f"directions[{index}][{name!r}] is {vector.dtype} on "
                    f"{vector.device}, but the parameter is {parameter.dtype} on "
                    f"{parameter.device}; move the direction with "
                    ".to(parameter.device, parameter.dtype)"
                )


def _symmetric_linspace(span: float, resolution: int) -> FloatArray:
    """Return ``linspace(-span, span, resolution)`` made exactly antisymmetric.

    Averaging with the reversed grid keeps the end points, moves the other
    points by at most a rounding error, and makes the centre of an odd grid
    exactly 0, so the centre point is exactly ``params``.
    """
    coords = np.linspace(-span, span, resolution, dtype=np.float64)
    return (coords - coords[::-1]) / 2


def _stack_points(
    params: Mapping[str, torch.Tensor],
    directions: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]],
    alphas: FloatArray,
    betas: FloatArray,
) -> dict[str, torch.Tensor]:
    """Return ``params + alpha * d1 + beta * d2`` stacked along a new leading dim."""
    first, second = directions
    stacked: dict[str, torch.Tensor] = {}
    for name, parameter in params.items():
        base = parameter.detach()
        # One coordinate per point, broadcast over the parameter's own dims. The
        # sum is computed in the parameter's dtype.
        view = (-1,) + (1,) * base.ndim
        alpha = torch.as_tensor(alphas, dtype=base.dtype, device=base.device)
        beta = torch.as_tensor(betas, dtype=base.dtype, device=base.device)
        stacked[name] = (
            base.unsqueeze(0)
            + alpha.reshape(view) * first[name].unsqueeze(0)
            + beta.reshape(view) * second[name].unsqueeze(0)
        )
    return stacked


def _losses_to_numpy(losses: object, batch: int) -> FloatArray:
    if not isinstance(losses, torch.Tensor):
        raise TypeError(
            f"loss_fn returned {type(losses).__name__}; it must return a "
            f"torch.Tensor of shape ({batch},), one loss per grid point"
        )
    if tuple(losses.shape) != (batch,):
        raise ValueError(
            f"loss_fn returned shape {tuple(losses.shape)} for a batch of {batch} "
            f"grid points; it must return shape ({batch},), so reduce over the "
            "data samples but not over the leading batch dimension"
        )
    result: FloatArray = losses.detach().to("cpu", torch.float64).numpy()
    return result


def loss_surface(
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    params: Mapping[str, torch.Tensor],
    directions: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]],
    span: float,
    resolution: int,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> LossSurface:
    """Evaluate the loss on a square grid in the plane of two directions.

    The grid coordinates are ``linspace(-span, span, resolution)`` on both axes,
    made exactly symmetric so that an odd grid has ``params`` itself at its
    centre. Grid point ``(i, j)`` is ``params + coords[i] * d1 + coords[j] * d2``,
    computed in each parameter's dtype. Points are visited in row-major order
    and passed to ``loss_fn`` in chunks of ``batch_size`` under
    ``torch.no_grad()``.

    Non-finite losses are stored as they are and logged as a warning, because a
    far-away point can overflow. ``sublevel_persistence`` rejects them, so the
    caller must decide what they mean.

    Parameters
    ----------
    loss_fn : callable
        Receives a dict with the keys of ``params`` in which each tensor has an
        extra leading dimension ``B``, one entry per grid point. It must return a
        tensor of shape ``(B,)``, the training loss at each point. ``B`` is at
        most ``batch_size`` and is smaller for the last chunk. A model can be
        evaluated at all ``B`` points with ``torch.func.vmap`` over
        ``torch.func.functional_call``.
    params : mapping of str to torch.Tensor
        Centre of the plane, for example a trained minimum. It is not modified.
    directions : tuple of two mappings of str to torch.Tensor
        Directions ``(d1, d2)`` with the keys, shapes, dtypes and devices of
        ``params``, for example from :func:`random_plane`.
    span : float
        Half-width of the grid, in units of the direction vectors.
    resolution : int
        Number of grid points per axis, at least 2.
    batch_size : int
        Maximum number of grid points per call of ``loss_fn``.
    progress : callable or None
        Called with ``(points_done, points_total)`` after each chunk.

    Returns
    -------
    LossSurface
        Grid coordinates and float64 loss values of shape
        ``(resolution, resolution)``.

    Raises
    ------
    ValueError
        If ``span`` is not positive and finite, ``resolution`` is below 2,
        ``batch_size`` is below 1, ``params`` is empty or not floating point, the
        directions do not match ``params``, or ``loss_fn`` returns the wrong
        shape.
    TypeError
        If ``resolution`` or ``batch_size`` is not an int, or ``loss_fn`` does not
        return a tensor.
    """
    _check_grid(span, resolution, batch_size)
    _check_directions(params, directions)

    coords = _symmetric_linspace(span, resolution)
    total = resolution * resolution
    values = np.empty(total, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            rows, cols = np.divmod(np.arange(start, stop), resolution)
            stacked = _stack_points(params, directions, coords[rows], coords[cols])
            values[start:stop] = _losses_to_numpy(loss_fn(stacked), stop - start)
            if progress is not None:
                progress(stop, total)

    nonfinite = int((~np.isfinite(values)).sum())
    if nonfinite > 0:
        logger.warning(
            "loss surface (span %g, resolution %d) has %d non-finite values of %d",
            span,
            resolution,
            nonfinite,
            total,
        )
    return LossSurface(
        coords=coords,
        values=values.reshape(resolution, resolution),
        span=float(span),
        resolution=resolution,
    )
