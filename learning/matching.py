"""Weight matching: align two networks modulo permutations of their hidden units.

Permuting the hidden units of a layer, and permuting the next layer's inputs
the same way, leaves a network's function unchanged. A `PermutationSpec`
lists the axes of parameters and buffers that each such permutation acts
on. `permutation_spec` derives one for the models of `learning.models` and
for plain `nn.Sequential` stacks of the usual layers, and a spec for any
other module can be written by hand and tested with
`check_permutation_spec`.

Conventions. A permutation of n units is an int64 tensor ``perm`` of length
n, and applying it to an axis puts old unit ``perm[i]`` at position i (so a
weight ``w`` becomes ``w.index_select(axis, perm)``). An axis whose units
are blocks of ``block`` consecutive entries (a channel axis flattened
channel-major before a Linear layer) moves whole blocks.

`weight_matching` looks for permutations of network b that bring it
closest to network a in Euclidean distance. It runs coordinate descent. Each
step keeps all permutations but one fixed and solves a linear assignment
problem for that one, which maximizes the summed inner products of a's and
permuted b's weights on its axes. The permutations are visited in random
order until a full pass improves none of them. This is the weight matching
of Ainsworth, Hayase and Srinivasa, "Git Re-Basin: Merging Models modulo
Permutation Symmetries" (arXiv:2209.04836). Started from the identity, the
descent can stop at a local optimum even when b is a permuted copy of a, so
it starts from a layer-by-layer matching when that is closer to a. For a
permuted copy that start is already the inverse permutation, at distance 0.

`match_and_barrier` reports the straight-line loss barrier of
`learning.homotopy.loss_barriers` between a and b before and after matching,
and rejects a spec whose permutations changed b's outputs.
"""

from __future__ import annotations

import copy
import difflib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NoReturn, overload

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.func import functional_call
from torch.nn.modules import module as module_globals
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize

from learning.evaluate import StackedEvaluator
from learning.homotopy import BarrierMatrix, BatchNormStatistics, loss_barriers
from learning.models import BasicBlock, FeatureClassifier
from learning.param import ParamLayout, ParamPoint
from learning.stacked import check_label_range

logger = logging.getLogger(__name__)

Permutations = dict[str, torch.Tensor]
"""Permutations by name: int64 tensors, ``perm[i]`` the old unit put at i."""


class PermutationSpecError(ValueError):
    """A permutation spec that does not fit its model, or changes its outputs."""


@dataclass(frozen=True)
class PermutedAxis:
    """One axis of one named tensor, on which a permutation acts.

    ``tensor`` is a parameter or floating-point buffer name as in
    `ParamLayout` (for example ``"features.0.weight"`` or
    ``"features.1.running_mean"``). Each unit of the permutation owns
    ``block`` consecutive entries of the axis, so the axis has
    ``size * block`` entries.
    """

    tensor: str
    axis: int
    block: int = 1


AxisLike = PermutedAxis | tuple[str, int] | tuple[str, int, int]
"""A permuted axis, or a tuple ``(tensor, axis)`` or ``(tensor, axis, block)``."""


class PermutationSpec:
    """Named permutations of hidden units and the tensor axes each acts on.

    Parameters
    ----------
    layout : ParamLayout or nn.Module
        The architecture; a module is read with `ParamLayout.of`.
    axes : mapping
        For each permutation name, the axes it acts on: `PermutedAxis`
        values or tuples ``(tensor, axis)`` or ``(tensor, axis, block)``.
        The first axis fixes the number of units.

    Raises
    ------
    TypeError
        If `layout` is not a module or layout, or `axes` is not a mapping.
    PermutationSpecError
        If a tensor name is not in the layout, an axis does not exist or
        has a size other than ``units * block``, an axis is given twice, a
        permutation has no axes, or its axes are not a list of pairs.

    Examples
    --------
    A two-layer perceptron ``nn.Sequential(nn.Linear(4, 8), nn.ReLU(),
    nn.Linear(8, 2))`` has one permutation of its 8 hidden units::

        PermutationSpec(model, {"hidden": [("0.weight", 0), ("0.bias", 0),
                                           ("2.weight", 1)]})
    """

    def __init__(
        self,
        layout: ParamLayout | nn.Module,
        axes: Mapping[str, Iterable[AxisLike]],
    ) -> None:
        if isinstance(layout, nn.Module):
            layout = ParamLayout.of(layout)
        if not isinstance(layout, ParamLayout):
            raise TypeError(
                f"layout must be an nn.Module or a ParamLayout; got"
                f" {type(layout).__name__} {_short(layout)}. Pass the model itself or"
                " ParamLayout.of(model)"
            )
        if not isinstance(axes, Mapping):
            raise TypeError(
                f"axes must be a mapping from permutation name to a list of (tensor,"
                f" axis) pairs; got {type(axes).__name__} {_short(axes)}. Pass for"
                " example {'hidden': [('0.weight', 0), ('2.weight', 1)]}"
            )
        self.layout = layout
        shapes = dict(zip(layout.names, layout.shapes))
        shapes.update(zip(layout.buffer_names, layout.buffer_shapes))
        self._shapes = shapes

        normalized = {
            name: tuple(_as_axis(name, item) for item in _axis_items(name, items))
            for name, items in axes.items()
        }
        self.axes: dict[str, tuple[PermutedAxis, ...]] = normalized
        self.sizes: dict[str, int] = {}
        self._by_tensor: dict[str, dict[int, tuple[str, int]]] = {}
        for name, items in normalized.items():
            self.sizes[name] = self._validate(name, items)

    @property
    def names(self) -> tuple[str, ...]:
        """The permutation names, in the order they were given."""
        return tuple(self.axes)

    def shape_of(self, tensor: str) -> tuple[int, ...] | None:
        """Return the layout's shape of a parameter or buffer, or None if it has none."""
        return self._shapes.get(tensor)

    def axes_of(self, tensor: str) -> dict[int, tuple[str, int]]:
        """Return the permuted axes of a tensor: axis -> (permutation, block)."""
        return dict(self._by_tensor.get(tensor, {}))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}: {size}" for name, size in self.sizes.items())
        return f"PermutationSpec({{{sizes}}})"

    def _validate(self, name: str, items: tuple[PermutedAxis, ...]) -> int:
        """Check one permutation's axes against the layout and return its size."""
        if not items:
            raise PermutationSpecError(
                f"permutation {name!r} has no axes; give at least one"
                " (tensor, axis) pair or remove it"
            )
        size = 0
        for index, item in enumerate(items):
            length = self._axis_length(name, item)
            if index == 0:
                if length % item.block:
                    raise PermutationSpecError(
                        f"permutation {name!r}: axis {item.axis} of {item.tensor!r}"
                        f" has {length} entries, which is not a multiple of"
                        f" block={item.block}; fix the block"
                    )
                size = length // item.block
            elif length != size * item.block:
                first = items[0]
                hint = "fix the axis or the tensor name"
                if size and length % size == 0:
                    hint += (
                        f", or set block={length // size} if the axis is a channel"
                        " axis flattened channel-major before a Linear layer"
                    )
                raise PermutationSpecError(
                    f"permutation {name!r}: axis {item.axis} of {item.tensor!r} has"
                    f" {length} entries, but the permutation has {size} units (set"
                    f" by axis {first.axis} of {first.tensor!r}) of {item.block}"
                    f" entries each; {hint}"
                )
            claimed = self._by_tensor.setdefault(item.tensor, {})
            if item.axis in claimed and claimed[item.axis][0] == name:
                raise PermutationSpecError(
                    f"permutation {name!r} lists axis {item.axis} of {item.tensor!r}"
                    " twice; remove one entry"
                )
            if item.axis in claimed:
                other = claimed[item.axis][0]
                raise PermutationSpecError(
                    f"axis {item.axis} of {item.tensor!r} is given to both"
                    f" {other!r} and {name!r}; an axis carries one permutation, so"
                    " merge the two or remove one entry"
                )
            claimed[item.axis] = (name, item.block)
        return size

    def _axis_length(self, name: str, item: PermutedAxis) -> int:
        for field, value in (("axis", item.axis), ("block", item.block)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise PermutationSpecError(
                    f"permutation {name!r}: {field}={value!r} on {item.tensor!r} must"
                    " be an int"
                )
        shape = self._shapes.get(item.tensor)
        if shape is None:
            raise PermutationSpecError(
                f"permutation {name!r}: {item.tensor!r} is not a parameter or"
                f" floating-point buffer of the model; {_name_hint(item.tensor, self._shapes)}"
            )
        if not 0 <= item.axis < len(shape):
            raise PermutationSpecError(
                f"permutation {name!r}: {item.tensor!r} has shape {shape}, so it has"
                f" no axis {item.axis}; use an axis from 0 to {len(shape) - 1}"
            )
        if item.block < 1:
            raise PermutationSpecError(
                f"permutation {name!r}: block={item.block} on {item.tensor!r} must be"
                " at least 1"
            )
        return shape[item.axis]


def _short(value: object, limit: int = 80) -> str:
    """Return ``repr(value)``, cut to about `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _axis_items(name: str, items: object) -> Iterable[object]:
    """Return one permutation's axes, rejecting a lone name or pair given for a list."""
    if isinstance(items, str):
        raise PermutationSpecError(
            f"permutation {name!r}: its axes are the string {items!r}, not a list of"
            f" (tensor, axis) pairs; write for example [({items!r}, 0)]"
        )
    if isinstance(items, tuple) and items and isinstance(items[0], str):
        raise PermutationSpecError(
            f"permutation {name!r}: its axes are the single pair {items!r}, not a"
            f" list of (tensor, axis) pairs; write [{items!r}]"
        )
    if not isinstance(items, Iterable):
        raise PermutationSpecError(
            f"permutation {name!r}: its axes are {type(items).__name__}"
            f" {_short(items)}, not a list of (tensor, axis) pairs"
        )
    return items


def _as_axis(name: str, item: object) -> PermutedAxis:
    if isinstance(item, PermutedAxis):
        return item
    if isinstance(item, tuple) and len(item) in (2, 3):
        return PermutedAxis(*item)
    if isinstance(item, str):
        raise PermutationSpecError(
            f"permutation {name!r}: {item!r} is a tensor name without an axis; give"
            f" a pair ({item!r}, axis), for example ({item!r}, 0)"
        )
    raise PermutationSpecError(
        f"permutation {name!r}: {item!r} is not a PermutedAxis or a tuple"
        " (tensor, axis) or (tensor, axis, block)"
    )


def _name_hint(tensor: str, shapes: Mapping[str, tuple[int, ...]]) -> str:
    if tensor.endswith("num_batches_tracked"):
        return (
            "integer buffers such as num_batches_tracked are counters that no"
            " permutation changes, so remove the entry"
        )
    close = difflib.get_close_matches(tensor, list(shapes), n=3)
    if close:
        return f"did you mean {', '.join(map(repr, close))}?"
    return "the valid names are ParamLayout.of(model).names and .buffer_names"


# Deriving a spec from a module --------------------------------------------------

_Kind = Literal["features", "channels", "flattened"]

# Layers that act on each unit (or channel) separately, so they commute with
# any permutation of the units.
_ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
)
_CHANNEL_POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)

