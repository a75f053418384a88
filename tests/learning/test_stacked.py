"""The batched-product forward pass equals functional_call, run by run.

For every layer `learning.stacked` covers, the outputs and the gradients of R
stacked networks must equal those of R separate `functional_call`s up to
float rounding (``ATOL`` and ``RTOL``). A module with a layer it does not
cover must give None, so that callers fall back to vmap.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, stack_module_state

from learning.config import ModelConfig
from learning.evaluate import StackedEvaluator
from learning.models import build_model
from learning.param import ParamLayout
from learning.stacked import StackedNetwork, stacked_forward_fn

ATOL = 1e-5
"""Absolute tolerance on outputs and gradients."""

RTOL = 1e-5
"""Relative tolerance: a bias gradient sums many terms and can exceed 10."""


def separate_and_stacked(
    modules: list[nn.Module], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Return outputs and parameter gradients, computed both ways.

    The loss whose gradients are compared is a fixed random linear function
    of the outputs, so that every output entry gets a different weight.
    """
    params, _ = stack_module_state(modules)
    params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
    forward = stacked_forward_fn(modules[0])
    assert forward is not None
    ours = forward(params, x)
    weights = torch.randn_like(ours)
    ours_grads = torch.autograd.grad((ours * weights).sum(), list(params.values()))

    reference = torch.stack(
        [
            functional_call(modules[0], {k: v[r] for k, v in params.items()}, (x[r],))
            for r in range(len(modules))
        ]
    )
    reference_grads = torch.autograd.grad(
        (reference * weights).sum(), list(params.values())
    )
    return ours, reference, list(ours_grads), list(reference_grads)


