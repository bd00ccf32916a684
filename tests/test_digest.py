"""Input hashing from the bytes a command reads (issue 4: "hash each chunk while it is in memory
anyway ... rather than reading any file twice"), and early writeback of outputs.

The manifest's input sha256 must be that of the whole file whatever a command reads, in whatever
order: a digest fed blocks in order, out of order, overlapping, or not at all. And the readers
that can feed it must actually do so, or the optimisation silently disappears.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import random_sequences, write_ragged
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmshape.io.digest import DigestClosed, InputDigest, sha256_file
from lstmshape.io.source import open_source
from lstmshape.io.writeback import WRITEBACK_BYTES, WritebackFile, sync_file_range


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(str(path).split(":")[0]).read_bytes()).hexdigest()


# -- the digest on its own --------------------------------------------------------------------

@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=3000),
       reads=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 700)), max_size=12))
def test_any_reads_give_the_whole_files_sha256(tmp_path: Path, data: bytes,
                                               reads: list[tuple[int, int]]) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    digest = InputDigest(str(path))
    for offset, size in reads:
        offset = min(offset, len(data))
        block = np.frombuffer(data[offset:offset + size], dtype=np.uint8).copy()
        digest.observe(offset, block)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()  # asked twice: same answer


def test_unobserved_file_is_read_whole_and_observations_are_then_ignored(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 40_000)
    digest = InputDigest(str(path))
    digest.hash_whole_file()
    digest.observe(0, np.zeros(100, np.uint8))  # wrong bytes: must not count
    assert digest.hexdigest() == sha256_file(str(path)) == file_sha256(path)


def test_empty_blocks_of_any_shape_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abcdef" * 100)
    digest = InputDigest(str(path))
    for shape in [(0,), (0, 5, 3), (4, 0, 2), (3, 2, 0)]:
        digest.observe(10, np.zeros(shape, np.float32))
    assert digest.hexdigest() == file_sha256(path)


def test_a_file_replaced_mid_run_is_hashed_as_the_one_that_was_read(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    old = bytes(range(256)) * 64
    path.write_bytes(old)
    digest = InputDigest(str(path))  # opened before the readers, as Job.open does
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"z" * len(old))
    replacement.replace(path)  # e.g. an upstream Make step rewrote the input
    digest.observe(1000, np.frombuffer(old[1000:3000], np.uint8).copy())
    assert digest.hexdigest() == hashlib.sha256(old).hexdigest()


def test_close_stops_a_long_hash_and_a_closed_digest_gives_no_hash(tmp_path: Path) -> None:
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as handle:
        handle.truncate(4 << 30)  # 4 GB of holes: seconds to hash, no disk space used
    digest = InputDigest(str(path))
    digest.hash_whole_file()
    digest.close()
    hasher = [t for t in threading.enumerate() if t.name == "lstmshape-sha256-in"]
    for thread in hasher:
        thread.join(timeout=1.0)
        assert not thread.is_alive(), "close() must not wait for the rest of the file"
    with pytest.raises(DigestClosed):
        digest.hexdigest()
    unstarted = InputDigest(str(path))
    unstarted.close()
    with pytest.raises(DigestClosed):
        unstarted.hexdigest()


def test_an_unreadable_file_is_reported_when_the_hash_is_asked_for(tmp_path: Path) -> None:
    digest = InputDigest(str(tmp_path / "missing.bin"))
    digest.observe(0, np.zeros(8, np.uint8))
    with pytest.raises(FileNotFoundError):
        digest.hexdigest()


def test_a_closed_digest_leaves_no_thread_behind(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10_000)
    digest = InputDigest(str(path))
    digest.observe(100, np.frombuffer(b"x" * 100, np.uint8).copy())
    started = [t for t in threading.enumerate() if t.name == "lstmshape-sha256-in"]
    assert started  # the gap before offset 100 is being hashed on a thread
    digest.close()
    for thread in started:
        thread.join(timeout=5)
    # counted by name, not by active_count(): a thread of an earlier test (an output's cache
    # being released) may still be finishing and would make a count flaky
    assert not any(t.is_alive() for t in started)


# -- readers feed it ----------------------------------------------------------------------------

def observable_inputs(folder: Path) -> dict[str, str]:
    """Inputs whose bulk is raw bytes in the file: each reader that can feed a digest."""
    rng = np.random.default_rng(3)  # each input spans several 64 KB blocks of a 1 MiB budget
    seqs = random_sequences(rng, 1000, 60, 3, min_length=1)
    dense = rng.normal(size=(400, 50, 3)).astype(np.float32)
    np.save(folder / "dense.npy", dense)
    np.save(folder / "big_endian.npy", dense.astype(">f4"))
    np.save(folder / "series.npy", rng.normal(size=(20_000, 2)))
    with h5py.File(folder / "dense.h5", "w") as h5:
        h5["x"] = dense
    return {
        "npy": str(folder / "dense.npy"),
        "npy-big-endian": str(folder / "big_endian.npy"),
        "h5-dense": str(folder / "dense.h5"),
        "h5-lengths": write_ragged(folder, "h5-lengths", seqs, name="h5lengths"),
        "h5-offsets": write_ragged(folder, "h5-offsets", seqs, name="h5offsets"),
        "npz-lengths": write_ragged(folder, "npz-lengths", seqs, name="npzlengths"),
        "npz-row-splits": write_ragged(folder, "npz-row-splits", seqs, name="npzsplits"),
        "series": str(folder / "series.npy"),
    }


def unobservable_inputs(folder: Path) -> dict[str, str]:
    """Inputs whose rows are not the file's bytes: compressed, chunked, one array per sequence."""
    rng = np.random.default_rng(4)
    seqs = random_sequences(rng, 20, 30, 2, min_length=1)
    values = np.concatenate(seqs)
    lengths = np.array([len(s) for s in seqs])
    np.savez_compressed(folder / "compressed.npz", values=values, lengths=lengths)
    with h5py.File(folder / "chunked.h5", "w") as h5:
        h5.create_dataset("values", data=values, chunks=(16, 2), compression="gzip")
        h5["lengths"] = lengths
    return {
        "npz-compressed": str(folder / "compressed.npz"),
        "h5-chunked": str(folder / "chunked.h5"),
        "npz-savez": write_ragged(folder, "npz-savez", seqs, name="savez"),
        "h5-group": write_ragged(folder, "h5-group", seqs, name="group"),
    }


