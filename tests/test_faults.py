"""Faults around the output (issue 5), each through a real subprocess: an output that is an
input, an output folder that is missing or read-only, a full disk, SIGINT/SIGTERM/SIGHUP in the
middle of a long write, a closed stdout, two runs in one folder at once, and an existing output
that a failed run must leave as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import default_sigint, files_in
from hostile import assert_ok, assert_refused, run_cli, unprivileged_preexec

BIG_SHAPE = (2000, 1000, 12)  # 96 MB of float32: ~1000 blocks at a 1 MiB budget


def small_input(folder: Path, name: str = "in.npy") -> Path:
    path = folder / name
    rng = np.random.default_rng(7)
    np.save(path, rng.normal(size=(20, 30, 4)).astype(np.float32))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in files_in(folder)}


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One large input for the signal tests, removed afterwards (it is 96 MB)."""
    path = tmp_path_factory.mktemp("big") / "big.npy"
    np.save(path, np.ones(BIG_SHAPE, np.float32))
    yield path
    path.unlink()


# ---------------------------------------------------------------------------------------------
# The output is an input


def damaged_input(folder: Path) -> Path:
    """An input any read would reject as truncated: if the identity check did not come first,
    the error would be about the damage."""
    path = small_input(folder, "data.npy")
    path.write_bytes(path.read_bytes()[:-10])
    return path


@pytest.mark.parametrize("how", ["same-path", "symlink", "hard-link", "manifest-symlink"])
def test_output_is_an_input(how: str, tmp_path: Path) -> None:
    source = damaged_input(tmp_path)
    before = snapshot(tmp_path)
    args: list[object] = ["pad", source]
    if how == "same-path":
        args += ["-o", source]
        name = "data.npy"
    elif how == "symlink":
        (tmp_path / "alias.npy").symlink_to(source)
        args += ["-o", tmp_path / "alias.npy"]
        name = "alias.npy"
    elif how == "hard-link":
        os.link(source, tmp_path / "twin.npy")
        args += ["-o", tmp_path / "twin.npy"]
        name = "twin.npy"
    else:
        (tmp_path / "m.json").symlink_to(source)
        args += ["-o", tmp_path / "out.npy", "--manifest", tmp_path / "m.json"]
        name = "m.json"
    before = snapshot(tmp_path)
    proc = run_cli(*args)
    assert_refused(proc, name, "is the input", "data.npy")
    assert snapshot(tmp_path) == before


def test_side_output_is_an_input(tmp_path: Path) -> None:
    """``-o out.npy`` also writes ``out.npy.lengths.npy``: refused when that is an input."""
    source = small_input(tmp_path, "data.npy")
    os.link(source, tmp_path / "out.npy.lengths.npy")
    before = snapshot(tmp_path)
    proc = run_cli("pad", source, "-o", tmp_path / "out.npy")
    assert_refused(proc, "out.npy.lengths.npy", "is the input")
    assert snapshot(tmp_path) == before


def test_manifest_over_the_inputs_manifest(tmp_path: Path) -> None:
    """The input's own manifest ``IN.json`` is read too: writing over it is refused."""
    source = small_input(tmp_path, "data.npy")
    assert_ok(run_cli("pad", source, "-o", tmp_path / "step1.npy"))
    step1 = tmp_path / "step1.npy"
    before = snapshot(tmp_path)
    proc = run_cli("truncate", step1, "--maxlen", "5", "-o", tmp_path / "step2.npy",
                   "--manifest", tmp_path / "step1.npy.json")
    assert_refused(proc, "step1.npy.json", "is the input")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# The output folder


def test_missing_output_folder(tmp_path: Path) -> None:
    source = small_input(tmp_path)
    proc = run_cli("pad", source, "-o", tmp_path / "nowhere" / "x.npy")
    assert_refused(proc, "nowhere", "does not exist")
    assert not (tmp_path / "nowhere").exists()


