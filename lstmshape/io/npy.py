"""Reading and writing ``.npy`` files, block by block, without trusting the header.

The NPY format (see ``numpy/lib/format.py``) is a magic string ``\\x93NUMPY``, a version byte
pair, a little-endian header length (2 bytes in version 1.0, 4 bytes in 2.0 and 3.0), a Python
literal dict ``{'descr': ..., 'fortran_order': ..., 'shape': ...}`` padded with spaces to a
multiple of 64 bytes, and then the raw array data.

Checks made here, each raising :class:`~lstmshape.errors.InputError` naming the file and value:

* the magic string (so a text file named ``.npy`` is called what it is, not "pickled data");
* the header parses, within numpy's size limit, with a shape of non-negative integers (not bools)
  that numpy can represent (each dimension and the element count fit a C ``intp``);
* the dtype is one lstmshape supports (object arrays only with ``allow_pickle``);
* the data size declared by the header equals the bytes the file holds after the header: a
  shorter file is truncated, a longer one has trailing bytes -- both refused *before* anything is
  allocated, so a header declaring petabytes costs nothing;
* with a memory budget: one row (sample) larger than the budget, or a Fortran-ordered or pickled
  array (read whole) larger than it, is refused, naming ``--memory-limit``;
* stdin (:func:`read_npy_stream`) is read up to the declared size only, never past the budget.

Writing: :class:`NpyWriter` writes a version 1.0 header (2.0 when the header needs it) for a
shape known up front, then the data in as many blocks as the caller likes.
"""

from __future__ import annotations

import ast
import io
import os
import re
from typing import IO, Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from ..errors import InputError
from .arrays import RowObserver, check_dtype, is_text_role, little_endian, nbytes_of

MAGIC = b"\x93NUMPY"
MAGIC_LENGTH = len(MAGIC) + 2
#: numpy refuses headers above this size unless told otherwise; so do we.
MAX_HEADER_SIZE = 10_000
#: read at most this many bytes per ``readinto`` call when filling a block.
READ_BLOCK = 1 << 24
HEADER_KEYS = frozenset({"descr", "fortran_order", "shape"})


