"""Forward and backward passes of many networks of one architecture at once.

`torch.func.vmap` over `functional_call` evaluates R networks at once for
any module. On the CPU, though, it turns their convolutions into one grouped
convolution, and that kernel's backward pass is slow. Training 32 runs of
the MNIST-1D CNN that way was only about twice as fast as training them one
by one (benchmarks/bench_ensemble.py, 2-core CPU).
This module evaluates the layers the library's models are made of with a
leading run dimension directly. A linear map is one batched matrix product
over the runs (`torch.baddbmm`). A convolution gathers its input windows
(im2col) and is then a batched matrix product too. Activations between
convolutions are kept channels-last, so that the gathered windows need no
extra copy.

Each layer has a hand-written backward pass. `StackedNetwork.loss_and_grad`
uses them to return the runs' cross-entropy losses and their gradients
without autograd's graph. Its intermediate tensors live in buffers that
the next call reuses, so a training loop does not allocate fresh memory at
each step (on the CPU, fresh memory costs page faults and cache misses),
and a ReLU overwrites the output of the layer before it. `stacked_forward_fn`
wraps the same passes in one `torch.autograd.Function`, so its outputs
can be differentiated like any other.

`StackedNetwork.of` (and `stacked_forward_fn`) return None for a module
they do not cover, and callers then fall back to vmap. Covered:
`nn.Sequential` and `FeatureClassifier` made of `nn.Linear`, `nn.Conv1d`,
`nn.Conv2d` (groups 1, dilation 1, zero padding), `nn.ReLU`, `nn.Identity`,
`nn.Flatten` and `nn.Unflatten` over the example dimensions. These exact
classes only, without hooks: a subclass may override ``forward``, and a hook
may change what a layer returns, so either falls back to vmap, which calls
them. BatchNorm is not covered: its running statistics are buffers that the
vectorized training refuses anyway.

The results equal vmap's up to float rounding, since the products sum in
another order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from learning.models import FeatureClassifier

StackedParams = dict[str, torch.Tensor]
"""Parameters by name, each with a leading run dimension of size R."""

_Saved = Any
"""Tensors and sizes that a layer's forward pass keeps for its backward pass."""


class _Activation:
    """A batch of activations of R networks, shape (R, B, ...).

    With ``channels_last`` the example dimensions are (spatial..., C), where
    the module itself would hold (C, spatial...). ``owned`` marks a tensor
    that this pass wrote and that no layer keeps for its backward pass, so
    the next layer may overwrite it.
    """

    __slots__ = ("channels_last", "owned", "tensor")

    def __init__(self, tensor: torch.Tensor, channels_last: bool, owned: bool) -> None:
        self.tensor = tensor
        self.channels_last = channels_last
        self.owned = owned

    def module_layout(self) -> torch.Tensor:
        """Return the tensor in the module's own (C, spatial...) layout."""
        if not self.channels_last:
            return self.tensor
        return _to_module_layout(self.tensor)


def _to_module_layout(x: torch.Tensor) -> torch.Tensor:
    """Permute (R, B, *spatial, C) to (R, B, C, *spatial), as a view."""
    dims = x.dim()
    return x.permute(0, 1, dims - 1, *range(2, dims - 1))


def _to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Permute (R, B, C, *spatial) to (R, B, *spatial, C), as a view."""
    return x.movedim(2, -1)


class _Buffers:
    """Scratch tensors of one network, reused from call to call when ``keep``.

    A buffer is found by its key and must have the same shape, dtype and
    device as before; otherwise a new one is made. ``init`` runs only on a
    new buffer: it sets the entries that no pass writes (zero padding, a
    column of ones), which then stay as they are.
    """

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.tensors: dict[tuple[int, str], torch.Tensor] = {}

    def get(
        self,
        key: tuple[int, str],
        shape: tuple[int, ...],
        like: torch.Tensor,
        init: Callable[[torch.Tensor], object] | None = None,
    ) -> torch.Tensor:
        """Return the buffer `key`, of `shape` and of `like`'s dtype and device."""
        if self.keep:
            found = self.tensors.get(key)
            if (
                found is not None
                and tuple(found.shape) == shape
                and found.dtype == like.dtype
                and found.device == like.device
            ):
                return found
        tensor = like.new_empty(shape)
        if init is not None:
            init(tensor)
        if self.keep:
            self.tensors[key] = tensor
        return tensor


class _Layer:
    """One layer with a run dimension: a forward pass and its backward pass.

    ``forward`` returns the output activation and what the backward pass
    needs. ``backward`` takes the gradient of the loss with respect to the
    output, in the output's layout, and may overwrite it. It adds the
    parameters' gradients to `grads`. When `need_input` is set, it returns
    the gradient with respect to the input, in the input tensor's layout;
    otherwise it returns None.
    """

    key = 0
    path = ""
    """The layer's module name in the network, as named_modules() gives it."""

    def forward(
        self, params: StackedParams, a: _Activation, buffers: _Buffers
    ) -> tuple[_Activation, _Saved]:
        raise NotImplementedError

    def backward(
        self,
        params: StackedParams,
        saved: _Saved,
        grad: torch.Tensor,
        buffers: _Buffers,
        grads: StackedParams,
        need_input: bool,
    ) -> torch.Tensor | None:
        raise NotImplementedError

    def param_names(self) -> list[str]:
        """Return the names of the parameters this layer reads."""
        return []