def assert_same(modules: list[nn.Module], x: torch.Tensor) -> None:
    ours, reference, ours_grads, reference_grads = separate_and_stacked(modules, x)
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=RTOL)
    for a, b in zip(ours_grads, reference_grads, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(
    ("kind", "input_shape"),
    [
        ("mlp", (40,)),
        ("cnn", (40,)),
        ("cnn", (37,)),  # odd lengths pad before the halving convolutions
        ("cnn2d", (1, 8, 8)),
        ("cnn2d", (3, 7, 9)),
        ("cnn2d", (100,)),  # a flat square image, unflattened by the model
    ],
)
def test_library_models_match(kind: str, input_shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    config = ModelConfig(kind=kind, hidden=16, channels=4, batch_norm=False)
    modules: list[nn.Module] = [build_model(config, input_shape, 5) for _ in range(3)]
    x = torch.randn(3, 6, *input_shape)
    assert_same(modules, x)


@settings(max_examples=25)
@given(
    dims=st.sampled_from([1, 2]),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    size=st.integers(5, 11),
    channels=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_convolutions_match(
    dims: int,
    kernel: int,
    stride: int,
    padding: int,
    size: int,
    channels: tuple[int, int],
    bias: bool,
    seed: int,
) -> None:
    torch.manual_seed(seed)
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    c_in, c_out = channels
    modules: list[nn.Module] = [
        nn.Sequential(
            conv(c_in, c_out, kernel, stride=stride, padding=padding, bias=bias),
            nn.ReLU(),
            nn.Flatten(),
        )
        for _ in range(2)
    ]
    x = torch.randn(2, 3, c_in, *([size] * dims))
    assert_same(modules, x)


def test_halving_convolution_with_channels_first_input() -> None:
    """A kernel-3, stride-2 convolution right after Unflatten (not channels-last)."""
    torch.manual_seed(1)
    modules: list[nn.Module] = [
        nn.Sequential(
            nn.Unflatten(1, (2, 9)),
            nn.Conv1d(2, 3, 3, stride=2, padding=1),
            nn.Flatten(),
            nn.Linear(15, 4),
        )
        for _ in range(4)
    ]
    assert_same(modules, torch.randn(4, 5, 18))


def test_linear_without_bias_and_identity() -> None:
    torch.manual_seed(2)
    modules: list[nn.Module] = [
        nn.Sequential(nn.Linear(6, 5, bias=False), nn.Identity(), nn.ReLU())
        for _ in range(2)
    ]
    assert_same(modules, torch.randn(2, 4, 6))


@pytest.mark.parametrize(
    "module",
    [
        nn.Sequential(nn.Linear(4, 4), nn.Tanh()),
        nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)),
        nn.Sequential(nn.Conv1d(2, 2, 3, groups=2)),
        nn.Sequential(nn.Conv1d(2, 2, 3, dilation=2)),
        nn.Sequential(nn.Conv1d(2, 2, 3, padding="same")),
        nn.Sequential(nn.Conv1d(2, 2, 3, padding=1, padding_mode="circular")),
        nn.Sequential(nn.Flatten(start_dim=2)),
        nn.Sequential(nn.Dropout(0.1)),
    ],
)
def test_uncovered_layers_give_none(module: nn.Module) -> None:
    assert stacked_forward_fn(module) is None


@pytest.mark.parametrize("kind", ["resnet18", "resnet18_nobn"])
def test_resnets_are_not_covered(kind: str) -> None:
    model = build_model(ModelConfig(kind=kind, width=2), (3, 8, 8), 4)
    assert stacked_forward_fn(model) is None


def test_mlp_with_batch_norm_is_not_covered() -> None:
    model = build_model(ModelConfig(kind="mlp", batch_norm=True), (10,), 3)
    assert stacked_forward_fn(model) is None


def test_unflatten_refuses_wrong_input_size() -> None:
    module = nn.Sequential(nn.Unflatten(1, (2, 5)), nn.Flatten())
    forward = stacked_forward_fn(module)
    assert forward is not None
    with pytest.raises(ValueError, match=r"Unflatten to \(2, 5\)"):
        forward({}, torch.randn(2, 3, 11))


def test_stacked_forward_catches_wrong_weights() -> None:
    """The comparison itself must be able to fail: a wrong weight layout is seen."""
    torch.manual_seed(3)
    modules: list[nn.Module] = [nn.Sequential(nn.Linear(5, 4)) for _ in range(2)]
    params, _ = stack_module_state(modules)
    forward = stacked_forward_fn(modules[0])
    assert forward is not None
    x = torch.randn(2, 3, 5)
    wrong = dict(params)
    wrong["0.weight"] = params["0.weight"].flip(1)  # columns in the wrong order
    reference = torch.stack(
        [
            functional_call(modules[0], {k: v[r] for k, v in params.items()}, (x[r],))
            for r in range(2)
        ]
    )
    assert not torch.allclose(forward(wrong, x), reference, atol=ATOL)


def assert_evaluator_matches_module(module: nn.Module, x: torch.Tensor) -> None:
    """Assert that StackedEvaluator returns what the module itself returns on x."""
    layout = ParamLayout.of(module)
    evaluator = StackedEvaluator(module, torch.device("cpu"))
    ours = evaluator.outputs(layout.flatten(module).unsqueeze(0), x)[0]
    torch.testing.assert_close(ours, module(x), atol=ATOL, rtol=RTOL)


class Doubled(nn.Sequential):
    """A Sequential whose forward doubles the output: not the layers alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


class ShiftedLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 1


def with_forward_hook() -> nn.Module:
    module = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    module[0].register_forward_hook(lambda m, inputs, out: out * 3)
    return module


def with_pre_hook() -> nn.Module:
    module = nn.Sequential(nn.Linear(4, 3))
    module.register_forward_pre_hook(lambda m, inputs: (inputs[0] + 1,))
    return module


def parametrized() -> nn.Module:
    from torch.nn.utils import parametrize

    class Symmetric(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return w.triu() + w.triu(1).transpose(0, 1)

    module = nn.Sequential(nn.Linear(4, 4))
    parametrize.register_parametrization(module[0], "weight", Symmetric())
    return module


@pytest.mark.parametrize(
    "make",
    [
        lambda: Doubled(nn.Linear(4, 3)),
        lambda: nn.Sequential(ShiftedLinear(4, 3)),
        with_forward_hook,
        with_pre_hook,
        parametrized,
    ],
    ids=["sequential-subclass", "linear-subclass", "hook", "pre-hook", "parametrize"],
)
def test_custom_forward_falls_back(make: Any) -> None:
    """Subclasses, hooks and parametrizations are not covered.

    The evaluator then uses vmap and returns what the module itself returns.
    """
    torch.manual_seed(4)
    module = make()
    assert stacked_forward_fn(module) is None
    assert_evaluator_matches_module(module, torch.randn(5, 4))


def test_global_hook_falls_back() -> None:
    module = nn.Sequential(nn.Linear(4, 3))
    x = torch.randn(5, 4)
    layout = ParamLayout.of(module)
    evaluator = StackedEvaluator(module, torch.device("cpu"))
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, inputs, out: out + 10
    )
    try:
        assert stacked_forward_fn(module) is None
        ours = evaluator.outputs(layout.flatten(module).unsqueeze(0), x)[0]
        expected = module(x)
    finally:
        handle.remove()
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=RTOL)
    assert stacked_forward_fn(module) is not None


def test_evaluator_refuses_malformed_points_and_empty_inputs() -> None:
    module = nn.Sequential(nn.Linear(4, 3))
    layout = ParamLayout.of(module)
    evaluator = StackedEvaluator(module, torch.device("cpu"))
    point = layout.flatten(module)
    with pytest.raises(ValueError, match=r"point\.unsqueeze\(0\)"):
        evaluator.outputs(point, torch.randn(2, 4))
    with pytest.raises(ValueError, match="no points"):
        evaluator.outputs(point.unsqueeze(0)[:0], torch.randn(2, 4))
    with pytest.raises(ValueError, match="no examples"):
        evaluator.outputs(point.unsqueeze(0), torch.randn(0, 4))


def test_evaluator_casts_inputs_to_the_points_dtype() -> None:
    module = nn.Sequential(nn.Linear(4, 3))
    layout = ParamLayout.of(module)
    evaluator = StackedEvaluator(module, torch.device("cpu"))
    x = torch.randn(5, 4, dtype=torch.float64)
    ours = evaluator.outputs(layout.flatten(module).unsqueeze(0), x)[0]
    torch.testing.assert_close(ours, module(x.float()), atol=ATOL, rtol=RTOL)


def shared_relu() -> nn.Module:
    relu = nn.ReLU()
    return nn.Sequential(nn.Linear(4, 5), relu, nn.Linear(5, 5), relu, nn.Linear(5, 3))


def tied_linear() -> nn.Module:
    layer = nn.Linear(4, 4)
    return nn.Sequential(layer, nn.ReLU(), layer, nn.ReLU(), nn.Linear(4, 3))


def patched_forward() -> nn.Module:
    module = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
    relu = module[1]
    module[1].forward = lambda x: torch.relu(x) * 2  # type: ignore[method-assign]
    assert relu is module[1]
    return module


@pytest.mark.parametrize(
    "make",
    [shared_relu, tied_linear, patched_forward],
    ids=["shared", "tied", "patched"],
)
def test_reused_or_patched_modules_fall_back(make: Any) -> None:
    torch.manual_seed(5)
    module = make()
    assert stacked_forward_fn(module) is None
    assert_evaluator_matches_module(module, torch.randn(6, 4))


def shared_weight() -> nn.Module:
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    return nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), nn.Linear(4, 3))


def patched_call() -> nn.Module:
    module = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
    module[1]._call_impl = lambda x: torch.tanh(x) - 5  # type: ignore[method-assign]
    return module


@pytest.mark.parametrize("make", [shared_weight, patched_call], ids=["weight", "call"])
def test_shared_weight_or_patched_call_falls_back(make: Any) -> None:
    torch.manual_seed(7)
    module = make()
    assert stacked_forward_fn(module) is None
    assert_evaluator_matches_module(module, torch.randn(6, 4))


def test_evaluator_names_bad_labels_and_points() -> None:
    module = nn.Sequential(nn.Linear(4, 3))
    layout = ParamLayout.of(module)
    evaluator = StackedEvaluator(module, torch.device("cpu"))
    points = layout.flatten(module).unsqueeze(0)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"one class index per example, shape \(5,\)"):
        evaluator.loss_and_accuracy(points, x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"pass y\.long\(\)"):
        evaluator.loss_and_accuracy(points, x, torch.zeros(5))
    with pytest.raises(ValueError, match=r"point\.unsqueeze\(0\)"):
        evaluator.recompute_buffers(points[0], x)


def reference_loss_and_grad(
    module: nn.Module,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return per-run cross-entropy losses and their gradients, run by run."""
    losses, grads = [], []
    for r in range(x.shape[0]):
        own = {k: v[r].detach().requires_grad_(True) for k, v in params.items()}
        logits = functional_call(module, own, (x[r],))
        loss = nn.functional.cross_entropy(logits, y[r])
        losses.append(loss.detach())
        grads.append(dict(zip(own, torch.autograd.grad(loss, list(own.values())))))
    stacked = {k: torch.stack([g[k] for g in grads]) for k in params}
    return torch.stack(losses), stacked


def assert_loss_and_grad_match(
    module: nn.Module,
    network: StackedNetwork,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
) -> None:
    losses, grads = network.loss_and_grad(params, x, y)
    reference_losses, reference_grads = reference_loss_and_grad(module, params, x, y)
    torch.testing.assert_close(losses, reference_losses, atol=ATOL, rtol=RTOL)
    assert set(grads) == set(reference_grads)
    for name, grad in grads.items():
        torch.testing.assert_close(
            grad, reference_grads[name], atol=ATOL, rtol=RTOL, msg=name
        )


@settings(max_examples=15, deadline=None)
@given(
    model=st.sampled_from(
        [("mlp", (12,)), ("cnn", (40,)), ("cnn", (37,)), ("cnn2d", (1, 7, 8))]
    ),
    runs=st.integers(1, 3),
    batch=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_loss_and_grad_matches_functional_call(
    model: tuple[str, tuple[int, ...]], runs: int, batch: int, seed: int
) -> None:
    kind, input_shape = model
    torch.manual_seed(seed)
    config = ModelConfig(kind=kind, hidden=8, channels=3, batch_norm=False)
    modules = [build_model(config, input_shape, 4) for _ in range(runs)]
    network = StackedNetwork.of(modules[0])
    assert network is not None
    params, _ = stack_module_state(modules)
    params = {k: v.detach() for k, v in params.items()}
    x = torch.randn(runs, batch, *input_shape)
    y = torch.randint(0, 4, (runs, batch))
    assert_loss_and_grad_match(modules[0], network, params, x, y)


def test_loss_and_grad_reuses_buffers_correctly() -> None:
    """Later calls, with new parameters, inputs or batch size, are not stale."""
    torch.manual_seed(8)
    config = ModelConfig(kind="cnn", hidden=8, channels=4, batch_norm=False)
    modules = [build_model(config, (40,), 5) for _ in range(2)]
    network = StackedNetwork.of(modules[0])
    assert network is not None
    params, _ = stack_module_state(modules)
    params = {k: v.detach() for k, v in params.items()}
    for batch in (6, 6, 3, 6):
        x = torch.randn(2, batch, 40)
        y = torch.randint(0, 5, (2, batch))
        assert_loss_and_grad_match(modules[0], network, params, x, y)
        params = {k: v + 0.01 * torch.randn_like(v) for k, v in params.items()}


def test_loss_and_grad_catches_a_wrong_gradient() -> None:
    """The comparison can fail: it distinguishes gradients at other parameters."""
    torch.manual_seed(9)
    module = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    network = StackedNetwork.of(module)
    assert network is not None
    params, _ = stack_module_state([module, copy.deepcopy(module)])
    params = {k: v.detach() for k, v in params.items()}
    x, y = torch.randn(2, 6, 5), torch.randint(0, 3, (2, 6))
    _, grads = network.loss_and_grad(params, x, y)
    moved = {k: v + 0.5 for k, v in params.items()}
    _, reference = reference_loss_and_grad(module, moved, x, y)
    assert not torch.allclose(grads["0.weight"], reference["0.weight"], atol=ATOL)


@pytest.mark.parametrize(
    "module",
    [
        nn.Sequential(nn.ReLU(), nn.Linear(6, 3)),
        nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(6, 3)),
        nn.Sequential(nn.Identity(), nn.ReLU(), nn.ReLU(), nn.Linear(6, 3)),
    ],
    ids=["relu-first", "flatten-relu", "identity-relu-relu"],
)
def test_inputs_are_not_overwritten(module: nn.Module) -> None:
    """An in-place ReLU acts only on tensors the pass wrote itself."""
    forward = stacked_forward_fn(module)
    network = StackedNetwork.of(module)
    assert forward is not None and network is not None
    params, _ = stack_module_state([module])
    params = {k: v.detach() for k, v in params.items()}
    x = torch.randn(1, 4, 6)
    original = x.clone()
    forward(params, x)
    network.loss_and_grad(params, x, torch.zeros(1, 4, dtype=torch.long))
    torch.testing.assert_close(x, original, atol=0, rtol=0)


def test_input_gradient_matches_functional_call() -> None:
    torch.manual_seed(10)
    config = ModelConfig(kind="cnn", hidden=8, channels=3, batch_norm=False)
    modules = [build_model(config, (21,), 4) for _ in range(2)]
    params, _ = stack_module_state(modules)
    params = {k: v.detach() for k, v in params.items()}
    forward = stacked_forward_fn(modules[0])
    assert forward is not None
    x = torch.randn(2, 3, 21, requires_grad=True)
    weights = torch.randn(2, 3, 4)
    (ours,) = torch.autograd.grad((forward(params, x) * weights).sum(), x)
    reference = torch.stack(
        [
            functional_call(modules[0], {k: v[r] for k, v in params.items()}, (x[r],))
            for r in range(2)
        ]
    )
    (expected,) = torch.autograd.grad((reference * weights).sum(), x)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=RTOL)


