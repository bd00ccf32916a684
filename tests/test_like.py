"""``--like MANIFEST`` shapes a test set exactly as the training set was shaped."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import random_sequences, write_ragged

from lstmshape.commands.pad import pad_file
from lstmshape.job import IOOptions


def manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(f"{path}.json").read_text())
    return data


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


@pytest.fixture
def sets(tmp_path: Path, rng: np.random.Generator) -> tuple[str, str]:
    """A training set of lengths 1..200 and a test set of lengths 1..60 (3 features)."""
    train = write_ragged(tmp_path, "npz-lengths",
                         random_sequences(rng, 200, 200, 3, "float64", min_length=1), "train")
    test = write_ragged(tmp_path, "npz-lengths",
                        random_sequences(rng, 50, 60, 3, "float64", min_length=1), "test")
    return train, test


def test_pad_like_reproduces_resolved_maxlen_dtype_side_and_value(
        invoke: Any, tmp_path: Path, sets: tuple[str, str]) -> None:
    train, test = sets
    train_out, test_out = tmp_path / "train.npy", tmp_path / "test.npy"
    assert invoke("pad", train, "--maxlen", "p95", "--padding", "pre", "--value", "nan",
                  "--dtype", "float32", "-o", train_out).exit_code == 0
    trained = manifest(train_out)
    resolved = trained["params"]["resolved_maxlen"]
    assert resolved > 60  # the test set's own p95 would be shorter
    result = invoke("pad", test, "--like", f"{train_out}.json", "-o", test_out)
    assert result.exit_code == 0, result.output
    x = np.load(test_out)
    assert x.shape[1:] == (resolved, 3) and x.dtype == np.float32
    assert np.isnan(x[:, 0, :]).any()  # pre padding with NaN
    params = manifest(test_out)["params"]
    for name in ("padding", "truncating", "value", "dtype", "resolved_maxlen"):
        assert params[name] == trained["params"][name], name
    assert params["maxlen"] == resolved
    digest = hashlib.sha256(Path(f"{train_out}.json").read_bytes()).hexdigest()
    assert params["like"] == {"path": "train.npy.json", "sha256": digest}


def test_an_explicit_option_wins_and_is_recorded(invoke: Any, tmp_path: Path,
                                                 sets: tuple[str, str]) -> None:
    train, test = sets
    train_out, test_out = tmp_path / "train.npy", tmp_path / "test.npy"
    assert invoke("pad", train, "--maxlen", "p95", "-o", train_out).exit_code == 0
    assert invoke("pad", test, "--like", f"{train_out}.json", "--padding", "pre", "--maxlen",
                  30, "-o", test_out).exit_code == 0
    params = manifest(test_out)["params"]
    assert params["padding"] == "pre" and params["resolved_maxlen"] == 30
    assert np.load(test_out).shape[1] == 30


def test_a_feature_mismatch_is_one_error_naming_both(invoke: Any, tmp_path: Path,
                                                     sets: tuple[str, str],
                                                     rng: np.random.Generator) -> None:
    train, _ = sets
    train_out = tmp_path / "train.npy"
    assert invoke("pad", train, "-o", train_out).exit_code == 0
    other = write_ragged(tmp_path, "npz-lengths",
                         random_sequences(rng, 10, 9, 2, "float64", min_length=1), "other")
    for command in (["pad"], ["normalize"], ["truncate"], ["batch"]):
        like = f"{train_out}.json"
        if command != ["pad"]:
            made = tmp_path / f"{command[0]}_train.npz"
            extra = {"truncate": ["--maxlen", 5], "batch": ["--size", 4]}.get(command[0], [])
            assert invoke(*command, train, *extra, "-o", made).exit_code == 0
            like = f"{made}.json"
        result = invoke(*command, other, "--like", like, "-o", tmp_path / "o.npz")
        assert result.exit_code == 1
        (line,) = error_lines(result.output)
        assert "2 features" in line and "3 features" in line, line
    assert not (tmp_path / "o.npz").exists()


def test_feature_names_must_match(invoke: Any, tmp_path: Path, sets: tuple[str, str]) -> None:
    train, test = sets
    np.save(tmp_path / "age.npy", np.arange(200.0))
    np.save(tmp_path / "age_test.npy", np.arange(50.0))
    merged = tmp_path / "merged.npz"
    assert invoke("add-feature", train, tmp_path / "age.npy", "--static", "--name", "age",
                  "-o", merged).exit_code == 0
    # add-feature --like names the test set's feature as the training set's
    test_merged = tmp_path / "test_merged.npz"
    assert invoke("add-feature", test, tmp_path / "age_test.npy", "--like", f"{merged}.json",
                  "-o", test_merged).exit_code == 0
    assert manifest(test_merged)["feature_names"] == ["f0", "f1", "f2", "age"]
    assert manifest(test_merged)["params"]["static"] is True
    padded = tmp_path / "padded.npy"
    assert invoke("pad", merged, "-o", padded).exit_code == 0
    # four features named f0..f3 are not f0, f1, f2, age
    unnamed = tmp_path / "unnamed.npz"
    assert invoke("add-feature", test, tmp_path / "age_test.npy", "--static",
                  "-o", unnamed).exit_code == 0
    result = invoke("pad", unnamed, "--like", f"{padded}.json", "-o", tmp_path / "t.npy")
    (line,) = error_lines(result.output)
    assert "'f3'" in line and "'age'" in line, line


def test_normalize_like_applies_the_training_statistics(invoke: Any, tmp_path: Path,
                                                        sets: tuple[str, str]) -> None:
    train, test = sets
    train_out, test_out = tmp_path / "train_out.npz", tmp_path / "test_out.npz"
    assert invoke("normalize", train, "--method", "minmax", "-o", train_out).exit_code == 0
    assert invoke("normalize", test, "--like", f"{train_out}.json", "-o", test_out
                  ).exit_code == 0
    stats = manifest(train_out)["normalization"]
    assert manifest(test_out)["normalization"] == stats
    raw = np.load(test)["values"]
    expected = (raw - np.array(stats["min"])) / (np.array(stats["max"]) - np.array(stats["min"]))
    np.testing.assert_allclose(np.load(test_out)["values"], expected, rtol=1e-12)
    # the manifest of a later step still records the normalize step in its history
    padded = tmp_path / "train_padded.npy"
    assert invoke("pad", train_out, "-o", padded).exit_code == 0
    again = tmp_path / "again.npz"
    assert invoke("normalize", test, "--like", f"{padded}.json", "-o", again).exit_code == 0
    assert manifest(again)["normalization"] == stats


@pytest.mark.parametrize("command,options", [
    ("truncate", ["--maxlen", 7, "--truncating", "pre", "--overflow", "split"]),
    ("batch", ["--size", 8, "--shuffle", "--seed", 5, "--bucket-by-length", "--maxlen", 30]),
    ("window", ["--timesteps", 6, "--stride", 3, "--target", "1", "--horizon", 2]),
])
def test_every_command_reuses_its_recorded_options(invoke: Any, tmp_path: Path,
                                                   sets: tuple[str, str], command: str,
                                                   options: list[Any]) -> None:
    train, test = sets
    train_out, test_out = tmp_path / "train_out.npz", tmp_path / "test_out.npz"
    assert invoke(command, train, *options, "-o", train_out).exit_code == 0
    result = invoke(command, test, "--like", f"{train_out}.json", "-o", test_out)
    assert result.exit_code == 0, result.output
    theirs, ours = manifest(train_out)["params"], manifest(test_out)["params"]
    assert {k: v for k, v in ours.items() if k != "like"} == theirs


def test_a_required_option_without_like_is_a_usage_error(invoke: Any, tmp_path: Path,
                                                         sets: tuple[str, str]) -> None:
    result = invoke("truncate", sets[0], "-o", tmp_path / "t.npz")
    assert result.exit_code == 2
    (line,) = error_lines(result.output)
    assert "--maxlen is required" in line and "--like" in line


def test_a_manifest_without_that_step_is_one_error(invoke: Any, tmp_path: Path,
                                                   sets: tuple[str, str]) -> None:
    train, test = sets
    assert invoke("pad", train, "-o", tmp_path / "p.npy").exit_code == 0
    result = invoke("normalize", test, "--like", tmp_path / "p.npy.json", "-o",
                    tmp_path / "n.npz")
    assert result.exit_code == 1
    (line,) = error_lines(result.output)
    assert "no normalize step" in line


def test_library_like(tmp_path: Path, sets: tuple[str, str]) -> None:
    train, test = sets
    pad_file(train, IOOptions(str(tmp_path / "a.npy")), maxlen="p50")
    made = pad_file(test, IOOptions(str(tmp_path / "b.npy")), like=str(tmp_path / "a.npy.json"))
    assert made["timesteps"] == json.loads((tmp_path / "a.npy.json").read_text())["timesteps"]


def test_an_output_never_overwrites_the_like_manifest(tmp_path: Path, invoke: Any) -> None:
    """``pad test --like train.npy.json -o train.npy`` would write train.npy.json: refused
    before anything is written, and the training set's manifest stays as it was."""
    src = tmp_path / "seqs.npz"
    np.savez(src, values=np.arange(10.0), lengths=np.array([4, 1, 3, 2]))
    train = tmp_path / "train.npy"
    assert invoke("pad", src, "-o", train).exit_code == 0
    manifest = Path(f"{train}.json")
    before = manifest.read_bytes()
    result = invoke("pad", src, "--like", manifest, "-o", train)
    assert result.exit_code == 1 and "train.npy.json" in result.output
    assert manifest.read_bytes() == before