class _WeightedLayer(_Layer):
    """A layer with a weight and an optional bias, named under `prefix`."""

    def __init__(self, prefix: str, has_bias: bool) -> None:
        self.weight = f"{prefix}weight"
        self.bias = f"{prefix}bias" if has_bias else None

    def param_names(self) -> list[str]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]


class _Identity(_Layer):
    def forward(
        self, params: StackedParams, a: _Activation, buffers: _Buffers
    ) -> tuple[_Activation, _Saved]:
        return a, None

    def backward(
        self,
        params: StackedParams,
        saved: _Saved,
        grad: torch.Tensor,
        buffers: _Buffers,
        grads: StackedParams,
        need_input: bool,
    ) -> torch.Tensor | None:
        return grad


class _ReLU(_Layer):
    """ReLU, in place on a tensor the pass owns; it keeps its output."""

    def forward(
        self, params: StackedParams, a: _Activation, buffers: _Buffers
    ) -> tuple[_Activation, _Saved]:
        out = a.tensor.relu_() if a.owned else torch.relu(a.tensor)
        return _Activation(out, a.channels_last, owned=False), out

    def backward(
        self,
        params: StackedParams,
        saved: _Saved,
        grad: torch.Tensor,
        buffers: _Buffers,
        grads: StackedParams,
        need_input: bool,
    ) -> torch.Tensor | None:
        # Zero the gradient where the output is zero, as ReLU's own backward
        # does (the derivative at 0 is taken as 0), in place.
        out: torch.Tensor = torch.ops.aten.threshold_backward.grad_input(
            grad, saved, 0, grad_input=grad
        )
        return out


class _Flatten(_Layer):
    """nn.Flatten(1, -1): to (R, B, n) in the module's own order."""

    def forward(
        self, params: StackedParams, a: _Activation, buffers: _Buffers
    ) -> tuple[_Activation, _Saved]:
        saved = (tuple(a.tensor.shape), a.channels_last)
        x = a.tensor
        runs, batch = x.shape[:2]
        if a.channels_last and x.dim() > 3:
            module_shape = tuple(_to_module_layout(x).shape)
            out = buffers.get((self.key, "out"), module_shape, x)
            out.copy_(_to_module_layout(x))
            return _Activation(out.view(runs, batch, -1), False, owned=True), saved
        flat = a.module_layout().reshape(runs, batch, -1)
        return _Activation(flat, False, owned=a.owned), saved

    def backward(
        self,
        params: StackedParams,
        saved: _Saved,
        grad: torch.Tensor,
        buffers: _Buffers,
        grads: StackedParams,
        need_input: bool,
    ) -> torch.Tensor | None:
        shape, channels_last = saved
        if not channels_last:
            return grad.reshape(shape)
        module_shape = (*shape[:2], shape[-1], *shape[2:-1])
        # The layers before take their gradient channels-last and contiguous.
        out = buffers.get((self.key, "grad"), shape, grad)
        out.copy_(_to_channels_last(grad.reshape(module_shape)))
        return out


