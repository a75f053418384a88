"""Permutation specs, weight matching and barriers modulo hidden-unit permutations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from learning.config import ModelConfig
from learning.evaluate import recompute_batchnorm_statistics
from learning.matching import (
    PermutationSpec,
    PermutationSpecError,
    PermutedAxis,
    apply_permutation,
    check_permutation_spec,
    identity_permutation,
    inverse_permutation,
    match_and_barrier,
    permutation_spec,
    random_permutation,
    weight_matching,
)
from learning.models import BasicBlock, FeatureClassifier, build_model
from learning.param import ParamLayout, ParamPoint

# (kind, batch_norm, input shape): every kind build_model makes, with and
# without BatchNorm where the kind allows both.
CASES = [
    ("mlp", False, (6,)),
    ("mlp", True, (6,)),
    ("cnn", False, (16,)),
    ("cnn", True, (16,)),
    ("cnn2d", False, (1, 8, 8)),
    ("cnn2d", True, (1, 8, 8)),
    ("resnet18", None, (3, 8, 8)),
    ("resnet18_nobn", None, (3, 8, 8)),
]
CASE_IDS = [f"{kind}-bn{batch_norm}" for kind, batch_norm, _ in CASES]


def _model(
    kind: str,
    batch_norm: bool | None,
    input_shape: tuple[int, ...],
    seed: int = 0,
    hidden: int = 8,
    depth: int = 2,
) -> FeatureClassifier:
    """Build a small model with distinguishable units and random BN statistics.

    resnet18_nobn zero-initializes each block's conv2, so every unit of that
    layer is equal; the noise makes them differ. Running means and
    variances get random values so that a wrongly permuted buffer shows.
    """
    config = ModelConfig(
        kind=kind,
        batch_norm=batch_norm,
        hidden=hidden,
        depth=depth,
        channels=3,
        width=4,
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config, input_shape, 3)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
    return model.eval()


def _point(model: nn.Module) -> ParamPoint:
    layout = ParamLayout.of(model)
    buffers = layout.flatten_buffers(model) if layout.buffer_size else None
    return ParamPoint(layout.flatten(model), buffers)


def _logits(model: nn.Module, point: ParamPoint, x: torch.Tensor) -> torch.Tensor:
    layout = ParamLayout.of(model)
    tensors = layout.unflatten(point.vector)
    if point.buffers is not None:
        tensors.update(layout.unflatten_buffers(point.buffers))
    with torch.no_grad():
        out: torch.Tensor = torch.func.functional_call(model.eval(), tensors, (x,))
    return out


def _inputs(input_shape: tuple[int, ...], n: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *input_shape, generator=torch.Generator().manual_seed(seed))


def _is_permutation(perm: torch.Tensor, size: int) -> bool:
    return bool(torch.equal(torch.sort(perm).values, torch.arange(size)))


# Every model kind --------------------------------------------------------------


@pytest.mark.parametrize(("kind", "batch_norm", "shape"), CASES, ids=CASE_IDS)
def test_permutation_keeps_logits(
    kind: str, batch_norm: bool | None, shape: tuple[int, ...]
) -> None:
    model = _model(kind, batch_norm, shape)
    spec = permutation_spec(model)
    b = _point(model)
    perms = random_permutation(spec, torch.Generator().manual_seed(2))
    permuted = apply_permutation(spec, b, perms)
    x = _inputs(shape)

    assert not torch.equal(permuted.vector, b.vector)
    assert torch.allclose(_logits(model, permuted, x), _logits(model, b, x), atol=1e-5)
    report = check_permutation_spec(model, spec, x)
    assert report.ok
    assert report.max_difference < 1e-12


@pytest.mark.parametrize(("kind", "batch_norm", "shape"), CASES, ids=CASE_IDS)
def test_matching_recovers_inverse(
    kind: str, batch_norm: bool | None, shape: tuple[int, ...]
) -> None:
    model = _model(kind, batch_norm, shape)
    spec = permutation_spec(model)
    b = _point(model)
    perms = random_permutation(spec, torch.Generator().manual_seed(3))
    permuted = apply_permutation(spec, b, perms)

    result = weight_matching(spec, b, permuted)

    inverse = inverse_permutation(perms)
    for name in spec.names:
        assert torch.equal(result.permutations[name], inverse[name]), name
    assert torch.equal(result.matched.vector, b.vector)
    if b.buffers is not None:
        assert result.matched.buffers is not None
        assert torch.equal(result.matched.buffers, b.buffers)
    assert result.distance_after == 0.0
    assert result.distance_before > 0.0
    assert result.converged


@pytest.mark.parametrize(("kind", "batch_norm", "shape"), CASES, ids=CASE_IDS)
def test_matched_permuted_copy_has_zero_barrier(
    kind: str, batch_norm: bool | None, shape: tuple[int, ...]
) -> None:
    model = _model(kind, batch_norm, shape)
    spec = permutation_spec(model)
    b = _point(model)
    permuted = apply_permutation(
        spec, b, random_permutation(spec, torch.Generator().manual_seed(4))
    )
    x = _inputs(shape, n=64)
    y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(5))

    # The random running statistics are not those of x, so the ends get
    # recomputed statistics (the default) like every interior point of the line.
    result = match_and_barrier(model, b, permuted, x, y, spec=spec, n_alpha=5)

    assert abs(result.barrier_after) < 1e-5
    assert result.matching.distance_after == 0.0


def _trained_mlp() -> tuple[FeatureClassifier, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind="mlp", hidden=8, depth=2), (6,), 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, x, y


def test_mlp_barrier_vanishes_after_matching() -> None:
    model, x, y = _trained_mlp()
    spec = permutation_spec(model)
    b = _point(model)
    permuted = apply_permutation(
        spec, b, random_permutation(spec, torch.Generator().manual_seed(6))
    )

    result = match_and_barrier(model, b, permuted, x, y, spec=spec, n_alpha=11)

    assert result.barrier_before > 0.01
    assert abs(result.barrier_after) < 1e-5
    assert result.before.path_losses.shape == (2, 2, 11)


# Property tests ----------------------------------------------------------------


@settings(max_examples=15)
@given(
    kind=st.sampled_from(["mlp", "cnn"]),
    batch_norm=st.booleans(),
    hidden=st.integers(2, 10),
    depth=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_matching_inverts_any_permutation(
    kind: str, batch_norm: bool, hidden: int, depth: int, seed: int
) -> None:
    shape = (6,) if kind == "mlp" else (12,)
    model = _model(kind, batch_norm, shape, seed=seed, hidden=hidden, depth=depth)
    spec = permutation_spec(model)
    b = _point(model)
    perms = random_permutation(spec, torch.Generator().manual_seed(seed + 1))
    permuted = apply_permutation(spec, b, perms)
    x = _inputs(shape, n=8, seed=seed)

    assert torch.allclose(_logits(model, permuted, x), _logits(model, b, x), atol=1e-5)
    result = weight_matching(spec, b, permuted, seed=seed)
    assert torch.equal(result.matched.vector, b.vector)
    assert result.distance_after == 0.0


@settings(max_examples=4)
@given(seed=st.integers(0, 2**16))
def test_resnet_matching_inverts_any_permutation(seed: int) -> None:
    model = _model("resnet18", None, (1, 8, 8), seed=seed)
    spec = permutation_spec(model)
    b = _point(model)
    perms = random_permutation(spec, torch.Generator().manual_seed(seed))
    permuted = apply_permutation(spec, b, perms)

    result = weight_matching(spec, b, permuted, seed=seed)

    inverse = inverse_permutation(perms)
    for name in spec.names:
        assert torch.equal(result.permutations[name], inverse[name]), name
    assert result.distance_after == 0.0


@settings(max_examples=10)
@given(
    kind=st.sampled_from(["mlp", "cnn", "cnn2d"]),
    seeds=st.tuples(st.integers(0, 2**16), st.integers(0, 2**16)).filter(
        lambda s: s[0] != s[1]
    ),
)
def test_matching_different_networks_lowers_distance(
    kind: str, seeds: tuple[int, int]
) -> None:
    shape = {"mlp": (6,), "cnn": (12,), "cnn2d": (1, 6, 6)}[kind]
    a_model = _model(kind, None, shape, seed=seeds[0])
    b_model = _model(kind, None, shape, seed=seeds[1])
    spec = permutation_spec(a_model)

    result = weight_matching(spec, _point(a_model), _point(b_model))

    assert result.distance_after <= result.distance_before + 1e-9
    for name, size in spec.sizes.items():
        assert _is_permutation(result.permutations[name], size), name
    x = _inputs(shape, n=8)
    assert torch.allclose(_logits(b_model, result.matched, x), b_model(x), atol=1e-5)


def test_matching_resnets_lowers_distance() -> None:
    a_model = _model("resnet18", None, (3, 8, 8), seed=10)
    b_model = _model("resnet18", None, (3, 8, 8), seed=11)
    spec = permutation_spec(a_model)

    result = weight_matching(spec, _point(a_model), _point(b_model), seed=1)

    assert result.distance_after < result.distance_before
    assert result.converged
    for name, size in spec.sizes.items():
        assert _is_permutation(result.permutations[name], size), name


@settings(max_examples=20)
@given(seed=st.integers(0, 2**16))
def test_apply_then_inverse_is_identity(seed: int) -> None:
    model = _model("cnn2d", True, (1, 6, 6), seed=seed % 7)
    spec = permutation_spec(model)
    perms = random_permutation(spec, torch.Generator().manual_seed(seed))
    point = _point(model)

    back = apply_permutation(
        spec, apply_permutation(spec, point, perms), inverse_permutation(perms)
    )

    assert back == point


# The structure of derived specs ------------------------------------------------


def test_resnet_identity_shortcuts_share_stream() -> None:
    model = _model("resnet18", None, (3, 8, 8))
    spec = permutation_spec(model)
    stream = spec.axes_of("features.stage1.1.conv2.weight")

    # stem, stage 1 and the first block's conv2 all carry the stem's permutation
    assert stream[0] == ("features.stem", 1)
    assert spec.axes_of("features.stage1.0.bn2.running_mean")[0][0] == "features.stem"
    assert spec.axes_of("features.stage2.0.conv1.weight")[1][0] == "features.stem"
    # a projection shortcut starts a new stream, carried by the next block
    new_stream = "features.stage2.0.shortcut.0"
    assert spec.axes_of("features.stage2.0.conv2.weight")[0][0] == new_stream
    assert spec.axes_of("features.stage2.1.conv2.weight")[0][0] == new_stream
    assert spec.axes_of("head.weight") == {1: ("features.stage4.0.shortcut.0", 1)}
    # one stream for stem and stage 1, three projections, eight inner ones
    assert len(spec.names) == 12


def test_cnn_flattened_channels_move_in_blocks() -> None:
    model = _model("cnn2d", True, (1, 8, 8))
    spec = permutation_spec(model)
    # three convolutions leave 12 channels of 2x2 positions before the Linear
    assert spec.axes_of("features.10.weight") == {
        1: ("features.6", 4),
        0: ("features.10", 1),
    }


def test_spec_leaves_outputs_and_counters_alone() -> None:
    model = _model("mlp", True, (6,))
    spec = permutation_spec(model)
    assert spec.axes_of("head.weight") == {1: ("features.4", 1)}
    assert spec.axes_of("head.bias") == {}
    assert "features.2.running_var" in {item.tensor for item in spec.axes["features.1"]}


def test_state_dict_permutation_keeps_counter() -> None:
    model = _model("cnn2d", True, (1, 8, 8))
    spec = permutation_spec(model)
    state = model.state_dict()
    perms = random_permutation(spec, torch.Generator().manual_seed(0))

    permuted = apply_permutation(spec, state, perms)

    assert set(permuted) == set(state)
    counter = "features.1.num_batches_tracked"
    assert torch.equal(permuted[counter], state[counter])
    other = build_model(ModelConfig(kind="cnn2d", channels=3, hidden=8), (1, 8, 8), 3)
    other.load_state_dict(permuted)
    x = _inputs((1, 8, 8))
    assert torch.allclose(other.eval()(x), model(x), atol=1e-5)


def test_derivation_rejects_unknown_module() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    with pytest.raises(PermutationSpecError, match=r"'1' \(LayerNorm\).*by hand"):
        permutation_spec(model)


def test_derivation_of_plain_sequential() -> None:
    model = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 2)
    )
    spec = permutation_spec(model)
    assert spec.sizes == {"0": 8, "2": 5}
    check_permutation_spec(model, spec, torch.randn(16, 4))


# Hand-written specs ------------------------------------------------------------


def _block_outputs(layout: ParamLayout, module: str) -> list[PermutedAxis]:
    """Return axis 0 of every parameter and buffer of a conv or norm layer."""
    names = (*layout.names, *layout.buffer_names)
    return [PermutedAxis(name, 0) for name in names if name.startswith(module + ".")]


def _naive_resnet_spec(model: FeatureClassifier) -> PermutationSpec:
    """Give every residual block its own output permutation, ignoring shortcuts."""
    layout = ParamLayout.of(model)
    axes: dict[str, list[PermutedAxis]] = {}
    previous = "features.stem"
    axes[previous] = _block_outputs(layout, "features.stem")
    axes[previous] += _block_outputs(layout, "features.stem_bn")
    for path, block in model.named_modules():
        if not isinstance(block, BasicBlock):
            continue
        axes[path + ".inner"] = _block_outputs(layout, path + ".conv1")
        axes[path + ".inner"] += _block_outputs(layout, path + ".bn1")
        axes[path + ".inner"].append(PermutedAxis(path + ".conv2.weight", 1))
        axes[previous].append(PermutedAxis(path + ".conv1.weight", 1))
        output = path + ".out"
        axes[output] = _block_outputs(layout, path + ".conv2")
        axes[output] += _block_outputs(layout, path + ".bn2")
        if isinstance(block.shortcut, nn.Sequential):
            axes[previous].append(PermutedAxis(path + ".shortcut.0.weight", 1))
            axes[output] += _block_outputs(layout, path + ".shortcut")
        previous = output
    axes[previous].append(PermutedAxis("head.weight", 1))
    return PermutationSpec(layout, axes)


@pytest.mark.parametrize("kind", ["resnet18", "resnet18_nobn"])
def test_naive_residual_spec_rejected(kind: str) -> None:
    model = _model(kind, None, (3, 8, 8))
    naive = _naive_resnet_spec(model)
    x = _inputs((3, 8, 8), n=8)

    with pytest.raises(PermutationSpecError, match="identity"):
        check_permutation_spec(model, naive, x)
    report = check_permutation_spec(model, naive, x, raise_on_failure=False)
    assert not report.ok
    # each identity shortcut joins two of the naive spec's output permutations
    assert "features.stage1.0.out" in report.failing
    assert "features.stage2.1.out" in report.failing
    # a block's inner channels are permuted correctly even in the naive spec
    assert "features.stage1.0.inner" not in report.failing
    assert "features.stage4.1.inner" not in report.failing


def test_check_noise_exposes_zero_layer_error() -> None:
    # A spec that omits conv2's output axes is wrong, but while conv2 is
    # all zero (as resnet18_nobn initializes it) the outputs do not show it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind="resnet18_nobn", width=4), (3, 8, 8), 3)
    derived = permutation_spec(model)
    forgotten = {"features.stage1.0.conv2.weight", "features.stage1.0.conv2.bias"}
    axes = {
        name: [
            item for item in items if not (item.tensor in forgotten and item.axis == 0)
        ]
        for name, items in derived.axes.items()
    }
    wrong = PermutationSpec(model, axes)
    x = _inputs((3, 8, 8), n=8)

    blind = check_permutation_spec(model, wrong, x, noise=0.0, raise_on_failure=False)
    assert blind.ok
    noisy = check_permutation_spec(model, wrong, x, raise_on_failure=False)
    assert not noisy.ok
    assert noisy.failing == ("features.stem",)


def _perceptron() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_hand_spec_matches_derived_one() -> None:
    model = _perceptron()
    spec = PermutationSpec(
        model, {"hidden": [("0.weight", 0), ("0.bias", 0), PermutedAxis("2.weight", 1)]}
    )
    assert spec.sizes == {"hidden": 8}
    derived = permutation_spec(model)
    assert set(spec.axes["hidden"]) == set(derived.axes["0"])
    check_permutation_spec(model, spec, torch.randn(16, 4))


def test_hand_spec_wrong_axis_size_raises() -> None:
    model = _perceptron()
    with pytest.raises(
        PermutationSpecError, match=r"axis 0 of '2\.weight' has 2 entries.*8 units"
    ):
        PermutationSpec(model, {"hidden": [("0.weight", 0), ("2.weight", 0)]})


def test_hand_spec_suggests_block() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(12, 2))
    with pytest.raises(PermutationSpecError, match="set block=4"):
        PermutationSpec(model, {"hidden": [("0.weight", 0), ("2.weight", 1)]})


def test_hand_spec_unknown_name_raises() -> None:
    model = _perceptron()
    with pytest.raises(
        PermutationSpecError, match=r"'0\.weights'.*did you mean '0\.weight'"
    ):
        PermutationSpec(model, {"hidden": [("0.weights", 0)]})


def test_hand_spec_counter_name_raises() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    with pytest.raises(PermutationSpecError, match="num_batches_tracked.*remove"):
        PermutationSpec(
            model, {"hidden": [("0.weight", 0), ("1.num_batches_tracked", 0)]}
        )


def test_hand_spec_missing_axis_raises() -> None:
    model = _perceptron()
    with pytest.raises(
        PermutationSpecError, match="no axis 2; use an axis from 0 to 1"
    ):
        PermutationSpec(model, {"hidden": [("0.weight", 2)]})


def test_hand_spec_axis_given_twice_raises() -> None:
    model = _perceptron()
    with pytest.raises(
        PermutationSpecError, match="given to both 'first' and 'second'"
    ):
        PermutationSpec(model, {"first": [("0.bias", 0)], "second": [("0.bias", 0)]})


def test_hand_spec_empty_permutation_raises() -> None:
    with pytest.raises(PermutationSpecError, match="'hidden' has no axes"):
        PermutationSpec(_perceptron(), {"hidden": []})


def test_check_rejects_other_architecture() -> None:
    spec = permutation_spec(_perceptron())
    other = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    with pytest.raises(PermutationSpecError, match="another architecture"):
        check_permutation_spec(other, spec, torch.randn(4, 4))


def test_apply_rejects_invalid_permutations() -> None:
    spec = permutation_spec(_perceptron())
    point = _point(_perceptron())
    with pytest.raises(PermutationSpecError, match=r"missing \['0'\]"):
        apply_permutation(spec, point, {})
    with pytest.raises(PermutationSpecError, match="containing each of 0..7 once"):
        apply_permutation(spec, point, {"0": torch.zeros(8, dtype=torch.long)})


def test_matching_checks_inputs() -> None:
    model = _model("mlp", True, (6,))
    spec = permutation_spec(model)
    point = _point(model)
    without_buffers = ParamPoint(point.vector)
    with pytest.raises(ValueError, match="only one of a and b has buffers"):
        weight_matching(spec, point, without_buffers)
    with pytest.raises(ValueError, match="has no buffers|have no buffers"):
        weight_matching(spec, without_buffers, without_buffers, include_buffers=True)
    with pytest.raises(ValueError, match="parameters; build the spec"):
        weight_matching(spec, ParamPoint(torch.zeros(3)), ParamPoint(torch.zeros(3)))


def test_matching_with_buffers_counts_them() -> None:
    model = _model("cnn2d", True, (1, 8, 8))
    spec = permutation_spec(model)
    b = _point(model)
    perms = random_permutation(spec, torch.Generator().manual_seed(8))
    permuted = apply_permutation(spec, b, perms)

    with_buffers = weight_matching(spec, b, permuted, include_buffers=True)
    params_only = weight_matching(spec, b, permuted)

    assert with_buffers.distance_before > params_only.distance_before
    assert with_buffers.distance_after == 0.0
    assert identity_permutation(spec).keys() == with_buffers.permutations.keys()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_matching_on_cuda() -> None:
    model = _model("resnet18", None, (3, 8, 8))
    spec = permutation_spec(model)
    b = _point(model)
    cuda = ParamPoint(b.vector.cuda(), None if b.buffers is None else b.buffers.cuda())
    perms = random_permutation(spec, torch.Generator().manual_seed(9))
    permuted = apply_permutation(spec, cuda, perms)

    result = weight_matching(spec, cuda, permuted)

    assert result.matched.vector.is_cuda
    assert torch.equal(result.matched.vector, cuda.vector)
    assert math.isclose(result.distance_after, 0.0)


def test_barrier_zero_with_own_statistics() -> None:
    model = _model("cnn2d", True, (1, 8, 8))
    x = _inputs((1, 8, 8), n=64)
    y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(5))
    b = recompute_batchnorm_statistics(model, _point(model), x)
    spec = permutation_spec(model)
    permuted = apply_permutation(
        spec, b, random_permutation(spec, torch.Generator().manual_seed(7))
    )

    result = match_and_barrier(model, b, permuted, x, y, spec=spec, n_alpha=5)

    assert abs(result.barrier_after) < 1e-5
    assert result.after.bn_statistics == "recompute"


def test_barrier_rejects_unknown_endpoint_statistics() -> None:
    model = _perceptron()
    point = _point(model)
    with pytest.raises(ValueError, match="endpoint_statistics = 'mean'"):
        match_and_barrier(
            model,
            point,
            point,
            torch.randn(4, 4),
            torch.zeros(4, dtype=torch.long),
            endpoint_statistics="mean",  # type: ignore[arg-type]
        )


def test_hand_spec_rejects_non_integer_axis() -> None:
    with pytest.raises(PermutationSpecError, match="axis='0'.*must be an int"):
        PermutationSpec(_perceptron(), {"hidden": [("0.weight", "0")]})  # type: ignore[list-item]


def test_state_dict_of_other_model_raises() -> None:
    spec = permutation_spec(_perceptron())
    other = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    with pytest.raises(PermutationSpecError, match=r"'0\.weight' has shape \(6, 4\)"):
        apply_permutation(spec, other.state_dict(), identity_permutation(spec))


# Derivation of modules whose call the class does not describe -----------------


class _ResidualSequential(nn.Sequential):
    """An nn.Sequential with a skip connection: forward returns layers(x) + x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = super().forward(x) + x  # type: ignore[no-untyped-call]
        return out