# Classes whose computation the derivation reads. A subclass is treated as
# its nearest base class in this list only if it keeps that class's forward.
_KNOWN_CLASSES: tuple[type[nn.Module], ...] = (
    FeatureClassifier,
    BasicBlock,
    nn.Sequential,
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    *_ELEMENTWISE,
    *_CHANNEL_POOLS,
    nn.Flatten,
    nn.Unflatten,
)

_UNKNOWN_MODULE = (
    "is not a module the derivation knows (nn.Sequential, FeatureClassifier,"
    " BasicBlock, Linear, convolution, BatchNorm, pooling, Flatten or an"
    " elementwise activation)"
)

# Methods through which a module's call reaches its computation: a subclass
# that overrides one of them may compute something other than its base class.
_FORWARD_METHODS = (
    "forward",
    "__call__",
    "_call_impl",
    "_wrapped_call_impl",
    "_conv_forward",
    "__iter__",
)


@dataclass(frozen=True)
class _State:
    """The permutation carried by a layer's output and where its units lie.

    ``perm`` is None while the output is not permuted (the input). ``kind``
    is ``"features"`` for a (batch, units) tensor, ``"channels"`` for
    (batch, channels, ...) and ``"flattened"`` for channels flattened
    channel-major into (batch, channels * positions).
    """

    perm: str | None
    kind: _Kind


