"""Tables (Parquet, CSV, Arrow), list columns and folders of shards, read by the one reader.

Oracles: pandas (``sort_values`` + ``groupby``) then ``keras.utils.pad_sequences`` for long
tables; ``pad_sequences(column.to_pylist())`` for list columns; ``np.concatenate`` of the shards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from click.testing import Result
from conftest import peak_rss, run_python
from hostile import assert_refused, run_cli

FEATURES = ["a", "b", "c"]
FORMS = ["parquet", "csv", "arrow", "arrow-stream"]


def long_frame(rng: np.random.Generator, string_ids: bool, count: int = 40) -> Any:
    """A long table sorted by id then time: ``count`` ids of 1..12 timesteps, 3 features."""
    lengths = rng.integers(1, 13, count)
    raw_ids = rng.choice(10_000, count, replace=False)
    ids = np.repeat(raw_ids, lengths)
    times = np.concatenate([np.sort(rng.choice(1000, n, replace=False)) for n in lengths])
    frame = pd.DataFrame({
        "user": [f"u{i}" for i in ids] if string_ids else ids.astype(np.int64),
        "ts": times.astype(np.int64),
        **{name: rng.standard_normal(len(ids)).astype(np.float32) for name in FEATURES}})
    return frame


def write_form(frame: Any, folder: Path, form: str) -> Path:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if form == "parquet":
        path = folder / "t.parquet"
        pq.write_table(table, path, row_group_size=37)  # several row groups, ids across them
    elif form == "csv":
        path = folder / "t.csv"
        pcsv.write_csv(table, path)
    elif form == "arrow":
        path = folder / "t.arrow"
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table, max_chunksize=50)
    else:
        path = folder / "t.ipc"
        with pa.ipc.new_stream(path, table.schema) as writer:
            writer.write_table(table, max_chunksize=50)
    return path


def read_back(path: Path) -> Any:
    """The table as pandas reads it (CSV floats come back as float64 for both readers)."""
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_file(source).read_all().to_pandas()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_stream(source).read_all().to_pandas()


def pandas_oracle(frame: Any, keras: Any, with_time: bool) -> tuple[np.ndarray, list[Any]]:
    """What a pandas user writes: sort, group in order of first appearance, pad."""
    order = list(pd.unique(frame["user"]))
    ordered = frame.sort_values(["ts"], kind="stable") if with_time else frame
    groups = dict(list(ordered.groupby("user", sort=False)))
    sequences = [groups[key][FEATURES].to_numpy() for key in order]
    dtype = frame[FEATURES[0]].dtype
    return keras.utils.pad_sequences(sequences, padding="post", truncating="post",
                                     dtype=dtype, value=0.0), order


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shuffled", [False, True], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("string_ids", [False, True], ids=["int-ids", "str-ids"])
@pytest.mark.parametrize("with_time", [True, False], ids=["time", "file-order"])
def test_long_table_equals_pandas_then_keras(form: str, shuffled: bool, string_ids: bool,
                                             with_time: bool, tmp_path: Path,
                                             invoke: Callable[..., Result], keras: Any,
                                             rng: np.random.Generator) -> None:
    frame = long_frame(rng, string_ids)
    if shuffled:
        frame = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    path = write_form(frame, tmp_path, form)
    expected, order = pandas_oracle(read_back(path), keras, with_time)
    out = tmp_path / "x.npy"
    args = ["pad", path, "--id", "user", "-o", out, "--features", ",".join(FEATURES)]
    if with_time:
        args += ["--time", "ts"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    got = np.load(out)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    ids = np.load(str(out) + ".ids.npy")
    assert ids.tolist() == order
    assert ids.dtype.kind == ("U" if string_ids else "i")
    manifest = json.loads((tmp_path / "x.npy.json").read_text())
    assert manifest["feature_names"] == FEATURES
    assert manifest["outputs"]["ids"]["path"] == "x.npy.ids.npy"
    assert manifest["inputs"][0]["path"] == path.name and len(manifest["inputs"][0]["sha256"]) == 64


def test_default_features_and_sequence_target(tmp_path: Path, invoke: Callable[..., Result],
                                              rng: np.random.Generator) -> None:
    """Every numeric column but id, time and target is a feature; --target is y, one per id."""
    frame = long_frame(rng, False, count=10)
    frame["label"] = frame.groupby("user")["a"].transform("size") % 3
    frame["note"] = "text"  # not numeric: not a default feature
    path = write_form(frame, tmp_path, "parquet")
    out = tmp_path / "x.npz"
    result = invoke("pad", path, "--id", "user", "--time", "ts", "--target", "label", "-o", out)
    assert result.exit_code == 0, result.output
    with np.load(out) as data:
        assert data["x"].shape[2] == 3
        expected_y = frame.groupby("user", sort=False)["label"].first().to_numpy()
        np.testing.assert_array_equal(data["y"], expected_y)
        np.testing.assert_array_equal(data["ids"], pd.unique(frame["user"]))
    manifest = json.loads((tmp_path / "x.npz.json").read_text())
    assert manifest["feature_names"] == FEATURES
    assert manifest["params"]["table"] == {"id": "user", "time": "ts", "target": "label",
                                           "features": None, "target_kind": "sequence"}
    from lstmshape.manifest import JSON_SCHEMA

    jsonschema.validate(manifest, JSON_SCHEMA)


def test_ids_follow_reordering_commands(tmp_path: Path, invoke: Callable[..., Result],
                                        rng: np.random.Generator) -> None:
    """batch --shuffle reorders samples: ids follow ``order``; truncate split: source_index."""
    frame = long_frame(rng, True, count=9)
    path = write_form(frame, tmp_path, "parquet")
    first_seen = np.array(pd.unique(frame["user"]))
    out = tmp_path / "b.npz"
    assert invoke("batch", path, "--id", "user", "--size", "4", "--shuffle", "--seed", "2",
                  "--remainder", "pad", "-o", out).exit_code == 0
    with np.load(out) as data:
        order = data["order"]
        np.testing.assert_array_equal(data["ids"][order >= 0], first_seen[order[order >= 0]])
        assert (data["ids"][order < 0] == "").all()
    out = tmp_path / "s.npz"
    assert invoke("truncate", path, "--id", "user", "--maxlen", "2", "--overflow", "split",
                  "-o", out).exit_code == 0
    with np.load(out) as data:
        np.testing.assert_array_equal(data["ids"], first_seen[data["source_index"]])


# ---------------------------------------------------------------------------------------------
# Per-timestep targets: --target-kind timestep


def labelled_table(rng: np.random.Generator, folder: Path, form: str,
                   shuffled: bool) -> tuple[Path, Any]:
    """A long table with an integer label per row, written in ``form``; and the table as pandas
    reads it back."""
    frame = long_frame(rng, False)
    frame["label"] = rng.integers(0, 5, len(frame)).astype(np.int64)
    if shuffled:
        frame = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    path = write_form(frame, folder, form)
    return path, read_back(path)


def label_sequences(frame: Any) -> list[np.ndarray]:
    """What a pandas user writes for the labels: sort by time, group in order of first
    appearance, one label sequence per id."""
    ordered = frame.sort_values(["ts"], kind="stable")
    groups = dict(list(ordered.groupby("user", sort=False)))
    return [groups[key]["label"].to_numpy() for key in pd.unique(frame["user"])]


STEP_TARGET = ["--id", "user", "--time", "ts", "--features", ",".join(FEATURES), "--target",
               "label", "--target-kind", "timestep"]


@pytest.mark.parametrize("form", ["parquet", "csv"])
@pytest.mark.parametrize("shuffled", [False, True], ids=["sorted", "unsorted"])
def test_timestep_target_equals_pandas_then_keras(form: str, shuffled: bool, tmp_path: Path,
                                                  invoke: Callable[..., Result], keras: Any,
                                                  rng: np.random.Generator) -> None:
    """The label column is padded exactly like the features it sits beside; sample_weight
    marks the real steps; the manifest says the targets are per timestep."""
    from lstmshape.io.source import open_source
    from lstmshape.io.table import TableOptions
    from lstmshape.manifest import JSON_SCHEMA

    path, frame = labelled_table(rng, tmp_path, form, shuffled)
    labels = label_sequences(frame)
    out = tmp_path / "x.npz"
    result = invoke("pad", path, *STEP_TARGET, "-o", out)
    assert result.exit_code == 0, result.output
    expected_x, _ = pandas_oracle(frame, keras, True)
    expected_y = keras.utils.pad_sequences(labels, padding="post", dtype="int64")
    lengths = np.array([len(s) for s in labels])
    with np.load(out) as data:
        np.testing.assert_array_equal(data["x"], expected_x)
        assert data["y"].dtype == np.int64
        np.testing.assert_array_equal(data["y"], expected_y)
        np.testing.assert_array_equal(
            data["sample_weight"],
            (np.arange(expected_y.shape[1]) < lengths[:, None]).astype(np.float32))
    manifest = json.loads((tmp_path / "x.npz.json").read_text())
    assert manifest["targets"] == {"kind": "timestep", "shape": [expected_y.shape[1]],
                                   "dtype": "int64"}
    assert manifest["params"]["table"]["target_kind"] == "timestep"
    jsonschema.validate(manifest, JSON_SCHEMA)
    # both ways of reading are covered: streamed (sorted) and gathered after a sort (unsorted);
    # blocks read out of order (a cursor that starts over) give the same labels
    options = TableOptions(id="user", time="ts", features=tuple(FEATURES), target="label",
                           target_kind="timestep")
    with open_source(str(path), table=options) as source:
        assert ("sorted in memory" in source.detail) == shuffled
        assert source.step_targets is not None
        blocks = [source.step_targets.read_block(a, b) for a, b in [(30, 40), (0, 13), (13, 30)]]
        got = [s[:, 0] for block in (blocks[1], blocks[2], blocks[0]) for s in block.to_list()]
    for mine, theirs in zip(got, labels, strict=True):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize(("form", "shuffled"), [("parquet", True), ("csv", False)],
                         ids=["parquet-unsorted", "csv-sorted"])
def test_timestep_target_batched_like_x(form: str, shuffled: bool, tmp_path: Path,
                                        invoke: Callable[..., Result], keras: Any,
                                        rng: np.random.Generator) -> None:
    """Bucketed, shuffled batches: each batch's y is the label sequences of the samples that
    ``order`` says are in it, padded to the batch's width; pad rows weigh 0."""
    path, frame = labelled_table(rng, tmp_path, form, shuffled)
    labels = label_sequences(frame)
    out = tmp_path / "b.npz"
    result = invoke("batch", path, *STEP_TARGET, "--size", 6, "--bucket-by-length", "--shuffle",
                    "--seed", 1, "--remainder", "pad", "-o", out)
    assert result.exit_code == 0, result.output
    with np.load(out) as data:
        order = data["order"]
        keys = sorted((k for k in data.files if k.startswith("x_")), key=lambda k: int(k[2:]))
        batches = [(data[k], data["y" + k[1:]], data["sample_weight" + k[1:]]) for k in keys]
    assert not np.array_equal(order[order >= 0], np.arange(len(labels)))  # reordered
    assert -1 in order  # a pad row was added
    start = 0
    for x, y, weight in batches:
        rows = order[start:start + len(y)]
        start += len(y)
        want = [labels[i] if i >= 0 else np.zeros(0, np.int64) for i in rows]
        np.testing.assert_array_equal(y, keras.utils.pad_sequences(
            want, maxlen=x.shape[1], padding="post", dtype="int64"))
        np.testing.assert_array_equal(weight.sum(axis=1), [len(s) for s in want])
        np.testing.assert_array_equal(weight.astype(bool), np.any(x != 0, axis=2))
    assert start == len(order)