@pytest.mark.parametrize("kind", ["npy", "npy-big-endian", "h5-dense", "h5-lengths",
                                  "h5-offsets", "npz-lengths", "npz-row-splits", "series"])
def test_raw_readers_feed_the_digest(tmp_path: Path, kind: str) -> None:
    src = observable_inputs(tmp_path)[kind]
    digest = InputDigest(src.split(":")[0])
    with open_source(src, digest=digest, memory_limit=1 << 16, series=kind == "series") as source:
        assert digest.observed_bytes >= digest.size // 2, "rows stored raw must be observed"
        for start, stop in source.block_bounds(2_000):  # many small blocks, in order
            source.read_block(start, stop)
    assert digest.hexdigest() == file_sha256(src)


@pytest.mark.parametrize("kind", ["npz-compressed", "h5-chunked", "npz-savez", "h5-group"])
def test_other_readers_do_not_claim_to_feed_it(tmp_path: Path, kind: str) -> None:
    src = unobservable_inputs(tmp_path)[kind]
    digest = InputDigest(src.split(":")[0])
    with open_source(src, digest=digest) as source:
        assert digest.observed_bytes == 0
        source.read()
    digest.hash_whole_file()
    assert digest.hexdigest() == file_sha256(src)


# -- through the commands: every access pattern ----------------------------------------------

def command_runs(inputs: dict[str, str]) -> dict[str, list[str]]:
    return {
        "pad-h5": ["pad", inputs["h5-lengths"], "--maxlen", "10"],
        "pad-big-endian": ["pad", inputs["npy-big-endian"], "--maxlen", "12"],
        "truncate-split-npz": ["truncate", inputs["npz-lengths"], "--maxlen", "7",
                               "--overflow", "split"],
        "window-overlapping-reads": ["window", inputs["series"], "--timesteps", "40",
                                     "--stride", "3", "--target", "0", "--horizon", "2"],
        "batch-shuffled": ["batch", inputs["h5-offsets"], "--size", "7", "--shuffle",
                           "--seed", "5"],
        "batch-bucketed": ["batch", inputs["npz-row-splits"], "--size", "8",
                           "--bucket-by-length"],
        "add-feature-two-files": ["add-feature", inputs["h5-dense"], inputs["npy"]],
    }


@pytest.mark.parametrize("name", ["pad-h5", "pad-big-endian", "truncate-split-npz",
                                  "window-overlapping-reads", "batch-shuffled", "batch-bucketed",
                                  "add-feature-two-files"])