class _SpecBuilder:
    """Walk a module in execution order and record the axes of each permutation."""

    def __init__(self, module: nn.Module) -> None:
        self.layout = ParamLayout.of(module)
        self.tensors = set(self.layout.names) | set(self.layout.buffer_names)
        self.shapes = dict(zip(self.layout.names, self.layout.shapes))
        self.axes: dict[str, list[PermutedAxis]] = {}

    def add(self, perm: str | None, tensor: str, axis: int, block: int = 1) -> None:
        if perm is not None and tensor in self.tensors:
            self.axes.setdefault(perm, []).append(PermutedAxis(tensor, axis, block))

    def walk(self, module: nn.Module, path: str, state: _State) -> _State:
        _check_plain(module, path)
        if isinstance(module, FeatureClassifier):
            state = self.walk(module.features, _join(path, "features"), state)
            return self.walk(module.head, _join(path, "head"), state)
        if isinstance(module, nn.Sequential):
            # _modules, not named_children, which lists a reused module once.
            for name, child in module._modules.items():
                if child is not None:
                    state = self.walk(child, _join(path, name), state)
            return state
        if isinstance(module, BasicBlock):
            return self.basic_block(module, path, state)
        if isinstance(module, (nn.Linear, _ConvNd)):
            return self.layer(module, path, state)
        return self.passive(module, path, state)

    def layer(
        self,
        module: nn.Module,
        path: str,
        state: _State,
        output: _State | None = None,
    ) -> _State:
        """Record a Linear or convolution.

        Its outputs get a new permutation named `path`, or the permutation of
        `output` when that is given (a residual branch joining a stream).
        """
        kind: _Kind
        if isinstance(module, nn.Linear):
            inputs, kind = module.in_features, "features"
            if state.perm is not None and state.kind == "channels":
                _unsupported(
                    module,
                    path,
                    "is applied to a tensor with channels, without a Flatten before it",
                )
        else:
            assert isinstance(module, _ConvNd)
            if module.transposed or module.groups != 1:
                _unsupported(module, path, "is transposed or grouped")
            inputs, kind = module.in_channels, "channels"
            if state.perm is not None and state.kind != "channels":
                _unsupported(module, path, "comes after a Flatten")

        block = 1
        if state.perm is not None and state.kind == "flattened":
            units = self.size(state.perm)
            if inputs % units:
                _unsupported(
                    module,
                    path,
                    f"has {inputs} inputs, which are not whole blocks of {units}"
                    " flattened channels",
                )
            block = inputs // units
        self.add(state.perm, _join(path, "weight"), 1, block)

        out = path if output is None else output.perm
        self.add(out, _join(path, "weight"), 0)
        self.add(out, _join(path, "bias"), 0)
        return _State(out, kind)

    def basic_block(self, block: BasicBlock, path: str, state: _State) -> _State:
        """Record a residual block: one stream permutation across an identity shortcut.

        The block returns ReLU(branch(x) + shortcut(x)), so the branch's
        output must carry the same permutation as the shortcut's. Through an
        identity shortcut that is the input's permutation. A projection
        shortcut starts a new one, named after its first layer.
        """
        if state.perm is not None and state.kind != "channels":
            _unsupported(block, path, "comes after a Flatten")
        shortcut = self.walk(block.shortcut, _join(path, "shortcut"), state)
        _check_plain(block.conv1, _join(path, "conv1"))
        _check_plain(block.conv2, _join(path, "conv2"))
        inner = self.layer(block.conv1, _join(path, "conv1"), state)
        inner = self.walk(block.bn1, _join(path, "bn1"), inner)
        out = self.layer(block.conv2, _join(path, "conv2"), inner, shortcut)
        self.walk(block.bn2, _join(path, "bn2"), out)
        return shortcut

    def passive(self, module: nn.Module, path: str, state: _State) -> _State:
        """Record a layer without a permutation of its own (norms, activations, reshapes)."""
        if isinstance(module, _BatchNorm):
            if state.perm is not None and state.kind == "flattened":
                _unsupported(module, path, "comes after a Flatten")
            for tensor in ("weight", "bias", "running_mean", "running_var"):
                self.add(state.perm, _join(path, tensor), 0)
            return state
        if isinstance(module, _ELEMENTWISE):
            return state
        if isinstance(module, _CHANNEL_POOLS):
            if state.perm is not None and state.kind != "channels":
                _unsupported(module, path, "is applied to a tensor without channels")
            return state
        if isinstance(module, nn.Flatten):
            if state.perm is None or state.kind == "features":
                return state
            if module.start_dim != 1 or module.end_dim != -1:
                _unsupported(module, path, "flattens other axes than 1 to -1")
            return _State(state.perm, "flattened")
        if isinstance(module, nn.Unflatten) and state.perm is None:
            return state
        _unsupported(module, path, _UNKNOWN_MODULE)

    def size(self, perm: str) -> int:
        first = self.axes[perm][0]
        return self.shapes[first.tensor][first.axis] // first.block


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_plain(module: nn.Module, path: str) -> None:
    """Reject a module whose call may compute more than its class describes.

    Hooks and parametrizations run code around or inside the module's call,
    and a subclass may override its base class's forward. The derivation
    reads a module's computation from its class alone, so any of these could
    make it derive a spec that changes the model's outputs.
    """
    patched = sorted({"forward", "_call_impl"} & set(vars(module)))
    if patched:
        _unsupported(
            module,
            path,
            f"has {' and '.join(patched)} set on the instance, which replaces its"
            " class's",
        )
    if parametrize.is_parametrized(module):
        _unsupported(
            module,
            path,
            "is parametrized (torch.nn.utils.parametrize), so its weights are"
            " computed from other tensors",
        )
    if module._forward_hooks or module._forward_pre_hooks:
        _unsupported(
            module,
            path,
            "has forward hooks or forward pre-hooks, which may change its inputs"
            " or outputs (remove them before deriving the spec)",
        )
    known = next((cls for cls in type(module).__mro__ if cls in _KNOWN_CLASSES), None)
    if known is None:
        _unsupported(module, path, _UNKNOWN_MODULE)
    if known is type(module):
        return
    for method in _FORWARD_METHODS:
        if getattr(type(module), method, None) is not getattr(known, method, None):
            base = _class_name(known)
            _unsupported(
                module,
                path,
                f"is a subclass of {base} that overrides {method}, so it may"
                f" compute something other than {base} does",
            )


def _check_no_shared_modules(model: nn.Module) -> None:
    """Reject a model that uses one module with tensors at two places (tied layers).

    A tied layer's units would need one permutation at both places, which
    this derivation does not express. A shared module without parameters or
    buffers (one ReLU object used twice) is accepted: the walk visits every
    place it is used.
    """
    owners: dict[int, str] = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        first = owners.setdefault(id(tensor), name)
        if first != name:
            raise PermutationSpecError(
                f"cannot derive a permutation spec: parameter {name!r} is the same"
                f" tensor as {first!r} (a weight shared between two layers), and"
                " both layers' units would need one permutation; write a"
                " PermutationSpec for this model by hand and test it with"
                " check_permutation_spec"
            )
    first_path: dict[int, str] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        seen = first_path.setdefault(id(module), path)
        has_tensors = any(True for _ in module.parameters()) or any(
            True for _ in module.buffers()
        )
        if seen != path and has_tensors:
            _unsupported(
                module,
                path,
                f"is the same module object as {seen or 'the model'!r}, used twice"
                " (tied or shared layers)",
            )


def _class_name(cls: type) -> str:
    """Return a class's name as users import it, such as ``nn.Linear``."""
    if cls.__module__.startswith("torch.nn."):
        return f"nn.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_no_global_hooks() -> None:
    """Reject deriving a spec while a global module hook is registered."""
    registries = {
        "register_module_forward_hook": module_globals._global_forward_hooks,
        "register_module_forward_pre_hook": module_globals._global_forward_pre_hooks,
    }
    for register, hooks in registries.items():
        if hooks:
            raise PermutationSpecError(
                f"cannot derive a permutation spec: {len(hooks)} global hook(s)"
                f" registered with torch.nn.modules.module.{register} run on every"
                " module call and may change its inputs or outputs; remove them"
                " before deriving the spec, or write a PermutationSpec by hand and"
                " test it with check_permutation_spec"
            )


