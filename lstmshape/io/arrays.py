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


def check_dtype(dtype: np.dtype, where: str) -> None:
    """Refuse dtypes an LSTM tensor cannot hold, naming the file and the dtype.

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
