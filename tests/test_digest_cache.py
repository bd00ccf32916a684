"""The stat-keyed digest cache (issue 15): each file of a pipeline hashed once, nothing trusted
that changed, and a cache that cannot be used is never an error.

Whether a cached input is read for hashing is measured, not inferred from equal outputs: the
:class:`InputDigest` of every input counts the bytes it fed to sha256 (``hashed_bytes``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_lstmshape, run_python

import lstmshape.job
from lstmshape.commands.truncate import truncate_file
from lstmshape.io.digest import InputDigest
from lstmshape.io.digest_cache import (
    DB_NAME,
    DigestCache,
    cache_info,
    clock_tick_ns,
    identity,
    racy,
    timestamp_granularity_ns,
)
from lstmshape.job import IOOptions


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def settle() -> None:
    """Wait until files written so far are older than one timestamp granule (not racy)."""
    time.sleep(2 * clock_tick_ns() / 1e9 + 0.005)


def make_input(path: Path, seed: int = 0, samples: int = 300) -> Path:
    rng = np.random.default_rng(seed)
    np.save(path, rng.normal(size=(samples, 40, 3)).astype(np.float32))
    return path


def manifest_sha(output: Path, role: str | None = None) -> dict[str, str]:
    """``{"input": sha of the first input, role: sha of that output}`` from OUTPUT.json."""
    data = json.loads(Path(f"{output}.json").read_text())
    found = {"input": data["inputs"][0]["sha256"]}
    for name, entry in data["outputs"].items():
        found[name] = entry["sha256"]
    return found


@pytest.fixture
def digests(monkeypatch: pytest.MonkeyPatch) -> list[InputDigest]:
    """A spy: every InputDigest the job creates (a subclass that only remembers them)."""
    created: list[InputDigest] = []

    class Spy(InputDigest):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(lstmshape.job, "InputDigest", Spy)
    return created


def cache_rows(folder: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(folder / DB_NAME)) as db:
        return db.execute("SELECT device, inode, size, mtime_ns, ctime_ns, hex(sha256) "
                          "FROM digests").fetchall()


# -- each file is hashed once ---------------------------------------------------------------

def test_an_output_is_not_hashed_again_when_the_next_step_reads_it(
        tmp_path: Path, digests: list[InputDigest]) -> None:
    source = make_input(tmp_path / "raw.npy", samples=3000)  # 1.4 MB
    settle()
    truncate_file(str(source), IOOptions(str(tmp_path / "a.npy")), maxlen=30)
    first = digests[-1]
    assert not first.cached and first.hashed_bytes == source.stat().st_size  # never seen
    truncate_file(str(tmp_path / "a.npy"), IOOptions(str(tmp_path / "b.npy")), maxlen=20)
    second = digests[-1]
    assert second.cached and second.hashed_bytes == 0  # recorded when it was written
    assert manifest_sha(tmp_path / "b.npy")["input"] == sha256_of(tmp_path / "a.npy")
    # a re-run on the unchanged raw input: not hashed either (it was recorded as an input)
    truncate_file(str(source), IOOptions(str(tmp_path / "a2.npy")), maxlen=25)
    assert digests[-1].cached and digests[-1].hashed_bytes == 0
    assert manifest_sha(tmp_path / "a2.npy")["input"] == sha256_of(source)
    # the readers still read what the command needs: the output is right
    assert np.array_equal(np.load(tmp_path / "a2.npy"), np.load(source)[:, :25])


def test_no_digest_cache_option_and_environment_hash_everything(
        tmp_path: Path, digests: list[InputDigest], digest_cache_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_input(tmp_path / "raw.npy")
    settle()
    truncate_file(str(source), IOOptions(str(tmp_path / "a.npy")), maxlen=30)
    truncate_file(str(source), IOOptions(str(tmp_path / "b.npy"), digest_cache=False),
                  maxlen=30)
    assert not digests[-1].cached and digests[-1].hashed_bytes == source.stat().st_size
    monkeypatch.setenv("LSTMSHAPE_NO_DIGEST_CACHE", "1")
    truncate_file(str(source), IOOptions(str(tmp_path / "c.npy")), maxlen=30)
    assert not digests[-1].cached and digests[-1].hashed_bytes == source.stat().st_size
    # and nothing was recorded by those two runs (only raw.npy and a.npy's two files)
    assert len(cache_rows(digest_cache_dir)) == 3
    done = run_lstmshape("truncate", source, "--maxlen", "5", "-o", tmp_path / "d.npy",
                         "--no-digest-cache", env={"LSTMSHAPE_NO_DIGEST_CACHE": ""})
    assert done.returncode == 0, done.stderr
    assert len(cache_rows(digest_cache_dir)) == 3


# -- nothing that changed is trusted ------------------------------------------------------------

def change_in_place_keeping_size_and_mtime(path: Path) -> None:
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(before.st_size - 8)
        handle.write(b"\x01\x02\x03\x04\x05\x06\x07\x08")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == \
        (before.st_size, before.st_mtime_ns, before.st_ino)
    assert after.st_ctime_ns != before.st_ctime_ns


def test_a_file_changed_in_place_with_its_mtime_put_back_is_hashed_again(
        tmp_path: Path, digests: list[InputDigest]) -> None:
    source = make_input(tmp_path / "raw.npy")
    settle()
    truncate_file(str(source), IOOptions(str(tmp_path / "a.npy")), maxlen=30)
    settle()
    change_in_place_keeping_size_and_mtime(source)  # only the ctime tells
    truncate_file(str(source), IOOptions(str(tmp_path / "b.npy")), maxlen=30)
    assert not digests[-1].cached
    assert manifest_sha(tmp_path / "b.npy")["input"] == sha256_of(source)
    assert manifest_sha(tmp_path / "b.npy")["input"] != manifest_sha(tmp_path / "a.npy")["input"]


def test_an_output_changed_in_place_is_hashed_again_by_the_next_step(tmp_path: Path) -> None:
    source = make_input(tmp_path / "raw.npy")
    assert run_lstmshape("truncate", source, "--maxlen", "30", "-o",
                         tmp_path / "a.npy").returncode == 0
    settle()
    change_in_place_keeping_size_and_mtime(tmp_path / "a.npy")
    done = run_lstmshape("truncate", tmp_path / "a.npy", "--maxlen", "20", "-o",
                         tmp_path / "b.npy", "--manifest", tmp_path / "b.json")
    # a.npy no longer matches its manifest: the check that refuses it needs the true hash
    assert done.returncode == 1 and "does not match its manifest" in done.stderr.decode()


def test_a_file_replaced_by_rename_is_hashed_again(tmp_path: Path,
                                                   digests: list[InputDigest]) -> None:
    source = make_input(tmp_path / "raw.npy", seed=1)
    settle()
    truncate_file(str(source), IOOptions(str(tmp_path / "a.npy")), maxlen=30)
    old = source.stat()
    replacement = make_input(tmp_path / "new.npy", seed=2)  # same size
    os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns))
    replacement.replace(source)
    settle()
    truncate_file(str(source), IOOptions(str(tmp_path / "b.npy")), maxlen=30)
    assert not digests[-1].cached
    assert manifest_sha(tmp_path / "b.npy")["input"] == sha256_of(source)


def test_hard_links_and_symlinks_to_a_cached_file_get_its_digest(
        tmp_path: Path, digests: list[InputDigest]) -> None:
    source = make_input(tmp_path / "raw.npy")
    settle()
    truncate_file(str(source), IOOptions(str(tmp_path / "a.npy")), maxlen=30)
    expected = sha256_of(source)
    (tmp_path / "soft.npy").symlink_to(source)
    truncate_file(str(tmp_path / "soft.npy"), IOOptions(str(tmp_path / "b.npy")), maxlen=30)
    assert digests[-1].cached  # the same file, the same stat
    assert manifest_sha(tmp_path / "b.npy")["input"] == expected
    os.link(source, tmp_path / "hard.npy")  # a new link changes the ctime: hashed again
    truncate_file(str(tmp_path / "hard.npy"), IOOptions(str(tmp_path / "c.npy")), maxlen=30)
    assert manifest_sha(tmp_path / "c.npy")["input"] == expected
    settle()
    truncate_file(str(tmp_path / "hard.npy"), IOOptions(str(tmp_path / "d.npy")), maxlen=30)
    truncate_file(str(source), IOOptions(str(tmp_path / "e.npy")), maxlen=30)
    assert digests[-1].cached and manifest_sha(tmp_path / "e.npy")["input"] == expected


def fake_stat(stamp_ns: int, inode: int = 7, size: int = 100,
              ctime_ns: int | None = None) -> os.stat_result:
    """A stat whose mtime and ctime are ``stamp_ns`` (as a file system with that precision
    would give it)."""
    ctime = stamp_ns if ctime_ns is None else ctime_ns
    return os.stat_result((0o100644, inode, 1, 1, 0, 0, size, 0, 0, 0, 0, 0, 0,
                           stamp_ns, stamp_ns, ctime))


def test_a_record_within_the_timestamp_granularity_is_not_trusted(
        tmp_path: Path, digest_cache_dir: Path) -> None:
    tick = clock_tick_ns()
    stamp = 1_700_000_000_123_456_789  # nanosecond stamps: the kernel's clock tick counts
    assert timestamp_granularity_ns(fake_stat(stamp)) == tick
    assert racy(fake_stat(stamp), stamp + tick - 1, tick)
    assert not racy(fake_stat(stamp), stamp + tick, tick)
    # an old mtime put back (os.utime, cp -p, tar x) with the change itself in the ctime
    assert racy(fake_stat(stamp - 10**10, ctime_ns=stamp), stamp + tick - 1, tick)
    seconds = 1_700_000_001_000_000_000  # whole-second stamps (ext3, HFS+): one second
    assert timestamp_granularity_ns(fake_stat(seconds)) == 10**9
    # remember() does not write a racy record ...
    cache = DigestCache(str(digest_cache_dir))
    cache.remember(fake_stat(stamp, inode=1), "ab" * 32, stamp + tick // 2)
    cache.remember(fake_stat(seconds, inode=2), "cd" * 32, seconds + 10**9 // 2)
    cache.remember(fake_stat(stamp, inode=3), "ef" * 32, stamp + tick)
    cache.flush()
    assert [row[1] for row in cache_rows(digest_cache_dir)] == [3]
    assert cache.lookup(fake_stat(stamp, inode=3)) == "ef" * 32
    # ... and lookup() does not trust one written anyway (by hand here) ...
    insert_row(digest_cache_dir, fake_stat(stamp, inode=4), recorded_ns=stamp + tick - 1,
               granularity_ns=tick)
    assert cache.lookup(fake_stat(stamp, inode=4)) is None
    assert cache.lookup(fake_stat(stamp, inode=5)) is None  # never recorded
    # ... nor one of a stat that differs in any field of the key, however old
    insert_row(digest_cache_dir, fake_stat(stamp - 1, inode=6), recorded_ns=stamp + 10**10,
               granularity_ns=tick)
    insert_row(digest_cache_dir, fake_stat(stamp, inode=7), recorded_ns=stamp + 10**10,
               granularity_ns=tick)
    assert cache.lookup(fake_stat(stamp, inode=7)) == "00" * 32  # the control: trusted
    assert cache.lookup(fake_stat(stamp - 1, inode=6, ctime_ns=stamp)) is None  # ctime only
    assert cache.lookup(fake_stat(stamp, inode=7, size=101)) is None


def insert_row(folder: Path, info: os.stat_result, recorded_ns: int,
               granularity_ns: int) -> None:
    """Write a record by hand, as no lstmshape would (racy, or of a stat that is not now)."""
    with contextlib.closing(sqlite3.connect(folder / DB_NAME)) as db, db:
        db.execute("INSERT INTO digests VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                   (*identity(info), bytes(32), recorded_ns, granularity_ns))


def test_a_file_modified_just_before_it_is_read_is_not_recorded(
        tmp_path: Path, digests: list[InputDigest], digest_cache_dir: Path) -> None:
    warm = make_input(tmp_path / "warm.npy")  # imports done: the next run starts at once
    truncate_file(str(warm), IOOptions(str(tmp_path / "w.npy"), no_manifest=True), maxlen=30)
    source = make_input(tmp_path / "raw.npy")  # no settle(): within one tick of the run
    truncate_file(str(source), IOOptions(str(tmp_path / "a.npy")), maxlen=30)
    digest = digests[-1]
    assert digest.stat is not None
    if not racy(digest.stat, digest.stat_time_ns, timestamp_granularity_ns(digest.stat)):
        late = digest.stat_time_ns - max(digest.stat.st_mtime_ns, digest.stat.st_ctime_ns)
        pytest.skip(f"the run read the file {late / 1e6:.1f} ms after it was written: more "
                    f"than one granule")
    inodes = [row[1] for row in cache_rows(digest_cache_dir)]
    assert source.stat().st_ino not in inodes and (tmp_path / "a.npy").stat().st_ino in inodes


def test_a_file_stamped_in_the_future_is_not_recorded(tmp_path: Path, digest_cache_dir: Path,
                                                      digests: list[InputDigest]) -> None:
    """A stamp ahead of this machine's clock (an NFS server's clock ahead of ours) is as racy
    as a recent one: a change in the next granules could keep it."""
    source = make_input(tmp_path / "raw.npy")
    ahead = time.time_ns() + 10**10
    os.utime(source, ns=(ahead, ahead))
    settle()
    truncate_file(str(source), IOOptions(str(tmp_path / "a.npy")), maxlen=30)
    truncate_file(str(source), IOOptions(str(tmp_path / "b.npy")), maxlen=30)
    assert not digests[-1].cached and digests[-1].hashed_bytes == source.stat().st_size
    assert source.stat().st_ino not in [row[1] for row in cache_rows(digest_cache_dir)]


def test_an_output_replaced_after_its_rename_is_not_recorded(tmp_path: Path,
                                                             digest_cache_dir: Path) -> None:
    ours, theirs = tmp_path / "ours.bin", tmp_path / "out.bin"
    ours.write_bytes(b"ours")
    before = ours.stat()  # what OutputSet.commit keeps, just before the rename
    ours.replace(theirs)
    cache = DigestCache(str(digest_cache_dir))
    other = tmp_path / "other.bin"
    other.write_bytes(b"them")
    other.replace(theirs)  # another process renamed its file over ours in the meantime
    cache.record_outputs([(str(theirs), sha256_of_bytes(b"ours"), before)])
    cache.lookup(before)  # (creates the database)
    cache.flush()
    assert cache_rows(digest_cache_dir) == []
    theirs.write_bytes(b"ours")
    fresh = theirs.stat()
    cache.record_outputs([(str(theirs), sha256_of_bytes(b"ours"), fresh)])  # the control
    cache.flush()
    assert [row[:2] for row in cache_rows(digest_cache_dir)] == [identity(fresh)[:2]]


def sha256_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- verify never trusts the cache --------------------------------------------------------------

def test_verify_hashes_every_file_whatever_the_cache_says(tmp_path: Path,
                                                          digest_cache_dir: Path) -> None:
    source = make_input(tmp_path / "raw.npy")
    out = tmp_path / "a.npy"
    assert run_lstmshape("truncate", source, "--maxlen", "30", "-o", out).returncode == 0
    recorded = sha256_of(out)
    settle()
    change_in_place_keeping_size_and_mtime(out)
    settle()
    # A corruption that stat cannot see (a flipped bit on disk): the cache holds the old hash
    # for the file's current stat, so everything that trusts the cache is fooled ...
    cache = DigestCache(str(digest_cache_dir))
    stat_time = time.time_ns()
    cache.remember(out.stat(), recorded, stat_time)
    cache.flush()
    assert InputDigest(str(out), cache).hexdigest() == recorded != sha256_of(out)
    # ... but verify is not
    done = run_lstmshape("verify", out, "--no-model")
    assert done.returncode == 1
    assert "sha256" in done.stderr.decode() and "differs" in done.stderr.decode()


# -- a cache that cannot be used is never an error ------------------------------------------

def warnings_in(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines() if line.startswith("Warning:")]


def check_run(tmp_path: Path, source: Path, name: str,
              env: dict[str, str] | None = None, wrap: list[str] | None = None
              ) -> subprocess.CompletedProcess[bytes]:
    """Run truncate on ``source`` (optionally inside ``wrap``, a shell prefix); check its exit
    and manifest."""
    out = tmp_path / name
    command = [sys.executable, "-m", "lstmshape", "truncate", str(source), "--maxlen", "30",
               "-o", str(out)]
    done = subprocess.run([*(wrap or []), *command], capture_output=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    shas = manifest_sha(out)
    assert shas["input"] == sha256_of(source) and shas["x"] == sha256_of(out)
    return done


def test_a_garbage_cache_file_is_rebuilt_with_one_warning(tmp_path: Path,
                                                          digest_cache_dir: Path) -> None:
    source = make_input(tmp_path / "raw.npy")
    (digest_cache_dir / DB_NAME).write_bytes(b"not a database, just garbage " * 200)
    done = check_run(tmp_path, source, "a.npy")
    warned = warnings_in(done.stderr)
    assert len(warned) == 1 and "damaged" in warned[0] and "started a new one" in warned[0]
    assert cache_info(str(digest_cache_dir))["entries"] >= 2  # rebuilt, and in use
    assert warnings_in(check_run(tmp_path, source, "b.npy").stderr) == []


def test_a_cache_path_that_is_not_a_folder_warns_once(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    source = make_input(tmp_path / "raw.npy")
    done = check_run(tmp_path, source, "a.npy", env={"LSTMSHAPE_CACHE_DIR": str(blocker)})
    warned = warnings_in(done.stderr)
    assert len(warned) == 1 and "digest cache" in warned[0] and "cannot be used" in warned[0]


def test_a_cache_locked_by_another_process_is_not_an_error(tmp_path: Path,
                                                          digest_cache_dir: Path) -> None:
    source = make_input(tmp_path / "raw.npy")
    settle()
    check_run(tmp_path, source, "a.npy")  # the database exists
    with contextlib.closing(sqlite3.connect(digest_cache_dir / DB_NAME,
                                            isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")  # holds the write lock for the whole run
        start = time.monotonic()
        done = check_run(tmp_path, source, "b.npy")
        waited = time.monotonic() - start
        db.execute("ROLLBACK")
    warned = warnings_in(done.stderr)
    assert len(warned) == 1 and "locked" in warned[0], done.stderr
    assert waited < 30


def namespace_or_skip() -> list[str]:
    """A shell prefix that runs a command as root of its own mount namespace (mounts there are
    seen by nothing else, and go when it ends)."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rm", "true"],
                                         capture_output=True).returncode:
        pytest.skip("no unprivileged mount namespace (unshare -rm) here")
    return [unshare, "-rm", "sh", "-ec"]


