"""Presented categories: normal forms, category laws, validation and size bounds."""

from __future__ import annotations

from collections.abc import Hashable
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st

from categories.category import category_law_failures
from categories.errors import CategoryError, CompositionError, SizeLimitError
from categories.presentation import Path, Presentation, Relation


def simplicial() -> Presentation:
    """V, E with d0, d1: V -> E, s0: E -> V, d0;s0 = id_V and d1;s0 = id_V."""
    return Presentation(
        ["V", "E"],
        [("d0", "V", "E"), ("d1", "V", "E"), ("s0", "E", "V")],
        [(["d0", "s0"], []), (["d1", "s0"], [])],
        name="simplicial",
    )


def dihedral(sides: int) -> Presentation:
    """The dihedral group of order 2 * sides: r**sides = s**2 = id, s;r;s = r**-1."""
    return Presentation(
        ["*"],
        [("r", "*", "*"), ("s", "*", "*")],
        [
            (["r"] * sides, []),
            (["s", "s"], []),
            (["s", "r", "s"], ["r"] * (sides - 1)),
        ],
        name=f"D_{sides}",
    )


def commuting_square() -> Presentation:
    """a -f-> b -g-> d and a -h-> c -k-> d with f;g = h;k."""
    return Presentation(
        ["a", "b", "c", "d"],
        [("f", "a", "b"), ("g", "b", "d"), ("h", "a", "c"), ("k", "c", "d")],
        [("square", ["f", "g"], ["h", "k"])],
        name="square",
    )


def free_cycle() -> Presentation:
    """The free category on x -a-> y -b-> x: infinitely many morphisms."""
    return Presentation(["x", "y"], [("a", "x", "y"), ("b", "y", "x")], name="cycle")


FINITE = [simplicial(), dihedral(4), commuting_square()]
ALL = [*FINITE, free_cycle()]


@st.composite
def words(
    draw: st.DrawFn, presentation: Presentation, start: Hashable, max_length: int = 7
) -> tuple[tuple[str, ...], Hashable]:
    """Draw a composable path of generator names from `start`, and its end."""
    names: list[str] = []
    current = start
    for _ in range(draw(st.integers(0, max_length))):
        out = [
            name
            for name in presentation.generator_names()
            if presentation.generator_type(name)[0] == current
        ]
        if not out:
            break
        name = draw(st.sampled_from(out))
        names.append(name)
        current = presentation.generator_type(name)[1]
    return tuple(names), current


@st.composite
def composable_triples(
    draw: st.DrawFn, presentation: Presentation
) -> tuple[Path, Path, Path]:
    """Draw paths f, g, h with cod(f) = dom(g) and cod(g) = dom(h)."""
    start = draw(st.sampled_from(list(presentation.objects())))
    paths = []
    for _ in range(3):
        names, end = draw(words(presentation, start))
        paths.append(presentation.path(*names, obj=start))
        start = end
    f, g, h = paths
    return f, g, h


def dihedral_element(names: tuple[str, ...], sides: int) -> tuple[int, int]:
    """Evaluate a word as the symmetry (rotation, reflections mod 2) it applies.

    The convention matches `dihedral`: s then r then s is r**-1.
    """
    rotation, reflected = 0, 0
    for name in names:
        if name == "r":
            rotation += -1 if reflected else 1
        else:
            reflected ^= 1
    return rotation % sides, reflected


# Category laws and normal forms.


@pytest.mark.parametrize("presentation", ALL, ids=lambda p: p.name)
@given(data=st.data())
def test_laws_hold_on_random_paths(
    presentation: Presentation, data: st.DataObject
) -> None:
    f, g, h = data.draw(composable_triples(presentation))
    report = category_law_failures(
        presentation,
        presentation.objects(),
        [f, g, h],
        pairs=[(f, g), (g, h)],
        triples=[(f, g, h)],
    )
    assert report.ok, report.failures


@pytest.mark.parametrize("presentation", ALL, ids=lambda p: p.name)
@given(data=st.data())
def test_normal_form_idempotent(
    presentation: Presentation, data: st.DataObject
) -> None:
    start = data.draw(st.sampled_from(list(presentation.objects())))
    names, _end = data.draw(words(presentation, start))
    path = presentation.path(*names, obj=start)
    again = presentation.path(*path.word, obj=start)
    assert again.word == path.word
    assert again == path
    assert hash(again) == hash(path)