def test_stacked_outputs_refuse_a_second_derivative() -> None:
    module = nn.Sequential(nn.Linear(3, 2))
    forward = stacked_forward_fn(module)
    assert forward is not None
    params, _ = stack_module_state([module])
    weight = params["0.weight"].detach().requires_grad_(True)
    out = forward(
        {"0.weight": weight, "0.bias": params["0.bias"]}, torch.randn(1, 2, 3)
    )
    (grad,) = torch.autograd.grad(out.square().sum(), weight, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


@pytest.mark.parametrize(
    ("kind", "shape", "message"),
    [
        ("mlp", (2, 3, 11), "linear layer 'features.1' takes 12 features"),
        ("cnn2d", (2, 3, 2, 4, 4), r"convolution 'features.0' takes \(batch, 1,"),
    ],
)
def test_wrong_input_size_is_named(
    kind: str, shape: tuple[int, ...], message: str
) -> None:
    config = ModelConfig(kind=kind, hidden=4, channels=2, batch_norm=False)
    input_shape = (12,) if kind == "mlp" else (1, 4, 4)
    module = build_model(config, input_shape, 3)
    forward = stacked_forward_fn(module)
    assert forward is not None
    params, _ = stack_module_state([module, module])
    with pytest.raises(ValueError, match=message):
        forward(params, torch.randn(*shape))


def test_odd_length_after_even_reuses_no_stale_input() -> None:
    """A halving convolution's padded buffer is cleared at every call."""
    torch.manual_seed(11)
    modules = [
        nn.Sequential(nn.Conv1d(2, 4, 3, 2, 1), nn.Flatten(), nn.Linear(12, 3))
        for _ in range(2)
    ]
    network = StackedNetwork.of(modules[0])
    assert network is not None
    params, _ = stack_module_state(modules)
    params = {k: v.detach() for k, v in params.items()}
    y = torch.randint(0, 3, (2, 4))
    network.loss_and_grad(params, torch.randn(2, 4, 2, 6), y)
    assert_loss_and_grad_match(modules[0], network, params, torch.randn(2, 4, 2, 5), y)


def test_params_that_require_grad_are_accepted() -> None:
    torch.manual_seed(12)
    modules = [nn.Sequential(nn.Linear(6, 3)) for _ in range(2)]
    network = StackedNetwork.of(modules[0])
    assert network is not None
    params, _ = stack_module_state(modules)  # these require grad
    x, y = torch.randn(2, 4, 6), torch.randint(0, 3, (2, 4))
    losses, grads = network.loss_and_grad(params, x, y)
    assert not grads["0.weight"].requires_grad
    assert not losses.requires_grad
    assert not network.forward(params, x).requires_grad
    detached = {k: v.detach() for k, v in params.items()}
    assert_loss_and_grad_match(modules[0], network, detached, x, y)


def _linear_network() -> tuple[StackedNetwork, dict[str, torch.Tensor]]:
    modules = [nn.Sequential(nn.Linear(6, 3)) for _ in range(2)]
    network = StackedNetwork.of(modules[0])
    assert network is not None
    params, _ = stack_module_state(modules)
    return network, {k: v.detach() for k, v in params.items()}


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("labels-short", ValueError, r"labels of shape \(2, 3\) do not match"),
        ("labels-one-run", ValueError, r"labels of shape \(1, 4\) do not match"),
        ("labels-flat", ValueError, r"labels of shape \(8,\) do not match"),
        ("labels-float", TypeError, r"pass y\.long\(\)"),
        ("labels-range", ValueError, r"labels range from 0 to 7.*\[0, 3\)"),
        ("runs", ValueError, r"'0.weight' has shape \(2, 3, 6\), but 3 runs"),
        ("unstacked", ValueError, r"'0.weight' has shape \(3, 6\)"),
        ("transposed", ValueError, r"need \(2, 3, 6\)"),
        ("missing", ValueError, r"missing: \['0.bias'\]"),
        ("no-run-dimension", ValueError, r"not \(runs, batch, \.\.\.\)"),
        ("empty", ValueError, "no examples"),
        ("float64-inputs", TypeError, r"x\.to\(torch\.float32\)"),
        ("mixed-params", TypeError, "one floating-point dtype"),
    ],
)
def test_bad_loss_and_grad_inputs_are_named(
    change: str, error: type[Exception], message: str
) -> None:
    network, params = _linear_network()
    x, y = torch.randn(2, 4, 6), torch.randint(0, 3, (2, 4))
    if change == "labels-short":
        y = y[:, :3]
    elif change == "labels-one-run":
        y = y[:1]
    elif change == "labels-flat":
        y = y.flatten()
    elif change == "labels-float":
        y = y.float()
    elif change == "labels-range":
        y = torch.tensor([[0, 1, 2, 7], [0, 0, 0, 0]])
    elif change == "runs":
        x, y = torch.randn(3, 4, 6), torch.randint(0, 3, (3, 4))
    elif change == "unstacked":
        params["0.weight"] = params["0.weight"][0]
    elif change == "transposed":
        params["0.weight"] = params["0.weight"].transpose(1, 2)
    elif change == "missing":
        del params["0.bias"]
    elif change == "no-run-dimension":
        x = torch.randn(4, 6)
    elif change == "empty":
        x, y = torch.randn(2, 0, 6), torch.zeros(2, 0, dtype=torch.long)
    elif change == "float64-inputs":
        x = x.double()
    elif change == "mixed-params":
        params["0.bias"] = params["0.bias"].double()
    with pytest.raises(error, match=message):
        network.loss_and_grad(params, x, y)


