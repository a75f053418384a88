"""Categories of matrices: laws, equality and hashing, and limits through kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from categories import CategoryError, CompositionError, ConeError, category_law_failures
from categories.matrices import (
    Backend,
    ExactMatrices,
    ExactMatrix,
    MatrixCategory,
    NumericMatrices,
    NumericMatrix,
    is_equalizer,
    is_pullback,
    verify_equalizer,
    verify_pullback,
)

EXACT = ExactMatrices()
NUMPY = NumericMatrices("numpy")
TORCH = NumericMatrices("torch")
BACKENDS: list[Backend] = ["numpy", "torch"]

# sympy arithmetic costs milliseconds per entry, so exact properties run on
# fewer and smaller examples than numeric ones.
exact_settings = settings(max_examples=15, deadline=None)
numeric_settings = settings(max_examples=40, deadline=None)

dimensions = st.integers(0, 3)
rationals = st.builds(sympy.Rational, st.integers(-3, 3), st.integers(1, 3))
unit_floats = st.floats(-1, 1, allow_nan=False, allow_infinity=False)
# Half-integers keep ranks well separated. Twice such a matrix is an integer
# matrix, whose nonzero singular values multiply to at least 1 (their squares
# multiply to a sum of squared integer minors), so the smallest nonzero one is
# far above round-off and kernels do not depend on the rank tolerance.
half_integers = st.integers(-4, 4).map(lambda k: k / 2)

x = sympy.Symbol("x")


def exact_matrices(dom: int, cod: int) -> st.SearchStrategy[ExactMatrix]:
    rows = st.lists(
        st.lists(rationals, min_size=dom, max_size=dom), min_size=cod, max_size=cod
    )
    return rows.map(lambda entries: ExactMatrix(entries, dom=dom))


def numeric_matrices(
    category: NumericMatrices,
    dom: int,
    cod: int,
    elements: st.SearchStrategy[float] = unit_floats,
) -> st.SearchStrategy[NumericMatrix]:
    return arrays(np.float64, (cod, dom), elements=elements).map(category.matrix)


def numeric_category(backend: Backend) -> NumericMatrices:
    return NUMPY if backend == "numpy" else TORCH


# Category laws.


@exact_settings
@given(st.data())
def test_exact_category_laws_on_triples(data: st.DataObject) -> None:
    n0, n1, n2, n3 = (data.draw(dimensions) for _ in range(4))
    f = data.draw(exact_matrices(n0, n1))
    g = data.draw(exact_matrices(n1, n2))
    h = data.draw(exact_matrices(n2, n3))
    report = category_law_failures(
        EXACT, [n0, n1, n2, n3], [f, g, h], pairs=[(f, g), (g, h)], triples=[(f, g, h)]
    )
    assert report.ok, report.failures


@pytest.mark.parametrize("backend", BACKENDS)
@numeric_settings
@given(data=st.data())
def test_numeric_category_laws_on_triples(
    backend: Backend, data: st.DataObject
) -> None:
    category = numeric_category(backend)
    n0, n1, n2, n3 = (data.draw(st.integers(0, 4)) for _ in range(4))
    f = data.draw(numeric_matrices(category, n0, n1))
    g = data.draw(numeric_matrices(category, n1, n2))
    h = data.draw(numeric_matrices(category, n2, n3))
    report = category_law_failures(
        category,
        [n0, n1, n2, n3],
        [f, g, h],
        pairs=[(f, g), (g, h)],
        triples=[(f, g, h)],
    )
    assert report.ok, report.failures


def test_laws_through_zero_dimensional_object() -> None:
    f = EXACT.matrix([[1, 2]])  # 2 -> 1
    g = EXACT.zero(1, 0)  # 1 -> 0
    h = EXACT.zero(0, 3)  # 0 -> 3, the empty 3×0 matrix
    report = category_law_failures(EXACT, [0, 1, 2, 3], [f, g, h])
    assert report.ok, report.failures
    assert report.checked["associativity"] == 1
    assert EXACT.compose_all([f, g, h]) == EXACT.zero(2, 3)


def test_hom_into_zero_has_one_morphism() -> None:
    unique = EXACT.terminal().mediate(4)
    assert unique.shape == (0, 4)
    assert unique == EXACT.matrix([], dom=4)
    assert EXACT.compose(EXACT.matrix([[1, 2, 3, 4]] * 4), unique) == unique


@pytest.mark.parametrize("category", [EXACT, NUMPY, TORCH], ids=repr)
def test_composite_matrix_is_g_times_f(
    category: MatrixCategory[Any],
) -> None:
    f = category.matrix([[1, 2]])  # 2 -> 1
    g = category.matrix([[1], [3]])  # 1 -> 2
    composite = category.compose(f, g)
    assert (composite.dom, composite.cod) == (2, 2)
    assert composite == category.matrix([[1, 2], [3, 6]])


def test_composite_acts_f_then_g_on_vectors() -> None:
    f = EXACT.matrix([[1, 2, 0], [0, 1, 1]])  # 3 -> 2
    g = EXACT.matrix([[2, 1], [0, 3], [1, 1], [5, 0]])  # 2 -> 4
    v = sympy.Matrix([1, -1, 2])
    assert EXACT.compose(f, g).matrix * v == g.matrix * (f.matrix * v)


def test_composition_mismatch_names_both_sides() -> None:
    f = EXACT.matrix([[1, 2]])  # 2 -> 1
    with pytest.raises(CompositionError, match="cod f = 1 differs from dom g = 2"):
        EXACT.compose(f, f)


class WrongOrderMatrices(ExactMatrices):
    """Known-bad: composes f;g as F·G instead of G·F."""

    def compose(self, f: ExactMatrix, g: ExactMatrix) -> ExactMatrix:
        if f.cod != g.dom:
            raise CompositionError(f"cannot compose {f!r} then {g!r}")
        return ExactMatrix(f.matrix * g.matrix)


@exact_settings
@given(st.integers(1, 3), st.integers(1, 3), st.data())
def test_wrong_order_rejected_by_typing(n: int, m: int, data: st.DataObject) -> None:
    if n == m:
        m += 1
    f = data.draw(exact_matrices(n, m))
    g = data.draw(exact_matrices(m, n))
    report = category_law_failures(
        WrongOrderMatrices(), [], [], pairs=[(f, g)], triples=[]
    )
    # F·G is m×m, so the composite is m -> m where f;g must be n -> n.
    domain, codomain = report.failures_of("composition.typing")
    assert domain.witness == (f, g)
    assert (domain.lhs, domain.rhs) == (m, n)
    assert (codomain.lhs, codomain.rhs) == (m, n)
    assert len(report.failures) == 2


def test_wrong_order_passes_laws_on_square_matrices() -> None:
    # F·G is the opposite composition, which is associative and unital on a
    # single square size, so only the convention test distinguishes it there.
    f = EXACT.matrix([[1, 1], [0, 1]])
    g = EXACT.matrix([[0, 1], [1, 0]])
    bad = WrongOrderMatrices()
    assert category_law_failures(bad, [2], [f, g]).ok
    assert bad.compose(f, g) != EXACT.compose(f, g)


# Equality and hashing.


@exact_settings
@given(st.data())
def test_equal_exact_matrices_hash_equal(data: st.DataObject) -> None:
    dom, cod = data.draw(dimensions), data.draw(dimensions)
    f = data.draw(exact_matrices(dom, cod))
    through_identities = EXACT.compose_all(
        [EXACT.identity(dom), f, EXACT.identity(cod)]
    )
    # x - x stays unevaluated, so each entry reaches the canonical form as a
    # symbolic expression and has to be simplified back to its rational value.
    rebuilt = ExactMatrix(
        [
            [sympy.Add(entry, x, -x, evaluate=False) for entry in row]
            for row in f.matrix.tolist()
        ],
        dom=dom,
    )
    assert through_identities == f
    assert hash(through_identities) == hash(f)
    assert rebuilt == f
    assert hash(rebuilt) == hash(f)


def test_equal_exact_matrices_replace_each_other_as_keys() -> None:
    f = EXACT.matrix([[1, sympy.Rational(1, 2)]])
    images = {f: "image of f"}
    assert images[EXACT.compose(EXACT.identity(2), f)] == "image of f"


def test_symbolic_entry_reducing_to_rational_is_stored_rational() -> None:
    trigonometric = ExactMatrix([[sympy.sin(x) ** 2 + sympy.cos(x) ** 2, 3]])
    rational = ExactMatrix([[1, 3]])
    assert trigonometric.is_rational
    assert trigonometric.entry(0, 0) == 1
    assert trigonometric == rational
    assert hash(trigonometric) == hash(rational)


def test_symbolic_entries_equal_by_simplify() -> None:
    quotient = ExactMatrix([[(x**2 - 1) / (x - 1)]])
    polynomial = ExactMatrix([[x + 1]])
    assert not quotient.is_rational
    assert quotient == polynomial
    assert hash(quotient) == hash(polynomial)
    assert quotient != ExactMatrix([[x + 2]])


def test_symbolic_matrix_differs_from_rational_one() -> None:
    assert ExactMatrix([[x]]) != ExactMatrix([[1]])
    assert ExactMatrix([[x, 1]]) != ExactMatrix([[x, 2]])


def test_float_entry_rejected_naming_value() -> None:
    with pytest.raises(TypeError, match=r"entry \(0, 1\) is the float 0.5") as error:
        ExactMatrix([[1, 0.5]])
    assert "sympy.nsimplify" in str(error.value)
    assert "sympy.Rational" in str(error.value)


def test_sympy_float_inside_expression_rejected() -> None:
    with pytest.raises(TypeError, match="contains a float"):
        ExactMatrix([[x + sympy.Float(0.25)]])


@pytest.mark.parametrize(
    ("entries", "error", "message"),
    [
        ([[1, 2], [3]], ValueError, "row 1 has 1 entries but row 0 has 2"),
        ([[sympy.oo]], ValueError, "not a finite field element"),
        ([[True]], TypeError, "no number"),
        ([["x"]], TypeError, "not an exact number"),
        ([1, 2], TypeError, "row 0 is 1"),
        ([], ValueError, "pass dom=n"),
    ],
)
def test_exact_matrix_rejects_invalid_entries(
    entries: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ExactMatrix(entries)


def test_exact_matrix_dom_must_match_columns() -> None:
    with pytest.raises(ValueError, match="has 2 columns.*dom=3"):
        ExactMatrix([[1, 2]], dom=3)


def test_exact_matrix_is_immutable() -> None:
    f = ExactMatrix([[1]])
    with pytest.raises(AttributeError, match="immutable"):
        f._matrix = sympy.ImmutableMatrix([[2]])


def test_numeric_equality_exact_but_category_tolerant() -> None:
    a = NUMPY.matrix([[1.0, 0.0]])
    nearby = NUMPY.matrix([[1.0 + 1e-13, 0.0]])
    far = NUMPY.matrix([[1.001, 0.0]])
    assert a != nearby
    assert NUMPY.equal_morphisms(a, nearby)
    assert not NUMPY.equal_morphisms(a, far)
    message = NUMPY.describe_difference(a, far)
    assert "rtol=1e-09, atol=1e-12" in message
    assert "at entry (0, 0)" in message


def test_numeric_negative_zero_equals_zero() -> None:
    negative = NUMPY.matrix([[-0.0, 1.0]])
    positive = NUMPY.matrix([[0.0, 1.0]])
    assert negative == positive
    assert hash(negative) == hash(positive)


@numeric_settings
@given(arrays(np.float64, st.tuples(dimensions, dimensions), elements=unit_floats))
def test_equal_numeric_matrices_hash_equal_across_backends(data: np.ndarray) -> None:
    on_numpy = NumericMatrix(data)
    on_torch = NumericMatrix(torch.from_numpy(data.copy()))
    assert on_torch.backend == "torch"
    assert on_numpy == on_torch
    assert hash(on_numpy) == hash(on_torch)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ([[np.nan]], ValueError, "finite"),
        ([[1j]], TypeError, "complex"),
        ([1.0, 2.0], ValueError, "2-D"),
        (torch.tensor([[True]]), TypeError, "boolean"),
        (torch.tensor([[float("inf")]]), ValueError, "finite"),
    ],
)
def test_numeric_matrix_rejects_invalid_data(
    data: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        NumericMatrix(data)


def test_numeric_category_rejects_other_backend() -> None:
    with pytest.raises(TypeError, match="numpy backend"):
        NUMPY.compose(NUMPY.identity(1), TORCH.identity(1))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"backend": "jax"}, "backend must be"),
        ({"rtol": -1.0}, "rtol must be"),
        ({"atol": float("nan")}, "atol must be"),
        ({"device": "cpu"}, "torch backend only"),
    ],
)
def test_numeric_category_rejects_invalid_settings(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        NumericMatrices(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["rtol", "atol", "rank_rtol"])
@pytest.mark.parametrize(
    "value", ["1", "nan", True, np.True_, None, [1e-9], 1j, torch.tensor(0.1)]
)
def test_numeric_tolerance_wrong_type_rejected(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"{name} must be a real number") as raised:
        NumericMatrices(**{name: value})  # type: ignore[arg-type]
    message = str(raised.value)
    assert repr(value) in message
    assert f"of type {type(value).__name__}" in message
    assert "Pass a float or an int" in message


@pytest.mark.parametrize("name", ["rtol", "atol", "rank_rtol"])
@pytest.mark.parametrize(
    "value", [-1e-9, -1, float("nan"), float("inf"), -float("inf"), 10**400]
)
def test_numeric_tolerance_invalid_value_rejected(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{name} must be finite and >= 0") as raised:
        NumericMatrices(**{name: value})  # type: ignore[arg-type]
    assert repr(value) in str(raised.value)


@given(
    name=st.sampled_from(["rtol", "atol", "rank_rtol"]),
    value=st.one_of(
        st.integers(0, 10**6),
        st.floats(0, 1e6, allow_nan=False),
        st.fractions(min_value=0, max_value=10**6),
        st.floats(0, 1e6, allow_nan=False, width=32).map(np.float32),
    ),
)
def test_numeric_tolerance_stored_as_float(name: str, value: object) -> None:
    category = NumericMatrices(**{name: value})  # type: ignore[arg-type]
    stored = getattr(category, name)
    assert type(stored) is float
    assert stored == float(value)  # type: ignore[arg-type]


@given(
    name=st.sampled_from(["rtol", "atol", "rank_rtol"]),
    value=st.floats(max_value=0, exclude_max=True) | st.just(float("nan")),
)
def test_numeric_tolerance_negative_or_nan_rejected(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{name} must be finite and >= 0"):
        NumericMatrices(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("device", [0, True, 1.5])
def test_numeric_device_wrong_type_rejected(device: object) -> None:
    with pytest.raises(TypeError, match="device must be a string") as raised:
        NumericMatrices("torch", device=device)  # type: ignore[arg-type]
    assert repr(device) in str(raised.value)
    with pytest.raises(TypeError, match="device must be a string"):
        NumericMatrix([[1.0]], backend="torch", device=device)  # type: ignore[arg-type]


def test_numeric_device_unknown_string_rejected() -> None:
    with pytest.raises(ValueError, match="device='gpu0' is not a torch device"):
        NumericMatrices("torch", device="gpu0")
    with pytest.raises(ValueError, match="'cuda:0'"):
        NumericMatrix([[1.0]], backend="torch", device="gpu0")


def test_numeric_device_accepts_string_and_device() -> None:
    assert NumericMatrices("torch", device="cpu").device == torch.device("cpu")
    on_device = NumericMatrices("torch", device=torch.device("cpu"))
    assert on_device.device == torch.device("cpu")


# Kernels and ranks.


def test_rank_tolerance_is_relative_to_largest_singular_value() -> None:
    nearly_singular = [[1.0, 0.0], [0.0, 1e-14]]
    default = NumericMatrices()
    strict = NumericMatrices(rank_rtol=1e-16)
    assert default.rank(default.matrix(nearly_singular)) == 1
    assert default.kernel(default.matrix(nearly_singular)).dom == 1
    assert strict.rank(strict.matrix(nearly_singular)) == 2
    assert strict.kernel(strict.matrix(nearly_singular)).dom == 0


@pytest.mark.parametrize("category", [EXACT, NUMPY, TORCH], ids=repr)
def test_kernel_of_empty_matrices(category: MatrixCategory[Any]) -> None:
    into_zero = category.zero(3, 0)
    out_of_zero = category.zero(0, 2)
    assert category.kernel(into_zero) == category.identity(3)
    assert category.kernel(out_of_zero).shape == (0, 0)
    assert category.rank(into_zero) == 0


# Pullbacks.


@exact_settings
@given(st.data())
def test_exact_pullback_universal_property(data: st.DataObject) -> None:
    a, b, c, apex = (data.draw(dimensions) for _ in range(4))
    f = data.draw(exact_matrices(a, c))
    g = data.draw(exact_matrices(b, c))
    limit = EXACT.pullback(f, g)
    r = data.draw(exact_matrices(apex, limit.apex))
    cone = (EXACT.compose(r, limit.left), EXACT.compose(r, limit.right))
    report = verify_pullback(EXACT, f, g, limit.left, limit.right, cones=[cone])
    assert report.ok, report.failures
    mediating = limit.mediate(cone)
    assert mediating == r
    assert EXACT.compose(mediating, limit.left) == cone[0]
    assert EXACT.compose(mediating, limit.right) == cone[1]


@pytest.mark.parametrize("backend", BACKENDS)
@numeric_settings
@given(data=st.data())
def test_numeric_pullback_universal_property(
    backend: Backend, data: st.DataObject
) -> None:
    category = numeric_category(backend)
    a, b, c, apex = (data.draw(st.integers(0, 4)) for _ in range(4))
    f = data.draw(numeric_matrices(category, a, c, half_integers))
    g = data.draw(numeric_matrices(category, b, c, half_integers))
    limit = category.pullback(f, g)
    r = data.draw(numeric_matrices(category, apex, limit.apex))
    cone = (category.compose(r, limit.left), category.compose(r, limit.right))
    assert is_pullback(category, f, g, limit.left, limit.right, cones=[cone])
    mediating = limit.mediate(cone)
    assert category.equal_morphisms(mediating, r), category.describe_difference(
        mediating, r
    )


def test_pullback_apex_is_kernel_dimension() -> None:
    # F x = G y for x in K^2, y in K^1 with F = [[1, 0], [0, 0]], G = [[1], [0]]:
    # x_1 = y is forced and x_2 is free, so the apex has dimension 2.
    limit = EXACT.pullback(EXACT.matrix([[1, 0], [0, 0]]), EXACT.matrix([[1], [0]]))
    assert limit.apex == 2


def test_pullback_from_zero_space_is_zero() -> None:
    empty = EXACT.zero(0, 3)
    injective = EXACT.matrix([[1, 0], [0, 1], [0, 0]])
    limit = EXACT.pullback(empty, injective)
    assert limit.apex == 0
    assert limit.left.shape == (0, 0)
    assert limit.right.shape == (2, 0)


def test_pullback_of_disjoint_images_is_kernel_of_f() -> None:
    # The linearized functions f = [0, 0] and g = [1, 2] into 3 elements: their
    # images meet only in 0, so the apex is ker F ⊕ ker G = span(e0 - e1) ⊕ 0,
    # of dimension 1, where the pullback of finite sets is empty.
    f = EXACT.matrix([[1, 1], [0, 0], [0, 0]])
    g = EXACT.matrix([[0, 0], [1, 0], [0, 1]])
    limit = EXACT.pullback(f, g)
    assert limit.apex == 1
    assert EXACT.compose(limit.left, f) == EXACT.zero(1, 3)
    assert limit.right == EXACT.zero(1, 2)


def test_symbolic_pullback() -> None:
    f = EXACT.matrix([[x, 1]])  # 2 -> 1
    g = EXACT.matrix([[1]])  # 1 -> 1
    limit = EXACT.pullback(f, g)
    assert limit.apex == 2
    assert is_pullback(EXACT, f, g, limit.left, limit.right)
    cone = (EXACT.matrix([[1], [x]]), EXACT.matrix([[2 * x]]))
    mediating = limit.mediate(cone)
    assert EXACT.compose(mediating, limit.left) == cone[0]
    assert EXACT.compose(mediating, limit.right) == cone[1]


def test_non_commuting_cone_raises_naming_residual() -> None:
    limit = EXACT.pullback(EXACT.matrix([[1, 0]]), EXACT.matrix([[1]]))
    cone = (EXACT.matrix([[1], [0]]), EXACT.matrix([[2]]))
    with pytest.raises(ConeError, match="does not commute") as error:
        limit.mediate(cone)
    assert "(0, 0) = -1" in str(error.value)


def test_numeric_cone_within_tolerance_accepted() -> None:
    limit = NUMPY.pullback(NUMPY.matrix([[1.0, 0.0]]), NUMPY.matrix([[1.0]]))
    cone = (NUMPY.matrix([[1.0], [5.0]]), NUMPY.matrix([[1.0 + 1e-13]]))
    mediating = limit.mediate(cone)
    assert NUMPY.equal_morphisms(NUMPY.compose(mediating, limit.right), cone[1])


def test_numeric_non_commuting_cone_names_tolerance() -> None:
    limit = NUMPY.pullback(NUMPY.matrix([[1.0, 0.0]]), NUMPY.matrix([[1.0]]))
    cone = (NUMPY.matrix([[1.0], [5.0]]), NUMPY.matrix([[1.0 + 1e-6]]))
    with pytest.raises(ConeError, match="does not commute") as error:
        limit.mediate(cone)
    assert "rtol=1e-09, atol=1e-12" in str(error.value)
    assert "largest absolute difference 1e-06" in str(error.value)


def test_cone_with_wrong_shapes_rejected() -> None:
    limit = EXACT.pullback(EXACT.matrix([[1, 0]]), EXACT.matrix([[1]]))
    with pytest.raises(ConeError, match="needs legs x -> 2 and x -> 1"):
        limit.mediate((EXACT.matrix([[1]]), EXACT.matrix([[1]])))


def test_pullback_needs_common_codomain() -> None:
    with pytest.raises(CategoryError, match="one codomain"):
        EXACT.pullback(EXACT.matrix([[1]]), EXACT.matrix([[1], [2]]))


NEARLY_SINGULAR = [[1e-12, 1.0, -1.0], [1.0, 1e-12, 1e-12], [1e-12, 1e-12, 1e-12]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nearly_singular_pullback_raises_naming_tolerances(backend: Backend) -> None:
    # The smallest singular value, about 1.4e-12, is below rank_rtol = 1e-12
    # times the largest (about 1.7), so it counts as zero, but its kernel
    # vector leaves a residual above atol = 1e-12.
    category = numeric_category(backend)
    g = category.matrix(NEARLY_SINGULAR)
    with pytest.raises(CategoryError, match="does not commute") as error:
        category.pullback(category.zero(0, 3), g)
    assert "rank_rtol=1e-12" in str(error.value)
    assert "atol=1e-12" in str(error.value)


@pytest.mark.parametrize(
    ("rank_rtol", "atol", "apex"), [(1e-13, 1e-12, 0), (1e-12, 1e-11, 1)]
)
def test_nearly_singular_pullback_resolved_by_tolerance(
    rank_rtol: float, atol: float, apex: int
) -> None:
    category = NumericMatrices(rank_rtol=rank_rtol, atol=atol)
    g = category.matrix(NEARLY_SINGULAR)
    assert category.pullback(category.zero(0, 3), g).apex == apex


def test_torch_pullback_stays_on_input_device() -> None:
    f = TORCH.matrix(torch.tensor([[1.0, 2.0]]))
    limit = TORCH.pullback(f, TORCH.matrix(torch.tensor([[1.0]])))
    assert limit.left.backend == "torch"
    assert limit.left.device == f.device


# Known-bad pullback candidates.

F_ONE = EXACT.matrix([[1, 0]])  # 2 -> 1
G_ONE = EXACT.matrix([[1]])  # 1 -> 1


def test_verify_pullback_rejects_non_commuting_legs() -> None:
    left = EXACT.matrix([[1, 0], [0, 1]])
    right = EXACT.matrix([[0, 0]])
    report = verify_pullback(EXACT, F_ONE, G_ONE, left, right)
    (failure,) = report.failures
    assert failure.law == "pullback.commutes"
    assert failure.lhs == EXACT.matrix([[1, 0]])
    assert failure.rhs == EXACT.matrix([[0, 0]])


def test_verify_pullback_rejects_repeated_legs() -> None:
    # Apex 3 with a repeated kernel vector: the legs commute but are not
    # jointly monic, and the apex exceeds dim ker [F | -G] = 2.
    left = EXACT.matrix([[1, 1, 0], [0, 0, 1]])
    right = EXACT.matrix([[1, 1, 0]])
    report = verify_pullback(EXACT, F_ONE, G_ONE, left, right)
    assert {failure.law for failure in report.failures} == {
        "pullback.jointly_monic",
        "pullback.factorization",
    }
    (monic,) = report.failures_of("pullback.jointly_monic")
    assert (monic.lhs, monic.rhs) == (2, 3)


def test_verify_pullback_rejects_too_small_apex() -> None:
    left = EXACT.matrix([[1], [0]])
    right = EXACT.matrix([[1]])
    cone = (EXACT.matrix([[0], [1]]), EXACT.matrix([[0]]))
    report = verify_pullback(EXACT, F_ONE, G_ONE, left, right, cones=[cone])
    failures = report.failures_of("pullback.factorization")
    assert len(failures) == 2
    assert (failures[0].lhs, failures[0].rhs) == (1, 2)
    assert failures[1].witness == cone
    assert report.checked["pullback.factorization"] == 2


def test_verify_pullback_rejects_mistyped_legs() -> None:
    report = verify_pullback(EXACT, F_ONE, G_ONE, G_ONE, G_ONE)
    (failure,) = report.failures
    assert failure.law == "pullback.typing"


def test_verify_pullback_raises_on_non_commuting_test_cone() -> None:
    limit = EXACT.pullback(F_ONE, G_ONE)
    cone = (EXACT.matrix([[1], [0]]), EXACT.matrix([[2]]))
    with pytest.raises(ConeError, match="does not commute"):
        verify_pullback(EXACT, F_ONE, G_ONE, limit.left, limit.right, cones=[cone])


# Equalizers.


@exact_settings
@given(st.data())
def test_exact_equalizer_universal_property(data: st.DataObject) -> None:
    a, b, apex = (data.draw(dimensions) for _ in range(3))
    f = data.draw(exact_matrices(a, b))
    g = data.draw(exact_matrices(a, b))
    limit = EXACT.equalizer(f, g)
    r = data.draw(exact_matrices(apex, limit.apex))
    cone = EXACT.compose(r, limit.inclusion)
    report = verify_equalizer(EXACT, f, g, limit.inclusion, cones=[cone])
    assert report.ok, report.failures
    assert limit.mediate(cone) == r


@pytest.mark.parametrize("backend", BACKENDS)
@numeric_settings
@given(data=st.data())
def test_numeric_equalizer_universal_property(
    backend: Backend, data: st.DataObject
) -> None:
    category = numeric_category(backend)
    a, b, apex = (data.draw(st.integers(0, 4)) for _ in range(3))
    f = data.draw(numeric_matrices(category, a, b, half_integers))
    g = data.draw(numeric_matrices(category, a, b, half_integers))
    limit = category.equalizer(f, g)
    r = data.draw(numeric_matrices(category, apex, limit.apex))
    cone = category.compose(r, limit.inclusion)
    assert is_equalizer(category, f, g, limit.inclusion, cones=[cone])
    mediating = limit.mediate(cone)
    assert category.equal_morphisms(mediating, r), category.describe_difference(
        mediating, r
    )


def test_equalizer_of_identity_and_cycle_is_constants() -> None:
    # The cyclic shift fixes exactly the constant vectors, so the apex is 1
    # (the equalizer of the same maps of finite sets is empty).
    cycle = EXACT.matrix(sympy.Matrix(5, 5, lambda i, j: int(j == (i + 1) % 5)))
    limit = EXACT.equalizer(EXACT.identity(5), cycle)
    assert limit.apex == 1
    assert limit.inclusion == EXACT.matrix([[1]] * 5)


def test_non_commuting_equalizer_cone_raises() -> None:
    limit = EXACT.equalizer(EXACT.matrix([[1, 0]]), EXACT.matrix([[0, 1]]))
    with pytest.raises(ConeError, match="e';f and e';g differ"):
        limit.mediate(EXACT.matrix([[1], [0]]))


def test_equalizer_needs_parallel_pair() -> None:
    with pytest.raises(CategoryError, match="parallel"):
        EXACT.equalizer(EXACT.matrix([[1]]), EXACT.matrix([[1, 0]]))


def test_verify_equalizer_rejects_bad_inclusions() -> None:
    f, g = EXACT.matrix([[1, 0]]), EXACT.matrix([[0, 1]])
    not_equalizing = verify_equalizer(EXACT, f, g, EXACT.matrix([[1], [0]]))
    assert [failure.law for failure in not_equalizing.failures] == [
        "equalizer.commutes"
    ]
    repeated = verify_equalizer(EXACT, f, g, EXACT.matrix([[1, 1], [1, 1]]))
    assert {failure.law for failure in repeated.failures} == {
        "equalizer.monic",
        "equalizer.factorization",
    }
    zero = verify_equalizer(EXACT, f, g, EXACT.zero(0, 2))
    assert [failure.law for failure in zero.failures] == ["equalizer.factorization"]


# Products and the terminal object.


@exact_settings
@given(st.data())
def test_product_mediates_any_cone(data: st.DataObject) -> None:
    factors = data.draw(st.lists(dimensions, max_size=3))
    apex = data.draw(dimensions)
    legs = [data.draw(exact_matrices(apex, n)) for n in factors]
    limit = EXACT.product(factors)
    mediating = limit.mediate(legs, apex=apex)
    assert limit.apex == sum(factors)
    for leg, projection in zip(legs, limit.projections, strict=True):
        assert EXACT.compose(mediating, projection) == leg


def test_product_projections_of_two_factors() -> None:
    limit = NUMPY.product([1, 2])
    assert limit.projections[0] == NUMPY.matrix([[1.0, 0.0, 0.0]])
    assert limit.projections[1] == NUMPY.matrix([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_empty_product_needs_apex() -> None:
    limit = EXACT.product([])
    assert limit.apex == 0
    assert limit.mediate([], apex=2) == EXACT.zero(2, 0)
    with pytest.raises(ConeError, match="pass apex=x"):
        limit.mediate([])


def test_product_cone_with_wrong_leg_rejected() -> None:
    limit = EXACT.product([1, 2])
    with pytest.raises(ConeError, match="leg 1 must be a morphism 1 -> 2"):
        limit.mediate([EXACT.matrix([[1]]), EXACT.matrix([[1]])])


@pytest.mark.parametrize("category", [EXACT, NUMPY, TORCH], ids=repr)
def test_terminal_mediates_zero_map(
    category: MatrixCategory[Any],
) -> None:
    terminal = category.terminal()
    assert terminal.apex == 0
    assert terminal.mediate(3) == category.zero(3, 0)
