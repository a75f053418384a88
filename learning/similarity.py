"""Coarser comparisons of representations: equality up to an affine map, and CKA.

Rep (`learning.rep`) calls two representations equal when their features
agree entry by entry within a tolerance. The comparisons here are coarser:

- `affine_fit` and `affinely_equal` ask whether one feature matrix is an
  affine image of another on the probe set, ``source @ weight + bias ==
  target``, by least squares. Being an affine image is a preorder, not an
  equivalence: a representation of lower rank is an affine image of a richer
  one, but not conversely. ``affinely_equal(a, b, symmetric=True)`` checks
  both directions, which is affine equivalence.
- `cka` is centered kernel alignment (Kornblith, Norouzi, Lee and Hinton,
  "Similarity of Neural Network Representations Revisited", ICML 2019), the
  normalized Hilbert-Schmidt independence criterion (HSIC) of the two
  inputs' kernel matrices. Linear CKA is invariant to orthogonal transforms,
  isotropic scaling and translation of either input, but not to general
  invertible linear maps, so two affinely equivalent representations can
  have linear CKA below 1.

Inputs are feature matrices of shape (n_examples, n_features) whose rows are
the same probe examples in the same order: torch tensors, numpy arrays or
`Representation` objects. The two inputs may have different numbers of
features. Computation is in float64, on CUDA when either input is a CUDA
tensor and on the CPU otherwise.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from learning.rep import Representation

logger = logging.getLogger(__name__)

Features = torch.Tensor | np.ndarray | Representation
"""A feature matrix, (n_examples, n_features), in any of the accepted types."""

Kernel = Literal["linear", "rbf"]
Estimator = Literal["biased", "unbiased"]

KERNELS: tuple[Kernel, ...] = ("linear", "rbf")
ESTIMATORS: tuple[Estimator, ...] = ("biased", "unbiased")

DEFAULT_AFFINE_TOLERANCE = 1e-6
"""Largest relative residual at which `affinely_equal` calls two inputs equal."""


# ---------------------------------------------------------------------------
# Input validation shared by both comparisons


def _as_tensor(value: Features, name: str) -> torch.Tensor:
    if isinstance(value, Representation):
        return value.features
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(
                f"{name} has complex dtype {value.dtype}; pass real features"
            )
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} has dtype {value.dtype}; pass a numpy array of real"
                " numbers (float, integer or bool)"
            )
        # torch.tensor copies, so read-only arrays are accepted without a warning.
        return torch.tensor(value, dtype=torch.float64)
    raise TypeError(
        f"{name} must be a torch.Tensor, a numpy.ndarray or a Representation;"
        f" got {type(value).__name__}"
    )


def _compute_device(*tensors: torch.Tensor) -> torch.device:
    """Return the first CUDA device among the inputs, else the CPU."""
    for tensor in tensors:
        if tensor.device.type == "cuda":
            return tensor.device
    # Other accelerators (MPS) lack float64, so their inputs are compared on the CPU.
    return torch.device("cpu")


def _check_matrix(matrix: torch.Tensor, name: str) -> None:
    if matrix.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D feature matrix (n_examples, n_features); got"
            f" shape {tuple(matrix.shape)}. Flatten trailing dimensions with"
            " .reshape(n_examples, -1)"
        )
    n_examples, n_features = matrix.shape
    if n_examples == 0 or n_features == 0:
        raise ValueError(
            f"{name} is empty, with shape {tuple(matrix.shape)}; it needs at least"
            " one example (row) and one feature (column)"
        )
    finite = torch.isfinite(matrix)
    if not bool(finite.all()):
        count = int((~finite).sum())
        row, column = (int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"{name} contains {count} non-finite value(s) (NaN or inf), the first"
            f" at row {row}, column {column}; drop or repair those examples in"
            " both inputs before comparing"
        )


def _prepare_pair(
    first: Features, first_name: str, second: Features, second_name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two feature matrices and return them in float64 on one device."""
    a = _as_tensor(first, first_name)
    b = _as_tensor(second, second_name)
    device = _compute_device(a, b)
    a = a.detach().to(device=device, dtype=torch.float64)
    b = b.detach().to(device=device, dtype=torch.float64)
    _check_matrix(a, first_name)
    _check_matrix(b, second_name)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{first_name} and {second_name} must have one row per probe example,"
            f" the same number of rows; got shapes {tuple(a.shape)} and"
            f" {tuple(b.shape)}"
        )
    return a, b