def in_namespace(setup: str) -> list[str]:
    """``sh -c 'SETUP; exec "$@"' sh COMMAND...`` inside a new mount namespace."""
    return [*namespace_or_skip(), f'{setup}\nexec "$@"', "sh"]


def test_a_read_only_cache_folder_is_not_an_error(tmp_path: Path,
                                                  digest_cache_dir: Path) -> None:
    source = make_input(tmp_path / "raw.npy")
    settle()
    check_run(tmp_path, source, "a.npy")  # the database exists, with records
    before = cache_rows(digest_cache_dir)
    if os.geteuid() != 0:
        digest_cache_dir.chmod(0o500)
        wrap = None
    else:  # root writes anywhere: a read-only bind mount of the folder instead
        folder = str(digest_cache_dir)
        wrap = in_namespace(f"mount --bind '{folder}' '{folder}'\n"
                            f"mount -o remount,bind,ro '{folder}'")
    try:
        done = check_run(tmp_path, source, "b.npy", wrap=wrap)
        done = check_run(tmp_path, tmp_path / "a.npy", "c.npy", wrap=wrap)
    finally:
        digest_cache_dir.chmod(0o700)
    assert len(warnings_in(done.stderr)) <= 1
    assert cache_rows(digest_cache_dir) == before


def test_a_cache_on_a_full_file_system_is_not_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    folder.mkdir()
    source = make_input(tmp_path / "raw.npy")
    settle()
    env = {"LSTMSHAPE_CACHE_DIR": str(folder / "cache")}
    # a 256 KiB tmpfs: the first run creates the database there, then the rest is filled up
    fill = (f"mount -t tmpfs -o size=256k tmpfs '{folder}'\n"
            f"\"$@\" >/dev/null 2>&1 || exit 3\n"  # the first run, as it is: the database
            f"dd if=/dev/zero of='{folder}/fill' bs=4096 2>/dev/null || true\n"
            f"sync")
    wrap = [*namespace_or_skip(), f'{fill}\nexec "$@"', "sh"]
    done = check_run(tmp_path, source, "a.npy", env=env, wrap=wrap)
    warned = warnings_in(done.stderr)
    assert len(warned) == 1 and "digest cache" in warned[0], done.stderr
    assert "full" in warned[0] or "disk" in warned[0] or "I/O" in warned[0], warned


