"""Models: shapes, parameter counts, BatchNorm placement and permutation symmetry."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from torch import nn

from learning.config import ModelConfig
from learning.models import BasicBlock, FeatureClassifier, build_model, image_shape
from learning.param import ParamLayout

IMAGE_SHAPES = [(1, 28, 28), (3, 32, 32)]
IMAGE_KINDS = ["cnn2d", "resnet18", "resnet18_nobn"]


def _build(config: ModelConfig, shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(config, shape, 10)


def _small(kind: str, **overrides: object) -> ModelConfig:
    return ModelConfig.model_validate(
        {"kind": kind, "width": 8, "channels": 4, "hidden": 12, **overrides}
    )


def _batch_norms(module: nn.Module) -> list[nn.Module]:
    return [
        m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


def _resnet_parameters(
    width: int, channels: int, classes: int, batch_norm: bool
) -> int:
    # Convolution weights of a stage from c to 2c channels:
    #   first block 9 c 2c + 9 (2c)^2 + c 2c (1x1 shortcut) = 56 c^2,
    #   second block 2 * 9 (2c)^2 = 72 c^2, so 128 c^2 per stage, c = w, 2w, 4w.
    # Stage 1 has 4 * 9 w^2 = 36 w^2, so all stages have
    # 36 w^2 + 128 (1 + 4 + 16) w^2 = 2724 w^2; the stem adds 9 channels w.
    # The 75 w normalized channels (w + 4w + 10w + 20w + 40w) carry a scale
    # and a shift each with BatchNorm, or one convolution bias each without.
    # The head has 8 w classes weights and classes biases.
    per_channel = 2 if batch_norm else 1
    return (
        2724 * width**2
        + 9 * channels * width
        + per_channel * 75 * width
        + 8 * width * classes
        + classes
    )


@pytest.mark.parametrize("kind", IMAGE_KINDS)
@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_image_model_output_shape(kind: str, shape: tuple[int, int, int]) -> None:
    model = _build(_small(kind), shape).eval()
    logits = model(torch.randn(3, *shape))
    assert logits.shape == (3, 10)


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_cnn2d_features_have_hidden_width(shape: tuple[int, int, int]) -> None:
    model = _build(_small("cnn2d"), shape).eval()
    assert isinstance(model, FeatureClassifier)
    features = model.features(torch.randn(2, *shape))
    assert features.shape == (2, 12)


@pytest.mark.parametrize("kind", ["resnet18", "resnet18_nobn"])
@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_resnet_features_are_pooled(kind: str, shape: tuple[int, int, int]) -> None:
    model = _build(_small(kind), shape).eval()
    assert isinstance(model, FeatureClassifier)
    features = model.features(torch.randn(2, *shape))
    assert features.shape == (2, 8 * 8)
    assert isinstance(model.head, nn.Linear)
    assert model.head.in_features == 64


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_image_model_accepts_flat_inputs(kind: str) -> None:
    model = _build(_small(kind), (3072,)).eval()
    flat = torch.randn(2, 3072)
    images = flat.reshape(2, 3, 32, 32)
    assert torch.equal(model(flat), model(images))


@pytest.mark.parametrize(
    ("input_shape", "expected"),
    [
        ((3, 32, 32), (3, 32, 32)),
        ((28, 28), (1, 28, 28)),
        ((784,), (1, 28, 28)),
        ((3072,), (3, 32, 32)),
        ((64,), (1, 8, 8)),
    ],
)
def test_image_shape_inferred(
    input_shape: tuple[int, ...], expected: tuple[int, int, int]
) -> None:
    assert image_shape(input_shape) == expected


@pytest.mark.parametrize("input_shape", [(40,), (2, 3, 4, 5), (3 * 7,)])
def test_image_shape_rejects_non_images(input_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="not an image"):
        image_shape(input_shape)


def test_resnet18_width64_parameter_count() -> None:
    # The only width-64 build in the suite. 11,173,962 is also the count of
    # the usual CIFAR ResNet-18 with 10 classes.
    model = _build(ModelConfig(kind="resnet18"), (3, 32, 32))
    count = sum(p.numel() for p in model.parameters())
    assert count == 11_173_962
    assert count == _resnet_parameters(64, 3, 10, batch_norm=True)
    # running_mean and running_var of the 75 * 64 normalized channels
    assert ParamLayout.of(model).buffer_size == 2 * 75 * 64


@pytest.mark.parametrize("kind", ["resnet18", "resnet18_nobn"])
@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_resnet_parameter_count_formula(kind: str, shape: tuple[int, int, int]) -> None:
    model = _build(_small(kind), shape)
    count = sum(p.numel() for p in model.parameters())
    assert count == _resnet_parameters(8, shape[0], 10, kind == "resnet18")


def test_resnet18_has_twenty_batch_norms() -> None:
    # stem 1, plus 2 per block in 8 blocks, plus 1 per shortcut in stages 2-4
    model = _build(_small("resnet18"), (3, 32, 32))
    assert len(_batch_norms(model)) == 1 + 16 + 3


def test_resnet18_nobn_has_no_batch_norm() -> None:
    model = _build(_small("resnet18_nobn"), (3, 32, 32))
    assert _batch_norms(model) == []
    assert ParamLayout.of(model).buffer_size == 0


def test_resnet18_nobn_blocks_start_as_shortcut() -> None:
    model = _build(_small("resnet18_nobn"), (3, 32, 32))
    block = model.get_submodule("features.stage2.0")
    assert isinstance(block, BasicBlock)
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(block.shortcut(x)))


def test_resnet18_nobn_trains_without_nan() -> None:
    model = _build(_small("resnet18_nobn"), (3, 32, 32))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (32,), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(value) for value in losses)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert losses[-1] < losses[0]


def test_batch_norm_defaults_by_kind() -> None:
    assert not ModelConfig(kind="mlp").has_batch_norm
    assert not ModelConfig(kind="cnn").has_batch_norm
    assert ModelConfig(kind="cnn2d").has_batch_norm
    assert ModelConfig(kind="resnet18").has_batch_norm
    assert not ModelConfig(kind="resnet18_nobn").has_batch_norm
    assert ModelConfig(kind="mlp", batch_norm=True).has_batch_norm
    assert not ModelConfig(kind="cnn2d", batch_norm=False).has_batch_norm


@pytest.mark.parametrize(
    ("kind", "batch_norm"), [("resnet18", False), ("resnet18_nobn", True)]
)
def test_resnet_kind_fixes_batch_norm(kind: str, batch_norm: bool) -> None:
    with pytest.raises(ValidationError, match="fixes batch_norm"):
        ModelConfig(kind=kind, batch_norm=batch_norm)


def test_cnn2d_without_batch_norm_has_biases() -> None:
    model = _build(_small("cnn2d", batch_norm=False), (1, 28, 28))
    assert _batch_norms(model) == []
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(conv.bias is not None for conv in convs)


@pytest.mark.parametrize(("kind", "count"), [("mlp", 2), ("cnn", 3)])
def test_batch_norm_option_adds_layers(kind: str, count: int) -> None:
    config = ModelConfig(kind=kind, hidden=8, channels=4, batch_norm=True)
    model = _build(config, (40,)).eval()
    assert len(_batch_norms(model)) == count
    assert model(torch.randn(3, 40)).shape == (3, 10)


def test_mlp_default_unchanged() -> None:
    # The MLP as it was built before BatchNorm options existed, same seed.
    torch.manual_seed(0)
    reference = nn.Sequential(
        nn.Flatten(), nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU()
    )
    head = nn.Linear(16, 10)
    model = _build(ModelConfig(hidden=16), (40,))
    expected = {f"features.{k}": v for k, v in reference.state_dict().items()}
    expected |= {f"head.{k}": v for k, v in head.state_dict().items()}
    state = model.state_dict()
    assert list(state) == list(expected)
    for name, value in expected.items():
        assert torch.equal(state[name], value), name


def test_cnn1d_default_unchanged() -> None:
    torch.manual_seed(0)
    reference = nn.Sequential(
        nn.Flatten(),
        nn.Unflatten(1, (1, 40)),
        nn.Conv1d(1, 4, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Conv1d(4, 4, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(4, 4, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 10, 16),
        nn.ReLU(),
    )
    model = _build(ModelConfig(kind="cnn", channels=4, hidden=16), (40,))
    features = model.get_submodule("features")
    state = features.state_dict()
    assert list(state) == list(reference.state_dict())
    for name, value in reference.state_dict().items():
        assert torch.equal(state[name], value), name


# ----------------------------------------------------- permutation symmetry
# Permuting hidden units reorders the terms of each sum in the next layer, so
# in floating point the outputs agree up to rounding, not bit for bit. The
# checks run in float64, where that rounding is below 1e-12.


def _permute_rows(layer: nn.Module, perm: torch.Tensor) -> None:
    """Reorder a Linear/Conv layer's outputs, or a BatchNorm's channels, in place."""
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                tensor.copy_(tensor[perm])


def _permute_inputs(layer: nn.Module, perm: torch.Tensor) -> None:
    """Reorder the input units (columns or in-channels) of a Linear/Conv layer."""
    with torch.no_grad():
        weight = layer.weight
        assert isinstance(weight, torch.Tensor)
        weight.copy_(weight[:, perm])


def _trained_statistics(model: nn.Module, x: torch.Tensor) -> None:
    """Give every BatchNorm layer running statistics other than the defaults."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    model.eval()


