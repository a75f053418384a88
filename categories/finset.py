"""The category FinSet of finite sets and functions, in skeletal form.

The object ``n`` (a non-negative int) stands for the set {0, ..., n-1}, and a
morphism n -> m is a `FinFunction`: the list of its n values, each in
{0, ..., m-1}. Composition follows the package's order: ``compose(f, g)`` is
"f then g", the function ``x -> g(f(x))``, computed for any size with one
vectorized numpy indexing step.

Every function between finite sets is equal to exactly one `FinFunction`, so
``==`` and ``hash`` compare the domain, the codomain and the values. There is
no coarser equality to name.

Examples
--------
>>> f = FinFunction([0, 0, 2, 1], cod=4)
>>> g = FinFunction([1, 1, 0, 0], cod=2)
>>> f.then(g)
FinFunction([1, 1, 0, 1], cod=2)
>>> FinSet().compose(f, g) == f.then(g)
True
>>> len(FinSet().hom(2, 3))
9
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from itertools import product
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

from categories.category import Category
from categories.errors import CategoryError, CompositionError, SizeLimitError

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["FinFunction", "FinSet", "HomSet", "finfunctions"]

# Values are stored as int64, so sizes must fit in it.
_MAX_SIZE = int(np.iinfo(np.int64).max)

# Functions with at most this many values print every value in their repr.
_REPR_FULL_LENGTH = 20


def _check_size(size: object, role: str) -> int:
    """Return `size` as an int after checking that it can be a finite set's size."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise TypeError(
            f"{role} must be a non-negative int, got {size!r} of type "
            f"{type(size).__name__}"
        )
    value = int(size)
    if value < 0:
        raise CategoryError(
            f"{role} must be a non-negative int (the size of a finite set), got {value}"
        )
    if value > _MAX_SIZE:
        raise CategoryError(
            f"{role} {value} exceeds the largest supported size {_MAX_SIZE}"
        )
    return value


def _as_value_array(values: object) -> npt.NDArray[np.int64]:
    """Convert `values` to a fresh one-dimensional int64 array, checking its type."""
    _reject_unordered(values)
    array = _to_numpy(values)
    if array.ndim == 0 and array.dtype == object and isinstance(values, Iterable):
        # numpy wraps an iterable without a length, such as a generator or
        # map, as a single object, so its items are read into a tuple first.
        array = _to_numpy(tuple(values))
    if array.ndim == 0:
        raise TypeError(
            f"values must be a sequence of ints with values[i] = f(i), got"
            f" {values!r} of type {type(values).__name__}; pass a list such as"
            " [0, 1, 2], or use FinFunction.constant(n, value, cod) for a"
            " constant function"
        )
    if array.ndim != 1:
        raise CategoryError(
            f"values must be one-dimensional (one value per element), "
            f"got an array of shape {array.shape}"
        )
    if array.size == 0:
        # An empty list converts to float64; its dtype carries no information.
        return np.zeros(0, dtype=np.int64)
    if array.dtype == object:
        _reject_object_values(array)
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"values must be integers, got an array of dtype {array.dtype} "
            f"(first value {array[0]!r})"
        )
    if array.dtype.kind == "u" and int(array.max()) > _MAX_SIZE:
        raise CategoryError(
            f"value {int(array.max())} exceeds the largest supported size {_MAX_SIZE}"
        )
    return np.array(array, dtype=np.int64, copy=True)


def _reject_unordered(values: object) -> None:
    """Raise for a string, set or mapping, which lists no f(0), f(1), ... in order."""
    kind = type(values).__name__
    if isinstance(values, str | bytes):
        raise TypeError(
            f"values must be a sequence of ints, got the {kind} {values!r}; pass a"
            " list such as [0, 1, 2]"
        )
    if isinstance(values, AbstractSet):
        raise TypeError(
            f"values must be ordered, with values[i] = f(i), but a {kind} has no"
            f" order; pass a list or tuple instead of {values!r}"
        )
    if isinstance(values, Mapping):
        raise TypeError(
            f"values must be a sequence with values[i] = f(i), got a {kind}; for a"
            " mapping from elements to values pass"
            " [mapping[i] for i in range(len(mapping))]"
        )


def _to_numpy(values: object) -> npt.NDArray[Any]:
    """Return ``numpy.asarray(values)``, naming ragged input in the error."""
    try:
        return np.asarray(values)
    except ValueError:
        raise CategoryError(
            "values must be one-dimensional (one value per element), got nested"
            " sequences of different lengths"
        ) from None