@given(data=st.data())
def test_dihedral_equality_matches_symmetries(data: st.DataObject) -> None:
    presentation = dihedral(4)
    first, _ = data.draw(words(presentation, "*", max_length=12))
    second, _ = data.draw(words(presentation, "*", max_length=12))
    same_symmetry = dihedral_element(first, 4) == dihedral_element(second, 4)
    f = presentation.path(*first, obj="*")
    g = presentation.path(*second, obj="*")
    assert (f == g) == same_symmetry
    if same_symmetry:
        assert hash(f) == hash(g)


def transformation_presentation(
    functions: list[tuple[int, ...]],
) -> tuple[Presentation, dict[tuple[int, ...], tuple[str, ...]]]:
    """Present the monoid that `functions` generate under "f then g".

    Returns the presentation and, for every element, a word that reaches it.
    The relations state that each word followed by a generator equals the word
    of the product, which presents the monoid.
    """
    names = [f"g{i}" for i in range(len(functions))]
    unit = tuple(range(len(functions[0])))
    words: dict[tuple[int, ...], tuple[str, ...]] = {unit: ()}
    queue = [unit]
    while queue:
        element = queue.pop(0)
        for name, function in zip(names, functions, strict=True):
            composite = tuple(function[i] for i in element)
            if composite not in words:
                words[composite] = (*words[element], name)
                queue.append(composite)
    relations = []
    for element, word in words.items():
        for name, function in zip(names, functions, strict=True):
            composite = tuple(function[i] for i in element)
            if (*word, name) != words[composite]:
                relations.append(((*word, name), words[composite]))
    generators = [(name, "*", "*") for name in names]
    return Presentation(["*"], generators, relations), words


@given(
    st.integers(2, 4).flatmap(
        lambda points: st.lists(
            st.tuples(*[st.integers(0, points - 1)] * points), min_size=1, max_size=3
        )
    ),
    st.lists(st.integers(0, 2), max_size=12),
)
def test_transformation_monoid_normal_forms(
    functions: list[tuple[int, ...]], choices: list[int]
) -> None:
    presentation, words = transformation_presentation(functions)
    assert len(presentation.hom("*", "*")) == len(words)

    names = [f"g{choice % len(functions)}" for choice in choices]
    element = tuple(range(len(functions[0])))
    for name in names:
        function = functions[int(name[1:])]
        element = tuple(function[i] for i in element)
    assert presentation.path(*names, obj="*") == presentation.path(
        *words[element], obj="*"
    )


def test_normal_form_is_shortlex_least() -> None:
    presentation = dihedral(4)
    least: dict[Path, tuple[int, tuple[int, ...]]] = {}
    order = {"r": 0, "s": 1}
    for length in range(7):
        for names in product("rs", repeat=length):
            path = presentation.path(*names, obj="*")
            key = (length, tuple(order[name] for name in names))
            least[path] = min(least.get(path, key), key)
    for path, (length, letters) in least.items():
        assert len(path.word) == length
        assert tuple(order[name] for name in path.word) == letters


def test_dihedral_sizes() -> None:
    for sides in (3, 4, 7):
        assert len(dihedral(sides).hom("*", "*")) == 2 * sides


def test_relations_sides_are_equal() -> None:
    for presentation in FINITE:
        for name, lhs, rhs in presentation.relations():
            start = (lhs or rhs)[0].dom
            left = presentation.compose_all([presentation.identity(start), *lhs])
            right = presentation.compose_all([presentation.identity(start), *rhs])
            assert left == right, name


def test_rewriting_rules_of_simplicial() -> None:
    assert simplicial().rewriting_rules() == (
        (("d0", "s0"), ()),
        (("d1", "s0"), ()),
    )


def test_simplicial_hom_sets() -> None:
    presentation = simplicial()
    assert [str(f) for f in presentation.hom("V", "V")] == ["id_V"]
    assert [str(f) for f in presentation.hom("E", "E")] == ["id_E", "s0;d0", "s0;d1"]
    assert len(presentation.morphisms()) == 7
    assert presentation.is_finite()