@pytest.mark.parametrize(("form", "shuffled"), [("parquet", False), ("csv", False),
                                                ("parquet", True)],
                         ids=["parquet-sorted", "csv-sorted", "parquet-unsorted"])
def test_null_timestep_label_is_refused_naming_the_row(form: str, shuffled: bool,
                                                       tmp_path: Path) -> None:
    """A missing label is not NaN (it would be trained on): one line naming the row."""
    ids, times = ([1, 2, 1, 2], [0, 0, 1, 1]) if shuffled else ([1, 1, 2, 2], [0, 1, 0, 1])
    frame = pd.DataFrame({"user": ids, "ts": times, "a": [0.5, 1.5, 2.5, 3.5],
                          "label": pd.array([0.0, 1.0, None, 1.0], dtype="Float64")})
    path = write_form(frame, tmp_path, form)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("pad", path, "--id", "user", "--time", "ts", "--target", "label",
                   "--target-kind", "timestep", "-o", out / "x.npz")
    assert_refused(proc, path.name, "--target 'label'", "null at row 2", folder=out)


# ---------------------------------------------------------------------------------------------
# List columns


def list_table() -> Any:
    tokens = [[5, 1, 9], [], [2], [7, 7, 7, 7, 3]]
    frames = [[[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]], [], [[3.5, 4.0]],
              [[0.0, 1.0]] * 5]
    return pa.table({
        "input_ids": pa.array(tokens, pa.list_(pa.int32())),
        "attention_mask": pa.array([[1] * len(t) for t in tokens], pa.list_(pa.int8())),
        "frames": pa.array(frames, pa.list_(pa.list_(pa.float32()))),
        "fixed": pa.array(frames, pa.list_(pa.list_(pa.float32(), 2))),
        "label": pa.array([0, 1, 1, 0], pa.int64()),
    })


