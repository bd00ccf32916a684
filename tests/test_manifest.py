"""The manifest: schema-valid, truthful, and carried forward through a chain of commands."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from conftest import random_sequences, write_ragged

from lstmshape.manifest import JSON_SCHEMA


def load_manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(Path(f"{path}.json").read_text())
    jsonschema.validate(manifest, JSON_SCHEMA)
    return manifest


def test_schema_command_prints_the_schema(invoke: Any) -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema == JSON_SCHEMA
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
def test_manifest_states_the_truth(tmp_path: Path, invoke: Any, rng: np.random.Generator,
                                   suffix: str) -> None:
    seqs = random_sequences(rng, 20, 30, 4, "float32", min_length=1)
    src = write_ragged(tmp_path, "h5-lengths", seqs)
    out = tmp_path / f"train{suffix}"
    assert invoke("pad", src, "--maxlen", 25, "-o", out).exit_code == 0
    manifest = load_manifest(out)
    assert manifest["schema"] == "lstmshape/manifest-v1"
    assert manifest["command"] == "pad"
    assert manifest["input_shape"] == [25, 4]
    assert manifest["samples"] == 20 and manifest["timesteps"] == 25
    assert manifest["features"] == 4 and manifest["feature_names"] == ["f0", "f1", "f2", "f3"]
    assert manifest["layout"] == ["samples", "timesteps", "features"]
    lengths = np.minimum([len(s) for s in seqs], 25)
    assert manifest["lengths"]["max"] == lengths.max()
    assert manifest["lengths"]["min"] == lengths.min()
    assert manifest["lengths"]["mean"] == pytest.approx(lengths.mean())
    assert manifest["padding"] == {"side": "post", "value": 0}
    assert manifest["truncating"] == {"side": "post", "maxlen": 25}
    assert manifest["params"]["padding"] == "post"  # defaults are recorded too
    source_file = Path(src.split(":")[0])
    assert manifest["inputs"][0]["sha256"] == hashlib.sha256(source_file.read_bytes()).hexdigest()
    for entry in manifest["outputs"].values():
        written = tmp_path / entry["path"]
        assert entry["sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()
    assert manifest["outputs"]["x"]["shape"] == [20, 25, 4]


def test_pad_then_truncate_keeps_true_lengths_and_history(tmp_path: Path, invoke: Any) -> None:
    seqs = [np.ones((n, 2), np.float32) * n for n in (3, 8, 12, 1)]
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    padded, short = tmp_path / "padded.npy", tmp_path / "short.npy"
    assert invoke("pad", src, "--maxlen", 10, "--padding", "pre", "-o", padded).exit_code == 0
    assert invoke("truncate", padded, "--maxlen", 5, "-o", short).exit_code == 0
    manifest = load_manifest(short)
    # true lengths survive the .npy hop (via padded.npy.lengths.npy and its manifest)
    assert np.load(f"{short}.lengths.npy").tolist() == [3, 5, 5, 1]
    assert manifest["lengths"]["max"] == 5 and manifest["lengths"]["min"] == 1
    assert manifest["padding"]["side"] == "pre"  # the layout of the padded input is kept
    assert [step["command"] for step in manifest["history"]] == ["pad"]
    x = np.load(short)
    assert x[0, :, 0].tolist() == [0, 0, 3, 3, 3]  # pre-padded, first 5 of 3 real steps
    assert x[1, :, 0].tolist() == [8] * 5


def test_inspect_json_reports_the_manifest_input_shape(tmp_path: Path, invoke: Any,
                                                       rng: np.random.Generator) -> None:
    src = write_ragged(tmp_path, "npz-savez", random_sequences(rng, 9, 14, 3, min_length=1))
    for command, extra, out in (("pad", ["--maxlen", "p95"], "a.npy"),
                                ("truncate", ["--maxlen", "6"], "b.npz")):
        target = tmp_path / out
        assert invoke(command, src, *extra, "-o", target).exit_code == 0
        report = json.loads(invoke("inspect", target, "--json").output)
        manifest = load_manifest(target)
        if manifest["timesteps"] is None:
            assert report["kind"] == "ragged" and report["timesteps"] is None
        assert report["input_shape"] == manifest["input_shape"]
        assert report["samples"] == manifest["samples"]


def test_same_command_twice_gives_identical_bytes(tmp_path: Path, invoke: Any,
                                                  rng: np.random.Generator) -> None:
    src = write_ragged(tmp_path, "npz-lengths", random_sequences(rng, 30, 20, 3))
    for suffix in (".npy", ".npz", ".h5"):
        first, second = tmp_path / f"a{suffix}", tmp_path / "b" / f"a{suffix}"
        second.parent.mkdir(exist_ok=True)
        assert invoke("pad", src, "-o", first).exit_code == 0
        assert invoke("pad", src, "-o", second).exit_code == 0
        assert first.read_bytes() == second.read_bytes()
        first_manifest = Path(f"{first}.json").read_text()
        second_manifest = Path(f"{second}.json").read_text()
        assert first_manifest.replace("../seqs.npz", "seqs.npz") == first_manifest
        assert json.loads(first_manifest)["outputs"] == json.loads(second_manifest)["outputs"]


def test_truncate_split_records_source_samples(tmp_path: Path, invoke: Any) -> None:
    seqs = [np.arange(n, dtype=np.float32)[:, None] for n in (7, 2, 0, 4)]
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    out = tmp_path / "pieces.npz"
    assert invoke("truncate", src, "--maxlen", 3, "--overflow", "split", "-o", out).exit_code == 0
    data = np.load(out)
    assert data["lengths"].tolist() == [3, 3, 1, 2, 0, 3, 1]
    assert data["source_index"].tolist() == [0, 0, 0, 1, 2, 3, 3]
    np.testing.assert_array_equal(data["values"], np.concatenate(seqs))
    manifest = load_manifest(out)
    assert manifest["split"]["pieces"] == 7 and manifest["split"]["source_samples"] == 4
    assert manifest["input_shape"] == [None, 1]
    assert manifest["lengths"]["dropped_timesteps"] == 0


def test_no_manifest_and_custom_manifest(tmp_path: Path, invoke: Any) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    result = invoke("pad", tmp_path / "x.npy", "--no-manifest", "-o", tmp_path / "o.npy")
    assert result.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npy", "x.npy"]