def test_square_identifies_both_composites() -> None:
    presentation = commuting_square()
    assert presentation.path("f", "g") == presentation.path("h", "k")
    assert len(presentation.hom("a", "d")) == 1


# Equality and hashing: equal morphisms are interchangeable, even as dict keys.


def test_one_generator_path_equals_generator() -> None:
    presentation = simplicial()
    assert presentation.path("d0") == presentation.generator("d0")
    assert hash(presentation.path("d0")) == hash(presentation.generator("d0"))


def test_identity_then_f_equals_f() -> None:
    presentation = simplicial()
    f = presentation.generator("d1")
    assert presentation.compose(presentation.identity("V"), f) == f
    assert presentation.compose(f, presentation.identity("E")) == f


def test_equal_paths_replace_each_other_as_keys() -> None:
    presentation = simplicial()
    images = {presentation.identity("V"): "unit"}
    composite = presentation.path("d0", "s0")
    assert composite == presentation.identity("V")
    assert images[composite] == "unit"
    images[presentation.path("d1", "s0")] = "replaced"
    assert len(images) == 1
    assert images[presentation.identity("V")] == "replaced"


def test_paths_of_different_presentations_differ() -> None:
    assert simplicial().generator("d0") != simplicial().generator("d0")


def test_path_repr_and_str() -> None:
    presentation = simplicial()
    assert str(presentation.path("s0", "d1")) == "s0;d1"
    assert str(presentation.identity("E")) == "id_E"
    assert repr(presentation.generator("d0")) == "Path(d0 : 'V' -> 'E')"


def test_presentation_repr_names_relations() -> None:
    text = repr(simplicial())
    assert "d0;s0 = id_V" in text
    assert "d0: 'V' -> 'E'" in text


def test_relations_are_single_generator_paths() -> None:
    presentation = simplicial()
    name, lhs, rhs = presentation.relations()[1]
    assert name == "d1;s0 = id_V"
    assert lhs == (presentation.generator("d1"), presentation.generator("s0"))
    assert rhs == ()


def test_relation_object_keeps_its_name() -> None:
    presentation = Presentation(
        ["x"],
        [("e", "x", "x")],
        [Relation(("e", "e"), ("e",), "idempotent")],
    )
    assert presentation.relations()[0][0] == "idempotent"
    assert len(presentation.hom("x", "x")) == 2


# Validation at construction.


def test_generator_with_unknown_object_rejected() -> None:
    with pytest.raises(CategoryError, match="codomain 'W'"):
        Presentation(["V"], [("d0", "V", "W")])


def test_relation_with_different_types_rejected() -> None:
    with pytest.raises(CategoryError, match="d0 = s0") as error:
        Presentation(
            ["V", "E"], [("d0", "V", "E"), ("s0", "E", "V")], [(["d0"], ["s0"])]
        )
    assert "'V' -> 'E'" in str(error.value)


def test_relation_with_identity_on_non_endo_rejected() -> None:
    with pytest.raises(CategoryError, match="d0 = id_V"):
        Presentation(["V", "E"], [("d0", "V", "E")], [(["d0"], [])])


def test_unknown_generator_in_relation_rejected() -> None:
    with pytest.raises(CategoryError, match="'d2' is not a generator"):
        Presentation(["V", "E"], [("d0", "V", "E")], [(["d2"], ["d0"])])


def test_non_composable_path_rejected() -> None:
    with pytest.raises(CompositionError, match="position 1"):
        simplicial().path("d0", "d1")


def test_non_composable_relation_rejected() -> None:
    with pytest.raises(CompositionError, match="'d0' ends at 'E'"):
        Presentation(
            ["V", "E"], [("d0", "V", "E"), ("d1", "V", "E")], [(["d0", "d1"], [])]
        )


def test_duplicate_generator_rejected() -> None:
    with pytest.raises(CategoryError, match="'a' is used twice"):
        Presentation(["x"], [("a", "x", "x"), ("a", "x", "x")])


def test_duplicate_object_rejected() -> None:
    with pytest.raises(CategoryError, match="'x' is listed twice"):
        Presentation(["x", "x"], [])


