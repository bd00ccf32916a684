"""Chunked HDF5 inputs are hashed from the blocks read when their chunks are raw rows in file
order (issue 10: "uncompressed chunks lie in file order and can be hashed from the blocks read,
like a contiguous dataset"), and by reading the whole file otherwise; the sha256 is right either
way. Which path ran is measured: the bytes the digest itself reads from the file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from lstmshape.io import digest as digest_module
from lstmshape.io import h5 as h5_module
from lstmshape.io.digest import InputDigest
from lstmshape.io.source import open_source

ROWS, FEATURES, CHUNK = 50_003, 8, 2048  # not a multiple of the chunk: the last one is partial
VALUES = np.random.default_rng(7).normal(size=(ROWS, FEATURES)).astype(np.float32)
LENGTHS = np.full(ROWS // 7, 7, np.int64)
LENGTHS[-1] += ROWS - int(LENGTHS.sum())


def in_order(h5: h5py.File) -> None:
    h5.create_dataset("values", data=VALUES, chunks=(CHUNK, FEATURES))


def resized_while_written(h5: h5py.File) -> None:  # how an appending logger writes
    dataset = h5.create_dataset("values", (0, FEATURES), np.float32, chunks=(CHUNK, FEATURES),
                                maxshape=(None, FEATURES))
    for start in range(0, ROWS, 3000):
        dataset.resize(min(ROWS, start + 3000), axis=0)
        dataset[start:start + 3000] = VALUES[start:start + 3000]


def apart(h5: h5py.File) -> None:  # in order, with another dataset's chunks between them
    dataset = h5.create_dataset("values", VALUES.shape, np.float32, chunks=(CHUNK, FEATURES))
    other = h5.create_dataset("other", (4096,), np.int16, chunks=(16,))
    for index, start in enumerate(range(0, ROWS, CHUNK)):
        dataset[start:start + CHUNK] = VALUES[start:start + CHUNK]
        other[index * 16:(index + 1) * 16] = index


def reversed_chunks(h5: h5py.File) -> None:
    dataset = h5.create_dataset("values", VALUES.shape, np.float32, chunks=(CHUNK, FEATURES))
    for start in reversed(range(0, ROWS, CHUNK)):
        dataset[start:start + CHUNK] = VALUES[start:start + CHUNK]


def column_chunks(h5: h5py.File) -> None:  # chunks=True splits the 8 features here
    h5.create_dataset("values", data=VALUES, chunks=True)
    assert h5["values"].chunks[1] < FEATURES


def shuffled(h5: h5py.File) -> None:  # a filter, though no compression
    h5.create_dataset("values", data=VALUES, chunks=(CHUNK, FEATURES), shuffle=True)


def compressed(h5: h5py.File) -> None:
    h5.create_dataset("values", data=VALUES, chunks=(CHUNK, FEATURES), compression="gzip")


def partly_written(h5: h5py.File) -> None:  # unwritten chunks read as the fill value
    dataset = h5.create_dataset("values", VALUES.shape, np.float32, chunks=(CHUNK, FEATURES))
    dataset[:ROWS // 2] = VALUES[:ROWS // 2]


def tiny_chunks(h5: h5py.File) -> None:  # 512 bytes a chunk: looking them up costs more
    h5.create_dataset("values", data=VALUES, chunks=(16, FEATURES))


FROM_BLOCKS: dict[str, Callable[[h5py.File], None]] = {
    "in-order": in_order, "resized-while-written": resized_while_written, "apart": apart}
WHOLE_FILE: dict[str, Callable[[h5py.File], None]] = {
    "reversed": reversed_chunks, "column-chunks": column_chunks, "shuffle-filter": shuffled,
    "gzip": compressed, "partly-written": partly_written, "tiny-chunks": tiny_chunks}


def write(folder: Path, make: Callable[[h5py.File], None], userblock: int = 0) -> Path:
    path = folder / "seqs.h5"
    with h5py.File(path, "w", userblock_size=userblock) as h5:
        make(h5)
        h5["lengths"] = LENGTHS
    if userblock:
        with open(path, "r+b") as handle:
            handle.write(b"a user block the digest must hash too".ljust(userblock, b"!"))
    return path


@pytest.fixture
def file_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes the digest reads from the file itself (gaps, or the whole file), per read."""
    reads: list[int] = []
    real = digest_module.hash_range

    def counting(handle: Any, digest: Any, start: int, stop: int | None, *args: Any) -> int:
        end = real(handle, digest, start, stop, *args)
        reads.append(end - start)
        return end

    monkeypatch.setattr(digest_module, "hash_range", counting)
    return reads


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hash_as_a_command_does(path: Path) -> tuple[InputDigest, str]:
    digest = InputDigest(str(path))
    with open_source(str(path), digest=digest, memory_limit=1 << 20) as source:
        if digest.observed_bytes < digest_module.OBSERVED_SHARE * digest.size:
            digest.hash_whole_file()
        for start, stop in source.block_bounds(100_000):  # several blocks, each across chunks
            source.read_block(start, stop)
    return digest, digest.hexdigest()


@pytest.mark.parametrize("userblock", [0, 512])
@pytest.mark.parametrize("layout", sorted(FROM_BLOCKS))
def test_chunks_in_file_order_are_hashed_from_the_blocks_read(
        tmp_path: Path, file_reads: list[int], layout: str, userblock: int) -> None:
    path = write(tmp_path, FROM_BLOCKS[layout], userblock)
    digest, hexdigest = hash_as_a_command_does(path)
    assert hexdigest == sha256(path)
    assert digest.observed_bytes == VALUES.nbytes
    # what the digest read itself: metadata, lengths, the partial last chunk, other datasets
    assert sum(file_reads) < 0.2 * path.stat().st_size, file_reads
    with h5py.File(path) as h5:  # chunks that follow each other are one span: one piece a block
        first_rows, _ = h5_module.row_spans(h5["values"], VALUES.shape, VALUES.dtype) or ([], [])
    assert 1 <= len(first_rows) <= (1 if layout != "apart" else -(-ROWS // CHUNK))


@pytest.mark.parametrize("layout", sorted(WHOLE_FILE))
def test_other_chunk_layouts_are_hashed_by_reading_the_file(
        tmp_path: Path, file_reads: list[int], layout: str) -> None:
    path = write(tmp_path, WHOLE_FILE[layout])
    digest, hexdigest = hash_as_a_command_does(path)
    assert hexdigest == sha256(path)
    assert digest.observed_bytes == 0
    assert sum(file_reads) == path.stat().st_size


def test_too_many_chunks_are_hashed_by_reading_the_file(
        tmp_path: Path, file_reads: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h5_module, "MAX_MAPPED_CHUNKS", 24)  # in-order has 25
    path = write(tmp_path, in_order)
    digest, hexdigest = hash_as_a_command_does(path)
    assert hexdigest == sha256(path) and digest.observed_bytes == 0
    assert sum(file_reads) == path.stat().st_size


@pytest.mark.parametrize("layout", ["in-order", "apart", "reversed", "column-chunks"])
def test_pad_records_the_sha256_of_a_chunked_input(tmp_path: Path, invoke: Any,
                                                   file_reads: list[int], layout: str) -> None:
    path = write(tmp_path, {**FROM_BLOCKS, **WHOLE_FILE}[layout])
    out = tmp_path / "x.npy"
    result = invoke("pad", path, "--maxlen", 5, "--memory-limit", "1MiB", "-o", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["inputs"][0]["sha256"] == sha256(path)
    read_whole = sum(file_reads) >= path.stat().st_size
    assert read_whole == (layout not in FROM_BLOCKS)