def test_outputs_that_are_not_class_scores_are_named() -> None:
    module = nn.Sequential(nn.Unflatten(1, (1, 6)), nn.Conv1d(1, 2, 3))
    network = StackedNetwork.of(module)
    assert network is not None
    params, _ = stack_module_state([module])
    with pytest.raises(ValueError, match=r"class scores of shape \(batch, classes\)"):
        network.loss_and_grad(params, torch.randn(1, 4, 6), torch.zeros(1, 4).long())


@pytest.mark.parametrize("changed", ["inputs", "weight"])
def test_in_place_change_before_backward_is_caught(changed: str) -> None:
    """Weight gradients read the inputs, so a change to either is an error."""
    module = nn.Sequential(nn.Linear(6, 3))
    forward = stacked_forward_fn(module)
    assert forward is not None
    params, _ = stack_module_state([module])
    x = torch.randn(1, 4, 6)
    out = forward(params, x)
    with torch.no_grad():
        (x if changed == "inputs" else params["0.weight"]).mul_(3)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_evaluator_names_integer_points_and_unbatched_inputs() -> None:
    module = nn.Sequential(nn.Linear(4, 3))
    evaluator = StackedEvaluator(module, torch.device("cpu"))
    points = ParamLayout.of(module).flatten(module).unsqueeze(0)
    with pytest.raises(TypeError, match=r"pass points\.float\(\)"):
        evaluator.outputs(points.long(), torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"no batch dimension.*unsqueeze\(0\)"):
        evaluator.outputs(points, torch.randn(4))
    with pytest.raises(TypeError, match=r"x\.to\(torch\.float32\)"):
        evaluator.outputs(points, torch.randint(0, 255, (5, 4), dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"labels range from 0 to 3.*\[0, 3\)"):
        evaluator.loss_and_accuracy(points, torch.randn(4, 4), torch.arange(4))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int32, torch.int64])