def test_manifest_input_hashes_match_the_files(tmp_path: Path, invoke, name: str) -> None:
    inputs = observable_inputs(tmp_path)
    out = tmp_path / "out.h5"
    result = invoke(*command_runs(inputs)[name], "-o", out, "--memory-limit", "1MiB", "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["inputs"]
    for entry in manifest["inputs"]:
        assert entry["sha256"] == file_sha256(tmp_path / entry["path"]), entry


def test_empty_sequences_and_empty_tensors(tmp_path: Path, invoke) -> None:
    """Blocks of zero rows (a run of empty sequences, no samples at all) are read too."""
    rng = np.random.default_rng(9)
    seqs = [rng.normal(size=(0 if rng.random() < 0.3 else 9, 3)).astype(np.float32)
            for _ in range(20_000)]
    ragged = write_ragged(tmp_path, "npz-lengths", seqs, name="holes")
    empty = write_ragged(tmp_path, "npz-lengths", [np.zeros((0, 2), np.float32)] * 5,
                         name="empty")
    np.save(tmp_path / "none.npy", np.zeros((0, 7, 2), np.float32))
    runs = [["batch", ragged, "--size", "32", "--shuffle", "-o", tmp_path / "b.npz"],
            ["truncate", ragged, "--maxlen", "4", "-o", tmp_path / "t.npz"],
            ["pad", empty, "--maxlen", "3", "-o", tmp_path / "p.npy"],
            ["pad", tmp_path / "none.npy", "--maxlen", "3", "-o", tmp_path / "q.npy"]]
    for argv in runs:
        result = invoke(*argv, "--memory-limit", "1MiB", "-q")
        assert result.exit_code == 0, (argv, result.output)
        manifest = json.loads(Path(f"{argv[-1]}.json").read_text())
        for entry in manifest["inputs"]:
            assert entry["sha256"] == file_sha256(tmp_path / entry["path"])


def test_two_keys_of_one_archive_share_one_correct_hash(tmp_path: Path, invoke) -> None:
    rng = np.random.default_rng(8)
    archive = tmp_path / "both.npz"
    np.savez(archive, base=rng.normal(size=(3000, 12, 2)), extra=rng.normal(size=(3000, 12)))
    out = tmp_path / "merged.npz"
    result = invoke("add-feature", f"{archive}:base", f"{archive}:extra", "-o", out,
                    "--memory-limit", "1MiB", "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads(Path(f"{out}.json").read_text())
    digests = {entry["sha256"] for entry in manifest["inputs"]}
    assert digests == {file_sha256(archive)}


# -- writeback --------------------------------------------------------------------------------

def test_writeback_file_writes_every_byte_in_order(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    chunks = [bytes([i]) * (WRITEBACK_BYTES // 3 + i) for i in range(8)]
    with open(path, "wb") as handle:
        out = WritebackFile(handle)
        for chunk in chunks:
            assert out.write(chunk) == len(chunk)
    assert path.read_bytes() == b"".join(chunks)
    assert out.started > 0 or sync_file_range() is None  # writeback was asked for on Linux


def test_without_ctypes_writes_just_happen(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    sync_file_range.cache_clear()
    monkeypatch.setitem(sys.modules, "ctypes", None)  # a Python built without _ctypes
    try:
        assert sync_file_range() is None
        with open(tmp_path / "out.bin", "wb") as handle:
            WritebackFile(handle).write(b"x" * (WRITEBACK_BYTES + 1))
        assert (tmp_path / "out.bin").stat().st_size == WRITEBACK_BYTES + 1
    finally:
        sync_file_range.cache_clear()


def test_writeback_file_on_a_pipe_just_writes(tmp_path: Path) -> None:
    import os

    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as handle, os.fdopen(read_end, "rb") as reader:
        out = WritebackFile(handle)
        assert out._start is None  # not a regular file: no writeback hint
        out.write(b"abc")
        handle.flush()
        assert reader.read(3) == b"abc"


# -- the output being replaced ------------------------------------------------------------------

def test_dropping_the_old_outputs_cache_never_blocks_or_changes_it(tmp_path: Path) -> None:
    import os

    from lstmshape.io.output import drop_page_cache

    old = tmp_path / "old.npy"
    np.save(old, np.arange(1000.0))
    before = old.read_bytes()
    drop_page_cache(str(old))
    assert old.read_bytes() == before  # only the cache goes, not the bytes
    os.mkfifo(tmp_path / "pipe.npy")
    drop_page_cache(str(tmp_path / "pipe.npy"))  # must return at once: not a regular file
    drop_page_cache(str(tmp_path / "missing.npy"))


def cached_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache, as util-linux's fincore counts them."""
    import shutil
    import subprocess

    if shutil.which("fincore") is None:
        pytest.skip("fincore (util-linux) is not installed")
    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def test_only_an_outputs_own_cache_is_dropped(tmp_path: Path) -> None:
    import os

    from lstmshape.io.output import drop_page_cache

    def fresh(name: str) -> Path:
        path = tmp_path / name
        with open(path, "wb") as handle:
            handle.write(os.urandom(4 << 20))
            os.fsync(handle.fileno())  # clean pages: dirty ones are not dropped
        path.read_bytes()
        return path

    plain = fresh("plain.npy")
    drop_page_cache(str(plain))
    if cached_bytes(plain):
        pytest.skip("this file system keeps files in memory (tmpfs): nothing to drop")
    target = fresh("target.npy")
    (tmp_path / "link.npy").symlink_to(target)
    drop_page_cache(str(tmp_path / "link.npy"))  # -o link.npy replaces the link, not the target
    assert cached_bytes(target) == 4 << 20
    (tmp_path / "second_name.npy").hardlink_to(target)
    drop_page_cache(str(tmp_path / "second_name.npy"))  # the other name still holds the bytes
    assert cached_bytes(target) == 4 << 20


def test_replacing_an_output_keeps_it_whole_until_the_new_one_is_in(tmp_path: Path,
                                                                     invoke) -> None:
    src = tmp_path / "in.npy"
    np.save(src, np.arange(600.0).reshape(20, 30))
    out = tmp_path / "out.npy"
    assert invoke("pad", src, "--maxlen", 25, "-o", out, "-q").exit_code == 0
    first = out.read_bytes()
    bad = invoke("pad", src, "--maxlen", 25, "--dtype", "int8", "-o", out, "-q")
    assert bad.exit_code == 1  # refused half-way (a lossy cast): the old output stays as it was
    assert out.read_bytes() == first
    assert invoke("pad", src, "--maxlen", 10, "-o", out, "-q").exit_code == 0
    np.testing.assert_array_equal(np.load(out)[:, :, 0], np.arange(600.0).reshape(20, 30)[:, :10])


def test_shards_are_hashed_in_turn_on_one_worker(tmp_path: Path, invoke: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder of small shards: every shard's sha256 is right, and all of them were hashed
    by one background worker -- not by the command's own thread, not a thread per file."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for index in range(30):
        np.save(folder / f"r{index}.npy", rng.standard_normal((int(rng.integers(1, 9)), 2)))
    hashed_by: dict[str, int] = {}
    real_hash = InputDigest._hash

    def spy(self: InputDigest) -> None:
        hashed_by[Path(self.path).name] = threading.get_ident()
        real_hash(self)

    monkeypatch.setattr(InputDigest, "_hash", spy)
    monkeypatch.setenv("LSTMSHAPE_NO_DIGEST_CACHE", "1")
    out = tmp_path / "out.npy"
    assert invoke("pad", folder, "--layout", "series", "-o", out).exit_code == 0
    inputs = json.loads(Path(f"{out}.json").read_text())["inputs"]
    assert len(inputs) == 30
    for entry in inputs:
        assert entry["sha256"] == file_sha256(folder / Path(entry["path"]).name)
    shard_threads = {hashed_by[f"r{index}.npy"] for index in range(30)}
    assert len(shard_threads) == 1 and threading.get_ident() not in shard_threads


def test_shards_waiting_to_be_hashed_hold_no_open_file(tmp_path: Path, invoke: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """When the worker starts on the first shard, every shard's digest is already queued: none
    of them may hold its file open meanwhile (the readers hold one each already; 600 shards
    under `ulimit -n 1024` ran out of descriptors)."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    for index in range(200):
        np.save(folder / f"r{index}.npy", np.full((3, 2), index, np.float32))
    open_files: list[int] = []
    real_hash = InputDigest._hash

    def spy(self: InputDigest) -> None:
        if not open_files:
            open_files.append(len(os.listdir("/proc/self/fd")))
        real_hash(self)

    monkeypatch.setattr(InputDigest, "_hash", spy)
    monkeypatch.setenv("LSTMSHAPE_NO_DIGEST_CACHE", "1")
    before = len(os.listdir("/proc/self/fd"))
    out = tmp_path / "out.npz"
    assert invoke("pad", folder, "--layout", "series", "-o", out).exit_code == 0
    assert open_files and open_files[0] - before < 200 + 40  # the readers' 200, not 400
    inputs = json.loads(Path(f"{out}.json").read_text())["inputs"]
    assert [entry["sha256"] for entry in inputs] == [
        file_sha256(folder / f"r{index}.npy") for index in range(200)]


def test_a_shard_replaced_before_its_turn_is_an_error_not_a_wrong_hash(
        tmp_path: Path) -> None:
    """The hasher reopens a shard at its turn: a different file there by then is refused."""
    from lstmshape.io.digest import hash_in_turn

    path = tmp_path / "a.npy"
    np.save(path, np.zeros(3))
    digest = InputDigest(str(path))
    assert digest.claim_whole_file()
    replacement = tmp_path / "b.npy"
    np.save(replacement, np.ones(3))
    os.replace(replacement, path)
    hash_in_turn([digest])  # already claimed: nothing more to start
    digest._hash()
    with pytest.raises(OSError, match="changed while lstmshape read it"):
        digest.hexdigest()
