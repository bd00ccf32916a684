"""Every bad input of issue 5, each through a real subprocess.

Each case builds one hostile file and runs ``pad`` on it (and ``inspect``, which reads containers
through another path: the listing). The contract, for every case: one ``Error:`` line naming the
file and what is wrong, exit 1, no traceback, and nothing written to the output folder.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import peak_rss
from hostile import assert_ok, assert_refused, run_cli, unprivileged_preexec

MIB = "1MiB"  # the smallest --memory-limit: keeps the "over the budget" files small


@dataclass
class Case:
    src: str
    needles: tuple[str, ...]
    args: tuple[str, ...] = ()
    stdin: bytes | None = None
    inspect: bool = True
    #: words the message must not contain (numpy's misleading "pickled data", a false "locked")
    forbidden: tuple[str, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)


def npy_header(fields: dict[str, object], version: int = 1) -> bytes:
    """A hand-written .npy header (numpy refuses to write the broken ones)."""
    text = repr(fields).encode("latin-1")
    length_size = 2 if version == 1 else 4
    pad = (64 - (6 + 2 + length_size + len(text) + 1) % 64) % 64
    text += b" " * pad + b"\n"
    length = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + length + text


def good_npy(folder: Path, name: str = "good.npy") -> Path:
    path = folder / name
    np.save(path, np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    return path


def good_npz(folder: Path, name: str = "good.npz", compressed: bool = False) -> Path:
    path = folder / name
    save = np.savez_compressed if compressed else np.savez
    save(path, x=np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    return path


def zip_flags(path: Path, out: Path, flag_or: int = 0, method: int | None = None) -> None:
    """Copy a one-member zip, OR-ing its general purpose flags or replacing its method."""
    data = bytearray(path.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    data[local + 6] |= flag_or
    data[central + 8] |= flag_or
    if method is not None:
        struct.pack_into("<H", data, local + 8, method)
        struct.pack_into("<H", data, central + 10, method)
    out.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------
# The cases: name -> builder(folder) -> Case


def missing(folder: Path) -> Case:
    return Case(str(folder / "missing.npy"), ("missing.npy", "no such file"))


def directory(folder: Path) -> Case:
    (folder / "adir.npy").mkdir()
    return Case(str(folder / "adir.npy"), ("adir.npy", "directory"))


def empty(folder: Path) -> Case:
    (folder / "empty.npy").write_bytes(b"")
    return Case(str(folder / "empty.npy"), ("empty.npy", "empty file"))


def text_as_npy(folder: Path) -> Case:
    (folder / "notes.npy").write_text("time,value\n0,1.5\n")
    return Case(str(folder / "notes.npy"), ("notes.npy", "not an NPY file"),
                forbidden=("pickle", "time,val"))  # no file bytes in logs


def truncated_header(folder: Path) -> Case:
    data = good_npy(folder, "full.npy").read_bytes()
    (folder / "cut.npy").write_bytes(data[:40])
    return Case(str(folder / "cut.npy"), ("cut.npy", "truncated NPY header"))


def truncated_data(folder: Path) -> Case:
    data = good_npy(folder, "full.npy").read_bytes()
    (folder / "cut.npy").write_bytes(data[:-7])
    return Case(str(folder / "cut.npy"), ("cut.npy", "truncated", "(2, 3, 4)"))


def trailing_bytes(folder: Path) -> Case:
    data = good_npy(folder, "full.npy").read_bytes()
    (folder / "long.npy").write_bytes(data + b"\0garbage")
    return Case(str(folder / "long.npy"), ("long.npy", "unexpected bytes after the data"))


def header_over_limit(folder: Path) -> Case:
    (folder / "big.npy").write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 20000)
                                     + b" " * 20000)
    return Case(str(folder / "big.npy"), ("big.npy", "header", "over the limit"))


def shape_value(shape: object, needle: str) -> Callable[[Path], Case]:
    def build(folder: Path) -> Case:
        header = npy_header({"descr": "<f4", "fortran_order": False, "shape": shape})
        (folder / "shape.npy").write_bytes(header + b"\0" * 48)
        return Case(str(folder / "shape.npy"), ("shape.npy", needle))

    return build


def declares_more_than_file(folder: Path) -> Case:
    # 4e15 bytes declared: refused by comparing with the file size, never allocated
    header = npy_header({"descr": "<f4", "fortran_order": False,
                         "shape": (10**6, 10**6, 10**3)})
    (folder / "liar.npy").write_bytes(header + b"\0" * 64)
    return Case(str(folder / "liar.npy"), ("liar.npy", "truncated", "only 64 bytes"))


def beyond_numpy(folder: Path) -> Case:
    # zero features: 0 data bytes, so only the intp check stands between it and an overflow
    header = npy_header({"descr": "<f4", "fortran_order": False, "shape": (2, 10**19, 0)})
    (folder / "vast.npy").write_bytes(header)
    return Case(str(folder / "vast.npy"), ("vast.npy", "larger than numpy"))


def dtype_case(array: np.ndarray, needle: str) -> Callable[[Path], Case]:
    def build(folder: Path) -> Case:
        np.save(folder / "typed.npy", array, allow_pickle=True)
        return Case(str(folder / "typed.npy"), ("typed.npy", needle))

    return build


def dims_case(array: np.ndarray, needle: str) -> Callable[[Path], Case]:
    def build(folder: Path) -> Case:
        np.save(folder / "dims.npy", array)
        return Case(str(folder / "dims.npy"), ("dims.npy", needle))

    return build


def fortran_over_budget(folder: Path) -> Case:
    np.save(folder / "fortran.npy", np.asfortranarray(np.zeros((64, 64, 64), np.float64)))
    return Case(str(folder / "fortran.npy"), ("fortran.npy", "Fortran", "--memory-limit"),
                args=("--memory-limit", MIB))


def row_over_budget(folder: Path) -> Case:
    np.save(folder / "wide.npy", np.zeros((1, 150_000, 1), np.float64))
    return Case(str(folder / "wide.npy"), ("wide.npy", "one row", "--memory-limit"),
                args=("--memory-limit", MIB))


def fifo(folder: Path) -> Case:
    os.mkfifo(folder / "pipe.npy")  # opening it would block forever
    return Case(str(folder / "pipe.npy"), ("pipe.npy", "not a regular file"))


def stdin_truncated(folder: Path) -> Case:
    data = good_npy(folder).read_bytes()
    return Case("-", ("<stdin>", "truncated"), stdin=data[:-5], inspect=True)


def stdin_trailing(folder: Path) -> Case:
    data = good_npy(folder).read_bytes()
    return Case("-", ("<stdin>", "unexpected bytes"), stdin=data + b"junk")


def stdin_over_budget(folder: Path) -> Case:
    # the header alone is enough to refuse: the 4 GB it declares are never read or allocated
    header = npy_header({"descr": "<f4", "fortran_order": False, "shape": (1000, 1000, 1000)})
    return Case("-", ("<stdin>", "--memory-limit"), stdin=header + b"\0" * 4096,
                args=("--memory-limit", MIB))


def npz_truncated(folder: Path) -> Case:
    data = good_npz(folder).read_bytes()
    (folder / "cut.npz").write_bytes(data[: len(data) // 2])
    return Case(str(folder / "cut.npz"), ("cut.npz", "not an .npz"))


def npz_bad_crc(folder: Path) -> Case:
    data = bytearray(good_npz(folder).read_bytes())
    data[data.find(b"\x93NUMPY") + 150] ^= 0xFF  # a data byte of the stored member
    (folder / "crc.npz").write_bytes(bytes(data))
    return Case(str(folder / "crc.npz"), ("crc.npz", "CRC"))


def npz_non_array(folder: Path) -> Case:
    with zipfile.ZipFile(folder / "mixed.npz", "w") as archive:
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((2, 3)))
        archive.writestr("x.npy", buffer.getvalue())
        archive.writestr("README.txt", "not an array")
    return Case(str(folder / "mixed.npz"), ("mixed.npz", "README.txt", "not an .npy"))


def npz_zip_bomb(folder: Path) -> Case:
    # 16 MB of zeros deflate to ~16 KB: over 100x and over the 1 MiB budget
    with zipfile.ZipFile(folder / "bomb.npz", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((16, 1000, 125), np.float64))
        archive.writestr("x.npy", buffer.getvalue())
    return Case(str(folder / "bomb.npz"), ("bomb.npz", "zip bomb", "--memory-limit"),
                args=("--memory-limit", MIB))


def npz_encrypted(folder: Path) -> Case:
    zip_flags(good_npz(folder), folder / "locked.npz", flag_or=0x1)
    return Case(str(folder / "locked.npz"), ("locked.npz", "encrypted"))


def npz_unknown_method(folder: Path) -> Case:
    zip_flags(good_npz(folder), folder / "aes.npz", method=99)
    return Case(str(folder / "aes.npz"), ("aes.npz", "compression method 99"))


def npz_size_lie(folder: Path) -> Case:
    data = bytearray(good_npz(folder).read_bytes())
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<II", data, central + 20, 10**9, 10**9)  # compressed, uncompressed size
    (folder / "lie.npz").write_bytes(bytes(data))
    return Case(str(folder / "lie.npz"), ("lie.npz", "past the end"))


def npz_unknown_key(folder: Path) -> Case:
    path = good_npz(folder)
    return Case(f"{path}:labels", ("good.npz", "no key 'labels'", "keys found: x"))


def npz_corrupt_late(folder: Path) -> Case:
    """Damage near the end of a compressed member: found while writing, blocks already out."""
    path = folder / "late.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, x=rng.normal(size=(64, 64, 32)).astype(np.float32))
    data = bytearray(path.read_bytes())
    end = data.find(b"PK\x01\x02")
    for index in range(end - 3000, end - 2000):
        data[index] ^= 0x5A
    path.write_bytes(bytes(data))
    return Case(str(path), ("late.npz",), args=("--memory-limit", MIB))


def h5_corrupt(folder: Path) -> Case:
    (folder / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 2)
    # "superblock" contains "lock": this once read as "locked by another process"
    return Case(str(folder / "junk.h5"), ("junk.h5", "damaged HDF5"), forbidden=("locked",))


def h5_truncated(folder: Path) -> Case:
    with h5py.File(folder / "full.h5", "w") as h5:
        h5["x"] = np.zeros((2, 3, 4))
    data = (folder / "full.h5").read_bytes()
    (folder / "cut.h5").write_bytes(data[: len(data) // 2])
    return Case(str(folder / "cut.h5"), ("cut.h5", "truncated HDF5"), forbidden=("locked",))


def h5_not_hdf5(folder: Path) -> Case:
    (folder / "plain.h5").write_text("just text\n")
    return Case(str(folder / "plain.h5"), ("plain.h5", "not an HDF5 file"))


def other_file(folder: Path) -> Path:
    with h5py.File(folder / "other.h5", "w") as h5:
        h5["d"] = np.ones((2, 3, 4))
    return folder / "other.h5"


def h5_external_link(folder: Path) -> Case:
    other_file(folder)
    with h5py.File(folder / "ext.h5", "w") as h5:
        h5["x"] = h5py.ExternalLink("other.h5", "/d")
    return Case(str(folder / "ext.h5"), ("ext.h5", "external link", "other.h5"))


def h5_soft_link_into_external(folder: Path) -> Case:
    # HDF5 itself follows a soft link through an external link: it must be walked link by link
    other_file(folder)
    with h5py.File(folder / "soft.h5", "w") as h5:
        h5["outside"] = h5py.ExternalLink("other.h5", "/")
        h5["x"] = h5py.SoftLink("/outside/d")
    return Case(f"{folder / 'soft.h5'}:/x", ("soft.h5", "external link", "other.h5"))


def h5_external_in_sequences(folder: Path) -> Case:
    other_file(folder)
    with h5py.File(folder / "seqs.h5", "w") as h5:
        group = h5.create_group("seqs")
        group["s0"] = np.ones((3, 2))
        group["s1"] = h5py.ExternalLink("other.h5", "/d")
    return Case(f"{folder / 'seqs.h5'}:/seqs", ("seqs.h5", "external link"))


def h5_virtual(folder: Path) -> Case:
    other_file(folder)
    with h5py.File(folder / "vds.h5", "w") as h5:
        layout = h5py.VirtualLayout(shape=(2, 3, 4), dtype="f8")
        layout[:] = h5py.VirtualSource("other.h5", "d", shape=(2, 3, 4))
        h5.create_virtual_dataset("x", layout)
    return Case(str(folder / "vds.h5"), ("vds.h5", "virtual dataset"))


def h5_external_storage(folder: Path) -> Case:
    (folder / "raw.bin").write_bytes(np.zeros(24).tobytes())
    with h5py.File(folder / "extraw.h5", "w") as h5:
        h5.create_dataset("x", shape=(2, 3, 4), dtype="f8", external=[("raw.bin", 0, 192)])
    return Case(str(folder / "extraw.h5"), ("extraw.h5", "external raw storage", "raw.bin"))


def h5_big_chunk(folder: Path) -> Case:
    with h5py.File(folder / "chunky.h5", "w") as h5:
        h5.create_dataset("x", shape=(40, 256, 256), dtype="f4", chunks=(8, 256, 256))
    return Case(str(folder / "chunky.h5"), ("chunky.h5", "chunk", "--memory-limit"),
                args=("--memory-limit", MIB))


def h5_sparse_dataset(folder: Path) -> Case:
    # 40 TB declared, nothing stored: unwritten chunks read as the fill value, forever
    with h5py.File(folder / "sparse.h5", "w") as h5:
        h5.create_dataset("x", shape=(10**9, 100, 100), dtype="f4", chunks=(1, 100, 100))
    return Case(str(folder / "sparse.h5"), ("sparse.h5", "declares", "--memory-limit"))


def h5_row_over_budget(folder: Path) -> Case:
    with h5py.File(folder / "row.h5", "w") as h5:
        h5.create_dataset("x", shape=(4, 10**6, 100), dtype="f4", chunks=(1, 1000, 100))
    return Case(str(folder / "row.h5"), ("row.h5", "one row", "--memory-limit"))


def h5_vlen_over_budget(folder: Path) -> Case:
    with h5py.File(folder / "vlen.h5", "w") as h5:
        seqs = h5.create_dataset("seqs", (40,), dtype=h5py.vlen_dtype(np.float64))
        for index in range(40):
            seqs[index] = np.zeros(5000)  # 40 x 40 KB = 1.6 MB, all in the global heap
    return Case(f"{folder / 'vlen.h5'}:/seqs", ("vlen.h5", "vlen", "--memory-limit"),
                args=("--memory-limit", MIB))


def h5_unknown_key(folder: Path) -> Case:
    with h5py.File(folder / "keys.h5", "w") as h5:
        h5["x"] = np.zeros((2, 3, 4))
    return Case(f"{folder / 'keys.h5'}:/sensors", ("keys.h5", "no key '/sensors'", "/x"))


def h5_escape_in_names(folder: Path) -> Case:
    """Key names are echoed in errors: a terminal escape in one must arrive escaped."""
    with h5py.File(folder / "esc.h5", "w") as h5:
        h5["a\x1b[2J\x07"] = np.zeros((2, 3))
        h5["b"] = np.zeros((2, 3))
    return Case(f"{folder / 'esc.h5'}:/nokey", ("esc.h5", "no key", "\\x1b[2J\\x07"),
                forbidden=("\x1b", "\x07"))


def h5_corrupt_late(folder: Path) -> Case:
    """A damaged compressed chunk near the end: found after earlier blocks were written."""
    path = folder / "late.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=np.random.default_rng(0).normal(size=(64, 64, 16))
                          .astype(np.float32), chunks=(4, 64, 16), compression="gzip")
    with h5py.File(path, "r") as h5:
        dataset = h5["x"]
        chunk = dataset.id.get_chunk_info(dataset.id.get_num_chunks() - 2)
    data = bytearray(path.read_bytes())
    for index in range(chunk.byte_offset + 10, chunk.byte_offset + chunk.size - 10):
        data[index] ^= 0x5A
    path.write_bytes(bytes(data))
    return Case(str(path), ("late.h5", "cannot read HDF5 data"), args=("--memory-limit", MIB))


def manifest_case(outputs: object, needle: str) -> Callable[[Path], Case]:
    """An input whose manifest ``IN.json`` (read for true lengths) has been tampered with."""

    def build(folder: Path) -> Case:
        path = good_npy(folder, "data.npy")
        secret = folder.parent / "secret.npy"
        secret.write_text("token=hunter2\n")
        manifest = {"schema": "lstmshape/manifest-v1", "outputs": outputs}
        (folder / "data.npy.json").write_text(json.dumps(manifest))
        return Case(str(path), ("data.npy.json", needle), forbidden=("hunter2", "token"))

    return build


# -- tables (issue 12): pyarrow reads them; every failure is still one line, bounded memory


def good_parquet(folder: Path, name: str = "good.parquet", rows: int = 1000) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / name
    pq.write_table(pa.table({"id": np.repeat(np.arange(rows // 10), 10),
                             "v": np.arange(rows, dtype=np.float32)}), path)
    return path


TABLE_ARGS = ("--id", "id", "--memory-limit", MIB)


def parquet_truncated(folder: Path) -> Case:
    path = good_parquet(folder)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return Case(str(path), ("good.parquet",), args=TABLE_ARGS)


def parquet_garbage_footer(folder: Path) -> Case:
    path = good_parquet(folder)
    data = bytearray(path.read_bytes())
    footer = struct.unpack("<I", data[-8:-4])[0]
    data[-8 - footer:-8] = bytes(range(256)) * (footer // 256) + b"\xff" * (footer % 256)
    path.write_bytes(bytes(data))
    return Case(str(path), ("good.parquet",), args=TABLE_ARGS)


def parquet_footer_past_end(folder: Path) -> Case:
    """The data pages cut out, the footer kept: it declares column chunks the file lacks."""
    path = good_parquet(folder, rows=20_000)
    data = path.read_bytes()
    footer = struct.unpack("<I", data[-8:-4])[0]
    path.write_bytes(data[:64] + data[-8 - footer:])
    return Case(str(path), ("good.parquet", "declares"), args=TABLE_ARGS)


def csv_long_line(folder: Path) -> Case:
    path = folder / "long.csv"
    path.write_text("id,v\n1,2.0\n1," + "7" * 300_000 + "\n")
    return Case(str(path), ("long.csv", "line longer", "--memory-limit"), args=TABLE_ARGS)


def parquet_deep_nesting(folder: Path) -> Case:
    import pyarrow as pa
    import pyarrow.parquet as pq

    value: object = 1.0
    for _ in range(40):
        value = [value]
    path = folder / "deep.parquet"
    pq.write_table(pa.table({"id": [1], "v": pa.array([value])}), path)
    return Case(str(path), ("deep.parquet", "nested 40 levels"), args=TABLE_ARGS)


def parquet_dictionary_bomb(folder: Path) -> Case:
    """A 60 KB file whose one 1 MB string id is referenced by 2M rows: 2 TB if expanded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 2_000_000
    ids = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)),
                                         pa.array(["x" * (1 << 20)]))
    path = folder / "bomb.parquet"
    pq.write_table(pa.table({"id": ids, "v": np.zeros(rows, np.float32)}), path,
                   row_group_size=rows)
    return Case(str(path), ("bomb.parquet", "--memory-limit"), args=TABLE_ARGS)