def _unsupported(module: nn.Module, path: str, problem: str) -> NoReturn:
    where = f"module {path!r}" if path else "the model"
    raise PermutationSpecError(
        f"cannot derive a permutation spec: {where} ({type(module).__name__})"
        f" {problem}; write a PermutationSpec for this model by hand and test it with"
        " check_permutation_spec"
    )


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """Derive the permutation spec of a model's hidden units.

    Every Linear layer and convolution, except the last, gets a permutation of
    its outputs, named after the layer (``"features.0"``). The layers that
    follow it pick it up: a BatchNorm on its features or channels (weight,
    bias, running mean and running variance), and the next Linear or
    convolution on its input axis. A channel axis flattened before a Linear
    layer moves in blocks of the positions per channel.

    A residual `learning.models.BasicBlock` adds its branch to its shortcut,
    so the two must carry the same permutation. Blocks joined by identity
    shortcuts therefore share one permutation of the residual stream, named
    after the layer that started it (``"features.stem"`` for the stem and
    stage 1 of ResNet-18). A projection shortcut starts a new stream
    permutation, named after its convolution
    (``"features.stage2.0.shortcut.0"``), and each block's inner channels
    get their own (``"features.stage1.0.conv1"``).

    The model's outputs are never permuted: the permutation that reaches the
    output is dropped.

    Parameters
    ----------
    model : nn.Module
        A `FeatureClassifier` from `learning.models.build_model`, or an
        `nn.Sequential` of Linear layers, convolutions, BatchNorm, pooling,
        Flatten and elementwise activations.

    Raises
    ------
    PermutationSpecError
        If the model contains a module the derivation does not handle: an
        unknown class, a subclass of a known class that overrides its
        forward, a module with forward hooks or pre-hooks, or a parametrized
        module (`torch.nn.utils.parametrize`). Also raised while a global
        forward hook or pre-hook is registered. Write a `PermutationSpec` by
        hand for such a model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be an nn.Module; got {type(model).__name__} {_short(model)}"
        )
    _check_no_global_hooks()
    _check_no_shared_modules(model)
    builder = _SpecBuilder(model)
    final = builder.walk(model, "", _State(None, "features"))
    if final.perm is not None:
        del builder.axes[final.perm]
    spec = PermutationSpec(builder.layout, builder.axes)
    logger.debug("derived %r for %s", spec, type(model).__name__)
    return spec


# Applying permutations ----------------------------------------------------------


def random_permutation(
    spec: PermutationSpec, generator: torch.Generator | int | None = None
) -> Permutations:
    """Draw one uniformly random permutation for every name of a spec (on the CPU).

    `generator` is a CPU `torch.Generator`, an int seed for a new one, or
    None for torch's global generator.
    """
    _check_spec_type(spec)
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(_checked_seed(generator))
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, an int seed or None; got"
            f" {type(generator).__name__} {_short(generator)}"
        )
    return {
        name: torch.randperm(size, generator=generator)
        for name, size in spec.sizes.items()
    }


def identity_permutation(spec: PermutationSpec) -> Permutations:
    """Return the identity permutation for every name of a spec (on the CPU)."""
    return {name: torch.arange(size) for name, size in spec.sizes.items()}


def inverse_permutation(perms: Mapping[str, torch.Tensor]) -> Permutations:
    """Return the inverse of each permutation: applying both is the identity."""
    return {name: torch.argsort(perm) for name, perm in perms.items()}


@overload
def apply_permutation(
    spec: PermutationSpec, params: ParamPoint, perms: Mapping[str, torch.Tensor]
) -> ParamPoint: ...


@overload
def apply_permutation(
    spec: PermutationSpec,
    params: Mapping[str, torch.Tensor],
    perms: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]: ...


def apply_permutation(
    spec: PermutationSpec,
    params: ParamPoint | Mapping[str, torch.Tensor],
    perms: Mapping[str, torch.Tensor],
) -> ParamPoint | dict[str, torch.Tensor]:
    """Permute a network's hidden units.

    Parameters
    ----------
    spec : PermutationSpec
        The permutations and the axes they act on.
    params : ParamPoint or mapping
        A point in the spec's layout (its buffers, when present, are
        permuted too), or named tensors such as a ``state_dict()``. Names
        the spec does not mention, such as ``num_batches_tracked``, are
        returned unchanged.
    perms : mapping
        One permutation per name of the spec.

    Returns
    -------
    ParamPoint or dict
        The permuted network, of the same kind as `params`, on the same
        device. Applying ``perms`` and then ``inverse_permutation(perms)``
        gives `params` back exactly.

    Raises
    ------
    TypeError
        If `spec` is not a PermutationSpec, or `params` or a permutation
        has the wrong type.
    PermutationSpecError
        If `perms` misses a name of the spec, has an unknown name, or
        contains something that is not a permutation of the right size.
    """
    _check_spec_type(spec)
    _check_permutations(spec, perms)
    if isinstance(params, ParamPoint):
        tensors = _tensors_of(spec, params)
        permuted = {
            name: _permute(spec, name, tensor, perms)
            for name, tensor in tensors.items()
        }
        return _point_of(spec, permuted, params)
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a ParamPoint or a mapping from name to tensor (such as"
            f" a state_dict()); got {type(params).__name__} {_short(params)}"
        )
    for name, tensor in params.items():
        expected = spec.shape_of(name)
        if expected is not None and tuple(tensor.shape) != expected:
            raise PermutationSpecError(
                f"{name!r} has shape {tuple(tensor.shape)}, but the spec's layout"
                f" gives it shape {expected}; build the spec from this model"
            )
    return {
        name: _permute(spec, name, tensor, perms) for name, tensor in params.items()
    }


def _check_spec_type(spec: object) -> None:
    if not isinstance(spec, PermutationSpec):
        raise TypeError(
            f"spec must be a PermutationSpec; got {type(spec).__name__}"
            f" {_short(spec)}. Derive one with permutation_spec(model) or write one"
            " with PermutationSpec(model, axes)"
        )


def _checked_seed(seed: object) -> int:
    """Return `seed` if it is a non-negative int, else raise."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int; got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed = {seed} is negative; use an int >= 0")
    return seed


def _check_permutations(
    spec: PermutationSpec, perms: Mapping[str, torch.Tensor]
) -> None:
    if not isinstance(perms, Mapping):
        raise TypeError(
            f"permutations must be a mapping from name to tensor; got"
            f" {type(perms).__name__} {_short(perms)}"
        )
    missing = [name for name in spec.names if name not in perms]
    unknown = [name for name in perms if name not in spec.sizes]
    if missing or unknown:
        raise PermutationSpecError(
            f"permutations do not match the spec: missing {missing}, unknown"
            f" {unknown}; give exactly one per name of the spec"
        )
    for name, perm in perms.items():
        size = spec.sizes[name]
        if not isinstance(perm, torch.Tensor):
            raise TypeError(
                f"permutation {name!r} has type {type(perm).__name__}, not"
                " torch.Tensor; pass an int64 tensor such as"
                " torch.as_tensor(perm, dtype=torch.long)"
            )
        valid = (
            perm.ndim == 1
            and perm.numel() == size
            and not perm.is_floating_point()
            and bool(torch.equal(torch.sort(perm.cpu()).values, torch.arange(size)))
        )
        if not valid:
            raise PermutationSpecError(
                f"permutation {name!r} must be an integer tensor containing each of"
                f" 0..{size - 1} once; got {perm!r}"
            )


def _block_index(perm: torch.Tensor, block: int, device: torch.device) -> torch.Tensor:
    """Return the entry index that moves whole blocks of `block` entries."""
    perm = perm.to(device=device, dtype=torch.long)
    if block == 1:
        return perm
    offsets = torch.arange(block, device=device)
    return (perm[:, None] * block + offsets).reshape(-1)


def _permute(
    spec: PermutationSpec,
    name: str,
    tensor: torch.Tensor,
    perms: Mapping[str, torch.Tensor],
    skip_axis: int | None = None,
) -> torch.Tensor:
    """Apply every permutation on the tensor's axes, except on `skip_axis`."""
    for axis, (perm, block) in spec.axes_of(name).items():
        if axis != skip_axis:
            index = _block_index(perms[perm], block, tensor.device)
            tensor = tensor.index_select(axis, index)
    return tensor


def _tensors_of(spec: PermutationSpec, point: ParamPoint) -> dict[str, torch.Tensor]:
    """Split a point into named parameters and, when it has them, buffers."""
    tensors = spec.layout.unflatten(point.vector)
    if point.buffers is not None:
        tensors.update(spec.layout.unflatten_buffers(point.buffers))
    return tensors


def _point_of(
    spec: PermutationSpec, tensors: Mapping[str, torch.Tensor], like: ParamPoint
) -> ParamPoint:
    """Join named tensors into a point with buffers exactly when `like` has them."""
    layout = spec.layout
    vector = torch.cat([tensors[name].reshape(-1) for name in layout.names])
    buffers = None
    if like.buffers is not None:
        pieces = [tensors[name].reshape(-1) for name in layout.buffer_names]
        buffers = torch.cat(pieces) if pieces else like.buffers.clone()
    return ParamPoint(vector, buffers)


# Checking a spec ----------------------------------------------------------------