@pytest.mark.parametrize("form", ["parquet", "arrow"])
@pytest.mark.parametrize("column", ["input_ids", "frames", "fixed", "input_ids,frames"])
def test_list_columns_equal_pad_sequences_of_to_pylist(form: str, column: str, tmp_path: Path,
                                                       invoke: Callable[..., Result],
                                                       keras: Any) -> None:
    table = list_table()
    path = tmp_path / f"lists.{form}"
    if form == "parquet":
        pq.write_table(table, path, row_group_size=3)
    else:
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table, max_chunksize=3)
    out = tmp_path / "x.npy"
    result = invoke("pad", f"{path}:{column}", "--padding", "pre", "-o", out)
    assert result.exit_code == 0, result.output
    parts = []
    for name in column.split(","):
        rows = table.column(name).to_pylist()
        dtype = "float32" if name != "input_ids" else "int32"
        padded = keras.utils.pad_sequences(rows, padding="pre", dtype=dtype, value=0)
        parts.append(padded.reshape(len(rows), padded.shape[1], -1))
    expected = np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]
    got = np.load(out)
    np.testing.assert_array_equal(got, expected)
    assert np.load(str(out) + ".lengths.npy").tolist() == [3, 0, 1, 5]


def test_hugging_face_stream_reads_without_options(tmp_path: Path,
                                                   invoke: Callable[..., Result],
                                                   keras: Any) -> None:
    """What ``datasets`` caches: an Arrow IPC *stream* (``.arrow``), several list columns;
    ``input_ids`` is the sequence."""
    table = list_table().select(["input_ids", "attention_mask", "label"])
    path = tmp_path / "data-00000-of-00001.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=2):
            writer.write_batch(batch)
    out = tmp_path / "x.npy"
    result = invoke("pad", path, "-o", out)
    assert result.exit_code == 0, result.output
    expected = keras.utils.pad_sequences(table.column("input_ids").to_pylist(),
                                         padding="post", dtype="int32")
    np.testing.assert_array_equal(np.load(out)[..., 0], expected)


