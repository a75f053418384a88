"""Forward passes of many networks of one architecture, as batched matrix products.

`torch.func.vmap` over `functional_call` evaluates R networks at once for
any module. On the CPU, though, it turns their convolutions into one grouped
convolution, and that kernel's backward pass is slow. Training 32 runs of
the MNIST-1D CNN that way was only about twice as fast as training them one
by one (benchmarks/bench_ensemble.py, 2-core CPU).
This module evaluates the layers the library's models are made of with a
leading run dimension directly. A linear map is one batched matrix product
over the runs (`torch.baddbmm`). A convolution gathers its input windows
(im2col, by strided slicing, whose backward pass is cheap) and is then a
batched matrix product too. Activations between convolutions are kept
channels-last, so that the gathered windows need no extra copy.

`stacked_forward_fn` returns None for a module it does not cover, and
callers then fall back to vmap. Covered: `nn.Sequential` and
`FeatureClassifier` made of `nn.Linear`, `nn.Conv1d`, `nn.Conv2d` (groups
1, dilation 1, zero padding), `nn.ReLU`, `nn.Identity`, `nn.Flatten` and
`nn.Unflatten` over the example dimensions. These exact classes only, without
hooks: a subclass may override ``forward``, and a hook may change what a
layer returns, so either falls back to vmap, which calls them. BatchNorm is not covered: its
running statistics are buffers that the vectorized training refuses anyway.

The results equal vmap's up to float rounding, since the products sum in
another order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import nn

from learning.models import FeatureClassifier

StackedParams = dict[str, torch.Tensor]
"""Parameters by name, each with a leading run dimension of size R."""

_Layer = Callable[[StackedParams, "_Activation"], "_Activation"]


class _Activation:
    """A batch of activations of R networks, shape (R, B, ...).

    With ``channels_last`` the example dimensions are (spatial..., C), where
    the module itself would hold (C, spatial...).
    """

    __slots__ = ("channels_last", "tensor")

    def __init__(self, tensor: torch.Tensor, channels_last: bool) -> None:
        self.tensor = tensor
        self.channels_last = channels_last

    def module_layout(self) -> torch.Tensor:
        """Return the tensor in the module's own (C, spatial...) layout."""
        if not self.channels_last:
            return self.tensor
        dims = self.tensor.dim()
        order = (0, 1, dims - 1, *range(2, dims - 1))
        return self.tensor.permute(order)


def stacked_forward_fn(
    module: nn.Module,
) -> Callable[[StackedParams, torch.Tensor], torch.Tensor] | None:
    """Return a function (params, x) -> outputs for R copies of `module`.

    The returned function takes two arguments. The first is the parameters,
    a dict from the names of ``module.named_parameters()`` to tensors with a
    leading run dimension R; the second is inputs of shape (R, B, ...). It
    returns outputs of shape (R, B, ...), whose row r is
    ``functional_call(module, params[r], x[r])``.

    Returns None when `module` contains a layer or setting this module does
    not cover (see the module notes), or a subclass of a covered layer, which
    may compute something else. It also returns None for a module with hooks,
    buffers, a forward set on an instance, or one module object used at two
    places, and while a global module hook is registered.
    """
    if any(True for _ in module.buffers()) or global_hooks_registered():
        return None
    shared = sum(1 for _ in module.named_parameters(remove_duplicate=False))
    if shared != sum(1 for _ in module.parameters()):
        return None  # a tensor shared between two layers (tied weights)
    seen: set[int] = set()
    for _, child in module.named_modules(remove_duplicate=False):
        # A module used twice (tied layers, or one ReLU object at two places)
        # is listed once by named_children; vmap's functional_call handles it.
        if id(child) in seen:
            return None
        seen.add(id(child))
    layers = _compile(module, "")
    if layers is None:
        return None

    def forward(params: StackedParams, x: torch.Tensor) -> torch.Tensor:
        activation = _Activation(x, channels_last=False)
        for layer in layers:
            activation = layer(params, activation)
        return activation.module_layout()

    return forward


