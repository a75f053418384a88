"""Evaluate one architecture at many parameter points at once.

`StackedEvaluator` wraps a module and its `ParamLayout`. Given flat parameter
vectors of shape (B, size), and for a network with BatchNorm the flat buffer
vectors of shape (B, buffer_size), it returns logits, losses, accuracies or
the output of a named submodule inside the network at every point, in eval
mode, processing points and examples in chunks so that memory stays bounded. Modules made
only of the layers `learning.stacked` covers are evaluated there, as batched
matrix products. Any other module goes through `torch.func.functional_call`
under `torch.func.vmap`, so each point is normalized with its own running
statistics.

`recompute_batchnorm_statistics` gives a parameter point the BatchNorm
statistics of its own activations on training data, which an interpolated
point (on a path between two networks) does not have.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from learning.config import ConfigError
from learning.param import ParamLayout, ParamPoint
from learning.stacked import (
    check_label_dtype,
    check_label_range,
    global_hooks_registered,
    stacked_forward_fn,
)

logger = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device a config names: 'auto' is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device {name!r} is not a torch device; use 'auto', 'cpu' or 'cuda:0'"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} requested, but CUDA is not available; use 'cpu' or 'auto'"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r} requested, but only {torch.cuda.device_count()} CUDA"
            " device(s) exist; use 'cuda:0'"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"device {name!r} requested, but MPS is not available; use 'cpu'"
        )
    return device


class StackedEvaluator:
    """Evaluate a module, or one of its submodules, at stacked parameter points.

    The module is copied and put in eval mode. Every method takes optional
    ``buffers`` of shape (B, buffer_size) beside ``points`` of shape (B, size).
    When they are omitted, every point uses the buffers of the module given
    to the constructor.
    """

    def __init__(
        self,
        module: nn.Module,
        device: torch.device,
        point_chunk: int = 32,
        example_chunk: int = 4096,
    ) -> None:
        self.layout = ParamLayout.of(module)
        self.module = copy.deepcopy(module).to(device).eval()
        self.device = device
        self.point_chunk = point_chunk
        self.example_chunk = example_chunk
        self._stacked: dict[
            str | None,
            Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor] | None,
        ] = {}

    def _apply(
        self,
        submodule: str | None,
        points: torch.Tensor,
        x: torch.Tensor,
        buffers: torch.Tensor | None,
    ) -> torch.Tensor:
        """Return the output of `submodule` (or of the module) for each point.

        The output is the one the submodule gives inside the whole module's
        forward pass on x, of shape (B, n, ...).
        """
        if buffers is None or self.layout.buffer_size == 0:
            stacked = self._stacked_forward(submodule)
            if stacked is not None:
                params = self.layout.unflatten(points)
                return stacked(params, x.expand(points.shape[0], *x.shape))

        # Parameters and buffers go in one dict, so that vmap maps over both
        # and each point is normalized with its own running statistics.
        tensors = self.layout.unflatten(points)
        if buffers is not None:
            tensors.update(self.layout.unflatten_buffers(buffers))
        one_point = partial(_output_of, self.module, submodule)
        batched: Callable[..., torch.Tensor] = vmap(one_point, in_dims=(0, None))
        return batched(tensors, x)

    def _stacked_forward(
        self, submodule: str | None
    ) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor] | None:
        """Return the batched-product forward up to `submodule`, if covered."""
        if global_hooks_registered():
            return None  # registered after this evaluator was made, perhaps
        if submodule not in self._stacked:
            self._stacked[submodule] = stacked_forward_fn(self.module, submodule)
        return self._stacked[submodule]

    def _check_inputs(
        self, points: torch.Tensor, x: torch.Tensor, buffers: torch.Tensor | None
    ) -> torch.Tensor:
        """Check the points, inputs and buffers; return x in the points' dtype."""
        if points.dim() != 2 or points.shape[1] != self.layout.size:
            raise ValueError(
                f"points of shape {tuple(points.shape)} are not (B, {self.layout.size}):"
                " pass one flat parameter vector (ParamLayout.flatten) per row; for one"
                " point use point.unsqueeze(0)"
            )
        if points.shape[0] == 0:
            raise ValueError("no points to evaluate: pass at least one row")
        if not points.is_floating_point():
            raise TypeError(
                f"points have dtype {points.dtype}; parameters are floating-point:"
                " pass points.float()"
            )
        if x.dim() == 0 or x.shape[0] == 0:
            raise ValueError(
                f"inputs of shape {tuple(x.shape)} hold no examples: pass a batch"
                " (n, ...) with n >= 1"
            )
        if x.dim() == 1:
            raise ValueError(
                f"inputs of shape {tuple(x.shape)} have no batch dimension: pass"
                " (n, ...), such as x.unsqueeze(0) for one example"
            )
        self._check_buffers(points, buffers)
        # Integer inputs stay as they are, such as token ids for an embedding.
        if x.is_floating_point() and x.dtype != points.dtype:
            return x.to(points.dtype)
        return x

    @staticmethod
    def _check_labels(x: torch.Tensor, y: torch.Tensor) -> None:
        """Check that y contains one integer class label per example of x."""
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"labels of shape {tuple(y.shape)} do not match the {x.shape[0]}"
                " examples of x: pass one class index per example, shape"
                f" ({x.shape[0]},)"
            )
        check_label_dtype(y)

    def _check_buffers(
        self, points: torch.Tensor, buffers: torch.Tensor | None
    ) -> None:
        if buffers is None:
            return
        expected = (points.shape[0], self.layout.buffer_size)
        if tuple(buffers.shape) != expected:
            raise ValueError(
                f"buffers of shape {tuple(buffers.shape)} do not match {expected}:"
                " pass one flat buffer vector (ParamLayout.flatten_buffers) per point"
            )

    def _buffer_chunk(
        self, buffers: torch.Tensor | None, start: int
    ) -> torch.Tensor | None:
        if buffers is None:
            return None
        return buffers[start : start + self.point_chunk].to(self.device)

    @torch.no_grad()
    def outputs(
        self,
        points: torch.Tensor,
        x: torch.Tensor,
        submodule: str | None = None,
        buffers: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the module's outputs at each point, (B, n, ...), on the CPU.

        With `submodule`, the outputs are those that submodule gives inside
        the module's forward pass on x (the first of them, where it runs more
        than once). Floating-point inputs are cast to the points' dtype.

        Raises
        ------
        ValueError
            If the submodule is not called in the module's forward pass.
        """
        x = self._check_inputs(points, x, buffers)
        results = []
        for start in range(0, points.shape[0], self.point_chunk):
            chunk = points[start : start + self.point_chunk].to(self.device)
            buffer_chunk = self._buffer_chunk(buffers, start)
            parts = [
                self._apply(
                    submodule,
                    chunk,
                    x[i : i + self.example_chunk].to(self.device),
                    buffer_chunk,
                )
                for i in range(0, x.shape[0], self.example_chunk)
            ]
            results.append(torch.cat(parts, dim=1).cpu())
        return torch.cat(results)

    @torch.no_grad()
    def loss_and_accuracy(
        self,
        points: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        buffers: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return mean cross-entropy (nats) and accuracy at each point, both (B,).

        Floating-point inputs are cast to the points' dtype.
        """
        loss, accuracy, _ = self._metrics(points, x, y, buffers, predictions=False)
        return loss, accuracy

    @torch.no_grad()
    def metrics(
        self,
        points: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        buffers: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return loss, accuracy and predicted classes at each point, in one pass.

        The loss and accuracy are those of `loss_and_accuracy`, shape (B,);
        the predictions are the argmax of the outputs, shape (B, n), int64.
        """
        loss, accuracy, predicted = self._metrics(
            points, x, y, buffers, predictions=True
        )
        assert predicted is not None
        return loss, accuracy, predicted

    def _metrics(
        self,
        points: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        buffers: torch.Tensor | None,
        predictions: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x = self._check_inputs(points, x, buffers)
        self._check_labels(x, y)
        losses, correct, predicted = [], [], []
        for start in range(0, points.shape[0], self.point_chunk):
            chunk = points[start : start + self.point_chunk].to(self.device)
            buffer_chunk = self._buffer_chunk(buffers, start)
            loss_sum = torch.zeros(
                chunk.shape[0], device=self.device, dtype=torch.float64
            )
            hits = torch.zeros(chunk.shape[0], device=self.device, dtype=torch.float64)
            classes = []
            for i in range(0, x.shape[0], self.example_chunk):
                xs = x[i : i + self.example_chunk].to(self.device)
                # Any integer dtype; cross_entropy takes int64 class indices.
                ys = y[i : i + self.example_chunk].to(self.device, torch.long)
                logits = self._apply(None, chunk, xs, buffer_chunk)
                check_label_range(ys, logits.shape[-1])
                per_example = nn.functional.cross_entropy(
                    logits.flatten(0, 1), ys.repeat(chunk.shape[0]), reduction="none"
                ).view(chunk.shape[0], -1)
                loss_sum += per_example.double().sum(dim=1)
                argmax = logits.argmax(dim=-1)
                hits += (argmax == ys).double().sum(dim=1)
                if predictions:
                    classes.append(argmax.cpu())
            losses.append((loss_sum / x.shape[0]).cpu())
            correct.append((hits / x.shape[0]).cpu())
            if predictions:
                predicted.append(torch.cat(classes, dim=1))
        return (
            torch.cat(losses),
            torch.cat(correct),
            torch.cat(predicted) if predictions else None,
        )

    def loss_fn(
        self, x: torch.Tensor, y: torch.Tensor, buffers: torch.Tensor | None = None
    ) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        """Return a function from stacked named parameters (B, ...) to losses (B,).

        ``buffers``, one flat buffer vector of shape (buffer_size,), is used
        at every point; without it every point uses the module's own buffers.
        """
        names = self.layout.names

        def losses(params: dict[str, torch.Tensor]) -> torch.Tensor:
            flat = torch.cat([params[n].flatten(1) for n in names], dim=1)
            stacked = None
            if buffers is not None:
                stacked = buffers.reshape(1, -1).expand(flat.shape[0], -1)
            loss, _ = self.loss_and_accuracy(flat, x, y, stacked)
            return loss

        return losses

    def recompute_buffers(
        self,
        points: torch.Tensor,
        x_train: torch.Tensor,
        batches: int = 1,
        buffers: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Recompute the BatchNorm statistics of each point on training inputs.

        Parameters
        ----------
        points : Tensor
            Flat parameter vectors, shape (B, size).
        x_train : Tensor
            Training inputs on which the statistics are computed.
        batches : int
            Number of equal mini-batches `x_train` is cut into; see
            `recompute_batchnorm_statistics`.
        buffers : Tensor, optional
            Buffers of shape (B, buffer_size) loaded before the recomputation.
            Floating-point buffers that are not BatchNorm statistics keep
            these values.

        Returns
        -------
        Tensor
            Flat buffer vectors of shape (B, buffer_size), on the CPU.
        """
        if points.dim() != 2 or points.shape[1] != self.layout.size:
            raise ValueError(
                f"points of shape {tuple(points.shape)} are not (B, {self.layout.size}):"
                " pass one flat parameter vector per row; for one point use"
                " point.unsqueeze(0)"
            )
        self._check_buffers(points, buffers)
        work = copy.deepcopy(self.module)
        rows = []
        for index in range(points.shape[0]):
            own = None if buffers is None else buffers[index]
            rows.append(
                _fill_running_statistics(
                    work, self.layout, points[index], own, x_train, batches
                )
            )
        if not rows:
            return torch.zeros(0, self.layout.buffer_size)
        return torch.stack(rows)


class _OutputReached(Exception):
    """Raised by a forward hook to stop the forward pass at a submodule."""


def _output_of(
    module: nn.Module,
    submodule: str | None,
    tensors: dict[str, torch.Tensor],
    inputs: torch.Tensor,
) -> torch.Tensor:
    """Return the output of `submodule` in ``module``'s forward pass on inputs.

    A forward hook on the submodule keeps its output and stops the pass
    there, so the layers after it are not computed. Where the submodule
    runs more than once, this is the output of its first call.
    """
    if submodule is None:
        out: torch.Tensor = functional_call(module, tensors, (inputs,))
        return out
    target = module.get_submodule(submodule)
    outputs: list[torch.Tensor] = []

    def record_output(_: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        outputs.append(output)
        raise _OutputReached

    handle = target.register_forward_hook(record_output)
    try:
        functional_call(module, tensors, (inputs,))
    except _OutputReached:
        pass
    finally:
        handle.remove()
    if not outputs:
        raise ValueError(
            f"submodule {submodule!r} is not called in the forward pass of"
            f" {type(module).__name__}: name one that computes the features"
        )
    if not isinstance(outputs[0], torch.Tensor):
        raise TypeError(
            f"submodule {submodule!r} returns a {type(outputs[0]).__name__}, not"
            " a tensor: name a submodule whose output is one tensor of features"
        )
    return outputs[0]


def recompute_batchnorm_statistics(
    module: nn.Module, point: ParamPoint, x_train: torch.Tensor, batches: int = 1
) -> ParamPoint:
    """Return `point` with BatchNorm statistics recomputed on training inputs.

    The statistics are those of the network at `point` itself. A copy of
    `module` gets the point's parameters (and its buffers, when it has any)
    and has every BatchNorm layer's running statistics reset. Then
    `x_train`, cut into `batches` mini-batches, is passed forward once with
    only the BatchNorm layers in train mode and with ``momentum=None``, so
    the statistics are the plain averages of the per-batch means and
    unbiased variances (PyTorch's cumulative moving average). No parameter
    changes, and dropout and other layers stay in eval mode. Apart from
    that, this is what `torch.optim.swa_utils.update_bn` does for averaged
    weights.

    Parameters
    ----------
    module : nn.Module
        The architecture; it is copied, not changed.
    point : ParamPoint
        The parameter point.
    x_train : Tensor
        Training inputs, shape (n, ...).
    batches : int
        Number of consecutive mini-batches of `x_train`, whose sizes differ
        by at most one. With 1 the running mean is the exact mean over
        `x_train` and the running variance its unbiased variance. With more,
        the mean is still exact when the batches have equal sizes, and the
        variance is the average of the per-batch unbiased variances. That
        average matches the variance over `x_train` in expectation when the
        batches are random subsets, but is too small when the order of
        `x_train` groups similar inputs (for example, sorted by class).

    Returns
    -------
    ParamPoint
        The same parameter vector with the recomputed buffers, on the CPU.
        A module without BatchNorm layers gets `point` back unchanged.

    Raises
    ------
    ValueError
        If `batches` is not between 1 and the number of inputs.
    """
    layout = ParamLayout.of(module)
    if not _batch_norm_layers(module):
        logger.debug("module has no BatchNorm layers; nothing to recompute")
        return point
    work = copy.deepcopy(module)
    buffers = _fill_running_statistics(
        work, layout, point.vector, point.buffers, x_train, batches
    )
    return ParamPoint(point.vector, buffers)


def _batch_norm_layers(module: nn.Module) -> list[_BatchNorm]:
    # _BatchNorm is the common base of BatchNorm1d/2d/3d (and SyncBatchNorm);
    # torch.optim.swa_utils.update_bn selects layers the same way.
    return [
        m
        for m in module.modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
    ]


def _fill_running_statistics(
    work: nn.Module,
    layout: ParamLayout,
    vector: torch.Tensor,
    buffers: torch.Tensor | None,
    x_train: torch.Tensor,
    batches: int,
) -> torch.Tensor:
    """Load a point into `work`, recompute its BatchNorm statistics, return its buffers.

    `work` is a scratch module that this changes in place.
    """
    if not 1 <= batches <= x_train.shape[0]:
        raise ValueError(
            f"batches = {batches} must be between 1 and the {x_train.shape[0]}"
            " training inputs"
        )
    norms = _batch_norm_layers(work)
    layout.load_into(work, vector)
    if buffers is not None:
        layout.load_buffers_into(work, buffers)
    tensors = itertools.chain(work.parameters(), work.buffers())
    device = next(tensors, x_train).device

    momenta = [norm.momentum for norm in norms]
    work.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
        norm.train()
    try:
        with torch.no_grad():
            for batch in torch.tensor_split(x_train, batches):
                work(batch.to(device))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        work.eval()
    return layout.flatten_buffers(work).cpu()
