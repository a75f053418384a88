"""Matrices over a field as a category, with pullbacks and equalizers through kernels.

An object is a dimension n >= 0, standing for the vector space K^n of column
vectors. A morphism n -> m is an m×n matrix A, acting by v -> A v: its number
of columns is its domain and its number of rows its codomain.

Composition convention: f;g ("f then g", as everywhere in this package) is
defined when cod f = dom g, and its matrix is G·F, the matrix of g times the
matrix of f, because (f;g)(v) = g(f(v)) = G (F v). The identity on n is the
n×n identity matrix, and 0-dimensional objects are allowed: the unique
morphism n -> 0 is the empty 0×n matrix, and the unique 0 -> m is m×0.

Two categories share this structure:

- `ExactMatrices`: entries are sympy rationals or symbolic expressions, and
  Python ``==`` is the category's equality. See `ExactMatrix` for the
  canonical form of the entries and what ``==`` and ``hash`` promise.
- `NumericMatrices`: float64 numpy arrays or torch tensors. Python ``==`` is
  exact, and `NumericMatrices.equal_morphisms` is the coarser comparison
  ``allclose(rtol, atol)`` used by every law check.

Limits are computed through kernels:

- the pullback of f: a -> c and g: b -> c is the kernel of the block matrix
  [F | -G], the subspace of K^a ⊕ K^b where F x = G y. Its legs p, q are the
  two row blocks of a kernel basis, so that p;f = q;g;
- the equalizer of f, g: a -> b is the kernel of F - G with its inclusion;
- the product of n_1, ..., n_r is the direct sum with its projections, and
  the terminal object is 0.

Every limit has a ``mediate`` method that solves a linear system for the
unique mediating matrix of a commuting cone, and raises `ConeError`, naming
the residual, when the cone does not commute.

Laws checked by `verify_pullback` (and by `verify_equalizer`, with the prefix
``equalizer`` and the single leg e):

- ``pullback.typing``: p: k -> a and q: k -> b share their domain, and f, g
  share their codomain;
- ``pullback.commutes``: p;f = q;g;
- ``pullback.jointly_monic``: the stacked legs [P; Q] have rank k, so a
  mediating matrix, when it exists, is unique;
- ``pullback.factorization``: k equals dim ker [F | -G], so every commuting
  cone factors through the legs, and each given test cone does factor.
"""

from __future__ import annotations

import math
import numbers
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar, cast

import numpy as np
import numpy.typing as npt
import scipy.linalg
import sympy
import torch

from categories.category import Category
from categories.errors import CategoryError, CompositionError, ConeError
from categories.laws import LawFailure, LawReport

__all__ = [
    "Backend",
    "ExactMatrices",
    "ExactMatrix",
    "MatrixCategory",
    "MatrixEqualizer",
    "MatrixProduct",
    "MatrixPullback",
    "MatrixTerminal",
    "NumericMatrices",
    "NumericMatrix",
    "is_equalizer",
    "is_pullback",
    "verify_equalizer",
    "verify_pullback",
]

Backend = Literal["numpy", "torch"]
FloatArray = npt.NDArray[np.float64]

# At most this many differing entries are listed in a difference message.
_MAX_LISTED_ENTRIES = 4

# Larger numeric matrices are shown by their shape alone.
_MAX_REPR_ENTRIES = 36

# Entries that sympy accepts as expressions but that are no element of a field.
_NON_FINITE = (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan)


def _check_dimension(value: object, what: str) -> int:
    """Return `value` as a dimension, or raise naming it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{what} must be an int >= 0; got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0; got {value}")
    return int(value)


def _torch_device(device: object) -> torch.device:
    """Return `device` as a torch.device, or raise naming it and the accepted forms."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(
            f"device must be a string such as 'cpu' or 'cuda:0', or a torch.device;"
            f" got {device!r} of type {type(device).__name__}"
        )
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(
            f"device={device!r} is not a torch device string; pass one such as"
            " 'cpu', 'cuda' or 'cuda:0'"
        ) from error


def _arrow(dom: int, cod: int) -> str:
    return f"{dom} -> {cod}"


# Exact matrices


def _canonical_entry(value: object, row: int, column: int) -> sympy.Expr:
    """Return the canonical form of one exact entry, or raise naming it.

    Rational numbers are kept as sympy rationals, which are already in lowest
    terms. Any other expression is replaced by ``sympy.simplify`` of it, so an
    entry that simplify reduces to a rational number is stored as that number.
    """
    if isinstance(value, float):
        raise TypeError(
            f"entry ({row}, {column}) is the float {value!r}, but exact matrices"
            " take integers, fractions.Fraction, sympy.Rational or symbolic"
            f" expressions; convert it with sympy.Rational({value!r}) for its exact"
            f" binary value or sympy.nsimplify({value!r}) for a nearby simple"
            " rational"
        )
    try:
        expr = sympy.sympify(value, strict=True)
    except sympy.SympifyError:
        raise TypeError(
            f"entry ({row}, {column}) is {value!r} of type {type(value).__name__},"
            " which is not an exact number or sympy expression; pass an integer,"
            " fractions.Fraction, sympy.Rational or sympy expression"
        ) from None
    if not isinstance(expr, sympy.Expr):
        raise TypeError(
            f"entry ({row}, {column}) is {value!r}, a {type(expr).__name__} and no"
            " number; pass an integer, fractions.Fraction, sympy.Rational or sympy"
            " expression"
        )
    if expr.has(sympy.Float):
        raise TypeError(
            f"entry ({row}, {column}) is {expr}, which contains a float; replace"
            " each float with sympy.Rational or sympy.nsimplify before building an"
            " exact matrix"
        )
    if expr.has(*_NON_FINITE):
        raise ValueError(
            f"entry ({row}, {column}) is {expr}, which is not a finite field"
            " element; exact matrices take only finite values"
        )
    if expr.is_Rational:
        return cast(sympy.Expr, expr)
    return cast(sympy.Expr, sympy.simplify(expr))