@dataclass(frozen=True)
class SpecCheck:
    """The outcome of `check_permutation_spec`.

    ``max_difference`` is the largest absolute change of a logit under the
    random permutations, and ``tolerance`` the largest change accepted
    (``rtol`` times the largest absolute logit, or times 1 when the logits
    are smaller). ``failing`` names the permutations that change the
    outputs when applied alone, with all others the identity.
    """

    max_difference: float
    tolerance: float
    trials: int
    failing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether every trial kept the outputs within the tolerance."""
        return self.max_difference <= self.tolerance


def check_permutation_spec(
    model: nn.Module,
    spec: PermutationSpec,
    x: torch.Tensor,
    *,
    trials: int = 2,
    noise: float = 1e-2,
    rtol: float | None = None,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> SpecCheck:
    """Test that random permutations of a spec leave a model's outputs unchanged.

    Each trial draws a permutation without fixed points (a derangement) for
    every name of the spec, except that a permutation of one unit is the
    identity. It applies them to a copy of the model and compares the logits
    on `x` in eval mode with the unpermuted copy's. A spec that names the wrong axes, or
    gives two permutations where the model forces one (such as the two
    sides of an identity shortcut), changes the outputs.

    Parameters
    ----------
    model : nn.Module
        The model; it is copied, not changed.
    spec : PermutationSpec
        The spec to test, in the model's layout.
    x : Tensor
        Inputs on which the outputs are compared.
    trials : int
        Number of random permutations tested.
    noise : float
        Standard deviation of Gaussian noise added to every parameter of the
        copy first. Units with equal weights (a layer initialized to zero)
        can be swapped without changing the outputs even when the spec is
        wrong, and the noise makes them differ. Use 0 to test the weights as
        given. Buffers get no noise.
    rtol : float, optional
        Accepted change relative to the largest absolute logit, or to 1 if
        that is smaller. By default it is the square root of the machine
        epsilon of `dtype` (1.5e-8 for float64).
    dtype : torch.dtype
        Floating-point type of the copy and of `x` during the test.
    seed : int
        Seed of the noise and of the permutations.
    raise_on_failure : bool
        Raise when a trial changes the outputs; otherwise return the
        failing report.

    Returns
    -------
    SpecCheck
        The largest change seen, the tolerance, and, when the check failed,
        the permutations that change the outputs on their own.

    Raises
    ------
    TypeError
        If `model`, `spec`, `x` or `dtype` has the wrong type (`dtype` must
        be a floating-point type).
    PermutationSpecError
        If the spec's layout is not the model's, or, with `raise_on_failure`,
        if a permutation changed the outputs.
    ValueError
        If `x` is empty or not finite, `trials` is below 1, `noise` or
        `rtol` is negative or not finite, `seed` is negative, or the outputs
        on `x` are not finite.
    """
    _check_model_and_spec(model, spec)
    _check_inputs(x, "x")
    _check_check_options(trials, noise, rtol, dtype)
    _checked_seed(seed)
    if rtol is None:
        rtol = math.sqrt(torch.finfo(dtype).eps)

    generator = torch.Generator().manual_seed(seed)
    work = copy.deepcopy(model).to(dtype).eval()
    tensors = _module_tensors(work, spec.layout)
    if noise > 0:
        for name in spec.layout.names:
            tensor = tensors[name]
            draw = torch.randn(tensor.shape, generator=generator, dtype=dtype)
            tensors[name] = tensor + noise * draw.to(tensor.device)
    device = next(iter(tensors.values())).device if tensors else x.device
    inputs = x.to(device=device, dtype=dtype)

    with torch.no_grad():
        reference = functional_call(work, tensors, (inputs,))
        if not bool(torch.isfinite(reference).all()):
            raise ValueError(
                "the model's outputs on x are not all finite, so no change can be"
                " measured; check the weights and inputs, or lower noise"
            )
        tolerance = rtol * max(1.0, reference.abs().max().item())
        difference = 0.0
        for _ in range(trials):
            perms = {
                name: _derangement(size, generator) for name, size in spec.sizes.items()
            }
            permuted = apply_permutation(spec, tensors, perms)
            output = functional_call(work, permuted, (inputs,))
            difference = max(difference, (output - reference).abs().max().item())

        failing: tuple[str, ...] = ()
        if difference > tolerance:
            failing = _failing_permutations(
                work, spec, tensors, inputs, reference, tolerance, generator
            )

    report = SpecCheck(difference, tolerance, trials, failing)
    logger.debug(
        "permutation spec check: max change %.3g, tolerance %.3g, failing %s",
        difference,
        tolerance,
        failing,
    )
    if not report.ok and raise_on_failure:
        raise PermutationSpecError(
            f"the permutation spec changes the model's outputs: max logit change"
            f" {difference:.3g} > tolerance {tolerance:.3g}. The permutations that"
            f" change them on their own: {list(failing) or 'none (only in combination)'}."
            f" Check the axes of these permutations{_failure_hints(model, spec)}"
        )
    return report


def _check_model_and_spec(model: object, spec: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be an nn.Module; got {type(model).__name__} {_short(model)}"
        )
    _check_spec_type(spec)
    assert isinstance(spec, PermutationSpec)
    if spec.layout != ParamLayout.of(model):
        raise PermutationSpecError(
            "the spec was built for another architecture: its layout differs from"
            " ParamLayout.of(model); build the spec from this model"
        )


def _check_inputs(x: object, label: str) -> None:
    """Reject inputs that are not a non-empty batch of finite values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{label} must be a tensor of inputs, shape (n, ...); got"
            f" {type(x).__name__}"
        )
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(
            f"{label} of shape {tuple(x.shape)} contains no examples; pass a batch of"
            " shape (n, ...) with n >= 1"
        )
    if x.is_floating_point() or x.is_complex():
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(
                f"{label} contains NaN or inf in {bad} of its {x.numel()} entries;"
                " remove or replace those examples"
            )


def _check_check_options(
    trials: object, noise: object, rtol: object, dtype: object
) -> None:
    """Validate the numeric options of `check_permutation_spec`."""
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ValueError(f"trials = {trials!r} must be an int of at least 1")
    if not _is_finite_nonnegative(noise):
        raise ValueError(
            f"noise = {noise!r} must be a finite number >= 0: the standard deviation"
            " of the noise added to the parameters, 0 to test the weights as given"
        )
    if rtol is not None and not _is_finite_nonnegative(rtol):
        raise ValueError(
            f"rtol = {rtol!r} must be a finite number >= 0 (the accepted change"
            " relative to the largest logit), or None for the default"
        )
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"dtype = {dtype!r} must be a floating-point torch.dtype, such as"
            " torch.float64 (the default) or torch.float32"
        )


def _is_finite_nonnegative(value: object) -> bool:
    """Return whether `value` is an int or float from 0 up to, not including, inf."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return 0 <= value < math.inf


def _failure_hints(model: nn.Module, spec: PermutationSpec) -> str:
    """Return hints on common causes of a failed check that apply to this model."""
    hints = []
    for path, module in model.named_modules():
        if not isinstance(module, _BatchNorm):
            continue
        weight = spec.axes_of(_join(path, "weight")).get(0)
        if weight is None:
            continue
        missing = [
            statistic
            for statistic in ("running_mean", "running_var")
            if spec.shape_of(_join(path, statistic)) is not None
            and spec.axes_of(_join(path, statistic)).get(0, (None,))[0] != weight[0]
        ]
        if missing:
            pairs = ", ".join(f"({_join(path, name)!r}, 0)" for name in missing)
            hints.append(
                f"BatchNorm {path!r} has its weight permuted by {weight[0]!r} but not"
                f" its {' and '.join(missing)}, so give {pairs} to {weight[0]!r}"
            )
    residual = any(
        isinstance(module, BasicBlock) or name.rsplit(".", 1)[-1] in _SHORTCUT_NAMES
        for name, module in model.named_modules()
    )
    if residual:
        hints.append(
            "tensors joined by a residual (identity) shortcut must share one"
            " permutation"
        )
    return "".join(f"; {hint}" for hint in hints)


# Submodule names that residual architectures commonly give their shortcuts.
_SHORTCUT_NAMES = ("shortcut", "downsample", "skip", "residual")


def _module_tensors(module: nn.Module, layout: ParamLayout) -> dict[str, torch.Tensor]:
    """Return a module's parameters and floating-point buffers, detached, by name."""
    named: dict[str, torch.Tensor] = dict(module.named_parameters())
    named.update(module.named_buffers())
    names = (*layout.names, *layout.buffer_names)
    return {name: named[name].detach() for name in names}


