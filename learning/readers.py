"""Readers for MNIST, Fashion-MNIST and CIFAR-10 stored in a local folder.

Nothing is downloaded: the user places the data set's standard files in a
folder and passes that folder as ``root``.

- MNIST and Fashion-MNIST: the four IDX files ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
  ``t10k-labels-idx1-ubyte``, each plain or gzip-compressed (``.gz``), read by
  `load_mnist` and `read_idx`.
- CIFAR-10: the "python version", a folder ``cifar-10-batches-py`` containing the
  pickled batches ``data_batch_1`` to ``data_batch_5`` and ``test_batch``, read
  by `load_cifar10` and `read_cifar_batch`. The pickles are loaded with an
  unpickler that resolves only the numpy names an array needs, so a crafted
  file cannot run code.

Images are returned as uint8 arrays of shape (n, height, width) for the
one-channel sets and (n, height, width, channels) for CIFAR-10; labels are
int64. `LocalDataset.to_float` converts the images to float32.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
import pickle
import re
import reprlib
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

MnistKind = Literal["mnist", "fashion_mnist"]
"""Name of an IDX data set that `load_mnist` reads."""

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""Standard file names of MNIST and Fashion-MNIST, each optionally ending in .gz."""

MNIST_SUBFOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": ("MNIST/raw", "mnist"),
    "fashion_mnist": ("FashionMNIST/raw", "fashion_mnist"),
}
"""Folders below ``root`` that `load_mnist` searches after ``root`` itself.

``MNIST/raw`` and ``FashionMNIST/raw`` are where torchvision stores the files.
"""

CIFAR10_FOLDER = "cifar-10-batches-py"
"""Folder that the CIFAR-10 python-version archive extracts to."""

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"

N_CLASSES = 10
"""Number of classes of each of the three data sets."""

_STATISTICS_CHUNK = 1 << 20
"""Pixels per np.bincount call in `LocalDataset.channel_statistics`."""

_MNIST_IMAGE_SHAPE = (28, 28)
_CIFAR10_IMAGE_SHAPE = (32, 32, 3)

# IDX data type codes, the third byte of the magic number. All values are big-endian.
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

