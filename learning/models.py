"""Networks whose penultimate features the learning functor reads.

Each model is an `nn.Module` with two children: ``features`` (input to
penultimate features) and ``head`` (a linear classifier on the features).
The learning functor evaluates ``features`` by name through
`torch.func.functional_call`, so any module with a submodule of that name
can be used.

Kinds (``ModelConfig.kind``):

- ``mlp``: Linear-ReLU layers on the flattened input.
- ``cnn``: a 1-D CNN on the flattened input, then one Linear-ReLU layer.
- ``cnn2d``: a 2-D CNN on NCHW images (three 3x3 convolutions, two of them
  with stride 2), then one Linear-ReLU layer.
- ``resnet18``: the CIFAR variant of ResNet-18 (He et al., 2016): a 3x3 stem
  convolution without max-pooling, four stages of two BasicBlocks, global
  average pooling. ``features`` ends at the pooled ``8 * width`` vector.
- ``resnet18_nobn``: the same network with identity maps in place of
  BatchNorm and biases in the convolutions.

With ``batch_norm``, the MLP and both CNNs put a BatchNorm layer between
each linear map or convolution and its ReLU.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from learning.config import ModelConfig


class FeatureClassifier(nn.Module):
    """A feature extractor followed by a linear head."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits."""
        logits: torch.Tensor = self.head(self.features(x))
        return logits


