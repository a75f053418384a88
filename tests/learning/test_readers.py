"""Local readers for MNIST, Fashion-MNIST and CIFAR-10, on tiny files written here."""

from __future__ import annotations

import gzip
import os
import pickle
import pickletools
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from learning import readers
from learning.readers import (
    CIFAR10_FOLDER,
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
    MNIST_FILES,
    DatasetFormatError,
    DatasetNotFoundError,
    LocalDataset,
    load_cifar10,
    load_mnist,
    read_cifar_batch,
    read_idx,
)

IDX_TYPE_CODES = {
    "u1": 0x08,
    "i1": 0x09,
    "i2": 0x0B,
    "i4": 0x0C,
    "f4": 0x0D,
    "f8": 0x0E,
}


# Writers of the on-disk formats


def idx_bytes(array: npt.NDArray[Any]) -> bytes:
    """Encode an array as IDX: magic number, uint32 sizes, then the values.

    Sizes and values are big-endian.
    """
    code = IDX_TYPE_CODES[array.dtype.kind + str(array.dtype.itemsize)]
    header = bytes([0, 0, code, array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: npt.NDArray[Any], *, compress: bool) -> Path:
    content = idx_bytes(array)
    if compress:
        path = path.with_name(path.name + ".gz")
        content = gzip.compress(content)
    path.write_bytes(content)
    return path


def mnist_arrays(
    n_train: int = 5, n_test: int = 3, seed: int = 0
) -> dict[str, npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(seed)
    sizes = (n_train, n_train, n_test, n_test)
    arrays = {}
    for name, n in zip(MNIST_FILES, sizes, strict=True):
        if "images" in name:
            arrays[name] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        else:
            arrays[name] = rng.integers(0, 10, n, dtype=np.uint8)
    return arrays


def write_mnist(
    folder: Path,
    arrays: dict[str, npt.NDArray[Any]],
    *,
    compress: tuple[bool, ...] = (False, True, False, True),
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for (name, array), gz in zip(arrays.items(), compress, strict=True):
        write_idx(folder / name, array, compress=gz)


def py2_string(data: bytes) -> bytes:
    """Encode a Python 2 str as pickle protocol 2 does (SHORT_BINSTRING, BINSTRING)."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<I", len(data)) + data


def py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    return b"J" + struct.pack("<i", value)


def py2_uint8_matrix(array: npt.NDArray[np.uint8]) -> bytes:
    """Encode a 2-D uint8 array as numpy 1.x did under Python 2, protocol 2."""
    rows, columns = array.shape
    dtype = (
        b"cnumpy\ndtype\n"
        + py2_string(b"u1")
        + py2_int(0)
        + py2_int(1)
        + b"\x87R"  # TUPLE3, REDUCE: numpy.dtype("u1", 0, 1)
        + b"("  # MARK of the dtype state (3, "|", None, None, None, -1, -1, 0)
        + py2_int(3)
        + py2_string(b"|")
        + b"NNN"
        + py2_int(-1)
        + py2_int(-1)
        + py2_int(0)
        + b"tb"  # TUPLE, BUILD
    )
    return (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + py2_int(0)
        + b"\x85"  # TUPLE1: shape (0,)
        + py2_string(b"b")
        + b"\x87R"  # _reconstruct(ndarray, (0,), "b")
        + b"("  # MARK of the array state (1, shape, dtype, is_fortran, raw data)
        + py2_int(1)
        + py2_int(rows)
        + py2_int(columns)
        + b"\x86"  # TUPLE2: shape
        + dtype
        + b"\x89"  # NEWFALSE: C order
        + py2_string(array.tobytes())
        + b"tb"
    )


def official_style_batch(
    data: npt.NDArray[np.uint8], labels: list[int], batch_label: bytes
) -> bytes:
    """Build a CIFAR-10 batch pickle with the opcodes of the official files.

    The official batches were written by Python 2's cPickle with numpy 1.x:
    strings are Python 2 str (read as bytes), and the array is rebuilt through
    numpy.core.multiarray._reconstruct, numpy.ndarray and numpy.dtype.
    """
    label_list = b"](" + b"".join(py2_int(label) for label in labels) + b"e"
    filenames = b"](" + b"".join(py2_string(b"x%d.png" % i) for i in labels) + b"e"
    entries = (
        py2_string(b"batch_label")
        + py2_string(batch_label)
        + py2_string(b"labels")
        + label_list
        + py2_string(b"data")
        + py2_uint8_matrix(data)
        + py2_string(b"filenames")
        + filenames
    )
    return b"\x80\x02}(" + entries + b"u."


def cifar_batch_arrays(n: int, seed: int) -> tuple[npt.NDArray[np.uint8], list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(label) for label in rng.integers(0, 10, n)]
    return data, labels


def write_cifar(folder: Path, n_per_batch: int = 2) -> dict[str, Any]:
    """Write the six official-style batches; return their data and labels by name."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    names = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
    for seed, name in enumerate(names):
        data, labels = cifar_batch_arrays(n_per_batch, seed)
        (folder / name).write_bytes(official_style_batch(data, labels, name.encode()))
        written[name] = (data, labels)
    return written


class RunsShell:
    """Object whose pickle calls os.system when loaded by a plain unpickler."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


# read_idx


def test_read_idx_plain_and_gzip(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    plain = write_idx(tmp_path / "plain-idx3-ubyte", array, compress=False)
    compressed = write_idx(tmp_path / "packed-idx3-ubyte", array, compress=True)
    assert compressed.name.endswith(".gz")
    np.testing.assert_array_equal(read_idx(plain), array)
    np.testing.assert_array_equal(read_idx(compressed), array)


def test_read_idx_decodes_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "values-idx1-int"
    path.write_bytes(
        bytes([0, 0, 0x0C, 1])
        + struct.pack(">I", 2)
        + b"\x01\x02\x03\x04\xff\xff\xff\xfe"
    )
    values = read_idx(path)
    assert values.dtype == np.dtype("=i4")
    assert values.tolist() == [0x01020304, -2]


def test_read_idx_result_is_native_and_writable(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "f", np.array([1.5, -2.0]), compress=True)
    values = read_idx(path)
    assert values.dtype.isnative
    assert values.flags.writeable
    values[0] = 0.0


def test_read_idx_sniffs_gzip_not_suffix(tmp_path: Path) -> None:
    array = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    misnamed = tmp_path / "plain-but-named.gz"
    misnamed.write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(read_idx(misnamed), array)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(["u1", "i1", ">i2", "<i4", "f4", "f8"]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
        elements={"allow_nan": False},
    ),
    compress=st.booleans(),
)
def test_read_idx_round_trip(
    tmp_path: Path, array: npt.NDArray[Any], compress: bool
) -> None:
    path = write_idx(tmp_path / "round-trip", array, compress=compress)
    result = read_idx(path)
    assert result.shape == array.shape
    assert result.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize(
    "magic",
    [
        b"\x00\x01\x08\x03",
        b"\x08\x00\x00\x03",
        b"\x00\x00\x07\x03",
        b"\x00\x00\x0a\x01",
    ],
)
def test_read_idx_invalid_magic(tmp_path: Path, magic: bytes) -> None:
    path = tmp_path / "bad-magic"
    path.write_bytes(magic + struct.pack(">III", 1, 1, 1) + b"\x00")
    with pytest.raises(DatasetFormatError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert str(path) in message
    assert "magic number" in message
    assert f"0x{magic.hex().upper()}" in message
    assert caught.value.path == path


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_truncated_data(tmp_path: Path, compress: bool) -> None:
    content = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))[:-10]
    path = tmp_path / "cut-idx3-ubyte"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DatasetFormatError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert str(path) in message
    assert "truncated" in message
    assert "(3, 28, 28)" in message
    assert f"{len(content)} bytes" in message


def test_read_idx_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short-header"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 5))
    with pytest.raises(DatasetFormatError, match="truncated header"):
        read_idx(path)


@pytest.mark.parametrize("content", [b"", b"\x00\x00"])
def test_read_idx_shorter_than_magic(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tiny"
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError, match="shorter than the 4-byte"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\x00\x00")
    with pytest.raises(DatasetFormatError, match="2 bytes follow the data"):
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DatasetFormatError) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)
    assert "corrupt gzip stream" in str(caught.value)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent-idx1-ubyte"
    with pytest.raises(DatasetNotFoundError) as caught:
        read_idx(path)
    assert isinstance(caught.value, FileNotFoundError)
    assert str(path) in str(caught.value)
    assert caught.value.searched == (path,)


# load_mnist


def test_load_mnist_mixed_plain_and_gzip(tmp_path: Path) -> None:
    arrays = mnist_arrays()
    write_mnist(tmp_path, arrays)
    data = load_mnist(tmp_path)
    assert data.name == "mnist"
    assert data.n_classes == 10
    assert data.source == tmp_path
    assert data.x_train.dtype == np.uint8
    assert data.y_train.dtype == np.int64
    assert data.x_train.shape == (5, 28, 28)
    assert data.x_test.shape == (3, 28, 28)
    np.testing.assert_array_equal(data.x_train, arrays[MNIST_FILES[0]])
    np.testing.assert_array_equal(data.y_train, arrays[MNIST_FILES[1]])
    np.testing.assert_array_equal(data.x_test, arrays[MNIST_FILES[2]])
    np.testing.assert_array_equal(data.y_test, arrays[MNIST_FILES[3]])


@pytest.mark.parametrize(
    ("kind", "subfolder"),
    [
        ("mnist", "MNIST/raw"),
        ("mnist", "mnist"),
        ("fashion_mnist", "FashionMNIST/raw"),
        ("fashion_mnist", "fashion_mnist"),
    ],
)
def test_load_mnist_finds_subfolder(tmp_path: Path, kind: str, subfolder: str) -> None:
    arrays = mnist_arrays()
    write_mnist(tmp_path / subfolder, arrays, compress=(True,) * 4)
    data = load_mnist(tmp_path, kind=kind)  # type: ignore[arg-type]
    assert data.name == kind
    assert data.source == tmp_path / subfolder
    np.testing.assert_array_equal(data.y_test, arrays[MNIST_FILES[3]])


def test_load_mnist_ignores_other_kind_folder(tmp_path: Path) -> None:
    write_mnist(tmp_path / "MNIST" / "raw", mnist_arrays())
    with pytest.raises(DatasetNotFoundError):
        load_mnist(tmp_path, kind="fashion_mnist")


def test_load_mnist_root_before_subfolder(tmp_path: Path) -> None:
    write_mnist(tmp_path, mnist_arrays(n_train=4))
    write_mnist(tmp_path / "MNIST" / "raw", mnist_arrays(n_train=6))
    data = load_mnist(tmp_path)
    assert data.source == tmp_path
    assert len(data.y_train) == 4


def test_load_mnist_prefers_plain_over_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path, mnist_arrays(seed=1), compress=(True,) * 4)
    plain = mnist_arrays(seed=2)
    write_mnist(tmp_path, plain, compress=(False,) * 4)
    data = load_mnist(tmp_path)
    np.testing.assert_array_equal(data.x_train, plain[MNIST_FILES[0]])


def test_load_mnist_missing_file_message(tmp_path: Path) -> None:
    write_mnist(tmp_path, mnist_arrays())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_mnist(tmp_path)
    error = caught.value
    message = str(error)
    assert isinstance(error, FileNotFoundError)
    searched = [tmp_path, tmp_path / "MNIST" / "raw", tmp_path / "mnist"]
    assert list(error.searched) == searched
    for folder in searched:
        assert str(folder) in message
    assert f"{tmp_path} (missing t10k-labels-idx1-ubyte)" in message
    assert "does not exist" in message
    for name in MNIST_FILES:
        assert name in message
    assert error.expected == MNIST_FILES
    assert "nothing is downloaded at run time" in message
    assert "http" not in message


def test_load_mnist_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as caught:
        load_mnist(root, kind="fashion_mnist")
    assert f"{root} (does not exist)" in str(caught.value)
    assert str(root / "FashionMNIST" / "raw") in str(caught.value)


def test_load_mnist_count_mismatch(tmp_path: Path) -> None:
    arrays = mnist_arrays(n_train=5)
    arrays[MNIST_FILES[1]] = arrays[MNIST_FILES[1]][:4]
    write_mnist(tmp_path, arrays, compress=(False,) * 4)
    with pytest.raises(DatasetFormatError) as caught:
        load_mnist(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / MNIST_FILES[1]) in message
    assert MNIST_FILES[0] in message
    assert "4 labels" in message
    assert "5 images" in message


def test_load_mnist_label_out_of_range(tmp_path: Path) -> None:
    arrays = mnist_arrays(n_test=3)
    arrays[MNIST_FILES[3]] = np.array([0, 10, 9], dtype=np.uint8)
    write_mnist(tmp_path, arrays)
    with pytest.raises(DatasetFormatError) as caught:
        load_mnist(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in message
    assert "label 1 is 10" in message


def test_load_mnist_wrong_image_size(tmp_path: Path) -> None:
    arrays = mnist_arrays()
    arrays[MNIST_FILES[0]] = np.zeros((5, 20, 20), dtype=np.uint8)
    write_mnist(tmp_path, arrays)
    with pytest.raises(DatasetFormatError, match=r"shape \(5, 20, 20\)"):
        load_mnist(tmp_path)


def test_load_mnist_wrong_label_dtype(tmp_path: Path) -> None:
    arrays: dict[str, npt.NDArray[Any]] = dict(mnist_arrays())
    arrays[MNIST_FILES[1]] = arrays[MNIST_FILES[1]].astype(np.int32)
    write_mnist(tmp_path, arrays)
    with pytest.raises(DatasetFormatError, match="int32"):
        load_mnist(tmp_path)


def test_load_mnist_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'kmnist'"):
        load_mnist(tmp_path, kind="kmnist")  # type: ignore[arg-type]


# CIFAR-10


def test_official_style_batch_opcodes() -> None:
    data, labels = cifar_batch_arrays(2, seed=0)
    content = official_style_batch(data, labels, b"training batch 1 of 5")
    opcodes = [(op.name, arg) for op, arg, _ in pickletools.genops(content)]
    assert opcodes[0] == ("PROTO", 2)
    assert ("GLOBAL", "numpy.core.multiarray _reconstruct") in opcodes
    assert ("SHORT_BINSTRING", "data") in opcodes


def test_read_cifar_batch_official_layout(tmp_path: Path) -> None:
    data, labels = cifar_batch_arrays(3, seed=0)
    path = tmp_path / "data_batch_1"
    path.write_bytes(official_style_batch(data, labels, b"training batch 1 of 5"))
    images, label_array = read_cifar_batch(path)
    assert images.shape == (3, 32, 32, 3)
    assert images.dtype == np.uint8
    assert images.flags.c_contiguous
    assert label_array.dtype == np.int64
    assert label_array.tolist() == labels
    # Pixel (row r, column c) of channel k sits at k * 1024 + r * 32 + c.
    for index, row, column, channel in [(0, 0, 0, 0), (1, 5, 7, 1), (2, 31, 31, 2)]:
        flat = channel * 1024 + row * 32 + column
        assert images[index, row, column, channel] == data[index, flat]


@pytest.mark.parametrize("protocol", [3, 4])
def test_read_cifar_batch_python3_pickle(tmp_path: Path, protocol: int) -> None:
    data, labels = cifar_batch_arrays(2, seed=1)
    path = tmp_path / "batch"
    batch = {"data": data, "labels": labels}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    images, label_array = read_cifar_batch(path)
    np.testing.assert_array_equal(
        images, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    )
    assert label_array.tolist() == labels


def test_load_cifar10_extracted_folder(tmp_path: Path) -> None:
    written = write_cifar(tmp_path / CIFAR10_FOLDER, n_per_batch=2)
    data = load_cifar10(tmp_path)
    assert data.name == "cifar10"
    assert data.n_classes == 10
    assert data.source == tmp_path / CIFAR10_FOLDER
    assert data.x_train.shape == (10, 32, 32, 3)
    assert data.x_test.shape == (2, 32, 32, 3)
    expected_train = [
        label for name in CIFAR10_TRAIN_BATCHES for label in written[name][1]
    ]
    assert data.y_train.tolist() == expected_train
    assert data.y_test.tolist() == written[CIFAR10_TEST_BATCH][1]
    last_data = written[CIFAR10_TRAIN_BATCHES[-1]][0]
    np.testing.assert_array_equal(
        data.x_train[-2:], last_data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    )


def test_load_cifar10_root_is_batch_folder(tmp_path: Path) -> None:
    write_cifar(tmp_path, n_per_batch=1)
    data = load_cifar10(tmp_path)
    assert data.source == tmp_path
    assert len(data.y_train) == 5


def test_load_cifar10_missing_batch_message(tmp_path: Path) -> None:
    folder = tmp_path / CIFAR10_FOLDER
    write_cifar(folder, n_per_batch=1)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_cifar10(tmp_path)
    error = caught.value
    message = str(error)
    assert list(error.searched) == [folder, tmp_path]
    assert f"{folder} (missing data_batch_3)" in message
    assert str(tmp_path) in message
    for name in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH):
        assert name in message
    assert "nothing is downloaded at run time" in message
    assert "http" not in message


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("posix", "system"),
        ("builtins", "eval"),
        ("subprocess", "check_call"),
        ("numpy.testing._private.utils", "runstring"),
        ("numpy.core.multiarray", "scalar"),
    ],
)
def test_read_cifar_batch_rejects_global(
    tmp_path: Path, module: str, name: str
) -> None:
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "data_batch_1"
    command = f"touch {sentinel}".encode()
    call = (
        b"c"
        + module.encode()
        + b"\n"
        + name.encode()
        + b"\n("
        + py2_string(command)
        + b"tR"
    )
    path.write_bytes(b"\x80\x02}(" + py2_string(b"data") + call + b"u.")
    with pytest.raises(DatasetFormatError) as caught:
        read_cifar_batch(path)
    assert f"{module}.{name}" in str(caught.value)
    assert str(path) in str(caught.value)
    assert not sentinel.exists()


def test_read_cifar_batch_rejects_reduce_payload(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    data, labels = cifar_batch_arrays(1, seed=0)
    content = pickle.dumps(
        {b"data": data, b"labels": labels, b"x": RunsShell(f"touch {sentinel}")},
        protocol=4,
    )
    referenced = [
        arg
        for op, arg, _ in pickletools.genops(content)
        if op.name == "SHORT_BINUNICODE"
    ]
    assert "system" in referenced
    path = tmp_path / "test_batch"
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError, match=r"\.system, which is not allowed"):
        read_cifar_batch(path)
    assert not sentinel.exists()


def test_read_cifar_batch_rejects_protocol_5(tmp_path: Path) -> None:
    data, labels = cifar_batch_arrays(1, seed=0)
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=5))
    with pytest.raises(DatasetFormatError, match="_frombuffer, which is not allowed"):
        read_cifar_batch(path)


@pytest.mark.parametrize(
    ("original", "replacement", "problem"),
    [
        # dtype flags 3 mark uint8 as containing object references.
        (b"J\xff\xff\xff\xffK\x00tb", b"J\xff\xff\xff\xffK\x03tb", "dtype state"),
        (b"U\x02u1", b"U\x01O", "dtype 'O'"),
        (b"U\x02u1", b"U\x03V16", "dtype 'V16'"),
        (b"\x89T", b"NT", "array state"),
    ],
)
def test_read_cifar_batch_rejects_array_state(
    tmp_path: Path, original: bytes, replacement: bytes, problem: str
) -> None:
    data, labels = cifar_batch_arrays(1, seed=0)
    content = official_style_batch(data, labels, b"b")
    assert content.count(original) == 1
    path = tmp_path / "data_batch_1"
    path.write_bytes(content.replace(original, replacement))
    with pytest.raises(DatasetFormatError, match=problem) as caught:
        read_cifar_batch(path)
    assert str(path) in str(caught.value)


def test_read_cifar_batch_rejects_ndarray_call(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    call = b"cnumpy\nndarray\n" + py2_int(0) + b"\x85\x85R"  # ndarray((0,))
    path.write_bytes(b"\x80\x02}(" + py2_string(b"data") + call + b"u.")
    with pytest.raises(DatasetFormatError, match="numpy.ndarray directly"):
        read_cifar_batch(path)


def test_read_cifar_batch_array_size_mismatch(tmp_path: Path) -> None:
    data, labels = cifar_batch_arrays(1, seed=0)
    content = official_style_batch(data, labels, b"b")
    shape = b"K\x01J\x00\x0c\x00\x00\x86"  # (1, 3072)
    assert content.count(shape) == 1
    path = tmp_path / "data_batch_1"
    path.write_bytes(content.replace(shape, b"K\x02J\x00\x0c\x00\x00\x86"))
    with pytest.raises(
        DatasetFormatError, match="needs 6144 bytes of data but has 3072"
    ):
        read_cifar_batch(path)


def test_read_cifar_batch_truncated(tmp_path: Path) -> None:
    data, labels = cifar_batch_arrays(2, seed=0)
    content = official_style_batch(data, labels, b"b")
    path = tmp_path / "data_batch_2"
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetFormatError) as caught:
        read_cifar_batch(path)
    assert str(path) in str(caught.value)
    assert "not a valid CIFAR-10 batch" in str(caught.value)


def test_read_cifar_batch_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DatasetFormatError, match="contains a list"):
        read_cifar_batch(path)


def test_read_cifar_batch_cifar100_hint(tmp_path: Path) -> None:
    data, _ = cifar_batch_arrays(1, seed=0)
    path = tmp_path / "train"
    path.write_bytes(pickle.dumps({b"data": data, b"fine_labels": [3]}, protocol=4))
    with pytest.raises(DatasetFormatError) as caught:
        read_cifar_batch(path)
    assert "missing key 'labels'" in str(caught.value)
    assert "CIFAR-100" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "labels", "problem"),
    [
        (np.zeros((2, 3000), np.uint8), [0, 1], r"shape \(2, 3000\)"),
        (np.zeros((2, 3072), np.float32), [0, 1], "float32"),
        (np.zeros((2, 3072), np.uint8), [0], "2 images but 1 labels"),
        (np.zeros((2, 3072), np.uint8), [0, 10], "label 1 is 10"),
        (np.zeros((2, 3072), np.uint8), [0, -1], "label 1 is -1"),
        (np.zeros((2, 3072), np.uint8), [0, 1.0], "expected a list of ints"),
        (np.zeros((2, 3072), np.uint8), "01", "expected a list of ints"),
    ],
)
def test_read_cifar_batch_invalid_content(
    tmp_path: Path, data: npt.NDArray[Any], labels: object, problem: str
) -> None:
    path = tmp_path / "data_batch_4"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=4))
    with pytest.raises(DatasetFormatError, match=problem) as caught:
        read_cifar_batch(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("dtype", ["u1", "<i8", ">i8"])
def test_read_cifar_batch_labels_as_array(tmp_path: Path, dtype: str) -> None:
    data, labels = cifar_batch_arrays(3, seed=2)
    path = tmp_path / "b"
    batch = {b"data": data, b"labels": np.array(labels, dtype=dtype)}
    path.write_bytes(pickle.dumps(batch, protocol=4))
    _, label_array = read_cifar_batch(path)
    assert label_array.tolist() == labels


def test_read_cifar_batch_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="test_batch"):
        read_cifar_batch(tmp_path / "test_batch")


# LocalDataset


def make_dataset(
    x_train: npt.NDArray[np.uint8], x_test: npt.NDArray[np.uint8]
) -> LocalDataset:
    return LocalDataset(
        x_train=x_train,
        y_train=np.zeros(len(x_train), dtype=np.int64),
        x_test=x_test,
        y_test=np.zeros(len(x_test), dtype=np.int64),
        name="synthetic",
        n_classes=10,
    )


def test_to_float_without_normalize() -> None:
    rng = np.random.default_rng(0)
    data = make_dataset(
        rng.integers(0, 256, (4, 3, 3), dtype=np.uint8),
        rng.integers(0, 256, (2, 3, 3), dtype=np.uint8),
    )
    x_train, x_test = data.to_float(normalize=False)
    assert x_train.dtype == np.float32
    assert x_test.shape == (2, 3, 3)
    np.testing.assert_allclose(x_train, data.x_train / 255.0, rtol=1e-6)
    assert float(x_train.min()) >= 0.0
    assert float(x_train.max()) <= 1.0


def test_to_float_uses_training_statistics() -> None:
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    train[..., 1] //= 4  # make the channels' statistics differ
    test = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    data = make_dataset(train, test)
    x_train, x_test = data.to_float()

    np.testing.assert_allclose(x_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=(0, 1, 2)), 1.0, rtol=1e-5)
    scaled_train = train / 255.0
    mean = scaled_train.mean(axis=(0, 1, 2))
    std = scaled_train.std(axis=(0, 1, 2))
    np.testing.assert_allclose(x_test, (test / 255.0 - mean) / std, atol=1e-5)


def test_to_float_constant_channel_is_centered() -> None:
    train = np.full((3, 2, 2, 2), 51, dtype=np.uint8)
    train[..., 0] = [[[0, 255], [0, 255]]] * 3
    data = make_dataset(train, train[:1].copy())
    x_train, _ = data.to_float()
    assert np.isfinite(x_train).all()
    np.testing.assert_array_equal(x_train[..., 1], 0.0)
    np.testing.assert_allclose(np.abs(x_train[..., 0]), 1.0, rtol=1e-6)


@given(
    images=hnp.arrays(
        np.uint8,
        st.tuples(
            st.integers(1, 6), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)
        ),
    ),
    channels_axis=st.booleans(),
)
def test_channel_statistics_match_numpy(
    images: npt.NDArray[np.uint8], channels_axis: bool
) -> None:
    if not channels_axis:
        images = images[..., 0]
    data = make_dataset(images, images[:1].copy())
    mean, std = data.channel_statistics()
    pixels = (images / 255.0).reshape(-1, data.n_channels)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-9, atol=1e-12)


def test_channel_statistics_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "_STATISTICS_CHUNK", 5)
    images = np.random.default_rng(3).integers(0, 256, (7, 3, 2, 3), dtype=np.uint8)
    data = make_dataset(images, images[:1].copy())
    mean, std = data.channel_statistics()
    pixels = (images / 255.0).reshape(-1, 3)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-9)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"x_train": np.zeros((2, 3, 3), np.float32)}, "x_train must be a uint8"),
        ({"x_test": np.zeros((2, 9), np.uint8)}, r"x_test has shape \(2, 9\)"),
        ({"y_train": np.zeros(2, np.int32)}, "y_train must be an int64"),
        ({"y_test": np.zeros(3, np.int64)}, r"y_test has shape \(3,\)"),
        ({"y_train": np.array([0, 10])}, r"y_train\[1\] = 10"),
        ({"x_test": np.zeros((2, 4, 4), np.uint8)}, "both splits must match"),
        (
            {
                "x_train": np.zeros((0, 3, 3), np.uint8),
                "y_train": np.zeros(0, np.int64),
            },
            "no training examples",
        ),
        ({"n_classes": 1}, "n_classes = 1"),
    ],
)
def test_local_dataset_rejects_invalid(change: dict[str, Any], problem: str) -> None:
    fields: dict[str, Any] = {
        "x_train": np.zeros((2, 3, 3), np.uint8),
        "y_train": np.zeros(2, np.int64),
        "x_test": np.zeros((2, 3, 3), np.uint8),
        "y_test": np.zeros(2, np.int64),
        "name": "synthetic",
        "n_classes": 10,
    }
    fields.update(change)
    with pytest.raises(ValueError, match=problem):
        LocalDataset(**fields)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(
    # Most positions fall in the header and opcodes, the rest in the pixel data.
    position=st.one_of(st.integers(0, 200), st.integers(0, 10_000)),
    replacement=st.binary(min_size=1, max_size=4),
)
def test_read_cifar_batch_corrupted_bytes(
    tmp_path: Path, position: int, replacement: bytes
) -> None:
    data, labels = cifar_batch_arrays(1, seed=0)
    content = official_style_batch(data, labels, b"b")
    position %= len(content)
    corrupted = (
        content[:position] + replacement + content[position + len(replacement) :]
    )
    path = tmp_path / "data_batch_5"
    path.write_bytes(corrupted)
    try:
        images, label_array = read_cifar_batch(path)
    except DatasetFormatError as error:
        assert str(path) in str(error)
        return
    assert images.shape == (1, 32, 32, 3)
    assert label_array.shape == (1,)


def test_load_mnist_root_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "tiny.json"
    root.write_text("{}")
    with pytest.raises(DatasetNotFoundError) as caught:
        load_mnist(root, kind="mnist")
    assert f"{root} (a file, not a folder)" in str(caught.value)