def test_list_column_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"a": [[1, 2], [3], None], "b": [[1, 2], [3, 4], [5]],
                             "c": [[1, 2], [3], [6]], "s": ["x", "y", "z"]}), path)
    out = tmp_path / "out"
    out.mkdir()
    assert_refused(run_cli("pad", f"{path}:a", "-o", out / "x.npy"), "bad.parquet",
                   "'a'", "null at row 2", folder=out)
    assert_refused(run_cli("pad", f"{path}:b,c", "-o", out / "x.npy"), "differ in length",
                   "row 1", folder=out)
    assert_refused(run_cli("pad", f"{path}:s", "-o", out / "x.npy"), "not a list column",
                   folder=out)
    assert_refused(run_cli("pad", path, "-o", out / "x.npy"), "3 list columns",
                   f"{path}:COL", folder=out)


# ---------------------------------------------------------------------------------------------
# Long-table errors: one line naming the row or column


def error_table(folder: Path, name: str, columns: dict[str, Any]) -> Path:
    path = folder / name
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(("columns", "args", "needles"), [
    ({"id": [1, None, 2], "v": [1.0, 2.0, 3.0]}, [], ["null id", "row 1"]),
    ({"id": [1, 1, 2], "t": [0, None, 0], "v": [1.0, 2.0, 3.0]}, ["--time", "t"],
     ["null time", "row 1"]),
    ({"id": [1, 1, 2], "t": [0, 0, 0], "v": [1.0, 2.0, 3.0]}, ["--time", "t"],
     ["duplicate (id, time)", "(1, 0)", "row 1"]),
    ({"id": [1, 2, 1], "t": [0, 0, 0], "v": [1.0, 2.0, 3.0]}, ["--time", "t"],
     ["duplicate (id, time)", "(1, 0)", "row 2"]),
    ({"id": [1, 1, 2], "v": ["a", "b", "c"]}, ["--features", "v"], ["'v'", "not numeric"]),
    ({"id": [1, 1, 2], "v": pa.array([1, None, 3], pa.int64())}, ["--features", "v"],
     ["'v'", "null at row 1"]),
    ({"id": [1, 1, 2], "v": [1.0, 2.0, 3.0], "y": [0, 1, 1]}, ["--target", "y"],
     ["differs within id 1", "row 1"]),
    ({"id": [1, 1, 2], "v": [1.0, 2.0, 3.0]}, ["--time", "nope"], ["no column 'nope'"]),
    ({"id": [0.5, 1.5], "v": [1.0, 2.0]}, [], ["ids must be integers or strings"]),
], ids=["null-id", "null-time", "duplicate", "unsorted-duplicate", "non-numeric",
        "int-null", "target-varies", "no-column", "float-id"])