def test_two_dozen_concurrent_commands_share_one_cache(tmp_path: Path,
                                                       digest_cache_dir: Path) -> None:
    sources = [make_input(tmp_path / f"in{i}.npy", seed=i, samples=200) for i in range(6)]
    settle()
    runs = []
    for index in range(24):
        out = tmp_path / f"out{index}.npy"
        runs.append((sources[index % 6], out, subprocess.Popen(
            [sys.executable, "-m", "lstmshape", "truncate", str(sources[index % 6]),
             "--maxlen", str(10 + index), "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    for source, out, process in runs:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        assert b"Traceback" not in stderr and len(warnings_in(stderr)) <= 1
        shas = manifest_sha(out)
        assert shas["input"] == sha256_of(source) and shas["x"] == sha256_of(out)
        assert shas["lengths"] == sha256_of(f"{out}.lengths.npy")
    # every record that describes a file as it is now has that file's hash
    files = {}
    for path in tmp_path.iterdir():
        info = path.stat()
        files[(info.st_dev, info.st_ino)] = (info, path)
    rows = cache_rows(digest_cache_dir)
    assert len(rows) >= 6
    for device, inode, size, mtime, ctime, sha in rows:
        info, path = files[(device, inode)]
        assert (info.st_size, info.st_mtime_ns, info.st_ctime_ns) == (size, mtime, ctime)
        assert sha.lower() == sha256_of(path)


# -- bounded size, cache info | clear -------------------------------------------------------

def test_the_least_recently_used_records_are_pruned(digest_cache_dir: Path) -> None:
    stamp = 1_700_000_000_123_456_789
    cache = DigestCache(str(digest_cache_dir), max_entries=10)
    for inode in range(1, 11):
        cache.remember(fake_stat(stamp, inode), f"{inode:064x}", stamp + 10**9)
        cache.flush()
    assert cache.lookup(fake_stat(stamp, 1)) == f"{1:064x}"  # used: now the most recent
    cache.flush()
    for inode in range(11, 14):  # three more: over the bound, pruned to 90% of it
        cache.remember(fake_stat(stamp, inode), f"{inode:064x}", stamp + 10**9)
    cache.flush()
    kept = sorted(row[1] for row in cache_rows(digest_cache_dir))
    assert kept == [1, 6, 7, 8, 9, 10, 11, 12, 13]


def test_at_most_one_warning_per_run(digest_cache_dir: Path) -> None:
    said: list[str] = []
    cache = DigestCache(str(digest_cache_dir), warn=said.append)
    (digest_cache_dir / DB_NAME).write_bytes(b"garbage" * 1000)
    assert cache.lookup(os.stat(__file__)) is None
    assert len(said) == 1 and "started a new one" in said[0]
    cache.close()
    (digest_cache_dir / DB_NAME).write_bytes(b"garbage" * 1000)  # damaged again: given up
    assert cache.lookup(os.stat(__file__)) is None
    cache.remember(fake_stat(1_700_000_000_123_456_789), "ab" * 32, 1_800_000_000 * 10**9)
    cache.flush()
    assert len(said) == 1 and (digest_cache_dir / DB_NAME).read_bytes().startswith(b"garbage")


def test_cache_info_and_clear(invoke: Any, tmp_path: Path, digest_cache_dir: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_input(tmp_path / "raw.npy")
    settle()
    assert invoke("truncate", source, "--maxlen", "30", "-o", tmp_path / "a.npy").exit_code == 0
    result = invoke("cache", "info")
    assert result.exit_code == 0
    assert f"path: {digest_cache_dir / DB_NAME}" in result.output
    assert "entries: 3 " in result.output and "enabled: yes" in result.output
    info = json.loads(invoke("cache", "info", "--json").output)
    assert info["entries"] == 3 and info["bytes"] > 0
    result = invoke("cache", "clear")
    assert result.exit_code == 0 and "removed 3 records" in result.output
    assert json.loads(invoke("cache", "info", "--json").output)["entries"] == 0
    monkeypatch.setenv("LSTMSHAPE_NO_DIGEST_CACHE", "1")
    assert "enabled: no" in invoke("cache", "info").output


def test_cache_clear_removes_a_damaged_database(invoke: Any, digest_cache_dir: Path) -> None:
    (digest_cache_dir / DB_NAME).write_bytes(b"garbage" * 1000)
    result = invoke("cache", "info")
    assert result.exit_code == 0 and "entries: unknown" in result.output
    result = invoke("cache", "clear")
    assert result.exit_code == 0 and "removed 0 records" in result.output
    assert not (digest_cache_dir / DB_NAME).exists()


def test_help_does_not_import_sqlite3() -> None:
    code = ("import sys; from lstmshape.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('SQLITE', 'sqlite3' in sys.modules, file=sys.stderr)")
    done = run_python(code)
    assert "SQLITE False" in done.stderr, done.stderr


@pytest.fixture(autouse=True)
def _no_leftover_modes(digest_cache_dir: Path) -> Iterator[None]:
    yield
    digest_cache_dir.chmod(0o700)  # so that pytest can remove it after a failed test
