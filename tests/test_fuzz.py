"""Bounded fuzzing (issue 5): valid ``.npy``/``.npz``/``.h5`` files mutated by byte flips,
truncation and appended bytes, then ``inspect`` and ``pad`` on them.

The outcome must be one of two: success with a valid output (it loads, and its manifest's shape
and sha256 match it), or exit 1 with one ``Error:`` line that is not lstmshape's "internal error"
(an unexpected exception) -- never a traceback, a hang or anything left in the output folder.
Most examples run in-process through CliRunner for speed; a fixed few run as real subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import files_in
from hostile import error_lines, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmshape.cli import cli

EXAMPLES_PER_SEED = 60  # x 5 seeds = 300 examples, each running inspect and pad
SECONDS_PER_RUN = 20  # a run this slow on a file of a few KB is a hang


def make_seeds(folder: Path) -> dict[str, bytes]:
    """Small valid files of every layout the readers parse differently."""
    rng = np.random.default_rng(2)
    np.save(folder / "dense.npy", rng.normal(size=(6, 5, 3)).astype(np.float32))
    np.savez(folder / "ragged.npz", values=rng.normal(size=(20, 3)).astype(np.float32),
             lengths=np.array([5, 10, 5]))
    np.savez_compressed(folder / "savez.npz",
                        *[rng.normal(size=(n, 2)).astype(np.float32) for n in (3, 7, 4)])
    with h5py.File(folder / "ragged.h5", "w") as h5:
        h5["values"] = rng.normal(size=(20, 3)).astype(np.float32)
        h5["lengths"] = np.array([5, 10, 5])
    with h5py.File(folder / "chunked.h5", "w") as h5:
        h5.create_dataset("x", data=rng.normal(size=(40, 8, 3)).astype(np.float32),
                          chunks=(4, 8, 3), compression="gzip")
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return make_seeds(tmp_path_factory.mktemp("seeds"))


# ---------------------------------------------------------------------------------------------
# Mutations


Mutation = tuple[str, float, int | bytes]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("append"), st.just(1.0), st.binary(min_size=1, max_size=64)),
)


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    out = bytearray(data)
    for kind, where, value in mutations:
        if kind == "flip" and out:
            out[int(where * len(out))] ^= int(value)  # type: ignore[call-overload]
        elif kind == "truncate":
            del out[int(where * len(out)):]
        elif kind == "append":
            out += value  # type: ignore[operator]
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# The oracle


class Hang(BaseException):
    """Raised by SIGALRM; a BaseException so that no ``except Exception`` swallows it."""


def on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang()


@pytest.fixture(scope="module", autouse=True)
def alarm_handler() -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, on_alarm)
    yield
    signal.signal(signal.SIGALRM, previous)


def check_outcome(code: int, stderr: str, out: Path, output: Path | None) -> None:
    """Success with a valid output, or one clean ``Error:`` line, exit 1, nothing left."""
    assert "Traceback" not in stderr, stderr
    if code == 0:
        if output is not None:
            check_output(output)
        return
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1, (code, stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "internal error" not in lines[0], lines[0]
    assert "out of memory" not in lines[0], lines[0]
    assert files_in(out) == [], files_in(out)


def check_output(output: Path) -> None:
    """A written output loads, and its manifest describes it."""
    manifest = json.loads(Path(f"{output}.json").read_text())
    folder = output.parent
    for entry in manifest["outputs"].values():
        path = folder / entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    x = manifest["outputs"]["x"]
    if output.suffix == ".npy":
        shape = np.load(output, allow_pickle=False).shape
    else:
        with h5py.File(output) as h5:
            shape = h5["x"].shape
    assert list(shape) == x["shape"]
    assert not [name for name in files_in(folder) if name.endswith(".tmp")]


def run_in_process(runner: CliRunner, args: list[str]) -> tuple[int, str]:
    signal.alarm(SECONDS_PER_RUN)
    try:
        result = runner.invoke(cli, args, catch_exceptions=True)
    except Hang:
        pytest.fail(f"hang: lstmshape {' '.join(args)}")
    finally:
        signal.alarm(0)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"exception escaped: {result.exception!r}") from result.exception
    return result.exit_code, result.stderr


@pytest.mark.parametrize("seed_name", ["dense.npy", "ragged.npz", "savez.npz", "ragged.h5",
                                       "chunked.h5"])
@settings(max_examples=EXAMPLES_PER_SEED, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutations=st.lists(mutation, min_size=1, max_size=4), to_h5=st.booleans())
def test_mutated_file(seed_name: str, mutations: list[Mutation], to_h5: bool,
                      seeds: dict[str, bytes]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="lstmshape-fuzz-"))
    try:
        source = folder / seed_name
        source.write_bytes(mutate(seeds[seed_name], mutations))
        out = folder / "out"
        out.mkdir()
        runner = CliRunner()
        code, stderr = run_in_process(runner, ["inspect", str(source), "--json"])
        check_outcome(code, stderr, out, None)
        output = out / ("x.h5" if to_h5 else "x.npy")
        code, stderr = run_in_process(runner, ["pad", str(source), "-o", str(output), "-q",
                                               "--memory-limit", "1MiB"])
        check_outcome(code, stderr, out, output)
    finally:
        shutil.rmtree(folder)


def fixed_mutations(count: int) -> list[tuple[str, list[Mutation]]]:
    """A few mutations, the same on every run, for the subprocess check."""
    chooser = random.Random(5)
    names = ["dense.npy", "ragged.npz", "savez.npz", "ragged.h5", "chunked.h5"]
    cases = []
    for index in range(count):
        kind = ("flip", "truncate", "append")[index % 3]
        value: Any = chooser.randrange(1, 256) if kind != "append" else bytes(8)
        cases.append((names[index % len(names)], [(kind, chooser.random(), value)]))
    return cases


@pytest.mark.parametrize(("seed_name", "mutations"), fixed_mutations(15))
def test_mutated_file_subprocess(seed_name: str, mutations: list[Mutation],
                                 seeds: dict[str, bytes], tmp_path: Path) -> None:
    source = tmp_path / seed_name
    source.write_bytes(mutate(seeds[seed_name], mutations))
    out = tmp_path / "out"
    out.mkdir()
    output = out / "x.npy"
    proc = run_cli("pad", source, "-o", output, "-q", "--memory-limit", "1MiB", timeout=60)
    stderr = proc.stderr.decode(errors="replace")
    check_outcome(proc.returncode, stderr, out, output)
    assert proc.returncode == 0 or len(error_lines(proc)) == 1
