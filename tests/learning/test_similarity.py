"""CKA and equality up to an affine map, on synthetic features and a trained network."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from learning.config import ExperimentConfig
from learning.data import Dataset
from learning.functor import LearningFunctor
from learning.rep import Representation
from learning.similarity import (
    Estimator,
    Kernel,
    _pseudoinverse_solution,
    affine_fit,
    affinely_equal,
    cka,
)
from learning.training import initial_model, train_run

SETTINGS: list[tuple[Kernel, Estimator]] = [
    ("linear", "biased"),
    ("linear", "unbiased"),
    ("rbf", "biased"),
    ("rbf", "unbiased"),
]


def _gaussian(seed: int, n: int, p: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, p))


def _orthogonal(seed: int, p: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, p)))
    return q * np.sign(np.diag(r))


seeds = st.integers(0, 2**32 - 1)
examples = st.integers(4, 30)
widths = st.integers(1, 12)
settings_strategy = st.sampled_from(SETTINGS)


# ---------------------------------------------------------------------------
# CKA: laws


@given(seeds, examples, widths, settings_strategy)
def test_cka_identical_inputs_is_one(
    seed: int, n: int, p: int, setting: tuple[Kernel, Estimator]
) -> None:
    kernel, estimator = setting
    x = _gaussian(seed, n, p)
    assert cka(x, x, kernel, estimator) == pytest.approx(1.0, abs=1e-12)


@given(seeds, examples, widths, widths, settings_strategy)
def test_cka_is_symmetric(
    seed: int, n: int, p: int, q: int, setting: tuple[Kernel, Estimator]
) -> None:
    kernel, estimator = setting
    x = _gaussian(seed, n, p)
    y = _gaussian(seed + 1, n, q) + x[:, :1]
    forward = cka(x, y, kernel, estimator)
    backward = cka(y, x, kernel, estimator)
    assert forward == pytest.approx(backward, abs=1e-12)


@given(
    seeds,
    examples,
    widths,
    st.floats(1e-3, 1e3),
    st.sampled_from(["biased", "unbiased"]),
)
def test_linear_cka_orthogonal_and_scale_invariant(
    seed: int, n: int, p: int, scale: float, estimator: Estimator
) -> None:
    x = _gaussian(seed, n, p)
    y = np.tanh(_gaussian(seed + 1, n, 3) + x[:, :1])
    transformed = scale * x @ _orthogonal(seed + 2, p) + _gaussian(seed + 3, 1, p)
    before = cka(x, y, estimator=estimator)
    after = cka(transformed, y, estimator=estimator)
    assert after == pytest.approx(before, abs=1e-9)


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(2, 12), st.integers(1, 5)),
        elements=st.floats(-1e3, 1e3, allow_subnormal=False),
    ),
    seeds,
)
def test_biased_linear_cka_in_unit_interval(x: np.ndarray, seed: int) -> None:
    assume(not (x == x[0]).all())
    y = _gaussian(seed, x.shape[0], 3)
    value = cka(x, y)
    assert 0.0 <= value
    assert value <= 1.0


@given(seeds, examples, widths, st.sampled_from(["linear", "rbf"]))
def test_unbiased_cka_within_plus_minus_one(
    seed: int, n: int, p: int, kernel: Kernel
) -> None:
    x = _gaussian(seed, n, p)
    y = _gaussian(seed + 1, n, 2)
    value = cka(x, y, kernel, "unbiased")
    assert -1.0 <= value
    assert value <= 1.0


# ---------------------------------------------------------------------------
# CKA: values against references written from the formulas


def _reference_linear_cka_biased(x: np.ndarray, y: np.ndarray) -> float:
    n = int(x.shape[0])
    h = np.eye(n) - np.ones((n, n)) / n

    def hsic(k: np.ndarray, m: np.ndarray) -> float:
        trace = float(np.trace(k @ h @ m @ h))
        return trace / (n - 1) ** 2

    k, m = x @ x.T, y @ y.T
    return hsic(k, m) / float(np.sqrt(hsic(k, k) * hsic(m, m)))


def _reference_hsic_unbiased(k: np.ndarray, m: np.ndarray) -> float:
    """Average the U-statistic kernel over every ordered 4-tuple of distinct indices.

    HSIC = E[k_ij m_ij] + E[k_ij m_qr] - 2 E[k_ij m_iq] over independent
    examples i, j, q, r, so averaging over distinct indices is unbiased.
    """
    n = k.shape[0]
    tuples = list(itertools.permutations(range(n), 4))
    total = sum(
        k[i, j] * m[i, j] + k[i, j] * m[q, r] - 2 * k[i, j] * m[i, q]
        for i, j, q, r in tuples
    )
    return float(total) / len(tuples)


@pytest.mark.parametrize(("n", "p", "q"), [(7, 2, 3), (5, 9, 11), (6, 1, 1)])
def test_linear_cka_matches_reference(n: int, p: int, q: int) -> None:
    x = _gaussian(0, n, p)
    y = _gaussian(1, n, q) + 0.5 * x[:, :1]
    expected = _reference_linear_cka_biased(x, y)
    assert cka(x, y) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("n", "p", "q"), [(4, 2, 3), (6, 3, 2), (7, 10, 1)])
def test_unbiased_linear_cka_matches_u_statistic(n: int, p: int, q: int) -> None:
    x = _gaussian(2, n, p)
    y = _gaussian(3, n, q) + x[:, :1]
    k, m = x @ x.T, y @ y.T
    expected = _reference_hsic_unbiased(k, m) / np.sqrt(
        _reference_hsic_unbiased(k, k) * _reference_hsic_unbiased(m, m)
    )
    assert cka(x, y, estimator="unbiased") == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_rbf_cka_large_sigma_approaches_linear(estimator: Estimator) -> None:
    # exp(-d²/2σ²) - 1 = -d²/2σ² + O((d/σ)⁴), and the centered -d²/2 is the
    # linear Gram matrix, so the gap shrinks like (d/σ)²: about 1e-8 here.
    x = _gaussian(4, 20, 5)
    y = _gaussian(5, 20, 3) + x[:, :3]
    sigma = 1e4 * float(np.linalg.norm(x[:, None] - x[None], axis=-1).max())
    linear = cka(x, y, estimator=estimator)
    rbf = cka(x, y, "rbf", estimator, sigma=sigma)
    assert rbf == pytest.approx(linear, abs=1e-6)


def _median_distance(x: np.ndarray) -> float:
    rows, columns = np.triu_indices(x.shape[0], k=1)
    distances = np.linalg.norm(x[rows] - x[columns], axis=1)
    return float(np.median(distances))


@pytest.mark.parametrize("factor", [1.0, 0.4])
def test_rbf_median_heuristic_bandwidth(factor: float) -> None:
    # 7 examples give 21 pairs, an odd count, so the median is one distance.
    x = _gaussian(6, 7, 4)
    y = 3.0 * _gaussian(7, 7, 2) + x[:, :2]
    heuristic = cka(x, y, "rbf", sigma_factor=factor)
    rescaled = cka(
        x / _median_distance(x), y / _median_distance(y), "rbf", sigma=factor
    )
    assert heuristic == pytest.approx(rescaled, rel=1e-12)


def test_rbf_heuristic_ignores_input_scale() -> None:
    x = _gaussian(8, 10, 3)
    assert cka(x, 50.0 * x, "rbf") == pytest.approx(1.0, abs=1e-12)
    assert cka(x, 50.0 * x, "rbf", sigma=1.0) < 0.99


def test_linear_cka_not_invariant_to_general_linear_maps() -> None:
    x = _gaussian(9, 40, 4)
    stretched = x @ np.diag([1.0, 10.0, 100.0, 1000.0])
    assert affinely_equal(x, stretched, symmetric=True)
    assert cka(x, stretched) < 0.9


@pytest.mark.parametrize("scale", [1e-200, 1e-150, 1e150, 1e200])
def test_linear_cka_extreme_scales(scale: float) -> None:
    # Squares of these features under- or overflow float64 unless rescaled.
    x = _gaussian(50, 9, 3)
    y = _gaussian(51, 9, 2) + x[:, :2]
    for estimator in ("biased", "unbiased"):
        expected = cka(x, y, estimator=estimator)
        assert cka(scale * x, y, estimator=estimator) == pytest.approx(expected)


def test_cka_accepts_numpy_tensor_and_representation() -> None:
    x = _gaussian(10, 12, 3)
    y = _gaussian(11, 12, 2)
    from_numpy = cka(x, y)
    from_tensor = cka(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    from_rep = cka(Representation(torch.tensor(x)), y)
    assert from_tensor == pytest.approx(from_numpy, rel=1e-6)
    assert from_rep == pytest.approx(from_numpy, rel=1e-12)


# ---------------------------------------------------------------------------
# CKA: rejected inputs


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_unbiased_cka_rejects_fewer_than_four(n: int, kernel: Kernel) -> None:
    x = _gaussian(12, n, 3)
    y = _gaussian(13, n, 2)
    with pytest.raises(ValueError, match=rf"got n={n}\. Use estimator='biased'"):
        cka(x, y, kernel, "unbiased")


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_biased_cka_finite_on_two_or_three(n: int, kernel: Kernel) -> None:
    x = _gaussian(14, n, 3)
    y = _gaussian(15, n, 2)
    value = cka(x, y, kernel)
    assert np.isfinite(value)
    assert 0.0 <= value <= 1.0


def test_biased_cka_two_examples_is_one() -> None:
    # Two centered examples are ±d/2, so every centered Gram matrix is a
    # multiple of [[1, -1], [-1, 1]].
    assert cka(_gaussian(16, 2, 3), _gaussian(17, 2, 5)) == pytest.approx(1.0)


def test_biased_cka_rejects_one_example() -> None:
    with pytest.raises(ValueError, match="at least 2 examples; got n=1"):
        cka(np.ones((1, 3)), np.ones((1, 2)))


@pytest.mark.parametrize("setting", SETTINGS)
def test_cka_rejects_constant_input(setting: tuple[Kernel, Estimator]) -> None:
    kernel, estimator = setting
    x = _gaussian(18, 6, 3)
    constant = np.tile([[0.1, 0.7]], (6, 1))
    with pytest.raises(ValueError, match="y is constant"):
        cka(x, constant, kernel, estimator)
    with pytest.raises(ValueError, match="x is constant"):
        cka(constant, x, kernel, estimator)


def test_rbf_heuristic_rejects_zero_median() -> None:
    # 4 equal rows and one other: 6 of the 10 pairs are at distance 0.
    x = np.array([[0.0], [0.0], [0.0], [0.0], [1.0]])
    y = _gaussian(19, 5, 2)
    with pytest.raises(ValueError, match="median distance between examples of x"):
        cka(x, y, "rbf")
    assert np.isfinite(cka(x, y, "rbf", sigma=1.0))


def test_cka_rejects_mismatched_rows() -> None:
    with pytest.raises(ValueError, match=r"shapes \(5, 2\) and \(6, 2\)"):
        cka(_gaussian(20, 5, 2), _gaussian(21, 6, 2))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_cka_rejects_non_finite_naming_input(bad: float) -> None:
    y = _gaussian(22, 6, 2)
    y[4, 1] = bad
    with pytest.raises(ValueError, match="y contains 1 non-finite value.*row 4"):
        cka(_gaussian(23, 6, 2), y)


def test_cka_rejects_non_matrix_naming_input() -> None:
    with pytest.raises(ValueError, match="x must be a 2-D feature matrix"):
        cka(np.arange(6.0), _gaussian(24, 6, 2))
    with pytest.raises(ValueError, match="y is empty"):
        cka(_gaussian(25, 6, 2), np.zeros((6, 0)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kernel": "cosine"}, "unknown kernel 'cosine'"),
        ({"estimator": "jackknife"}, "unknown estimator 'jackknife'"),
        ({"sigma": 1.0}, "pass kernel='rbf' or drop sigma"),
        ({"kernel": "rbf", "sigma": 0.0}, "sigma must be a finite number > 0"),
        ({"kernel": "rbf", "sigma_factor": -1.0}, "sigma_factor must be"),
    ],
)
def test_cka_rejects_invalid_options(options: dict[str, object], message: str) -> None:
    x = _gaussian(26, 6, 2)
    with pytest.raises(ValueError, match=message):
        cka(x, x, **options)  # type: ignore[arg-type]


def test_cka_rejects_wrong_type() -> None:
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        cka([[1.0, 2.0], [3.0, 4.0]], _gaussian(27, 2, 2))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Affine fit


@given(seeds, st.integers(1, 6), st.integers(1, 6), st.integers(2, 20))
def test_affine_fit_recovers_known_map(seed: int, p: int, q: int, extra: int) -> None:
    n = p + 1 + extra
    source = _gaussian(seed, n, p)
    weight = _gaussian(seed + 1, p, q)
    bias = _gaussian(seed + 2, 1, q)[0]
    fit = affine_fit(source, source @ weight + bias)
    assert not fit.underdetermined
    assert fit.relative_residual < 1e-9
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(fit.weight.numpy(), weight, atol=1e-8)
    assert np.allclose(fit.bias.numpy(), bias, atol=1e-8)


def test_affine_fit_tanh_of_wide_input_misfits() -> None:
    # tanh saturates over [-5, 5], so no line fits it: R² is about 0.87.
    source = np.linspace(-5.0, 5.0, 50).reshape(-1, 1)
    fit = affine_fit(source, np.tanh(source))
    assert fit.relative_residual > 0.3
    assert fit.r2 < 0.9
    assert not affinely_equal(source, np.tanh(source))


def test_affine_fit_field_values() -> None:
    source = np.linspace(-5.0, 5.0, 50).reshape(-1, 1)
    target = np.tanh(source)
    fit = affine_fit(source, target)
    misfit = source @ fit.weight.numpy() + fit.bias.numpy() - target
    spread = np.linalg.norm(target - target.mean(axis=0))
    assert fit.residual == pytest.approx(np.linalg.norm(misfit), rel=1e-12)
    assert fit.relative_residual == pytest.approx(fit.residual / spread, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0 - fit.relative_residual**2, rel=1e-12)
    assert np.allclose(fit.apply(source).numpy(), misfit + target, atol=1e-12)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_affine_fit_relative_residual_scale_free(scale: float) -> None:
    # Squares of these targets under- or overflow float64 unless rescaled.
    source = np.linspace(-5.0, 5.0, 50).reshape(-1, 1)
    unscaled = affine_fit(source, np.tanh(source))
    fit = affine_fit(source, scale * np.tanh(source))
    assert fit.relative_residual == pytest.approx(unscaled.relative_residual, rel=1e-9)
    assert fit.residual == pytest.approx(scale * unscaled.residual, rel=1e-9)


@pytest.mark.parametrize(("n", "underdetermined"), [(3, True), (4, True), (5, False)])
def test_affine_fit_flags_underdetermined(n: int, underdetermined: bool) -> None:
    source = _gaussian(28, n, 3)
    target = _gaussian(29, n, 2)
    fit = affine_fit(source, target)
    assert fit.underdetermined is underdetermined
    if underdetermined:
        assert fit.relative_residual < 1e-9


def test_affinely_equal_logs_underdetermined(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="learning.similarity"):
        assert affinely_equal(_gaussian(30, 4, 3), _gaussian(31, 4, 2))
    assert "underdetermined" in caplog.text


def test_affine_fit_constant_target() -> None:
    source = _gaussian(32, 10, 3)
    target = np.tile([[0.1, -2.0]], (10, 1))
    fit = affine_fit(source, target)
    assert fit.residual == 0.0
    assert fit.relative_residual == 0.0
    assert fit.r2 == 1.0
    assert torch.equal(fit.weight, torch.zeros(3, 2, dtype=torch.float64))
    assert fit.bias.tolist() == [0.1, -2.0]


def test_affine_fit_rank_deficient_source() -> None:
    # A zero column, as a dead ReLU unit gives, and a duplicated column.
    base = _gaussian(33, 20, 3)
    source = np.hstack([base, np.zeros((20, 1)), base[:, :1]])
    target = base @ _gaussian(34, 3, 2) + 1.5
    fit = affine_fit(source, target)
    assert fit.relative_residual < 1e-9
    assert np.all(fit.weight.numpy()[3] == pytest.approx(0.0, abs=1e-12))


@pytest.mark.parametrize(("n", "p"), [(20, 5), (4, 6)])
def test_pseudoinverse_solution_matches_gelsd(n: int, p: int) -> None:
    # The CUDA path solves with the pseudoinverse; compare it with gelsd here.
    design = torch.tensor(_gaussian(35, n, p))
    design[:, 1] = 0.0
    design = torch.cat([design, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    target = torch.tensor(_gaussian(36, n, 2))
    expected = torch.linalg.lstsq(design, target, driver="gelsd").solution
    assert torch.allclose(_pseudoinverse_solution(design, target), expected)


def test_affinely_equal_not_symmetric_for_lower_rank() -> None:
    rich = _gaussian(37, 30, 4)
    poor = rich @ _gaussian(38, 4, 1) @ _gaussian(39, 1, 4)  # rank 1
    assert affinely_equal(rich, poor)
    assert not affinely_equal(poor, rich)
    assert not affinely_equal(rich, poor, symmetric=True)
    assert not affinely_equal(poor, rich, symmetric=True)


@given(seeds, st.integers(1, 6))
def test_affinely_equal_invertible_map_both_ways(seed: int, p: int) -> None:
    x = _gaussian(seed, 3 * p + 4, p)
    weight = _orthogonal(seed + 1, p) @ np.diag(np.linspace(0.5, 4.0, p))
    y = x @ weight - 7.0
    assert affinely_equal(x, y, symmetric=True)


def test_affine_fit_rejects_mismatched_rows() -> None:
    with pytest.raises(ValueError, match=r"source and target .* \(5, 2\) and \(4, 2\)"):
        affine_fit(_gaussian(40, 5, 2), _gaussian(41, 4, 2))


@pytest.mark.parametrize("name", ["source", "target"])
def test_affine_fit_rejects_non_finite_naming_input(name: str) -> None:
    inputs = {"source": _gaussian(42, 8, 2), "target": _gaussian(43, 8, 2)}
    inputs[name][2, 0] = np.nan
    with pytest.raises(ValueError, match=rf"^{name} contains 1 non-finite"):
        affine_fit(**inputs)


def test_affine_fit_rejects_non_matrix() -> None:
    with pytest.raises(ValueError, match="target must be a 2-D feature matrix"):
        affine_fit(_gaussian(44, 8, 2), np.zeros((8, 2, 1)))


def test_affinely_equal_names_its_inputs() -> None:
    b = _gaussian(45, 8, 2)
    b[0, 0] = np.inf
    with pytest.raises(ValueError, match="^b contains"):
        affinely_equal(_gaussian(46, 8, 2), b)


@pytest.mark.parametrize("tolerance", [-1e-3, float("nan"), float("inf")])
def test_affinely_equal_rejects_bad_tolerance(tolerance: float) -> None:
    x = _gaussian(47, 8, 2)
    with pytest.raises(ValueError, match="tolerance must be a finite number"):
        affinely_equal(x, x, tolerance=tolerance)


# ---------------------------------------------------------------------------
# Features of a trained network


@pytest.fixture(scope="module")
def checkpoint_features(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    run = train_run(small_config, small_dataset, small_config.train.run_specs()[0], cpu)
    functor = LearningFunctor(
        initial_model(small_config, small_dataset, 0), small_dataset.probe, cpu
    )
    path = functor.map_morphism(run.trajectory)
    assert len(path.times) >= 2
    return path.features[0], path.features[-1]


def test_network_cka_with_itself_is_one(
    checkpoint_features: tuple[torch.Tensor, torch.Tensor],
) -> None:
    for features in checkpoint_features:
        assert cka(features, features) == pytest.approx(1.0, abs=1e-12)


def test_network_cka_with_similar_copy_is_one(
    checkpoint_features: tuple[torch.Tensor, torch.Tensor],
) -> None:
    # Linear CKA is invariant to the affine maps c Q x + b (Q orthogonal),
    # not to every affine map.
    for features in checkpoint_features:
        width = features.shape[1]
        q = torch.tensor(_orthogonal(48, width))
        copy = 2.5 * features.double() @ q + torch.linspace(-3.0, 3.0, width)
        assert cka(features, copy) == pytest.approx(1.0, abs=1e-9)
        assert affinely_equal(features, copy, symmetric=True)


def test_network_general_affine_copy_is_affinely_equal(
    checkpoint_features: tuple[torch.Tensor, torch.Tensor],
) -> None:
    _, last = checkpoint_features
    weight = torch.tensor(_gaussian(49, last.shape[1], 8))
    fit = affine_fit(last, last.double() @ weight + 0.25)
    assert not fit.underdetermined
    assert fit.relative_residual < 1e-9


def test_network_checkpoints_compared(
    checkpoint_features: tuple[torch.Tensor, torch.Tensor],
) -> None:
    first, last = checkpoint_features
    forward = cka(first, last)
    assert 0.0 <= forward <= 1.0
    assert cka(last, first) == pytest.approx(forward, abs=1e-12)
    assert cka(first, last, "rbf") <= 1.0