def test_long_table_errors(columns: dict[str, Any], args: list[str], needles: list[str],
                           tmp_path: Path) -> None:
    path = error_table(tmp_path, "e.parquet", columns)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("pad", path, "--id", "id", *args, "-o", out / "x.npy")
    assert_refused(proc, "e.parquet", *needles, folder=out)


def test_unsorted_over_budget_is_refused_with_the_fix(tmp_path: Path,
                                                      rng: np.random.Generator) -> None:
    count = 120_000
    ids = rng.integers(0, 1000, count)
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"id": ids, "v": rng.random(count)}), path, row_group_size=10_000)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("pad", path, "--id", "id", "--memory-limit", "1MiB", "-o", out / "x.npy")
    assert_refused(proc, "big.parquet", "--memory-limit", "sort the table by id",
                   "appears again at row", folder=out)


def test_missing_pyarrow_says_how_to_install(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,v\n1,2.0\n")
    code = ("import sys, runpy; sys.modules['pyarrow'] = None; "
            "sys.argv = ['lstmshape', 'pad', sys.argv[1], '-o', sys.argv[2]]; "
            "runpy.run_module('lstmshape', run_name='__main__')")
    done = run_python(code, path, tmp_path / "x.npy")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"Error: {path}: ") and \
        "pip install 'lstmshape[table]'" in done.stderr


def test_help_imports_neither_pyarrow_nor_pandas() -> None:
    code = ("import sys; from lstmshape.cli import main\n"
            "try:\n    main(['pad', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('pyarrow', 'pandas', 'numpy') if m in sys.modules))")
    assert run_python(code).stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------------------
# Streaming: sorted input is read a block at a time