def _exact_entries_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Decide whether two canonical entries are equal, as documented on ExactMatrix."""
    if a == b:
        return True
    if a.is_Rational or b.is_Rational:
        # Both rational and structurally different means different numbers.
        # A rational against a symbolic entry is unequal by the canonical form,
        # which keeps `==` consistent with hashing rational matrices by value.
        return False
    return bool(sympy.simplify(a - b) == 0)


def _rows_of(entries: object, dom: int | None) -> tuple[int, int, list[list[object]]]:
    """Return (rows, columns, nested entries) of a matrix-like input, or raise."""
    if isinstance(entries, ExactMatrix):
        entries = entries.matrix
    if isinstance(entries, sympy.MatrixBase):
        cod, columns = entries.shape
        nested: list[list[object]] = entries.tolist()
    elif isinstance(entries, np.ndarray):
        if entries.ndim != 2:
            raise ValueError(
                "expected a 2-D array of shape (cod, dom) for an exact matrix; got"
                f" shape {entries.shape}"
            )
        cod, columns = entries.shape
        nested = entries.tolist()
    elif isinstance(entries, Sequence) and not isinstance(entries, str | bytes):
        nested = []
        for index, row in enumerate(entries):
            if not isinstance(row, Sequence) or isinstance(row, str | bytes):
                raise TypeError(
                    f"row {index} is {row!r}, but an exact matrix is built from a"
                    " sequence of rows, each a sequence of entries"
                )
            nested.append(list(row))
        cod = len(nested)
        if not nested:
            if dom is None:
                raise ValueError(
                    "an empty list of rows does not say the number of columns;"
                    " pass dom=n to build the empty 0×n matrix n -> 0"
                )
            columns = dom
        else:
            columns = len(nested[0])
        for index, row in enumerate(nested):
            if len(row) != columns:
                raise ValueError(
                    f"row {index} has {len(row)} entries but row 0 has {columns};"
                    " every row of a matrix must have the same length"
                )
    else:
        raise TypeError(
            f"cannot build an exact matrix from {type(entries).__name__}; pass a"
            " sympy matrix, a 2-D integer numpy array or a sequence of rows"
        )
    if dom is not None and columns != dom:
        raise ValueError(
            f"the matrix has {columns} columns, so its domain is {columns}, but"
            f" dom={dom} was passed; a morphism n -> m is an m×n matrix"
        )
    return cod, columns, nested


class ExactMatrix:
    """An exact matrix, as the morphism dom -> cod of `ExactMatrices`.

    The matrix of a morphism n -> m has m rows and n columns. Entries are
    stored in a canonical form: rational numbers as sympy rationals (in lowest
    terms), every other expression as the result of ``sympy.simplify``, so an
    entry that simplify reduces to a rational number is stored as that number.

    Equality: two matrices are equal when their shapes agree and every pair
    of entries is equal. Two rational entries are equal when they are the
    same number. Two symbolic entries a, b are equal when they are the same
    expression or ``sympy.simplify(a - b) == 0``. A rational entry never
    equals an entry that stayed symbolic after canonicalization. Equality of
    arbitrary symbolic expressions is undecidable in general, so the simplify
    test is a heuristic that can return False for equal expressions. For
    rational functions of the symbols with rational coefficients it is exact,
    because simplify tries ``sympy.cancel``, which reduces such a function to
    0 exactly when it is zero.

    Hash: the shape and the entries when every entry is rational, and only the
    shape otherwise. This agrees with ``==``, because a matrix with a symbolic
    entry can only equal a matrix with a symbolic entry in the same place.
    Dictionaries keyed by many symbolic matrices of one shape therefore fall
    back to linear search.

    Parameters
    ----------
    entries : ExactMatrix, sympy matrix, 2-D numpy array or sequence of rows
        The entries, row by row. Each is an integer, ``fractions.Fraction``,
        sympy rational or sympy expression. Floats are rejected.
    dom : int, optional
        The number of columns. Needed only for an empty sequence of rows (the
        0×n matrix n -> 0), and otherwise checked against the entries.

    Raises
    ------
    TypeError
        If an entry is a float, or not a number or sympy expression.
    ValueError
        If the rows have different lengths, `dom` disagrees with them, or an
        entry is infinite or NaN.
    """

    __slots__ = ("_hash", "_matrix", "_rational")

    _matrix: sympy.ImmutableMatrix
    _rational: bool
    _hash: int

    def __init__(self, entries: object, *, dom: int | None = None) -> None:
        if dom is not None:
            dom = _check_dimension(dom, "dom")
        cod, columns, nested = _rows_of(entries, dom)
        flat = [
            _canonical_entry(value, i, j)
            for i, row in enumerate(nested)
            for j, value in enumerate(row)
        ]
        rational = all(entry.is_Rational for entry in flat)
        if rational:
            key: tuple[object, ...] = ("ExactMatrix", cod, columns, tuple(flat))
        else:
            key = ("ExactMatrix", cod, columns)
        object.__setattr__(self, "_matrix", sympy.ImmutableMatrix(cod, columns, flat))
        object.__setattr__(self, "_rational", rational)
        object.__setattr__(self, "_hash", hash(key))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ExactMatrix is immutable; cannot set {name!r}")

    def __reduce__(self) -> tuple[type[ExactMatrix], tuple[sympy.ImmutableMatrix]]:
        return (ExactMatrix, (self._matrix,))

    @property
    def matrix(self) -> sympy.ImmutableMatrix:
        """The entries as a sympy ImmutableMatrix of shape (cod, dom)."""
        return self._matrix

    @property
    def dom(self) -> int:
        """The domain: the number of columns."""
        return int(self._matrix.shape[1])

    @property
    def cod(self) -> int:
        """The codomain: the number of rows."""
        return int(self._matrix.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """The matrix shape (cod, dom), rows first as in numpy and sympy."""
        return (self.cod, self.dom)

    @property
    def is_rational(self) -> bool:
        """Whether every entry is a rational number."""
        return self._rational

    def entry(self, row: int, column: int) -> sympy.Expr:
        """Return the canonical entry at (row, column)."""
        return cast(sympy.Expr, self._matrix[row, column])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExactMatrix):
            return NotImplemented
        if self.shape != other.shape or self._rational != other._rational:
            return False
        return all(
            _exact_entries_equal(a, b)
            for a, b in zip(self._matrix, other._matrix, strict=True)
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        rows = self._matrix.tolist()
        return f"ExactMatrix({rows}, dom={self.dom})"


# Numeric matrices


def _canonical_numpy(data: object) -> FloatArray:
    """Return a read-only float64 copy of a real 2-D array, or raise naming it."""
    array = np.asarray(data)
    if array.ndim != 2:
        raise ValueError(
            f"expected a 2-D array of shape (cod, dom); got shape {array.shape}."
            " Build an empty matrix with numpy.zeros((cod, dom))"
        )
    if array.dtype.kind not in "iuf":
        raise TypeError(
            f"expected real numbers; got dtype {array.dtype}. Pass a float or"
            " integer array (complex and boolean matrices are not supported)"
        )
    # Adding 0.0 turns -0.0 into 0.0, so equal values have equal bytes.
    result: FloatArray = np.array(array, dtype=np.float64) + 0.0
    if not np.isfinite(result).all():
        raise ValueError("matrix entries must be finite; found inf or NaN")
    result.flags.writeable = False
    return result


def _canonical_tensor(data: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    """Return a float64 copy of a real 2-D tensor, or raise naming it."""
    if data.ndim != 2:
        raise ValueError(
            f"expected a 2-D tensor of shape (cod, dom); got shape {tuple(data.shape)}."
            " Build an empty matrix with torch.zeros(cod, dom)"
        )
    if data.dtype == torch.bool or data.is_complex():
        raise TypeError(
            f"expected real numbers; got dtype {data.dtype}. Pass a float or"
            " integer tensor (complex and boolean matrices are not supported)"
        )
    target = data.device if device is None else device
    # Adding 0.0 turns -0.0 into 0.0, so equal values have equal bytes.
    result = data.detach().to(device=target, dtype=torch.float64) + 0.0
    if not bool(torch.isfinite(result).all()):
        raise ValueError("matrix entries must be finite; found inf or NaN")
    return result


class NumericMatrix:
    """A float64 matrix, as the morphism dom -> cod of `NumericMatrices`.

    The array has shape (cod, dom) and is a numpy array or a torch tensor on
    any device. Entries are copied to float64 with -0.0 replaced by 0.0, and
    must be finite.

    ``==`` is exact: equal shapes and equal float64 values, whatever the
    backend or device. ``hash`` hashes the shape and the bytes of that
    canonical float64 array, which agrees with ``==`` because, without NaN
    and -0.0, equal float64 values have equal bytes. The tolerant comparison
    is `NumericMatrices.equal_morphisms`.

    Parameters
    ----------
    data : numpy array, torch tensor or sequence of rows
        The entries, shape (cod, dom).
    backend : {"numpy", "torch"}, optional
        Storage for `data` given as nested sequences or of the other kind.
        By default a tensor stays a tensor and anything else becomes numpy.
    device : str or torch.device, optional
        The torch device to move a tensor to. By default it stays where it is.

    Raises
    ------
    TypeError
        If the entries are complex, boolean or not numbers, or `device` is
        neither a string nor a torch.device.
    ValueError
        If the data are not 2-D or contain inf or NaN, `backend` is unknown,
        or `device` is no torch device string or is given for numpy.
    """

    __slots__ = ("_array", "_hash", "_host")

    _array: FloatArray | torch.Tensor
    _host: FloatArray | None
    _hash: int | None

    def __init__(
        self,
        data: object,
        *,
        backend: Backend | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if backend is None:
            backend = "torch" if isinstance(data, torch.Tensor) else "numpy"
        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend must be 'numpy' or 'torch'; got {backend!r}")
        array: FloatArray | torch.Tensor
        if backend == "numpy":
            if device is not None:
                raise ValueError(
                    f"device={device!r} applies to the torch backend only; drop it"
                    " or pass backend='torch'"
                )
            if isinstance(data, torch.Tensor):
                data = data.detach().cpu().numpy()
            array = _canonical_numpy(data)
        else:
            tensor = data if isinstance(data, torch.Tensor) else None
            if tensor is None:
                tensor = torch.from_numpy(np.array(_canonical_numpy(data)))
            torch_device = None if device is None else _torch_device(device)
            array = _canonical_tensor(tensor, torch_device)
        object.__setattr__(self, "_array", array)
        object.__setattr__(self, "_host", None)
        object.__setattr__(self, "_hash", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"NumericMatrix is immutable; cannot set {name!r}")

    def __reduce__(
        self,
    ) -> tuple[type[NumericMatrix], tuple[FloatArray | torch.Tensor]]:
        return (NumericMatrix, (self._array,))

    @property
    def array(self) -> FloatArray | torch.Tensor:
        """The float64 entries, shape (cod, dom).

        A numpy array is read-only. NOTE: a torch tensor cannot be frozen, and
        changing it in place would silently break ``==`` and ``hash``.
        """
        return self._array

    @property
    def backend(self) -> Backend:
        """The storage: ``"numpy"`` or ``"torch"``."""
        return "torch" if isinstance(self._array, torch.Tensor) else "numpy"

    @property
    def device(self) -> torch.device:
        """The device of the entries, which is the CPU for numpy arrays."""
        if isinstance(self._array, torch.Tensor):
            return self._array.device
        return torch.device("cpu")

    @property
    def dom(self) -> int:
        """The domain: the number of columns."""
        return int(self._array.shape[1])

    @property
    def cod(self) -> int:
        """The codomain: the number of rows."""
        return int(self._array.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """The matrix shape (cod, dom), rows first as in numpy."""
        return (self.cod, self.dom)

    def to_numpy(self) -> FloatArray:
        """Return the entries as a read-only float64 numpy array on the CPU."""
        if self._host is None:
            if isinstance(self._array, torch.Tensor):
                host = self._array.detach().cpu().numpy().copy()
                host.flags.writeable = False
            else:
                host = self._array
            object.__setattr__(self, "_host", host)
        return cast(FloatArray, self._host)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericMatrix):
            return NotImplemented
        if self.shape != other.shape:
            return False
        return bool(np.array_equal(self.to_numpy(), other.to_numpy()))

    def __hash__(self) -> int:
        if self._hash is None:
            key = ("NumericMatrix", self.shape, self.to_numpy().tobytes())
            object.__setattr__(self, "_hash", hash(key))
        return cast(int, self._hash)

    def __repr__(self) -> str:
        host = self.to_numpy()
        entries = str(host.tolist()) if host.size <= _MAX_REPR_ENTRIES else "..."
        where = "" if self.backend == "numpy" else f", backend='torch', {self.device}"
        return f"NumericMatrix({entries}, shape={self.shape}{where})"


# Limits


class _Matrix(Protocol):
    @property
    def dom(self) -> int: ...

    @property
    def cod(self) -> int: ...


M = TypeVar("M", bound=_Matrix)


@dataclass(frozen=True)
class MatrixPullback(Generic[M]):
    """The pullback of a cospan f: a -> c, g: b -> c, with legs p: k -> a, q: k -> b.

    The apex k is dim ker [F | -G], and p;f = q;g.
    """

    category: MatrixCategory[M] = field(repr=False, compare=False)
    f: M
    g: M
    apex: int
    left: M
    right: M

    def mediate(self, cone: tuple[M, M]) -> M:
        """Return the unique u: x -> k with u;p = p' and u;q = q'.

        Parameters
        ----------
        cone : (p', q')
            Legs p': x -> a and q': x -> b with p';f = q';g.

        Raises
        ------
        ConeError
            If the legs do not fit the cospan, or p';f and q';g differ. The
            message names the residual.
        """
        return self.category._mediate_pullback(self, cone)


@dataclass(frozen=True)
class MatrixEqualizer(Generic[M]):
    """The equalizer of f, g: a -> b, with its inclusion e: k -> a.

    The apex k is dim ker (F - G), and e;f = e;g.
    """

    category: MatrixCategory[M] = field(repr=False, compare=False)
    f: M
    g: M
    apex: int
    inclusion: M

    def mediate(self, cone: M) -> M:
        """Return the unique u: x -> k with u;e = e'.

        Parameters
        ----------
        cone : e'
            A morphism e': x -> a with e';f = e';g.

        Raises
        ------
        ConeError
            If e' does not end at dom f, or e';f and e';g differ. The message
            names the residual.
        """
        return self.category._mediate_equalizer(self, cone)


@dataclass(frozen=True)
class MatrixProduct(Generic[M]):
    """The direct sum of `factors`, with projections onto each factor."""

    category: MatrixCategory[M] = field(repr=False, compare=False)
    factors: tuple[int, ...]
    apex: int
    projections: tuple[M, ...]

    def mediate(self, legs: Sequence[M], apex: int | None = None) -> M:
        """Return the unique u: x -> apex with u;projections[i] = legs[i].

        Parameters
        ----------
        legs : sequence
            One morphism x -> factors[i] per factor, all from the same x.
        apex : int, optional
            The cone's apex x, required when there are no factors.

        Raises
        ------
        ConeError
            If the number of legs, their codomains or their domains do not fit.
        """
        return self.category._mediate_product(self, legs, apex)


@dataclass(frozen=True)
class MatrixTerminal(Generic[M]):
    """The terminal object 0, the zero space."""

    category: MatrixCategory[M] = field(repr=False, compare=False)
    apex: int = 0

    def mediate(self, source: int) -> M:
        """Return the unique morphism source -> 0, the empty 0×source matrix."""
        return self.category.zero(source, 0)


class MatrixCategory(Category[int, M]):
    """Matrices as a category: the typing, products and limits through kernels.

    Subclasses supply the matrix arithmetic: `matrix`, `identity`, `zero`,
    `compose`, `kernel`, `rank` and a few private block operations. The
    limits and their mediating morphisms are built here once on top of them.
    """

    name = "Mat"

    def dom(self, f: M) -> int:
        """Return the domain of `f`, its number of columns."""
        return f.dom

    def cod(self, f: M) -> int:
        """Return the codomain of `f`, its number of rows."""
        return f.cod

    @abstractmethod
    def matrix(self, data: object) -> M:
        """Build a morphism of this category from entries of shape (cod, dom)."""

    @abstractmethod
    def zero(self, dom: int, cod: int) -> M:
        """Return the zero morphism dom -> cod, a cod×dom matrix of zeros."""

    @abstractmethod
    def kernel(self, f: M) -> M:
        """Return a morphism k -> dom f whose matrix columns are a basis of ker F."""

    @abstractmethod
    def rank(self, f: M) -> int:
        """Return the rank of the matrix of `f`."""

    @abstractmethod
    def _negate(self, f: M) -> M: ...

    @abstractmethod
    def _subtract(self, f: M, g: M) -> M: ...

    @abstractmethod
    def _stack_rows(self, blocks: Sequence[M], dom: int) -> M:
        """Return [A_1; ...; A_r]: dom -> sum of the cod of each block."""

    @abstractmethod
    def _stack_columns(self, blocks: Sequence[M], cod: int) -> M:
        """Return [A_1 | ... | A_r]: sum of the dom of each block -> cod."""

    @abstractmethod
    def _row_block(self, f: M, start: int, stop: int) -> M:
        """Return rows start..stop-1 of F, as a morphism dom f -> stop - start."""

    @abstractmethod
    def _solve(self, legs: M, target: M) -> M | None:
        """Return some u with u;legs close to target, or None if none exists.

        In matrices: L U = T for L the matrix of legs: k -> r and T that of
        target: x -> r. The caller checks the result against the category's
        equality, so a least-squares solution is allowed.
        """

    def _tolerance_note(self) -> str:
        """Return the text that qualifies "equal" in messages, empty when exact."""
        return ""

    def _confirm_commutes(
        self, what: str, first: tuple[M, M], second: tuple[M, M]
    ) -> None:
        """Raise CategoryError unless the computed legs make the square commute.

        Exact kernels make it commute by construction, so this default checks
        nothing, and `NumericMatrices` overrides it.
        """

    # Limits.

    def product(self, factors: Sequence[int]) -> MatrixProduct[M]:
        """Build the direct sum of `factors` with its projections.

        Parameters
        ----------
        factors : sequence of int
            The dimensions n_1, ..., n_r. No factors give the terminal object.

        Returns
        -------
        MatrixProduct
            Apex n_1 + ... + n_r, where projection i is [0 ... I ... 0].
        """
        dims = tuple(_check_dimension(n, f"factor {i}") for i, n in enumerate(factors))
        projections = []
        for i, n in enumerate(dims):
            blocks = [
                self.identity(n) if j == i else self.zero(m, n)
                for j, m in enumerate(dims)
            ]
            projections.append(self._stack_columns(blocks, cod=n))
        return MatrixProduct(self, dims, sum(dims), tuple(projections))

    def terminal(self) -> MatrixTerminal[M]:
        """Return the terminal object 0, the zero space."""
        return MatrixTerminal(self)

    def pullback(self, f: M, g: M) -> MatrixPullback[M]:
        """Compute the pullback of f: a -> c and g: b -> c through ker [F | -G].

        Returns
        -------
        MatrixPullback
            Apex k = dim ker [F | -G] and legs p: k -> a, q: k -> b, the two row
            blocks of a kernel basis, so that p;f = q;g and [P; Q] has rank k.

        Raises
        ------
        CategoryError
            If f and g have different codomains, or (numerically) if the
            computed legs do not commute within the tolerance.
        """
        if f.cod != g.cod:
            raise CategoryError(
                "a pullback needs a cospan f: a -> c, g: b -> c with one codomain;"
                f" got f: {_arrow(f.dom, f.cod)} and g: {_arrow(g.dom, g.cod)}"
            )
        joint = self._stack_columns([f, self._negate(g)], cod=f.cod)
        basis = self.kernel(joint)
        left = self._row_block(basis, 0, f.dom)
        right = self._row_block(basis, f.dom, f.dom + g.dom)
        self._confirm_commutes("pullback", (left, f), (right, g))
        return MatrixPullback(self, f, g, basis.dom, left, right)

    def equalizer(self, f: M, g: M) -> MatrixEqualizer[M]:
        """Compute the equalizer of f, g: a -> b through ker (F - G).

        Returns
        -------
        MatrixEqualizer
            Apex k = dim ker (F - G) and the inclusion e: k -> a, whose matrix
            columns are a basis of that kernel.

        Raises
        ------
        CategoryError
            If f and g are not parallel, or (numerically) if the computed
            inclusion does not equalize them within the tolerance.
        """
        if (f.dom, f.cod) != (g.dom, g.cod):
            raise CategoryError(
                "an equalizer needs parallel morphisms f, g: a -> b; got"
                f" f: {_arrow(f.dom, f.cod)} and g: {_arrow(g.dom, g.cod)}"
            )
        basis = self.kernel(self._subtract(f, g))
        self._confirm_commutes("equalizer", (basis, f), (basis, g))
        return MatrixEqualizer(self, f, g, basis.dom, basis)

    # Mediating morphisms.

    def _try_factor(self, legs: M, target: M) -> tuple[M | None, str]:
        """Return (u, "") with u;legs = target, or (None, why no u exists)."""
        solution = self._solve(legs, target)
        if solution is None:
            return None, "the linear system for the mediating matrix has no solution"
        composite = self.compose(solution, legs)
        if not self.equal_morphisms(composite, target):
            difference = self.describe_difference(composite, target)
            return None, (
                "no u satisfies u;legs = cone, and the best candidate leaves"
                f" {difference}"
            )
        return solution, ""

    def _factor(self, legs: M, target: M, what: str) -> M:
        """Return u with u;legs = target, or raise ConeError naming the residual."""
        solution, reason = self._try_factor(legs, target)
        if solution is None:
            raise ConeError(
                f"the {what} cone does not factor through the limit: {reason}"
            )
        return solution

    def _check_pullback_cone(self, f: M, g: M, cone: tuple[M, M]) -> None:
        """Raise ConeError unless the cone fits the cospan f, g and commutes."""
        first, second = cone
        a, b, c = f.dom, g.dom, f.cod
        if first.cod != a or second.cod != b or first.dom != second.dom:
            raise ConeError(
                f"a cone over the cospan f: {_arrow(a, c)}, g: {_arrow(b, c)} needs"
                f" legs x -> {a} and x -> {b} from one x; got"
                f" {_arrow(first.dom, first.cod)} and"
                f" {_arrow(second.dom, second.cod)}"
            )
        lhs = self.compose(first, f)
        rhs = self.compose(second, g)
        if not self.equal_morphisms(lhs, rhs):
            difference = self.describe_difference(lhs, rhs)
            raise ConeError(
                "the cone (p', q') does not commute: p';f and q';g differ,"
                f" {difference}"
            )

    def _check_equalizer_cone(self, f: M, g: M, cone: M) -> None:
        """Raise ConeError unless the cone ends at dom f and equalizes f and g."""
        if cone.cod != f.dom:
            raise ConeError(
                f"a cone over the parallel pair f, g: {_arrow(f.dom, f.cod)} needs a"
                f" leg x -> {f.dom}; got {_arrow(cone.dom, cone.cod)}"
            )
        lhs = self.compose(cone, f)
        rhs = self.compose(cone, g)
        if not self.equal_morphisms(lhs, rhs):
            difference = self.describe_difference(lhs, rhs)
            raise ConeError(
                f"the cone e' does not commute: e';f and e';g differ, {difference}"
            )

    def _mediate_pullback(self, limit: MatrixPullback[M], cone: tuple[M, M]) -> M:
        self._check_pullback_cone(limit.f, limit.g, cone)
        first, second = cone
        legs = self._stack_rows([limit.left, limit.right], dom=limit.apex)
        target = self._stack_rows([first, second], dom=first.dom)
        return self._factor(legs, target, "pullback")

    def _mediate_equalizer(self, limit: MatrixEqualizer[M], cone: M) -> M:
        self._check_equalizer_cone(limit.f, limit.g, cone)
        return self._factor(limit.inclusion, cone, "equalizer")

    def _mediate_product(
        self, limit: MatrixProduct[M], legs: Sequence[M], apex: int | None
    ) -> M:
        if len(legs) != len(limit.factors):
            raise ConeError(
                f"a cone over {len(limit.factors)} factors needs one leg per factor;"
                f" got {len(legs)} legs"
            )
        if apex is None:
            if not legs:
                raise ConeError(
                    "a cone with no legs does not say its apex; pass apex=x to get"
                    " the morphism x -> 0"
                )
            apex = legs[0].dom
        apex = _check_dimension(apex, "apex")
        for i, (leg, n) in enumerate(zip(legs, limit.factors, strict=True)):
            if (leg.dom, leg.cod) != (apex, n):
                raise ConeError(
                    f"leg {i} must be a morphism {_arrow(apex, n)}; got"
                    f" {_arrow(leg.dom, leg.cod)}"
                )
        return self._stack_rows(legs, dom=apex)


def _difference_of_shapes(f: _Matrix, g: _Matrix) -> str:
    return (
        f"the shapes differ: {f.cod}×{f.dom} ({_arrow(f.dom, f.cod)}) against"
        f" {g.cod}×{g.dom} ({_arrow(g.dom, g.cod)})"
    )


def _composition_message(f: _Matrix, g: _Matrix) -> str:
    return (
        f"cannot compose f: {_arrow(f.dom, f.cod)} then g: {_arrow(g.dom, g.cod)},"
        f" because cod f = {f.cod} differs from dom g = {g.dom}; f;g needs the"
        " number of rows of F to equal the number of columns of G"
    )


class ExactMatrices(MatrixCategory[ExactMatrix]):
    """Matrices with exact entries: rational numbers or sympy expressions.

    Morphism equality is ``==`` of `ExactMatrix`. Kernels, ranks and mediating
    matrices are computed exactly with sympy. NOTE: with symbolic entries they
    are computed over the field of rational functions of the symbols, so they
    hold for generic values: the kernel of [[x]] is 0 although it is K at
    x = 0, and substituting such a value can change a limit's dimension.
    """

    name = "ExactMatrices"

    def __repr__(self) -> str:
        return "ExactMatrices()"

    def matrix(self, data: object, *, dom: int | None = None) -> ExactMatrix:
        """Build an `ExactMatrix` from its rows, as that class describes."""
        return ExactMatrix(data, dom=dom)

    def identity(self, x: int) -> ExactMatrix:
        """Return the identity on `x`, the x×x identity matrix."""
        n = _check_dimension(x, "the object")
        return ExactMatrix(sympy.eye(n))

    def zero(self, dom: int, cod: int) -> ExactMatrix:
        """Return the zero morphism dom -> cod, a cod×dom matrix of zeros."""
        rows = _check_dimension(cod, "cod")
        columns = _check_dimension(dom, "dom")
        return ExactMatrix(sympy.zeros(rows, columns))

    def compose(self, f: ExactMatrix, g: ExactMatrix) -> ExactMatrix:
        """Return f;g, whose matrix is G·F.

        Raises `CompositionError` unless cod f = dom g.
        """
        _require_exact(f)
        _require_exact(g)
        if f.cod != g.dom:
            raise CompositionError(_composition_message(f, g))
        return ExactMatrix(g.matrix * f.matrix, dom=f.dom)

    def describe_difference(self, f: ExactMatrix, g: ExactMatrix) -> str:
        """Return the shapes when they differ, else where f - g is nonzero."""
        if f.shape != g.shape:
            return _difference_of_shapes(f, g)
        positions = [
            (i, j)
            for i in range(f.cod)
            for j in range(f.dom)
            if not _exact_entries_equal(f.entry(i, j), g.entry(i, j))
        ]
        if not positions:
            return ""
        listed = ", ".join(
            f"({i}, {j}) = {sympy.simplify(f.entry(i, j) - g.entry(i, j))}"
            for i, j in positions[:_MAX_LISTED_ENTRIES]
        )
        more = "" if len(positions) <= _MAX_LISTED_ENTRIES else ", ..."
        return (
            f"the difference first - second is nonzero at {len(positions)} of"
            f" {f.cod * f.dom} entries: {listed}{more}"
        )

    def kernel(self, f: ExactMatrix) -> ExactMatrix:
        """Return a morphism k -> dom f whose matrix columns are a basis of ker F.

        The basis is sympy's ``nullspace``: one vector per free column of the
        reduced row echelon form of F.
        """
        _require_exact(f)
        vectors = f.matrix.nullspace(simplify=True) if f.dom else []
        if not vectors:
            return self.zero(0, f.dom)
        return ExactMatrix(sympy.Matrix.hstack(*vectors), dom=len(vectors))

    def rank(self, f: ExactMatrix) -> int:
        """Return the exact rank of the matrix of `f`."""
        _require_exact(f)
        return int(f.matrix.rank(simplify=True))

    def _negate(self, f: ExactMatrix) -> ExactMatrix:
        return ExactMatrix(-f.matrix, dom=f.dom)

    def _subtract(self, f: ExactMatrix, g: ExactMatrix) -> ExactMatrix:
        return ExactMatrix(f.matrix - g.matrix, dom=f.dom)

    def _stack_rows(self, blocks: Sequence[ExactMatrix], dom: int) -> ExactMatrix:
        if not blocks:
            return self.zero(dom, 0)
        return ExactMatrix(sympy.Matrix.vstack(*(b.matrix for b in blocks)), dom=dom)

    def _stack_columns(self, blocks: Sequence[ExactMatrix], cod: int) -> ExactMatrix:
        if not blocks:
            return self.zero(0, cod)
        stacked = sympy.Matrix.hstack(*(b.matrix for b in blocks))
        return ExactMatrix(stacked, dom=sum(b.dom for b in blocks))

    def _row_block(self, f: ExactMatrix, start: int, stop: int) -> ExactMatrix:
        if start == stop:
            return self.zero(f.dom, 0)
        return ExactMatrix(f.matrix[start:stop, :], dom=f.dom)

    def _solve(self, legs: ExactMatrix, target: ExactMatrix) -> ExactMatrix | None:
        if legs.dom == 0 or target.dom == 0 or legs.cod == 0:
            # With an empty dimension the zero matrix solves the system
            # whenever anything does, and the caller checks it.
            return self.zero(target.dom, legs.dom)
        try:
            solution, parameters = legs.matrix.gauss_jordan_solve(target.matrix)
        except ValueError:
            # sympy raises ValueError("Linear system has no solution").
            return None
        if parameters:
            # Legs without full column rank leave free parameters. Any choice
            # solves the system, and the monic check reports the non-uniqueness.
            solution = solution.subs({parameter: 0 for parameter in parameters})
        return ExactMatrix(solution, dom=target.dom)


def _require_exact(f: object) -> None:
    if not isinstance(f, ExactMatrix):
        raise TypeError(
            f"ExactMatrices takes ExactMatrix morphisms; got {type(f).__name__}."
            " Build one with ExactMatrices().matrix(rows)"
        )


def _check_tolerance(value: object, name: str) -> float:
    """Return `value` as a float tolerance, or raise naming it and the fix.

    Strings and bools are rejected, although ``float()`` would convert them,
    so that a quoted number or a flag passed by mistake is reported.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number >= 0, such as {name}=1e-9; got"
            f" {value!r} of type {type(value).__name__}. Pass a float or an int"
        )
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise ValueError(
            f"{name} must be finite and >= 0, such as {name}=1e-9; got {value!r}"
        )
    return number


