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
import threading
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
from lstmshape.ops.normalize import GROUP_CHUNKS_ENV, Accumulator

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
    # normalize's statistics in groups of one chunk: a statistics task per ~11k rows
    monkeypatch.setenv(GROUP_CHUNKS_ENV, "1")


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
                    *args: Any, one_worker: bool = True) -> list[tuple[dict[str, bytes], str]]:
    """The same command with each engine, each output ``out.zarr`` in a folder of its own (so
    the manifests can be equal byte for byte): the trees and the manifests' texts.
    ``one_worker=False``: local and the two-worker cluster only (no cluster started)."""
    found = []
    engines = [("local", []), ("one", ["--engine", "dask", "--workers", "1"]),
               ("two", ["--engine", "dask", "--scheduler", cluster])]
    for name, engine in engines if one_worker else [engines[0], engines[2]]:
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


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 ragged shards of 3 features, 40 sequences each."""
    folder = tmp_path_factory.mktemp("zarr-shards") / "shards"
    folder.mkdir()
    rng = np.random.default_rng(50)
    for index in range(50):
        lengths = rng.integers(0, 60, 40)
        values = rng.normal(3.0, 2.0, size=(int(lengths.sum()), 3)).astype(np.float32)
        np.savez(folder / f"shard_{index}.npz", values=values, lengths=lengths)
    return folder


@pytest.fixture(scope="module")
def big_ragged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 ragged sequences of 3 features (~80k rows), a NaN among them."""
    rng = np.random.default_rng(2000)
    lengths = rng.integers(0, 80, 2000)
    values = rng.normal(-4.0, 9.0, size=(int(lengths.sum()), 3)).astype(np.float32)
    values[77, 1] = np.nan
    path = tmp_path_factory.mktemp("zarr-big") / "big.npz"
    np.savez(path, values=values, lengths=lengths)
    return path


@pytest.mark.parametrize("method", ["standard", "minmax"])
@pytest.mark.parametrize("which", ["one-input", "50-shards"])
def test_normalize_engines_write_identical_bytes(which: str, method: str, big_ragged: Path,
                                                 shard_folder: Path, tmp_path: Path,
                                                 invoke: Callable[..., Any],
                                                 cluster: str) -> None:
    """The statistics pass (a task per group of rows, merged in row order by the client) and
    the scaling pass (a task per output chunk) give the local engine's bytes, for 1 and 2
    workers."""
    src = big_ragged if which == "one-input" else shard_folder
    with open_source(str(src)) as source:
        rows = int(source.lengths.sum())
    assert rows >= 5 * Accumulator(3).group_rows  # several statistics tasks to merge
    (local, local_manifest), *others = run_all_engines(tmp_path, invoke, cluster, "normalize",
                                                       src, "--method", method)
    assert sum(path.startswith("values/c/") for path in local) >= 20  # many chunk tasks
    for other, manifest in others:
        assert other == local
        assert manifest == local_manifest
    recorded = json.loads(local_manifest)["normalization"]
    assert recorded["method"] == method and len(recorded[sorted(recorded)[0]]) == 3


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory, ragged_input: Path) -> dict[str, Path]:
    """Targets named beside ``ragged_input``: per-timestep tags (ragged, with its lengths) and
    one float per sequence; a padded copy that holds the tags; --like manifests of a training
    set's pad, truncate and normalize runs (made by the local engine)."""
    folder = tmp_path_factory.mktemp("zarr-labelled")
    rng = np.random.default_rng(7)
    with np.load(ragged_input) as raw:
        lengths = raw["lengths"]
    tags, scores = folder / "tags.npz", folder / "scores.npy"
    np.savez(tags, values=rng.integers(0, 5, int(lengths.sum())).astype(np.int16),
             lengths=lengths)
    np.save(scores, rng.normal(size=len(lengths)))
    train = folder / "train.npz"
    train_lengths = rng.integers(1, 50, 200)
    np.savez(train, values=rng.normal(1.0, 4.0, (int(train_lengths.sum()), 3)).astype(
        np.float32), lengths=train_lengths)
    padded = folder / "padded.npz"
    for args in (["pad", ragged_input, "--maxlen", "p90", "--y", tags, "--y-value", "-1",
                  "-o", padded],
                 ["pad", train, "--maxlen", "p95", "--value", "-9", "--padding", "pre",
                  "-o", folder / "train_p.npz"],
                 ["truncate", train, "--maxlen", "12", "--truncating", "pre",
                  "-o", folder / "train_t.npz"],
                 ["normalize", train, "--method", "minmax", "-o", folder / "train_n.npz"]):
        assert_ok(run_cli(*args))
    return {"tags": tags, "scores": scores, "padded": padded,
            **{name: folder / f"train_{name}.npz.json" for name in "ptn"}}