class _Unflatten(_Layer):
    """nn.Unflatten(1, shape): (R, B, n) to (R, B, *shape)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(
        self, params: StackedParams, a: _Activation, buffers: _Buffers
    ) -> tuple[_Activation, _Saved]:
        x = a.module_layout()
        if x.dim() != 3 or x.shape[2] != math.prod(self.shape):
            raise ValueError(
                f"Unflatten to {self.shape} got activations of shape"
                f" {tuple(x.shape[1:])} per run; it needs"
                f" (batch, {math.prod(self.shape)})"
            )
        out = x.reshape(*x.shape[:2], *self.shape)
        return _Activation(out, False, owned=a.owned), tuple(x.shape)

    def backward(
        self,
        params: StackedParams,
        saved: _Saved,
        grad: torch.Tensor,
        buffers: _Buffers,
        grads: StackedParams,
        need_input: bool,
    ) -> torch.Tensor | None:
        return grad.reshape(saved)


class _Linear(_WeightedLayer):
    """nn.Linear: one batched product over the runs, on the last dimension."""

    def forward(
        self, params: StackedParams, a: _Activation, buffers: _Buffers
    ) -> tuple[_Activation, _Saved]:
        x = a.module_layout()
        runs, batch = x.shape[:2]
        flat = x.reshape(runs, -1, x.shape[-1])
        weight = params[self.weight]
        if flat.shape[2] != weight.shape[2]:
            raise ValueError(
                f"linear layer {self.weight.removesuffix('.weight')!r} takes"
                f" {weight.shape[2]} features but got activations of shape"
                f" {tuple(x.shape[1:])} per run; check the inputs' shape"
            )
        shape = (runs, flat.shape[1], weight.shape[1])
        out = buffers.get((self.key, "out"), shape, flat)
        if self.bias is None:
            torch.bmm(flat, weight.transpose(1, 2), out=out)
        else:
            bias = params[self.bias].unsqueeze(1)
            torch.baddbmm(bias, flat, weight.transpose(1, 2), out=out)
        result = out.view(runs, batch, *x.shape[2:-1], weight.shape[1])
        return _Activation(result, False, owned=True), (flat, x.shape, a.channels_last)

    def backward(
        self,
        params: StackedParams,
        saved: _Saved,
        grad: torch.Tensor,
        buffers: _Buffers,
        grads: StackedParams,
        need_input: bool,
    ) -> torch.Tensor | None:
        flat, shape, channels_last = saved
        weight = params[self.weight]
        rows = grad.reshape(flat.shape[0], flat.shape[1], -1)
        grads[self.weight] = torch.bmm(rows.transpose(1, 2), flat)
        if self.bias is not None:
            grads[self.bias] = rows.sum(dim=1)
        if not need_input:
            return None
        out = buffers.get((self.key, "grad"), tuple(flat.shape), grad)
        torch.bmm(rows, weight, out=out)
        result = out.view(shape)
        return _to_channels_last(result) if channels_last else result


class _Convolution(_WeightedLayer):
    """nn.Conv1d or nn.Conv2d as im2col and one batched product.

    The input is gathered channels-last into a matrix of shape
    (R, B * prod(outs), C_in * taps). When the layer has a bias, the matrix
    gets a last column of ones, and the weight matrix, (C_in * taps, C_out),
    gets the bias as its last row. Entry (o, (c, j)) of the gathered matrix is
    the zero-padded input at position o * stride + j, channel c. The
    backward pass scatters the gathered matrix's gradient back with one
    strided in-place addition per kernel tap.
    """

    def __init__(
        self,
        prefix: str,
        has_bias: bool,
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> None:
        super().__init__(prefix, has_bias)
        self.kernel = kernel
        self.stride = stride
        self.padding = padding

    def forward(
        self, params: StackedParams, a: _Activation, buffers: _Buffers
    ) -> tuple[_Activation, _Saved]:
        x = a.tensor if a.channels_last else _to_channels_last(a.tensor)
        _check_channels(self.weight, params, a)
        runs, batch = x.shape[:2]
        channels = x.shape[-1]
        outs = _output_sizes(x.shape[2:-1], self.kernel, self.stride, self.padding)
        if any(n < 1 for n in outs):
            raise ValueError(
                f"a convolution with kernel {self.kernel}, stride {self.stride} and"
                f" padding {self.padding} got inputs of spatial size"
                f" {tuple(x.shape[2:-1])}, which leave no output position"
            )
        width = channels * math.prod(self.kernel)
        n_rows = batch * math.prod(outs)
        has_bias = self.bias is not None

        def set_ones(matrix: torch.Tensor) -> None:
            if has_bias:
                matrix[..., width] = 1

        patches = buffers.get(
            (self.key, "patches"), (runs, n_rows, width + has_bias), x, set_ones
        )
        windows = self._padded(x, buffers)
        # Each unfold appends a window dimension: (R, B, *outs, C, *kernel).
        for dim, (k, s) in enumerate(zip(self.kernel, self.stride, strict=True), 2):
            windows = windows.unfold(dim, k, s)
        patches[..., :width].view(windows.shape).copy_(windows)

        matrix = self._matrix(params)
        out = buffers.get((self.key, "out"), (runs, n_rows, matrix.shape[2]), x)
        torch.bmm(patches, matrix, out=out)
        result = out.view(runs, batch, *outs, matrix.shape[2])
        saved = (patches, matrix, tuple(x.shape), a.channels_last)
        return _Activation(result, True, owned=True), saved

    def _padded(self, x: torch.Tensor, buffers: _Buffers) -> torch.Tensor:
        """Return x zero-padded along its spatial dimensions."""
        if not any(self.padding):
            return x
        sizes = [n + 2 * p for n, p in zip(x.shape[2:-1], self.padding, strict=True)]
        shape = (*x.shape[:2], *sizes, x.shape[-1])
        padded = buffers.get((self.key, "padded"), shape, x, torch.Tensor.zero_)
        # Only the interior is written, so the border stays zero.
        padded[self._interior(x.shape)].copy_(x)
        return padded

    def _interior(self, shape: tuple[int, ...] | torch.Size) -> tuple[slice, ...]:
        index = [slice(None), slice(None)]
        index += [
            slice(p, p + n) for n, p in zip(shape[2:-1], self.padding, strict=True)
        ]
        return tuple(index)

    def _matrix(self, params: StackedParams) -> torch.Tensor:
        """Return the weights (and bias) as a (R, C_in * taps (+ 1), C_out) matrix."""
        weight = params[self.weight]  # (R, C_out, C_in, *kernel)
        runs, c_out = weight.shape[:2]
        order = (0, *range(2, weight.dim()), 1)
        matrix = weight.permute(order).reshape(runs, -1, c_out)
        if self.bias is None:
            return matrix.contiguous()
        # The bias is the last row, multiplied by the column of ones. This
        # spares the pass that baddbmm makes to copy it into the output,
        # and the product's backward gives its gradient without a sum.
        return torch.cat([matrix, params[self.bias].unsqueeze(1)], dim=1)

    def backward(
        self,
        params: StackedParams,
        saved: _Saved,
        grad: torch.Tensor,
        buffers: _Buffers,
        grads: StackedParams,
        need_input: bool,
    ) -> torch.Tensor | None:
        patches, matrix, shape, channels_last = saved
        runs, n_rows = patches.shape[:2]
        rows = grad.reshape(runs, n_rows, -1)
        product = torch.bmm(patches.transpose(1, 2), rows)
        width = shape[-1] * math.prod(self.kernel)
        c_in, c_out = shape[-1], rows.shape[2]
        kernel_grad = product[:, :width].reshape(runs, c_in, *self.kernel, c_out)
        grads[self.weight] = kernel_grad.movedim(-1, 1)
        if self.bias is not None:
            grads[self.bias] = product[:, width]
        if not need_input:
            return None

        gathered = buffers.get((self.key, "grad_patches"), (runs, n_rows, width), grad)
        torch.bmm(rows, matrix[:, :width].transpose(1, 2), out=gathered)
        result = self._scatter(gathered, shape, buffers)
        return result if channels_last else result.movedim(-1, 2)

    def _scatter(
        self, gathered: torch.Tensor, shape: tuple[int, ...], buffers: _Buffers
    ) -> torch.Tensor:
        """Sum the gathered matrix's gradient back onto the input positions."""
        spatial = len(self.kernel)
        outs = _output_sizes(shape[2:-1], self.kernel, self.stride, self.padding)
        by_tap = gathered.view(*shape[:2], *outs, shape[-1], *self.kernel)
        by_tap = by_tap.flatten(-spatial)
        sizes = [n + 2 * p for n, p in zip(shape[2:-1], self.padding, strict=True)]
        total = buffers.get(
            (self.key, "grad_padded"), (*shape[:2], *sizes, shape[-1]), gathered
        )
        total.zero_()
        # Taps in row-major order, the order of the flattened kernel dimensions.
        taps = itertools.product(*(range(k) for k in self.kernel))
        for t, tap in enumerate(taps):
            index: list[slice] = [slice(None), slice(None)]
            for j, out, s in zip(tap, outs, self.stride, strict=True):
                index.append(slice(j, j + s * (out - 1) + 1, s))
            total[tuple(index)] += by_tap[..., t]
        return total[self._interior(shape)]