class NumericMatrices(MatrixCategory[NumericMatrix]):
    """Matrices of float64 numbers, stored as numpy arrays or torch tensors.

    The category's equality of morphisms is ``allclose``: equal shapes and
    ``|a - b| <= atol + rtol * |b|`` entrywise, with b the second argument
    (numpy.allclose, or torch.allclose for tensors on one device). Python
    ``==`` on `NumericMatrix` stays exact.

    Ranks and kernels treat singular values s <= rank_rtol * s_max as zero,
    where s_max is the largest singular value: `kernel` is
    ``scipy.linalg.null_space(A, rcond=rank_rtol)`` for numpy and the same
    rule on ``torch.linalg.svd`` for torch. The rank threshold is relative
    but ``atol`` is absolute, so a singular value just below the threshold
    leaves kernel vectors whose residual can exceed atol. `pullback` and
    `equalizer` then raise `CategoryError` naming the residual, rather than
    return legs that fail their own commutation law.

    Mediating matrices are least-squares solutions (scipy.linalg.lstsq with
    cond=rank_rtol, or torch.linalg.pinv with rtol=rank_rtol), accepted only
    when they reproduce the cone within the allclose tolerance.

    Torch computations run on the device of the tensors involved. Identities,
    zero matrices and projections, which have no input tensor, are built on
    `device`, so pass ``device="cuda"`` to compose them with CUDA tensors.
    NOTE: the tests run torch on the CPU only, so the CUDA path (the same
    calls on CUDA tensors) has not been run.

    Parameters
    ----------
    backend : {"numpy", "torch"}
        Storage of the morphisms this category builds and accepts.
    rtol, atol : float
        Relative and absolute tolerance of `equal_morphisms`.
    rank_rtol : float
        Relative singular-value threshold for ranks and kernels. The default
        1e-12 is about 4500 times the float64 machine epsilon (2.2e-16), far
        above the round-off of small exactly singular matrices. Raise it for
        data known only to a few digits.
    device : str or torch.device, optional
        The torch device of identities and zero matrices, CPU by default.
        Only for the torch backend.

    Raises
    ------
    TypeError
        If a tolerance is not a real number (a string or a bool, say), or
        `device` is neither a string nor a torch.device.
    ValueError
        If a tolerance is negative, infinite or NaN, `backend` is unknown,
        `device` is given for the numpy backend or is no torch device string.
    """

    name = "NumericMatrices"

    def __init__(
        self,
        backend: Backend = "numpy",
        rtol: float = 1e-9,
        atol: float = 1e-12,
        rank_rtol: float = 1e-12,
        device: str | torch.device | None = None,
    ) -> None:
        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend must be 'numpy' or 'torch'; got {backend!r}")
        if device is not None and backend != "torch":
            raise ValueError(
                f"device={device!r} applies to the torch backend only; drop it or"
                " pass backend='torch'"
            )
        self.backend: Backend = backend
        self.rtol = _check_tolerance(rtol, "rtol")
        self.atol = _check_tolerance(atol, "atol")
        self.rank_rtol = _check_tolerance(rank_rtol, "rank_rtol")
        self.device = _torch_device("cpu" if device is None else device)

    def __repr__(self) -> str:
        device = f", device='{self.device}'" if self.backend == "torch" else ""
        return (
            f"NumericMatrices(backend='{self.backend}', rtol={self.rtol},"
            f" atol={self.atol}, rank_rtol={self.rank_rtol}{device})"
        )

    def _tolerance_note(self) -> str:
        return (
            f" (singular values <= rank_rtol={self.rank_rtol} times the largest"
            " count as zero)"
        )

    def _confirm_commutes(
        self,
        what: str,
        first: tuple[NumericMatrix, NumericMatrix],
        second: tuple[NumericMatrix, NumericMatrix],
    ) -> None:
        lhs = self.compose(*first)
        rhs = self.compose(*second)
        if self.equal_morphisms(lhs, rhs):
            return
        raise CategoryError(
            f"the computed {what} does not commute:"
            f" {self.describe_difference(lhs, rhs)}. The kernel has a direction"
            f" whose singular value is at most rank_rtol={self.rank_rtol} times the"
            f" largest but leaves a residual above atol={self.atol}; lower rank_rtol"
            " to keep that direction out of the kernel, or raise atol to accept it"
        )

    def _require(self, f: object) -> NumericMatrix:
        if not isinstance(f, NumericMatrix):
            raise TypeError(
                f"NumericMatrices takes NumericMatrix morphisms; got"
                f" {type(f).__name__}. Build one with category.matrix(data)"
            )
        if f.backend != self.backend:
            raise TypeError(
                f"this category uses the {self.backend} backend but the matrix is"
                f" stored with {f.backend}; build it with category.matrix(data)"
            )
        return f

    def _wrap(self, data: FloatArray | torch.Tensor) -> NumericMatrix:
        return NumericMatrix(data, backend=self.backend)

    def _zeros(self, cod: int, dom: int, like: NumericMatrix | None) -> NumericMatrix:
        """Return a cod×dom zero matrix on the device of `like`, or on `device`."""
        if self.backend == "numpy":
            return self._wrap(np.zeros((cod, dom)))
        device = self.device if like is None else like.device
        return self._wrap(torch.zeros(cod, dom, dtype=torch.float64, device=device))

    def matrix(self, data: object) -> NumericMatrix:
        """Build a `NumericMatrix` of shape (cod, dom) with this category's backend.

        Tensors keep their device, and nested sequences and numpy arrays become
        tensors on `device` for the torch backend.
        """
        if self.backend == "torch" and not isinstance(data, torch.Tensor):
            return NumericMatrix(data, backend="torch", device=self.device)
        return NumericMatrix(data, backend=self.backend)

    def identity(self, x: int) -> NumericMatrix:
        """Return the identity on `x`, the x×x identity matrix."""
        n = _check_dimension(x, "the object")
        if self.backend == "numpy":
            return self._wrap(np.eye(n))
        return self._wrap(torch.eye(n, dtype=torch.float64, device=self.device))

    def zero(self, dom: int, cod: int) -> NumericMatrix:
        """Return the zero morphism dom -> cod, a cod×dom matrix of zeros."""
        rows = _check_dimension(cod, "cod")
        columns = _check_dimension(dom, "dom")
        return self._zeros(rows, columns, None)

    def compose(self, f: NumericMatrix, g: NumericMatrix) -> NumericMatrix:
        """Return f;g, whose matrix is G·F.

        Raises `CompositionError` unless cod f = dom g, or if the tensors sit on
        different devices.
        """
        self._require(f)
        self._require(g)
        if f.cod != g.dom:
            raise CompositionError(_composition_message(f, g))
        if f.device != g.device:
            raise CompositionError(
                f"cannot compose a matrix on {f.device} with one on {g.device};"
                " move both to one device with .to(device) before wrapping them"
            )
        return self._wrap(_matmul(g.array, f.array))

    def equal_morphisms(self, f: NumericMatrix, g: NumericMatrix) -> bool:
        """Return whether the shapes agree and the entries are allclose(rtol, atol)."""
        if f.shape != g.shape:
            return False
        a, b = f.array, g.array
        if (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.device == b.device
        ):
            return bool(torch.allclose(a, b, rtol=self.rtol, atol=self.atol))
        close = np.allclose(f.to_numpy(), g.to_numpy(), rtol=self.rtol, atol=self.atol)
        return bool(close)

    def describe_difference(self, f: NumericMatrix, g: NumericMatrix) -> str:
        """Return the shapes when they differ, else the largest entrywise difference."""
        if f.shape != g.shape:
            return _difference_of_shapes(f, g)
        if f.cod * f.dom == 0:
            return ""
        lhs, rhs = f.to_numpy(), g.to_numpy()
        gap = np.abs(lhs - rhs)
        i, j = (int(index) for index in np.unravel_index(np.argmax(gap), gap.shape))
        return (
            f"largest absolute difference {gap[i, j]:.3g} at entry ({i}, {j}),"
            f" {lhs[i, j]:.6g} against {rhs[i, j]:.6g}, compared with"
            f" allclose(rtol={self.rtol}, atol={self.atol})"
        )

    def kernel(self, f: NumericMatrix) -> NumericMatrix:
        """Return a morphism k -> dom f whose columns are an orthonormal basis of ker F.

        Singular values <= rank_rtol times the largest count as zero.
        """
        self._require(f)
        if f.dom == 0:
            return self._zeros(0, 0, f)
        if f.cod == 0:
            return self._wrap(_eye_like(f.dom, f.array))
        a = f.array
        if isinstance(a, torch.Tensor):
            _, singular, vh = torch.linalg.svd(a, full_matrices=True)
            rank = self._count_nonzero(singular.cpu().numpy())
            return self._wrap(vh[rank:].mT.contiguous())
        return self._wrap(scipy.linalg.null_space(a, rcond=self.rank_rtol))

    def rank(self, f: NumericMatrix) -> int:
        """Return the rank of F, the number of singular values > rank_rtol * max."""
        self._require(f)
        if f.cod * f.dom == 0:
            return 0
        a = f.array
        if isinstance(a, torch.Tensor):
            return self._count_nonzero(torch.linalg.svdvals(a).cpu().numpy())
        return self._count_nonzero(scipy.linalg.svdvals(a))

    def _count_nonzero(self, singular: FloatArray) -> int:
        # The rule of scipy.linalg.null_space (scipy 1.17): s > rcond * max(s)
        # is nonzero.
        threshold = singular.max() * self.rank_rtol
        return int((singular > threshold).sum())

    def _negate(self, f: NumericMatrix) -> NumericMatrix:
        return self._wrap(-f.array)

    def _subtract(self, f: NumericMatrix, g: NumericMatrix) -> NumericMatrix:
        a, b = f.array, g.array
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            return self._wrap(a - b)
        return self._wrap(f.to_numpy() - g.to_numpy())

    def _stack_rows(self, blocks: Sequence[NumericMatrix], dom: int) -> NumericMatrix:
        if not blocks:
            return self._zeros(0, dom, None)
        return self._wrap(_concatenate([b.array for b in blocks], axis=0))

    def _stack_columns(
        self, blocks: Sequence[NumericMatrix], cod: int
    ) -> NumericMatrix:
        if not blocks:
            return self._zeros(cod, 0, None)
        return self._wrap(_concatenate([b.array for b in blocks], axis=1))

    def _row_block(self, f: NumericMatrix, start: int, stop: int) -> NumericMatrix:
        return self._wrap(f.array[start:stop, :])

    def _solve(self, legs: NumericMatrix, target: NumericMatrix) -> NumericMatrix:
        if legs.dom == 0 or target.dom == 0 or legs.cod == 0:
            # With an empty dimension the zero matrix solves the system
            # whenever anything does, and the caller checks it.
            return self._zeros(legs.dom, target.dom, legs)
        a, b = legs.array, target.array
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            # pinv rather than lstsq: the torch.linalg.lstsq docstring (torch
            # 2.13) allows only the driver "gels" on CUDA, which assumes full rank.
            return self._wrap(torch.linalg.pinv(a, rtol=self.rank_rtol) @ b)
        solution, _, _, _ = scipy.linalg.lstsq(
            legs.to_numpy(), target.to_numpy(), cond=self.rank_rtol
        )
        return self._wrap(solution)


