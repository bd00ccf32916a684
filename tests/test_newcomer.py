"""What a newcomer meets (issue 11): ``--layout`` for the ambiguous 2-D array,
``--no-feature-axis`` for token ids, ``verify`` failing honestly on NaN padding, and messages
that name the odd sequence, count grammatically and stay short for long containers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from click.testing import Result

from lstmshape.errors import LstmshapeError
from tests.conftest import run_lstmshape

Invoke = Callable[..., Result]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


# ---------------------------------------------------------------------------------------------
# --layout


def test_inspect_of_a_recording_shows_both_readings(tmp_path: Path, invoke: Invoke) -> None:
    np.save(tmp_path / "ecg.npy", np.sin(np.arange(7500.0)).reshape(7500, 1))
    report = json.loads(ok(invoke("inspect", tmp_path / "ecg.npy", "--json")).output)
    samples, series = report["readings"]
    assert (samples["layout"], samples["input_shape"]) == ("samples", [1, 1])
    assert series["layout"] == "series" and series["input_shape"][1] == 1
    assert "lstmshape window" in series["command"] and "lstmshape pad" in samples["command"]
    assert not report["lstm_ready"] and report["suggestion"] == samples["command"]
    text = ok(invoke("inspect", tmp_path / "ecg.npy")).output
    assert "reads two ways (pick one with --layout)" in text
    assert "one series of 7,500 timesteps x 1 feature" in text
    assert "7,500 samples of 1 timestep," in text  # grammatical: 1 timestep
    chosen = json.loads(ok(invoke("inspect", tmp_path / "ecg.npy", "--layout", "series",
                                  "--json")).output)
    assert chosen["readings"] is None and chosen["samples"] == 1
    assert chosen["lengths"]["max"] == 7500


def test_layout_series_pads_one_recording(tmp_path: Path, invoke: Invoke) -> None:
    recording = np.arange(30.0).reshape(10, 3)
    np.save(tmp_path / "rec.npy", recording)
    ok(invoke("pad", tmp_path / "rec.npy", "--layout", "series", "-o", tmp_path / "one.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "one.npy"), recording[None])
    manifest = json.loads((tmp_path / "one.npy.json").read_text())
    assert manifest["input_shape"] == [10, 3] and manifest["params"]["layout"] == "series"
    ok(invoke("pad", tmp_path / "rec.npy", "-o", tmp_path / "many.npy"))  # the default
    assert np.load(tmp_path / "many.npy").shape == (10, 3, 1)


def test_window_layout_samples_windows_each_row(tmp_path: Path, invoke: Invoke) -> None:
    rows = np.arange(40.0).reshape(4, 10)
    np.save(tmp_path / "rows.npy", rows)
    ok(invoke("window", tmp_path / "rows.npy", "--timesteps", 10, "--layout", "samples",
              "-o", tmp_path / "w.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy")[..., 0], rows)
    ok(invoke("window", tmp_path / "rows.npy", "--timesteps", 2, "-o", tmp_path / "s.npy"))
    assert np.load(tmp_path / "s.npy").shape == (3, 2, 10)  # the default: one series


# ---------------------------------------------------------------------------------------------
# --no-feature-axis


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_no_feature_axis_gives_what_embedding_takes(suffix: str, tmp_path: Path,
                                                    invoke: Invoke, keras: Any) -> None:
    import lstmshape.tf

    tokens = [np.arange(1, n + 1) for n in (3, 5, 2, 4, 6, 1)]
    np.savez(tmp_path / "tok.npz", *tokens)
    padded = tmp_path / f"p{suffix}"
    ok(invoke("pad", tmp_path / "tok.npz", "--no-feature-axis", "-o", padded))
    manifest = json.loads(Path(f"{padded}.json").read_text())
    assert manifest["input_shape"] == [6]
    expected = keras.utils.pad_sequences(tokens, padding="post")
    x = next(iter(lstmshape.tf.dataset(str(padded), batch_size=6)))
    np.testing.assert_array_equal(np.asarray(x), expected)
    model = keras.Sequential([keras.Input(shape=tuple(manifest["input_shape"])),
                              keras.layers.Embedding(10, 4, mask_zero=True),
                              keras.layers.LSTM(3)])
    assert model(x).shape == (6, 3)
    batches = tmp_path / f"b{suffix}"
    ok(invoke("batch", tmp_path / "tok.npz", "--size", 2, "--no-feature-axis", "-o", batches))
    first = next(iter(lstmshape.tf.dataset(str(batches))))
    assert len(first.shape) == 2 and first.shape[0] == 2
    ok(invoke("verify", batches, "--no-model"))
    ok(invoke("verify", padded, "--no-model"))


def test_no_feature_axis_refuses_several_features(tmp_path: Path, invoke: Invoke) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 4, 2)))
    result = invoke("pad", tmp_path / "x.npy", "--no-feature-axis", "-o", tmp_path / "o.npy")
    assert result.exit_code == 1
    assert "--no-feature-axis" in result.output and "2 features" in result.output


def test_manifest_schema_takes_a_one_item_input_shape(tmp_path: Path, invoke: Invoke) -> None:
    from lstmshape.manifest import JSON_SCHEMA

    np.save(tmp_path / "t.npy", np.arange(12).reshape(3, 4))
    np.save(tmp_path / "y.npy", np.arange(3))
    ok(invoke("pad", tmp_path / "t.npy", "--no-feature-axis", "--y", tmp_path / "y.npy",
              "-o", tmp_path / "o.npz"))
    manifest = json.loads((tmp_path / "o.npz.json").read_text())
    jsonschema.validate(manifest, JSON_SCHEMA)
    manifest["targets"]["kind"] = "other"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, JSON_SCHEMA)


# ---------------------------------------------------------------------------------------------
# verify and NaN padding


def test_verify_fails_on_nan_padding_and_passes_a_numeric_one(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", *[np.ones((n, 2), np.float32) for n in (2, 5, 3)])
    for value, name in (("nan", "nan.npy"), ("-1", "num.npy")):
        done = run_lstmshape("pad", tmp_path / "s.npz", "--value", value, "-o", tmp_path / name)
        assert done.returncode == 0, done.stderr
    failed = run_lstmshape("verify", tmp_path / "nan.npy")
    lines = failed.stderr.decode().strip().splitlines()
    assert failed.returncode == 1 and len(lines) == 1, lines
    assert "Masking(mask_value=nan) masks nothing" in lines[0] and "--value" in lines[0]
    passed = run_lstmshape("verify", tmp_path / "num.npy")
    assert passed.returncode == 0, passed.stderr


def test_verify_keeps_length_masks_for_ragged_outputs(tmp_path: Path, invoke: Invoke) -> None:
    np.savez(tmp_path / "s.npz", *[np.ones((n, 2), np.float32) for n in (2, 5, 3)])
    ok(invoke("truncate", tmp_path / "s.npz", "--maxlen", 4, "-o", tmp_path / "r.npz"))
    report = json.loads(ok(invoke("verify", tmp_path / "r.npz", "--json")).output)
    assert report["model"]["mask"] == "lengths"


# ---------------------------------------------------------------------------------------------
# Messages


def test_odd_sequence_is_named_by_its_key(tmp_path: Path, invoke: Invoke) -> None:
    seqs = [np.zeros((3, 12)) for _ in range(270)]
    seqs[137] = np.zeros((4, 11))
    np.savez(tmp_path / "v.npz", *seqs)
    result = invoke("pad", tmp_path / "v.npz", "-o", tmp_path / "o.npy")
    assert result.exit_code == 1
    assert "v.npz:arr_137 has 11 features" in result.output
    assert "269 of the 270 sequences have 12" in result.output


def test_long_listings_are_collapsed(tmp_path: Path, invoke: Invoke) -> None:
    np.savez(tmp_path / "many.npz", *[np.zeros((3, 2)) for _ in range(270)])
    text = ok(invoke("inspect", tmp_path / "many.npz")).output
    assert "arr_0" in text and "arr_269" in text and "264 more" in text
    assert "arr_137" not in text
    ok(invoke("batch", tmp_path / "many.npz", "--size", 10, "-o", tmp_path / "b.npz"))
    verified = ok(invoke("verify", tmp_path / "b.npz", "--no-model")).output
    assert "49 more" in verified and "x_000013" not in verified
    report = json.loads(ok(invoke("verify", tmp_path / "b.npz", "--no-model", "--json",
                                  "-q")).output)
    assert len(report["files"]) == 55  # --json keeps every row: 27 x, 27 lengths, order


def test_counts_are_grammatical(tmp_path: Path, invoke: Invoke) -> None:
    np.savez(tmp_path / "s.npz", *[np.array([[0.0], [1.0]]), np.array([[2.0]])])
    result = ok(invoke("pad", tmp_path / "s.npz", "-o", tmp_path / "o.npy"))
    assert "1 real timestep of" in result.output and "equals the pad value" in result.output


def test_padded_base_with_ragged_extra_says_add_features_first(tmp_path: Path,
                                                                invoke: Invoke) -> None:
    np.savez(tmp_path / "s.npz", *[np.ones((n, 1)) for n in (2, 5, 3)])
    np.savez(tmp_path / "e.npz", *[np.ones(n) for n in (2, 5, 3)])
    ok(invoke("pad", tmp_path / "s.npz", "--maxlen", 4, "-o", tmp_path / "p.npy"))
    result = invoke("add-feature", tmp_path / "p.npy", tmp_path / "e.npz", "-o",
                    tmp_path / "o.npz")
    assert result.exit_code == 1
    assert "add features to the ragged sequences before padding" in result.output
    assert "1 sequence differs" in result.output


def test_tf_dataset_on_a_raw_file_names_the_command(tmp_path: Path) -> None:
    import lstmshape.tf

    np.savez(tmp_path / "raw.npz", **{f"k{i}": np.zeros(3) for i in range(40)})
    with pytest.raises(LstmshapeError) as caught:
        lstmshape.tf.dataset(str(tmp_path / "raw.npz"))
    message = str(caught.value)
    assert "lstmshape pad" in message and "not an lstmshape output" in message
    assert "k20" not in message  # the 40 keys are collapsed


def test_stdout_output_reads_back_as_the_readme_says(tmp_path: Path) -> None:
    """``-o -`` piped into Python: np.load of the pipe fails (not seekable), the README's
    ``np.load(io.BytesIO(sys.stdin.buffer.read()))`` works."""
    np.savez(tmp_path / "s.npz", *[np.ones((n, 2)) for n in (2, 5)])
    producer = [sys.executable, "-m", "lstmshape", "pad", str(tmp_path / "s.npz"), "-o", "-"]
    shapes = {}
    for name, code in (("readme", "np.load(io.BytesIO(sys.stdin.buffer.read()))"),
                       ("naive", "np.load(sys.stdin.buffer)")):
        reader = [sys.executable, "-c",
                  f"import io, sys, numpy as np; print({code}.shape)"]
        with subprocess.Popen(producer, stdout=subprocess.PIPE) as source:
            done = subprocess.run(reader, stdin=source.stdout, capture_output=True, text=True,
                                  timeout=120)
        shapes[name] = done.stdout.strip() if done.returncode == 0 else None
    assert shapes == {"readme": "(2, 5, 2)", "naive": None}


def test_inspect_says_what_targets_an_output_holds(tmp_path: Path, invoke: Invoke) -> None:
    np.savez(tmp_path / "s.npz", *[np.ones((n, 2)) for n in (2, 5, 3)])
    np.savez(tmp_path / "labels.npz", *[np.arange(n) for n in (2, 5, 3)])
    ok(invoke("pad", tmp_path / "s.npz", "--y", tmp_path / "labels.npz", "-o",
              tmp_path / "p.npz"))
    report = json.loads(ok(invoke("inspect", tmp_path / "p.npz", "--json")).output)
    assert report["targets"] == {"kind": "timestep", "shape": [5], "dtype": "int64"}
    assert "timestep-level y, (5,) per sample" in ok(invoke("inspect", tmp_path / "p.npz")).output


def test_torch_carries_ragged_labels_rather_than_drops_them(tmp_path: Path,
                                                            invoke: Invoke) -> None:
    import lstmshape.torch

    np.savez(tmp_path / "s.npz", *[np.ones((n, 2)) for n in (2, 5, 3)])
    np.savez(tmp_path / "labels.npz", *[np.arange(n) for n in (2, 5, 3)])
    ok(invoke("truncate", tmp_path / "s.npz", "--maxlen", 4, "--y", tmp_path / "labels.npz",
              "-o", tmp_path / "r.npz"))
    item = lstmshape.torch.SequenceDataset(str(tmp_path / "r.npz"))[1]
    assert len(item) == 3 and item[1] == 4 and item[2].tolist() == [0, 1, 2, 3]
    ok(invoke("pad", tmp_path / "r.npz", "-o", tmp_path / "p.npz"))
    item = lstmshape.torch.SequenceDataset(str(tmp_path / "p.npz"))[0]  # padded: + weights
    assert item[1] == 2 and item[2].tolist() == [0, 1] and item[3].tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# The README's first pipeline, as written


def test_readme_first_pipeline_runs_as_written(tmp_path: Path) -> None:
    """Every command of the README's "A first pipeline" section, run by a shell in a folder
    beside sample_data/: each exits 0, and the table's output is what the text says."""
    import os
    import re

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A first pipeline", 1)[1].split("\n## ", 1)[0]
    # the first two blocks run on sample_data/; the one-liners after them name files of yours
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)[:2]

    def run_block(block: str) -> int:
        lines = [line.split("  #")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
        commands = [line for line in lines if line.startswith("lstmshape ")]
        for command in commands:
            done = subprocess.run(command, shell=True, cwd=tmp_path, env=env,
                                  capture_output=True, timeout=300)
            assert done.returncode == 0, (command, done.stderr.decode())
        return len(commands)

    (tmp_path / "sample_data").symlink_to(root / "sample_data")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"}
    assert run_block(blocks[0]) == 1
    assert "(80 users, 57 timesteps, 2 features)" in section
    assert np.load(tmp_path / "train.npy").shape == (80, 57, 2)
    assert np.load(tmp_path / "train.npy.ids.npy").dtype.kind == "U"
    assert run_block(blocks[1]) >= 6
    x = np.load(tmp_path / "train.npy")
    assert x.shape == (120, 154, 5)