def _rows_all_equal(matrix: torch.Tensor) -> bool:
    return bool(torch.equal(matrix, matrix[:1].expand_as(matrix)))


# ---------------------------------------------------------------------------
# Equality up to an affine map


@dataclass(frozen=True, eq=False)
class AffineFit:
    """Least-squares affine map from one feature matrix to another.

    The map acts on rows (examples): ``source @ weight + bias`` approximates
    ``target``. ``weight`` has shape (source_features, target_features) and
    ``bias`` shape (target_features,), both float64 on the device the fit ran
    on. ``residual`` is the Frobenius norm of ``source @ weight + bias -
    target``. ``relative_residual`` is the residual over the Frobenius norm
    of the column-centered target. It is 0 for an exact fit and 1 for a fit
    no better than the target's mean. ``r2`` is
    ``1 - relative_residual ** 2``.

    A target whose rows are all equal (zero variance) is reproduced exactly
    by ``weight = 0`` and ``bias`` equal to that row, and is given
    ``residual = 0``, ``relative_residual = 0`` and ``r2 = 1``.

    ``underdetermined`` is True when the source has at most ``n_features + 1``
    rows. The design matrix ``[source, 1]`` then has at least as many columns
    as rows, so for generic data every target is fitted exactly, and a zero
    residual says nothing about the two representations.

    Equality (``==``) is identity, because the fields hold tensors.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    residual: float
    relative_residual: float
    r2: float
    underdetermined: bool

    def apply(self, source: Features) -> torch.Tensor:
        """Map a feature matrix through the fitted map: ``source @ weight + bias``.

        The result is float64, on the fit's device.
        """
        matrix = _as_tensor(source, "source").detach()
        matrix = matrix.to(device=self.weight.device, dtype=torch.float64)
        _check_matrix(matrix, "source")
        if matrix.shape[1] != self.weight.shape[0]:
            raise ValueError(
                f"source has {matrix.shape[1]} features, but the fit maps"
                f" {self.weight.shape[0]}; pass features of the fitted source's width"
            )
        return matrix @ self.weight + self.bias


def affine_fit(source: Features, target: Features) -> AffineFit:
    """Fit ``target`` as an affine image of ``source`` by least squares.

    Finds the weight A and bias b minimizing ``||source @ A + b - target||_F``,
    where rows are examples, with `torch.linalg.lstsq` on the design matrix
    ``[source, 1]``. When that matrix is rank deficient (a dead ReLU unit
    gives a zero column, for instance) the minimum-norm solution is returned.

    Parameters
    ----------
    source : torch.Tensor, numpy.ndarray or Representation
        Features (n_examples, source_features) that the map is applied to.
    target : torch.Tensor, numpy.ndarray or Representation
        Features (n_examples, target_features) of the same examples.

    Returns
    -------
    AffineFit
        The map, its residual, relative residual, R² and whether the fit is
        underdetermined (at most ``source_features + 1`` examples), in which
        case a zero residual is expected for any target.

    Raises
    ------
    ValueError
        If an input is not 2-D or is empty, contains NaN or inf, or the two
        have different numbers of rows. The message names the input.
    TypeError
        If an input is not a tensor, array or Representation of real numbers.
    """
    s, t = _prepare_pair(source, "source", target, "target")
    return _fit(s, t)


def affinely_equal(
    a: Features,
    b: Features,
    tolerance: float = DEFAULT_AFFINE_TOLERANCE,
    symmetric: bool = False,
) -> bool:
    """Test whether ``b`` is an affine image of ``a`` up to a relative residual.

    Fits ``a @ A + c`` to ``b`` by least squares (see `affine_fit`) and
    compares the relative residual with `tolerance`. One direction is not a
    symmetric test: when ``a`` has lower rank than ``b``, ``a`` is an affine
    image of ``b`` but ``b`` is not an image of ``a``. With
    ``symmetric=True`` both directions must fit, which is affine equivalence.

    Parameters
    ----------
    a, b : torch.Tensor, numpy.ndarray or Representation
        Feature matrices (n_examples, n_features) of the same examples.
    tolerance : float
        Largest accepted relative residual (residual over the Frobenius norm
        of the column-centered target), at least 0.
    symmetric : bool
        Also require ``a`` to be an affine image of ``b``.

    Returns
    -------
    bool
        Whether every requested direction fits within `tolerance`. An
        underdetermined fit (at most ``n_features + 1`` examples in the
        source) fits any target, so it is logged as a warning.

    Raises
    ------
    ValueError
        If `tolerance` is negative or not finite, or an input is invalid as
        in `affine_fit`.
    """
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(
            f"tolerance must be a finite number >= 0; got {tolerance}. It bounds"
            " the relative residual, so 1e-6 is a typical value"
        )
    x, y = _prepare_pair(a, "a", b, "b")
    directions = [(x, y, "a", "b")]
    if symmetric:
        directions.append((y, x, "b", "a"))

    for source, target, source_name, target_name in directions:
        fit = _fit(source, target)
        if fit.underdetermined:
            logger.warning(
                "fitting %s as an affine image of %s is underdetermined: %d"
                " examples for %d features plus a bias, so any target fits"
                " exactly; compare on more examples",
                target_name,
                source_name,
                source.shape[0],
                source.shape[1],
            )
        if fit.relative_residual > tolerance:
            return False
    return True


def _fit(source: torch.Tensor, target: torch.Tensor) -> AffineFit:
    n_examples, n_features = source.shape
    underdetermined = n_examples <= n_features + 1

    if _rows_all_equal(target):
        return AffineFit(
            weight=source.new_zeros((n_features, target.shape[1])),
            bias=target[0].clone(),
            residual=0.0,
            relative_residual=0.0,
            r2=1.0,
            underdetermined=underdetermined,
        )

    design = torch.cat([source, source.new_ones((n_examples, 1))], dim=1)
    solution = _least_squares(design, target)
    # Norms are taken after dividing by the largest centered entry, which is
    # > 0 because the rows differ, so tiny targets do not underflow to 0.
    centered = target - target.mean(dim=0)
    scale = centered.abs().max()
    scaled_residual = torch.linalg.matrix_norm((design @ solution - target) / scale)
    scaled_spread = torch.linalg.matrix_norm(centered / scale)
    residual = float(scale * scaled_residual)
    relative = float(scaled_residual / scaled_spread)
    return AffineFit(
        weight=solution[:n_features],
        bias=solution[n_features],
        residual=residual,
        relative_residual=relative,
        r2=1.0 - relative**2,
        underdetermined=underdetermined,
    )


def _least_squares(design: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the minimum-norm solution of ``design @ X ~ target``."""
    if design.device.type == "cpu":
        # gelsd goes through the SVD, so rank-deficient and wide designs work.
        solution: torch.Tensor = torch.linalg.lstsq(
            design, target, driver="gelsd"
        ).solution
        return solution
    # On CUDA, lstsq offers only the "gels" driver, which assumes full column
    # rank, and a dead ReLU unit already breaks that.
    # NOTE: this branch is tested on the CPU only (against gelsd); no CUDA
    # machine was available when it was written.
    return _pseudoinverse_solution(design, target)