LABELLED_CASES = {
    "pad-timestep-y": lambda s, f: ["pad", s, "--maxlen", "p95", "--y", f["tags"],
                                    "--y-value", "-1"],
    "truncate-timestep-y": lambda s, f: ["truncate", s, "--maxlen", "20", "--y", f["tags"]],
    "normalize-sequence-y": lambda s, f: ["normalize", s, "--y", f["scores"]],
    "normalize-timestep-y": lambda s, f: ["normalize", s, "--y", f["tags"], "--method",
                                          "minmax"],
    "pad-like": lambda s, f: ["pad", s, "--like", f["p"], "--y", f["scores"]],
    "truncate-like-padded-labels": lambda s, f: ["truncate", f["padded"], "--like", f["t"]],
    "normalize-like-padded-labels": lambda s, f: ["normalize", f["padded"], "--like", f["n"]],
}


@pytest.mark.parametrize("case", sorted(LABELLED_CASES))
def test_like_and_targets_identical_across_engines(case: str, ragged_input: Path,
                                                   labelled: dict[str, Path], tmp_path: Path,
                                                   invoke: Callable[..., Any],
                                                   cluster: str) -> None:
    """--y (per sequence and per timestep, ragged and padded, with sample_weight) and --like
    on the dask engine: the local engine's bytes, y and sample_weight included."""
    args = LABELLED_CASES[case](ragged_input, labelled)
    (local, local_manifest), (other, manifest) = run_all_engines(
        tmp_path, invoke, cluster, *args, one_worker=False)
    assert other == local
    assert manifest == local_manifest
    data = json.loads(local_manifest)
    assert any(path.startswith("y/c/") for path in local)
    assert data["targets"]["kind"] == ("sequence" if "sequence" in case or "pad-like" in case
                                       else "timestep")
    if "like" in case:
        assert data["params"]["like"]["path"].startswith("../")
    padded = data["timesteps"] is not None and data["targets"]["kind"] == "timestep"
    assert any(path.startswith("sample_weight/c/") for path in local) == padded


def test_what_dask_does_not_plan_is_one_error_line(
        ragged_input: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        invoke: Callable[..., Any], cluster: str) -> None:
    engine = ["--engine", "dask", "--scheduler", cluster]
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.npy"
    np.save(tokens, np.arange(40).reshape(8, 5))
    no_axis = invoke("pad", tokens, "--no-feature-axis", "-o", tmp_path / "x.zarr", *engine)
    assert no_axis.exit_code == 1 and "--engine local" in no_axis.output
    assert no_axis.output.count("Error:") == 1 and "Traceback" not in no_axis.output
    split = invoke("truncate", ragged_input, "--maxlen", "5", "--overflow", "split", "-o",
                   tmp_path / "x.zarr", *engine)
    assert split.exit_code == 2 and "--engine local" in split.output
    assert os.listdir(tmp_path) == []


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
    stdin_y = invoke("pad", ragged_input, "--y", "-", "-o", tmp_path / "x.zarr", "--engine",
                     "dask", "--workers", "2")  # refused before a cluster is started
    assert stdin_y.exit_code == 2 and "workers cannot read" in stdin_y.output
    assert os.listdir(tmp_path) == []


def test_stdin_targets_refused_by_the_library_engine_too(ragged_input: Path,
                                                        tmp_path: Path) -> None:
    from lstmshape.errors import OptionError
    from lstmshape.job import IOOptions, Job

    with pytest.raises(OptionError, match="workers cannot read"):
        Job("pad", [str(ragged_input)], IOOptions(output=str(tmp_path / "x.zarr"), y="-",
                                                   engine=object()))  # type: ignore[arg-type]


def blocked_signals(thread: threading.Thread) -> int:
    """The signal mask of a thread of this process, from the kernel (``SigBlk``)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("SigBlk")).split()[1],
               16)


def test_client_threads_never_take_sigint(cluster: str) -> None:
    """The threads a --scheduler client starts block SIGINT (as every lstmshape thread does),
    so the kernel hands Ctrl-C to the main thread, which defers it over a commit's renames."""
    from lstmshape.dask_engine import DaskEngine

    before = set(threading.enumerate())
    with DaskEngine(scheduler=cluster) as engine:
        assert engine.worker_count == 2
        started = set(threading.enumerate()) - before
        assert started and any(t.name == "IO loop" for t in started)
        for thread in started:
            if thread.is_alive():
                assert blocked_signals(thread) & (1 << (signal.SIGINT - 1)), thread.name
    assert not blocked_signals(threading.main_thread()) & (1 << (signal.SIGINT - 1))


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