class _HalvingConvolution(_WeightedLayer):
    """A 1-D convolution with kernel 3, stride 2 and padding 1.

    Output o reads inputs 2o - 1, 2o and 2o + 1, through the taps W0, W1
    and W2 (each C_out x C_in). Viewing the channels-last input (R, B, L, C)
    as pairs (R, B, L / 2, 2C) puts inputs 2o and 2o + 1 in row o, without
    a copy. One batched product of the pairs with [W1 W2]^T gives
    W1 x(2o) + W2 x(2o + 1) + bias, and one of their second halves with W0^T
    gives W0 x(2o + 1), which output o + 1 needs. Output o is the first
    product's row o plus the second's row o - 1 (none for o = 0: padding).
    This reads the input in place, where gathering windows would copy it
    one and a half times, and its backward pass needs no scattered sum.
    """

    def forward(
        self, params: StackedParams, a: _Activation, buffers: _Buffers
    ) -> tuple[_Activation, _Saved]:
        x = a.tensor if a.channels_last else _to_channels_last(a.tensor)
        _check_channels(self.weight, params, a, spatial=1)
        runs, batch, length, channels = x.shape
        if length == 0:
            raise ValueError(
                f"convolution {self.weight.removesuffix('.weight')!r} (kernel 3,"
                " stride 2, padding 1) got inputs of length 0, which leave no"
                " output position"
            )
        if length % 2 or not x.is_contiguous():
            # An odd length gets a zero at the end, which no output reads
            # with a nonzero weight; the pairs need a contiguous input.
            even = length + length % 2
            shape = (runs, batch, even, channels)
            padded = buffers.get((self.key, "even"), shape, x, torch.Tensor.zero_)
            padded[:, :, :length].copy_(x)
            # Zeroed at every call: a reused buffer may hold an even-length
            # input of an earlier call there.
            padded[:, :, length:].zero_()
            x = padded
        n = x.shape[2] // 2
        pairs = x.view(runs, batch * n, 2 * channels)
        first_taps, last_tap = self._matrices(params)
        c_out = last_tap.shape[2]

        out = buffers.get((self.key, "out"), (runs, batch * n, c_out), x)
        if self.bias is None:
            torch.bmm(pairs, first_taps, out=out)
        else:
            torch.baddbmm(params[self.bias].unsqueeze(1), pairs, first_taps, out=out)
        carried = buffers.get((self.key, "carried"), (runs, batch * n, c_out), x)
        torch.bmm(pairs[..., channels:], last_tap, out=carried)
        out = out.view(runs, batch, n, c_out)
        out[:, :, 1:] += carried.view(runs, batch, n, c_out)[:, :, :-1]
        saved = (pairs, first_taps, last_tap, length, a.channels_last)
        return _Activation(out, True, owned=True), saved

    def _matrices(self, params: StackedParams) -> tuple[torch.Tensor, torch.Tensor]:
        """Return [W1 W2]^T, shape (R, 2C_in, C_out), and W0^T, (R, C_in, C_out)."""
        taps = params[self.weight].permute(0, 3, 2, 1)  # (R, 3, C_in, C_out)
        first = torch.cat([taps[:, 1], taps[:, 2]], dim=1)
        return first, taps[:, 0].contiguous()

    def backward(
        self,
        params: StackedParams,
        saved: _Saved,
        grad: torch.Tensor,
        buffers: _Buffers,
        grads: StackedParams,
        need_input: bool,
    ) -> torch.Tensor | None:
        pairs, first_taps, last_tap, length, channels_last = saved
        runs, batch, n, c_out = grad.shape
        c_in = last_tap.shape[1]
        rows = grad.reshape(runs, batch * n, c_out)
        # Row o of the second product went to output o + 1 (the last row
        # went nowhere), so its gradient is the outputs' shifted by one.
        shifted = buffers.get((self.key, "grad_carried"), (runs, batch, n, c_out), grad)
        shifted[:, :, :-1] = grad[:, :, 1:]
        shifted[:, :, -1] = 0
        carried = shifted.view(runs, batch * n, c_out)

        first = torch.bmm(pairs.transpose(1, 2), rows)  # (R, 2C_in, C_out)
        last = torch.bmm(pairs[..., c_in:].transpose(1, 2), carried)
        taps = [last, first[:, :c_in], first[:, c_in:]]  # W0, W1, W2, transposed
        grads[self.weight] = torch.stack(taps, dim=-1).transpose(1, 2)
        if self.bias is not None:
            grads[self.bias] = rows.sum(dim=1)
        if not need_input:
            return None

        out = buffers.get((self.key, "grad"), tuple(pairs.shape), grad)
        torch.bmm(rows, first_taps.transpose(1, 2), out=out)
        # A product into the strided second halves would be slower than
        # this product into a buffer and an addition.
        through_last = buffers.get(
            (self.key, "grad_last"), tuple(carried.shape[:2]) + (c_in,), grad
        )
        torch.bmm(carried, last_tap.transpose(1, 2), out=through_last)
        out[..., c_in:] += through_last
        result = out.view(runs, batch, -1, c_in)[:, :, :length]
        return result if channels_last else result.movedim(-1, 2)


