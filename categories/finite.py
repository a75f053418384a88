"""Finite categories given by a composition table, and their limits by search.

A `FiniteCategory` lists its objects, its morphisms with their domains and
codomains, an identity per object, and the composite ``table[(f, g)] = f;g``
of every composable pair ("f then g", defined when cod(f) = dom(g)). The
table is checked when the category is built: identities are units, every
composable pair has an entry of the right type, and composition is
associative. A table that fails is rejected with the failing pair or triple
and both sides.

Internally morphisms are numbered 0..n-1 and the table is an n x n integer
array holding -1 where a pair is not composable. `associativity_failures`
checks all composable triples with two numpy gathers over the n x n x n cube.
It takes O(n**3) time. The cube is processed in slices over f, so memory
stays at one slice of about ``2**18`` entries, or one n x n layer when that
is larger.

Limits and colimits of small diagrams are found by search: every cone over
the diagram is listed, and a cone is a limit when, for every object b, the
morphisms b -> apex correspond one to one with the cones at b.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from categories.category import Category
from categories.errors import CategoryError, CompositionError, ConeError, SizeLimitError
from categories.functor import Functor
from categories.laws import LawFailure, LawReport

if TYPE_CHECKING:
    from categories.presentation import Path, Presentation

__all__ = [
    "FiniteCategory",
    "FiniteCone",
    "FiniteDiagram",
    "FiniteLimit",
    "associativity_failures",
    "composable_triple_count",
    "table_law_failures",
]

# Entries of the cube that one slice of `associativity_failures` holds. On the
# 200-morphism table of benchmarks/bench_laws.py (numpy 2.4, 2 CPU cores),
# slices of this size, which fit in L2 cache, took 6.5 ms against 12.3 ms for
# the whole 8-million-entry cube at once.
_SLICE_ENTRIES = 2**18

# How many failures a construction error lists before summarizing the rest.
_LISTED_FAILURES = 5

DEFAULT_MAX_CONES = 100_000
DEFAULT_MAX_SEARCH_STEPS = 1_000_000
DEFAULT_MAX_TABLE_MORPHISMS = 1_000


def _check_table_array(table: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Return `table` as a square intp array with entries in -1..n-1."""
    array = np.asarray(table)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise CategoryError(
            f"a composition table must be a square 2-D array, got shape {array.shape}"
        )
    if array.size and array.dtype.kind not in "iu":
        raise CategoryError(
            f"a composition table must hold integers, got dtype {array.dtype}"
        )
    n = array.shape[0]
    result = np.asarray(array, dtype=np.intp)
    invalid = np.argwhere((result < -1) | (result >= n))
    if invalid.size:
        f, g = (int(i) for i in invalid[0])
        raise CategoryError(
            f"table[{f}, {g}] = {int(result[f, g])} is not a morphism index; entries "
            f"must be in 0..{n - 1}, or -1 for a pair that is not composable"
        )
    return result


def composable_triple_count(table: npt.ArrayLike) -> int:
    """Return the number of triples (f, g, h) with f;g and g;h both in the table."""
    array = _check_table_array(table)
    defined = array >= 0
    into = defined.sum(axis=0, dtype=np.int64)  # f with f;g defined, per g
    out_of = defined.sum(axis=1, dtype=np.int64)  # h with g;h defined, per g
    return int(np.dot(into, out_of))


