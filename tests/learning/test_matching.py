"""Permutation specs, weight matching and barriers modulo hidden-unit permutations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

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
    # recomputed statistics like every interior point of the line.
    result = match_and_barrier(
        model, b, permuted, x, y, spec=spec, n_alpha=5, endpoint_statistics="recompute"
    )

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
