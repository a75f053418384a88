"""Tests of filter-normalized random planes and loss surfaces."""

import logging
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from topology.landscape import LossSurface, loss_surface, random_plane
from topology.persistence import sublevel_persistence


def make_params(dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(123)
    shapes = {
        "conv.weight": (4, 3, 3, 3),
        "conv.bias": (4,),
        "fc.weight": (5, 8),
        "fc.bias": (5,),
        "temperature": (),
    }
    return {
        name: torch.randn(shape, generator=generator, dtype=dtype)
        for name, shape in shapes.items()
    }


def plane(seed: int, params: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    return random_plane(params, torch.Generator().manual_seed(seed))


def filter_norms(tensor: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(tensor.reshape(tensor.shape[0], -1), dim=1)


def quadratic_loss(stacked: dict[str, torch.Tensor]) -> torch.Tensor:
    """Return the squared norm of all parameters at each stacked point."""
    squares = [t.reshape(t.shape[0], -1).pow(2).sum(dim=1) for t in stacked.values()]
    return torch.stack(squares).sum(dim=0)


# random_plane


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("name", ["conv.weight", "fc.weight"])
def test_random_plane_filter_norms(index: int, name: str) -> None:
    params = make_params()
    direction = plane(0, params)[index]
    expected = filter_norms(params[name])
    torch.testing.assert_close(filter_norms(direction[name]), expected)


@pytest.mark.parametrize("name", ["conv.bias", "fc.bias", "temperature"])
def test_random_plane_low_dim_zero(name: str) -> None:
    first, second = plane(0, make_params())
    assert torch.count_nonzero(first[name]) == 0
    assert torch.count_nonzero(second[name]) == 0


def test_random_plane_zero_filter_stays_zero() -> None:
    params = make_params()
    params["fc.weight"][2] = 0.0
    first, _ = plane(0, params)
    assert torch.count_nonzero(first["fc.weight"][2]) == 0


def test_random_plane_same_seed_same() -> None:
    params = make_params()
    first_a, second_a = plane(7, params)
    first_b, second_b = plane(7, params)
    for name in params:
        assert torch.equal(first_a[name], first_b[name])
        assert torch.equal(second_a[name], second_b[name])


def test_random_plane_different_seed_differs() -> None:
    params = make_params()
    first_a, _ = plane(7, params)
    first_b, _ = plane(8, params)
    assert not torch.equal(first_a["conv.weight"], first_b["conv.weight"])


def test_random_plane_directions_differ() -> None:
    first, second = plane(0, make_params())
    assert not torch.equal(first["fc.weight"], second["fc.weight"])


def test_random_plane_matches_layout() -> None:
    params = make_params(torch.float64)
    for direction in plane(0, params):
        assert list(direction) == list(params)
        for name, tensor in params.items():
            assert direction[name].shape == tensor.shape
            assert direction[name].dtype == torch.float64


def test_random_plane_no_grad() -> None:
    params = {"w": torch.randn(3, 3, requires_grad=True)}
    first, _ = plane(0, params)
    assert not first["w"].requires_grad


def test_random_plane_rejects_integer() -> None:
    params = {"steps": torch.zeros(2, 2, dtype=torch.int64)}
    with pytest.raises(ValueError, match="'steps' has dtype torch.int64"):
        plane(0, params)


# loss_surface


def small_model() -> tuple[
    nn.Module, dict[str, torch.Tensor], torch.Tensor, torch.Tensor
]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1))
    inputs = torch.randn(16, 3)
    targets = torch.randn(16, 1)
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    return model, params, inputs, targets


def model_loss_fn(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor):
    """Build a loss_fn that evaluates ``model`` at every stacked point with vmap."""

    def loss_at(point: dict[str, torch.Tensor]) -> torch.Tensor:
        outputs = functional_call(model, point, (inputs,))
        return ((outputs - targets) ** 2).mean()

    def loss_fn(stacked: dict[str, torch.Tensor]) -> torch.Tensor:
        return vmap(loss_at)(stacked)

    return loss_fn


def test_loss_surface_centre_is_params() -> None:
    # For span 0.9 and 21 points, numpy's linspace puts its centre at -1.1e-16
    # rather than 0, so this also checks that the grid is made symmetric.
    params = make_params(torch.float64)
    surface = loss_surface(quadratic_loss, params, plane(0, params), 0.9, 21)
    at_params = quadratic_loss({k: v.unsqueeze(0) for k, v in params.items()})
    assert surface.coords[10] == 0.0
    assert surface.values[10, 10] == at_params.item()


def test_loss_surface_coords_antisymmetric() -> None:
    params = make_params()
    surface = loss_surface(quadratic_loss, params, plane(0, params), 1.7, 11)
    assert np.array_equal(surface.coords, -surface.coords[::-1])


def test_loss_surface_centre_model() -> None:
    model, params, inputs, targets = small_model()
    loss_fn = model_loss_fn(model, inputs, targets)
    surface = loss_surface(loss_fn, params, plane(0, params), 1.0, 5)
    expected = ((model(inputs) - targets) ** 2).mean().item()
    assert surface.values[2, 2] == pytest.approx(expected, rel=1e-6)


def test_loss_surface_quadratic_values() -> None:
    params = make_params(torch.float64)
    first, second = plane(0, params)
    surface = loss_surface(quadratic_loss, params, (first, second), 2.0, 5)
    for i, j in [(0, 0), (0, 4), (1, 3), (4, 2)]:
        alpha, beta = surface.coords[i], surface.coords[j]
        expected = sum(
            float(((params[k] + alpha * first[k] + beta * second[k]) ** 2).sum())
            for k in params
        )
        assert surface.values[i, j] == pytest.approx(expected, rel=1e-12)


def test_loss_surface_coords() -> None:
    params = make_params()
    surface = loss_surface(quadratic_loss, params, plane(0, params), 0.3, 11)
    np.testing.assert_allclose(surface.coords, np.linspace(-0.3, 0.3, 11), atol=1e-15)
    assert surface.coords[0] == -0.3
    assert surface.coords[-1] == 0.3


def test_loss_surface_shape() -> None:
    params = make_params()
    surface = loss_surface(quadratic_loss, params, plane(0, params), 1.0, 4)
    assert surface.values.shape == (4, 4)
    assert surface.values.dtype == np.float64


def test_loss_surface_chunking_identical() -> None:
    params = make_params()
    directions = plane(0, params)
    one = loss_surface(quadratic_loss, params, directions, 1.0, 9, batch_size=1)
    many = loss_surface(quadratic_loss, params, directions, 1.0, 9, batch_size=64)
    assert np.array_equal(one.values, many.values)


def test_loss_surface_chunking_model() -> None:
    model, params, inputs, targets = small_model()
    loss_fn = model_loss_fn(model, inputs, targets)
    directions = plane(0, params)
    one = loss_surface(loss_fn, params, directions, 1.0, 7, batch_size=1)
    many = loss_surface(loss_fn, params, directions, 1.0, 7, batch_size=64)
    np.testing.assert_allclose(one.values, many.values, rtol=1e-6)


def test_loss_surface_progress_calls() -> None:
    params = make_params()
    calls: list[tuple[int, int]] = []
    loss_surface(
        quadratic_loss,
        params,
        plane(0, params),
        1.0,
        3,
        batch_size=4,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(4, 9), (8, 9), (9, 9)]


def test_loss_surface_batch_sizes() -> None:
    params = make_params()
    sizes: list[int] = []

    def recording_loss(stacked: dict[str, torch.Tensor]) -> torch.Tensor:
        sizes.append(stacked["fc.weight"].shape[0])
        return quadratic_loss(stacked)

    loss_surface(recording_loss, params, plane(0, params), 1.0, 5, batch_size=10)
    assert sizes == [10, 10, 5]


def test_loss_surface_params_unchanged() -> None:
    params = make_params()
    before = {k: v.clone() for k, v in params.items()}
    loss_surface(quadratic_loss, params, plane(0, params), 1.0, 3)
    for name in params:
        assert torch.equal(params[name], before[name])


def test_loss_surface_no_grad() -> None:
    params = {"w": torch.randn(2, 2, requires_grad=True)}
    flags: list[bool] = []

    def recording_loss(stacked: dict[str, torch.Tensor]) -> torch.Tensor:
        flags.append(stacked["w"].requires_grad)
        return quadratic_loss(stacked)

    loss_surface(recording_loss, params, plane(0, params), 1.0, 3)
    assert not any(flags)


def test_loss_surface_read_only() -> None:
    params = make_params()
    surface = loss_surface(quadratic_loss, params, plane(0, params), 1.0, 3)
    with pytest.raises(ValueError):
        surface.values[0, 0] = 1.0


@pytest.mark.parametrize("span", [0.0, -1.0, math.nan, math.inf])
def test_loss_surface_rejects_span(span: float) -> None:
    params = make_params()
    message = f"span must be positive and finite, got {span}"
    with pytest.raises(ValueError, match=message):
        loss_surface(quadratic_loss, params, plane(0, params), span, 5)


@pytest.mark.parametrize("resolution", [1, 0, -3])
def test_loss_surface_rejects_resolution(resolution: int) -> None:
    params = make_params()
    message = f"resolution must be >= 2 .* got {resolution}"
    with pytest.raises(ValueError, match=message):
        loss_surface(quadratic_loss, params, plane(0, params), 1.0, resolution)


def test_loss_surface_rejects_float_resolution() -> None:
    params = make_params()
    with pytest.raises(TypeError, match="resolution must be an int"):
        loss_surface(quadratic_loss, params, plane(0, params), 1.0, 5.0)


def test_loss_surface_rejects_batch_size() -> None:
    params = make_params()
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        loss_surface(quadratic_loss, params, plane(0, params), 1.0, 5, batch_size=0)


def test_loss_surface_rejects_missing_key() -> None:
    params = make_params()
    first, second = plane(0, params)
    del second["fc.bias"]
    message = r"directions\[1\] keys .* missing \['fc.bias'\]"
    with pytest.raises(ValueError, match=message):
        loss_surface(quadratic_loss, params, (first, second), 1.0, 3)


def test_loss_surface_rejects_empty_params() -> None:
    with pytest.raises(ValueError, match="params is empty"):
        loss_surface(quadratic_loss, {}, ({}, {}), 1.0, 3)


def test_loss_surface_rejects_shape() -> None:
    params = make_params()
    first, second = plane(0, params)
    first["fc.weight"] = torch.zeros(8, 5)
    message = r"directions\[0\]\['fc.weight'\] has shape \(8, 5\)"
    with pytest.raises(ValueError, match=message):
        loss_surface(quadratic_loss, params, (first, second), 1.0, 3)


def test_loss_surface_rejects_dtype() -> None:
    params = make_params()
    first, second = plane(0, params)
    first["fc.weight"] = first["fc.weight"].double()
    with pytest.raises(ValueError, match="torch.float64 on cpu"):
        loss_surface(quadratic_loss, params, (first, second), 1.0, 3)


def test_loss_surface_rejects_loss_shape() -> None:
    params = make_params()

    def scalar_loss(stacked: dict[str, torch.Tensor]) -> torch.Tensor:
        return quadratic_loss(stacked).sum()

    message = r"loss_fn returned shape \(\) .* shape \(9,\)"
    with pytest.raises(ValueError, match=message):
        loss_surface(scalar_loss, params, plane(0, params), 1.0, 3, batch_size=9)


def test_loss_surface_rejects_non_tensor() -> None:
    params = make_params()
    with pytest.raises(TypeError, match="loss_fn returned list"):
        loss_surface(lambda stacked: [0.0], params, plane(0, params), 1.0, 3)


def test_loss_surface_keeps_nonfinite(caplog: pytest.LogCaptureFixture) -> None:
    params = make_params()
    at_centre = quadratic_loss({k: v.unsqueeze(0) for k, v in params.items()})

    def overflowing_loss(stacked: dict[str, torch.Tensor]) -> torch.Tensor:
        losses = quadratic_loss(stacked)
        return torch.where(losses > 1.5 * at_centre, torch.inf, losses)

    with caplog.at_level(logging.WARNING, logger="topology.landscape"):
        surface = loss_surface(overflowing_loss, params, plane(0, params), 3.0, 7)
    assert np.isinf(surface.values).any()
    assert np.isfinite(surface.values[3, 3])
    assert "non-finite values" in caplog.text


def test_loss_surface_nonfinite_rejected_by_persistence() -> None:
    params = make_params()

    def nan_loss(stacked: dict[str, torch.Tensor]) -> torch.Tensor:
        losses = quadratic_loss(stacked)
        losses[0] = torch.nan
        return losses

    surface = loss_surface(nan_loss, params, plane(0, params), 1.0, 5, batch_size=25)
    with pytest.raises(ValueError, match="diverged point"):
        sublevel_persistence(surface.values)


def test_loss_surface_bowl_one_basin() -> None:
    # Around the minimum of a convex loss the landscape has one component.
    params = {"w": torch.linspace(-1.0, 1.0, 12, dtype=torch.float64).reshape(3, 4)}
    surface = loss_surface(quadratic_loss, params, plane(0, params), 1.0, 11)
    diagram = sublevel_persistence(surface.values)
    assert len(diagram.bars[0]) == 1


def test_loss_surface_dataclass_checks_shape() -> None:
    with pytest.raises(ValueError, match=r"values has shape \(2, 3\)"):
        LossSurface(coords=np.zeros(2), values=np.zeros((2, 3)), span=1.0, resolution=2)
