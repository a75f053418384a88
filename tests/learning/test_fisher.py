"""Fisher estimates at a point and Fisher lengths of trajectories.

The reference for every estimate is the full empirical Fisher built from
per-example gradients computed one example at a time with plain autograd.
Models are float64 unless a test states otherwise, so the tolerances measure
the method, not float32 rounding.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from learning.fisher import (
    FisherKind,
    FisherMetric,
    NonFiniteError,
    empirical_fisher,
    fisher_length,
    fisher_lengths_compare,
    per_example_gradients,
    sample_labels,
)
from learning.param import ParamCategory, ParamLayout, ParamPoint, Trajectory


def _mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


def _loop_gradients(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Return the (n, P) per-example gradients, one backward pass per example."""
    rows = []
    for i in range(x.shape[0]):
        module.zero_grad()
        loss = nn.functional.cross_entropy(module(x[i : i + 1]), y[i : i + 1])
        loss.backward()  # type: ignore[no-untyped-call]
        grads = [p.grad for p in module.parameters()]
        rows.append(torch.cat([g.reshape(-1) for g in grads if g is not None]))
    return torch.stack(rows)


def _loop_fisher(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    gradients = _loop_gradients(module, x, y)
    return gradients.T @ gradients / x.shape[0]


def _point(module: nn.Module) -> torch.Tensor:
    return ParamLayout.of(module).flatten(module)


# --- estimates at a point ---------------------------------------------------


def test_per_example_gradients_match_loop() -> None:
    model = _mlp()
    x, y = _data(13)
    blocks = list(per_example_gradients(model, _point(model), x, y, batch_size=5))
    assert [b.shape[0] for b in blocks] == [5, 5, 3]
    expected = _loop_gradients(model, x, y)
    assert torch.allclose(torch.cat(blocks), expected, rtol=0, atol=1e-12)


def test_diagonal_matches_loop_float64() -> None:
    model = _mlp()
    x, y = _data(40)
    metric = empirical_fisher(model, _point(model), x, y, batch_size=16)
    expected = _loop_gradients(model, x, y).square().mean(dim=0)
    assert metric.kind == "diagonal"
    assert metric.rank is None
    assert metric.n_examples == 40
    # float64 sums of 40 squares: agreement to 1e-12 absolute leaves room for
    # the different summation order of the chunked estimate.
    assert metric.diagonal is not None
    assert torch.allclose(metric.diagonal, expected, rtol=0, atol=1e-12)


def test_diagonal_matches_loop_float32() -> None:
    model = _mlp(dtype=torch.float32)
    x, y = _data(40)
    metric = empirical_fisher(model, _point(model), x.float(), y)
    expected = _loop_gradients(model, x.float(), y).square().mean(dim=0)
    assert metric.diagonal is not None
    assert metric.diagonal.dtype == torch.float32
    # float32 has a unit roundoff of 6e-8; 1e-5 relative allows the vmap
    # kernels and the loop to round differently.
    assert torch.allclose(metric.diagonal, expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("n", [10, 60], ids=["n<P", "n>P"])
def test_lowrank_full_rank_matches_loop_action(n: int) -> None:
    model = _mlp()  # P = 43 parameters
    x, y = _data(n)
    metric = empirical_fisher(model, _point(model), x, y, kind="lowrank")
    full = _loop_fisher(model, x, y)
    size = full.shape[0]
    assert metric.rank == min(n, size)
    vectors = torch.randn(7, size, generator=torch.Generator().manual_seed(1))
    vectors = vectors.double()
    # The exact SVD in float64 reconstructs F to about 1e-15 of its norm.
    assert torch.allclose(metric.matvec(vectors), vectors @ full, rtol=0, atol=1e-12)


def test_lowrank_truncation_keeps_top_eigenvalues() -> None:
    model = _mlp()
    x, y = _data(30)
    metric = empirical_fisher(model, _point(model), x, y, kind="lowrank", rank=4)
    top = torch.linalg.eigvalsh(_loop_fisher(model, x, y)).flip(0)[:4]
    assert metric.rank == 4
    assert metric.eigenvalues is not None
    assert torch.allclose(metric.eigenvalues, top, rtol=1e-10, atol=1e-14)
    assert metric.basis is not None
    gram = metric.basis.T @ metric.basis
    assert torch.allclose(gram, torch.eye(4, dtype=gram.dtype), atol=1e-12)


def test_lowrank_rank_above_examples_is_lowered() -> None:
    model = _mlp()
    x, y = _data(6)
    metric = empirical_fisher(model, _point(model), x, y, kind="lowrank", rank=100)
    assert metric.rank == 6


@settings(max_examples=25)
@given(
    kind=st.sampled_from(["diagonal", "lowrank"]),
    rank=st.integers(1, 12),
    damping=st.floats(1e-3, 10.0),
    seed=st.integers(0, 2**16),
)
def test_solve_inverts_damped_fisher(
    kind: FisherKind, rank: int, damping: float, seed: int
) -> None:
    model = _mlp(seed % 7)
    x, y = _data(12, seed)
    metric = empirical_fisher(
        model, _point(model), x, y, kind=kind, rank=rank, damping=damping
    )
    g = torch.randn(metric.size, generator=torch.Generator().manual_seed(seed))
    g = g.double()
    solution = metric.solve(g)
    # F s + lambda s = g; the damped F has condition number at most
    # (max eigenvalue + lambda) / lambda <= 1e3 here, so 1e-9 is generous.
    residual = metric.matvec(solution, damping=0.0) + damping * solution - g
    assert residual.abs().max().item() < 1e-9 * max(1.0, g.abs().max().item())


def test_solve_agrees_with_dense_solve() -> None:
    model = _mlp()
    x, y = _data(15)
    metric = empirical_fisher(model, _point(model), x, y, kind="lowrank", rank=5)
    g = torch.randn(3, metric.size, dtype=torch.float64)
    expected = torch.linalg.solve(metric.to_dense(0.25), g.T).T
    assert torch.allclose(metric.solve(g, damping=0.25), expected, atol=1e-10)


class _ReferenceClassHead(nn.Module):
    """Logits (0, W h + b): class 0 pinned, so no parameter shifts all logits alike."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.head(torch.tanh(self.hidden(x)))
        return torch.cat([torch.zeros_like(scores[:, :1]), scores], dim=1)


def test_solve_without_damping_full_rank() -> None:
    torch.manual_seed(0)
    model = _ReferenceClassHead().double()  # P = 37
    x, y = _data(80)  # n > P, so the empirical Fisher is invertible
    metric = empirical_fisher(model, _point(model), x, y, kind="lowrank")
    g = torch.randn(metric.size, dtype=torch.float64)
    solution = metric.solve(g, damping=0.0)
    assert torch.allclose(_loop_fisher(model, x, y) @ solution, g, atol=1e-8)


def test_solve_without_damping_softmax_null_space_rejected() -> None:
    # Even with n > P, a linear head under softmax leaves F singular: adding
    # one vector to all of its rows changes no prediction (5 + 1 directions).
    model = _mlp()
    x, y = _data(80)
    metric = empirical_fisher(model, _point(model), x, y, kind="lowrank")
    assert metric.rank == 43
    with pytest.raises(ValueError, match="6 of them numerically 0"):
        metric.solve(torch.ones(metric.size, dtype=torch.float64), damping=0.0)


def test_solve_without_damping_rank_deficient_rejected() -> None:
    model = _mlp()
    x, y = _data(10)
    metric = empirical_fisher(model, _point(model), x, y, kind="lowrank")
    with pytest.raises(ValueError, match="pass damping > 0"):
        metric.solve(torch.ones(metric.size, dtype=torch.float64))


def test_solve_without_damping_zero_diagonal_rejected() -> None:
    # An input feature that is always 0 gets zero gradient in its weights,
    # so those diagonal entries of F are 0 and F is singular.
    model = _mlp()
    x, y = _data(10)
    x[:, 0] = 0.0
    metric = empirical_fisher(model, _point(model), x, y)
    with pytest.raises(ValueError, match="5 of 43 diagonal Fisher entries are 0"):
        metric.solve(torch.ones(metric.size, dtype=torch.float64))


@functools.cache
def _damped_metric(kind: FisherKind) -> FisherMetric:
    model = _mlp()
    x, y = _data(8)
    return empirical_fisher(model, _point(model), x, y, kind=kind, damping=0.01)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["diagonal", "lowrank"]))
def test_inner_symmetric_and_norm_nonnegative(seed: int, kind: FisherKind) -> None:
    metric = _damped_metric(kind)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(metric.size, generator=g).double()
    v = torch.randn(metric.size, generator=g).double()
    assert math.isclose(
        metric.inner(u, v).item(), metric.inner(v, u).item(), rel_tol=1e-12
    )
    assert metric.norm(v).item() >= math.sqrt(0.01) * v.norm().item() - 1e-12
    assert math.isclose(metric.norm(2 * v).item(), 2 * metric.norm(v).item())


def test_sampled_fisher_uses_model_labels() -> None:
    model = _mlp()
    x, y = _data(30)
    point = _point(model)
    labels = sample_labels(model, point, x, torch.Generator().manual_seed(5))
    metric = empirical_fisher(
        model, point, x, y, sampled=True, generator=torch.Generator().manual_seed(5)
    )
    expected = _loop_gradients(model, x, labels).square().mean(dim=0)
    assert metric.sampled
    assert metric.diagonal is not None
    assert torch.allclose(metric.diagonal, expected, rtol=0, atol=1e-12)


def test_sampled_fisher_estimates_true_fisher() -> None:
    # For a linear softmax model the true Fisher's diagonal is known in
    # closed form: the weight (c, j) has mean_i p_ic (1 - p_ic) x_ij^2, and
    # the bias c has mean_i p_ic (1 - p_ic).
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    x, y = _data(20)
    draws = 2000
    repeated = x.repeat(draws, 1)
    metric = empirical_fisher(
        model,
        _point(model),
        repeated,
        y.repeat(draws),
        sampled=True,
        generator=torch.Generator().manual_seed(0),
        batch_size=4096,
    )
    with torch.no_grad():
        p = torch.softmax(model(x), dim=-1)
    weight = ((p * (1 - p)).T @ x.square()) / x.shape[0]
    bias = (p * (1 - p)).mean(dim=0)
    true_diagonal = torch.cat([weight.reshape(-1), bias])
    assert metric.diagonal is not None
    # 40,000 draws put the Monte Carlo relative error near 1%; 5% is about
    # five standard errors for the smallest entry.
    assert torch.allclose(metric.diagonal, true_diagonal, rtol=0.05)
    empirical = empirical_fisher(model, _point(model), x, y)
    assert empirical.diagonal is not None
    assert not torch.allclose(empirical.diagonal, true_diagonal, rtol=0.05)


def test_estimate_leaves_module_unchanged() -> None:
    model = _mlp().train()
    before = _point(model).clone()
    x, y = _data(10)
    empirical_fisher(model, before + 1.0, x, y, kind="lowrank")
    assert model.training
    assert torch.equal(_point(model), before)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "full"}, "kind 'full' is not supported"),
        ({"rank": 0}, "rank = 0 must be at least 1"),
        ({"damping": -1.0}, "damping = -1.0 must be a finite number >= 0"),
        ({"damping": math.nan}, "must be a finite number >= 0"),
        ({"batch_size": 0}, "batch_size = 0 must be at least 1"),
    ],
)
def test_estimate_rejects_invalid_settings(
    kwargs: dict[str, object], message: str
) -> None:
    model = _mlp()
    x, y = _data(5)
    with pytest.raises(ValueError, match=message):
        empirical_fisher(model, _point(model), x, y, **kwargs)  # type: ignore[arg-type]


def test_estimate_rejects_mismatched_shapes() -> None:
    model = _mlp()
    x, y = _data(5)
    with pytest.raises(ValueError, match="does not match the module's 43"):
        empirical_fisher(model, torch.zeros(42, dtype=torch.float64), x, y)
    with pytest.raises(ValueError, match="does not match 5 inputs"):
        empirical_fisher(model, _point(model), x, y[:4])
    with pytest.raises(ValueError, match="x has no examples"):
        empirical_fisher(model, _point(model), x[:0], y[:0])


@pytest.mark.parametrize("kind", ["diagonal", "lowrank"])
def test_estimate_rejects_diverged_point(kind: FisherKind) -> None:
    model = _mlp()
    x, y = _data(5)
    point = _point(model)
    point[0] = math.inf
    with pytest.raises(NonFiniteError, match="network has diverged"):
        empirical_fisher(model, point, x, y, kind=kind)


@pytest.mark.parametrize("kind", ["diagonal", "lowrank"])
def test_estimate_rejects_infinite_input(kind: FisherKind) -> None:
    model = _mlp()
    x, y = _data(5)
    x[2, 1] = math.inf
    with pytest.raises(NonFiniteError, match="gradients are not finite"):
        empirical_fisher(model, _point(model), x, y, kind=kind)


def test_metric_rejects_inconsistent_fields() -> None:
    with pytest.raises(ValueError, match="needs `diagonal` of shape"):
        FisherMetric(kind="diagonal", damping=0.0, n_examples=1)
    with pytest.raises(ValueError, match="needs both `basis`"):
        FisherMetric(kind="lowrank", damping=0.0, n_examples=1, basis=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="do not match"):
        FisherMetric(
            kind="lowrank",
            damping=0.0,
            n_examples=1,
            basis=torch.zeros(3, 2),
            eigenvalues=torch.zeros(3),
        )
    metric = FisherMetric(
        kind="diagonal", damping=0.0, n_examples=1, diagonal=torch.ones(3)
    )
    with pytest.raises(ValueError, match=r"pass shape \(3,\)"):
        metric.norm(torch.ones(4))


# --- lengths of trajectories ------------------------------------------------


def _line(start: torch.Tensor, end: torch.Tensor, fractions: list[float]) -> Trajectory:
    """Return the trajectory through start + t (end - start) for t in `fractions`."""
    points = torch.stack([start + t * (end - start) for t in fractions])
    return Trajectory(tuple(range(len(fractions))), points)


@pytest.mark.parametrize("kind", ["diagonal", "lowrank"])
def test_two_point_length_is_quadratic_form(kind: FisherKind) -> None:
    model = _mlp()
    x, y = _data(20)
    start = _point(model)
    end = start + 0.3 * torch.randn(start.shape, dtype=torch.float64)
    result = fisher_length(model, _line(start, end, [0.0, 1.0]), x, y, kind=kind)
    d = end - start
    full = _loop_fisher(model, x, y)
    quadratic = d @ full @ d if kind == "lowrank" else d.square() @ full.diagonal()
    assert math.isclose(result.length, math.sqrt(quadratic.item()), rel_tol=1e-10)
    assert math.isclose(result.euclidean_length, d.norm().item(), rel_tol=1e-12)
    assert result.segment_lengths == (result.length,)
    assert result.evaluated_at == "start"


def test_length_with_damping() -> None:
    model = _mlp()
    x, y = _data(20)
    start = _point(model)
    end = start + 0.1
    result = fisher_length(model, _line(start, end, [0.0, 1.0]), x, y, damping=2.0)
    d = end - start
    expected = d.square() @ (_loop_gradients(model, x, y).square().mean(0) + 2.0)
    assert math.isclose(result.length, math.sqrt(expected.item()), rel_tol=1e-10)


@settings(max_examples=20)
@given(
    fractions=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=6, unique=True).map(
        sorted
    ),
    kind=st.sampled_from(["diagonal", "lowrank"]),
)
def test_collinear_checkpoints_keep_length_under_frozen_metric(
    fractions: list[float], kind: FisherKind
) -> None:
    # With the metric estimated once (recompute_every beyond the number of
    # segments) F is constant, and sqrt(t^2 d^T F d) sums to sqrt(d^T F d).
    model = _mlp()
    x, y = _data(15)
    start = _point(model)
    end = start + torch.linspace(-1, 1, start.shape[0], dtype=torch.float64)
    coarse = fisher_length(model, _line(start, end, [0.0, 1.0]), x, y, kind=kind)
    fine = fisher_length(
        model,
        _line(start, end, [0.0, *fractions, 1.0]),
        x,
        y,
        kind=kind,
        recompute_every=100,
    )
    assert math.isclose(fine.length, coarse.length, rel_tol=1e-10)
    assert math.isclose(fine.euclidean_length, coarse.euclidean_length, rel_tol=1e-10)
    assert len(fine.segment_lengths) == len(fractions) + 1


def test_collinear_checkpoints_on_short_segment() -> None:
    # With the metric recomputed at every checkpoint, F changes along the
    # segment, so the lengths differ at first order in the segment's
    # Euclidean length (3.9e-3 here). The measured relative difference is
    # 1.8e-5 and grows tenfold for a ten times longer segment; the bound is 1e-3.
    model = _mlp()
    x, y = _data(15)
    start = _point(model)
    direction = torch.linspace(-1, 1, start.shape[0], dtype=torch.float64)
    end = start + 1e-3 * direction
    coarse = fisher_length(model, _line(start, end, [0.0, 1.0]), x, y)
    fine = fisher_length(model, _line(start, end, [0.0, 0.25, 0.5, 0.75, 1.0]), x, y)
    assert math.isclose(fine.length, coarse.length, rel_tol=1e-3)
    assert fine.length != coarse.length  # the metric really was recomputed


def test_length_ignores_step_labels() -> None:
    model = _mlp()
    x, y = _data(15)
    start = _point(model)
    path = _line(start, start + 0.2, [0.0, 0.3, 1.0])
    relabelled = Trajectory((0, 17, 40), path.points)
    assert fisher_length(model, path, x, y) == fisher_length(model, relabelled, x, y)


@settings(max_examples=8)
@given(
    first=st.integers(1, 4),
    second=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["diagonal", "lowrank"]),
)
def test_length_additive_under_composition(
    first: int, second: int, seed: int, kind: FisherKind
) -> None:
    model = _mlp()
    x, y = _data(10)
    g = torch.Generator().manual_seed(seed)
    walk = _point(model) + 0.1 * torch.randn(first + second + 1, 43, generator=g)
    f = Trajectory(tuple(range(first + 1)), walk[: first + 1])
    h = Trajectory(tuple(range(second + 1)), walk[first:])
    composite = ParamCategory(ParamLayout.of(model)).compose(f, h)
    whole = fisher_length(model, composite, x, y, kind=kind)
    parts = [fisher_length(model, t, x, y, kind=kind) for t in (f, h)]
    assert whole.segment_lengths == parts[0].segment_lengths + parts[1].segment_lengths
    assert math.isclose(whole.length, parts[0].length + parts[1].length, rel_tol=1e-12)


def test_identity_trajectory_has_zero_length() -> None:
    model = _mlp()
    x, y = _data(5)
    category = ParamCategory(ParamLayout.of(model))
    identity = category.identity(ParamPoint(_point(model)))
    result = fisher_length(model, identity, x, y)
    assert result.length == 0.0
    assert result.euclidean_length == 0.0
    assert result.segment_lengths == ()


def test_length_rejects_invalid_input() -> None:
    model = _mlp()
    x, y = _data(5)
    path = _line(_point(model), _point(model) + 1, [0.0, 1.0])
    with pytest.raises(ValueError, match="recompute_every = 0 must be at least 1"):
        fisher_length(model, path, x, y, recompute_every=0)
    wrong = Trajectory((0, 1), torch.zeros(2, 40, dtype=torch.float64))
    with pytest.raises(ValueError, match="module has 43 parameters"):
        fisher_length(model, wrong, x, y)


def test_compare_returns_one_row_per_name() -> None:
    model = _mlp()
    x, y = _data(10)
    start = _point(model)
    trajectories = {
        "short": _line(start, start + 0.1, [0.0, 1.0]),
        "long": _line(start, start + 0.5, [0.0, 0.5, 1.0]),
    }
    table = fisher_lengths_compare(model, trajectories, x, y)
    assert list(table) == ["short", "long"]
    assert table["short"] == fisher_length(model, trajectories["short"], x, y)
    assert table["long"].length > table["short"].length
    row = table["long"].as_row()
    assert row["segments"] == 2
    assert row["kind"] == "diagonal"


def test_per_example_gradients_validate_at_call() -> None:
    model = _mlp()
    x, y = _data(5)
    with pytest.raises(ValueError, match="does not match 5 inputs"):
        per_example_gradients(model, _point(model), x, y[:3])