class _FlippedLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flip(-1))


class _DoubledClassifier(FeatureClassifier):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


class _BuiltSequential(nn.Sequential):
    """A subclass that only builds its layers and keeps nn.Sequential's forward."""

    def __init__(self) -> None:
        super().__init__(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _residual_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 4),
        _ResidualSequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)),
        nn.Linear(4, 2),
    )


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (
            _residual_model(0),
            r"'1' \(_ResidualSequential\) is a subclass of nn\.Sequential",
        ),
        (
            nn.Sequential(nn.Linear(4, 8), nn.ReLU(), _FlippedLinear(8, 2)),
            r"'2' \(_FlippedLinear\) is a subclass of nn\.Linear",
        ),
        (
            _DoubledClassifier(
                nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 2)
            ),
            r"the model \(_DoubledClassifier\).*FeatureClassifier",
        ),
    ],
    ids=["sequential", "linear", "feature-classifier"],
)
def test_derivation_rejects_overridden_forward(model: nn.Module, match: str) -> None:
    with pytest.raises(PermutationSpecError, match=match + ".*overrides forward"):
        permutation_spec(model)


def test_derivation_accepts_subclass_keeping_forward() -> None:
    model = _BuiltSequential()
    spec = permutation_spec(model)
    assert spec.sizes == {"0": 8}
    check_permutation_spec(model, spec, torch.randn(8, 4))