def test_read_only_output_folder(tmp_path: Path) -> None:
    source = small_input(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        proc = run_cli("pad", source, "-o", out / "x.npy", preexec_fn=unprivileged_preexec())
    finally:
        out.chmod(0o755)
    assert_refused(proc, "x.npy", "not writable", folder=out)


def test_output_is_a_directory(tmp_path: Path) -> None:
    source = small_input(tmp_path)
    (tmp_path / "out.npy").mkdir()
    proc = run_cli("pad", source, "-o", tmp_path / "out.npy")
    assert_refused(proc, "out.npy", "directory", folder=tmp_path / "out.npy")


def test_unknown_output_suffix_leaves_nothing(tmp_path: Path) -> None:
    source = small_input(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("pad", source, "-o", out / "x.csv")
    # a usage error (exit 2, click's usage text): found before any file is opened
    stderr = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert "Error: Invalid value for '-o' / '--output'" in stderr and "suffix" in stderr
    assert files_in(out) == []


# ---------------------------------------------------------------------------------------------
# A full disk


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only, where mounting is allowed); skipped elsewhere -- the
    RLIMIT_FSIZE test below covers the same path for everyone."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def medium_input(folder: Path) -> Path:
    path = folder / "medium.npy"
    np.save(path, np.ones((100, 100, 80), np.float32))  # 3.2 MB: more than the tiny disk
    return path


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
def test_disk_full(suffix: str, tiny_fs: Path, tmp_path: Path) -> None:
    source = medium_input(tmp_path)
    proc = run_cli("pad", source, "-o", tiny_fs / f"x{suffix}", "--memory-limit", "1MiB")
    assert_refused(proc, f"x{suffix}", "no space left on device", folder=tiny_fs)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
def test_file_size_limit(suffix: str, tmp_path: Path) -> None:
    """RLIMIT_FSIZE (SIGXFSZ ignored, as Python does): each write past 1 MB fails with EFBIG."""
    source = medium_input(tmp_path)
    out = tmp_path / "out"
    out.mkdir()

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = run_cli("pad", source, "-o", out / f"x{suffix}", "--memory-limit", "1MiB",
                   preexec_fn=limit)
    assert_refused(proc, f"x{suffix}", "cannot write", folder=out)


# ---------------------------------------------------------------------------------------------
# Signals in the middle of a long write


def interrupt_mid_write(big_input: Path, out: Path, output: str, signum: int,
                        memory_limit: str = "1MiB") -> subprocess.CompletedProcess[bytes]:
    """Start ``pad``, wait until its temp file exists (so writing has begun), send ``signum``."""
    env = {**os.environ}
    env.pop("LSTMSHAPE_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "lstmshape", "pad", str(big_input), "-o",
                             str(out / output), "--memory-limit", memory_limit],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + 60
    try:
        while not any(name.endswith(".tmp") for name in os.listdir(out)):
            assert proc.poll() is None, "finished before its temp file was seen"
            assert time.monotonic() < deadline, "no temp file appeared"
            time.sleep(0.002)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


SIGNALS = [
    (signal.SIGINT, ".npy", 130, "interrupted"),
    (signal.SIGTERM, ".npy", 143, "terminated"),
    (signal.SIGTERM, ".h5", 143, "terminated"),
    (signal.SIGINT, ".npz", 130, "interrupted"),
    (signal.SIGHUP, ".npy", 129, "SIGHUP"),
]


@pytest.mark.parametrize(("signum", "suffix", "code", "word"), SIGNALS,
                         ids=[f"{s.name}-{x[1:]}" for s, x, _, _ in SIGNALS])
def test_signal_mid_write_leaves_nothing(signum: signal.Signals, suffix: str, code: int,
                                         word: str, big_input: Path, tmp_path: Path) -> None:
    """The run ends with the signal's exit code and one line; an output that existed before
    is left exactly as it was, and no temp file remains."""
    out = tmp_path / "out"
    out.mkdir()
    previous = small_input(tmp_path)
    assert_ok(run_cli("pad", previous, "-o", out / f"x{suffix}"))
    before = snapshot(out)
    proc = interrupt_mid_write(big_input, out, f"x{suffix}", signum)
    assert_refused(proc, word, code=code)
    assert snapshot(out) == before


# ---------------------------------------------------------------------------------------------
# stdout closed early


def test_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    """``lstmshape pad IN -o - | head -c 10``: head exits after 10 bytes; lstmshape stops with
    141 (SIGPIPE's code) and says nothing; the manifest it was asked for is not written."""
    source = tmp_path / "in.npy"
    np.save(source, np.ones((400, 100, 10), np.float32))  # 1.6 MB: more than a pipe holds
    script = (f'set -o pipefail; "{sys.executable}" -m lstmshape pad "{source}" -o - '
              f'--manifest "{tmp_path / "m.json"}" | head -c 10 | wc -c')
    proc = subprocess.run(["bash", "-c", script], capture_output=True, timeout=60)
    assert proc.stdout.split() == [b"10"]
    assert proc.stderr == b""
    assert proc.returncode == 141
    assert sorted(files_in(tmp_path)) == ["in.npy"]


def test_closed_stdout_exit_code_directly(tmp_path: Path) -> None:
    source = tmp_path / "in.npy"
    np.save(source, np.ones((400, 100, 10), np.float32))
    proc = subprocess.Popen([sys.executable, "-m", "lstmshape", "pad", str(source), "-o", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10).startswith(b"\x93NUMPY")
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert stderr == b""


def test_closed_stdout_of_inspect_is_141_too(tmp_path: Path) -> None:
    """``lstmshape inspect IN | head -1``: rich's own reaction to the closed pipe is exit 1."""
    source = tmp_path / "in.npy"
    np.save(source, np.ones((40, 10, 3), np.float32))
    proc = subprocess.Popen([sys.executable, "-m", "lstmshape", "inspect", str(source)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the table is printed
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert stderr == b""


def test_closed_stdout_or_stderr_descriptors_are_not_a_crash(tmp_path: Path) -> None:
    """``lstmshape ... >&-`` / ``2>&-`` (the descriptor closed, not a pipe): Python then has no
    sys.stdout / sys.stderr; the command still runs and its exit code still tells."""
    source = tmp_path / "in.npy"
    np.save(source, np.ones((4, 3, 2), np.float32))
    command = f'"{sys.executable}" -m lstmshape'
    ok = subprocess.run(["bash", "-c", f"{command} schema >&- 2>&-; echo rc=$?"],
                        capture_output=True, text=True, timeout=60)
    assert ok.stdout.strip() == "rc=0"
    made = subprocess.run(["bash", "-c", f'{command} pad "{source}" -o "{tmp_path / "o.npy"}" '
                           f">&-; echo rc=$?"], capture_output=True, text=True, timeout=60)
    assert made.stdout.strip() == "rc=0" and (tmp_path / "o.npy").exists(), made.stderr
    bad = subprocess.run(["bash", "-c", f'{command} pad "{tmp_path / "missing.npy"}" -o x.npy '
                          f"2>&-; echo rc=$?"], capture_output=True, text=True, timeout=60)
    assert bad.stdout.strip() == "rc=1"


# ---------------------------------------------------------------------------------------------
# Concurrency and existing outputs


def test_two_runs_in_one_folder_at_once(tmp_path: Path) -> None:
    source = tmp_path / "in.npy"
    rng = np.random.default_rng(3)
    data = rng.normal(size=(300, 200, 8)).astype(np.float32)
    np.save(source, data)
    out = tmp_path / "out"
    out.mkdir()
    runs = [subprocess.Popen([sys.executable, "-m", "lstmshape", "pad", str(source), "-o",
                              str(out / name), "--memory-limit", "1MiB", *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for name, extra in (("a.npy", ()), ("b.h5", ("--maxlen", "100")))]
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
    assert files_in(out) == ["a.npy", "a.npy.json", "a.npy.lengths.npy", "b.h5", "b.h5.json"]
    np.testing.assert_array_equal(np.load(out / "a.npy"), data)
    with h5py.File(out / "b.h5") as h5:
        np.testing.assert_array_equal(h5["x"][()], data[:, :100])
    for manifest in ("a.npy.json", "b.h5.json"):
        entries = json.loads((out / manifest).read_text())["outputs"]
        for entry in entries.values():
            digest = hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest()
            assert entry["sha256"] == digest


def test_failed_run_keeps_existing_output(tmp_path: Path) -> None:
    """A run that fails half-way (a damaged chunk found after blocks were written) leaves the
    previous output, its lengths and its manifest byte for byte, and no temp file."""
    out = tmp_path / "out"
    out.mkdir()
    assert_ok(run_cli("pad", small_input(tmp_path), "-o", out / "x.h5"))
    before = snapshot(out)
    damaged = tmp_path / "late.h5"
    with h5py.File(damaged, "w") as h5:
        h5.create_dataset("x", data=np.ones((64, 64, 16), np.float32) * np.arange(16),
                          chunks=(4, 64, 16), compression="gzip")
    with h5py.File(damaged, "r") as h5:
        chunk = h5["x"].id.get_chunk_info(h5["x"].id.get_num_chunks() - 1)
    data = bytearray(damaged.read_bytes())
    for index in range(chunk.byte_offset + 4, chunk.byte_offset + chunk.size - 4):
        data[index] ^= 0xA5
    damaged.write_bytes(bytes(data))
    proc = run_cli("pad", damaged, "-o", out / "x.h5", "--memory-limit", "1MiB")
    assert_refused(proc, "late.h5")
    assert snapshot(out) == before


def test_worker_threads_never_take_a_signal() -> None:
    """A signal the kernel handed to a worker would have its handler run in the main thread
    at once -- even inside signals_deferred(), between a temp file's creation and its record,
    leaving the temp file behind. Every worker blocks them from its first instruction."""
    from lstmshape.io.threads import HANDLED_SIGNALS, start_worker

    masks: list[set[signal.Signals]] = []
    start_worker(lambda: masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
                 "lstmshape-test").join()
    assert masks[0] >= HANDLED_SIGNALS
    assert not HANDLED_SIGNALS & signal.pthread_sigmask(signal.SIG_BLOCK, [])  # main: open