def test_string_path_rejected() -> None:
    with pytest.raises(CategoryError, match=r"write \['a'\]"):
        Presentation(["x"], [("a", "x", "x")], [("a", [])])


def test_relation_with_two_empty_sides_rejected() -> None:
    with pytest.raises(CategoryError, match="two empty sides"):
        Presentation(["x"], [("a", "x", "x")], [([], [])])


def test_identity_path_needs_object() -> None:
    with pytest.raises(CategoryError, match="pass obj="):
        simplicial().path()


def test_path_with_wrong_start_rejected() -> None:
    with pytest.raises(CategoryError, match="starts at 'V'"):
        simplicial().path("d0", obj="E")


def test_compose_mismatch_raises() -> None:
    presentation = simplicial()
    with pytest.raises(CompositionError, match="cod\\(d0\\) = 'E'"):
        presentation.compose(presentation.generator("d0"), presentation.generator("d1"))


def test_compose_foreign_path_raises() -> None:
    with pytest.raises(CompositionError, match="not a morphism of simplicial"):
        simplicial().compose(simplicial().generator("d0"), simplicial().generator("s0"))


def test_hom_of_unknown_object_raises() -> None:
    with pytest.raises(CategoryError, match="'W' is not an object"):
        simplicial().hom("V", "W")


# Size bounds.


def test_free_cycle_hom_raises_size_limit() -> None:
    with pytest.raises(SizeLimitError, match="max_morphisms=10000") as error:
        free_cycle().hom("x", "x")
    assert "infinite" in str(error.value)
    assert "a;b" in str(error.value) or "b;a" in str(error.value)


def test_free_cycle_is_infinite() -> None:
    assert not free_cycle().is_finite()


def test_free_cycle_paths_up_to_length() -> None:
    listed = free_cycle().paths("x", "x", max_length=4)
    assert [str(f) for f in listed] == ["id_x", "a;b", "a;b;a;b"]


def test_free_cycle_morphisms_raise() -> None:
    with pytest.raises(SizeLimitError, match="infinite"):
        free_cycle().morphisms()


def test_finite_hom_beside_a_loop() -> None:
    presentation = Presentation(
        ["x", "y", "z"], [("f", "x", "y"), ("g", "y", "z"), ("loop", "z", "z")]
    )
    assert [str(f) for f in presentation.hom("x", "y")] == ["f"]
    assert not presentation.is_finite()
    with pytest.raises(SizeLimitError, match="cycle loop"):
        presentation.hom("x", "z")


def test_bicyclic_monoid_is_infinite() -> None:
    presentation = Presentation(
        ["*"], [("b", "*", "*"), ("c", "*", "*")], [(["b", "c"], [])]
    )
    assert presentation.path("c", "b", "c") == presentation.path("c")
    assert not presentation.is_finite()


def test_completion_stops_at_max_rules() -> None:
    # Completing <a, b | aba = bab> in the shortlex order adds the rule
    # b a^n b a -> a b a a b^(n-1) for n = 2, 3, ... (seen up to n = 8), so
    # completion never finishes.
    with pytest.raises(SizeLimitError, match="max_rules=30"):
        Presentation(
            ["*"],
            [("a", "*", "*"), ("b", "*", "*")],
            [(["a", "b", "a"], ["b", "a", "b"])],
            max_rules=30,
        )


def test_completion_stops_at_max_steps() -> None:
    with pytest.raises(SizeLimitError, match="max_completion_steps=5"):
        Presentation(
            ["*"],
            [("a", "*", "*"), ("b", "*", "*")],
            [(["a", "b", "a"], ["b", "a", "b"])],
            max_completion_steps=5,
        )


def test_hom_over_max_morphisms_raises() -> None:
    presentation = Presentation(
        ["*"], [("r", "*", "*")], [(["r"] * 50, [])], max_morphisms=20
    )
    with pytest.raises(SizeLimitError, match="max_morphisms=20"):
        presentation.hom("*", "*")


def test_graph_is_a_frozen_multigraph() -> None:
    graph = simplicial().graph
    assert sorted(key for _u, _v, key in graph.edges(keys=True)) == ["d0", "d1", "s0"]
    with pytest.raises(Exception, match="Frozen"):
        graph.add_node("W")