def test_derivation_rejects_forward_hooks() -> None:
    hooked = _perceptron()
    hooked[1].register_forward_hook(lambda module, args, out: out * torch.arange(8))
    with pytest.raises(PermutationSpecError, match=r"'1' \(ReLU\) has forward hooks"):
        permutation_spec(hooked)

    pre_hooked = _perceptron()
    pre_hooked[0].register_forward_pre_hook(lambda module, args: (args[0].flip(-1),))
    with pytest.raises(PermutationSpecError, match=r"'0' \(Linear\) has forward hooks"):
        permutation_spec(pre_hooked)


def test_derivation_rejects_global_hooks() -> None:
    register = torch.nn.modules.module.register_module_forward_hook
    handle = register(lambda module, args, out: out)
    try:
        with pytest.raises(
            PermutationSpecError, match="register_module_forward_hook.*by hand"
        ):
            permutation_spec(_perceptron())
    finally:
        handle.remove()
    permutation_spec(_perceptron())


class _UpperTriangular(nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.triu()


def test_derivation_rejects_parametrized_module() -> None:
    model = _perceptron()
    parametrize.register_parametrization(model[2], "weight", _UpperTriangular())
    with pytest.raises(PermutationSpecError, match=r"'2' .*is parametrized"):
        permutation_spec(model)


# match_and_barrier checks its inputs and its result ----------------------------


def test_barrier_rejects_spec_changing_function() -> None:
    # The spec that ignores the skip connection of _ResidualSequential: it
    # permutes the stream before and after the skip separately.
    model = _residual_model(0)
    wrong = PermutationSpec(
        model,
        {
            "0": [("0.weight", 0), ("0.bias", 0), ("1.0.weight", 1)],
            "1.0": [("1.0.weight", 0), ("1.0.bias", 0), ("1.2.weight", 1)],
            "1.2": [("1.2.weight", 0), ("1.2.bias", 0), ("2.weight", 1)],
        },
    )
    a, b = _point(model), _point(_residual_model(1))
    x = torch.randn(80, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 2, (80,), generator=torch.Generator().manual_seed(1))

    with pytest.raises(
        PermutationSpecError,
        match="matching changed b's function.*first 64 inputs.*check_permutation_spec",
    ):
        match_and_barrier(model, a, b, x, y, spec=wrong, n_alpha=3)


def test_barrier_default_recomputes_endpoint_statistics() -> None:
    # The labels are the network's own predictions with its stored (random)
    # statistics, which the interior points, with recomputed statistics, fit
    # worse. So only ends with stored statistics give a barrier above 0.
    model = _model("cnn2d", True, (1, 8, 8), seed=5)
    x = _inputs((1, 8, 8), n=64)
    point = _point(model)
    logits = _logits(model, point, x)
    y = logits.argmax(dim=1)

    default = match_and_barrier(model, point, point, x, y, n_alpha=5)
    stored = match_and_barrier(
        model, point, point, x, y, n_alpha=5, endpoint_statistics="stored"
    )

    assert abs(default.barrier_after) < 1e-5
    assert abs(default.barrier_before) < 1e-5
    assert stored.barrier_after > 0.01
    stored_loss = nn.functional.cross_entropy(logits, y).item()
    assert math.isclose(stored.after.endpoint_losses[0], stored_loss, rel_tol=1e-5)


def _bad_data(
    x: torch.Tensor, y: torch.Tensor
) -> list[tuple[object, object, type[Exception], str]]:
    nan_x, inf_x = x.clone(), x.clone()
    nan_x[3, 0] = math.nan
    inf_x[0, 1] = math.inf
    return [
        (x[:0], y[:0], ValueError, r"x of shape \(0, 4\) contains no examples"),
        (nan_x, y, ValueError, "x contains NaN or inf in 1 of its 64 entries"),
        (inf_x, y, ValueError, "x contains NaN or inf in 1 of its"),
        (x, y[:8], ValueError, r"y has shape \(8,\), but x has 16 examples"),
        (x, y.float(), ValueError, "y has dtype torch.float32.*y.long"),
        (x, y + 2, ValueError, r"labels range from 2 to 3, .* gives 2 class scores"),
        (x, y - 1, ValueError, r"labels range from -1 to 0.*in \[0, 2\)"),
        (x.numpy(), y, TypeError, "x must be a tensor"),
        (x, y.tolist(), TypeError, "y must be a tensor"),
    ]


def test_barrier_rejects_invalid_data() -> None:
    model = _perceptron()
    point = _point(model)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 2

    for bad_x, bad_y, error, match in _bad_data(x, y):
        with pytest.raises(error, match=match):
            match_and_barrier(model, point, point, bad_x, bad_y, n_alpha=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("n_alpha", [0, 1, 2])
def test_barrier_rejects_short_line(n_alpha: int) -> None:
    model = _perceptron()
    point = _point(model)
    x, y = torch.randn(4, 4), torch.zeros(4, dtype=torch.long)
    with pytest.raises(
        ValueError, match=f"n_alpha = {n_alpha} must be an int of at least 3"
    ):
        match_and_barrier(model, point, point, x, y, n_alpha=n_alpha)


def test_barrier_names_point_buffers_fix() -> None:
    model = _model("mlp", True, (6,))
    without = ParamPoint(_point(model).vector)
    x, y = _inputs((6,), n=8), torch.zeros(8, dtype=torch.long)
    fix = r"ParamPoint\(vector, buffers\), with buffers = ParamLayout.of\(model\)"

    with pytest.raises(
        ValueError, match="a has no buffers.*running statistics.*" + fix
    ):
        match_and_barrier(model, without, without, x, y, n_alpha=3)
    with pytest.raises(ValueError, match="a and b have no buffers.*move.*" + fix):
        weight_matching(permutation_spec(model), without, without)


def test_barrier_rejects_non_spec() -> None:
    model = _perceptron()
    point = _point(model)
    x, y = torch.randn(4, 4), torch.zeros(4, dtype=torch.long)
    with pytest.raises(
        TypeError, match="spec must be a PermutationSpec or None; got dict"
    ):
        match_and_barrier(model, point, point, x, y, spec={})  # type: ignore[arg-type]


# Invalid arguments elsewhere ----------------------------------------------------


def test_matching_rejects_non_finite_weights() -> None:
    model = _perceptron()
    spec = permutation_spec(model)
    point = _point(model)
    diverged = ParamPoint(point.vector.clone())
    diverged.vector[5] = math.nan
    exploded = ParamPoint(point.vector.clone())
    exploded.vector[:2] = math.inf

    with pytest.raises(
        ValueError, match="b contains NaN or inf in 1 of its 58.*diverged"
    ):
        weight_matching(spec, point, diverged)
    with pytest.raises(ValueError, match="a contains NaN or inf in 2 of its 58"):
        weight_matching(spec, exploded, point)


def test_matching_rejects_wrong_types() -> None:
    model = _perceptron()
    spec = permutation_spec(model)
    point = _point(model)
    with pytest.raises(TypeError, match="a must be a ParamPoint; got Tensor"):
        weight_matching(spec, point.vector, point)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="spec must be a PermutationSpec; got dict"):
        weight_matching({}, point, point)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed = -1 is negative"):
        weight_matching(spec, point, point, seed=-1)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"rtol": -1.0}, ValueError, "rtol = -1.0 must be a finite number >= 0"),
        ({"rtol": math.nan}, ValueError, "rtol = nan must be"),
        ({"rtol": math.inf}, ValueError, "rtol = inf must be"),
        ({"noise": -1}, ValueError, "noise = -1 must be a finite number >= 0"),
        ({"noise": math.nan}, ValueError, "noise = nan must be"),
        ({"dtype": torch.int64}, TypeError, "dtype = torch.int64 must be a floating"),
        ({"trials": 0}, ValueError, "trials = 0 must be an int of at least 1"),
        ({"trials": 1.5}, ValueError, "trials = 1.5 must be an int"),
        ({"seed": -1}, ValueError, "seed = -1 is negative"),
    ],
    ids=[
        "rtol-negative",
        "rtol-nan",
        "rtol-inf",
        "noise-negative",
        "noise-nan",
        "dtype-int",
        "trials-zero",
        "trials-float",
        "seed-negative",
    ],
)
def test_check_rejects_invalid_options(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    model = _perceptron()
    spec = permutation_spec(model)
    with pytest.raises(error, match=match):
        check_permutation_spec(model, spec, torch.randn(4, 4), **options)  # type: ignore[arg-type]


def test_check_rejects_empty_inputs() -> None:
    model = _perceptron()
    spec = permutation_spec(model)
    with pytest.raises(ValueError, match=r"x of shape \(0, 4\) contains no examples"):
        check_permutation_spec(model, spec, torch.randn(0, 4))


def test_apply_rejects_non_tensor_permutations() -> None:
    spec = permutation_spec(_perceptron())
    point = _point(_perceptron())
    with pytest.raises(
        TypeError, match="permutation '0' has type list, not torch.Tensor"
    ):
        apply_permutation(spec, point, {"0": list(range(8))})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="permutation '0' has type ndarray"):
        apply_permutation(spec, point, {"0": np.arange(8)})  # type: ignore[dict-item]