def test_integer_labels_of_any_width_are_accepted(dtype: torch.dtype) -> None:
    network, params = _linear_network()
    x, y = torch.randn(2, 4, 6), torch.randint(0, 3, (2, 4))
    losses, _ = network.loss_and_grad(params, x, y.to(dtype))
    expected, _ = network.loss_and_grad(params, x, y)
    torch.testing.assert_close(losses, expected)
    module = nn.Sequential(nn.Linear(4, 3))
    evaluator = StackedEvaluator(module, torch.device("cpu"))
    points = ParamLayout.of(module).flatten(module).unsqueeze(0)
    inputs, labels = torch.randn(5, 4), torch.randint(0, 3, (5,))
    torch.testing.assert_close(
        evaluator.loss_and_accuracy(points, inputs, labels.to(dtype)),
        evaluator.loss_and_accuracy(points, inputs, labels),
    )


def test_zero_runs_and_empty_halving_inputs_are_named() -> None:
    network, params = _linear_network()
    empty = {k: v[:0] for k, v in params.items()}
    with pytest.raises(ValueError, match="no runs"):
        network.loss_and_grad(empty, torch.randn(0, 4, 6), torch.zeros(0, 4).long())
    module = nn.Sequential(nn.Conv1d(2, 4, 3, 2, 1), nn.Flatten())
    forward = stacked_forward_fn(module)
    assert forward is not None
    stacked, _ = stack_module_state([module])
    with pytest.raises(ValueError, match="length 0, which leave no output position"):
        forward(stacked, torch.randn(1, 4, 2, 0))


