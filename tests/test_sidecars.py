"""Side files (OUT.json, OUT.lengths.npy, OUT.y.npy) never lie about the tensor beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from conftest import files_in, write_ragged


def ragged_source(tmp_path: Path) -> str:
    return write_ragged(tmp_path, "npz-lengths",
                        [np.arange(1, n + 1, dtype=np.float32)[:, None] for n in (3, 9, 5)])


def test_manifest_onto_the_output_is_refused(tmp_path: Path, invoke: Any) -> None:
    src = ragged_source(tmp_path)
    for output, manifest in (("o.npy", "o.npy"), ("q.npz", "q.npz"),
                             ("r.npy", "r.npy.lengths.npy")):
        result = invoke("pad", src, "-o", tmp_path / output, "--manifest", tmp_path / manifest)
        assert result.exit_code == 1, result.output
        assert "--manifest" in result.output
    assert files_in(tmp_path) == ["seqs.npz"]


def test_output_onto_an_inputs_lengths_file_is_refused(tmp_path: Path, invoke: Any) -> None:
    src = ragged_source(tmp_path)
    assert invoke("pad", src, "-o", tmp_path / "p.npy").exit_code == 0
    before = (tmp_path / "p.npy.lengths.npy").read_bytes()
    result = invoke("truncate", tmp_path / "p.npy", "--maxlen", 4,
                    "-o", tmp_path / "p.npy.lengths.npy")
    assert result.exit_code == 1 and "refusing to overwrite an input" in result.output
    assert (tmp_path / "p.npy.lengths.npy").read_bytes() == before


def test_no_manifest_rerun_removes_the_stale_side_files(tmp_path: Path, invoke: Any) -> None:
    src = ragged_source(tmp_path)
    out = tmp_path / "keep.npy"
    assert invoke("pad", src, "-o", out).exit_code == 0
    assert (tmp_path / "keep.npy.json").exists() and (tmp_path / "keep.npy.lengths.npy").exists()
    assert invoke("pad", src, "--maxlen", 2, "--no-manifest", "-o", out).exit_code == 0
    assert files_in(tmp_path) == ["keep.npy", "seqs.npz"]
    assert invoke("inspect", out).exit_code == 0  # no stale lengths longer than the tensor


def test_rerun_without_targets_removes_old_y(tmp_path: Path, invoke: Any) -> None:
    np.save(tmp_path / "series.npy", np.arange(40, dtype=np.float32).reshape(20, 2))
    out = tmp_path / "w.npy"
    assert invoke("window", tmp_path / "series.npy", "--timesteps", 4, "--target", 0,
                  "-o", out).exit_code == 0
    assert (tmp_path / "w.npy.y.npy").exists()
    assert invoke("window", tmp_path / "series.npy", "--timesteps", 4, "-o", out).exit_code == 0
    assert not (tmp_path / "w.npy.y.npy").exists()


def test_input_replaced_after_its_manifest_is_refused(tmp_path: Path, invoke: Any) -> None:
    src = ragged_source(tmp_path)
    padded = tmp_path / "a.npy"
    assert invoke("pad", src, "-o", padded).exit_code == 0
    np.save(padded, np.ones(np.load(padded).shape, np.float32))  # same shape, other bytes
    result = invoke("truncate", padded, "--maxlen", 4, "-o", tmp_path / "b.npz")
    assert result.exit_code == 1
    assert "does not match its manifest" in result.output
    assert not (tmp_path / "b.npz").exists()


def test_manifest_and_no_manifest_together_is_a_usage_error(tmp_path: Path,
                                                            invoke: Any) -> None:
    src = ragged_source(tmp_path)
    result = invoke("pad", src, "-o", tmp_path / "o.npy", "--no-manifest",
                    "--manifest", tmp_path / "m.json")
    assert result.exit_code == 2 and "exclude each other" in result.output
    assert files_in(tmp_path) == ["seqs.npz"]
