"""``.zarr`` outputs and inputs, and ``--engine dask`` (issue 13).

One LocalCluster of worker processes serves the module (``--scheduler`` its address); tiny
chunks (``LSTMSHAPE_ZARR_CHUNK_BYTES``) give many chunk tasks on small data. Outputs are
compared file by file, bytes and manifests, across ``--engine local``, ``--workers 1`` and the
two-worker cluster; the faults are real: a worker process killed with SIGKILL, a scheduler
address nobody listens on, SIGINT sent to a client subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import default_sigint
from hostile import assert_ok, assert_refused, run_cli

import lstmshape
from lstmshape.io.source import open_source
from lstmshape.io.zarr_store import CHUNK_BYTES_ENV

#: ~40 rows of a (T=60, F=3) float32 tensor per chunk: a few dozen chunk tasks per output
SMALL_CHUNKS = "30000"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Two worker processes (one thread each) for the whole module; yields the address."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as local, Client(local) as client:
        client.wait_for_workers(2, timeout=60)
        yield str(local.scheduler_address)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHUNK_BYTES_ENV, SMALL_CHUNKS)


@pytest.fixture(scope="module")
def ragged_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 ragged sequences of 3 features with a sequence-level y."""
    rng = np.random.default_rng(13)
    lengths = rng.integers(0, 80, 600)
    path = tmp_path_factory.mktemp("zarr-in") / "in.npz"
    np.savez(path, values=rng.normal(size=(int(lengths.sum()), 3)).astype(np.float32),
             lengths=lengths, y=rng.integers(0, 2, 600))
    return path


def tree(store: Path) -> dict[str, bytes]:
    """Every file of a store by relative path, with its bytes."""
    return {str(p.relative_to(store)): p.read_bytes()
            for p in sorted(store.rglob("*")) if p.is_file()}


def run_all_engines(tmp_path: Path, invoke: Callable[..., Any], cluster: str,
                    *args: Any) -> list[tuple[dict[str, bytes], str]]:
    """The same command with each engine, each output ``out.zarr`` in a folder of its own (so
    the manifests can be equal byte for byte): the trees and the manifests' texts."""
    found = []
    for name, engine in [("local", []), ("one", ["--engine", "dask", "--workers", "1"]),
                         ("two", ["--engine", "dask", "--scheduler", cluster])]:
        folder = tmp_path / name
        folder.mkdir()
        out = folder / "out.zarr"
        result = invoke(*args, "-o", out, *engine)
        assert result.exit_code == 0, result.output
        found.append((tree(out), (folder / "out.zarr.json").read_text()))
    return found


@pytest.mark.parametrize("command", [
    ["pad", "--maxlen", "p95"],
    ["truncate", "--maxlen", "20"],
], ids=["pad-p95", "truncate-ragged"])
def test_engines_write_identical_bytes(command: list[str], ragged_input: Path, tmp_path: Path,
                                       invoke: Callable[..., Any], cluster: str) -> None:
    (local, local_manifest), *others = run_all_engines(tmp_path, invoke, cluster, command[0],
                                                       ragged_input, *command[1:])
    main = "x" if command[0] == "pad" else "values"
    assert sum(path.startswith(f"{main}/c/") for path in local) >= 5  # many chunk tasks
    for other, manifest in others:
        assert other == local
        assert manifest == local_manifest
    data = json.loads(local_manifest)
    assert data["outputs"][main]["files"] and data["outputs"][main]["sha256"]


def test_truncate_dense_identical(tmp_path: Path, invoke: Callable[..., Any],
                                  cluster: str) -> None:
    src = tmp_path / "dense.npy"
    np.save(src, np.random.default_rng(2).normal(size=(300, 50, 3)).astype(np.float32))
    (local, local_manifest), *others = run_all_engines(tmp_path, invoke, cluster, "truncate",
                                                       src, "--maxlen", "30",
                                                       "--truncating", "pre")
    assert all(other == (local, local_manifest) for other in others)


def test_zarr_python_reads_what_npz_holds(ragged_input: Path, tmp_path: Path,
                                          invoke: Callable[..., Any], cluster: str) -> None:
    npz, store = tmp_path / "x.npz", tmp_path / "x.zarr"
    assert invoke("pad", ragged_input, "--maxlen", "p95", "-o", npz).exit_code == 0
    assert invoke("pad", ragged_input, "--maxlen", "p95", "-o", store, "--engine", "dask",
                  "--scheduler", cluster).exit_code == 0
    group = zarr.open_group(str(store), mode="r")
    with np.load(npz) as expected:
        assert sorted(group.array_keys()) == sorted(expected.files)
        for key in expected.files:
            np.testing.assert_array_equal(group[key][:], expected[key])
    assert group["x"].chunks[1:] == group["x"].shape[1:]  # chunked along samples only
    # and lstmshape reads it back through the one reader, like any input
    with open_source(str(store)) as source:
        assert source.layout == "x+lengths" and source.targets is not None
        assert source.read().n_samples == 600