# Exceptions that pickle.Unpickler.load raises on malformed input. Python's pickle
# documentation names UnpicklingError, AttributeError, EOFError, ImportError and
# IndexError, "but not necessarily limited to" them; the rest were added for
# malformed opcodes and arguments. MemoryError comes from a corrupt length or
# shape field that declares an object far larger than the file, such as a
# BYTEARRAY8 opcode whose length the unpickler allocates before reading.
_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
    OverflowError,
    struct.error,
    MemoryError,
)


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a data set's folder or one of its files is missing.

    Attributes
    ----------
    searched : tuple of Path
        Folders or files that were looked at, in search order.
    expected : tuple of str
        File names that were expected in one of ``searched``.
    """

    def __init__(
        self, message: str, *, searched: Sequence[Path], expected: Sequence[str]
    ) -> None:
        super().__init__(message)
        self.searched = tuple(searched)
        self.expected = tuple(expected)


class DatasetFormatError(ValueError):
    """Raised when a data set file exists but its content is invalid.

    Attributes
    ----------
    path : Path
        The file that failed to parse or validate.
    """

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


@dataclass(frozen=True, eq=False)
class LocalDataset:
    """Train and test split of an image classification data set read from disk.

    Images are uint8 with shape (n, height, width) for one channel or
    (n, height, width, channels); labels are int64 in ``range(n_classes)``.
    Construction validates shapes, dtypes and labels and raises ValueError.
    ``eq=False`` because element-wise numpy comparison has no single truth value.
    """

    x_train: npt.NDArray[np.uint8]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.uint8]
    y_test: npt.NDArray[np.int64]
    name: str
    n_classes: int
    source: Path | None = None
    """Folder the files were read from, for provenance; None if built in memory."""

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ValueError(
                f"n_classes = {self.n_classes}; a classification data set needs"
                " at least 2 classes"
            )
        for split in ("train", "test"):
            _validate_split(
                split,
                getattr(self, f"x_{split}"),
                getattr(self, f"y_{split}"),
                self.n_classes,
            )
        if len(self.y_train) == 0:
            raise ValueError(
                f"{self.name} has no training examples; the training split must"
                " contain at least one image"
            )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"training images have shape {self.x_train.shape[1:]} but test images"
                f" have shape {self.x_test.shape[1:]}; both splits must match"
            )

    @property
    def n_channels(self) -> int:
        """Number of channels: the last axis of 4-D images, 1 for 3-D images."""
        return int(self.x_train.shape[3]) if self.x_train.ndim == 4 else 1

    def channel_statistics(
        self,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Compute the per-channel mean and standard deviation of the training images.

        Both are on the [0, 1] scale of ``to_float(normalize=False)``, taken
        over every pixel of every training image. The standard deviation is the
        population one (ddof=0). They are computed exactly from a 256-bin
        histogram of each channel, counted in chunks of ``_STATISTICS_CHUNK``
        pixels so that temporary memory stays near 8 MiB.

        Returns
        -------
        mean, std : ndarray of float64, shape (n_channels,)
        """
        pixels = self.x_train.reshape(-1, self.n_channels)
        levels = np.arange(256, dtype=np.float64) / 255.0
        means = np.empty(self.n_channels)
        stds = np.empty(self.n_channels)
        for channel in range(self.n_channels):
            counts = np.zeros(256, dtype=np.int64)
            for start in range(0, len(pixels), _STATISTICS_CHUNK):
                chunk = pixels[start : start + _STATISTICS_CHUNK, channel]
                # bincount converts its input to intp, 8 bytes per pixel.
                counts += np.bincount(chunk, minlength=256)
            total = counts.sum()
            means[channel] = counts @ levels / total
            stds[channel] = math.sqrt(counts @ (levels - means[channel]) ** 2 / total)
        return means, stds

    def to_float(
        self, normalize: bool = True
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Convert the training and test images to float32.

        Pixels are divided by 255, giving values in [0, 1]. With ``normalize``,
        each channel is then standardized with the training set's statistics
        from `channel_statistics`: subtract the training mean and divide by the
        training standard deviation. The test images use the same training
        statistics, so nothing about the test set leaks into the inputs. A
        channel whose training standard deviation is 0 is only centered.

        Parameters
        ----------
        normalize : bool
            Standardize each channel after scaling to [0, 1].

        Returns
        -------
        x_train, x_test : ndarray of float32
            Same shapes as ``self.x_train`` and ``self.x_test``.
        """
        x_train = self.x_train.astype(np.float32)
        x_test = self.x_test.astype(np.float32)
        x_train /= 255.0
        x_test /= 255.0
        if not normalize:
            return x_train, x_test

        mean, std = self.channel_statistics()
        scale = np.where(std > 0.0, std, 1.0)
        # Per-channel values broadcast over the last axis: the channel axis of
        # 4-D images, and a single value for 3-D images.
        for images in (x_train, x_test):
            images -= mean.astype(np.float32)
            images /= scale.astype(np.float32)
        return x_train, x_test


def _validate_split(split: str, images: object, labels: object, n_classes: int) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ValueError(
            f"x_{split} must be a uint8 numpy array, got {_describe(images)}"
        )
    if images.ndim not in (3, 4):
        raise ValueError(
            f"x_{split} has shape {images.shape}; expected (n, height, width) or"
            " (n, height, width, channels)"
        )
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64:
        raise ValueError(
            f"y_{split} must be an int64 numpy array, got {_describe(labels)}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"y_{split} has shape {labels.shape} but x_{split} contains {len(images)}"
            f" images; expected shape ({len(images)},)"
        )
    bad = _first_label_outside(labels, n_classes)
    if bad is not None:
        raise ValueError(
            f"y_{split}[{bad}] = {labels[bad]} is outside 0..{n_classes - 1}"
        )


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    return f"a {type(value).__name__}"


def _first_label_outside(labels: npt.NDArray[Any], n_classes: int) -> int | None:
    """Return the index of the first label outside 0..n_classes-1, or None."""
    outside = np.flatnonzero((labels < 0) | (labels >= n_classes))
    return int(outside[0]) if outside.size else None


# IDX (MNIST, Fashion-MNIST)


def read_idx(path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    """Read an IDX file, plain or gzip-compressed, into a numpy array.

    The IDX format starts with a 4-byte magic number: two zero bytes, a data
    type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64) and the number of dimensions d. Then come d big-endian
    uint32 sizes and the values in row-major order, big-endian. A file is
    decompressed when it starts with the gzip magic bytes, whatever its name.

    Parameters
    ----------
    path : str or os.PathLike
        The IDX file.

    Returns
    -------
    ndarray
        Array of the declared shape, in native byte order, writable.

    Raises
    ------
    DatasetNotFoundError
        If ``path`` does not exist.
    DatasetFormatError
        If the gzip stream is corrupt, the magic number is invalid, or the
        file length differs from what the header declares.
    """
    path = Path(path)
    payload = _read_idx_payload(path)

    if len(payload) < 4:
        raise DatasetFormatError(
            path,
            f"file is {len(payload)} bytes long, shorter than the 4-byte IDX magic"
            " number; the file is truncated or empty",
        )
    type_code, n_dims = payload[2], payload[3]
    if payload[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES:
        codes = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise DatasetFormatError(
            path,
            f"invalid IDX magic number 0x{payload[:4].hex().upper()}: expected two"
            f" zero bytes, a data type code ({codes}) and the number of dimensions;"
            " this is not an IDX file such as train-images-idx3-ubyte",
        )

    header_size = 4 + 4 * n_dims
    if len(payload) < header_size:
        raise DatasetFormatError(
            path,
            f"truncated header: the magic number declares {n_dims} dimensions, which"
            f" need a {header_size}-byte header, but the file has {len(payload)}"
            " bytes",
        )
    shape = struct.unpack(f">{n_dims}I", payload[4:header_size])
    dtype = _IDX_DTYPES[type_code]
    n_values = math.prod(shape)
    expected_size = header_size + n_values * dtype.itemsize
    if len(payload) < expected_size:
        raise DatasetFormatError(
            path,
            f"truncated: the header declares shape {shape} of {dtype.name}, which"
            f" needs {expected_size} bytes, but the file has {len(payload)} bytes;"
            " the file is incomplete, so obtain it again",
        )
    if len(payload) > expected_size:
        raise DatasetFormatError(
            path,
            f"{len(payload) - expected_size} bytes follow the data: the header"
            f" declares shape {shape} of {dtype.name}, which needs {expected_size}"
            f" bytes, but the file has {len(payload)}; the header is corrupt",
        )

    values = np.frombuffer(payload, dtype=dtype, count=n_values, offset=header_size)
    # astype copies, so the result is writable and in native byte order.
    return values.reshape(shape).astype(dtype.newbyteorder("="))


def _read_idx_payload(path: Path) -> bytes:
    """Return the file's bytes, decompressed if they start with the gzip magic."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(
            f"IDX file {path} not found", searched=[path], expected=[path.name]
        ) from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DatasetFormatError(
            path,
            f"corrupt gzip stream ({error}); the file is incomplete or damaged, so"
            " obtain it again",
        ) from error