def test_random_permutation_takes_int_seed() -> None:
    spec = permutation_spec(_perceptron())
    from_seed = random_permutation(spec, 3)
    from_generator = random_permutation(spec, torch.Generator().manual_seed(3))
    assert torch.equal(from_seed["0"], from_generator["0"])
    with pytest.raises(TypeError, match="generator must be a torch.Generator, an int"):
        random_permutation(spec, "3")  # type: ignore[arg-type]


def test_hand_spec_rejects_wrong_types() -> None:
    with pytest.raises(
        TypeError, match="layout must be an nn.Module or a ParamLayout; got str"
    ):
        PermutationSpec("seq", {"hidden": [("0.weight", 0)]})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="axes must be a mapping.*got list"):
        PermutationSpec(_perceptron(), [("0.weight", 0)])  # type: ignore[arg-type]


def test_hand_spec_axis_listed_twice_raises() -> None:
    with pytest.raises(
        PermutationSpecError, match="permutation 'h' lists axis 0 of '0.weight' twice"
    ):
        PermutationSpec(_perceptron(), {"h": [("0.weight", 0), ("0.weight", 0)]})


def test_hand_spec_detects_names_without_axes() -> None:
    model = _perceptron()
    with pytest.raises(PermutationSpecError, match="axes are the string '0.weight'"):
        PermutationSpec(model, {"h": "0.weight"})  # type: ignore[dict-item]
    with pytest.raises(
        PermutationSpecError, match="'0.weight' is a tensor name without"
    ):
        PermutationSpec(model, {"h": ["0.weight"]})  # type: ignore[list-item]
    with pytest.raises(PermutationSpecError, match="single pair .*write \\[\\("):
        PermutationSpec(model, {"h": ("0.weight", 0)})  # type: ignore[dict-item]