def test_listing_digest_and_verify(ragged_input: Path, tmp_path: Path,
                                   invoke: Callable[..., Any]) -> None:
    store = tmp_path / "x.zarr"
    assert invoke("pad", ragged_input, "-o", store).exit_code == 0
    manifest = json.loads((tmp_path / "x.zarr.json").read_text())
    listing = subprocess.run("find . -type f | sort | xargs sha256sum | sed 's#  ./#  #'",
                             shell=True, cwd=store, capture_output=True, text=True, check=True)
    import hashlib

    assert manifest["outputs"]["x"]["sha256"] == hashlib.sha256(
        listing.stdout.encode()).hexdigest()
    assert_ok(run_cli("verify", "--no-model", store))
    chunk = store / "x" / "c" / "3" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[5] ^= 1
    chunk.write_bytes(bytes(data))
    assert_refused(run_cli("verify", "--no-model", store), "x/c/3/0/0", "sha256")


def test_tf_dataset_trains_on_a_zarr_output(ragged_input: Path, tmp_path: Path,
                                            invoke: Callable[..., Any], keras: Any) -> None:
    import lstmshape.tf

    store = tmp_path / "train.zarr"
    assert invoke("pad", ragged_input, "--maxlen", "p95", "-o", store).exit_code == 0
    dataset = lstmshape.tf.dataset(str(store), batch_size=32)
    model = keras.Sequential([keras.Input(shape=(None, 3)), keras.layers.Masking(0.0),
                              keras.layers.LSTM(4), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(dataset.take(2), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_progress_counts_finished_tasks(ragged_input: Path, tmp_path: Path,
                                        cluster: str) -> None:
    from lstmshape.commands.pad import pad_file
    from lstmshape.dask_engine import DaskEngine
    from lstmshape.job import IOOptions

    calls: list[tuple[int, int]] = []
    with DaskEngine(scheduler=cluster) as engine:
        manifest = pad_file(str(ragged_input), IOOptions(str(tmp_path / "x.zarr"), engine=engine,
                                                         progress=lambda *a: calls.append(a)))
    chunks = sum("/c/" in line for line in manifest["outputs"]["x"]["files"])
    chunks += sum("/c/" in line for line in manifest["outputs"]["y"]["files"])
    assert calls == [(done, chunks) for done in range(1, chunks + 1)]


def test_a_zarr_input_chains_and_torch_reads_it(ragged_input: Path, tmp_path: Path,
                                                invoke: Callable[..., Any]) -> None:
    import lstmshape.torch as lt

    padded, cut = tmp_path / "p.zarr", tmp_path / "cut.npz"
    assert invoke("pad", ragged_input, "--maxlen", "p95", "-o", padded).exit_code == 0
    assert invoke("truncate", padded, "--maxlen", "10", "-o", cut).exit_code == 0
    data = json.loads((tmp_path / "cut.npz.json").read_text())
    recorded = json.loads((tmp_path / "p.zarr.json").read_text())["outputs"]["x"]["sha256"]
    assert data["inputs"][0]["path"] == "p.zarr" and data["inputs"][0]["sha256"] == recorded
    assert [step["command"] for step in data["history"]] == ["pad"]
    item = lt.SequenceDataset(str(padded))[0]
    with np.load(ragged_input) as raw:
        assert int(item[1]) == min(int(raw["lengths"][0]), recorded_maxlen(padded))


def recorded_maxlen(store: Path) -> int:
    return int(json.loads(Path(f"{store}.json").read_text())["timesteps"])


def test_a_replaced_store_keeps_nothing_of_the_old_one(tmp_path: Path,
                                                       invoke: Callable[..., Any],
                                                       cluster: str) -> None:
    """The new tree replaces the old one whole (no stale chunk of a longer old output), and a
    long-lived cluster's workers read the input as it is now, not as an earlier run opened it."""
    src, store, fresh = tmp_path / "in.npy", tmp_path / "x.zarr", tmp_path / "fresh"
    rng = np.random.default_rng(3)
    np.save(src, rng.normal(size=(400, 30, 3)).astype(np.float32))
    engine = ["--engine", "dask", "--scheduler", cluster]
    assert invoke("pad", src, "-o", store, *engine).exit_code == 0
    np.save(tmp_path / "new.npy", rng.normal(size=(100, 30, 3)).astype(np.float32))
    os.replace(tmp_path / "new.npy", src)  # a new file: fewer chunks, other values
    assert invoke("pad", src, "-o", store, *engine).exit_code == 0
    fresh.mkdir()
    assert invoke("pad", src, "-o", fresh / "x.zarr").exit_code == 0
    assert tree(store) == tree(fresh / "x.zarr")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_usage_errors(ragged_input: Path, tmp_path: Path, invoke: Callable[..., Any]) -> None:
    not_zarr = invoke("pad", ragged_input, "-o", tmp_path / "x.npz", "--engine", "dask",
                      "--workers", "2")
    assert not_zarr.exit_code == 2 and ".zarr" in not_zarr.output
    assert invoke("pad", ragged_input, "-o", tmp_path / "x.zarr", "--workers",
                  "2").exit_code == 2
    assert invoke("pad", ragged_input, "-o", tmp_path / "x.zarr", "--engine",
                  "dask").exit_code == 2
    split = invoke("truncate", ragged_input, "--maxlen", "5", "--overflow", "split", "-o",
                   tmp_path / "x.zarr", "--engine", "dask", "--workers", "1")
    assert split.exit_code == 2 and "--engine local" in split.output
    assert os.listdir(tmp_path) == []


def test_workers_import_this_lstmshape(cluster: str) -> None:
    from distributed import Client

    with Client(cluster) as client:
        files = client.run(lambda: __import__("lstmshape").__file__)
    assert set(files.values()) == {lstmshape.__file__}


def test_unreachable_scheduler_is_one_error_line(ragged_input: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_cli("pad", ragged_input, "-o", tmp_path / "x.zarr", "--engine", "dask",
                   "--scheduler", "tcp://127.0.0.1:9", timeout=60)
    assert time.monotonic() - started < 30
    assert_refused(proc, "cannot reach the Dask scheduler", "tcp://127.0.0.1:9", code=1)
    assert os.listdir(tmp_path) == []


@pytest.fixture
def big_input(tmp_path: Path) -> Path:
    """Enough rows for a few hundred chunk tasks: a run that lasts long enough to interrupt."""
    path = tmp_path / "big.npy"
    np.save(path, np.random.default_rng(5).normal(size=(6000, 60, 3)).astype(np.float32))
    return path


def listing(folder: Path) -> dict[str, Any]:
    """Each entry of a folder: a store's files, or a file's bytes."""
    return {path.name: tree(path) if path.is_dir() else path.read_bytes()
            for path in sorted(folder.iterdir())}


def start_pad(src: Path, out: Path, *engine: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, CHUNK_BYTES_ENV: "20000"}
    env.pop("LSTMSHAPE_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "lstmshape", "pad", str(src), "-o", str(out),
                             "--engine", "dask", *engine], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, preexec_fn=default_sigint)


def wait_for_chunks(folder: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until a temp store holds a written chunk (the tasks are running)."""
    deadline = time.monotonic() + 60
    while not any(folder.glob(".*.tmp/x/c/*")):
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "no chunk written"
        time.sleep(0.005)


def test_sigint_of_the_client_removes_the_temp_store(big_input: Path, tmp_path: Path,
                                                     invoke: Callable[..., Any]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    small = tmp_path / "small.npy"
    np.save(small, np.ones((5, 4, 3), np.float32))
    assert invoke("pad", small, "-o", out / "x.zarr").exit_code == 0
    before = listing(out)
    proc = start_pad(big_input, out / "x.zarr", "--workers", "1")
    try:
        wait_for_chunks(out, proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr.decode()
    assert "interrupted" in stderr.decode()
    assert listing(out) == before  # no temp store left, the older output as it was


def test_killed_worker_rerun_gives_identical_output(big_input: Path, tmp_path: Path,
                                                    invoke: Callable[..., Any],
                                                    cluster: str) -> None:
    """Last in the module: its cluster's nanny restarts the killed worker."""
    from distributed import Client

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CHUNK_BYTES_ENV, "20000")
        assert invoke("pad", big_input, "-o", tmp_path / "local.zarr").exit_code == 0
    proc = start_pad(big_input, tmp_path / "dask.zarr", "--scheduler", cluster)
    try:
        wait_for_chunks(tmp_path, proc)
        with Client(cluster) as client:
            before = set(client.run(os.getpid).values())
            os.kill(min(before), signal.SIGKILL)
            _, stderr = proc.communicate(timeout=120)
            client.wait_for_workers(2, timeout=60)
            after = set(client.run(os.getpid).values())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert min(before) not in after  # the worker really died (its nanny started another)
    assert proc.returncode == 0, stderr.decode()
    assert tree(tmp_path / "dask.zarr") == tree(tmp_path / "local.zarr")
    local = json.loads((tmp_path / "local.zarr.json").read_text())
    dask = json.loads((tmp_path / "dask.zarr.json").read_text())
    assert local["outputs"]["x"]["sha256"] == dask["outputs"]["x"]["sha256"]


def test_dask_with_targets_named_beside_the_input_is_one_line(tmp_path: Path,
                                                              invoke: Any) -> None:
    np.savez(tmp_path / "r.npz", values=np.arange(20, dtype=np.float32).reshape(10, 2),
             lengths=np.array([6, 4]))
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    result = invoke("pad", tmp_path / "r.npz", "--y", tmp_path / "y.npy", "--engine", "dask",
                    "--workers", "1", "-o", tmp_path / "r.zarr")
    assert result.exit_code == 1 and "--engine local" in result.output
    assert "internal error" not in result.output and not (tmp_path / "r.zarr").exists()