class BasicBlock(nn.Module):
    """The two-convolution residual block of ResNet-18.

    The branch is conv3x3 (with `stride`), norm, ReLU, conv3x3, norm. The
    shortcut is the identity, or a strided 1x1 convolution and norm when the
    shape changes. The block returns ReLU(branch(x) + shortcut(x)). Without
    BatchNorm every norm is `nn.Identity` and the convolutions have biases.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, batch_norm: bool
    ) -> None:
        super().__init__()
        bias = not batch_norm  # a BatchNorm's shift makes a convolution bias redundant
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1, bias=bias
        )
        self.bn1 = _norm2d(out_channels, batch_norm)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        self.bn2 = _norm2d(out_channels, batch_norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias),
                _norm2d(out_channels, batch_norm),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ReLU(branch(x) + shortcut(x))."""
        branch = torch.relu(self.bn1(self.conv1(x)))
        branch = self.bn2(self.conv2(branch))
        out: torch.Tensor = torch.relu(branch + self.shortcut(x))
        return out


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Return the (channels, height, width) of image inputs of a given shape.

    A 3-D shape is read as (C, H, W) and a 2-D one as a single-channel
    (H, W). A flat length n is a single-channel square image when n is a
    square (784 -> 1x28x28) and a three-channel one when n / 3 is
    (3072 -> 3x32x32).

    Raises
    ------
    ValueError
        If the shape fits none of these cases.
    """
    if len(input_shape) == 3:
        c, h, w = input_shape
        return c, h, w
    if len(input_shape) == 2:
        h, w = input_shape
        return 1, h, w
    if len(input_shape) == 1:
        n = input_shape[0]
        for channels in (1, 3):
            side = math.isqrt(n // channels)
            if n % channels == 0 and side * side * channels == n:
                return channels, side, side
    raise ValueError(
        f"input shape {input_shape} is not an image: the 2-D models need"
        " (C, H, W), (H, W), or a flat length of s*s or 3*s*s; use kind 'mlp'"
        " or 'cnn' for other inputs"
    )


def build_model(
    config: ModelConfig, input_shape: tuple[int, ...], n_classes: int
) -> FeatureClassifier:
    """Build the network a config names.

    The MLP and the CNNs use PyTorch's default initialization. The ResNets
    use He (Kaiming) normal initialization in fan-out mode for their
    convolutions, and ``resnet18_nobn`` also sets the last convolution of
    each residual branch to zero. Seed the global generator
    (``torch.manual_seed``) before calling this to fix the initialization.

    Raises
    ------
    ValueError
        If a 2-D model is asked for on inputs that are not images.
    """
    if config.kind == "mlp":
        return _mlp(config, input_shape, n_classes)
    if config.kind == "cnn":
        return _cnn1d(config, input_shape, n_classes)
    if config.kind == "cnn2d":
        return _cnn2d(config, input_shape, n_classes)
    return _resnet18(config, input_shape, n_classes)


def _norm1d(channels: int, batch_norm: bool) -> list[nn.Module]:
    return [nn.BatchNorm1d(channels)] if batch_norm else []


def _norm2d(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


def _mlp(
    config: ModelConfig, input_shape: tuple[int, ...], n_classes: int
) -> FeatureClassifier:
    batch_norm = config.has_batch_norm
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for _ in range(config.depth):
        layers += [nn.Linear(width, config.hidden)]
        layers += _norm1d(config.hidden, batch_norm)
        layers += [nn.ReLU()]
        width = config.hidden
    return FeatureClassifier(nn.Sequential(*layers), nn.Linear(width, n_classes))


def _cnn1d(
    config: ModelConfig, input_shape: tuple[int, ...], n_classes: int
) -> FeatureClassifier:
    batch_norm = config.has_batch_norm
    n_inputs = math.prod(input_shape)
    c = config.channels
    length = n_inputs
    for _ in range(2):
        length = (length + 1) // 2  # stride-2 convolutions with padding 1, kernel 3
    features = nn.Sequential(
        nn.Flatten(),
        nn.Unflatten(1, (1, n_inputs)),
        nn.Conv1d(1, c, kernel_size=5, padding=2),
        *_norm1d(c, batch_norm),
        nn.ReLU(),
        nn.Conv1d(c, c, kernel_size=3, stride=2, padding=1),
        *_norm1d(c, batch_norm),
        nn.ReLU(),
        nn.Conv1d(c, c, kernel_size=3, stride=2, padding=1),
        *_norm1d(c, batch_norm),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c * length, config.hidden),
        nn.ReLU(),
    )
    return FeatureClassifier(features, nn.Linear(config.hidden, n_classes))


def _cnn2d(
    config: ModelConfig, input_shape: tuple[int, ...], n_classes: int
) -> FeatureClassifier:
    batch_norm = config.has_batch_norm
    in_channels, height, width = image_shape(input_shape)
    c = config.channels
    for _ in range(2):
        # stride-2 convolutions with kernel 3 and padding 1 halve, rounding up
        height, width = (height + 1) // 2, (width + 1) // 2
    layers: list[nn.Module] = _unflatten_images(input_shape)
    for index, (c_in, c_out) in enumerate(
        [(in_channels, c), (c, 2 * c), (2 * c, 4 * c)]
    ):
        stride = 1 if index == 0 else 2
        layers += [
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not batch_norm),
            _norm2d(c_out, batch_norm),
            nn.ReLU(),
        ]
    layers += [nn.Flatten(), nn.Linear(4 * c * height * width, config.hidden)]
    layers += [nn.ReLU()]
    features = nn.Sequential(*layers)
    return FeatureClassifier(features, nn.Linear(config.hidden, n_classes))


def _unflatten_images(input_shape: tuple[int, ...]) -> list[nn.Module]:
    """Return the layers that turn inputs of `input_shape` into NCHW images."""
    shape = image_shape(input_shape)
    if tuple(input_shape) == shape:
        return []
    return [nn.Flatten(), nn.Unflatten(1, shape)]


def _resnet18(
    config: ModelConfig, input_shape: tuple[int, ...], n_classes: int
) -> FeatureClassifier:
    batch_norm = config.has_batch_norm
    in_channels = image_shape(input_shape)[0]
    w = config.width
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, layer in enumerate(_unflatten_images(input_shape)):
        layers[f"reshape{index}"] = layer
    layers["stem"] = nn.Conv2d(in_channels, w, 3, padding=1, bias=not batch_norm)
    layers["stem_bn"] = _norm2d(w, batch_norm)
    layers["stem_relu"] = nn.ReLU()
    channels = w
    for stage, out_channels in enumerate((w, 2 * w, 4 * w, 8 * w), start=1):
        stride = 1 if stage == 1 else 2
        layers[f"stage{stage}"] = nn.Sequential(
            BasicBlock(channels, out_channels, stride, batch_norm),
            BasicBlock(out_channels, out_channels, 1, batch_norm),
        )
        channels = out_channels
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    model = FeatureClassifier(nn.Sequential(layers), nn.Linear(channels, n_classes))
    _init_resnet(model, zero_last_conv=not batch_norm)
    return model


def _init_resnet(model: nn.Module, zero_last_conv: bool) -> None:
    """Initialize convolutions He-normal (fan-out); optionally zero each branch's end.

    Zeroing ``conv2`` makes every residual branch output 0 at the start, so
    each block begins as ReLU of its shortcut and the activations do not
    grow with depth. This is the zero initialization of Fixup (Zhang, Dauphin
    and Ma, 2019), which lets a ResNet without normalization train. The
    other parts of Fixup (scalar biases and multipliers, rescaled first
    convolutions) are not used.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    if zero_last_conv:
        for module in model.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.conv2.weight)
                if module.conv2.bias is not None:
                    nn.init.zeros_(module.conv2.bias)