def _derangement(size: int, generator: torch.Generator) -> torch.Tensor:
    """Draw a uniformly random permutation without fixed points, by rejection.

    About 1 in e draws is a derangement, so few draws are needed. A
    permutation of one unit has a fixed point whatever is drawn, and is
    returned as the identity.
    """
    if size < 2:
        return torch.arange(size)
    while True:
        perm = torch.randperm(size, generator=generator)
        if not bool((perm == torch.arange(size)).any()):
            return perm


def _failing_permutations(
    work: nn.Module,
    spec: PermutationSpec,
    tensors: Mapping[str, torch.Tensor],
    inputs: torch.Tensor,
    reference: torch.Tensor,
    tolerance: float,
    generator: torch.Generator,
) -> tuple[str, ...]:
    """Return the permutations that change the outputs with all others fixed."""
    failing = []
    base = identity_permutation(spec)
    for name, size in spec.sizes.items():
        perms = dict(base)
        perms[name] = _derangement(size, generator)
        output = functional_call(
            work, apply_permutation(spec, tensors, perms), (inputs,)
        )
        if (output - reference).abs().max().item() > tolerance:
            failing.append(name)
    return tuple(failing)


# Weight matching ----------------------------------------------------------------


@dataclass(frozen=True)
class MatchResult:
    """Permutations that align network b to network a, and b after them.

    ``permutations`` (int64, on the CPU) applied to b give ``matched``, on
    b's device. ``distance_before`` and ``distance_after`` are the Euclidean
    distances ||a - b|| and ||a - matched|| over the parameters, and over
    the buffers too when the matching included them. ``iterations`` counts
    passes over all permutations, the last of which changed none of them
    when ``converged`` is true.
    """

    permutations: Permutations
    matched: ParamPoint
    distance_before: float
    distance_after: float
    iterations: int
    converged: bool


def weight_matching(
    spec: PermutationSpec,
    a: ParamPoint,
    b: ParamPoint,
    *,
    max_iter: int = 100,
    seed: int = 0,
    include_buffers: bool = False,
    init: Mapping[str, torch.Tensor] | None = None,
) -> MatchResult:
    """Find permutations of b's hidden units that bring b closest to a.

    Minimizes ||a - pi(b)||^2 over the permutations pi of the spec by
    coordinate descent. Because ||pi(b)|| does not depend on pi, this is the
    same as maximizing the inner product <a, pi(b)>. One step picks one
    permutation, keeps the others fixed, and sets it to the solution of a
    linear assignment problem (`scipy.optimize.linear_sum_assignment`). The
    score of putting b's unit j at position i is the summed inner product of
    a's unit i and b's unit j over every tensor axis the permutation acts on. A step is kept only if it
    raises the inner product. Each pass visits all permutations in a random
    order drawn from `seed`. The search stops after a pass without change,
    or after `max_iter` passes.

    Without `init`, the descent starts from the closer to a of two
    candidates: the identity, and a layer-by-layer matching that solves
    each permutation once from the input side (see `_start`). For b an
    exact permuted copy of a, the layer-by-layer matching is already the
    inverse permutation. Because that start is no farther from a than b
    itself and the descent only takes improving steps,
    ``distance_after <= distance_before`` then holds, up to float rounding.

    The inner products are computed in float64 on the tensors' device, and
    the assignment problems are solved on the CPU.

    Parameters
    ----------
    spec : PermutationSpec
        The permutations and their axes, in the layout of a and b.
    a, b : ParamPoint
        The reference network and the network to permute.
    max_iter : int
        Maximum number of passes over all permutations.
    seed : int
        Seed of the order in which each pass visits the permutations.
    include_buffers : bool
        Also match the floating-point buffers (BatchNorm running statistics),
        which then count in the distances. By default only parameters are
        matched. Either way the returned ``matched`` has its buffers
        permuted with its parameters.
    init : mapping, optional
        Permutations to start the descent from, instead of the closer of
        the identity and the layer-by-layer matching.

    Returns
    -------
    MatchResult

    Raises
    ------
    TypeError
        If `spec` is not a PermutationSpec or a or b is not a ParamPoint.
    ValueError
        If a and b do not fit the spec's layout, only one of them has
        buffers, they have none but the spec permutes buffers or
        `include_buffers` is set, a matched tensor contains NaN or inf, or
        `seed` is negative.
    """
    _check_spec_type(spec)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter = {max_iter!r} must be an int of at least 1")
    _checked_seed(seed)
    _check_pair(spec, a, b, include_buffers)
    tensors_a = _tensors_of(spec, a)
    tensors_b = _tensors_of(spec, b)
    matched_names = set(spec.layout.names)
    if include_buffers:
        matched_names |= set(spec.layout.buffer_names)

    if init is None:
        perms = _start(spec, a, b, tensors_a, tensors_b, matched_names, include_buffers)
    else:
        _check_permutations(spec, init)
        perms = {name: perm.cpu().long() for name, perm in init.items()}
    rng = np.random.default_rng(seed)
    names = list(spec.names)
    converged = False
    iterations = 0
    while iterations < max_iter and not converged:
        iterations += 1
        converged = True
        for index in rng.permutation(len(names)):
            name = names[index]
            if _improve(spec, name, tensors_a, tensors_b, perms, matched_names):
                converged = False
        logger.debug("weight matching pass %d: converged=%s", iterations, converged)
    if not converged:
        logger.warning(
            "weight matching stopped after max_iter = %d passes without converging",
            max_iter,
        )

    matched = apply_permutation(spec, b, perms)
    before = _distance(spec, a, b, include_buffers)
    after = _distance(spec, a, matched, include_buffers)
    # Debug, not info: the main job matches every pair of runs.
    logger.debug(
        "weight matching: distance %.6g -> %.6g in %d passes", before, after, iterations
    )
    return MatchResult(perms, matched, before, after, iterations, converged)


def _check_pair(
    spec: PermutationSpec, a: ParamPoint, b: ParamPoint, include_buffers: bool
) -> None:
    for label, point in (("a", a), ("b", b)):
        if not isinstance(point, ParamPoint):
            raise TypeError(
                f"{label} must be a ParamPoint; got {type(point).__name__}. Wrap a"
                " flat parameter vector as ParamPoint(vector, buffers), with"
                " ParamLayout.of(model).flatten(model) and .flatten_buffers(model)"
            )
        if point.vector.shape != (spec.layout.size,):
            raise ValueError(
                f"{label} has a vector of shape {tuple(point.vector.shape)}, but the"
                f" spec's layout has {spec.layout.size} parameters; build the spec"
                " from the same architecture"
            )
    if (a.buffers is None) != (b.buffers is None):
        raise ValueError(
            "only one of a and b has buffers; give both their buffers or neither"
        )
    if include_buffers and not spec.layout.buffer_size:
        raise ValueError(
            "include_buffers=True, but the model has no floating-point buffers;"
            " leave include_buffers False"
        )
    permuted_buffers = [name for name in spec.layout.buffer_names if spec.axes_of(name)]
    if a.buffers is None and (include_buffers or permuted_buffers):
        moved = " that the permutations move" if permuted_buffers else ""
        raise ValueError(
            f"a and b have no buffers, but the model has"
            f" {_describe_buffers(spec.layout)}{moved}. {_BUFFERS_FIX}"
        )
    for label, point in (("a", a), ("b", b)):
        _check_finite(label, "parameters", point.vector)
        if include_buffers and point.buffers is not None:
            _check_finite(label, "buffers", point.buffers)