def test_tensors_on_different_devices_are_named() -> None:
    # The meta device plays the part of a GPU, because the check runs first.
    network, params = _linear_network()
    x, y = torch.randn(2, 4, 6), torch.randint(0, 3, (2, 4))
    elsewhere = {k: v.to("meta") for k, v in params.items()}
    with pytest.raises(ValueError, match=r"parameters on \['meta'\] and inputs on cpu"):
        network.loss_and_grad(elsewhere, x, y)
    with pytest.raises(ValueError, match=r"labels on meta and inputs on cpu"):
        network.loss_and_grad(params, x, y.to("meta"))
    mixed = dict(params)
    first = next(iter(mixed))
    mixed[first] = mixed[first].to("meta")
    with pytest.raises(ValueError, match=r"parameters on \['cpu', 'meta'\]"):
        network.forward(mixed, x)


def test_output_of_submodule_and_its_gradient() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="cnn"), (40,), 10)
    forward = stacked_forward_fn(model, output_of="features.3")
    assert forward is not None
    stacked, _ = stack_module_state([model, copy.deepcopy(model)])
    params = {k: v.detach().requires_grad_(True) for k, v in stacked.items()}
    x = torch.randn(2, 3, 40)
    got = forward(params, x)  # takes all parameters, reads only the first conv's
    got.square().sum().backward()

    seen: list[torch.Tensor] = []
    model.get_submodule("features.3").register_forward_hook(
        lambda _m, _i, out: seen.append(out)
    )
    model(x[0])
    torch.testing.assert_close(got[0], seen[0])
    seen[0].square().sum().backward()
    weight = model.get_submodule("features.2").weight
    torch.testing.assert_close(params["features.2.weight"].grad[0], weight.grad)
    assert params["head.weight"].grad is None