def arrow_offsets_past_values(folder: Path) -> Case:
    """A valid file whose last list offset is then patched to run past the values."""
    import pyarrow as pa

    table = pa.table({"tokens": pa.array([[11, 12], [13]], pa.list_(pa.int32()))})
    path = folder / "bad.arrow"
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)
    data = path.read_bytes()
    offsets = np.array([0, 2, 3], np.int32).tobytes()
    assert data.count(offsets) == 1
    path.write_bytes(data.replace(offsets, np.array([0, 2, 1000], np.int32).tobytes()))
    return Case(str(path), ("bad.arrow",), args=("--memory-limit", MIB))


def arrow_garbage(folder: Path) -> Case:
    path = folder / "noise.arrow"
    path.write_bytes(bytes(np.random.default_rng(5).integers(0, 256, 4096, np.uint8)))
    return Case(str(path), ("noise.arrow", "cannot read"))


CASES: dict[str, Callable[[Path], Case]] = {
    "missing": missing,
    "directory": directory,
    "empty": empty,
    "text-named-npy": text_as_npy,
    "truncated-header": truncated_header,
    "truncated-data": truncated_data,
    "trailing-bytes": trailing_bytes,
    "header-over-limit": header_over_limit,
    "shape-negative": shape_value((-1, 3), "(-1, 3)"),
    "shape-bool": shape_value((True, 3), "(True, 3)"),
    "shape-float": shape_value((2.0, 3), "not a tuple of non-negative integers"),
    "shape-huge": declares_more_than_file,
    "shape-beyond-numpy": beyond_numpy,
    "dtype-object": dtype_case(np.array([[1], [2, 3]], dtype=object), "--allow-pickle"),
    "dtype-unicode": dtype_case(np.array([["a", "b"]]), "string"),
    "dtype-bytes": dtype_case(np.array([[b"a", b"b"]]), "string"),
    "dtype-structured": dtype_case(np.zeros((2, 3), [("a", "<f4"), ("b", "<i4")]), "structured"),
    "dtype-complex": dtype_case(np.zeros((2, 3), np.complex64), "complex"),
    "dtype-datetime": dtype_case(np.zeros((2, 3), "datetime64[s]"), "datetime"),
    "dtype-timedelta": dtype_case(np.zeros((2, 3), "timedelta64[s]"), "timedelta"),
    "dtype-longdouble": dtype_case(np.zeros((2, 3), np.longdouble), "not supported"),
    "zero-d": dims_case(np.float32(1.5), "shape ()"),
    "one-d": dims_case(np.arange(5.0), "window"),
    "four-d": dims_case(np.zeros((2, 2, 2, 2)), "shape (2, 2, 2, 2)"),
    "fortran-over-budget": fortran_over_budget,
    "row-over-budget": row_over_budget,
    "fifo": fifo,
    "stdin-truncated": stdin_truncated,
    "stdin-trailing": stdin_trailing,
    "stdin-over-budget": stdin_over_budget,
    "npz-truncated": npz_truncated,
    "npz-bad-crc": npz_bad_crc,
    "npz-non-array-member": npz_non_array,
    "npz-zip-bomb": npz_zip_bomb,
    "npz-encrypted": npz_encrypted,
    "npz-unknown-method": npz_unknown_method,
    "npz-size-past-end": npz_size_lie,
    "npz-unknown-key": npz_unknown_key,
    "npz-corrupt-late": npz_corrupt_late,
    "h5-corrupt": h5_corrupt,
    "h5-truncated": h5_truncated,
    "h5-not-hdf5": h5_not_hdf5,
    "h5-external-link": h5_external_link,
    "h5-soft-link-into-external": h5_soft_link_into_external,
    "h5-external-in-sequences": h5_external_in_sequences,
    "h5-virtual-dataset": h5_virtual,
    "h5-external-storage": h5_external_storage,
    "h5-chunk-over-budget": h5_big_chunk,
    "h5-sparse-dataset": h5_sparse_dataset,
    "h5-row-over-budget": h5_row_over_budget,
    "h5-vlen-over-budget": h5_vlen_over_budget,
    "h5-unknown-key": h5_unknown_key,
    "h5-corrupt-late": h5_corrupt_late,
    "h5-escape-in-names": h5_escape_in_names,
    "manifest-lengths-outside": manifest_case({"lengths": {"path": "../secret.npy"}},
                                              "reads only that file"),
    "manifest-lengths-absolute": manifest_case({"lengths": {"path": "/etc/passwd"}},
                                               "reads only that file"),
    "manifest-damaged": manifest_case([1, 2], "damaged manifest"),
    "parquet-truncated": parquet_truncated,
    "parquet-garbage-footer": parquet_garbage_footer,
    "parquet-footer-past-end": parquet_footer_past_end,
    "csv-line-over-budget": csv_long_line,
    "parquet-deep-nesting": parquet_deep_nesting,
    "parquet-dictionary-bomb": parquet_dictionary_bomb,
    "arrow-offsets-past-values": arrow_offsets_past_values,
    "arrow-garbage": arrow_garbage,
}
TABLE_CASES = [name for name in CASES if name.startswith(("parquet", "csv", "arrow"))]