def global_hooks_registered() -> bool:
    """Return whether any global module hook is registered.

    ``torch.nn.modules.module.register_module_forward_hook`` and its kin
    act on every module call, which the batched products do not make.
    """
    registries = (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    )
    return any(
        len(getattr(torch.nn.modules.module, name, {})) > 0 for name in registries
    )


def _has_hooks(module: nn.Module) -> bool:
    registries = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
    )
    return any(len(getattr(module, name, {})) > 0 for name in registries)


_COVERED = (
    nn.Sequential,
    FeatureClassifier,
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.ReLU,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
)
"""Module classes evaluated here. Only these exact classes are: a subclass
may override ``forward``, and a parametrized module is such a subclass."""


def _compile(module: nn.Module, prefix: str) -> list[_Layer] | None:
    """Return the layers of `module` in order, or None if one is not covered."""
    if (
        type(module) not in _COVERED
        or _has_hooks(module)
        or {"forward", "_call_impl"} & set(vars(module))  # set on the instance
    ):
        return None
    if type(module) is nn.Sequential:
        children: list[tuple[str, nn.Module]] = list(module.named_children())
    elif type(module) is FeatureClassifier:
        children = [("features", module.features), ("head", module.head)]
    else:
        layer = _leaf(module, prefix)
        return None if layer is None else [layer]
    layers: list[_Layer] = []
    for name, child in children:
        compiled = _compile(child, f"{prefix}{name}.")
        if compiled is None:
            return None
        layers += compiled
    return layers


def _leaf(module: nn.Module, prefix: str) -> _Layer | None:
    if isinstance(module, nn.Linear):
        return _linear(prefix, module.bias is not None)
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return _convolution(module, prefix)
    if isinstance(module, nn.ReLU):
        return _relu
    if isinstance(module, nn.Identity):
        return _identity
    if isinstance(module, nn.Flatten):
        return _flatten(module)
    if isinstance(module, nn.Unflatten):
        return _unflatten(module)
    return None


def _identity(params: StackedParams, a: _Activation) -> _Activation:
    return a


def _relu(params: StackedParams, a: _Activation) -> _Activation:
    return _Activation(torch.relu(a.tensor), a.channels_last)


def _linear(prefix: str, has_bias: bool) -> _Layer:
    weight_name, bias_name = f"{prefix}weight", f"{prefix}bias"

    def apply(params: StackedParams, a: _Activation) -> _Activation:
        x = a.module_layout()
        runs, batch = x.shape[:2]
        flat = x.reshape(runs, -1, x.shape[-1])
        weight = params[weight_name].transpose(1, 2)
        if has_bias:
            out = torch.baddbmm(params[bias_name].unsqueeze(1), flat, weight)
        else:
            out = torch.bmm(flat, weight)
        return _Activation(out.reshape(runs, batch, *x.shape[2:-1], -1), False)

    return apply


def _convolution(module: nn.Conv1d | nn.Conv2d, prefix: str) -> _Layer | None:
    """Return an im2col convolution, or None for settings it does not cover."""
    spatial = len(module.kernel_size)
    if (
        module.groups != 1
        or any(d != 1 for d in module.dilation)
        or module.padding_mode != "zeros"
        or isinstance(module.padding, str)
    ):
        return None
    kernel = tuple(module.kernel_size)
    stride = tuple(module.stride)
    padding = tuple(int(p) for p in module.padding)
    weight_name, bias_name = f"{prefix}weight", f"{prefix}bias"
    has_bias = module.bias is not None

    if kernel == (3,) and stride == (2,) and padding == (1,):
        return _halving_convolution(weight_name, bias_name if has_bias else None)

    def apply(params: StackedParams, a: _Activation) -> _Activation:
        # Channels-last input (R, B, *spatial, C).
        x = a.tensor if a.channels_last else a.tensor.movedim(2, -1)
        runs, batch = x.shape[:2]
        # (R, B * prod(outs), C_in * taps), plus a column of ones for the bias
        patches = _im2col(x, kernel, stride, padding, has_bias)
        outs = _output_sizes(x.shape[2:-1], kernel, stride, padding)
        # weight (R, C_out, C_in, *kernel) -> (R, C_in * taps, C_out), matching
        weight = params[weight_name]
        c_out = weight.shape[1]
        order = (0, *range(2, 3 + spatial), 1)
        matrix = weight.permute(order).reshape(runs, -1, c_out)
        if has_bias:
            # The bias is the last row, multiplied by the column of ones. This
            # spares the pass that baddbmm makes to copy it into the output,
            # and the product's backward gives its gradient without a sum.
            matrix = torch.cat([matrix, params[bias_name].unsqueeze(1)], dim=1)
        out = torch.bmm(patches, matrix)
        return _Activation(out.reshape(runs, batch, *outs, c_out), True)

    return apply