def _pseudoinverse_solution(design: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return pinv(design) @ target, gelsd's minimum-norm solution.

    Both discard singular values below eps * max(rows, columns) times the
    largest one (the defaults of `torch.linalg.pinv` and `torch.linalg.lstsq`).
    """
    solution: torch.Tensor = torch.linalg.pinv(design) @ target
    return solution


# ---------------------------------------------------------------------------
# Centered kernel alignment


def cka(
    x: Features,
    y: Features,
    kernel: Kernel = "linear",
    estimator: Estimator = "biased",
    sigma: float | None = None,
    *,
    sigma_factor: float = 1.0,
) -> float:
    """Compute centered kernel alignment (CKA) between two representations.

    CKA is ``HSIC(K, L) / sqrt(HSIC(K, K) * HSIC(L, L))`` for the kernel
    matrices K of `x` and L of `y` over the same examples. The biased HSIC
    estimator is ``trace(K H L H) / (n - 1) ** 2`` with the centering matrix
    ``H = I - 11ᵀ / n`` (Gretton et al., "Measuring statistical dependence
    with Hilbert-Schmidt norms", ALT 2005). The unbiased estimator is that of
    Song et al., "Feature selection via dependence maximization", JMLR 2012:
    with K̃ and L̃ the kernel matrices with zeroed diagonals,
    ``[tr(K̃ L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n-1)(n-2)) - 2 · 1ᵀK̃L̃1 / (n-2)] /
    (n (n-3))``, defined for n >= 4.

    The linear kernel is ``k(a, b) = a · b``. The RBF kernel is ``k(a, b) =
    exp(-||a - b||² / (2 sigma²))``. Without an explicit `sigma`, each input
    gets its own bandwidth by the median heuristic: `sigma_factor` times the
    median Euclidean distance between its distinct examples (the lower of
    the two middle values when the number of pairs is even).

    Parameters
    ----------
    x, y : torch.Tensor, numpy.ndarray or Representation
        Feature matrices (n_examples, n_features) of the same examples; the
        numbers of features may differ.
    kernel : {"linear", "rbf"}
        Kernel applied to each input's examples.
    estimator : {"biased", "unbiased"}
        HSIC estimator. The biased one gives CKA in [0, 1]; the unbiased one
        gives CKA in [-1, 1], with less bias at small n.
    sigma : float, optional
        RBF bandwidth, in the inputs' units, shared by both inputs. Only for
        ``kernel="rbf"``.
    sigma_factor : float
        Multiplier of the median distance when `sigma` is None (RBF only).

    Returns
    -------
    float
        The CKA of the two representations.

    Raises
    ------
    ValueError
        If there are fewer than 2 examples, or fewer than 4 for the unbiased
        estimator. If an input is constant over the examples (identical
        rows), because its HSIC with itself is 0 and CKA is undefined. If the
        median heuristic gives a zero bandwidth. If `kernel`, `estimator`,
        `sigma` or `sigma_factor` is invalid, or an input is invalid as in
        `affine_fit`. Messages name the input.
    TypeError
        If an input is not a tensor, array or Representation of real numbers.
    """
    _check_cka_options(kernel, estimator, sigma, sigma_factor)
    a, b = _prepare_pair(x, "x", y, "y")
    n = a.shape[0]
    if estimator == "unbiased" and n < 4:
        raise ValueError(
            f"the unbiased HSIC estimator is undefined for fewer than 4 examples"
            f" (it divides by n (n - 3)); got n={n}. Use estimator='biased' or"
            " compare on more examples"
        )
    if n < 2:
        raise ValueError(
            f"CKA needs at least 2 examples; got n={n}. A single example is"
            " zero once centered, so its HSIC is 0"
        )
    for matrix, name in ((a, "x"), (b, "y")):
        if _rows_all_equal(matrix):
            raise ValueError(
                f"{name} is constant: all {n} examples have identical features,"
                f" so the HSIC of {name} with itself is 0 and CKA is undefined."
                " Compare representations that separate the probe examples"
            )

    if kernel == "linear":
        # Linear CKA is invariant to translation and scaling of either input
        # (for both estimators). Centering avoids cancellation in Gram
        # matrices with large means, and dividing by the largest entry keeps
        # squares of very small or very large features from under- or
        # overflowing.
        a = _center_and_scale(a)
        b = _center_and_scale(b)
        if estimator == "biased" and _feature_form_is_cheaper(a, b):
            return _linear_cka_from_features(a, b)

    gram_x = _gram(a, kernel, sigma, sigma_factor, "x")
    gram_y = _gram(b, kernel, sigma, sigma_factor, "y")
    if estimator == "biased":
        hsic, lower = _hsic_biased, 0.0
    else:
        hsic, lower = _hsic_unbiased, -1.0
    cross = hsic(gram_x, gram_y)
    return _normalize(cross, hsic(gram_x, gram_x), hsic(gram_y, gram_y), lower)


def _check_cka_options(
    kernel: str, estimator: str, sigma: float | None, sigma_factor: float
) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
    if sigma is not None:
        if kernel != "rbf":
            raise ValueError(
                f"sigma={sigma} is the RBF bandwidth, but kernel={kernel!r};"
                " pass kernel='rbf' or drop sigma"
            )
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(
                f"sigma must be a finite number > 0; got {sigma}. Leave it None"
                " for the median heuristic"
            )
    if not (math.isfinite(sigma_factor) and sigma_factor > 0):
        raise ValueError(
            f"sigma_factor must be a finite number > 0; got {sigma_factor}"
        )


def _center_and_scale(matrix: torch.Tensor) -> torch.Tensor:
    centered = matrix - matrix.mean(dim=0)
    largest = centered.abs().max()
    return centered / largest if bool(largest > 0) else centered


def _feature_form_is_cheaper(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Compare the multiply-adds of the feature form with those of Gram matrices."""
    n, p = a.shape
    q = b.shape[1]
    return p * q + p * p + q * q <= n * (p + q)


def _linear_cka_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """Return biased linear CKA of column-centered features.

    With K = a aᵀ and L = b bᵀ, ``trace(K L) = ||bᵀ a||²_F``, so CKA is
    ``||bᵀ a||²_F / (||aᵀ a||_F ||bᵀ b||_F)``, and the (n - 1)⁻² factors
    cancel.
    """
    cross = torch.linalg.matrix_norm(b.T @ a) ** 2
    self_x = torch.linalg.matrix_norm(a.T @ a)
    self_y = torch.linalg.matrix_norm(b.T @ b)
    return _normalize(cross, self_x**2, self_y**2, lower=0.0)


def _gram(
    matrix: torch.Tensor,
    kernel: Kernel,
    sigma: float | None,
    sigma_factor: float,
    name: str,
) -> torch.Tensor:
    if kernel == "linear":
        return matrix @ matrix.T

    distances = torch.cdist(matrix, matrix, compute_mode="donot_use_mm_for_euclid_dist")
    if sigma is None:
        n = matrix.shape[0]
        rows, columns = torch.triu_indices(n, n, offset=1, device=matrix.device)
        median = float(distances[rows, columns].median())
        if median == 0:
            raise ValueError(
                f"the median distance between examples of {name} is 0 (at least"
                " half of the pairs of examples coincide), so the median"
                " heuristic gives sigma = 0; pass sigma explicitly"
            )
        sigma = sigma_factor * median
        logger.debug("RBF bandwidth of %s by the median heuristic: %g", name, sigma)
    # Both estimators ignore adding a constant to every kernel entry, so
    # expm1 (the kernel minus 1) is used: it keeps full precision when sigma
    # is large and the kernel is close to 1 everywhere.
    return torch.expm1(-0.5 * (distances / sigma) ** 2)


def _hsic_biased(gram_x: torch.Tensor, gram_y: torch.Tensor) -> torch.Tensor:
    n = gram_x.shape[0]
    return (_center(gram_x) * _center(gram_y)).sum() / (n - 1) ** 2


def _center(gram: torch.Tensor) -> torch.Tensor:
    """Return H gram H, with H the centering matrix."""
    return (
        gram
        - gram.mean(dim=0, keepdim=True)
        - gram.mean(dim=1, keepdim=True)
        + gram.mean()
    )


def _hsic_unbiased(gram_x: torch.Tensor, gram_y: torch.Tensor) -> torch.Tensor:
    n = gram_x.shape[0]
    k = gram_x - torch.diag(torch.diagonal(gram_x))
    m = gram_y - torch.diag(torch.diagonal(gram_y))
    # The kernel matrices are symmetric, so 1ᵀ K̃ L̃ 1 is (K̃ 1) · (L̃ 1).
    trace_term = (k * m).sum()
    sums_term = k.sum() * m.sum() / ((n - 1) * (n - 2))
    cross_term = 2 * (k.sum(dim=0) @ m.sum(dim=0)) / (n - 2)
    return (trace_term + sums_term - cross_term) / (n * (n - 3))


def _normalize(
    cross: torch.Tensor, self_x: torch.Tensor, self_y: torch.Tensor, lower: float
) -> float:
    """Return cross / sqrt(self_x * self_y), clipped to [lower, 1]."""
    for self_hsic, name in ((self_x, "x"), (self_y, "y")):
        if not float(self_hsic) > 0:
            raise ValueError(
                f"the HSIC of {name} with itself is {float(self_hsic):.3g}, not > 0,"
                f" so CKA is undefined; {name} is constant over the examples up"
                " to round-off. Compare representations that separate the probe"
                " examples"
            )
    ratio = float(cross / torch.sqrt(self_x * self_y))
    # Both estimators are inner products of centered kernel matrices, so
    # Cauchy-Schwarz bounds |CKA| by 1, and the biased one of two positive
    # semidefinite kernels is >= 0. A value outside is round-off.
    return min(max(ratio, lower), 1.0)