class NpyHeader:
    """What an ``.npy`` header declares, checked."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, fortran_order: bool,
                 data_offset: int) -> None:
        self.shape = shape
        self.dtype = dtype
        self.fortran_order = fortran_order
        self.data_offset = data_offset

    @property
    def nbytes(self) -> int:
        return nbytes_of(self.shape, self.dtype)

    @property
    def read_whole(self) -> bool:
        """Its rows cannot be read a block at a time (Fortran order, pickled objects)."""
        return self.fortran_order or self.dtype.hasobject


def read_header(stream: IO[bytes], where: str, allow_pickle: bool = False,
                text_ok: bool = False) -> NpyHeader:
    """Parse and check the header of an ``.npy`` stream positioned at its first byte.

    Example:
        >>> import io, numpy as np
        >>> buf = io.BytesIO(); np.save(buf, np.zeros((2, 3), np.float32)); _ = buf.seek(0)
        >>> h = read_header(buf, "mem.npy"); (h.shape, str(h.dtype))
        ((2, 3), 'float32')
    """
    magic = stream.read(MAGIC_LENGTH)
    if len(magic) < MAGIC_LENGTH or not magic.startswith(MAGIC):
        if not magic:
            raise InputError(f"{where}: empty file, not an NPY file")
        raise InputError(f"{where}: not an NPY file (it holds {describe_start(magic)}, "
                         f"not the NPY magic {MAGIC!r})")
    version = (magic[-2], magic[-1])
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise InputError(f"{where}: unsupported NPY format version {version[0]}.{version[1]}")
    length_size = 2 if version == (1, 0) else 4
    length_bytes = stream.read(length_size)
    if len(length_bytes) < length_size:
        raise InputError(f"{where}: truncated NPY header")
    header_length = int.from_bytes(length_bytes, "little")
    if header_length > MAX_HEADER_SIZE:
        raise InputError(f"{where}: NPY header of {header_length:,} bytes is over the limit of "
                         f"{MAX_HEADER_SIZE:,} bytes (numpy's own limit)")
    raw = stream.read(header_length)
    if len(raw) < header_length:
        raise InputError(f"{where}: truncated NPY header ({len(raw)} of {header_length} bytes)")
    shape, fortran_order, dtype = parse_header_dict(raw, version, where)
    if not isinstance(shape, tuple) or any(
            isinstance(dim, bool) or not isinstance(dim, int) or dim < 0 for dim in shape):
        raise InputError(f"{where}: damaged NPY header: shape {shape!r} is not a tuple of "
                         f"non-negative integers")
    check_representable(shape, dtype, where)
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        if not allow_pickle:
            raise InputError(f"{where}: holds an object array (pickled Python objects); refusing "
                             f"to unpickle it -- pass --allow-pickle if you trust the file")
    else:
        check_dtype(dtype, where, text_ok)
    return NpyHeader(tuple(shape), dtype, bool(fortran_order), stream.tell())


def describe_start(data: bytes) -> str:
    r"""What a file that is not an NPY file starts with, without quoting its bytes: the path may
    come from a manifest, and the file's first bytes must not end up in a CI log.

    Example:
        >>> describe_start(b"time,val"), describe_start(b"PK\x03\x04..")
        ('text', 'a zip archive (an .npz?)')
    """
    if data.startswith(b"PK"):
        return "a zip archive (an .npz?)"
    if data.startswith(b"\x89HDF"):
        return "an HDF5 signature (an .h5?)"
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in data):
        return "text"
    return "binary data"


#: The header numpy itself writes for a simple dtype, parsed without ``ast.literal_eval``
#: (which compiles the text: ~20 us a header, most of the cost of a folder of 1,000 shards).
#: Anything else -- structured dtypes, other spacing, damage -- takes the general path.
NUMPY_HEADER = re.compile(r"\{'descr': '([<>|=][a-zA-Z]\d*)', 'fortran_order': (True|False), "
                          r"'shape': \(((?:\d+, )*\d*|\d+,)\), \}\s*")


def parse_header_dict(raw: bytes, version: tuple[int, int],
                      where: str) -> tuple[Any, bool, np.dtype]:
    """The (shape, fortran_order, dtype) of a header's Python-literal dict, or InputError.

    Example:
        >>> parse_header_dict(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
        ...                   (1, 0), "x.npy")
        ((3, 2), False, dtype('float32'))
    """
    try:
        text = raw.decode("utf-8" if version == (3, 0) else "latin-1")
        simple = NUMPY_HEADER.fullmatch(text)
        if simple is not None:
            descr, order, dims = simple.groups()
            shape = tuple(int(d) for d in dims.replace(",", " ").split())
            fields: Any = {"descr": descr, "fortran_order": order == "True", "shape": shape}
        else:
            fields = ast.literal_eval(text)
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        raise InputError(f"{where}: damaged NPY header: cannot parse {raw[:60]!r}") from None
    if not isinstance(fields, dict) or set(fields) != HEADER_KEYS:
        keys = sorted(map(str, fields)) if isinstance(fields, dict) else type(fields).__name__
        raise InputError(f"{where}: damaged NPY header: expected keys {sorted(HEADER_KEYS)}, "
                         f"found {keys}")
    if not isinstance(fields["fortran_order"], bool):
        raise InputError(f"{where}: damaged NPY header: fortran_order is "
                         f"{fields['fortran_order']!r}, not True or False")
    try:
        dtype = npy_format.descr_to_dtype(fields["descr"])
    except (TypeError, ValueError) as err:
        raise InputError(f"{where}: damaged NPY header: bad descr {fields['descr']!r} "
                         f"({err})") from None
    return fields["shape"], fields["fortran_order"], dtype


def check_representable(shape: tuple[int, ...], dtype: np.dtype, where: str) -> None:
    """Refuse a shape numpy cannot hold: a dimension, or the bytes of the non-empty dimensions,
    beyond a C ``intp``. A zero dimension makes the data size 0, so the file-size check alone
    would let ``(2, 10**19, 0)`` through to overflow later."""
    limit = int(np.iinfo(np.intp).max)
    span = max(dtype.itemsize, 1)
    for dim in shape:
        if dim > limit:
            raise InputError(f"{where}: damaged NPY header: dimension {dim} of shape {shape} is "
                             f"larger than numpy allows ({limit})")
        span *= max(dim, 1)
    if span > limit:
        raise InputError(f"{where}: damaged NPY header: shape {shape} of {dtype} is larger "
                         f"than numpy can address")


def check_budget(header: NpyHeader, memory_limit: int | None, where: str) -> None:
    """Refuse what cannot be read within ``memory_limit``: a single row (one sample) over it,
    or an array that is read whole (Fortran order, pickled objects) over it."""
    if memory_limit is None or not header.shape:
        return
    if header.read_whole and header.nbytes > memory_limit:
        order = "pickled object" if header.dtype.hasobject else "Fortran-ordered"
        raise InputError(f"{where}: {order} array of shape {header.shape} ({header.nbytes:,} "
                         f"bytes) is read whole and is over --memory-limit {memory_limit:,}; "
                         f"raise --memory-limit or save it in C order")
    row_bytes = nbytes_of(header.shape[1:], header.dtype)
    if len(header.shape) > 1 and header.shape[0] and row_bytes > memory_limit:
        raise InputError(f"{where}: one row of shape {header.shape[1:]} is {row_bytes:,} bytes, "
                         f"over --memory-limit {memory_limit:,}; it cannot be read in blocks -- "
                         f"raise --memory-limit")


def check_data_size(header: NpyHeader, available: int, where: str) -> None:
    """Refuse a file whose data is shorter or longer than its header declares."""
    if header.dtype.hasobject:
        return  # pickled payloads have no fixed size; numpy's unpickler checks them
    if available < header.nbytes:
        raise InputError(
            f"{where}: truncated: header declares shape {header.shape} of {header.dtype} "
            f"({header.nbytes:,} bytes) but only {available:,} bytes of data follow")
    if available > header.nbytes:
        raise InputError(
            f"{where}: damaged: {available - header.nbytes:,} unexpected bytes after the data "
            f"of shape {header.shape} {header.dtype}")


class NpyFileArray:
    """An ``.npy`` file's array, read block by block with ``seek`` + ``readinto``.

    Only the header is read on construction. Fortran-ordered arrays are read whole on first use
    (numpy writes them only for transposed views; they are rare and small in practice).
    """

    def __init__(self, path: str, allow_pickle: bool = False,
                 memory_limit: int | None = None) -> None:
        self.path = path
        text_ok = is_text_role(path)  # OUT.ids.npy
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory, not an .npy file") from None
        except OSError as err:
            raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
        try:
            self.header = read_header(self._file, path, allow_pickle, text_ok)
            size = os.fstat(self._file.fileno()).st_size
            check_data_size(self.header, size - self.header.data_offset, path)
            check_budget(self.header, memory_limit, path)
        except BaseException:
            self._file.close()
            raise
        self._whole: np.ndarray | None = None
        self._observe: RowObserver | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.header.shape

    @property
    def dtype(self) -> np.dtype:
        return self.header.dtype

    def close(self) -> None:
        self._file.close()

    def watch(self, observe: RowObserver) -> bool:
        """Hand each block of rows read, as the file's bytes, to ``observe`` with its offset in
        the file; False (and nothing observed) when the rows are not read as raw bytes."""
        if self.header.read_whole:
            return False
        self._observe = observe
        return True

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        if self.header.read_whole:
            return np.ascontiguousarray(self._load_whole()[start:stop])
        return read_rows_at(self._file, self.header, start, stop, self.path, self._observe)

    def _load_whole(self) -> np.ndarray:
        if self._whole is None:
            self._file.seek(0)
            try:
                self._whole = np.load(self._file, allow_pickle=True)
            except Exception as err:  # numpy raises many types for damaged pickles
                raise InputError(f"{self.path}: cannot read the array: {err}") from None
        return self._whole


def read_rows_at(stream: IO[bytes], header: NpyHeader, start: int, stop: int,
                 where: str, observe: RowObserver | None = None) -> np.ndarray:
    """Read rows ``start:stop`` of a C-ordered array whose data starts at ``data_offset``;
    ``observe`` gets the raw block and its offset in ``stream`` before any byte swap."""
    row_shape = header.shape[1:]
    stop = min(stop, header.shape[0]) if header.shape else 0
    start = min(start, stop)
    block = np.empty((stop - start, *row_shape), dtype=header.dtype)
    row_bytes = nbytes_of(row_shape, header.dtype)
    offset = header.data_offset + start * row_bytes
    stream.seek(offset)
    target = block.reshape(-1).view(np.uint8)
    filled = 0
    while filled < target.size:
        count = stream.readinto(target[filled:filled + READ_BLOCK])  # type: ignore[attr-defined]
        if not count:
            raise InputError(f"{where}: truncated while reading rows {start}..{stop} "
                             f"(the file changed or is damaged)")
        filled += count
    if observe is not None:
        observe(offset, block)
    return block if header.dtype.isnative else block.astype(header.dtype.newbyteorder("="))


def load_npy_bytes(data: bytes, where: str, allow_pickle: bool = False) -> np.ndarray:
    """Parse a whole ``.npy`` held in memory (stdin), with the same checks as a file."""
    stream = io.BytesIO(data)
    header = read_header(stream, where, allow_pickle)
    check_data_size(header, len(data) - header.data_offset, where)
    if header.read_whole:
        stream.seek(0)
        try:
            loaded: np.ndarray = np.load(stream, allow_pickle=allow_pickle)
            return loaded
        except Exception as err:
            raise InputError(f"{where}: cannot read the array: {err}") from None
    if not header.shape:
        return np.frombuffer(data, header.dtype, 1, header.data_offset).reshape(())
    return read_rows_at(stream, header, 0, header.shape[0], where)


def read_npy_stream(stream: IO[bytes], where: str, allow_pickle: bool = False,
                    memory_limit: int | None = None) -> np.ndarray:
    """Read one ``.npy`` from a non-seekable stream (stdin), never past the memory budget.

    A pipe has no size to check a header against, so the header is parsed first and the size it
    declares is checked against the budget (the whole array is held in memory); then only the
    declared bytes plus one are read, so trailing data is still seen and refused.
    """
    head = stream.read(MAGIC_LENGTH + 4 + MAX_HEADER_SIZE)
    header = read_header(io.BytesIO(head), where, allow_pickle)
    budget = memory_limit if memory_limit is not None else header.nbytes
    if header.dtype.hasobject:
        # a pickle has no declared size: read at most the budget and let numpy parse it
        rest = stream.read(budget + 1) if memory_limit is not None else stream.read()
        if memory_limit is not None and len(rest) > memory_limit:
            raise InputError(f"{where}: pickled object array on stdin is over --memory-limit "
                             f"{memory_limit:,}; raise --memory-limit")
        return load_npy_bytes(head + rest, where, allow_pickle)
    if header.nbytes > budget:
        raise InputError(f"{where}: array of shape {header.shape} {header.dtype} "
                         f"({header.nbytes:,} bytes) on stdin is read whole and is over "
                         f"--memory-limit {budget:,}; raise --memory-limit or pass a file")
    if header.fortran_order:
        rest = stream.read(max(header.data_offset + header.nbytes + 1 - len(head), 0))
        return load_npy_bytes(head + rest, where, allow_pickle)
    # one buffer of the declared size, filled in place: the array is a view of it, not a copy
    total = header.data_offset + header.nbytes
    data = bytearray(total)
    filled = min(len(head), total)
    data[:filled] = head[:filled]
    view = memoryview(data)
    while filled < total:
        count = stream.readinto(view[filled:filled + READ_BLOCK])  # type: ignore[attr-defined]
        if not count:
            break
        filled += count
    check_data_size(header, filled - header.data_offset, where)
    if len(head) > total or stream.read(1):
        raise InputError(f"{where}: damaged: unexpected bytes after the data of shape "
                         f"{header.shape} {header.dtype}")
    array = np.frombuffer(data, header.dtype, offset=header.data_offset)
    array = array.reshape(header.shape)
    return array if header.dtype.isnative else array.astype(header.dtype.newbyteorder("="))


def header_bytes(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The ``.npy`` header for a C-ordered little-endian array (version 1.0 unless too long).

    Example:
        >>> import numpy as np
        >>> len(header_bytes((2, 3), np.dtype("<f4"))) % 64
        0
    """
    dtype = little_endian(np.zeros(0, dtype)).dtype
    buffer = io.BytesIO()
    fields: dict[str, Any] = {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False,
                              "shape": tuple(int(d) for d in shape)}
    try:
        npy_format.write_array_header_1_0(buffer, fields)
    except ValueError:  # header longer than 65535 bytes: needs version 2.0
        buffer = io.BytesIO()
        npy_format.write_array_header_2_0(buffer, fields)
    return buffer.getvalue()


class NpyWriter:
    """Write one array of a known shape to a binary stream, header first, then row blocks.

    Example:
        >>> import io, numpy as np
        >>> out = io.BytesIO()
        >>> w = NpyWriter(out, (3, 2), np.dtype("int32"))
        >>> w.write(np.zeros((1, 2), np.int32)); w.write(np.ones((2, 2), np.int32)); w.finish()
        >>> _ = out.seek(0); np.load(out).tolist()
        [[0, 0], [1, 1], [1, 1]]
    """

    def __init__(self, stream: IO[bytes], shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.stream = stream
        self.shape = shape
        self.dtype = little_endian(np.zeros(0, dtype)).dtype
        self.expected = nbytes_of(shape, dtype)
        self.written = 0
        stream.write(header_bytes(shape, dtype))

    def write(self, block: np.ndarray) -> None:
        data = little_endian(np.asarray(block, dtype=self.dtype))
        payload = data.reshape(-1).view(np.uint8)
        self.stream.write(payload.data)
        self.written += payload.size

    def finish(self) -> None:
        if self.written != self.expected:
            raise RuntimeError(f"NPY writer got {self.written} bytes for a declared "
                               f"{self.expected}")  # a bug in lstmshape, not bad input