#: the output format each case writes, varied so every writer's abort path is exercised
SUFFIXES = (".npy", ".npz", ".h5")


@pytest.mark.parametrize("name", list(CASES))
def test_pad_refuses(name: str, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    case = CASES[name](inputs)
    suffix = SUFFIXES[list(CASES).index(name) % len(SUFFIXES)]
    proc = run_cli("pad", case.src, "-o", out / f"x{suffix}", *case.args, input=case.stdin,
                   timeout=30)
    line = assert_refused(proc, *case.needles, folder=out)
    for word in case.forbidden:
        assert word not in line.lower(), line
    assert proc.stdout == b""


#: inspect reads containers through its own listing too; the "-late" cases need pad's blocks
INSPECTED = [name for name in CASES if not name.endswith("-late")
             and name.startswith(("npz", "h5", "text", "fifo", "manifest", "parquet", "csv",
                                  "arrow"))]


@pytest.mark.parametrize("name", INSPECTED)
def test_inspect_refuses(name: str, tmp_path: Path) -> None:
    case = CASES[name](tmp_path)
    proc = run_cli("inspect", case.src, *case.args, input=case.stdin, timeout=30)
    assert_refused(proc, *case.needles)


@pytest.mark.parametrize("name", TABLE_CASES)
def test_hostile_table_memory_is_bounded(name: str, tmp_path: Path) -> None:
    """A hostile table is refused within bounded memory: peak RSS of the whole run (pyarrow's
    import is ~115 MB of it) under the SPEC's 300 MB, however much the file declares."""
    case = CASES[name](tmp_path)
    code, peak_mb, stderr = peak_rss("pad", case.src, "-o", tmp_path / "x.npy", *case.args,
                                     timeout=60)
    assert code == 1 and stderr.startswith("Error: ") and stderr.count("\n") == 1, stderr
    assert peak_mb < 300, f"{name}: peak RSS {peak_mb} MB"


def test_unreadable_file(tmp_path: Path) -> None:
    path = good_npy(tmp_path, "secret.npy")
    path.chmod(0)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("pad", path, "-o", out / "x.npy", preexec_fn=unprivileged_preexec())
    assert_refused(proc, "secret.npy", "permission denied", folder=out)


def test_declared_size_is_refused_before_allocating(tmp_path: Path) -> None:
    """A header declaring 4e15 bytes under a 2 GB address-space limit: refused by the size
    check, not a MemoryError (which would mean it tried to allocate)."""
    case = declares_more_than_file(tmp_path)
    code = ("import resource, sys, runpy; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31));"
            "sys.argv = ['lstmshape', 'inspect', sys.argv[1]]; runpy.run_module('lstmshape', "
            "run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, case.src], capture_output=True,
                          timeout=60)
    assert_refused(proc, "liar.npy", "truncated")


def test_deeply_nested_manifest_is_ignored(tmp_path: Path) -> None:
    """A manifest too deep for json to parse is not lstmshape's: ignored, as invalid JSON is."""
    path = good_npy(tmp_path, "data.npy")
    (tmp_path / "data.npy.json").write_text("[" * 100_000 + "]" * 100_000)
    out = tmp_path / "out"
    out.mkdir()
    assert_ok(run_cli("pad", path, "-o", out / "x.npy"))


def test_nan_refused_when_asked(tmp_path: Path) -> None:
    """``--nan error``: NaN/inf in the data is refused, naming where."""
    data = np.ones((2, 3, 1), np.float32)
    data[1, 2, 0] = np.nan
    np.save(tmp_path / "nan.npy", data)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("pad", tmp_path / "nan.npy", "--nan", "error", "-o", out / "x.npy")
    assert_refused(proc, "nan.npy", "nan", folder=out)


# ---------------------------------------------------------------------------------------------
# HDF5 file locking: what HDF5 1.10+ really does


WRITER = """
import sys, time, h5py
h5 = h5py.File(sys.argv[1], "a")   # holds HDF5's exclusive lock while open
h5["x"][0, 0, 0] = 7.0
h5.flush()
print("open", flush=True)
sys.stdin.read()                   # until the test closes our stdin
h5.close()
"""


def test_h5_locked_by_writer(tmp_path: Path) -> None:
    """HDF5 locks a file opened for writing (flock, unless HDF5_USE_FILE_LOCKING=FALSE). A
    reader is refused with one line saying so; with locking disabled by the user, the reader
    gets what the writer has flushed -- still a clean success or one Error line."""
    path = tmp_path / "live.h5"
    with h5py.File(path, "w") as h5:
        h5["x"] = np.zeros((2, 3, 4))
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == b"open"
        proc = run_cli("pad", path, "-o", out / "x.npy", env=env)
        assert_refused(proc, "live.h5", "locked", folder=out)
        unlocked = run_cli("inspect", path, "--json", env={"HDF5_USE_FILE_LOCKING": "FALSE"})
        assert_ok(unlocked)
        assert b'"samples": 2' in unlocked.stdout
    finally:
        writer.communicate(timeout=30)
    assert writer.returncode == 0
    assert_ok(run_cli("pad", path, "-o", out / "x.npy"))  # the lock is gone with the writer