def _halving_convolution(weight_name: str, bias_name: str | None) -> _Layer:
    """Return a 1-D convolution with kernel 3, stride 2 and padding 1.

    Output o reads inputs 2o - 1, 2o and 2o + 1. Viewing the channels-last
    input (R, B, L, C) as (R, B, L / 2, 2C) puts inputs 2o and 2o + 1 in one
    row, without a copy. Take one batched product with the (2C, 2C_out)
    matrix [[W1, 0], [W2, W0]]. Its row o contains W1 x(2o) + W2 x(2o + 1) in
    the first half and W0 x(2o + 1) in the second. Output o is then the first
    half of row o plus the second half of row o - 1. This reads the input once, where gathering windows would copy
    it one and a half times, and the backward pass needs no scattered sum.
    """

    def apply(params: StackedParams, a: _Activation) -> _Activation:
        x = a.tensor if a.channels_last else a.tensor.movedim(2, -1)
        runs, batch, length, channels = x.shape
        if length % 2:
            x = nn.functional.pad(x, (0, 0, 0, 1))
            length += 1
        pairs = x.reshape(runs, -1, 2 * channels)
        weight = params[weight_name]  # (R, C_out, C_in, 3)
        taps = weight.permute(0, 3, 2, 1)  # (R, 3, C_in, C_out)
        zeros = torch.zeros_like(taps[:, 0])
        matrix = torch.cat(
            [
                torch.cat([taps[:, 1], zeros], dim=2),
                torch.cat([taps[:, 2], taps[:, 0]], dim=2),
            ],
            dim=1,
        )
        rows = torch.bmm(pairs, matrix).reshape(runs, batch, length // 2, -1)
        bias = None if bias_name is None else params[bias_name]
        return _Activation(_shifted_sum(rows, bias), True)

    return apply


def _shifted_sum(rows: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out: torch.Tensor = _ShiftedSum.apply(rows, bias)  # type: ignore[no-untyped-call]
    return out


def _im2col(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    ones: bool,
) -> torch.Tensor:
    patches: torch.Tensor = _Im2Col.apply(  # type: ignore[no-untyped-call]
        x, kernel, stride, padding, ones
    )
    return patches


def _output_sizes(
    sizes: tuple[int, ...] | torch.Size,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
) -> tuple[int, ...]:
    """Return a convolution's output sizes along its spatial dimensions."""
    return tuple(
        (n + 2 * p - k) // s + 1
        for n, k, s, p in zip(sizes, kernel, stride, padding, strict=True)
    )


class _ShiftedSum(torch.autograd.Function):
    """Row o's first half plus row o - 1's second half, along dimension 2.

    Rows have shape (R, B, n, 2C). The optional bias, shape (R, C), is added
    in the same pass that copies the first halves.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        rows: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        half = rows.shape[-1] // 2
        if bias is None:
            out = rows[..., :half].clone()
        else:
            out = rows[..., :half] + bias[:, None, None, :]
        out[:, :, 1:] += rows[:, :, :-1, half:]
        ctx.has_bias = bias is not None  # type: ignore[attr-defined]
        return out

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        half = grad.shape[-1]
        rows = grad.new_empty((*grad.shape[:-1], 2 * half))
        rows[..., :half] = grad
        rows[:, :, :-1, half:] = grad[:, :, 1:]
        rows[:, :, -1, half:] = 0
        bias_grad = grad.sum(dim=(1, 2)) if ctx.has_bias else None  # type: ignore[attr-defined]
        return rows, bias_grad


class _Im2Col(torch.autograd.Function):
    """Gather convolution windows from channels-last inputs, with a fast backward.

    Forward: x of shape (R, B, *spatial, C) to a matrix of shape
    (R, B * prod(outs), C * taps), plus one column of ones with ``ones``. Its
    entry at output position o and column (c, j) is the zero-padded input at
    position o * stride + j, channel c. Backward: the gradient of x
    is the sum, over kernel taps, of the patches' gradient at that tap,
    accumulated by strided in-place additions, one per tap. Torch's own
    backward of `Tensor.unfold` computes the same sum but took three times
    as long as the matrix products of the MNIST-1D CNN's convolutions.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        ones: bool,
    ) -> torch.Tensor:
        padded = _pad(x, padding)
        # Each unfold appends a window dimension: (R, B, *outs, C, *kernel).
        for dim, (k, s) in enumerate(zip(kernel, stride, strict=True), start=2):
            padded = padded.unfold(dim, k, s)
        ctx.geometry = (tuple(x.shape), kernel, stride, padding)  # type: ignore[attr-defined]
        runs, batch = x.shape[:2]
        width = x.shape[-1] * math.prod(kernel)
        rows = batch * math.prod(padded.shape[2 : 2 + len(kernel)])
        matrix = x.new_empty((runs, rows, width + int(ones)))
        matrix[..., :width].view(padded.shape).copy_(padded)
        if ones:
            matrix[..., width] = 1
        return matrix

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None]:
        shape, kernel, stride, padding = ctx.geometry  # type: ignore[attr-defined]
        spatial = len(kernel)
        outs = _output_sizes(shape[2:-1], kernel, stride, padding)
        width = shape[-1] * math.prod(kernel)
        grad = grad[..., :width].reshape(*shape[:2], *outs, shape[-1], *kernel)
        padded_shape = [
            *shape[:2],
            *(n + 2 * p for n, p in zip(shape[2:-1], padding, strict=True)),
            shape[-1],
        ]
        total = grad.new_zeros(padded_shape)
        # Taps in row-major order, the order of the flattened kernel dimensions.
        by_tap = grad.flatten(-spatial)
        taps = itertools.product(*(range(k) for k in kernel))
        for t, tap in enumerate(taps):
            index: list[slice] = [slice(None), slice(None)]
            for j, out, s in zip(tap, outs, stride, strict=True):
                index.append(slice(j, j + s * (out - 1) + 1, s))
            total[tuple(index)] += by_tap[..., t]
        interior = [slice(None), slice(None)]
        interior += [slice(p, p + n) for n, p in zip(shape[2:-1], padding, strict=True)]
        return total[tuple(interior)], None, None, None, None