def _matmul(
    a: FloatArray | torch.Tensor, b: FloatArray | torch.Tensor
) -> FloatArray | torch.Tensor:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a @ b
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a @ b
    raise TypeError("cannot multiply a numpy array with a torch tensor")


def _eye_like(n: int, like: FloatArray | torch.Tensor) -> FloatArray | torch.Tensor:
    if isinstance(like, torch.Tensor):
        return torch.eye(n, dtype=torch.float64, device=like.device)
    return np.eye(n)


def _concatenate(
    arrays: Sequence[FloatArray | torch.Tensor], axis: int
) -> FloatArray | torch.Tensor:
    tensors = [a for a in arrays if isinstance(a, torch.Tensor)]
    if len(tensors) == len(arrays):
        return torch.cat(tensors, dim=axis)
    if not tensors:
        return np.concatenate(arrays, axis=axis)
    raise TypeError("cannot stack numpy arrays with torch tensors")


# Checkers of the universal properties.


def _zero_counts(prefix: str) -> dict[str, int]:
    names = ("typing", "commutes", "jointly_monic", "factorization")
    if prefix == "equalizer":
        names = ("typing", "commutes", "monic", "factorization")
    return {f"{prefix}.{name}": 0 for name in names}


def verify_pullback(
    category: MatrixCategory[M],
    f: M,
    g: M,
    left: M,
    right: M,
    cones: Iterable[tuple[M, M]] = (),
) -> LawReport:
    """Check that (left, right) is a pullback of the cospan f, g.

    Parameters
    ----------
    category : MatrixCategory
        Decides equality of morphisms and ranks (with its tolerance, if any).
    f, g : matrix
        The cospan f: a -> c, g: b -> c.
    left, right : matrix
        The candidate legs p: k -> a and q: k -> b.
    cones : iterable of (p', q'), optional
        Commuting test cones, each of which must factor through the candidate.

    Returns
    -------
    LawReport
        Laws ``pullback.typing``, ``pullback.commutes``,
        ``pullback.jointly_monic`` and ``pullback.factorization``, as listed in
        the module docstring. Typing failures stop the other checks.

    Raises
    ------
    ConeError
        If a test cone does not fit the cospan or does not commute, since that
        is a bad argument and no failure of the candidate.
    """
    checked = _zero_counts("pullback")
    failures: list[LawFailure] = []
    legs = (left, right)

    checked["pullback.typing"] += 1
    shapes = [(m.dom, m.cod) for m in (f, g, left, right)]
    if (
        f.cod != g.cod
        or left.cod != f.dom
        or right.cod != g.dom
        or left.dom != right.dom
    ):
        failures.append(
            LawFailure(
                "pullback.typing",
                (f, g, left, right),
                shapes,
                "f: a -> c, g: b -> c, p: k -> a, q: k -> b",
                "the (dom, cod) of f, g, p, q do not form a square",
            )
        )
        return LawReport(checked=checked, failures=tuple(failures))

    checked["pullback.commutes"] += 1
    lhs = category.compose(left, f)
    rhs = category.compose(right, g)
    if not category.equal_morphisms(lhs, rhs):
        detail = category.describe_difference(lhs, rhs)
        failures.append(LawFailure("pullback.commutes", legs, lhs, rhs, detail))

    stacked = category._stack_rows([left, right], dom=left.dom)
    _check_monic(category, "pullback.jointly_monic", legs, stacked, checked, failures)

    checked["pullback.factorization"] += 1
    joint = category._stack_columns([f, category._negate(g)], cod=f.cod)
    dimension = category.kernel(joint).dom
    if left.dom != dimension:
        failures.append(
            LawFailure(
                "pullback.factorization",
                (f, g),
                left.dom,
                dimension,
                f"the apex has dimension {left.dom} but ker [F | -G] has dimension"
                f" {dimension}, and a pullback's apex is isomorphic to that kernel",
            )
        )

    for first, second in cones:
        category._check_pullback_cone(f, g, (first, second))
        checked["pullback.factorization"] += 1
        target = category._stack_rows([first, second], dom=first.dom)
        solution, reason = category._try_factor(stacked, target)
        if solution is None:
            failures.append(
                LawFailure(
                    "pullback.factorization", (first, second), target, stacked, reason
                )
            )
    return LawReport(checked=checked, failures=tuple(failures))