def test_output_of_unknown_submodule_raises() -> None:
    model = build_model(ModelConfig(kind="mlp"), (40,), 10)
    with pytest.raises(AttributeError, match="no attribute `nope`"):
        StackedNetwork.of(model, output_of="nope")
    assert StackedNetwork.of(nn.Sequential(nn.Sequential(), nn.ReLU()), "0") is None


def test_arguments_that_are_not_tensors_are_named() -> None:
    network, params = _linear_network()
    x, y = torch.randn(2, 4, 6), torch.randint(0, 3, (2, 4))
    with pytest.raises(TypeError, match="labels are a ndarray, not a tensor"):
        network.loss_and_grad(params, x, y.numpy())
    with pytest.raises(TypeError, match="inputs are a ndarray, not a tensor"):
        network.forward(params, x.numpy())
    with pytest.raises(TypeError, match="parameters are a list"):
        network.forward(list(params.values()), x)
    first = next(iter(params))
    with pytest.raises(TypeError, match=rf"parameters \['{first}'\] are not tensors"):
        network.forward({**params, first: params[first].numpy()}, x)


def test_output_of_names_parameters_that_are_a_list() -> None:
    model = build_model(ModelConfig(kind="mlp"), (40,), 10)
    forward = stacked_forward_fn(model, output_of="features.1")
    assert forward is not None
    stacked, _ = stack_module_state([model])
    with pytest.raises(TypeError, match="parameters are a list"):
        forward(list(stacked.values()), torch.randn(1, 2, 40))  # type: ignore[arg-type]
