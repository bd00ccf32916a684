"""Every file that changes an output is in its manifest: ``--lengths``, an ``.npy`` input's
``IN.y.npy`` -- with the sha256 of its bytes -- and every option that changed it in ``params``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lengths_file_is_an_input_and_a_parameter(tmp_path: Path, invoke: Any) -> None:
    tokens, lengths = tmp_path / "tok.npy", tmp_path / "len.npy"
    np.save(tokens, np.arange(20).reshape(4, 5))
    np.save(lengths, np.array([5, 3, 1, 4]))
    out = tmp_path / "out" / "x.npy"
    out.parent.mkdir()
    assert invoke("pad", tokens, "--lengths", lengths, "--maxlen", 4, "-o", out).exit_code == 0
    manifest = json.loads(Path(f"{out}.json").read_text())
    inputs = {entry["path"]: entry for entry in manifest["inputs"]}
    assert inputs["../len.npy"]["sha256"] == sha256(lengths)
    assert inputs["../len.npy"]["shape"] == [4]
    assert inputs["../tok.npy"]["sha256"] == sha256(tokens)
    assert manifest["params"]["lengths"] == "../len.npy"
    # and the lengths did change the output: post padding after the true length
    np.testing.assert_array_equal(np.load(out)[2, :, 0], [10, 0, 0, 0])


def test_targets_beside_an_npy_input_follow_it(tmp_path: Path, invoke: Any) -> None:
    """``pad x.npy`` of a padded output carries ``x.npy.y.npy`` along, as a container's ``y``."""
    src = tmp_path / "seqs.npz"
    np.savez(src, values=np.arange(10.0), lengths=np.array([4, 1, 3, 2]),
             y=np.array([[1], [2], [3], [4]]))
    first, second = tmp_path / "a.npy", tmp_path / "b.npz"
    assert invoke("pad", src, "-o", first).exit_code == 0
    assert invoke("truncate", first, "--maxlen", 2, "--overflow", "split",
                  "-o", second).exit_code == 0
    with np.load(second) as data:
        np.testing.assert_array_equal(data["y"][:, 0], [1, 1, 2, 3, 3, 4])
    manifest = json.loads(Path(f"{second}.json").read_text())
    y_input = [e for e in manifest["inputs"] if e["path"] == "a.npy.y.npy"]
    assert y_input and y_input[0]["sha256"] == sha256(tmp_path / "a.npy.y.npy")