def verify_equalizer(
    category: MatrixCategory[M],
    f: M,
    g: M,
    inclusion: M,
    cones: Iterable[M] = (),
) -> LawReport:
    """Check that `inclusion` is an equalizer of the parallel pair f, g.

    Parameters
    ----------
    category : MatrixCategory
        Decides equality of morphisms and ranks (with its tolerance, if any).
    f, g : matrix
        The parallel pair f, g: a -> b.
    inclusion : matrix
        The candidate e: k -> a.
    cones : iterable of matrices, optional
        Test cones e': x -> a with e';f = e';g, each of which must factor
        through e.

    Returns
    -------
    LawReport
        Laws ``equalizer.typing``, ``equalizer.commutes`` (e;f = e;g),
        ``equalizer.monic`` (E has rank k, so mediating matrices are unique)
        and ``equalizer.factorization`` (k = dim ker (F - G), and each test
        cone factors). Typing failures stop the other checks.

    Raises
    ------
    ConeError
        If a test cone does not fit the pair or does not commute.
    """
    checked = _zero_counts("equalizer")
    failures: list[LawFailure] = []

    checked["equalizer.typing"] += 1
    if (f.dom, f.cod) != (g.dom, g.cod) or inclusion.cod != f.dom:
        shapes = [(m.dom, m.cod) for m in (f, g, inclusion)]
        failures.append(
            LawFailure(
                "equalizer.typing",
                (f, g, inclusion),
                shapes,
                "f, g: a -> b, e: k -> a",
                "the (dom, cod) of f, g, e do not fit a parallel pair and its fork",
            )
        )
        return LawReport(checked=checked, failures=tuple(failures))

    checked["equalizer.commutes"] += 1
    lhs = category.compose(inclusion, f)
    rhs = category.compose(inclusion, g)
    if not category.equal_morphisms(lhs, rhs):
        detail = category.describe_difference(lhs, rhs)
        failures.append(
            LawFailure("equalizer.commutes", (inclusion,), lhs, rhs, detail)
        )

    _check_monic(
        category, "equalizer.monic", (inclusion,), inclusion, checked, failures
    )

    checked["equalizer.factorization"] += 1
    dimension = category.kernel(category._subtract(f, g)).dom
    if inclusion.dom != dimension:
        failures.append(
            LawFailure(
                "equalizer.factorization",
                (f, g),
                inclusion.dom,
                dimension,
                f"the apex has dimension {inclusion.dom} but ker (F - G) has"
                f" dimension {dimension}, and an equalizer's apex is isomorphic to"
                " that kernel",
            )
        )

    for cone in cones:
        category._check_equalizer_cone(f, g, cone)
        checked["equalizer.factorization"] += 1
        solution, reason = category._try_factor(inclusion, cone)
        if solution is None:
            failures.append(
                LawFailure("equalizer.factorization", (cone,), cone, inclusion, reason)
            )
    return LawReport(checked=checked, failures=tuple(failures))


def _check_monic(
    category: MatrixCategory[M],
    law: str,
    witness: tuple[M, ...],
    stacked: M,
    checked: dict[str, int],
    failures: list[LawFailure],
) -> None:
    """Record a failure of `law` unless the stacked legs have full column rank."""
    checked[law] += 1
    rank = category.rank(stacked)
    if rank != stacked.dom:
        failures.append(
            LawFailure(
                law,
                witness,
                rank,
                stacked.dom,
                f"the stacked legs have rank {rank} < apex dimension {stacked.dom},"
                " so mediating matrices are not unique"
                f"{category._tolerance_note()}",
            )
        )


def is_pullback(
    category: MatrixCategory[M],
    f: M,
    g: M,
    left: M,
    right: M,
    cones: Iterable[tuple[M, M]] = (),
) -> bool:
    """Return whether `verify_pullback` finds no failure."""
    return verify_pullback(category, f, g, left, right, cones).ok


def is_equalizer(
    category: MatrixCategory[M],
    f: M,
    g: M,
    inclusion: M,
    cones: Iterable[M] = (),
) -> bool:
    """Return whether `verify_equalizer` finds no failure."""
    return verify_equalizer(category, f, g, inclusion, cones).ok
