"""``inspect``: the report for people, the JSON for scripts, and the ``--expect-shape`` gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from conftest import run_lstmshape, write_ragged

JSON_KEYS = {"path", "key", "kind", "samples", "timesteps", "features", "dtype", "lengths",
             "nan", "inf", "lstm_ready", "input_shape", "suggestion", "arrays", "value_range",
             "pad_collisions", "nbytes", "layout"}


def test_json_of_a_ragged_set(tmp_path: Path, invoke: Any) -> None:
    seqs = [np.full((n, 2), n, np.float32) for n in (1, 4, 10, 4)]
    seqs[1][0] = [np.nan, np.inf]
    seqs[2][3] = 0  # a real timestep that a Masking(0) layer would hide
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    result = invoke("inspect", src, "--json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert set(report) >= JSON_KEYS
    assert report["kind"] == "ragged" and report["timesteps"] is None
    assert (report["samples"], report["features"], report["dtype"]) == (4, 2, "float32")
    assert report["lengths"]["min"] == 1 and report["lengths"]["max"] == 10
    assert report["lengths"]["mean"] == 4.75
    assert report["nan"] == 1 and report["inf"] == 1
    assert report["pad_collisions"] == 1
    assert report["value_range"] == [0.0, 10.0]
    assert report["lstm_ready"] is False
    assert report["input_shape"] == [None, 2]
    assert {a["key"] for a in report["arrays"]} == {"values", "lengths"}


def test_dense_3d_is_ready_and_2d_needs_pad(tmp_path: Path, invoke: Any) -> None:
    np.save(tmp_path / "ready.npy", np.ones((5, 7, 3), np.float32))
    report = json.loads(invoke("inspect", tmp_path / "ready.npy", "--json").output)
    assert report["lstm_ready"] is True and report["input_shape"] == [7, 3]
    assert report["suggestion"] is None
    np.save(tmp_path / "tokens.npy", np.ones((5, 7), np.int32))
    report = json.loads(invoke("inspect", tmp_path / "tokens.npy", "--json").output)
    assert report["lstm_ready"] is False and report["input_shape"] == [7, 1]
    assert report["suggestion"].startswith("lstmshape pad ")


def test_suggested_command_makes_it_ready(tmp_path: Path) -> None:
    src = write_ragged(tmp_path, "h5-group", [np.ones((n, 3)) for n in range(1, 40)])
    report = json.loads(run_lstmshape("inspect", src, "--json", cwd=tmp_path).stdout)
    command = report["suggestion"].split()
    assert command[:2] == ["lstmshape", "pad"]
    assert run_lstmshape(*command[1:], cwd=tmp_path).returncode == 0
    output = command[command.index("-o") + 1]
    after = json.loads(run_lstmshape("inspect", output, "--json", cwd=tmp_path).stdout)
    assert after["lstm_ready"] is True


def test_people_report_has_histogram_and_verdict(tmp_path: Path, invoke: Any) -> None:
    src = write_ragged(tmp_path, "npz-lengths", [np.ones((n, 1)) for n in range(1, 30)])
    output = invoke("inspect", src).output
    assert "ragged" in output and "lengths histogram" in output and "█" in output
    assert "Not LSTM-ready: lstmshape pad" in output
    np.save(tmp_path / "d.npy", np.ones((2, 3, 4)))
    assert "LSTM-ready: input_shape=(3, 4)" in invoke("inspect", tmp_path / "d.npy").output


def test_container_listing_like_h5ls(tmp_path: Path, invoke: Any) -> None:
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as h5:
        h5["a/b/x"] = np.zeros((2, 3, 4))
        h5["labels"] = np.zeros(2)
    result = invoke("inspect", path, "--json")
    report = json.loads(result.output)
    assert [a["key"] for a in report["arrays"]] == ["/a/b/x", "/labels"]
    assert report["kind"] is None and "f.h5:/a/b/x" in report["suggestion"]
    report = json.loads(invoke("inspect", f"{path}:/a/b/x", "--json").output)
    assert report["input_shape"] == [3, 4]


def test_expect_shape_gate(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((8, 100, 8), np.float32))
    ok = run_lstmshape("inspect", tmp_path / "x.npy", "--expect-shape", "*,100,8", "--json")
    assert ok.returncode == 0
    bad = run_lstmshape("inspect", tmp_path / "x.npy", "--expect-shape", "*,50,8")
    assert bad.returncode == 1
    assert bad.stderr.decode().strip().splitlines() == [
        f"Error: {tmp_path / 'x.npy'}: shape (8,100,8) does not match expected (*,50,8)"]
    usage = run_lstmshape("inspect", tmp_path / "x.npy", "--expect-shape", "a,b")
    assert usage.returncode == 2


def test_several_sources_give_a_json_list(tmp_path: Path, invoke: Any) -> None:
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", np.ones((2, 3)))
    reports = json.loads(invoke("inspect", tmp_path / "a.npy", tmp_path / "b.npy",
                                "--json").output)
    assert [Path(r["path"]).name for r in reports] == ["a.npy", "b.npy"]


def test_no_color_and_pipe_have_no_escape_codes(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((2, 3, 1)))
    done = run_lstmshape("inspect", tmp_path / "x.npy", env={"NO_COLOR": "1",
                                                             "FORCE_COLOR": ""})
    assert done.returncode == 0 and b"\x1b[" not in done.stdout


def test_several_sources_report_every_one_then_fail(tmp_path: Path) -> None:
    np.save(tmp_path / "good.npy", np.ones((2, 3, 1)))
    (tmp_path / "bad.npy").write_text("not an array")
    done = run_lstmshape("inspect", tmp_path / "bad.npy", tmp_path / "good.npy", "--json")
    assert done.returncode == 1
    reports = json.loads(done.stdout)
    assert "not an NPY file" in reports[0]["error"] and reports[1]["lstm_ready"] is True
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: 1 of 2 inputs failed: ")


def test_names_from_files_are_not_rich_markup(tmp_path: Path, invoke: Any) -> None:
    path = tmp_path / "mk.h5"
    with h5py.File(path, "w") as h5:
        h5["a[/]"] = np.ones((2, 3, 1))
        h5["b[red]"] = np.ones((2, 3))
    result = invoke("inspect", f"{path}:/a[/]")
    assert result.exit_code == 0
    assert "/a[/]" in result.output and "/b[red]" in result.output
    np.save(tmp_path / "x3.npy", np.ones((2, 3, 3)))
    assert "[f0, f1, f2]" in invoke("inspect", tmp_path / "x3.npy").output