def _reject_object_values(array: npt.NDArray[Any]) -> None:
    """Raise naming the first item of an object array that cannot be a value.

    numpy makes an object array from a list that mixes ints with other
    objects, or that contains an int too large for int64.
    """
    for index, value in enumerate(array.tolist()):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(
                f"values must be integers, got {value!r} of type"
                f" {type(value).__name__} at index {index}"
            )
        if not 0 <= value <= _MAX_SIZE:
            raise CategoryError(
                f"value {value} at index {index} is outside every supported"
                f" codomain, since a codomain has at most {_MAX_SIZE} elements"
            )


def _out_of_codomain_message(value: int, index: int, cod: int) -> str:
    """Return the message for a value at `index` that lies outside 0..cod-1."""
    if cod == 0:
        return (
            f"value {value} at index {index} cannot map into the empty codomain "
            f"(cod=0); only the empty function maps into 0"
        )
    return (
        f"value {value} at index {index} is outside the codomain "
        f"{{0, ..., {cod - 1}}} of size {cod}; every value must be in 0..{cod - 1}, "
        f"or the codomain must be larger"
    )


class FinFunction:
    """An immutable function {0, ..., dom-1} -> {0, ..., cod-1}.

    Parameters
    ----------
    values : array_like or finite iterable of int
        The value at each element of the domain, ``values[i]`` being f(i).
        Its length is the domain's size. The values are copied into a
        read-only int64 array. An iterator such as a generator is read once,
        in order.
    cod : int
        The size of the codomain.

    Raises
    ------
    CategoryError
        If `cod` is negative, a value lies outside {0, ..., cod-1}, or the
        values are not one-dimensional. The message names the first such
        value, its index and the codomain.
    TypeError
        If the values are not integers, `values` is a single value, a string,
        a set or a mapping, or `cod` is not an int.

    Examples
    --------
    >>> f = FinFunction([0, 0, 2, 1], cod=4)
    >>> f.dom, f.cod, f(2)
    (4, 4, 2)
    """

    __slots__ = ("_cod", "_hash", "_values")

    _values: npt.NDArray[np.int64]
    _cod: int
    _hash: int | None

    def __init__(self, values: npt.ArrayLike | Iterable[int], cod: int) -> None:
        cod = _check_size(cod, "cod")
        array = _as_value_array(values)
        invalid = np.flatnonzero((array < 0) | (array >= cod))
        if invalid.size:
            index = int(invalid[0])
            raise CategoryError(_out_of_codomain_message(int(array[index]), index, cod))
        self._init_trusted(array, cod)

    def _init_trusted(self, array: npt.NDArray[np.int64], cod: int) -> None:
        array.setflags(write=False)
        self._values = array
        self._cod = cod
        self._hash = None

    @classmethod
    def _trusted(cls, array: npt.NDArray[np.int64], cod: int) -> FinFunction:
        """Wrap a fresh int64 array whose values are known to lie in 0..cod-1.

        The array is made read-only in place and must not be shared.
        """
        function = cls.__new__(cls)
        function._init_trusted(array, cod)
        return function

    @classmethod
    def identity(cls, n: int) -> FinFunction:
        """Return the identity function on {0, ..., n-1}."""
        n = _check_size(n, "n")
        return cls._trusted(np.arange(n, dtype=np.int64), n)

    @classmethod
    def empty(cls, m: int) -> FinFunction:
        """Return the empty function from 0 into {0, ..., m-1}."""
        m = _check_size(m, "m")
        return cls._trusted(np.zeros(0, dtype=np.int64), m)

    @classmethod
    def constant(cls, n: int, value: int, cod: int) -> FinFunction:
        """Return the function on {0, ..., n-1} that sends every element to `value`.

        For n = 0 this is the empty function, and `value` need only be an int.
        """
        n = _check_size(n, "n")
        cod = _check_size(cod, "cod")
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(
                f"value must be an int, got {value!r} of type {type(value).__name__}"
            )
        if n == 0:
            return cls.empty(cod)
        if not 0 <= value < cod:
            raise CategoryError(_out_of_codomain_message(int(value), 0, cod))
        return cls._trusted(np.full(n, value, dtype=np.int64), cod)

    @property
    def dom(self) -> int:
        """The size of the domain."""
        return int(self._values.shape[0])

    @property
    def cod(self) -> int:
        """The size of the codomain."""
        return self._cod

    @property
    def values(self) -> npt.NDArray[np.int64]:
        """The read-only int64 array of values, ``values[i]`` being f(i)."""
        return self._values

    def tolist(self) -> list[int]:
        """Return the values as a list of Python ints."""
        return [int(v) for v in self._values.tolist()]

    def __call__(self, i: int) -> int:
        """Return f(i), rejecting an element outside the domain."""
        index = operator.index(i)
        if not 0 <= index < self.dom:
            raise IndexError(
                f"element {index} is not in the domain {{0, ..., {self.dom - 1}}} "
                f"of this function (dom={self.dom})"
            )
        return int(self._values[index])

    def then(self, g: FinFunction) -> FinFunction:
        """Return self;g, the function x -> g(self(x)).

        Raises
        ------
        CompositionError
            If the codomain of self differs from the domain of `g`.
        """
        if not isinstance(g, FinFunction):
            raise TypeError(
                f"a FinFunction composes only with a FinFunction, got"
                f" {type(g).__name__} {g!r}; build it with FinFunction(values, cod)"
            )
        if self._cod != g.dom:
            raise CompositionError(
                f"cannot compose f: {self.dom} -> {self._cod} then "
                f"g: {g.dom} -> {g.cod}, because cod(f) = {self._cod} differs "
                f"from dom(g) = {g.dom}"
            )
        # Indexing g's values by f's values is the composite, for any size.
        return FinFunction._trusted(g._values[self._values], g.cod)

    def is_injective(self) -> bool:
        """Return whether no two elements have the same value."""
        return bool(np.unique(self._values).size == self.dom)

    def is_surjective(self) -> bool:
        """Return whether every element of the codomain is a value."""
        return bool(np.unique(self._values).size == self._cod)

    def image(self) -> FinFunction:
        """Return the inclusion of the image into the codomain.

        The image's elements are listed in increasing order, so element k of
        the image is the k-th smallest value of self.
        """
        return FinFunction._trusted(np.unique(self._values), self._cod)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FinFunction):
            return NotImplemented
        return (
            self._cod == other._cod
            and self.dom == other.dom
            and bool(np.array_equal(self._values, other._values))
        )

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self.dom, self._cod, self._values.tobytes()))
        return self._hash

    def __repr__(self) -> str:
        if self.dom <= _REPR_FULL_LENGTH:
            return f"FinFunction({self.tolist()}, cod={self._cod})"
        head = ", ".join(str(int(v)) for v in self._values[:3])
        tail = int(self._values[-1])
        return f"<FinFunction {self.dom} -> {self._cod}: [{head}, ..., {tail}]>"


