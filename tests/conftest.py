"""Shared test helpers: real files in tmp_path, the CLI through CliRunner and a real subprocess,
and Keras as the reference implementation."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result

from lstmshape.cli import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Every ragged input layout the spec lists; "h5-vlen" holds 1-feature sequences only.
RAGGED_LAYOUTS = ("npz-lengths", "npz-row-splits", "npz-savez", "h5-lengths", "h5-offsets",
                  "h5-group", "h5-vlen")


def write_ragged(folder: Path, layout: str, sequences: Sequence[np.ndarray],
                 name: str = "seqs") -> str:
    """Write sequences (each ``(len_i, F)``) in one of :data:`RAGGED_LAYOUTS`; returns the SRC."""
    seqs = [np.asarray(s) for s in sequences]
    features = seqs[0].shape[1] if seqs else 1
    dtype = seqs[0].dtype if seqs else np.float32
    values = np.concatenate(seqs) if seqs else np.zeros((0, features), dtype)
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if layout == "npz-lengths":
        path = folder / f"{name}.npz"
        np.savez(path, values=values, lengths=lengths)
        return str(path)
    if layout == "npz-row-splits":
        path = folder / f"{name}.npz"
        np.savez(path, values=values, row_splits=splits)
        return str(path)
    if layout == "npz-savez":
        path = folder / f"{name}.npz"
        np.savez(path, *seqs)
        return str(path)
    path = folder / f"{name}.h5"
    with h5py.File(path, "w") as h5:
        if layout == "h5-lengths":
            h5["values"], h5["lengths"] = values, lengths
            return str(path)
        if layout == "h5-offsets":
            group = h5.create_group("data")
            group["values"], group["offsets"] = values, splits
            return f"{path}:/data"
        if layout == "h5-group":
            group = h5.create_group("seqs")
            for index, seq in enumerate(seqs):
                group[f"s{index}"] = seq
            return f"{path}:/seqs"
        if layout == "h5-vlen":
            assert features == 1, "vlen datasets hold 1-D sequences"
            vlen = h5.create_dataset("seqs", (len(seqs),), dtype=h5py.vlen_dtype(dtype))
            for index, seq in enumerate(seqs):
                vlen[index] = seq[:, 0]
            return f"{path}:/seqs"
    raise ValueError(layout)


def random_sequences(rng: np.random.Generator, count: int, max_length: int, features: int,
                     dtype: str = "float32", min_length: int = 0) -> list[np.ndarray]:
    lengths = rng.integers(min_length, max_length + 1, size=count)
    if np.dtype(dtype).kind == "f":
        return [rng.normal(size=(n, features)).astype(dtype) for n in lengths]
    return [rng.integers(-100, 100, size=(n, features)).astype(dtype) for n in lengths]


@pytest.fixture(scope="session", autouse=True)
def session_digest_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The digest cache of module- and session-scoped fixtures (set up before any test's own):
    never ~/.cache."""
    folder = tmp_path_factory.mktemp("session-digest-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LSTMSHAPE_CACHE_DIR", str(folder))
        patch.delenv("LSTMSHAPE_NO_DIGEST_CACHE", raising=False)
        yield folder


@pytest.fixture(autouse=True)
def digest_cache_dir(session_digest_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                     monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty digest cache (never ~/.cache), outside its tmp_path (tests
    that list tmp_path must not see it); subprocesses inherit the variable."""
    folder = tmp_path_factory.mktemp("digest-cache")
    monkeypatch.setenv("LSTMSHAPE_CACHE_DIR", str(folder))
    monkeypatch.delenv("LSTMSHAPE_NO_DIGEST_CACHE", raising=False)
    return folder


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def invoke() -> Callable[..., Result]:
    """Run the CLI in-process: ``invoke("pad", src, "-o", out)``; returns click's Result."""
    runner = CliRunner()

    def run(*args: Any, input: bytes | None = None) -> Result:
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


def run_lstmshape(*args: Any, input: bytes | None = None, timeout: float = 120,
                  cwd: str | Path | None = None,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m lstmshape ARGS`` in a real subprocess (exit codes, signals, pipes)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "lstmshape", *map(str, args)], input=input,
                          capture_output=True, timeout=timeout, cwd=cwd, env=full_env)


@pytest.fixture(scope="session")
def keras() -> Any:
    """Keras (with TensorFlow), the reference implementation; imported once per session.
    ``make test`` installs it: a missing Keras fails the tests that need it, never skips them."""
    import keras

    return keras


def files_in(folder: Path) -> list[str]:
    """Every file name in a folder, temp files included (for 'nothing left behind' checks)."""
    return sorted(p.name for p in folder.iterdir())


def run_python(code: str, *args: Any, timeout: float = 60,
               **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS...`` in a fresh interpreter (imports, missing packages, exits)."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kwargs)


#: Runs ``sys.argv[1:]`` and prints its exit code and peak RSS in MB; its stderr passes through.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
    "sys.stderr.write(done.stderr.decode())\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
)


def peak_rss(*args: Any, timeout: float = 600) -> tuple[int, int, str]:
    """``python -m lstmshape ARGS`` in its own process: exit code, peak RSS (MB), stderr."""
    done = run_python(PEAK_RSS, sys.executable, "-m", "lstmshape", *args, timeout=timeout)
    code, peak_mb = map(int, done.stdout.split())
    return code, peak_mb, done.stderr


def default_sigint() -> None:
    """``preexec_fn`` for a child that must take Ctrl-C: a suite started as a background job
    (``make test &``) passes SIGINT on as ignored, and lstmshape then rightly ignores it too."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