def load_mnist(root: str | os.PathLike[str], kind: MnistKind = "mnist") -> LocalDataset:
    """Read MNIST or Fashion-MNIST from the four standard IDX files under ``root``.

    The files are searched for in these folders, in order, and the first folder
    that contains all four is used:

    - ``root`` itself;
    - ``root/MNIST/raw`` then ``root/mnist`` for ``kind="mnist"``;
    - ``root/FashionMNIST/raw`` then ``root/fashion_mnist`` for
      ``kind="fashion_mnist"``.

    Each file may be plain (``train-images-idx3-ubyte``) or gzip-compressed
    (``train-images-idx3-ubyte.gz``); where both exist, the plain one is read.
    Both data sets use the same file names, so the files cannot show which one
    they are, and ``kind`` must name it.

    Parameters
    ----------
    root : str or os.PathLike
        Folder the user placed the files in.
    kind : {"mnist", "fashion_mnist"}
        Which data set the files are; it sets the name and the subfolders searched.

    Returns
    -------
    LocalDataset
        uint8 images of shape (n, 28, 28) and int64 labels in 0..9.

    Raises
    ------
    DatasetNotFoundError
        If no searched folder contains all four files. The message lists every
        folder searched, what each one lacks, and the expected file names.
    DatasetFormatError
        If a file is not valid IDX, images are not 28 x 28 uint8, the image and
        label counts of a split differ, or a label is outside 0..9.
    ValueError
        If ``kind`` is not one of the two names.
    """
    if kind not in get_args(MnistKind):
        raise ValueError(
            f"kind = {kind!r} is not a known IDX data set; use 'mnist' or"
            " 'fashion_mnist'"
        )
    root = Path(root)
    folders = [root, *(root / sub for sub in MNIST_SUBFOLDERS[kind])]
    folder, files = _find_folder(
        kind, folders, MNIST_FILES, _resolve_mnist_file, _mnist_hint(root, kind)
    )

    x_train, y_train = _read_mnist_split(files[0], files[1])
    x_test, y_test = _read_mnist_split(files[2], files[3])
    logger.info(
        "read %s from %s: %d training and %d test images",
        kind,
        folder,
        len(y_train),
        len(y_test),
    )
    return LocalDataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        name=kind,
        n_classes=N_CLASSES,
        source=folder,
    )