def _pad(x: torch.Tensor, padding: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad the spatial dimensions of channels-last x (R, B, *spatial, C)."""
    if not any(padding):
        return x
    pad: list[int] = [0, 0]  # the channel dimension, last
    for p in reversed(padding):
        pad += [p, p]
    return nn.functional.pad(x, pad)


def _flatten(module: nn.Flatten) -> _Layer | None:
    if module.start_dim != 1 or module.end_dim != -1:
        return None

    def apply(params: StackedParams, a: _Activation) -> _Activation:
        x = a.module_layout()
        return _Activation(x.reshape(*x.shape[:2], -1), False)

    return apply


def _unflatten(module: nn.Unflatten) -> _Layer | None:
    if module.dim != 1 or not isinstance(module.unflattened_size, tuple | list):
        return None
    shape = tuple(int(s) for s in module.unflattened_size)

    def apply(params: StackedParams, a: _Activation) -> _Activation:
        x = a.module_layout()
        if x.dim() != 3 or x.shape[2] != math.prod(shape):
            raise ValueError(
                f"Unflatten to {shape} got activations of shape"
                f" {tuple(x.shape[1:])} per run; it needs (batch, {math.prod(shape)})"
            )
        return _Activation(x.reshape(*x.shape[:2], *shape), False)

    return apply
