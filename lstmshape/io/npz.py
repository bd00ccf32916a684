"""``.npz`` archives: a zip file of ``.npy`` members, read member by member and block by block.

An ``.npz`` is a plain zip archive whose members are named ``KEY.npy`` (``np.savez``) and may be
deflate-compressed (``np.savez_compressed``). Members are read as streams, so an uncompressed or
compressed member is decompressed forward, a block of rows at a time, never held whole.

Checks, each an :class:`~lstmshape.errors.InputError` naming the archive and member:

* the file is a zip archive at all, and every member is an ``.npy`` array;
* a member's header passes the ``.npy`` checks of :mod:`lstmshape.io.npy`, and its declared data
  size equals the member's uncompressed size;
* a compressed member that would decompress to more than the memory budget *and* more than
  :data:`ZIP_BOMB_RATIO` times its compressed size is refused before it is inflated;
* a member whose declared bytes reach past the end of the archive (truncated, or a size that
  lies), an encrypted member, or one compressed with a method ``zipfile`` cannot read is refused
  when the archive is opened, before any member is read;
* CRC and decompression errors while reading become one-line errors.

Writing (:class:`NpzWriter`) uses stored (uncompressed) members with a fixed timestamp so the same
arrays give byte-identical archives, and zip64 so members may exceed 4 GB.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from ..errors import InputError
from .arrays import RowObserver, is_text_role, little_endian, nbytes_of
from .npy import (
    NpyHeader,
    NpyWriter,
    check_budget,
    check_data_size,
    read_header,
    read_rows_at,
)

MEMBER_SUFFIX = ".npy"
#: a zip local file header: its signature and fixed size (APPNOTE.TXT 4.3.7)
LOCAL_HEADER_MAGIC = b"PK\x03\x04"
LOCAL_HEADER_SIZE = 30
#: decompressed/compressed size above which (and above the memory budget) a member is a zip bomb.
ZIP_BOMB_RATIO = 100
#: DOS timestamps cannot go before 1980; every member gets this one, for reproducible bytes.
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: what zipfile and its decompressors raise on damaged bytes (NotImplementedError: an unknown
#: compression method; RuntimeError: an encrypted member).
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
               RuntimeError, struct.error)
#: compression methods zipfile reads with the standard library alone.
READABLE_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                              zipfile.ZIP_LZMA})


@contextmanager
def member_errors(where: str) -> Iterator[None]:
    """Turn zip, CRC and inflate errors into one-line InputErrors."""
    try:
        yield
    except READ_ERRORS as err:
        raise InputError(f"{where}: damaged archive member: {err}") from None


def check_member(path: str, info: zipfile.ZipInfo, archive_size: int) -> None:
    """Refuse a member that cannot be an ``.npy`` array read from this archive alone."""
    where = f"{path}: member {info.filename!r}"
    if not info.filename.endswith(MEMBER_SUFFIX):
        raise InputError(f"{where} is not an .npy array; not an .npz written by numpy")
    if info.flag_bits & 0x1:
        raise InputError(f"{where} is encrypted; lstmshape reads unencrypted .npz files only")
    if info.compress_type not in READABLE_METHODS:
        raise InputError(f"{where} uses zip compression method {info.compress_type}, which "
                         f"cannot be read (numpy writes stored or deflated members)")
    end = info.header_offset + info.compress_size
    if end > archive_size:
        raise InputError(f"{where} declares {info.compress_size:,} bytes ending at byte {end:,}, "
                         f"past the end of the {archive_size:,}-byte archive (truncated or "
                         f"damaged)")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise InputError(f"{where} is stored uncompressed but declares {info.file_size:,} bytes "
                         f"of data in {info.compress_size:,} (damaged)")


class NpzArchive:
    """The ``.npy`` members of a zip archive, by key (member name without ``.npy``)."""

    def __init__(self, path: str, memory_limit: int, allow_pickle: bool = False) -> None:
        self.path = path
        self.memory_limit = memory_limit
        self.allow_pickle = allow_pickle
        try:
            self._zip = zipfile.ZipFile(path)
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory, not an .npz file") from None
        except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, struct.error,
                UnicodeDecodeError) as err:
            raise InputError(f"{path}: not an .npz file (not a valid zip archive: {err}; "
                             f"truncated or damaged?)") from None
        except OSError as err:
            raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
        self.members: dict[str, zipfile.ZipInfo] = {}
        try:
            size = os.fstat(self._zip.fp.fileno()).st_size if self._zip.fp else 0
            for info in self._zip.infolist():
                if info.is_dir():
                    continue
                check_member(path, info, size)
                self.members[info.filename[:-len(MEMBER_SUFFIX)]] = info
        except BaseException:
            self._zip.close()
            raise

    def keys(self) -> list[str]:
        return list(self.members)

    def close(self) -> None:
        self._zip.close()

    def array(self, key: str) -> NpzMemberArray:
        return NpzMemberArray(self, key)

    def data_start(self, info: zipfile.ZipInfo) -> int:
        """Where a member's bytes start in the archive: after its local file header (30 bytes,
        then the name and the extra field, whose lengths are at bytes 26 and 28)."""
        assert self._zip.fp is not None
        header = os.pread(self._zip.fp.fileno(), LOCAL_HEADER_SIZE, info.header_offset)
        if len(header) != LOCAL_HEADER_SIZE or header[:4] != LOCAL_HEADER_MAGIC:
            raise zipfile.BadZipFile(f"bad local file header at {info.header_offset}")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        return int(info.header_offset) + LOCAL_HEADER_SIZE + int(name_length) + int(extra_length)

    def open_member(self, key: str) -> IO[bytes]:
        with member_errors(f"{self.path}:{key}"):
            return self._zip.open(self.members[key])


class NpzMemberArray:
    """One member of an archive; rows are read forward through a decompressing stream."""

    def __init__(self, archive: NpzArchive, key: str) -> None:
        self.archive = archive
        self.key = key
        self.where = f"{archive.path}:{key}"
        info = archive.members[key]
        compressed = info.compress_type != zipfile.ZIP_STORED
        if (compressed and info.file_size > archive.memory_limit
                and info.file_size > ZIP_BOMB_RATIO * max(info.compress_size, 1)):
            raise InputError(
                f"{self.where}: member decompresses to {info.file_size:,} bytes from "
                f"{info.compress_size:,} (over {ZIP_BOMB_RATIO}x and over --memory-limit "
                f"{archive.memory_limit:,}); refusing a likely zip bomb -- raise --memory-limit "
                f"if you trust the file")
        self._stream = archive.open_member(key)
        with member_errors(self.where):
            self.header: NpyHeader = read_header(self._stream, self.where, archive.allow_pickle,
                                                 is_text_role(key))
        check_data_size(self.header, info.file_size - self.header.data_offset, self.where)
        check_budget(self.header, archive.memory_limit, self.where)
        self._whole: np.ndarray | None = None
        self._observe: RowObserver | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.header.shape

    @property
    def dtype(self) -> np.dtype:
        return self.header.dtype

    @property
    def _read_whole(self) -> bool:
        """Read whole on first use rather than a block of rows at a time."""
        return self.header.read_whole or not self.header.shape

    def watch(self, observe: RowObserver) -> bool:
        """Hand each block of rows read to ``observe`` with its offset in the archive file; only
        a stored (uncompressed) member's rows are the archive's own bytes."""
        info = self.archive.members[self.key]
        if info.compress_type != zipfile.ZIP_STORED or self._read_whole:
            return False
        with member_errors(self.where):
            start = self.archive.data_start(info)

        def in_archive(offset: int, block: np.ndarray) -> None:
            observe(start + offset, block)

        self._observe = in_archive
        return True

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        if self._read_whole:
            return np.ascontiguousarray(self._load_whole()[start:stop])
        with member_errors(self.where):
            return read_rows_at(self._stream, self.header, start, stop, self.where,
                                self._observe)

    def _load_whole(self) -> np.ndarray:
        if self._whole is None:
            with member_errors(self.where):
                stream = self.archive.open_member(self.key)
                try:
                    self._whole = npy_format.read_array(stream, allow_pickle=True)
                except (ValueError, TypeError) as err:
                    raise InputError(f"{self.where}: cannot read the array: {err}") from None
        return self._whole


class NpzWriter:
    """Write arrays as stored members of a new archive, in the order given.

    Example:
        >>> import io, numpy as np
        >>> buf = io.BytesIO()
        >>> with NpzWriter(buf) as npz:
        ...     npz.write_array("lengths", np.array([3, 1]))
        >>> _ = buf.seek(0); np.load(buf)["lengths"].tolist()
        [3, 1]
    """

    def __init__(self, target: str | IO[bytes]) -> None:
        self._zip = zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    @contextmanager
    def member(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> Iterator[NpyWriter]:
        """A writer for one member whose blocks are streamed into the archive."""
        info = zipfile.ZipInfo(key + MEMBER_SUFFIX, date_time=FIXED_ZIP_TIME)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        with self._zip.open(info, "w", force_zip64=nbytes_of(shape, dtype) > 2**31) as stream:
            writer = NpyWriter(stream, shape, dtype)
            yield writer
            writer.finish()

    def write_array(self, key: str, array: np.ndarray) -> None:
        array = little_endian(array)
        with self.member(key, array.shape, array.dtype) as writer:
            writer.write(array)