class HomSet(Sequence[FinFunction]):
    """The y**x functions from x to y, listed lazily in lexicographic order.

    Element k has f(0) as its most significant digit in base y, so the list
    starts with the constant function 0 and ends with the constant y-1.
    """

    def __init__(self, x: int, y: int) -> None:
        self.x = _check_size(x, "x")
        self.y = _check_size(y, "y")
        self._size = int(self.y**self.x)

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> FinFunction: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[FinFunction]: ...

    def __getitem__(self, index: int | slice) -> FinFunction | Sequence[FinFunction]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(self._size))]
        k = operator.index(index)
        if k < 0:
            k += self._size
        if not 0 <= k < self._size:
            raise IndexError(
                f"index {index} is out of range for hom({self.x}, {self.y}), "
                f"which has {self._size} functions"
            )
        digits = [0] * self.x
        for position in reversed(range(self.x)):
            k, digits[position] = divmod(k, self.y)
        return FinFunction._trusted(np.array(digits, dtype=np.int64), self.y)

    def __iter__(self) -> Iterator[FinFunction]:
        for values in product(range(self.y), repeat=self.x):
            yield FinFunction._trusted(np.array(values, dtype=np.int64), self.y)

    def __contains__(self, item: object) -> bool:
        return (
            isinstance(item, FinFunction) and item.dom == self.x and item.cod == self.y
        )

    def __repr__(self) -> str:
        return f"HomSet({self.x}, {self.y})"