def test_check_hints_match_the_model() -> None:
    norm = nn.BatchNorm1d(8)
    assert norm.running_mean is not None
    with torch.no_grad():
        norm.running_mean.copy_(torch.linspace(-1, 1, 8))
    model = nn.Sequential(nn.Linear(4, 8), norm, nn.ReLU(), nn.Linear(8, 2))
    # the spec omits the BatchNorm's running statistics
    spec = PermutationSpec(
        model.eval(),
        {
            "h": [
                ("0.weight", 0),
                ("0.bias", 0),
                ("1.weight", 0),
                ("1.bias", 0),
                ("3.weight", 1),
            ]
        },
    )

    with pytest.raises(PermutationSpecError) as caught:
        check_permutation_spec(model, spec, torch.randn(8, 4))

    message = str(caught.value)
    assert "not its running_mean and running_var" in message
    assert "('1.running_mean', 0), ('1.running_var', 0) to 'h'" in message
    assert "residual" not in message


def test_matching_include_buffers_needs_buffers() -> None:
    model = _perceptron()
    point = _point(model)
    with pytest.raises(ValueError, match="the model has no floating-point buffers"):
        weight_matching(permutation_spec(model), point, point, include_buffers=True)


def test_derivation_rejects_tied_layers() -> None:
    layer = nn.Linear(6, 6)
    model = nn.Sequential(layer, nn.ReLU(), layer, nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(PermutationSpecError, match=r"'2\.weight' is the same tensor"):
        permutation_spec(model)


def test_derivation_rejects_forward_set_on_instance() -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    model[1].forward = lambda x: torch.relu(x) * 2  # type: ignore[method-assign]
    with pytest.raises(PermutationSpecError, match=r"'1' \(ReLU\).*on the instance"):
        permutation_spec(model)


def test_shared_activation_is_walked_at_every_use() -> None:
    torch.manual_seed(6)
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(6, 5), relu, nn.Linear(5, 4), relu, nn.Linear(4, 3))
    spec = permutation_spec(model)
    assert spec.sizes == {"0": 5, "2": 4}
    check_permutation_spec(model, spec, torch.randn(16, 6))


def test_derivation_rejects_weight_shared_between_layers() -> None:
    first, second = nn.Linear(8, 8), nn.Linear(8, 8)
    second.weight = first.weight
    model = nn.Sequential(nn.Linear(4, 8), first, nn.ReLU(), second, nn.Linear(8, 3))
    with pytest.raises(PermutationSpecError, match=r"'3\.weight' is the same tensor"):
        permutation_spec(model)


def test_derivation_rejects_call_impl_set_on_instance() -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    model[1]._call_impl = lambda x: torch.tanh(x)  # type: ignore[method-assign]
    with pytest.raises(PermutationSpecError, match="_call_impl set on the instance"):
        permutation_spec(model)