def test_sorted_table_streams_block_by_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             invoke: Callable[..., Result],
                                             rng: np.random.Generator) -> None:
    """A spy on the one place feature rows are read: no read holds more rows than a block of
    the budget allows, and together they read every row once -- never the whole table."""
    from lstmshape.io import table as table_module
    from lstmshape.job import BLOCK_SHARE

    count, ids_count = 300_000, 3000
    ids = np.repeat(np.arange(ids_count), count // ids_count)
    path = tmp_path / "sorted.parquet"
    pq.write_table(pa.table({"id": ids, **{f"f{i}": rng.random(count).astype(np.float32)
                                            for i in range(8)}}), path, row_group_size=50_000)
    reads: list[int] = []
    original = table_module.RowCursor.read

    def spy(self: Any, start: int, stop: int) -> Any:
        reads.append(stop - start)
        return original(self, start, stop)

    monkeypatch.setattr(table_module.RowCursor, "read", spy)
    budget = 2**22
    result = invoke("pad", path, "--id", "id", "--memory-limit", str(budget),
                    "-o", tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    assert sum(reads) == count and len(reads) > 10
    row_bytes = 8 * 4 * 2  # a row of input, and its padded output row
    assert max(reads) * row_bytes <= budget // BLOCK_SHARE + 100 * row_bytes


def test_sorted_table_peak_rss_stays_small(tmp_path: Path, rng: np.random.Generator) -> None:
    """A sorted table whose feature columns (128 MB) are larger than the budget: the run stays
    under the SPEC's 300 MB (pyarrow's import alone takes ~115 MB of it)."""
    count = 4_000_000
    path = tmp_path / "sorted.parquet"
    columns = {"id": np.repeat(np.arange(count // 100), 100)}
    columns.update({f"f{i}": rng.random(count).astype(np.float32) for i in range(8)})
    pq.write_table(pa.table(columns), path, row_group_size=250_000)
    del columns
    code, peak_mb, stderr = peak_rss("pad", path, "--id", "id", "--memory-limit", "32MB",
                                     "-o", tmp_path / "x.npy")
    assert code == 0, stderr
    assert peak_mb < 300, f"peak RSS {peak_mb} MB"  # reading it whole: over 400 MB


# ---------------------------------------------------------------------------------------------
# Shards


def test_folder_of_recordings_is_one_set(tmp_path: Path, invoke: Callable[..., Result],
                                         rng: np.random.Generator, keras: Any) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    recordings = {f"rec{i}.npy": rng.standard_normal((int(rng.integers(1, 30)), 3))
                  .astype(np.float32) for i in (1, 2, 10, 3)}
    for name, data in recordings.items():
        np.save(folder / name, data)
    natural = [recordings[f"rec{i}.npy"] for i in (1, 2, 3, 10)]
    expected = keras.utils.pad_sequences(natural, padding="post", dtype="float32",
                                         maxlen=int(np.percentile([len(r) for r in natural], 95)))
    for src in (folder, f"{folder}/rec*.npy"):
        out = tmp_path / "x.npy"
        result = invoke("pad", src, "--layout", "series", "--maxlen", "p95", "-o", out)
        assert result.exit_code == 0, result.output
        np.testing.assert_array_equal(np.load(out), expected)
        manifest = json.loads((tmp_path / "x.npy.json").read_text())
        assert [Path(i["path"]).name for i in manifest["inputs"]] == \
            ["rec1.npy", "rec2.npy", "rec3.npy", "rec10.npy"]
        assert all(len(i["sha256"]) == 64 for i in manifest["inputs"])


def test_shards_of_samples_concatenate(tmp_path: Path, invoke: Callable[..., Result],
                                       rng: np.random.Generator) -> None:
    parts = [rng.standard_normal((n, 5, 2)) for n in (3, 4)]
    for index, part in enumerate(parts):
        np.save(tmp_path / f"part-{index}.npy", part)
    result = invoke("pad", f"{tmp_path}/part-*.npy", "-o", tmp_path / "x.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "x.npz") as data:
        np.testing.assert_array_equal(data["x"], np.concatenate(parts))


def test_shards_that_disagree_name_the_shard(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((2, 4, 3), np.float32))
    np.save(folder / "b.npy", np.zeros((2, 4, 2), np.float32))
    out = tmp_path / "out"
    out.mkdir()
    assert_refused(run_cli("pad", folder, "-o", out / "x.npy"), "b.npy", "2 features",
                   "a.npy", folder=out)
    assert_refused(run_cli("pad", f"{folder}/*.h5", "-o", out / "x.npy"), "no files match",
                   folder=out)


def test_unquoted_glob_is_a_usage_error_saying_to_quote_it(tmp_path: Path) -> None:
    for name in ("a.npy", "b.npy", "c.npy"):
        np.save(tmp_path / name, np.zeros((2, 3)))
    proc = run_cli("pad", tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "c.npy",
                   "-o", tmp_path / "x.npy")
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "Quote it" in stderr and f"'{tmp_path}/*.npy'" in stderr


# ---------------------------------------------------------------------------------------------
# inspect


def test_inspect_a_table_without_and_with_id(tmp_path: Path, rng: np.random.Generator,
                                             invoke: Callable[..., Result]) -> None:
    frame = long_frame(rng, False, count=6).rename(columns={"user": "user_id"})
    path = write_form(frame, tmp_path, "csv")
    result = invoke("inspect", path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    table = report["table"]
    assert table["rows"] == len(frame) and table["likely_id"] == "user_id"
    assert table["likely_time"] == "ts" and table["list_columns"] == []
    assert {"name": "a", "type": "double"} in table["columns"]
    assert "--id user_id --time ts" in report["suggestion"]
    result = invoke("inspect", path, "--id", "user_id", "--time", "ts", "--json")
    report = json.loads(result.output)
    assert report["samples"] == 6 and report["lengths"]["histogram"]
    assert report["suggestion"].startswith(f"lstmshape pad {path} --id user_id --time ts")


def test_every_reading_command_takes_a_table(tmp_path: Path, invoke: Callable[..., Result],
                                             rng: np.random.Generator) -> None:
    """window reads a table without --id as one series (its numeric columns), equal to the same
    series from an .npy; add-feature joins two tables of the same ids."""
    series = rng.standard_normal((50, 2)).astype(np.float32)
    path = tmp_path / "series.tsv"
    pcsv.write_csv(pa.table({"a": series[:, 0], "b": series[:, 1]}), path,
                   pcsv.WriteOptions(delimiter="\t"))
    np.save(tmp_path / "series.npy", pd.read_csv(path, sep="\t").to_numpy())
    for src, out in ((path, "w1.npy"), (tmp_path / "series.npy", "w2.npy")):
        result = invoke("window", src, "--timesteps", "5", "--stride", "3", "-o", tmp_path / out)
        assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "w1.npy"), np.load(tmp_path / "w2.npy"))
    frame = long_frame(rng, False, count=5)
    table = write_form(frame, tmp_path, "parquet")
    result = invoke("add-feature", table, table, "--id", "user", "--time", "ts",
                    "-o", tmp_path / "af.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "af.npz") as data:
        assert data["values"].shape == (len(frame), 6)


def test_unsorted_table_checks_every_row_after_the_scan_stops(tmp_path: Path) -> None:
    """An unsorted Parquet table is sorted in memory as soon as the scan sees an id reappear;
    a null id further on is still found, with its row."""
    count = 100_000
    ids = pa.array(np.arange(count) % 7, pa.int64())
    ids = pa.concat_arrays([ids.slice(0, count - 1), pa.array([None], pa.int64())])
    path = error_table(tmp_path, "late.parquet", {"id": ids, "v": np.ones(count)})
    out = tmp_path / "out"
    out.mkdir()
    assert_refused(run_cli("pad", path, "--id", "id", "-o", out / "x.npy"), "late.parquet",
                   "null id", f"row {count - 1}", folder=out)


def test_folder_of_2d_files_without_layout_says_how_to_read_recordings(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    for index in range(3):
        np.save(folder / f"r{index}.npy", np.ones((5 + index, 4), np.float32))
    done = run_cli("pad", folder, "-o", tmp_path / "x.npy")
    assert done.returncode == 0
    assert "--layout series" in done.stderr.decode()


def test_dask_engine_reads_tables_and_shards_as_the_local_one(tmp_path: Path,
                                                             rng: np.random.Generator) -> None:
    """Workers open the input with the same table options and layout as the client did."""
    table = write_form(long_frame(rng, True, count=12), tmp_path, "parquet")
    folder = tmp_path / "recordings"
    folder.mkdir()
    for index in range(4):
        np.save(folder / f"r{index}.npy", rng.standard_normal((3 + index, 2)))
    for src, options in ((table, ["--id", "user", "--time", "ts"]),
                         (folder, ["--layout", "series"])):
        digests = []
        for engine in (["--engine", "dask", "--workers", "1"], []):
            out = tmp_path / f"out{len(digests)}.zarr"
            done = run_cli("pad", src, *options, *engine, "-o", out, timeout=120)
            assert done.returncode == 0, done.stderr
            digests.append(json.loads(Path(f"{out}.json").read_text())["outputs"]["x"]["sha256"])
        assert digests[0] == digests[1]


def test_window_of_a_table_gives_each_window_its_series_id(tmp_path: Path,
                                                           invoke: Any) -> None:
    """Each window gets the id of the series it was cut from, streamed beside source_index
    (3 windows of 3 series: u2, u2, u1 -- not the series' ids u2, u1, u3 in a row)."""
    path = tmp_path / "w.csv"
    path.write_text("user,ts,a\nu2,1,2.1\nu2,2,2.2\nu2,3,2.3\nu1,1,1.1\nu1,2,1.2\nu3,1,3.1\n")
    out = tmp_path / "w.npz"
    result = invoke("window", path, "--id", "user", "--time", "ts", "--timesteps", 1,
                    "--target", "a", "-o", out)
    assert result.exit_code == 0, result.output
    with np.load(out) as data:
        assert data["source_index"].tolist() == [0, 0, 1]
        assert data["ids"].tolist() == ["u2", "u2", "u1"]