def _resolve_mnist_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _mnist_hint(root: Path, kind: str) -> str:
    return (
        f"Download the four files (gzip-compressed or not) from the {kind} data"
        f" set's official page and place them in {root / MNIST_SUBFOLDERS[kind][0]}"
        f" or directly in {root}; nothing is downloaded at run time."
    )


def _read_mnist_split(
    images_path: Path, labels_path: Path
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)

    if images.dtype != np.uint8 or images.shape[1:] != _MNIST_IMAGE_SHAPE:
        raise DatasetFormatError(
            images_path,
            f"contains {images.dtype.name} values of shape {images.shape}; MNIST and"
            " Fashion-MNIST images are uint8 of shape (n, 28, 28)",
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetFormatError(
            labels_path,
            f"contains {labels.dtype.name} values of shape {labels.shape}; MNIST and"
            " Fashion-MNIST labels are uint8 of shape (n,)",
        )
    if len(images) != len(labels):
        raise DatasetFormatError(
            labels_path,
            f"contains {len(labels)} labels but {images_path.name} contains"
            f" {len(images)} images; the two files must come from the same split"
            " of the same data set",
        )
    bad = _first_label_outside(labels, N_CLASSES)
    if bad is not None:
        raise DatasetFormatError(
            labels_path, f"label {bad} is {labels[bad]}, outside 0..{N_CLASSES - 1}"
        )
    return images, labels.astype(np.int64)


# CIFAR-10 python version


# Numeric dtypes a pickled array may have: byte order, kind, size in bytes.
_PICKLED_DTYPE = re.compile(r"[<>|=]?(?:[ui][1248]|f[248])")


def _ndarray_stand_in(*args: object) -> NoReturn:
    """Stand in for numpy.ndarray, valid only as the class passed to _reconstruct."""
    raise pickle.UnpicklingError(
        "the pickle calls numpy.ndarray directly; a CIFAR-10 batch creates arrays"
        " only through numpy.core.multiarray._reconstruct"
    )


class _PickledDtype:
    """Stand-in for numpy.dtype that checks the pickled state before use.

    numpy's own dtype ``__setstate__`` accepts flag values that mark uint8 as
    containing object references, after which numpy 2.4.6 raised SystemError
    while building the array. So the state is validated here, and `to_dtype`
    builds a fresh dtype from the format string and byte order only.
    """

    def __init__(self, spec: object, *flags: object) -> None:
        text = spec.decode("latin-1") if isinstance(spec, bytes) else spec
        if not isinstance(text, str) or not _PICKLED_DTYPE.fullmatch(text):
            raise pickle.UnpicklingError(
                f"the pickle requests numpy dtype {reprlib.repr(text)}; only"
                " unsigned, signed and float numbers of 1, 2, 4 or 8 bytes are"
                " allowed"
            )
        self.spec = text
        self.byteorder = "="

    def __setstate__(self, state: object) -> None:
        byteorder = _dtype_byteorder(state)
        if byteorder is None:
            raise pickle.UnpicklingError(
                f"the pickle sets numpy dtype state {reprlib.repr(state)}; a plain"
                " number type has (3, byteorder, None, None, None, -1, -1, 0)"
            )
        self.byteorder = byteorder

    def to_dtype(self) -> np.dtype[Any]:
        dtype = np.dtype(self.spec)
        if self.byteorder == "<":
            return dtype.newbyteorder("<")
        if self.byteorder == ">":
            return dtype.newbyteorder(">")
        return dtype


def _dtype_byteorder(state: object) -> str | None:
    """Return the byte order of a plain number type's dtype state, else None."""
    # numpy writes (3, byteorder, None, None, None, -1, -1, 0) for a plain number
    # type; version 4 appends the metadata, which is None here.
    if not isinstance(state, tuple) or len(state) not in (8, 9):
        return None
    if state[0] not in (3, 4) or state[2:8] != (None, None, None, -1, -1, 0):
        return None
    if state[8:] not in ((), (None,)):
        return None
    byteorder = state[1]
    if isinstance(byteorder, bytes):
        byteorder = byteorder.decode("latin-1")
    return byteorder if byteorder in ("|", "<", ">", "=") else None


class _PickledArray:
    """Stand-in for a pickled ndarray; `to_array` rebuilds it with np.frombuffer."""

    def __init__(self) -> None:
        self.state: tuple[tuple[int, ...], _PickledDtype, bool, bytes] | None = None

    def __setstate__(self, state: object) -> None:
        # numpy writes (1, shape, dtype, is_fortran, raw bytes) for numeric arrays.
        if not (
            isinstance(state, tuple)
            and len(state) == 5
            and state[0] == 1
            and isinstance(state[1], tuple)
            and all(isinstance(size, int) and size >= 0 for size in state[1])
            and isinstance(state[2], _PickledDtype)
            and isinstance(state[3], int)
            and isinstance(state[4], bytes)
        ):
            raise pickle.UnpicklingError(
                "the pickle sets an array state that is not (1, shape, dtype,"
                " is_fortran, raw bytes) of a numeric array"
            )
        self.state = (state[1], state[2], bool(state[3]), state[4])

    def to_array(self, path: Path) -> npt.NDArray[Any]:
        if self.state is None:
            raise DatasetFormatError(path, "the pickle contains an array with no data")
        shape, pickled_dtype, is_fortran, raw = self.state
        dtype = pickled_dtype.to_dtype()
        expected = math.prod(shape) * dtype.itemsize
        if len(raw) != expected:
            raise DatasetFormatError(
                path,
                f"a pickled array of shape {shape} and dtype {dtype.name} needs"
                f" {expected} bytes of data but has {len(raw)}",
            )
        values = np.frombuffer(raw, dtype=dtype).reshape(
            shape, order="F" if is_fortran else "C"
        )
        # astype copies, so the result is writable and in native byte order.
        return values.astype(dtype.newbyteorder("="))


def _reconstruct_array(
    array_type: object, shape: object, typecode: object
) -> _PickledArray:
    """Stand in for numpy's _reconstruct, which starts an empty array."""
    if array_type is not _ndarray_stand_in:
        raise pickle.UnpicklingError(
            f"the pickle calls _reconstruct on {reprlib.repr(array_type)}; only"
            " numpy.ndarray is allowed"
        )
    return _PickledArray()


# The only globals a CIFAR-10 batch may name. The official batches were written
# by numpy 1.x, which pickles an array as numpy.core.multiarray._reconstruct
# applied to numpy.ndarray, with a numpy.dtype. Everything else in a batch (dict,
# list, bytes, int) needs no global. numpy 2 writes the same function as
# numpy._core.multiarray._reconstruct, so both spellings are allowed. Each name
# maps to a stand-in above, so numpy never unpickles anything from the file and
# no module the pickle names is imported.
_ALLOWED_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_array,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_array,
    ("numpy", "ndarray"): _ndarray_stand_in,
    ("numpy", "dtype"): _PickledDtype,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in ``_ALLOWED_PICKLE_GLOBALS``.

    Every way a pickle can call or build an object of some class goes through
    `find_class`, so rejecting all other names there stops a crafted file from
    running code such as ``os.system``.
    """

    def find_class(self, module_name: str, global_name: str, /) -> Any:
        allowed = _ALLOWED_PICKLE_GLOBALS.get((module_name, global_name))
        if allowed is None:
            names = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_PICKLE_GLOBALS)
            raise pickle.UnpicklingError(
                f"the pickle refers to {module_name}.{global_name}, which is not"
                f" allowed; a CIFAR-10 batch may refer only to {names}"
            )
        return allowed


def read_cifar_batch(
    path: str | os.PathLike[str],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Read one pickled batch of the CIFAR-10 python version.

    A batch is a dict with ``b"data"``, a uint8 array of shape (n, 3072) whose
    rows contain the red, green and blue 32 x 32 planes one after another, and
    ``b"labels"``, a list of n ints in 0..9. Its other keys are ignored. String
    keys are accepted as well, for batches re-saved under Python 3. The pickle
    is loaded with an unpickler that resolves only the numpy names an array
    needs, so a crafted file cannot run code.

    Parameters
    ----------
    path : str or os.PathLike
        The batch file, such as ``cifar-10-batches-py/data_batch_1``.

    Returns
    -------
    images : ndarray of uint8, shape (n, 32, 32, 3)
        Height, width, then red, green and blue channels.
    labels : ndarray of int64, shape (n,)

    Raises
    ------
    DatasetNotFoundError
        If ``path`` does not exist.
    DatasetFormatError
        If the pickle is malformed, names a global other than the allowed
        numpy ones, or does not hold valid ``data`` and ``labels``.
    """
    path = Path(path)
    batch = _unpickle_batch(path)
    data = _batch_entry(path, batch, "data")
    labels = _batch_entry(path, batch, "labels")

    n_values = math.prod(_CIFAR10_IMAGE_SHAPE)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise DatasetFormatError(
            path, f"data is {_describe(data)}; expected a uint8 numpy array"
        )
    if data.ndim != 2 or data.shape[1] != n_values:
        raise DatasetFormatError(
            path, f"data has shape {data.shape}; expected (n, {n_values})"
        )
    label_array = _batch_labels(path, labels)
    if len(label_array) != len(data):
        raise DatasetFormatError(
            path,
            f"contains {len(data)} images but {len(label_array)} labels; each row of"
            " data needs one label",
        )

    # Rows are channel-major (3 planes of 32 x 32, row-major); move channels last.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), label_array


def _unpickle_batch(path: Path) -> dict[str, object]:
    try:
        # Unpickling from memory, not from the open file, because a corrupt
        # length field then fails as truncated data instead of making the file
        # object allocate the declared size up front.
        content = io.BytesIO(path.read_bytes())
        # encoding="bytes" keeps the Python 2 strings of the official files
        # (keys, file names, raw array data) as bytes.
        loaded = _BatchUnpickler(content, encoding="bytes").load()
    except FileNotFoundError:
        raise DatasetNotFoundError(
            f"CIFAR-10 batch {path} not found", searched=[path], expected=[path.name]
        ) from None
    except _PICKLE_ERRORS as error:
        raise DatasetFormatError(
            path,
            f"not a valid CIFAR-10 batch: {error}; replace it with the file from"
            " the official CIFAR-10 python version",
        ) from error
    if not isinstance(loaded, dict):
        raise DatasetFormatError(
            path,
            f"the pickle contains a {type(loaded).__name__}; a CIFAR-10 batch is a"
            " dict",
        )
    batch: dict[str, object] = {}
    for key, value in loaded.items():
        if isinstance(value, _PickledArray):
            value = value.to_array(path)
        batch[_key_text(key)] = value
    return batch


def _key_text(key: object) -> str:
    if isinstance(key, bytes):
        return key.decode("latin-1")
    return str(key)


def _batch_entry(path: Path, batch: dict[str, object], key: str) -> object:
    if key in batch:
        return batch[key]
    hint = ""
    if "fine_labels" in batch:
        hint = (
            "; it contains fine_labels, so it looks like CIFAR-100, which is not"
            " supported"
        )
    raise DatasetFormatError(
        path,
        f"missing key {key!r}; a CIFAR-10 batch has keys data and labels, but this"
        f" one has {sorted(batch)}{hint}",
    )


def _batch_labels(path: Path, labels: object) -> npt.NDArray[np.int64]:
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        values: list[int] = labels.ravel().tolist()
    elif isinstance(labels, list) and all(
        isinstance(label, int) and not isinstance(label, bool) for label in labels
    ):
        values = labels
    else:
        raise DatasetFormatError(
            path, f"labels is {_describe(labels)}; expected a list of ints"
        )
    for index, label in enumerate(values):
        if not 0 <= label < N_CLASSES:
            raise DatasetFormatError(
                path, f"label {index} is {label}, outside 0..{N_CLASSES - 1}"
            )
    return np.array(values, dtype=np.int64)


def load_cifar10(root: str | os.PathLike[str]) -> LocalDataset:
    """Read CIFAR-10 from the extracted python version under ``root``.

    The six batches ``data_batch_1`` to ``data_batch_5`` and ``test_batch`` are
    searched for in ``root/cifar-10-batches-py`` and then in ``root`` itself. The
    first folder that contains all six is used. The training split concatenates the
    five data batches in order. Batches are read with `read_cifar_batch`, which
    cannot run code from a crafted pickle.

    Parameters
    ----------
    root : str or os.PathLike
        Folder the archive was extracted into, or the ``cifar-10-batches-py``
        folder itself.

    Returns
    -------
    LocalDataset
        uint8 images of shape (n, 32, 32, 3), channels last in the order red,
        green, blue, and int64 labels in 0..9. ``np.moveaxis(x, -1, 1)`` gives
        the (n, 3, 32, 32) layout of torch convolutions.

    Raises
    ------
    DatasetNotFoundError
        If no searched folder contains all six batches. The message lists every
        folder searched, what each one lacks, and the expected file names.
    DatasetFormatError
        If a batch is not a valid CIFAR-10 batch (see `read_cifar_batch`).
    """
    root = Path(root)
    expected = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
    hint = (
        "Extract the CIFAR-10 python version (cifar-10-python.tar.gz, from the data"
        f" set's official page) into {root}, which creates"
        f" {root / CIFAR10_FOLDER}; nothing is downloaded at run time."
    )
    folder, files = _find_folder(
        "cifar10", [root / CIFAR10_FOLDER, root], expected, _resolve_plain_file, hint
    )

    train = [read_cifar_batch(path) for path in files[:-1]]
    x_test, y_test = read_cifar_batch(files[-1])
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    logger.info(
        "read cifar10 from %s: %d training and %d test images",
        folder,
        len(y_train),
        len(y_test),
    )
    return LocalDataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        name="cifar10",
        n_classes=N_CLASSES,
        source=folder,
    )


def _resolve_plain_file(folder: Path, name: str) -> Path | None:
    path = folder / name
    return path if path.is_file() else None


# Folder search shared by the loaders


def _find_folder(
    dataset: str,
    folders: Sequence[Path],
    names: Sequence[str],
    resolve: Callable[[Path, str], Path | None],
    hint: str,
) -> tuple[Path, list[Path]]:
    """Return the first folder where ``resolve`` finds every name, with the files.

    Raises DatasetNotFoundError listing each folder and what it lacks otherwise.
    """
    reports = []
    for folder in folders:
        if folder.is_file():
            reports.append(f"{folder} (a file, not a folder)")
            continue
        if not folder.is_dir():
            reports.append(f"{folder} (does not exist)")
            continue
        found = {name: resolve(folder, name) for name in names}
        missing = [name for name, path in found.items() if path is None]
        if not missing:
            return folder, [path for path in found.values() if path is not None]
        reports.append(f"{folder} (missing {', '.join(missing)})")

    raise DatasetNotFoundError(
        f"{dataset} files not found. Searched: {'; '.join(reports)}. Expected all of"
        f" {', '.join(names)} in one of those folders. {hint}",
        searched=folders,
        expected=names,
    )