def associativity_failures(table: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Find every triple (f, g, h) at which a composition table is not associative.

    Parameters
    ----------
    table : array_like of int, shape (n, n)
        ``table[f, g]`` is the index of f;g, or -1 where the pair is not
        composable.

    Returns
    -------
    ndarray of intp, shape (k, 3)
        The triples, in lexicographic order, for which f;g and g;h are in the
        table but ``table[table[f, g], h]`` differs from
        ``table[f, table[g, h]]``. A missing outer composite reads as -1, so
        it fails unless the other one is missing too.

    Notes
    -----
    Every triple of the cube is computed by fancy indexing: with U the table
    padded by a row and column standing for "undefined",
    ``U[U]`` is the cube of (f;g);h and ``U[:, U]`` the cube of f;(g;h).
    Slices over f keep each cube near ``2**18`` entries.
    """
    array = _check_table_array(table)
    n = array.shape[0]
    if n == 0:
        return np.zeros((0, 3), dtype=np.intp)
    # Index n stands for "undefined", and composing with it stays undefined.
    # The smallest unsigned type that can store n moves the fewest bytes.
    padded = np.full((n + 1, n + 1), n, dtype=np.min_scalar_type(n))
    padded[:n, :n] = np.where(array < 0, n, array)

    found: list[npt.NDArray[np.intp]] = []
    rows = max(1, _SLICE_ENTRIES // (n + 1) ** 2)
    for start in range(0, n, rows):
        block = padded[start : min(n, start + rows)]
        left = padded[block]  # [f, g, h] = (f;g);h
        # np.take returns a C-contiguous cube, which compares several times
        # faster than the strided result of block[:, padded].
        right = np.take(block, padded, axis=1)  # [f, g, h] = f;(g;h)
        differs = left != right
        if not differs.any():
            continue
        f, g, h = np.nonzero(differs)
        # Triples where f;g or g;h is undefined are no equations; they differ
        # only in tables that compose mistyped pairs.
        keep = (block[f, g] < n) & (padded[g, h] < n)
        triples = np.stack([f[keep] + start, g[keep], h[keep]], axis=1)
        found.append(triples.astype(np.intp))
    if not found:
        return np.zeros((0, 3), dtype=np.intp)
    return np.concatenate(found)


def _format_failures(name: str, failures: Sequence[LawFailure]) -> str:
    lines = [f"{name} is not a category: {len(failures)} law failure(s)"]
    lines += [f"  - {failure}" for failure in failures[:_LISTED_FAILURES]]
    if len(failures) > _LISTED_FAILURES:
        lines.append(f"  ... and {len(failures) - _LISTED_FAILURES} more")
    return "\n".join(lines)


class _IndexedTable:
    """A composition table parsed into integer arrays, with no law checked yet.

    Parsing raises `CategoryError` on what cannot be numbered. That is a
    repeated object, a morphism whose domain or codomain is not an object,
    an object without an identity, or a table entry that names an unknown
    morphism or a pair that is not composable.
    """

    def __init__(
        self,
        objects: Iterable[Any],
        morphisms: Mapping[Any, tuple[Any, Any]],
        identities: Mapping[Any, Any],
        table: Mapping[tuple[Any, Any], Any],
    ) -> None:
        self.objects: tuple[Hashable, ...] = tuple(objects)
        self.object_index: dict[Hashable, int] = {}
        for x in self.objects:
            if x in self.object_index:
                raise CategoryError(f"object {x!r} is listed twice; list it once")
            self.object_index[x] = len(self.object_index)

        self.morphisms: tuple[Hashable, ...] = tuple(morphisms)
        self.index = {f: i for i, f in enumerate(self.morphisms)}
        n = len(self.morphisms)
        self.dom = np.zeros(n, dtype=np.intp)
        self.cod = np.zeros(n, dtype=np.intp)
        for i, (f, ends) in enumerate(morphisms.items()):
            if not isinstance(ends, tuple) or len(ends) != 2:
                raise CategoryError(
                    f"morphism {f!r} must map to its (dom, cod) pair, got {ends!r}"
                )
            for role, x in zip(("domain", "codomain"), ends, strict=True):
                if x not in self.object_index:
                    raise CategoryError(
                        f"morphism {f!r} has {role} {x!r}, which is not an object; "
                        f"objects are {list(self.objects)}"
                    )
            self.dom[i] = self.object_index[ends[0]]
            self.cod[i] = self.object_index[ends[1]]

        self.identity = np.zeros(len(self.objects), dtype=np.intp)
        for x in identities:
            if x not in self.object_index:
                raise CategoryError(
                    f"an identity is given for {x!r}, which is not an object"
                )
        for k, x in enumerate(self.objects):
            if x not in identities:
                raise CategoryError(
                    f"object {x!r} has no identity; add identities[{x!r}] and its "
                    f"morphism"
                )
            self.identity[k] = self.morphism_index(identities[x], f"identity of {x!r}")

        self.table = np.full((n, n), -1, dtype=np.intp)
        for pair, composite in table.items():
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise CategoryError(f"table key {pair!r} must be a pair (f, g)")
            f = self.morphism_index(pair[0], f"table key {pair!r}")
            g = self.morphism_index(pair[1], f"table key {pair!r}")
            if self.cod[f] != self.dom[g]:
                raise CategoryError(
                    f"table[{pair!r}] is given, but {pair[0]!r} ends at "
                    f"{self.objects[self.cod[f]]!r} and {pair[1]!r} starts at "
                    f"{self.objects[self.dom[g]]!r}, so they are not composable; "
                    f"remove the entry"
                )
            self.table[f, g] = self.morphism_index(composite, f"table[{pair!r}]")

    def morphism_index(self, f: Hashable, role: str) -> int:
        index = self.index.get(f)
        if index is None:
            raise CategoryError(
                f"{role} names {f!r}, which is not a morphism; list it in morphisms "
                f"with its (dom, cod)"
            )
        return index

    def law_failures(self) -> LawReport:
        """Check the category laws on every object, pair and triple."""
        mor, obj = self.morphisms, self.objects
        failures: list[LawFailure] = []
        checked: dict[str, int] = {}

        checked["identity.typing"] = 2 * len(obj)
        for k, x in enumerate(obj):
            unit = int(self.identity[k])
            ends = (obj[self.dom[unit]], obj[self.cod[unit]])
            if ends != (x, x):
                failures.append(
                    LawFailure(
                        "identity.typing",
                        (x,),
                        ends,
                        (x, x),
                        f"identity {mor[unit]!r} of {x!r} must be {x!r} -> {x!r}",
                    )
                )

        composable = self.cod[:, None] == self.dom[None, :]
        present = self.table >= 0
        checked["composition.closure"] = int(composable.sum())
        for f, g in np.argwhere(composable & ~present):
            failures.append(
                LawFailure(
                    "composition.closure",
                    (mor[f], mor[g]),
                    None,
                    (obj[self.dom[f]], obj[self.cod[g]]),
                    f"table has no entry for the composable pair "
                    f"({mor[f]!r}, {mor[g]!r})",
                )
            )

        entries = np.where(present, self.table, 0)
        checked["composition.typing"] = int(present.sum())
        mistyped = present & (
            (self.dom[entries] != self.dom[:, None])
            | (self.cod[entries] != self.cod[None, :])
        )
        for f, g in np.argwhere(mistyped):
            h = int(self.table[f, g])
            failures.append(
                LawFailure(
                    "composition.typing",
                    (mor[f], mor[g]),
                    (obj[self.dom[h]], obj[self.cod[h]]),
                    (obj[self.dom[f]], obj[self.cod[g]]),
                    f"{mor[f]!r};{mor[g]!r} = {mor[h]!r} has the wrong type",
                )
            )

        # The sides of an associativity equation need a closed, well-typed
        # table to be defined, so associativity waits for one.
        well_typed = not failures
        self._unit_failures(failures, checked)
        if not well_typed:
            checked["associativity"] = 0
            return LawReport(checked=checked, failures=tuple(failures))
        checked["associativity"] = composable_triple_count(self.table)
        for f, g, h in associativity_failures(self.table):
            lhs = mor[self.table[self.table[f, g], h]]
            rhs = mor[self.table[f, self.table[g, h]]]
            failures.append(
                LawFailure(
                    "associativity",
                    (mor[f], mor[g], mor[h]),
                    lhs,
                    rhs,
                    f"({mor[f]!r};{mor[g]!r});{mor[h]!r} = {lhs!r} but "
                    f"{mor[f]!r};({mor[g]!r};{mor[h]!r}) = {rhs!r}",
                )
            )
        return LawReport(checked=checked, failures=tuple(failures))

    def _unit_failures(
        self, failures: list[LawFailure], checked: dict[str, int]
    ) -> None:
        mor = self.morphisms
        indices = np.arange(len(mor))
        left = self.table[self.identity[self.dom], indices]
        right = self.table[indices, self.identity[self.cod]]
        for law, sides, unit_of in (
            ("identity.left", left, self.dom),
            ("identity.right", right, self.cod),
        ):
            # A missing entry is a closure failure, reported there.
            checked[law] = int((sides >= 0).sum())
            for f in np.flatnonzero((sides >= 0) & (sides != indices)):
                unit = mor[self.identity[unit_of[f]]]
                pair = (
                    f"{unit!r};{mor[f]!r}"
                    if law == "identity.left"
                    else (f"{mor[f]!r};{unit!r}")
                )
                failures.append(
                    LawFailure(
                        law,
                        (mor[f],),
                        mor[sides[f]],
                        mor[f],
                        f"{pair} = {mor[sides[f]]!r}",
                    )
                )


def table_law_failures(
    objects: Iterable[Any],
    morphisms: Mapping[Any, tuple[Any, Any]],
    identities: Mapping[Any, Any],
    table: Mapping[tuple[Any, Any], Any],
) -> LawReport:
    """Check every category law of a composition table, exhaustively.

    Parameters
    ----------
    objects, morphisms, identities, table
        As for `FiniteCategory`.

    Returns
    -------
    LawReport
        Failures of ``identity.typing``, ``composition.closure`` (a
        composable pair without an entry), ``composition.typing``,
        ``identity.left``, ``identity.right`` and ``associativity``, each
        with its witness and both sides. Associativity is checked only on a
        closed, well-typed table, because otherwise its sides may be
        undefined.

    Raises
    ------
    CategoryError
        If the table cannot be read: a repeated object, a morphism with an
        unknown domain or codomain, an object without an identity, or an
        entry naming an unknown morphism or a pair that is not composable.
    """
    return _IndexedTable(objects, morphisms, identities, table).law_failures()


class FiniteCategory(Category[Hashable, Hashable]):
    """A finite category given by an explicit composition table.

    Parameters
    ----------
    objects : iterable of hashable
        The objects, each listed once.
    morphisms : mapping
        Every morphism, identities included, mapped to its (dom, cod).
    identities : mapping
        The identity morphism of each object.
    table : mapping
        ``table[(f, g)]`` is f;g, for every pair with cod(f) = dom(g) and no
        other pair.
    generators : iterable, optional
        Morphisms that generate the category under composition. By default
        every morphism that is not an identity. They define `relations` and
        the words that functors given on generators evaluate.
    name : str
        The name shown in reprs and error messages.

    Raises
    ------
    CategoryError
        If the table cannot be read (see `table_law_failures`), breaks a
        category law (the message lists the failures: the pair or triple and
        both sides), or `generators` do not generate every morphism.

    Examples
    --------
    The walking idempotent, one object with e;e = e:

    >>> c = FiniteCategory(
    ...     ["x"], {"1": ("x", "x"), "e": ("x", "x")}, {"x": "1"},
    ...     {("1", "1"): "1", ("1", "e"): "e", ("e", "1"): "e", ("e", "e"): "e"},
    ... )
    >>> c.compose("e", "e")
    'e'
    """

    def __init__(
        self,
        objects: Iterable[Any],
        morphisms: Mapping[Any, tuple[Any, Any]],
        identities: Mapping[Any, Any],
        table: Mapping[tuple[Any, Any], Any],
        *,
        generators: Iterable[Any] | None = None,
        name: str = "FiniteCategory",
    ) -> None:
        self.name = name
        parsed = _IndexedTable(objects, morphisms, identities, table)
        report = parsed.law_failures()
        if not report.ok:
            raise CategoryError(_format_failures(name, report.failures))
        self._parsed = parsed
        self._objects = parsed.objects
        self._object_index = parsed.object_index
        self._morphisms = parsed.morphisms
        self._index = parsed.index
        self._dom = parsed.dom
        self._cod = parsed.cod
        self._identity = parsed.identity
        self._table = parsed.table
        self._table.setflags(write=False)
        self._homs = self._group_homs()
        self._set_generators(generators)
        self._opposite: FiniteCategory | None = None

    @classmethod
    def from_compose(
        cls,
        objects: Iterable[Any],
        morphisms: Mapping[Any, tuple[Any, Any]],
        identities: Mapping[Any, Any],
        compose: Callable[[Any, Any], Any],
        *,
        generators: Iterable[Any] | None = None,
        name: str = "FiniteCategory",
    ) -> FiniteCategory:
        """Build the table by calling ``compose(f, g)`` on every composable pair.

        The result is validated like any table, so a `compose` that is not
        associative or unital is rejected.
        """
        table = {
            (f, g): compose(f, g)
            for f, (_, cod) in morphisms.items()
            for g, (dom, _) in morphisms.items()
            if cod == dom
        }
        return cls(
            objects, morphisms, identities, table, generators=generators, name=name
        )

    @classmethod
    def from_presentation(
        cls,
        presentation: Presentation,
        max_morphisms: int = DEFAULT_MAX_TABLE_MORPHISMS,
    ) -> FiniteCategory:
        """Tabulate a finite presented category.

        The morphisms are the presentation's `Path` values, and its
        generators (without repeats and identities) are the generators.

        Raises
        ------
        SizeLimitError
            If the presentation is infinite or has more than `max_morphisms`
            morphisms. The table has n**2 entries and its associativity check
            costs n**3 steps, so n stays at most 1,000 by default.
        """
        if not presentation.is_finite():
            raise SizeLimitError(
                f"{presentation.name} has infinitely many morphisms, so it has no "
                f"finite composition table"
            )
        paths = presentation.morphisms()
        if len(paths) > max_morphisms:
            raise SizeLimitError(
                f"{presentation.name} has {len(paths)} morphisms, more than "
                f"max_morphisms={max_morphisms}; pass a larger max_morphisms"
            )
        outgoing: dict[Hashable, list[Path]] = {}
        for path in paths:
            outgoing.setdefault(path.dom, []).append(path)
        table: dict[tuple[Hashable, Hashable], Hashable] = {
            (f, g): presentation.compose(f, g)
            for f in paths
            for g in outgoing.get(f.cod, [])
        }
        generators = list(
            dict.fromkeys(g for g in presentation.generators() if not g.is_identity())
        )
        return cls(
            presentation.objects(),
            {path: (path.dom, path.cod) for path in paths},
            {x: presentation.identity(x) for x in presentation.objects()},
            table,
            generators=generators,
            name=presentation.name,
        )

    def _group_homs(self) -> dict[tuple[int, int], tuple[int, ...]]:
        homs: dict[tuple[int, int], list[int]] = {}
        for i in range(len(self._morphisms)):
            homs.setdefault((int(self._dom[i]), int(self._cod[i])), []).append(i)
        return {key: tuple(value) for key, value in homs.items()}

    def _set_generators(self, generators: Iterable[Hashable] | None) -> None:
        """Store the generators and a shortest word in them for every morphism."""
        if generators is None:
            identities = set(self._identity.tolist())
            letters = [i for i in range(len(self._morphisms)) if i not in identities]
        else:
            letters = list(
                dict.fromkeys(self._morphism_index(g, "generator") for g in generators)
            )
        self._generator_letters = tuple(letters)

        # Breadth-first search from the identities finds shortest words, and
        # each word extends the word of a shorter morphism by one generator.
        words: dict[int, tuple[int, ...]] = {int(i): () for i in self._identity}
        queue = deque(words)
        while queue:
            m = queue.popleft()
            for g in letters:
                composite = int(self._table[m, g])
                if composite >= 0 and composite not in words:
                    words[composite] = words[m] + (g,)
                    queue.append(composite)
        missing = [f for i, f in enumerate(self._morphisms) if i not in words]
        if missing:
            raise CategoryError(
                f"the generators of {self.name} do not generate {missing[0]!r} "
                f"({len(missing)} morphism(s) missed); add it to generators"
            )
        self._words = words

    def _morphism_index(self, f: Hashable, role: str = "morphism") -> int:
        index = self._index.get(f)
        if index is None:
            raise CategoryError(f"{role} {f!r} is not a morphism of {self.name}")
        return index

    def _object_position(self, x: Hashable) -> int:
        position = self._object_index.get(x)
        if position is None:
            raise CategoryError(
                f"{x!r} is not an object of {self.name}; objects are "
                f"{list(self._objects)}"
            )
        return position

    # The Category interface.

    def dom(self, f: Hashable) -> Hashable:
        """Return the domain of `f`."""
        return self._objects[int(self._dom[self._morphism_index(f)])]

    def cod(self, f: Hashable) -> Hashable:
        """Return the codomain of `f`."""
        return self._objects[int(self._cod[self._morphism_index(f)])]

    def identity(self, x: Hashable) -> Hashable:
        """Return the identity morphism of `x`."""
        return self._morphisms[int(self._identity[self._object_position(x)])]

    def compose(self, f: Hashable, g: Hashable) -> Hashable:
        """Return f;g from the table.

        Raises
        ------
        CompositionError
            If cod(f) differs from dom(g).
        """
        i, j = self._morphism_index(f), self._morphism_index(g)
        composite = int(self._table[i, j])
        if composite < 0:
            raise CompositionError(
                f"cannot compose {f!r} then {g!r} in {self.name}: cod({f!r}) = "
                f"{self._objects[self._cod[i]]!r} differs from dom({g!r}) = "
                f"{self._objects[self._dom[j]]!r}"
            )
        return self._morphisms[composite]

    def objects(self) -> tuple[Hashable, ...]:
        """Return the objects in the order given."""
        return self._objects

    def morphisms(self) -> tuple[Hashable, ...]:
        """Return the morphisms in index order, the order given."""
        return self._morphisms

    def hom(self, x: Hashable, y: Hashable) -> tuple[Hashable, ...]:
        """Return every morphism x -> y, in index order."""
        key = (self._object_position(x), self._object_position(y))
        return tuple(self._morphisms[i] for i in self._homs.get(key, ()))

    def generators(self) -> tuple[Hashable, ...]:
        """Return the generating morphisms."""
        return tuple(self._morphisms[i] for i in self._generator_letters)

    def word(self, f: Hashable) -> tuple[Hashable, ...]:
        """Return a shortest path of generators whose composite is `f`.

        An identity's word is empty.
        """
        return tuple(self._morphisms[i] for i in self._words[self._morphism_index(f)])

    def relations(
        self,
    ) -> tuple[tuple[str, tuple[Hashable, ...], tuple[Hashable, ...]], ...]:
        """Return relations that present the category on its generators.

        For every morphism m and generator g with cod(m) = dom(g), the word
        of m followed by g equals the word of m;g. Together these reduce any
        path of generators to the word of its composite, so they present
        the category. Pairs where both sides are the same path are left out.
        """
        relations = []
        for m, word in sorted(self._words.items()):
            for g in self._generator_letters:
                composite = int(self._table[m, g])
                if composite < 0:
                    continue
                lhs, rhs = word + (g,), self._words[composite]
                if lhs == rhs:
                    continue
                name = f"{self._word_text(lhs, m)} = {self._word_text(rhs, composite)}"
                relations.append(
                    (
                        name,
                        tuple(self._morphisms[i] for i in lhs),
                        tuple(self._morphisms[i] for i in rhs),
                    )
                )
        return tuple(relations)

    def _word_text(self, letters: tuple[int, ...], morphism: int) -> str:
        if letters:
            return ";".join(str(self._morphisms[i]) for i in letters)
        return f"id_{self._objects[self._dom[morphism]]}"

    @property
    def composition_table(self) -> npt.NDArray[np.intp]:
        """The read-only n x n table of indices, -1 where not composable."""
        return self._table

    def index(self, f: Hashable) -> int:
        """Return the index of `f` in `morphisms()` and the table."""
        return self._morphism_index(f)

    def law_report(self) -> LawReport:
        """Check every category law on the whole table.

        Construction already rejects a failing table, so the report is
        always ok; it records how many equations were checked.
        """
        return self._parsed.law_failures()

    def opposite(self) -> FiniteCategory:
        """Return the opposite category: the same morphisms, reversed.

        f: x -> y becomes f: y -> x, and f;g in the opposite is g;f here.
        """
        if self._opposite is None:
            opposite = FiniteCategory(
                self._objects,
                {f: (self.cod(f), self.dom(f)) for f in self._morphisms},
                {x: self.identity(x) for x in self._objects},
                {
                    (self._morphisms[g], self._morphisms[f]): self._morphisms[h]
                    for (f, g), h in np.ndenumerate(self._table)
                    if h >= 0
                },
                generators=self.generators(),
                name=f"{self.name}^op",
            )
            opposite._opposite = self
            self._opposite = opposite
        return self._opposite

    def __repr__(self) -> str:
        return (
            f"FiniteCategory({self.name!r}, {len(self._objects)} objects, "
            f"{len(self._morphisms)} morphisms)"
        )

    # Limits and colimits by search over cones.

    def _parse_diagram(
        self, diagram: FiniteDiagram | Functor[Any, Any, Any, Any]
    ) -> _Shape:
        """Number a diagram's nodes and check that its arrows fit this category."""
        if isinstance(diagram, Functor):
            diagram = FiniteDiagram.from_functor(diagram)
        nodes = diagram.nodes
        position = {node: k for k, node in enumerate(nodes)}
        node_objects = []
        for node in nodes:
            x = diagram.objects[node]
            if x not in self._object_index:
                raise CategoryError(
                    f"diagram node {node!r} is sent to {x!r}, which is not an object "
                    f"of {self.name}"
                )
            node_objects.append(self._object_index[x])
        arrows = []
        for name, (source, target, f) in diagram.arrows.items():
            for end in (source, target):
                if end not in position:
                    raise CategoryError(
                        f"diagram arrow {name!r} touches {end!r}, which is not a "
                        f"node of the diagram; nodes are {list(nodes)}"
                    )
            index = self._morphism_index(f, f"diagram arrow {name!r}: morphism")
            expected = (node_objects[position[source]], node_objects[position[target]])
            if (int(self._dom[index]), int(self._cod[index])) != expected:
                raise CategoryError(
                    f"diagram arrow {name!r}: {source!r} -> {target!r} carries {f!r}: "
                    f"{self.dom(f)!r} -> {self.cod(f)!r}, but its nodes are sent to "
                    f"{self._objects[expected[0]]!r} and {self._objects[expected[1]]!r}"
                )
            arrows.append((name, position[source], position[target], index))
        return _Shape(diagram, nodes, tuple(node_objects), tuple(arrows))

    def _search_cones(
        self, shape: _Shape, apex: int, budget: _SearchBudget
    ) -> list[tuple[int, ...]]:
        """List the legs (morphism indices, in node order) of every cone at `apex`.

        Nodes are visited so that a node reached by an arrow from a visited
        node comes next: its leg is then forced to be that leg followed by
        the arrow, and only the remaining arrows need checking.
        """
        order = shape.search_order()
        forced: dict[int, tuple[int, int]] = {}
        checks: dict[int, list[tuple[int, int, int]]] = {k: [] for k in order}
        placed: set[int] = set()
        for node in order:
            for _name, source, target, arrow in shape.arrows:
                touches = node in (source, target)
                if not touches or not {source, target} <= placed | {node}:
                    continue
                if target == node and source in placed and node not in forced:
                    forced[node] = (source, arrow)
                else:
                    checks[node].append((source, target, arrow))
            placed.add(node)

        table = self._table
        legs = [-1] * len(shape.nodes)
        found: list[tuple[int, ...]] = []

        def extend(depth: int) -> None:
            if depth == len(order):
                budget.count_cone(self.name)
                found.append(tuple(legs))
                return
            node = order[depth]
            if node in forced:
                source, arrow = forced[node]
                candidates: Sequence[int] = (int(table[legs[source], arrow]),)
            else:
                candidates = self._homs.get((apex, shape.node_objects[node]), ())
            for leg in candidates:
                budget.count_step(self.name)
                legs[node] = leg
                if all(
                    table[legs[source], arrow] == legs[target]
                    for source, target, arrow in checks[node]
                ):
                    extend(depth + 1)
            legs[node] = -1

        extend(0)
        return found

    def _cones_everywhere(
        self, shape: _Shape, max_cones: int, max_search_steps: int
    ) -> list[list[tuple[int, ...]]]:
        budget = _SearchBudget(max_cones, max_search_steps)
        return [
            self._search_cones(shape, apex, budget)
            for apex in range(len(self._objects))
        ]

    def _mediators(
        self, apex: int, legs: tuple[int, ...], other_apex: int
    ) -> dict[tuple[int, ...], list[int]]:
        """Group the morphisms m: other_apex -> apex by the legs m;legs they give."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for m in self._homs.get((other_apex, apex), ()):
            image = tuple(int(self._table[m, leg]) for leg in legs)
            groups.setdefault(image, []).append(m)
        return groups

    def cones(
        self,
        diagram: FiniteDiagram | Functor[Any, Any, Any, Any],
        apex: Hashable,
        *,
        max_cones: int = DEFAULT_MAX_CONES,
        max_search_steps: int = DEFAULT_MAX_SEARCH_STEPS,
    ) -> tuple[FiniteCone, ...]:
        """Return every cone over `diagram` with the given apex.

        Raises
        ------
        SizeLimitError
            If there are more than `max_cones` cones, or the search tries
            more than `max_search_steps` legs.
        """
        shape = self._parse_diagram(diagram)
        budget = _SearchBudget(max_cones, max_search_steps)
        position = self._object_position(apex)
        return tuple(
            shape.cone(self, apex, legs)
            for legs in self._search_cones(shape, position, budget)
        )

    def limit(
        self,
        diagram: FiniteDiagram | Functor[Any, Any, Any, Any],
        *,
        max_cones: int = DEFAULT_MAX_CONES,
        max_search_steps: int = DEFAULT_MAX_SEARCH_STEPS,
    ) -> FiniteLimit | None:
        """Find a limit of `diagram` by searching every cone, or return None.

        A cone with apex a is a limit exactly when, for every object b,
        composing with its legs is a bijection from hom(b, a) to the cones
        at b. The search lists the cones at every object, keeps the apexes
        where the counts match, and tests injectivity there. Limits are
        unique up to a unique isomorphism; the first one found in the order
        of objects and cones is returned.

        Parameters
        ----------
        diagram : FiniteDiagram or Functor
            The diagram. A functor is read through `FiniteDiagram.from_functor`.
        max_cones : int
            The maximum number of cones listed, over all apexes together.
        max_search_steps : int
            The maximum number of candidate legs tried, over all apexes.

        Returns
        -------
        FiniteLimit or None
            The limit cone and its mediating morphisms, or None if the
            diagram has no limit in this category.

        Raises
        ------
        CategoryError
            If the diagram does not fit this category.
        SizeLimitError
            If the search exceeds `max_cones` or `max_search_steps`.
        """
        shape = self._parse_diagram(diagram)
        cones_at = self._cones_everywhere(shape, max_cones, max_search_steps)
        counts = [len(cones) for cones in cones_at]
        objects = range(len(self._objects))
        for apex in objects:
            if any(len(self._homs.get((b, apex), ())) != counts[b] for b in objects):
                continue
            for legs in cones_at[apex]:
                if all(
                    len(self._mediators(apex, legs, b)) == counts[b] for b in objects
                ):
                    cone = shape.cone(self, self._objects[apex], legs)
                    return FiniteLimit(self, shape, cone, "limit")
        return None

    def colimit(
        self,
        diagram: FiniteDiagram | Functor[Any, Any, Any, Any],
        *,
        max_cones: int = DEFAULT_MAX_CONES,
        max_search_steps: int = DEFAULT_MAX_SEARCH_STEPS,
    ) -> FiniteLimit | None:
        """Find a colimit of `diagram` by searching every cocone, or return None.

        A colimit here is a limit in the opposite category, so the search
        and its bounds are those of `limit`. The returned cocone's legs go
        from the diagram's objects to the apex, and its mediating morphisms
        go from the apex to another cocone's apex.
        """
        opposite = self.opposite()
        shape = opposite._parse_diagram(_as_diagram(diagram).opposite())
        found = opposite.limit(
            shape.diagram, max_cones=max_cones, max_search_steps=max_search_steps
        )
        if found is None:
            return None
        return FiniteLimit(opposite, shape, found.cone, "colimit")

    def limit_failures(
        self,
        diagram: FiniteDiagram | Functor[Any, Any, Any, Any],
        cone: FiniteCone,
        *,
        max_cones: int = DEFAULT_MAX_CONES,
        max_search_steps: int = DEFAULT_MAX_SEARCH_STEPS,
    ) -> LawReport:
        """Check that `cone` is a limit of `diagram`; return every failure.

        Laws: ``cone.typing`` (each node has a leg apex -> its object),
        ``cone.commutes`` (leg_i followed by the arrow i -> j is leg_j),
        ``limit.existence`` (every cone factors through `cone`) and
        ``limit.uniqueness`` (in one way only). The universal property is
        checked against every cone at every object, found by the search of
        `limit` with the same bounds, and only once the cone commutes.
        """
        shape = self._parse_diagram(diagram)
        return self._universal_failures(
            shape, cone, ("cone", "limit"), max_cones, max_search_steps
        )

    def colimit_failures(
        self,
        diagram: FiniteDiagram | Functor[Any, Any, Any, Any],
        cocone: FiniteCone,
        *,
        max_cones: int = DEFAULT_MAX_CONES,
        max_search_steps: int = DEFAULT_MAX_SEARCH_STEPS,
    ) -> LawReport:
        """Check that `cocone` is a colimit of `diagram`; return every failure.

        The laws are those of `limit_failures` in the opposite category,
        named ``cocone.typing``, ``cocone.commutes``, ``colimit.existence``
        and ``colimit.uniqueness``.
        """
        opposite = self.opposite()
        shape = opposite._parse_diagram(_as_diagram(diagram).opposite())
        return opposite._universal_failures(
            shape, cocone, ("cocone", "colimit"), max_cones, max_search_steps
        )

    def _universal_failures(
        self,
        shape: _Shape,
        cone: FiniteCone,
        laws: tuple[str, str],
        max_cones: int,
        max_search_steps: int,
    ) -> LawReport:
        cone_law, limit_law = laws
        checked = {
            f"{cone_law}.typing": 0,
            f"{cone_law}.commutes": 0,
            f"{limit_law}.existence": 0,
            f"{limit_law}.uniqueness": 0,
        }
        failures = self._cone_failures(shape, cone, cone_law, checked)
        if failures:
            return LawReport(checked=checked, failures=tuple(failures))

        apex = self._object_index[cone.apex]
        legs = tuple(self._index[cone.legs[node]] for node in shape.nodes)
        cones_at = self._cones_everywhere(shape, max_cones, max_search_steps)
        for b, cones in enumerate(cones_at):
            groups = self._mediators(apex, legs, b)
            for other in cones:
                checked[f"{limit_law}.existence"] += 1
                checked[f"{limit_law}.uniqueness"] += 1
                mediators = groups.get(other, [])
                witness = (shape.cone(self, self._objects[b], other),)
                if not mediators:
                    failures.append(
                        LawFailure(
                            f"{limit_law}.existence",
                            witness,
                            None,
                            cone,
                            f"no morphism {self._objects[b]!r} -> {cone.apex!r} "
                            f"turns {cone} into this {cone_law}",
                        )
                    )
                elif len(mediators) > 1:
                    first, second = (self._morphisms[m] for m in mediators[:2])
                    failures.append(
                        LawFailure(
                            f"{limit_law}.uniqueness",
                            witness,
                            first,
                            second,
                            f"{len(mediators)} morphisms {self._objects[b]!r} -> "
                            f"{cone.apex!r} mediate, such as {first!r} and {second!r}",
                        )
                    )
        return LawReport(checked=checked, failures=tuple(failures))

    def _cone_failures(
        self, shape: _Shape, cone: FiniteCone, cone_law: str, checked: dict[str, int]
    ) -> list[LawFailure]:
        """Check a cone's legs and its commuting conditions (in this category)."""
        failures: list[LawFailure] = []
        typing, commutes = f"{cone_law}.typing", f"{cone_law}.commutes"
        checked[typing] += 1
        if cone.apex not in self._object_index:
            failures.append(
                LawFailure(
                    typing, (cone.apex,), cone.apex, None, "the apex is not an object"
                )
            )
            return failures
        for node in set(cone.legs) - set(shape.nodes):
            checked[typing] += 1
            failures.append(
                LawFailure(typing, (node,), cone.legs[node], None, "not a node")
            )
        for node, x in zip(shape.nodes, shape.node_objects, strict=True):
            checked[typing] += 1
            leg = cone.legs.get(node)
            expected = (cone.apex, self._objects[x])
            if leg is None or leg not in self._index:
                failures.append(
                    LawFailure(typing, (node,), leg, expected, "missing or unknown leg")
                )
            elif (self.dom(leg), self.cod(leg)) != expected:
                failures.append(
                    LawFailure(
                        typing, (node,), (self.dom(leg), self.cod(leg)), expected
                    )
                )
        if failures:
            return failures
        for name, source, target, arrow in shape.arrows:
            checked[commutes] += 1
            leg_source = self._index[cone.legs[shape.nodes[source]]]
            lhs = self._morphisms[self._table[leg_source, arrow]]
            rhs = cone.legs[shape.nodes[target]]
            if lhs != rhs:
                failures.append(
                    LawFailure(
                        commutes,
                        (name,),
                        lhs,
                        rhs,
                        f"the leg at {shape.nodes[source]!r} followed by "
                        f"{self._morphisms[arrow]!r} differs from the leg at "
                        f"{shape.nodes[target]!r}",
                    )
                )
        return failures


def _as_diagram(diagram: FiniteDiagram | Functor[Any, Any, Any, Any]) -> FiniteDiagram:
    return (
        FiniteDiagram.from_functor(diagram) if isinstance(diagram, Functor) else diagram
    )


class FiniteDiagram:
    """A diagram: objects at the nodes of a finite graph, morphisms on its arrows.

    A diagram on a graph is a functor from the free category on that graph.
    A functor from a finite index category is given by the images of its
    generating arrows, because a cone that commutes with the generators
    commutes with their composites too.

    Parameters
    ----------
    objects : mapping
        The object at each node.
    arrows : mapping, optional
        Each arrow's name mapped to (source node, target node, morphism).

    Examples
    --------
    A span x <- z -> y:

    >>> span = FiniteDiagram(
    ...     {"x": 1, "y": 2, "z": 0}, {"f": ("z", "x", "p"), "g": ("z", "y", "q")}
    ... )
    """

    def __init__(
        self,
        objects: Mapping[Any, Hashable],
        arrows: Mapping[Hashable, tuple[Any, Any, Hashable]] | None = None,
    ) -> None:
        self._objects = dict(objects)
        self._arrows: dict[Hashable, tuple[Hashable, Hashable, Hashable]] = {}
        for name, entry in (arrows or {}).items():
            if not isinstance(entry, tuple) or len(entry) != 3:
                raise CategoryError(
                    f"diagram arrow {name!r} must map to (source node, target node, "
                    f"morphism), got {entry!r}"
                )
            self._arrows[name] = entry

    @classmethod
    def from_functor(cls, functor: Functor[Any, Any, Any, Any]) -> FiniteDiagram:
        """Return the diagram of a functor from a category that lists its generators.

        The nodes are the source's objects, and each generator g: x -> y of
        the source gives an arrow named g, carrying F(g) from node x to y.

        Raises
        ------
        CategoryError
            If the source does not list its objects and generators.
        """
        source = functor.source
        objects, generators = source.objects(), source.generators()
        if objects is None or generators is None:
            raise CategoryError(
                f"a diagram needs a source that lists its objects and generators; "
                f"{source.name} does not"
            )
        return cls(
            {x: functor.map_object(x) for x in objects},
            {
                g: (source.dom(g), source.cod(g), functor.map_morphism(g))
                for g in generators
            },
        )

    @property
    def nodes(self) -> tuple[Hashable, ...]:
        """The nodes, in the order given."""
        return tuple(self._objects)

    @property
    def objects(self) -> Mapping[Hashable, Hashable]:
        """The object at each node (read-only)."""
        return MappingProxyType(self._objects)

    @property
    def arrows(self) -> Mapping[Hashable, tuple[Hashable, Hashable, Hashable]]:
        """Each arrow's (source node, target node, morphism) (read-only)."""
        return MappingProxyType(self._arrows)

    def opposite(self) -> FiniteDiagram:
        """Return the same diagram read in the opposite category: arrows reversed."""
        return FiniteDiagram(
            self._objects,
            {name: (t, s, f) for name, (s, t, f) in self._arrows.items()},
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FiniteDiagram):
            return NotImplemented
        return self._objects == other._objects and self._arrows == other._arrows

    def __hash__(self) -> int:
        return hash((frozenset(self._objects.items()), frozenset(self._arrows.items())))

    def __repr__(self) -> str:
        return f"FiniteDiagram({self._objects!r}, {self._arrows!r})"


class FiniteCone:
    """A cone or cocone: an apex and one leg per node of a diagram.

    For a cone the leg at node i is a morphism apex -> D(i); for a cocone it
    is D(i) -> apex. ``==`` and ``hash`` compare the apex and the legs.
    """

    def __init__(self, apex: Hashable, legs: Mapping[Any, Hashable]) -> None:
        self._apex = apex
        self._legs = dict(legs)

    @property
    def apex(self) -> Hashable:
        """The apex."""
        return self._apex

    @property
    def legs(self) -> Mapping[Hashable, Hashable]:
        """The leg at each node (read-only)."""
        return MappingProxyType(self._legs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FiniteCone):
            return NotImplemented
        return bool(self._apex == other._apex and self._legs == other._legs)

    def __hash__(self) -> int:
        return hash((self._apex, frozenset(self._legs.items())))

    def __repr__(self) -> str:
        return f"FiniteCone({self._apex!r}, {self._legs!r})"


class FiniteLimit:
    """A limit or colimit found by search: its (co)cone and mediating morphisms.

    Attributes
    ----------
    cone : FiniteCone
        The limit cone, or the colimit cocone.
    kind : str
        ``"limit"`` or ``"colimit"``.
    """

    def __init__(
        self, category: FiniteCategory, shape: _Shape, cone: FiniteCone, kind: str
    ) -> None:
        # For a colimit, `category` is the opposite category and `shape` the
        # reversed diagram, in which the cocone is a limit cone.
        self._category = category
        self._shape = shape
        self.cone = cone
        self.kind = kind

    @property
    def apex(self) -> Hashable:
        """The apex of the limit cone or colimit cocone."""
        return self.cone.apex

    def mediate(self, other: FiniteCone) -> Hashable:
        """Return the unique morphism through which `other` factors.

        For a limit it is m: other.apex -> apex with m;leg_i = other.leg_i;
        for a colimit it is m: apex -> other.apex with leg_i;m = other.leg_i.

        Raises
        ------
        ConeError
            If `other` is not a cone (or cocone) over the diagram; the
            message names the first failure.
        """
        category, shape = self._category, self._shape
        cone_law = "cone" if self.kind == "limit" else "cocone"
        checked = {f"{cone_law}.typing": 0, f"{cone_law}.commutes": 0}
        failures = category._cone_failures(shape, other, cone_law, checked)
        if failures:
            raise ConeError(
                f"{other} is not a {cone_law} over the diagram: {failures[0]}"
            )
        apex = category._object_index[self.cone.apex]
        legs = tuple(category._index[self.cone.legs[node]] for node in shape.nodes)
        image = tuple(category._index[other.legs[node]] for node in shape.nodes)
        groups = category._mediators(apex, legs, category._object_index[other.apex])
        (mediator,) = groups[image]
        return category._morphisms[mediator]

    def __repr__(self) -> str:
        return f"FiniteLimit(kind={self.kind!r}, cone={self.cone!r})"


class _Shape:
    """A diagram whose nodes and arrows are numbered for one category."""

    def __init__(
        self,
        diagram: FiniteDiagram,
        nodes: tuple[Hashable, ...],
        node_objects: tuple[int, ...],
        arrows: tuple[tuple[Hashable, int, int, int], ...],
    ) -> None:
        self.diagram = diagram
        self.nodes = nodes
        self.node_objects = node_objects
        self.arrows = arrows

    def search_order(self) -> list[int]:
        """Order the nodes so that arrow targets follow their sources where possible."""
        order: list[int] = []
        seen: set[int] = set()
        for root in range(len(self.nodes)):
            if root in seen:
                continue
            queue = deque([root])
            seen.add(root)
            while queue:
                node = queue.popleft()
                order.append(node)
                for _name, source, target, _arrow in self.arrows:
                    if source == node and target not in seen:
                        seen.add(target)
                        queue.append(target)
        return order

    def cone(
        self, category: FiniteCategory, apex: Hashable, legs: Sequence[int]
    ) -> FiniteCone:
        morphisms = category.morphisms()
        return FiniteCone(
            apex,
            {node: morphisms[leg] for node, leg in zip(self.nodes, legs, strict=True)},
        )


class _SearchBudget:
    """Counters that stop a cone search at its stated bounds."""

    def __init__(self, max_cones: int, max_search_steps: int) -> None:
        self.max_cones = max_cones
        self.max_search_steps = max_search_steps
        self.cones = 0
        self.steps = 0

    def count_cone(self, name: str) -> None:
        self.cones += 1
        if self.cones > self.max_cones:
            raise SizeLimitError(
                f"the cone search in {name} found more than max_cones="
                f"{self.max_cones} cones; pass a larger max_cones"
            )

    def count_step(self, name: str) -> None:
        self.steps += 1
        if self.steps > self.max_search_steps:
            raise SizeLimitError(
                f"the cone search in {name} tried more than max_search_steps="
                f"{self.max_search_steps} legs; pass a larger max_search_steps"
            )
