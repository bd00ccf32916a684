"""Arrays on disk that can be read a block of rows at a time.

Every reader hands out :class:`StoredArray` objects: they know their shape and dtype without
reading the data, and :meth:`StoredArray.read_rows` reads rows ``start:stop`` along the first axis
into a fresh C-ordered array. That is what lets every command stream inputs larger than memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..errors import InputError

#: dtype kinds lstmshape accepts: bool, signed and unsigned integers, floats.
SUPPORTED_KINDS = frozenset("biuf")
#: Side arrays that may hold text: a table's string ``ids`` (fixed-width unicode in
#: ``.npy``/``.npz``/``.zarr``, fixed-length UTF-8 in ``.h5``). Never a tensor, never a target.
TEXT_ROLES = frozenset({"ids"})
TEXT_KINDS = frozenset("US")
#: floats wider than this (``longdouble``) have no portable file representation.
MAX_FLOAT_BYTES = 8

DTYPE_NAMES = {
    "O": "object (pickled Python objects)",
    "U": "unicode string",
    "S": "byte string",
    "V": "structured/void",
    "c": "complex",
    "M": "datetime",
    "m": "timedelta",
}


#: Called by a file-backed array with each block of rows it read, as the file's raw bytes, and
#: the block's offset in the file (``watch``; :class:`~lstmshape.io.digest.InputDigest` hashes
#: the input from them instead of reading it twice).
RowObserver = Callable[[int, np.ndarray], None]


class StoredArray(Protocol):
    """A named array whose rows can be read in blocks."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def read_rows(self, start: int, stop: int) -> np.ndarray: ...


class MemoryArray:
    """A :class:`StoredArray` over an array already in memory (stdin, pickled, small layouts)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return np.ascontiguousarray(self.array[start:stop])


def check_dtype(dtype: np.dtype, where: str, text_ok: bool = False) -> None:
    """Refuse dtypes an LSTM tensor cannot hold, naming the file and the dtype. ``text_ok``:
    the array is one of :data:`TEXT_ROLES`, where strings are also fine.

    Example:
        >>> import numpy as np
        >>> check_dtype(np.dtype("float32"), "x.npy")
        >>> check_dtype(np.dtype("complex64"), "x.npy")
        Traceback (most recent call last):
        ...
        lstmshape.errors.InputError: x.npy: dtype complex64 (complex) is not supported; ...
    """
    too_wide = dtype.kind == "f" and dtype.itemsize > MAX_FLOAT_BYTES
    plain = dtype.fields is None and dtype.subdtype is None
    if dtype.kind in SUPPORTED_KINDS and plain and not too_wide:
        return
    if text_ok and dtype.kind in TEXT_KINDS and plain:
        return
    what = DTYPE_NAMES.get(dtype.kind, "unsupported")
    if dtype.fields is not None or dtype.subdtype is not None:
        what = DTYPE_NAMES["V"]
    raise InputError(f"{where}: dtype {dtype} ({what}) is not supported; "
                     f"use bool, integer or float16/32/64 data")


def nbytes_of(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes an array of that shape and dtype takes, in Python ints (no overflow)."""
    count = 1
    for dim in shape:
        count *= int(dim)
    return count * dtype.itemsize


def little_endian(array: np.ndarray) -> np.ndarray:
    """The array in C order and little-endian byte order, as every output is written."""
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def is_text_role(key: str | None) -> bool:
    """Whether the array stored under ``key`` (``ids``, ``group/ids``, ``OUT.ids.npy``) may
    hold text."""
    if key is None:
        return False
    name = key.rsplit("/", 1)[-1]
    if name.endswith(".npy"):  # only a side file OUT.<role>.npy
        _, dot, name = name[:-len(".npy")].rpartition(".")
        if not dot:
            return False
    return name in TEXT_ROLES


def decoded_text(array: np.ndarray) -> np.ndarray:
    """Text as fixed-width unicode: UTF-8 bytes (how ``.h5`` stores it) decoded.

    Example:
        >>> decoded_text(np.array([b"ab", "\u00e9".encode()]))
        array(['ab', '\u00e9'], dtype='<U2')
    """
    if array.dtype.kind == "S":
        return np.char.decode(array, "utf-8")
    return array


def utf8_text(array: np.ndarray) -> np.ndarray:
    """Fixed-width unicode as fixed-length UTF-8 bytes: HDF5 has no UCS-4 strings.

    Example:
        >>> utf8_text(np.array(["ab", "\u00e9"]))
        array([b'ab', b'\xc3\xa9'], dtype='|S2')
    """
    return np.char.encode(array, "utf-8") if array.dtype.kind == "U" else array