_BUFFERS_FIX = (
    "Give each network as ParamPoint(vector, buffers), with buffers ="
    " ParamLayout.of(model).flatten_buffers(model) taken from that network"
)


def _describe_buffers(layout: ParamLayout) -> str:
    names = layout.buffer_names
    return (
        f"{len(names)} floating-point buffers such as {names[0]!r} (BatchNorm"
        " running statistics)"
    )


def _check_finite(label: str, part: str, values: torch.Tensor) -> None:
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise ValueError(
            f"{label} contains NaN or inf in {bad} of its {values.numel()} {part},"
            " so it cannot be matched: the inner products of its units are"
            " undefined. A diverged training run gives such a network; use an"
            " earlier checkpoint or leave the network out"
        )


def _similarity(
    spec: PermutationSpec,
    name: str,
    items: Iterable[PermutedAxis],
    tensors_a: Mapping[str, torch.Tensor],
    tensors_b: Mapping[str, torch.Tensor],
    perms: Mapping[str, torch.Tensor],
) -> np.ndarray | None:
    """Return the inner products of a's and b's units on some axes of a permutation.

    Entry (i, j) sums, over `items`, the inner product of a's unit i with
    b's unit j after b's other axes are permuted by `perms`. None when
    `items` is empty.
    """
    size = spec.sizes[name]
    similarity: torch.Tensor | None = None
    for item in items:
        wa = tensors_a[item.tensor].double()
        wb = _permute(spec, item.tensor, tensors_b[item.tensor], perms, item.axis)
        # After moving the axis to the front, unit i owns rows i*block to
        # (i+1)*block - 1, which reshape gathers into one row per unit.
        rows_a = wa.movedim(item.axis, 0).reshape(size, -1)
        rows_b = wb.double().to(wa.device).movedim(item.axis, 0).reshape(size, -1)
        term = rows_a @ rows_b.T
        similarity = term if similarity is None else similarity + term
    return None if similarity is None else similarity.cpu().numpy()


def _improve(
    spec: PermutationSpec,
    name: str,
    tensors_a: Mapping[str, torch.Tensor],
    tensors_b: Mapping[str, torch.Tensor],
    perms: Permutations,
    matched_names: set[str],
) -> bool:
    """Solve one permutation's assignment problem; keep it if it is better."""
    items = [item for item in spec.axes[name] if item.tensor in matched_names]
    scores = _similarity(spec, name, items, tensors_a, tensors_b, perms)
    if scores is None:
        return False
    rows, columns = linear_sum_assignment(scores, maximize=True)
    current = perms[name].cpu().numpy()
    old = float(scores[rows, current].sum())
    new = float(scores[rows, columns].sum())
    # A gain below 1e-12 relative counts as a tie and keeps the old
    # permutation, so that rounding noise in the float64 sums cannot make
    # equal-score solutions alternate forever.
    if new - old <= 1e-12 * (abs(old) + abs(new)):
        return False
    perms[name] = torch.as_tensor(columns, dtype=torch.long)
    return True


def _start(
    spec: PermutationSpec,
    a: ParamPoint,
    b: ParamPoint,
    tensors_a: Mapping[str, torch.Tensor],
    tensors_b: Mapping[str, torch.Tensor],
    matched_names: set[str],
    include_buffers: bool,
) -> Permutations:
    """Return the closer of the identity and a layer-by-layer matching.

    Coordinate descent from the identity can stop at a local optimum even
    when b is an exact permuted copy of a (observed for a 1-D CNN with 3
    channels per layer).

    The layer-by-layer matching solves each permutation once, using only
    the axes whose tensors have no other permuted axis, or only axes whose
    permutations are already solved. The first layer's weights have an
    unpermuted input axis, so for a permuted copy each step recovers its
    permutation exactly, the next layer then builds on it, and so on along
    the network. A permutation without such an axis uses all of its axes.
    """
    perms = identity_permutation(spec)
    solved: set[str] = set()
    while len(solved) < len(spec.names):
        pending = [name for name in spec.names if name not in solved]
        name, items = pending[0], []
        for candidate in pending:
            items = [
                item
                for item in spec.axes[candidate]
                if item.tensor in matched_names
                and _other_axes_solved(spec, item, solved)
            ]
            if items:
                name = candidate
                break
        if not items:
            items = [item for item in spec.axes[name] if item.tensor in matched_names]
        scores = _similarity(spec, name, items, tensors_a, tensors_b, perms)
        if scores is not None:
            _, columns = linear_sum_assignment(scores, maximize=True)
            perms[name] = torch.as_tensor(columns, dtype=torch.long)
        solved.add(name)

    identity = _distance(spec, a, b, include_buffers)
    layered = _distance(spec, a, apply_permutation(spec, b, perms), include_buffers)
    logger.debug(
        "weight matching start: distance %.6g at the identity, %.6g layer by layer",
        identity,
        layered,
    )
    return perms if layered <= identity else identity_permutation(spec)


def _other_axes_solved(
    spec: PermutationSpec, item: PermutedAxis, solved: set[str]
) -> bool:
    """Return whether every other permuted axis of the item's tensor is solved."""
    return all(
        perm in solved
        for axis, (perm, _) in spec.axes_of(item.tensor).items()
        if axis != item.axis
    )


def _distance(
    spec: PermutationSpec, a: ParamPoint, b: ParamPoint, include_buffers: bool
) -> float:
    """Return the Euclidean distance of two points, over buffers too if asked."""
    squared = (a.vector.double() - b.vector.double().to(a.vector.device)).square().sum()
    if include_buffers and a.buffers is not None and b.buffers is not None:
        gap = a.buffers.double() - b.buffers.double().to(a.buffers.device)
        squared = squared + gap.square().sum()
    return math.sqrt(float(squared))


# Barriers -----------------------------------------------------------------------


@dataclass(frozen=True)
class MatchedBarrier:
    """Loss barriers on the straight line from a to b, before and after matching.

    ``before`` and ``after`` are the full results of `loss_barriers` for
    the pairs (a, b) and (a, matched b). ``barrier_before`` and
    ``barrier_after`` are their single barriers, in nats.
    """

    matching: MatchResult
    barrier_before: float
    barrier_after: float
    before: BarrierMatrix
    after: BarrierMatrix


# The number of inputs on which match_and_barrier checks that matching kept
# b's function: enough to expose a wrong spec, cheap next to the barriers.
_CHECKED_INPUTS = 64


