"""``lstmshape verify``: outputs of every command pass; edited tensors and manifests fail in one
line; the model check runs a real Keras LSTM quietly; without TensorFlow it says how to get it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import random_sequences, run_lstmshape, run_python, write_ragged

from lstmshape.cli import cli
from lstmshape.commands.verify import VerifyFailed, verify_file

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: How a failed check must look: exactly one ``Error: <file>: ...`` line on stderr.
TF_NOISE = ("absl::InitializeLog", "oneDNN", "cuda", "cpu_feature_guard", "I0000", "W0000",
            "E0000", "tensorflow/")


def error_lines(result: Any) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture
def ragged(tmp_path: Path, rng: np.random.Generator) -> str:
    """40 ragged 3-feature sequences of 1..12 steps as values + lengths."""
    return write_ragged(tmp_path, "npz-lengths", random_sequences(rng, 40, 12, 3, min_length=1))


def make(invoke: Any, *args: Any) -> str:
    """Run a transforming command; returns its output path (the argument after -o)."""
    result = invoke(*args)
    assert result.exit_code == 0, result.output + result.stderr
    return str(args[list(args).index("-o") + 1])


# ---------------------------------------------------------------------------------------------
# Passing


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
def test_pad_outputs_pass_without_model(invoke: Any, tmp_path: Path, ragged: str,
                                        suffix: str) -> None:
    out = make(invoke, "pad", ragged, "--maxlen", "8", "-o", tmp_path / f"train{suffix}")
    result = invoke("verify", out, "--no-model", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["model"] is None and report["failures"] == []
    assert report["layout"] == "dense" and report["input_shape"] == [8, 3]
    assert report["nan"] == 0 and report["inf"] == 0
    assert all(row["sha256_ok"] for row in report["files"])
    roles = {row["role"] for row in report["files"]}
    # containers also record their padding side, for reading without the manifest
    assert roles == ({"x", "lengths"} if suffix == ".npy" else {"x", "lengths", "padding_side"})


@pytest.mark.parametrize("args", [
    ("pad", "--padding", "pre", "--value", "-1"),
    ("truncate", "--maxlen", "5"),
    ("truncate", "--maxlen", "5", "--overflow", "split"),
], ids=["pad-pre", "truncate-ragged", "truncate-split"])
def test_outputs_pass_with_the_model(invoke: Any, tmp_path: Path, ragged: str,
                                     args: tuple[str, ...], keras: Any) -> None:
    out = make(invoke, args[0], ragged, *args[1:], "-o", tmp_path / "out.h5")
    result = invoke("verify", out, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    model = report["model"]
    samples = min(report["samples"], 64)  # split makes more samples than the 40 sequences
    assert model["output_shape"] == [samples, 1] and model["finite"]
    assert model["layers"][-2:] == ["LSTM(4)", "Dense(1)"]
    if "-1" in args:
        assert model["layers"][1] == "Masking(mask_value=-1)"
    if args[0] == "truncate":  # ragged: no padding yet, the mask comes from the lengths
        assert model["mask"] == "lengths"


def test_nan_padding_fails_as_the_users_model_would(invoke: Any, tmp_path: Path, ragged: str,
                                                    keras: Any) -> None:
    """Masking(mask_value=nan) masks nothing (NaN != NaN): the model a user writes gives NaN,
    and verify says so instead of masking by the lengths behind their back."""
    out = make(invoke, "pad", ragged, "--value", "nan", "-o", tmp_path / "out.h5")
    result = invoke("verify", out, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["model"]["mask"] == "masking" and not report["model"]["finite"]
    assert "Masking(mask_value=nan) masks nothing" in result.stderr


def test_truncate_of_a_padded_npy_chain_passes(invoke: Any, tmp_path: Path,
                                               ragged: str) -> None:
    padded = make(invoke, "pad", ragged, "-o", tmp_path / "p.npy")
    short = make(invoke, "truncate", padded, "--maxlen", "4", "-o", tmp_path / "short.npy")
    report = verify_file(short, model=False)
    assert report["ok"] and report["input_shape"] == [4, 3]


def test_model_runs_on_the_first_64_samples(invoke: Any, tmp_path: Path,
                                            rng: np.random.Generator, keras: Any) -> None:
    src = write_ragged(tmp_path, "h5-lengths", random_sequences(rng, 100, 6, 2, min_length=1))
    out = make(invoke, "pad", src, "-o", tmp_path / "x.npy")
    report = verify_file(out)
    assert report["model"]["samples"] == 64 and report["model"]["output_shape"] == [64, 1]
    result = invoke("verify", out)
    assert result.exit_code == 0
    assert "OK" in result.output and "(64, 1)" in result.output


def test_nan_in_real_timesteps_is_counted_and_warned(invoke: Any, tmp_path: Path) -> None:
    seqs = [np.array([[1.0], [np.nan], [np.inf]], np.float32), np.array([[2.0]], np.float32)]
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    out = make(invoke, "pad", src, "--value", "nan", "-o", tmp_path / "x.npz")
    result = invoke("verify", out, "--no-model", "--json")
    assert result.exit_code == 0  # the shape is right; the data needs cleaning: a warning
    report = json.loads(result.stdout)
    assert (report["nan"], report["inf"]) == (1, 1)  # the NaN padding is not counted
    assert "1 NaN and 1 inf" in result.stderr


def test_counts_block_by_block(invoke: Any, tmp_path: Path, rng: np.random.Generator,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from lstmshape.io import npy

    src = write_ragged(tmp_path, "npz-lengths", random_sequences(rng, 300, 50, 4, min_length=1))
    out = make(invoke, "pad", src, "-o", tmp_path / "big.npy")
    reads: list[int] = []
    original = npy.NpyFileArray.read_rows

    def spy(self: Any, start: int, stop: int) -> np.ndarray:
        if self.path == out:
            reads.append(stop - start)
        return original(self, start, stop)

    monkeypatch.setattr(npy.NpyFileArray, "read_rows", spy)
    verify_file(out, model=False, memory_limit=6 * 50_000)  # blocks of ~50 KB, 62 samples
    assert len(reads) > 3 and max(reads) < 300


# ---------------------------------------------------------------------------------------------
# Failing, in one line


def test_tensor_edited_after_its_manifest_fails(invoke: Any, tmp_path: Path,
                                                ragged: str) -> None:
    out = make(invoke, "pad", ragged, "-o", tmp_path / "train.npy")
    tensor = np.load(out)
    tensor[0, 0, 0] += 1  # same shape and dtype: only the hash can tell
    np.save(out, tensor)
    result = invoke("verify", out, "--no-model")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"Error: {out}: sha256 ")
    assert "train.npy.json" in lines[0] and "changed after" in lines[0]


@pytest.mark.parametrize("recorded", [-1, float("nan")])
def test_pad_steps_not_holding_the_recorded_pad_value_fail(invoke: Any, tmp_path: Path,
                                                           ragged: str, recorded: float) -> None:
    """A manifest whose pad value the pad steps do not hold (edited by hand, or written beside
    other data): a mask on that value would not hide them, and a step that copies pad steps
    as stored (truncate, batch) would carry them on."""
    out = make(invoke, "pad", ragged, "-o", tmp_path / "train.npy")  # pad value 0
    assert invoke("verify", out, "--no-model").exit_code == 0
    manifest_path = tmp_path / "train.npy.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["padding"]["value"] = recorded if recorded == recorded else "nan"
    manifest_path.write_text(json.dumps(manifest))
    result = invoke("verify", out, "--no-model", "--json")
    assert result.exit_code == 1
    pad_steps = int((np.load(out).shape[1] - np.load(f"{out}.lengths.npy")).sum())
    report = json.loads(result.stdout)
    assert report["foreign_pad_steps"] == pad_steps > 0
    assert f"{pad_steps:,} pad steps do not hold the pad value {recorded:g}" in result.stderr


def test_tensor_reshaped_after_its_manifest_fails(invoke: Any, tmp_path: Path,
                                                  ragged: str) -> None:
    out = make(invoke, "pad", ragged, "--maxlen", "8", "-o", tmp_path / "train.h5")
    import h5py

    with h5py.File(out, "a") as h5:
        x = h5["x"][:, :6]
        del h5["x"]
        h5["x"] = x
    with pytest.raises(VerifyFailed) as failed:
        verify_file(out, model=False)
    message = str(failed.value)
    assert "\n" not in message
    assert "(40, 6, 3) but the manifest records (40, 8, 3)" in message
    # the reader refuses lengths the cut tensor no longer holds, beside the other differences
    assert "length 8 is longer than the 6 timesteps of the tensor" in message
    assert "sha256" in message
    assert failed.value.report["ok"] is False


def test_wrong_input_shape_in_the_manifest_fails(invoke: Any, tmp_path: Path,
                                                 ragged: str) -> None:
    out = make(invoke, "pad", ragged, "--maxlen", "8", "-o", tmp_path / "train.npz")
    manifest_path = Path(out + ".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["input_shape"] = [10, 3]
    manifest_path.write_text(json.dumps(manifest))
    result = invoke("verify", out, "--no-model")
    assert result.exit_code == 1
    assert error_lines(result) == [
        f"Error: {out}: the manifest's input_shape [10, 3] does not fit the tensor's "
        f"(timesteps, features) = (8, 3)"]


def test_edited_lengths_file_fails(invoke: Any, tmp_path: Path, ragged: str) -> None:
    out = make(invoke, "pad", ragged, "--maxlen", "8", "-o", tmp_path / "train.npy")
    lengths = np.load(out + ".lengths.npy")
    lengths[3] = 9
    np.save(out + ".lengths.npy", lengths)
    result = invoke("verify", out, "--no-model")
    assert result.exit_code == 1 and len(error_lines(result)) == 1
    assert "length 9 is longer than the 8 timesteps of the tensor" in result.stderr
    assert "train.npy.lengths.npy: sha256" in result.stderr


def test_json_report_is_printed_on_failure_too(invoke: Any, tmp_path: Path,
                                               ragged: str) -> None:
    out = make(invoke, "pad", ragged, "-o", tmp_path / "train.npy")
    os.unlink(out + ".lengths.npy")
    result = invoke("verify", out, "--no-model", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert any("train.npy.lengths.npy (outputs.lengths) is missing" in f
               for f in report["failures"])


def test_missing_and_foreign_manifests(invoke: Any, tmp_path: Path, ragged: str) -> None:
    first = make(invoke, "pad", ragged, "-o", tmp_path / "a.npy")
    second = make(invoke, "pad", ragged, "-o", tmp_path / "b.npz")
    foreign = invoke("verify", first, "--manifest", second + ".json", "--no-model")
    assert foreign.exit_code == 1
    assert error_lines(foreign) == [f"Error: {first}: {second}.json describes b.npz, "
                                    f"not this file"]
    os.unlink(first + ".json")
    missing = invoke("verify", first, "--no-model")
    assert missing.exit_code == 1 and len(error_lines(missing)) == 1
    assert f"no manifest {first}.json" in missing.stderr
    # --manifest names one elsewhere: paths in it are relative to its own folder
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.replace(second + ".json", moved / "m.json")
    relocated = invoke("verify", second, "--manifest", moved / "m.json", "--no-model")
    assert relocated.exit_code == 1 and "describes b.npz, not this file" in relocated.stderr


def test_a_damaged_tensor_fails_in_one_line(invoke: Any, tmp_path: Path, ragged: str) -> None:
    out = make(invoke, "pad", ragged, "-o", tmp_path / "train.npy")
    with open(out, "r+b") as handle:
        handle.truncate(200)
    result = invoke("verify", out, "--no-model")
    assert result.exit_code == 1 and len(error_lines(result)) == 1


# ---------------------------------------------------------------------------------------------
# TensorFlow: missing, quiet, lazy

NO_TENSORFLOW = ("import sys\n"
                 "sys.modules['tensorflow'] = None; sys.modules['keras'] = None  # not installed\n"
                 "from lstmshape.cli import main\n"
                 "try:\n    main(sys.argv[1:])\n"
                 "finally:\n"
                 "    print('TF_IMPORTED', 'tensorflow' in sys.modules and "
                 "sys.modules['tensorflow'] is not None, file=sys.stderr)\n")


def run_without_tensorflow(*args: Any) -> subprocess.CompletedProcess[str]:
    return run_python(NO_TENSORFLOW, *map(str, args), timeout=120)


def test_without_tensorflow_says_how_to_install_it(invoke: Any, tmp_path: Path,
                                                   ragged: str) -> None:
    out = make(invoke, "pad", ragged, "-o", tmp_path / "train.npy")
    done = run_without_tensorflow("verify", out)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if not line.startswith("TF_IMPORTED")]
    assert len(lines) == 1 and "pip install 'lstmshape[tf]'" in lines[0]
    assert "--no-model" in lines[0]
    skipped = run_without_tensorflow("verify", out, "--no-model")
    assert skipped.returncode == 0, skipped.stderr
    assert "OK" in skipped.stdout and "TF_IMPORTED False" in skipped.stderr


def test_no_model_does_not_import_tensorflow(invoke: Any, tmp_path: Path, ragged: str) -> None:
    out = make(invoke, "pad", ragged, "-o", tmp_path / "train.h5")
    code = ("import sys; from lstmshape.cli import main\n"
            "try:\n    main(['verify', sys.argv[1], '--no-model'])\n"
            "except SystemExit as done:\n    assert done.code == 0, done.code\n"
            "print('HEAVY', [m for m in ('tensorflow', 'keras') if m in sys.modules])")
    done = run_python(code, out, timeout=120)
    assert "HEAVY []" in done.stdout, done.stderr


def test_tensorflow_log_lines_stay_off_stderr(invoke: Any, tmp_path: Path, ragged: str,
                                              keras: Any) -> None:
    out = make(invoke, "pad", ragged, "-o", tmp_path / "train.npy")
    # Level 0 asks TensorFlow for every log line: verify must still keep them off the terminal.
    done = run_lstmshape("verify", out, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert done.returncode == 0, done.stderr
    stderr = done.stderr.decode()
    assert not [word for word in TF_NOISE if word in stderr], stderr
    assert stderr == ""
    assert b"OK" in done.stdout


def test_cli_help_lists_verify_options() -> None:
    command = cli.commands["verify"]
    names = {name for param in command.params for name in param.opts}
    assert {"--manifest", "--no-model", "--debug", "--json"} <= names


# ---------------------------------------------------------------------------------------------
# The other commands, as they land


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_window_output_with_targets_passes(invoke: Any, tmp_path: Path, suffix: str,
                                           keras: Any) -> None:
    series = tmp_path / "series.npy"
    np.save(series, np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32))
    out = make(invoke, "window", series, "--timesteps", "12", "--target", "0", "--horizon", "1",
               "-o", tmp_path / f"w{suffix}")
    report = verify_file(out)
    assert report["ok"] and report["input_shape"] == [12, 3]
    assert "y" in {row["role"] for row in report["files"]}
    assert report["model"]["output_shape"] == [64, 1]


def test_add_feature_outputs_pass(invoke: Any, tmp_path: Path, ragged: str) -> None:
    static = tmp_path / "static.npy"
    np.save(static, np.ones((40, 2), np.float32))
    ragged_out = make(invoke, "add-feature", ragged, static, "--static", "-o",
                      tmp_path / "merged.npz")
    assert verify_file(ragged_out, model=False)["input_shape"] == [None, 5]
    padded = make(invoke, "pad", ragged, "-o", tmp_path / "p.npy")
    dense_out = make(invoke, "add-feature", padded, static, "--static", "-o",
                     tmp_path / "merged.h5")
    assert verify_file(dense_out, model=False)["ok"]


@pytest.mark.parametrize("args", [
    ("--size", "16"),
    ("--size", "16", "--shuffle", "--seed", "3", "--remainder", "pad"),
    ("--size", "8", "--bucket-by-length"),
], ids=["plain", "shuffle-pad", "bucket"])
@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_batch_outputs_pass(invoke: Any, tmp_path: Path, ragged: str, args: tuple[str, ...],
                            suffix: str, keras: Any) -> None:
    out = make(invoke, "batch", ragged, *args, "-o", tmp_path / f"b{suffix}")
    report = verify_file(out)
    assert report["ok"] and report["layout"] == "batches"
    assert report["model"]["finite"]


def test_batch_npy_output_passes(invoke: Any, tmp_path: Path, ragged: str) -> None:
    padded = make(invoke, "pad", ragged, "-o", tmp_path / "p.npy")
    out = make(invoke, "batch", padded, "--size", "8", "-o", tmp_path / "b.npy")
    report = verify_file(out, model=False)
    assert report["ok"] and report["layout"] == "batches"


def test_manifest_naming_other_files_is_not_followed(invoke: Any, tmp_path: Path,
                                                     ragged: str) -> None:
    out = make(invoke, "pad", ragged, "-o", tmp_path / "train.npy")
    secret = tmp_path / "secret.npy"
    np.save(secret, np.zeros(3))
    manifest = json.loads(Path(out + ".json").read_text())
    manifest["outputs"]["lengths"]["path"] = "secret.npy"
    Path(out + ".json").write_text(json.dumps(manifest))
    result = invoke("verify", out, "--no-model")
    assert result.exit_code == 1
    assert "'secret.npy', which is not one of" in result.stderr


def test_quiet_verify_prints_nothing(invoke: Any, tmp_path: Path, ragged: str) -> None:
    out = make(invoke, "pad", ragged, "-o", tmp_path / "train.npy")
    result = invoke("verify", "-q", out, "--no-model")
    assert result.exit_code == 0 and result.output == ""