def _check_channels(
    weight_name: str, params: StackedParams, a: _Activation, spatial: int | None = None
) -> None:
    """Raise unless the activations fit a convolution's input channels and rank."""
    weight = params[weight_name]  # (R, C_out, C_in, *kernel)
    rank = weight.dim() - 3 if spatial is None else spatial
    shape = tuple(a.module_layout().shape[1:])
    if len(shape) != rank + 2 or shape[1] != weight.shape[2]:
        expected = ", ".join(["batch", str(weight.shape[2])] + ["..."] * rank)
        raise ValueError(
            f"convolution {weight_name.removesuffix('.weight')!r} takes"
            f" ({expected}) inputs but got activations of shape {shape} per run;"
            " check the inputs' shape"
        )


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


class StackedNetwork:
    """R networks of one architecture, evaluated and differentiated together.

    Build one with `StackedNetwork.of`. Parameters are passed as a dict from
    the names of ``module.named_parameters()`` to tensors with a leading run
    dimension R, inputs as (R, B, ...): row r of every result is what
    ``functional_call(module, params[r], x[r])`` would give.

    NOTE: `loss_and_grad` reuses its scratch buffers from call to call, so
    two calls on one `StackedNetwork` must not run at once (from two
    threads, say). `forward` and `stacked_forward_fn` allocate new ones.
    """

    def __init__(
        self, layers: list[_Layer], shapes: dict[str, tuple[int, ...]]
    ) -> None:
        self.layers = layers
        self.shapes = shapes
        for key, layer in enumerate(layers):
            layer.key = key
        with_params = [i for i, layer in enumerate(layers) if layer.param_names()]
        self.first_with_params = with_params[0] if with_params else len(layers)
        self.buffers = _Buffers(keep=True)

    @classmethod
    def of(
        cls, module: nn.Module, output_of: str | None = None
    ) -> StackedNetwork | None:
        """Return the stacked form of `module`, or None if it is not covered.

        None is returned for a layer or setting this module does not cover
        (see the module notes) and for a subclass of a covered layer, which
        may compute something else. It is also returned for a module with
        hooks, buffers, a forward set on an instance, or one module object
        used at two places, and while a global module hook is registered.

        With `output_of`, the name of a submodule, the network ends at that
        submodule: its outputs are what the submodule returns inside
        ``module``'s forward pass, and it takes only the parameters of the
        layers up to there. None is returned when that submodule contains no
        layer (an empty ``nn.Sequential``).

        Raises
        ------
        AttributeError
            If `module` has no submodule named `output_of`.
        """
        if output_of is not None:
            module.get_submodule(output_of)  # raises for an unknown name
        if any(True for _ in module.buffers()) or global_hooks_registered():
            return None
        shared = sum(1 for _ in module.named_parameters(remove_duplicate=False))
        if shared != sum(1 for _ in module.parameters()):
            return None  # a tensor shared between two layers (tied weights)
        seen: set[int] = set()
        for _, child in module.named_modules(remove_duplicate=False):
            # A module used twice (tied layers, or one ReLU object at two
            # places) is listed once by named_children; vmap's functional_call
            # handles it.
            if id(child) in seen:
                return None
            seen.add(id(child))
        layers = _compile(module, "")
        if layers is None:
            return None
        shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
        if output_of is None:
            return cls(layers, shapes)

        # The covered containers run their children in order, so a
        # submodule's layers are consecutive and its output is the last one's.
        inside = [
            index
            for index, layer in enumerate(layers)
            if layer.path == output_of or layer.path.startswith(output_of + ".")
        ]
        if not inside:
            return None
        leading = layers[: inside[-1] + 1]
        used = {name for layer in leading for name in layer.param_names()}
        return cls(
            leading, {name: shape for name, shape in shapes.items() if name in used}
        )

    def forward(self, params: StackedParams, x: torch.Tensor) -> torch.Tensor:
        """Return the outputs (R, B, ...) of the R networks on inputs x.

        The outputs carry no autograd graph; `stacked_forward_fn` returns
        outputs that autograd can differentiate.

        Raises
        ------
        ValueError
            If the parameters do not match the module's names and shapes
            with one leading run dimension, or x is not (R, B, ...).
        TypeError
            If x or a parameter is not of one floating-point dtype.
        """
        self.check(params, x)
        return self._outputs(params, x)

    def _outputs(self, params: StackedParams, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out, _ = self._forward(params, x, _Buffers(keep=False), keep_saved=False)
        return out

    def check(self, params: StackedParams, x: torch.Tensor) -> None:
        """Raise unless `params` and `x` fit R stacked copies of the module."""
        if not isinstance(params, Mapping):
            raise TypeError(
                f"parameters are a {type(params).__name__}; pass a dict from each"
                " name of module.named_parameters() to its stacked tensor"
            )
        not_tensors = sorted(
            name
            for name, value in params.items()
            if not isinstance(value, torch.Tensor)
        )
        if not_tensors:
            raise TypeError(
                f"parameters {not_tensors} are not tensors; pass torch tensors"
                " (torch.as_tensor turns an array into one)"
            )
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"inputs are a {type(x).__name__}, not a tensor; pass"
                " torch.as_tensor(x)"
            )
        missing = sorted(set(self.shapes) - set(params))
        unknown = sorted(set(params) - set(self.shapes))
        if missing or unknown:
            raise ValueError(
                f"parameters missing: {missing}, unknown: {unknown}. Pass every"
                " name of module.named_parameters(), stacked over the runs"
                " (torch.func.stack_module_state)"
            )

        if x.dim() < 3:
            raise ValueError(
                f"inputs of shape {tuple(x.shape)} are not (runs, batch, ...):"
                " pass one minibatch per run, x[r] for run r"
            )
        runs = x.shape[0]
        if runs == 0:
            raise ValueError("the inputs hold no runs: pass at least one")
        if x.shape[1] == 0:
            raise ValueError("the inputs hold no examples: pass a batch of >= 1")

        for name, shape in self.shapes.items():
            actual = tuple(params[name].shape)
            if actual != (runs, *shape):
                raise ValueError(
                    f"parameter {name!r} has shape {actual}, but {runs} runs of"
                    f" the module need {(runs, *shape)}: stack one {shape} tensor"
                    " per run, as many runs as x has"
                )

        dtypes = {params[name].dtype for name in self.shapes}
        if len(dtypes) > 1 or (dtypes and not next(iter(dtypes)).is_floating_point):
            raise TypeError(
                f"parameters of dtypes {sorted(map(str, dtypes))}: pass one"
                " floating-point dtype for all of them"
            )
        if dtypes and x.dtype not in dtypes:
            (dtype,) = dtypes
            raise TypeError(
                f"inputs have dtype {x.dtype} and the parameters {dtype}: cast"
                f" the inputs with x.to({dtype})"
            )
        devices = {str(params[name].device) for name in self.shapes}
        if len(devices | {str(x.device)}) > 1:
            raise ValueError(
                f"parameters on {sorted(devices)} and inputs on {x.device}: move"
                " them all to one device, as x.to(device) and"
                " {name: p.to(device) for name, p in params.items()}"
            )

    def loss_and_grad(
        self, params: StackedParams, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, StackedParams]:
        """Return each run's mean cross-entropy loss and its gradient.

        Parameters
        ----------
        params : dict of Tensor
            Parameters by name, each of shape (R, ...). Autograd does not
            record this call, so they may require grad or not.
        x : Tensor
            Inputs, shape (R, B, ...): run r's minibatch is x[r].
        y : Tensor
            Integer class labels, shape (R, B).

        Returns
        -------
        losses : Tensor
            Shape (R,): run r's mean loss over its B examples.
        grads : dict of Tensor
            The gradient of ``losses[r]`` with respect to ``params[name][r]``,
            in row r of ``grads[name]``.

        Raises
        ------
        ValueError, TypeError
            Where `forward` raises, and for labels that are not integer class
            indices of shape (R, B) (on the CPU, also out of range), or
            outputs that are not class scores of shape (R, B, classes).
        """
        self.check(params, x)
        self._check_labels(x, y)
        with torch.no_grad():
            return self._loss_and_grad(params, x, y)

    @staticmethod
    def _check_labels(x: torch.Tensor, y: torch.Tensor) -> None:
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"labels are a {type(y).__name__}, not a tensor; pass"
                " torch.as_tensor(y)"
            )
        if tuple(y.shape) != tuple(x.shape[:2]):
            raise ValueError(
                f"labels of shape {tuple(y.shape)} do not match the inputs'"
                f" {tuple(x.shape[:2])} (runs, batch): pass one class index per"
                " example of each run"
            )
        if y.device != x.device:
            raise ValueError(
                f"labels on {y.device} and inputs on {x.device}: move the labels"
                f" with y.to({str(x.device)!r})"
            )
        check_label_dtype(y)

    def _loss_and_grad(
        self, params: StackedParams, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, StackedParams]:
        logits, tape = self._forward(params, x, self.buffers, keep_saved=True)
        if logits.dim() != 3:
            raise ValueError(
                f"the module's outputs have shape {tuple(logits.shape[1:])} per"
                " run; the cross-entropy needs class scores of shape (batch,"
                " classes)"
            )
        classes = logits.shape[-1]
        # Checked on the CPU only: on a GPU the check would wait for the
        # device at every step.
        if y.device.type == "cpu":
            check_label_range(y, classes)
        scores = logits.reshape(-1, classes)
        labels = y.reshape(-1, 1).long()  # gather takes int64 indices
        log_probs = torch.log_softmax(scores, dim=-1)
        per_example = -log_probs.gather(1, labels).view(y.shape)
        losses = per_example.mean(dim=1)

        # d(mean loss)/d(logits) = (softmax - one_hot(label)) / B, per run,
        # rounded as autograd rounds it: softmax * (1 / B), then minus 1 / B
        # at the label. Training amplifies last-bit differences, so this keeps
        # the runs as close as it can to those of train_run.
        inverse = torch.ones((), dtype=log_probs.dtype, device=log_probs.device)
        inverse = inverse / y.shape[1]
        grad = log_probs.exp_().mul_(inverse)
        grad.scatter_add_(1, labels, (-inverse).expand(labels.shape))
        grads = self._backward(
            params, tape, grad.view(logits.shape), self.buffers, need_input=False
        )
        return losses, grads

    def _forward(
        self,
        params: StackedParams,
        x: torch.Tensor,
        buffers: _Buffers,
        keep_saved: bool,
    ) -> tuple[torch.Tensor, list[_Saved]]:
        """Return the outputs, in the module's layout, and what backward needs."""
        activation = _Activation(x, channels_last=False, owned=False)
        tape: list[_Saved] = []
        for layer in self.layers:
            activation, saved = layer.forward(params, activation, buffers)
            if keep_saved:
                tape.append(saved)
        tape.append(activation.channels_last)
        return activation.module_layout(), tape

    def _backward(
        self,
        params: StackedParams,
        tape: list[_Saved],
        grad: torch.Tensor,
        buffers: _Buffers,
        need_input: bool,
    ) -> StackedParams:
        """Return the parameters' gradients, and the input's under ``"input"``.

        `grad` is the gradient with respect to the outputs, in the module's
        layout; the layers may overwrite it.
        """
        grads: StackedParams = {}
        current: torch.Tensor | None = grad
        if tape[-1]:  # the last layer's output is channels-last
            current = _to_channels_last(grad)
        stop = 0 if need_input else self.first_with_params
        for index in range(len(self.layers) - 1, stop - 1, -1):
            assert current is not None
            wants_input = need_input or index > self.first_with_params
            current = self.layers[index].backward(
                params, tape[index], current, buffers, grads, wants_input
            )
        if need_input and current is not None:
            grads["input"] = current
        return grads