class FinSet(Category[int, FinFunction]):
    """The category of finite sets {0, ..., n-1} and the functions between them.

    Parameters
    ----------
    max_hom_size : int
        The largest hom-set that `hom` lists; larger ones raise
        `SizeLimitError` instead of producing an enumeration that would never
        finish.
    """

    name = "FinSet"

    def __init__(self, max_hom_size: int = 10_000) -> None:
        self.max_hom_size = _check_size(max_hom_size, "max_hom_size")

    # Every FinSet instance is the same category: the enumeration bound only
    # limits what `hom` lists, so it takes no part in equality.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, FinSet)

    def __hash__(self) -> int:
        return hash(FinSet)

    def __repr__(self) -> str:
        return "FinSet()"

    def dom(self, f: FinFunction) -> int:
        """Return the size of the domain of `f`."""
        return f.dom

    def cod(self, f: FinFunction) -> int:
        """Return the size of the codomain of `f`."""
        return f.cod

    def identity(self, x: int) -> FinFunction:
        """Return the identity function on {0, ..., x-1}."""
        return FinFunction.identity(x)

    def compose(self, f: FinFunction, g: FinFunction) -> FinFunction:
        """Return f;g, the function x -> g(f(x)).

        Raises
        ------
        CompositionError
            If cod(f) differs from dom(g); the message names both sizes.
        """
        if not isinstance(f, FinFunction):
            raise TypeError(
                f"FinSet composes FinFunctions, got {type(f).__name__} {f!r};"
                " build it with FinFunction(values, cod)"
            )
        return f.then(g)

    def describe_difference(self, f: FinFunction, g: FinFunction) -> str:
        """Return where two functions differ: their types or the first element."""
        if (f.dom, f.cod) != (g.dom, g.cod):
            return f"types differ: {f.dom} -> {f.cod} against {g.dom} -> {g.cod}"
        differing = np.flatnonzero(f.values != g.values)
        if differing.size == 0:
            return ""
        i = int(differing[0])
        return (
            f"{differing.size} of {f.dom} values differ, first at element {i}: "
            f"{int(f.values[i])} against {int(g.values[i])}"
        )

    def objects(self) -> Sequence[int] | None:
        """Return None, because FinSet has infinitely many objects."""
        return None

    def hom_size(self, x: int, y: int) -> int:
        """Return the number of functions from x to y, which is y**x."""
        return int(_check_size(y, "y") ** _check_size(x, "x"))

    def hom(self, x: int, y: int) -> HomSet:
        """Return every function from x to y, as a lazily built sequence.

        hom(x, 0) is empty for x > 0, and hom(0, y) holds only the empty
        function, for every y including 0.

        Raises
        ------
        SizeLimitError
            If y**x exceeds `max_hom_size`.
        """
        x = _check_size(x, "x")
        y = _check_size(y, "y")
        if y >= 2 and x >= self.max_hom_size.bit_length():
            # 2**x > max_hom_size already, so skip building a huge integer.
            size = f"{y}**{x}"
        elif y**x > self.max_hom_size:
            size = f"{y}**{x} = {y**x}"
        else:
            return HomSet(x, y)
        raise SizeLimitError(
            f"hom({x}, {y}) has {size} functions, more than max_hom_size="
            f"{self.max_hom_size}; construct FinSet(max_hom_size=N) with a larger "
            f"N to enumerate it"
        )


def finfunctions(
    dom: int | None = None, cod: int | None = None, *, max_size: int = 6
) -> SearchStrategy[FinFunction]:
    """Build a Hypothesis strategy for random functions between finite sets.

    Parameters
    ----------
    dom, cod : int, optional
        Fixed sizes of the domain and codomain; each one left out is drawn
        from 0..max_size. A drawn codomain is never 0 unless the domain is 0,
        because no function n -> 0 exists for n > 0.
    max_size : int
        The largest size drawn.

    Raises
    ------
    CategoryError
        If `dom` > 0 and `cod` = 0, because hom(dom, 0) is empty.
    """
    # Imported here so that importing FinSet does not import Hypothesis.
    from hypothesis import strategies as st

    max_size = _check_size(max_size, "max_size")
    if dom is not None:
        dom = _check_size(dom, "dom")
    if cod is not None:
        cod = _check_size(cod, "cod")
    if cod == 0 and dom is not None and dom > 0:
        raise CategoryError(f"no function {dom} -> 0 exists; give cod > 0 or dom = 0")

    def with_sizes(dom_size: int, cod_size: int) -> SearchStrategy[FinFunction]:
        value = st.integers(0, cod_size - 1) if cod_size else st.nothing()
        lists = st.lists(value, min_size=dom_size, max_size=dom_size)
        return lists.map(lambda values: FinFunction(values, cod_size))

    def with_dom(dom_size: int) -> SearchStrategy[FinFunction]:
        if cod is not None:
            return with_sizes(dom_size, cod)
        least_cod = 0 if dom_size == 0 else 1
        cods = st.integers(least_cod, max(least_cod, max_size))
        return cods.flatmap(lambda cod_size: with_sizes(dom_size, cod_size))

    if dom is not None:
        return with_dom(dom)
    if cod == 0:
        return with_sizes(0, 0)
    return st.integers(0, max_size).flatmap(with_dom)
