"""Side files (OUT.json, OUT.lengths.npy, OUT.y.npy) never lie about the tensor beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
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


def test_planted_old_manifest_cannot_delete_files_elsewhere(tmp_path: Path,
                                                            invoke: Any) -> None:
    import json

    (tmp_path / "work").mkdir()
    (tmp_path / "victim").mkdir()
    np.save(tmp_path / "work" / "in.npy", np.ones((2, 3, 1), np.float32))
    precious = tmp_path / "victim" / "out.npy.precious.npy"
    np.save(precious, np.arange(3))
    planted = {"schema": "lstmshape/manifest-v1",
               "outputs": {"e": {"path": "../victim/out.npy.precious.npy"}}}
    (tmp_path / "work" / "out.npy.json").write_text(json.dumps(planted))
    result = invoke("pad", tmp_path / "work" / "in.npy", "-o", tmp_path / "work" / "out.npy")
    assert result.exit_code == 0
    assert precious.exists()


def test_no_reader_follows_a_manifest_to_side_files_outside_the_output(tmp_path: Path,
                                                                       invoke: Any) -> None:
    import json

    from lstmshape.errors import InputError
    from lstmshape.io.source import open_source

    src = ragged_source(tmp_path)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "t.npy"
    assert invoke("pad", src, "-o", out).exit_code == 0
    (tmp_path / "s.npy").write_text("password=hunter2\n")
    manifest = json.loads(Path(f"{out}.json").read_text())
    manifest["outputs"]["lengths"]["path"] = "../s.npy"
    Path(f"{out}.json").write_text(json.dumps(manifest))
    # pad, verify, inspect and the framework bridges all read through open_source: one answer
    with pytest.raises(InputError, match="reads only that file"):
        open_source(str(out))
    for command in (["pad", out, "-o", tmp_path / "again.npy"], ["verify", out, "--no-model"],
                    ["inspect", out]):
        result = invoke(*command)
        assert result.exit_code == 1 and "s.npy" in result.output, command
        assert "hunter2" not in result.output


def test_a_damaged_manifest_beside_an_input_is_reported(tmp_path: Path, invoke: Any) -> None:
    src = ragged_source(tmp_path)
    out = tmp_path / "t.npy"
    assert invoke("pad", src, "-o", out).exit_code == 0
    manifest = Path(f"{out}.json")
    good = manifest.read_text()
    manifest.write_text(good[:40])  # cut short: its true lengths would be lost silently
    result = invoke("inspect", out)
    assert result.exit_code == 1 and "damaged manifest" in result.output
    manifest.write_text(good.replace('"value": 0', '"value": "zero"'))
    result = invoke("truncate", out, "--maxlen", 2, "-o", tmp_path / "c.npy")
    assert result.exit_code == 1 and "padding value 'zero'" in result.output
    # rerunning the step that made it replaces the damaged manifest
    assert invoke("pad", src, "-o", out).exit_code == 0
    assert manifest.read_text() == good


def test_rerun_over_a_damaged_old_manifest_removes_its_side_files(tmp_path: Path,
                                                                  invoke: Any) -> None:
    src = ragged_source(tmp_path)
    out = tmp_path / "out.npy"
    assert invoke("pad", src, "-o", out).exit_code == 0
    manifest = Path(f"{out}.json")
    manifest.write_text(manifest.read_text()[:200])
    assert invoke("pad", src, "--no-manifest", "-o", out).exit_code == 0
    assert files_in(tmp_path) == ["out.npy", "seqs.npz"]


def test_an_unreadable_manifest_beside_an_input_is_one_line(tmp_path: Path,
                                                            invoke: Any) -> None:
    from hostile import assert_refused, run_cli, unprivileged_preexec

    src = ragged_source(tmp_path)
    out = tmp_path / "a.npy"
    assert invoke("pad", src, "-o", out).exit_code == 0
    Path(f"{out}.json").chmod(0)
    (tmp_path / "cut").mkdir()
    proc = run_cli("truncate", out, "--maxlen", 1, "-o", tmp_path / "cut" / "t.npy",
                   preexec_fn=unprivileged_preexec())
    assert_refused(proc, "a.npy.json", "cannot read the manifest", folder=tmp_path / "cut")