class _StackedFunction(torch.autograd.Function):
    """The forward pass of a StackedNetwork, with its own backward pass."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        network: StackedNetwork,
        names: tuple[str, ...],
        x: torch.Tensor,
        *tensors: torch.Tensor,
    ) -> torch.Tensor:
        params = dict(zip(names, tensors, strict=True))
        out, tape = network._forward(params, x, _Buffers(keep=False), keep_saved=True)
        ctx.network, ctx.names = network, names  # type: ignore[attr-defined]
        ctx.tape = tape  # type: ignore[attr-defined]
        # Saved this way, autograd raises if x or a parameter is changed in
        # place before the backward pass, which the tape would not notice.
        ctx.save_for_backward(x, *tensors)
        # A layer may keep its output (ReLU does); returning a copy keeps the
        # output tensor, which refers to this node, out of the saved state.
        return out.clone()

    @staticmethod
    @once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        network: StackedNetwork = ctx.network  # type: ignore[attr-defined]
        names: tuple[str, ...] = ctx.names  # type: ignore[attr-defined]
        need_input = bool(ctx.needs_input_grad[2])  # type: ignore[attr-defined]
        _, *tensors = ctx.saved_tensors  # type: ignore[attr-defined]
        grads = network._backward(
            dict(zip(names, tensors, strict=True)),
            ctx.tape,  # type: ignore[attr-defined]
            grad.clone(),  # the layers overwrite it, and autograd may reuse it
            _Buffers(keep=False),
            need_input,
        )
        return None, None, grads.get("input"), *(grads.get(n) for n in names)


def stacked_forward_fn(
    module: nn.Module, output_of: str | None = None
) -> Callable[[StackedParams, torch.Tensor], torch.Tensor] | None:
    """Return a function (params, x) -> outputs for R copies of `module`.

    The returned function takes two arguments. The first is the parameters,
    a dict from the names of ``module.named_parameters()`` to tensors with a
    leading run dimension R; the second is inputs of shape (R, B, ...). It
    returns outputs of shape (R, B, ...), whose row r is
    ``functional_call(module, params[r], x[r])``. Autograd differentiates
    them once (not twice) with respect to the parameters and the inputs.

    With `output_of`, row r is instead the output of that submodule inside
    the forward pass of network r (see `StackedNetwork.of`). The function
    still takes all of the module's parameters and ignores those of later
    layers.

    Returns None where `StackedNetwork.of` does.
    """
    network = StackedNetwork.of(module, output_of)
    if network is None:
        return None
    stacked = network
    later = {name for name, _ in module.named_parameters()} - set(stacked.shapes)

    def forward(params: StackedParams, x: torch.Tensor) -> torch.Tensor:
        if later and isinstance(params, Mapping):  # check() names a non-dict
            params = {k: v for k, v in params.items() if k not in later}
        stacked.check(params, x)
        tensors = tuple(params.values())
        if torch.is_grad_enabled() and (
            x.requires_grad or any(t.requires_grad for t in tensors)
        ):
            out: torch.Tensor = _StackedFunction.apply(  # type: ignore[no-untyped-call]
                stacked, tuple(params), x, *tensors
            )
            return out
        return stacked._outputs(params, x)  # already checked

    return forward


def check_label_dtype(y: torch.Tensor) -> None:
    """Raise unless `y` has an integer dtype, as class indices do."""
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(
            f"labels have dtype {y.dtype}; class indices are integers: pass y.long()"
        )


def check_label_range(y: torch.Tensor, classes: int) -> None:
    """Raise unless every label in `y` is a class index in [0, classes)."""
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise ValueError(
            f"labels range from {low} to {high}, but the module gives"
            f" {classes} class scores: pass labels in [0, {classes})"
        )


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
    layer = _leaf_layer(module, prefix)
    if layer is not None:
        layer.path = prefix.removesuffix(".")
    return layer


def _leaf_layer(module: nn.Module, prefix: str) -> _Layer | None:
    if isinstance(module, nn.Linear):
        return _Linear(prefix, module.bias is not None)
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return _convolution(module, prefix)
    if isinstance(module, nn.ReLU):
        return _ReLU()
    if isinstance(module, nn.Identity):
        return _Identity()
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            return None
        return _Flatten()
    if isinstance(module, nn.Unflatten):
        if module.dim != 1 or not isinstance(module.unflattened_size, tuple | list):
            return None
        return _Unflatten(tuple(int(s) for s in module.unflattened_size))
    return None


def _convolution(module: nn.Conv1d | nn.Conv2d, prefix: str) -> _Layer | None:
    """Return a convolution layer, or None for settings it does not cover."""
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
    has_bias = module.bias is not None
    if kernel == (3,) and stride == (2,) and padding == (1,):
        return _HalvingConvolution(prefix, has_bias)
    return _Convolution(prefix, has_bias, kernel, stride, padding)