def match_and_barrier(
    model: nn.Module,
    a: ParamPoint,
    b: ParamPoint,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    spec: PermutationSpec | None = None,
    n_alpha: int = 21,
    bn_statistics: BatchNormStatistics = "recompute",
    endpoint_statistics: Literal["stored", "recompute"] = "recompute",
    bn_batches: int | None = None,
    max_iter: int = 100,
    seed: int = 0,
    device: torch.device | None = None,
) -> MatchedBarrier:
    """Match b to a and measure the loss barrier before and after.

    The barrier is that of `learning.homotopy.loss_barriers`: the largest
    excess of the training loss (cross-entropy, nats) on the straight line
    over the chord between its ends, on `n_alpha` evenly spaced points.

    Matching must leave b's function unchanged. After it, the logits of b
    and of the matched b on the first 64 inputs of `x` (eval
    mode, each network with its own buffers) are compared, and a spec that
    changes them is rejected.

    Parameters
    ----------
    model : nn.Module
        The architecture of a and b.
    a, b : ParamPoint
        The two networks, with their buffers when the model has BatchNorm:
        ``ParamPoint(vector, buffers)`` with ``buffers`` from
        ``ParamLayout.flatten_buffers``.
    x, y : Tensor
        Training inputs (n, ...) and integer class labels (n,) for the loss
        and the BatchNorm statistics.
    spec : PermutationSpec, optional
        By default `permutation_spec(model)`.
    n_alpha : int
        Points per line, both ends included; at least 3.
    bn_statistics : {"recompute", "interpolate"}
        How interior points of a line get BatchNorm statistics; see
        `loss_barriers`.
    endpoint_statistics : {"recompute", "stored"}
        With ``"recompute"`` (the default) the ends get BatchNorm statistics
        recomputed on `x`, like every interior point of the line, so that
        all points are normalized the same way. Stored statistics (a moving
        average over training, or arbitrary values) differ from recomputed
        ones, so with ``"stored"`` the line's ends can jump against its
        interior, and a network and its own matched copy can get a barrier
        above 0. With ``"recompute"`` that barrier is 0 up to float
        rounding, as in the main job's barriers by default
        (``homotopy.endpoint_statistics``). ``"stored"`` keeps the stored
        statistics at the ends, as `loss_barriers` does when given the
        stored buffers. Unused without buffers.
    bn_batches : int, optional
        Mini-batches for the recomputation; see `loss_barriers`.
    max_iter, seed : int
        Passed to `weight_matching`.
    device : torch.device, optional
        Where losses are evaluated; by default the device of ``a.vector``.

    Returns
    -------
    MatchedBarrier

    Raises
    ------
    TypeError
        If `spec` is not a PermutationSpec, or a, b, x or y have the wrong
        type.
    ValueError
        If `x` is empty or not finite, `y` is not one integer label in
        ``0..classes-1`` per input, `n_alpha` is below 3, the model has
        buffers that a or b lacks, or an option has an unknown value. Also
        raised by `weight_matching`.
    PermutationSpecError
        If the spec does not fit the model, or the matched b computes
        another function than b.
    """
    if endpoint_statistics not in ("stored", "recompute"):
        raise ValueError(
            f"endpoint_statistics = {endpoint_statistics!r} is not supported; use"
            " 'recompute' or 'stored'"
        )
    if not isinstance(n_alpha, int) or isinstance(n_alpha, bool) or n_alpha < 3:
        raise ValueError(
            f"n_alpha = {n_alpha!r} must be an int of at least 3: the two ends of"
            " the line and at least one point between them"
        )
    _checked_seed(seed)
    if spec is None:
        spec = permutation_spec(model)
    elif not isinstance(spec, PermutationSpec):
        raise TypeError(
            f"spec must be a PermutationSpec or None; got {type(spec).__name__}"
            f" {_short(spec)}. Leave it out to derive one with permutation_spec(model)"
        )
    _check_model_and_spec(model, spec)
    _check_barrier_points(spec.layout, a, b)
    _check_inputs(x, "x")
    _check_labels(x, y)
    if device is None:
        device = a.vector.device
    evaluator = StackedEvaluator(model, device)
    if bn_batches is None:
        bn_batches = max(1, math.ceil(x.shape[0] / evaluator.example_chunk))

    probe = x[:_CHECKED_INPUTS]
    reference = _logits_at(evaluator, b, probe)
    check_label_range(y, reference.shape[-1])
    matching = weight_matching(spec, a, b, max_iter=max_iter, seed=seed)
    _check_same_function(reference, _logits_at(evaluator, matching.matched, probe))

    def barrier(first: ParamPoint, second: ParamPoint) -> BarrierMatrix:
        points = torch.stack([first.vector.cpu(), second.vector.cpu()])
        buffers = None
        if first.buffers is not None and second.buffers is not None:
            buffers = torch.stack([first.buffers.cpu(), second.buffers.cpu()])
            if endpoint_statistics == "recompute" and evaluator.layout.buffer_size:
                buffers = evaluator.recompute_buffers(points, x, bn_batches, buffers)
        return loss_barriers(
            evaluator,
            points,
            x,
            y,
            n_alpha,
            buffers=buffers,
            bn_statistics=bn_statistics,
            bn_batches=bn_batches,
        )

    before = barrier(a, b)
    after = barrier(a, matching.matched)
    result = MatchedBarrier(
        matching,
        float(before.barriers[0, 1]),
        float(after.barriers[0, 1]),
        before,
        after,
    )
    logger.info(
        "loss barrier %.4g before matching, %.4g after",
        result.barrier_before,
        result.barrier_after,
    )
    return result


def _check_barrier_points(layout: ParamLayout, a: object, b: object) -> None:
    for label, point in (("a", a), ("b", b)):
        if not isinstance(point, ParamPoint):
            raise TypeError(
                f"{label} must be a ParamPoint; got {type(point).__name__}. Wrap a"
                " flat parameter vector as ParamPoint(vector, buffers)"
            )
        if layout.buffer_size and point.buffers is None:
            raise ValueError(
                f"{label} has no buffers, but the model has"
                f" {_describe_buffers(layout)}, which the loss depends on."
                f" {_BUFFERS_FIX}"
            )


def _check_labels(x: torch.Tensor, y: object) -> None:
    if not isinstance(y, torch.Tensor):
        raise TypeError(
            f"y must be a tensor of integer class labels; got {type(y).__name__}"
        )
    if y.shape != (x.shape[0],):
        raise ValueError(
            f"y has shape {tuple(y.shape)}, but x has {x.shape[0]} examples; pass"
            " one class label per example, shape (n,)"
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(
            f"y has dtype {y.dtype}, but class labels are integers; pass"
            " y.long() if its values are whole numbers"
        )


def _logits_at(
    evaluator: StackedEvaluator, point: ParamPoint, x: torch.Tensor
) -> torch.Tensor:
    """Return a network's outputs on x, in eval mode with its own buffers."""
    buffers = None if point.buffers is None else point.buffers.cpu()[None]
    return evaluator.outputs(point.vector.cpu()[None], x, buffers=buffers)[0]


def _check_same_function(reference: torch.Tensor, matched: torch.Tensor) -> None:
    """Raise unless the matched network's logits equal b's up to float rounding.

    The tolerance is the square root of the machine epsilon of the logits'
    dtype (3.5e-4 for float32) times the largest finite absolute logit, or
    times 1 when that is smaller. Equal infinities count as no change.
    """
    same = (reference == matched) | (reference.isnan() & matched.isnan())
    change = torch.where(same, 0.0, (matched - reference).abs()).nan_to_num(math.inf)
    difference = float(change.max()) if change.numel() else 0.0
    finite = reference[torch.isfinite(reference)]
    scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
    tolerance = math.sqrt(torch.finfo(reference.dtype).eps) * scale
    if difference > tolerance:
        raise PermutationSpecError(
            f"matching changed b's function: its logits on the first"
            f" {reference.shape[0]} inputs of x changed by up to {difference:.3g}"
            f" (tolerance {tolerance:.3g}), so the permutation spec does not"
            " describe symmetries of this model. Check the spec with"
            " check_permutation_spec(model, spec, x)"
        )
