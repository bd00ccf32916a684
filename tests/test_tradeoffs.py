"""``inspect``'s maxlen trade-off table and ``--plot``: every figure against numpy on the lengths
and against what ``pad`` and ``batch`` really write; the PNG; lengths only, never the values."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import files_in, run_lstmshape, run_python, write_ragged
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmshape.commands.inspect import inspect_file
from lstmshape.io.source import Source
from lstmshape.ops.batch import plan_batches
from lstmshape.ops.tradeoffs import maxlen_tradeoffs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {"candidate", "maxlen", "padded_timesteps", "padded_share", "truncated_samples",
            "dropped_timesteps", "dropped_share", "tensor_bytes", "batch_size",
            "bucketed_padded_timesteps", "bucketed_padded_share", "batch_bytes", "pad_p95"}
#: ties everywhere: p50 sits exactly where the cdf reaches 0.5, p90 = p95, p99 = max
TIED_LENGTHS = [3] * 10 + [5] * 6 + [9] * 3 + [20]


def direct_row(lengths: np.ndarray, candidate: str, features: int, itemsize: int,
               batch_size: int) -> dict[str, Any]:
    """One row computed straight from the definitions, with numpy, independently of lstmshape."""
    if candidate == "max":
        maxlen = int(lengths.max())
    elif candidate.startswith("p"):
        maxlen = int(np.percentile(lengths, float(candidate[1:]), method="inverted_cdf"))
    else:
        maxlen = int(candidate)
    kept = np.minimum(lengths, maxlen)
    slots = lengths.size * maxlen
    dropped = int((lengths - kept).sum())
    # batch --bucket-by-length, remainder keep: sorted lengths cut into runs of batch_size from
    # the shortest, the last run short; each run padded to its longest (capped, at least 1)
    cap = max(maxlen, 1)
    runs = np.split(np.sort(lengths), np.arange(batch_size, lengths.size, batch_size))
    widths = [max(min(int(run.max()), cap), 1) for run in runs]
    bucket_slots = sum(len(run) * width for run, width in zip(runs, widths, strict=True))
    bucket_real = sum(int(np.minimum(run, width).sum()) for run, width in zip(runs, widths,
                                                                              strict=True))
    return {
        "candidate": candidate, "maxlen": maxlen,
        "padded_timesteps": slots - int(kept.sum()),
        "padded_share": (slots - int(kept.sum())) / slots if slots else 0.0,
        "truncated_samples": int((lengths > maxlen).sum()),
        "dropped_timesteps": dropped,
        "dropped_share": dropped / int(lengths.sum()) if lengths.sum() else 0.0,
        "tensor_bytes": slots * features * itemsize,
        "batch_size": batch_size,
        "bucketed_padded_timesteps": bucket_slots - bucket_real,
        "bucketed_padded_share": (bucket_slots - bucket_real) / bucket_slots,
        "batch_bytes": batch_size * maxlen * features * itemsize,
        "pad_p95": candidate == "p95",
    }


def by_candidate(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["candidate"]: row for row in rows}


def sequences(lengths: list[int] | np.ndarray, features: int = 2,
              dtype: str = "float32") -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.normal(size=(int(n), features)).astype(dtype) for n in lengths]


# ---------------------------------------------------------------------------------------------
# The figures


def test_every_row_equals_numpy_on_the_lengths_with_ties(tmp_path: Path, invoke: Any) -> None:
    src = write_ragged(tmp_path, "h5-lengths", sequences(TIED_LENGTHS, features=3))
    result = invoke("inspect", src, "--json", "--batch-size", "6", "--maxlen", "4",
                    "--maxlen", "p80", "--maxlen", "P80", "--maxlen", "p95")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["maxlen_tradeoffs"]
    # worked out by hand from the inverted-cdf rule: the smallest length that at least q% fit
    assert [(row["candidate"], row["maxlen"]) for row in rows] == [
        ("p50", 3), ("4", 4), ("p75", 5), ("p80", 5), ("p90", 9), ("p95", 9), ("p99", 20),
        ("max", 20)]
    lengths = np.array(TIED_LENGTHS)
    for row in rows:
        assert row == direct_row(lengths, row["candidate"], 3, 4, 6)
    assert [row["candidate"] for row in rows if row["pad_p95"]] == ["p95"]
    p50 = by_candidate(rows)["p50"]  # 3 steps: 10 samples cut, 6 x 2 + 3 x 6 + 17 dropped
    assert (p50["truncated_samples"], p50["dropped_timesteps"], p50["padded_timesteps"]) == (
        10, 12 + 18 + 17, 0)


def test_marked_row_is_what_pad_p95_writes(tmp_path: Path, invoke: Any) -> None:
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 300, size=257)
    src = write_ragged(tmp_path, "npz-lengths", sequences(lengths, features=4, dtype="float16"))
    rows = json.loads(invoke("inspect", src, "--json").output)["maxlen_tradeoffs"]
    marked = next(row for row in rows if row["pad_p95"])
    out = tmp_path / "padded.npy"
    assert invoke("pad", src, "--maxlen", "p95", "-o", out).exit_code == 0
    tensor = np.load(out)
    true_lengths = np.load(f"{out}.lengths.npy")
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert tensor.shape == (257, marked["maxlen"], 4)
    assert tensor.nbytes == marked["tensor_bytes"]
    assert tensor.shape[0] * tensor.shape[1] - int(true_lengths.sum()) == marked[
        "padded_timesteps"]
    assert manifest["lengths"]["truncated_samples"] == marked["truncated_samples"]
    assert manifest["lengths"]["dropped_timesteps"] == marked["dropped_timesteps"]


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_bucketed_padding_is_what_batch_writes(tmp_path: Path, invoke: Any,
                                               batch_size: int) -> None:
    rng = np.random.default_rng(batch_size)
    lengths = np.concatenate([rng.integers(0, 120, size=90), [0, 0, 200, 200]])
    src = write_ragged(tmp_path, "h5-lengths", sequences(lengths))
    rows = json.loads(invoke("inspect", src, "--json", "--batch-size", batch_size,
                             "--maxlen", "50").output)["maxlen_tradeoffs"]
    for row in rows:
        out = tmp_path / f"bucketed_{row['candidate']}.npz"
        done = invoke("batch", src, "--size", batch_size, "--bucket-by-length", "--maxlen",
                      row["maxlen"], "-o", out)
        assert done.exit_code == 0, done.output
        with np.load(out) as written:
            xs = [written[key] for key in written.files if key.startswith("x_")]
            real = sum(int(written[key].sum()) for key in written.files
                       if key.startswith("lengths_"))
        slots = sum(x.shape[0] * x.shape[1] for x in xs)
        assert row["bucketed_padded_timesteps"] == slots - real
        assert row["bucketed_padded_share"] == (slots - real) / slots
        assert row["bucketed_padded_share"] <= row["padded_share"]


def test_batch_bytes_are_one_batch_batch_writes(tmp_path: Path, invoke: Any) -> None:
    src = write_ragged(tmp_path, "npz-lengths", sequences(range(1, 41), features=3,
                                                          dtype="float64"))
    rows = json.loads(invoke("inspect", src, "--json", "--batch-size", "8").output)[
        "maxlen_tradeoffs"]
    row = by_candidate(rows)["p75"]
    out = tmp_path / "batches.npz"
    assert invoke("batch", src, "--size", 8, "--maxlen", row["maxlen"], "-o", out).exit_code == 0
    with np.load(out) as written:
        assert written["x_000000"].shape == (8, row["maxlen"], 3)
        assert written["x_000000"].nbytes == row["batch_bytes"]


@settings(max_examples=150, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=70),
       batch_size=st.integers(1, 9), features=st.integers(1, 4),
       itemsize=st.sampled_from([1, 2, 4, 8]),
       extra=st.lists(st.integers(1, 60), max_size=3))
def test_property_rows_equal_numpy(lengths: list[int], batch_size: int, features: int,
                                   itemsize: int, extra: list[int]) -> None:
    array = np.array(lengths)
    rows = [row.to_dict() for row in maxlen_tradeoffs(array, features=features,
                                                      itemsize=itemsize,
                                                      batch_size=batch_size, extra=extra)]
    expected = ["p50", "p75", "p90", "p95", "p99", "max",
                *dict.fromkeys(str(e) for e in extra)]
    assert sorted(row["candidate"] for row in rows) == sorted(expected)
    for row in rows:
        assert row == direct_row(array, row["candidate"], features, itemsize, batch_size)
    maxlens = [row["maxlen"] for row in rows]
    assert maxlens == sorted(maxlens)
    # a longer maxlen pads a larger share and drops fewer timesteps
    for shorter, longer in itertools.pairwise(rows):
        assert shorter["padded_share"] <= longer["padded_share"] + 1e-12
        assert shorter["dropped_timesteps"] >= longer["dropped_timesteps"]
    for row in rows:
        # the rows were planned once for every maxlen: the same as batch's plan for each one
        plan = plan_batches(array, batch_size, bucket=True, maxlen=max(row["maxlen"], 1))
        assert row["bucketed_padded_timesteps"] == plan.padded_timesteps
        if row["maxlen"] >= 1:  # bucketing never pads more than one tensor of that maxlen
            assert row["bucketed_padded_share"] <= row["padded_share"] + 1e-12


# ---------------------------------------------------------------------------------------------
# The report


def test_json_rows_and_the_table_for_people(tmp_path: Path, invoke: Any) -> None:
    src = write_ragged(tmp_path, "npz-lengths", sequences([4, 8, 8, 30]))
    report = json.loads(invoke("inspect", src, "--json").output)
    rows = report["maxlen_tradeoffs"]
    assert all(set(row) == ROW_KEYS for row in rows)
    assert [row["candidate"] for row in rows] == ["p50", "p75", "p90", "p95", "p99", "max"]
    assert {row["batch_size"] for row in rows} == {32}
    text = invoke("inspect", src, "--maxlen", "6").output
    assert "maxlen trade-offs" in text
    table = text[text.index("maxlen trade-offs"):]
    assert "p95 30 ◀" in table and "\n 6 " in table and "batch --bucket-by-length --size 32" \
        in table


def test_dense_inputs(tmp_path: Path, invoke: Any) -> None:
    dense = tmp_path / "dense.npy"
    np.save(dense, np.ones((6, 10, 2), np.float32))
    report = json.loads(invoke("inspect", dense, "--json").output)
    assert report["maxlen_tradeoffs"] is None  # every sequence is 10 long: nothing to choose
    assert "maxlen trade-offs" not in invoke("inspect", dense).output
    rows = json.loads(invoke("inspect", dense, "--json", "--maxlen", "4").output)[
        "maxlen_tradeoffs"]
    assert by_candidate(rows)["4"]["dropped_timesteps"] == 6 * 6
    true_lengths = np.array([10, 3, 3, 7, 1, 10])
    np.save(tmp_path / "lengths.npy", true_lengths)
    rows = json.loads(invoke("inspect", dense, "--json", "--lengths",
                             tmp_path / "lengths.npy").output)["maxlen_tradeoffs"]
    for row in rows:
        assert row == direct_row(true_lengths, row["candidate"], 2, 4, 32)


def test_bad_options_are_one_error_line(tmp_path: Path) -> None:
    src = write_ragged(tmp_path, "npz-lengths", sequences([1, 2, 3]))
    for args, code in ((["--maxlen", "p0"], 2), (["--batch-size", "0"], 2),
                       (["--plot", tmp_path / "lengths.svg"], 2),
                       (["--plot", tmp_path / "missing" / "lengths.png"], 1)):
        done = run_lstmshape("inspect", src, *args)
        lines = done.stderr.decode().strip().splitlines()
        assert done.returncode == code, lines
        assert lines[-1].startswith("Error: ") and "Traceback" not in done.stderr.decode()
    lines = run_lstmshape("inspect", src, "--plot", tmp_path / "missing" / "lengths.png"
                          ).stderr.decode().strip().splitlines()
    assert lines == [f"Error: {tmp_path / 'missing' / 'lengths.png'}: cannot write: folder "
                     f"{tmp_path / 'missing'} does not exist"]
    done = run_lstmshape("inspect", src, src, "--plot", tmp_path / "lengths.png")
    assert done.returncode == 2 and not (tmp_path / "lengths.png").exists()


# ---------------------------------------------------------------------------------------------
# The picture


def test_plot_is_a_png_with_the_same_bytes_every_time(tmp_path: Path, invoke: Any) -> None:
    src = write_ragged(tmp_path, "h5-lengths", sequences(np.arange(1, 200) % 37 + 1))
    first, second, other = (tmp_path / "first.png", tmp_path / "second.png",
                            tmp_path / "other.png")
    for path in (first, second):
        assert invoke("inspect", src, "--plot", path, "--maxlen", "30").exit_code == 0
    data = first.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and data == second.read_bytes()
    import matplotlib.image

    image = matplotlib.image.imread(first)
    assert image.shape[:2] == (600, 800)
    assert b"Matplotlib version" not in data  # no version stamp to change the bytes
    assert invoke("inspect", src, "--plot", other).exit_code == 0  # without the p30 line
    assert other.read_bytes() != data
    assert files_in(tmp_path) == sorted(["first.png", "second.png", "other.png",
                                         Path(src.split(":")[0]).name])


def test_plot_ignores_the_users_matplotlibrc(tmp_path: Path) -> None:
    src = write_ragged(tmp_path, "npz-lengths", sequences([5, 9, 9, 14, 30]))
    config = tmp_path / "mplconfig"
    config.mkdir()
    (config / "matplotlibrc").write_text("font.size: 20\nlines.linewidth: 6\n"
                                         "figure.facecolor: yellow\n")
    plain = run_lstmshape("inspect", src, "--plot", tmp_path / "plain.png")
    styled = run_lstmshape("inspect", src, "--plot", tmp_path / "styled.png",
                           env={"MPLCONFIGDIR": str(config)})
    assert plain.returncode == 0 and styled.returncode == 0, styled.stderr
    assert (tmp_path / "plain.png").read_bytes() == (tmp_path / "styled.png").read_bytes()


def test_plot_of_odd_names_and_lengths_is_quiet(tmp_path: Path) -> None:
    """A "$" in a file name is not TeX; a script the font lacks, no lengths at all, or a dense
    tensor of one length still give a picture, and nothing on stderr."""
    odd = tmp_path / "run$1 数据.npz"
    np.savez(odd, values=np.ones((10, 2), np.float32), lengths=np.array([1, 2, 3, 4]))
    np.savez(tmp_path / "empty.npz", values=np.ones((0, 2), np.float32),
             lengths=np.zeros(0, np.int64))
    np.save(tmp_path / "dense.npy", np.ones((5, 7, 2), np.float32))
    for src in (odd, tmp_path / "empty.npz", tmp_path / "dense.npy"):
        plot = tmp_path / f"{src.stem}.png"
        done = run_lstmshape("inspect", src, "--plot", plot)
        assert done.returncode == 0 and done.stderr == b"", done.stderr
        assert plot.read_bytes().startswith(PNG_SIGNATURE)


def test_failed_run_leaves_an_older_plot_alone(tmp_path: Path) -> None:
    plot = tmp_path / "lengths.png"
    plot.write_bytes(b"an older picture")
    (tmp_path / "bad.npy").write_text("not an array")
    done = run_lstmshape("inspect", tmp_path / "bad.npy", "--plot", plot)
    assert done.returncode == 1 and plot.read_bytes() == b"an older picture"
    assert files_in(tmp_path) == ["bad.npy", "lengths.png"]


def test_without_matplotlib_one_line_says_how_to_install(tmp_path: Path) -> None:
    src = write_ragged(tmp_path, "npz-lengths", sequences([1, 5, 9]))
    plot = tmp_path / "lengths.png"
    code = ("import sys\nsys.modules['matplotlib'] = None  # as if it were not installed\n"
            "from lstmshape.cli import main\n"
            f"main(['inspect', {src!r}, '--plot', {str(plot)!r}])\n")
    done = run_python(code)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: --plot {plot} needs matplotlib, which is not installed: "
        f"pip install 'lstmshape[plot]'"]
    assert done.stdout == "" and not plot.exists()
    # the table itself needs no matplotlib
    code = code.replace(f", '--plot', {str(plot)!r}", ", '--json'")
    done = run_python(code)
    assert done.returncode == 0 and json.loads(done.stdout)["maxlen_tradeoffs"]


def test_inspect_without_plot_does_not_import_matplotlib(tmp_path: Path) -> None:
    src = write_ragged(tmp_path, "npz-lengths", sequences([1, 5, 9]))
    code = ("import sys\nfrom lstmshape.cli import cli\n"
            f"cli.main(['inspect', {src!r}], standalone_mode=False)\n"
            "print('LOADED', 'matplotlib' in sys.modules, file=sys.stderr)")
    done = run_python(code)
    assert "LOADED False" in done.stderr, done.stderr


# ---------------------------------------------------------------------------------------------
# Lengths only


def test_table_and_plot_read_no_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sample's values are read once, by the value statistics; the trade-off rows and
    the plot add no read at all."""
    lengths = np.arange(1, 3001) % 97 + 1
    src = write_ragged(tmp_path, "h5-lengths", sequences(lengths))
    read_rows: list[int] = []
    original = Source.read_block

    def counting(self: Source, start: int, stop: int) -> Any:
        read_rows.extend(range(start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(Source, "read_block", counting)
    report = inspect_file(src, memory_limit=1 << 20, maxlens=["p80", 40], batch_size=16,
                          plot=str(tmp_path / "lengths.png"))
    assert len(report["maxlen_tradeoffs"]) == 8
    assert sorted(read_rows) == list(range(lengths.size))  # many blocks, each sample once
    assert len(set(read_rows)) == len(read_rows) and len(read_rows) == 3000


def test_big_ragged_h5_stays_within_the_memory_budget(tmp_path: Path) -> None:
    """Peak RSS of ``inspect --plot`` on a ragged .h5 of 320 MB of values, measured in a
    subprocess of its own (RUSAGE_CHILDREN of a fresh wrapper sees only that run)."""
    path = tmp_path / "big.h5"
    features, rows_per_write = 8, 1_000_000
    total_rows = 10 * rows_per_write  # 10 M timesteps x 8 float32 = 320 MB
    lengths = np.full(total_rows // 500, 500, dtype=np.int64)
    lengths[::2] -= 400  # 100 and 900: half the samples short, half long
    lengths[1::2] += 400
    block = np.random.default_rng(0).standard_normal((rows_per_write, features),
                                                     dtype=np.float32)
    with h5py.File(path, "w") as h5:
        values = h5.create_dataset("values", (total_rows, features), dtype="f4")
        for start in range(0, total_rows, rows_per_write):
            values[start:start + rows_per_write] = block
        h5["lengths"] = lengths
    assert path.stat().st_size > 300 * 10**6
    measure = ("import resource, subprocess, sys\n"
               "done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\n"
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.stdout.write(done.stdout.decode())")
    done = run_python(measure, sys.executable, "-m", "lstmshape", "inspect", str(path), "--json",
                      "--plot", str(tmp_path / "big.png"), timeout=300)
    first, _, output = done.stdout.partition("\n")
    code, peak_kb = map(int, first.split())
    assert code == 0, done.stderr
    rows = json.loads(output)["maxlen_tradeoffs"]
    assert by_candidate(rows)["p50"]["maxlen"] == 100
    assert by_candidate(rows)["max"]["maxlen"] == 900
    assert (tmp_path / "big.png").read_bytes().startswith(PNG_SIGNATURE)
    peak_mb = peak_kb * 1024 / 10**6  # ru_maxrss is in KiB on Linux
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB on a 320 MB input"
