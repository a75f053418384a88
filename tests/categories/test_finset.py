"""FinFunction validates, compares and composes; FinSet satisfies the category laws."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from categories.category import category_law_failures
from categories.errors import CategoryError, CompositionError, SizeLimitError
from categories.finset import FinFunction, FinSet, finfunctions


@st.composite
def composable_triples(
    draw: st.DrawFn,
) -> tuple[FinFunction, FinFunction, FinFunction]:
    """Draw f;g;h with random sizes, never a function n -> 0 with n > 0."""
    f = draw(finfunctions(max_size=5))
    g = draw(finfunctions(dom=f.cod, max_size=5))
    h = draw(finfunctions(dom=g.cod, max_size=5))
    return f, g, h


class ShiftedFinSet(FinSet):
    """Known-bad: composes correctly, then adds 1 modulo the codomain."""

    def compose(self, f: FinFunction, g: FinFunction) -> FinFunction:
        composite = f.then(g)
        return FinFunction((composite.values + 1) % max(g.cod, 1), g.cod)


class ConstantIdentityFinSet(FinSet):
    """Known-bad: the 'identity' on n sends every element to 0."""

    def identity(self, x: int) -> FinFunction:
        return FinFunction.constant(x, 0, x) if x else FinFunction.empty(0)


class WrongOrderFinSet(FinSet):
    """Composes endofunctions in the wrong order: x -> f(g(x)) instead of g(f(x))."""

    def compose(self, f: FinFunction, g: FinFunction) -> FinFunction:
        return g.then(f)


# Construction and validation


def test_out_of_codomain_value_rejected_when_built() -> None:
    with pytest.raises(CategoryError, match=r"value 2 at index 0") as raised:
        FinFunction([2, 1, 2, 0], cod=2)
    assert "codomain" in str(raised.value)
    assert "size 2" in str(raised.value)


def test_negative_value_rejected_with_index() -> None:
    with pytest.raises(CategoryError, match=r"value -1 at index 2"):
        FinFunction([0, 1, -1], cod=3)


def test_value_into_empty_codomain_rejected() -> None:
    with pytest.raises(CategoryError, match=r"empty codomain"):
        FinFunction([0], cod=0)


def test_negative_codomain_rejected() -> None:
    with pytest.raises(CategoryError, match=r"got -1"):
        FinFunction([], cod=-1)


def test_negative_identity_size_rejected() -> None:
    with pytest.raises(CategoryError, match=r"got -3"):
        FinFunction.identity(-3)


def test_float_values_rejected() -> None:
    with pytest.raises(TypeError, match=r"dtype float64"):
        FinFunction([0.0, 1.5], cod=2)


def test_bool_codomain_rejected() -> None:
    with pytest.raises(TypeError, match=r"True"):
        FinFunction([0], cod=True)


def test_two_dimensional_values_rejected() -> None:
    with pytest.raises(CategoryError, match=r"shape \(2, 2\)"):
        FinFunction([[0, 1], [1, 0]], cod=2)


def test_ragged_values_rejected() -> None:
    with pytest.raises(CategoryError, match="nested sequences of different lengths"):
        FinFunction([[0], [1, 2]], cod=3)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(lambda: (i % 3 for i in range(5)), id="generator"),
        pytest.param(lambda: map(int, "01201"), id="map"),
        pytest.param(lambda: iter([0, 1, 2, 0, 1]), id="iterator"),
        pytest.param(
            lambda: {"a": 0, "b": 1, "c": 2, "d": 0, "e": 1}.values(), id="view"
        ),
    ],
)
def test_iterable_values_read_in_order(values: Callable[[], Iterable[int]]) -> None:
    assert FinFunction(values(), cod=3) == FinFunction([0, 1, 2, 0, 1], cod=3)


def test_empty_generator_gives_empty_function() -> None:
    assert FinFunction((i for i in range(0)), cod=2) == FinFunction.empty(2)


def test_generator_values_still_validated() -> None:
    with pytest.raises(CategoryError, match=r"value 3 at index 3"):
        FinFunction((i for i in range(4)), cod=3)
    with pytest.raises(TypeError, match=r"dtype float64"):
        FinFunction((i / 2 for i in range(4)), cod=3)  # type: ignore[misc]


@given(st.lists(st.integers(0, 4), max_size=8))
def test_generator_equals_list(values: list[int]) -> None:
    from_list = FinFunction(values, cod=5)
    assert FinFunction(iter(values), cod=5) == from_list
    assert FinFunction((v for v in values), cod=5) == from_list
    assert FinFunction(tuple(values), cod=5) == from_list


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("012", "got the str '012'"),
        (b"\x00\x01", "got the bytes"),
        ({0, 1}, "a set has no order"),
        (frozenset({0, 1}), "a frozenset has no order"),
        ({0: 1, 1: 0}, r"mapping\[i\] for i in range"),
        (3, "got 3 of type int"),
        (None, "got None of type NoneType"),
        (np.int64(3), "of type int64"),
    ],
)
def test_non_sequence_values_rejected(values: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        FinFunction(values, cod=3)  # type: ignore[arg-type]


def test_scalar_values_suggest_constant() -> None:
    with pytest.raises(TypeError, match=r"FinFunction\.constant"):
        FinFunction(2, cod=3)


def test_non_integer_in_object_array_named() -> None:
    with pytest.raises(TypeError, match="got None of type NoneType at index 1"):
        FinFunction([0, None, 2], cod=3)  # type: ignore[arg-type]


def test_huge_value_rejected_with_index() -> None:
    with pytest.raises(CategoryError, match=rf"value {2**70} at index 1"):
        FinFunction([0, 2**70], cod=3)


def test_object_array_of_ints_accepted() -> None:
    values = np.array([0, 2, 1], dtype=object)
    assert FinFunction(values, cod=3) == FinFunction([0, 2, 1], cod=3)


def test_constant_rejects_non_int_value() -> None:
    for value in (1.5, "1", True, None):
        with pytest.raises(TypeError, match=f"got {value!r} of type"):
            FinFunction.constant(2, value, cod=3)  # type: ignore[arg-type]


def test_constant_rejects_value_outside_codomain() -> None:
    with pytest.raises(CategoryError, match=r"value 3 at index 0"):
        FinFunction.constant(2, 3, cod=3)
    with pytest.raises(CategoryError, match=rf"value {2**70} at index 0"):
        FinFunction.constant(2, 2**70, cod=3)


def test_constant_on_empty_domain_is_empty_function() -> None:
    assert FinFunction.constant(0, 7, cod=3) == FinFunction.empty(3)


def test_constant_accepts_numpy_int() -> None:
    numpy_value = FinFunction.constant(2, np.int64(1), cod=2)  # type: ignore[arg-type]
    assert numpy_value == FinFunction([1, 1], cod=2)


def test_values_are_read_only_copies() -> None:
    source = np.array([0, 1, 1])
    f = FinFunction(source, cod=2)
    source[0] = 1
    assert f(0) == 0
    with pytest.raises(ValueError, match="read-only"):
        f.values[0] = 1


def test_call_outside_domain_rejected() -> None:
    f = FinFunction([0, 0, 2, 1], cod=4)
    assert f(2) == 2
    with pytest.raises(IndexError, match=r"element 4 is not in the domain"):
        f(4)
    with pytest.raises(IndexError, match=r"element -1"):
        f(-1)


def test_repr_small_function_round_trips() -> None:
    f = FinFunction([0, 0, 2, 1], cod=4)
    assert repr(f) == "FinFunction([0, 0, 2, 1], cod=4)"
    assert eval(repr(f), {"FinFunction": FinFunction}) == f


def test_repr_large_function_is_short() -> None:
    f = FinFunction.identity(1000)
    assert repr(f) == "<FinFunction 1000 -> 1000: [0, 1, 2, ..., 999]>"


def test_empty_function_has_any_codomain() -> None:
    f = FinFunction.empty(3)
    assert (f.dom, f.cod) == (0, 3)
    assert f == FinFunction([], cod=3)


# Equality and hashing


def test_equal_functions_share_hash_and_dict_key() -> None:
    from_list = FinFunction([0, 0, 2, 1], cod=4)
    from_array = FinFunction(np.array([0, 0, 2, 1], dtype=np.int32), cod=4)
    assert from_list == from_array
    assert hash(from_list) == hash(from_array)
    table = {from_list: "f"}
    assert table[from_array] == "f"


def test_codomain_is_part_of_equality() -> None:
    assert FinFunction([0, 1], cod=2) != FinFunction([0, 1], cod=3)


def test_empty_functions_differ_by_codomain() -> None:
    assert FinFunction.empty(2) != FinFunction.empty(3)


@given(finfunctions(), finfunctions())
def test_equality_and_hash_agree(f: FinFunction, g: FinFunction) -> None:
    if f == g:
        assert hash(f) == hash(g)
    same_values = f.dom == g.dom and f.cod == g.cod and f.tolist() == g.tolist()
    assert (f == g) == same_values


# Composition


@given(composable_triples())
def test_then_is_f_then_g(triple: tuple[FinFunction, FinFunction, FinFunction]) -> None:
    f, g, _ = triple
    composite = f.then(g)
    assert composite.dom == f.dom
    assert composite.cod == g.cod
    assert composite.tolist() == [g(f(x)) for x in range(f.dom)]


def test_compose_pins_the_order() -> None:
    f = FinFunction([1, 2, 0], cod=3)
    g = FinFunction([0, 0, 1], cod=2)
    assert FinSet().compose(f, g) == FinFunction([0, 1, 0], cod=2)


def test_composition_error_names_both_sizes() -> None:
    f = FinFunction([0, 1], cod=3)
    g = FinFunction([0, 1], cod=2)
    with pytest.raises(
        CompositionError, match=r"cod\(f\) = 3 differs from dom\(g\) = 2"
    ):
        FinSet().compose(f, g)


def test_large_composition_is_vectorized() -> None:
    rng = np.random.default_rng(0)
    f = FinFunction(rng.integers(0, 1000, size=10**6), cod=1000)
    g = FinFunction(rng.integers(0, 7, size=1000), cod=7)
    composite = f.then(g)
    assert composite.dom == 10**6
    assert np.array_equal(composite.values, g.values[f.values])


# Injective, surjective, image


@given(finfunctions())
def test_injective_means_distinct_values(f: FinFunction) -> None:
    assert f.is_injective() == (len(set(f.tolist())) == f.dom)


@given(finfunctions())
def test_surjective_means_every_value_hit(f: FinFunction) -> None:
    assert f.is_surjective() == (set(f.tolist()) == set(range(f.cod)))


@given(finfunctions())
def test_image_is_sorted_inclusion(f: FinFunction) -> None:
    image = f.image()
    assert image.tolist() == sorted(set(f.tolist()))
    assert image.cod == f.cod
    assert image.is_injective()


# Hom-sets


def test_hom_lists_every_function_once() -> None:
    hom = FinSet().hom(2, 3)
    assert len(hom) == 9
    assert len(set(hom)) == 9
    assert list(hom) == [hom[k] for k in range(len(hom))]
    assert hom[0] == FinFunction([0, 0], cod=3)
    assert hom[-1] == FinFunction([2, 2], cod=3)


@given(st.integers(1, 6))
def test_hom_into_empty_set_is_empty(n: int) -> None:
    hom = FinSet().hom(n, 0)
    assert len(hom) == 0
    assert list(hom) == []


@given(st.integers(0, 6))
def test_hom_from_empty_set_has_one_function(n: int) -> None:
    hom = FinSet().hom(0, n)
    assert len(hom) == 1
    assert list(hom) == [FinFunction.empty(n)]


def test_hom_beyond_bound_names_size_and_bound() -> None:
    with pytest.raises(SizeLimitError, match=r"10\*\*5 = 100000") as raised:
        FinSet().hom(5, 10)
    assert "max_hom_size=10000" in str(raised.value)


def test_hom_bound_can_be_raised() -> None:
    assert len(FinSet(max_hom_size=100_000).hom(5, 10)) == 100_000


def test_hom_huge_exponent_rejected_quickly() -> None:
    with pytest.raises(SizeLimitError, match=r"10\*\*1000000 functions"):
        FinSet().hom(10**6, 10)


def test_hom_index_out_of_range() -> None:
    with pytest.raises(IndexError, match=r"hom\(2, 2\)"):
        FinSet().hom(2, 2)[4]


def test_finset_does_not_list_objects() -> None:
    assert FinSet().objects() is None


def test_describe_difference_names_first_element() -> None:
    f = FinFunction([0, 1, 1], cod=2)
    g = FinFunction([0, 0, 1], cod=2)
    assert "first at element 1" in FinSet().describe_difference(f, g)


# The random-function strategy


@given(finfunctions())
def test_strategy_never_maps_nonempty_into_empty(f: FinFunction) -> None:
    assert f.cod > 0 or f.dom == 0


@given(finfunctions(cod=0))
def test_strategy_into_empty_gives_empty_function(f: FinFunction) -> None:
    assert f == FinFunction.empty(0)


def test_strategy_rejects_impossible_sizes() -> None:
    with pytest.raises(CategoryError, match=r"no function 3 -> 0"):
        finfunctions(dom=3, cod=0)


# Category laws


@given(composable_triples(), st.lists(finfunctions(max_size=4), max_size=4))
def test_finset_satisfies_category_laws(
    triple: tuple[FinFunction, FinFunction, FinFunction], extra: list[FinFunction]
) -> None:
    f, g, h = triple
    morphisms = [f, g, h, *extra]
    objects = {m.dom for m in morphisms} | {m.cod for m in morphisms}
    report = category_law_failures(FinSet(), sorted(objects), morphisms)
    assert report.ok, report.failures
    assert report.checked["associativity"] >= 1


def test_hom_functions_satisfy_category_laws() -> None:
    finset = FinSet()
    morphisms = [*finset.hom(2, 2), *finset.hom(0, 2), *finset.hom(2, 1)]
    report = category_law_failures(finset, [0, 1, 2], morphisms)
    assert report.ok, report.failures


def test_shifted_composition_rejected() -> None:
    finset = FinSet()
    morphisms = list(finset.hom(2, 2))
    report = category_law_failures(ShiftedFinSet(), [2], morphisms)
    assert report.failures_of("identity.left")
    assert report.failures_of("identity.right")
    assert report.failures_of("associativity")


def test_constant_identity_rejected() -> None:
    f = FinFunction([1, 0], cod=2)
    report = category_law_failures(ConstantIdentityFinSet(), [2], [f])
    (left,) = report.failures_of("identity.left")
    assert left.lhs == FinFunction([1, 1], cod=2)
    assert left.rhs == f


def test_wrong_order_passes_laws_on_one_set() -> None:
    # Reversed composition of endofunctions of one set is the opposite
    # monoid, which satisfies every category law, so the laws cannot pin
    # the order; test_compose_pins_the_order does.
    morphisms = list(FinSet().hom(2, 2))
    assert category_law_failures(WrongOrderFinSet(), [2], morphisms).ok
    f = FinFunction([1, 1], cod=2)
    g = FinFunction([1, 0], cod=2)
    assert WrongOrderFinSet().compose(f, g) != FinSet().compose(f, g)