@given(st.permutations(range(16)), st.permutations(range(16)))
def test_mlp_hidden_permutation_keeps_outputs(
    first: list[int], second: list[int]
) -> None:
    model = _build(ModelConfig(hidden=16), (40,), seed=1).double()
    x = torch.randn(20, 40, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        before = model(x)
    p, q = torch.tensor(first), torch.tensor(second)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    _permute_rows(layers[0], p)
    _permute_inputs(layers[1], p)
    _permute_rows(layers[1], q)
    _permute_inputs(layers[2], q)
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(after, before, rtol=0, atol=1e-12)


@given(st.permutations(range(4)))
def test_conv_batch_norm_permutation_keeps_outputs(order: list[int]) -> None:
    # cnn2d's first block: conv (4 channels) -> BatchNorm -> ReLU -> conv.
    model = _build(_small("cnn2d"), (1, 28, 28), seed=2).double()
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0)).double()
    _trained_statistics(model, x)
    original = copy.deepcopy(model)
    perm = torch.tensor(order)
    features = model.get_submodule("features")
    assert isinstance(features, nn.Sequential)
    _permute_rows(features[0], perm)
    _permute_rows(features[1], perm)
    _permute_inputs(features[3], perm)
    with torch.no_grad():
        # eval mode normalizes with the (permuted) running statistics
        assert torch.allclose(model(x), original(x), rtol=0, atol=1e-12)
        # train mode normalizes with the batch's statistics
        train_after = model.train()(x)
        train_before = original.train()(x)
    assert torch.allclose(train_after, train_before, rtol=0, atol=1e-12)


@given(st.permutations(range(16)))
def test_resnet_block_permutation_keeps_outputs(order: list[int]) -> None:
    # Inside a BasicBlock of stage 2: conv1 -> bn1 -> ReLU -> conv2.
    model = _build(_small("resnet18"), (3, 32, 32), seed=3).double()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)).double()
    _trained_statistics(model, x)
    with torch.no_grad():
        before = model(x)
    block = model.get_submodule("features.stage2.1")
    assert isinstance(block, BasicBlock)
    perm = torch.tensor(order)
    _permute_rows(block.conv1, perm)
    _permute_rows(block.bn1, perm)
    _permute_inputs(block.conv2, perm)
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(after, before, rtol=0, atol=1e-12)
