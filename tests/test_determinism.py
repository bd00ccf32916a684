"""Determinism and integrity (issue 5): the same inputs and options give byte-identical outputs
and manifests, in every format; each manifest's sha256 is that of the file it names; a tensor
changed after its manifest was written is caught by ``verify``.

Runs go into two sibling folders (``a/`` and ``b/``) more than a second apart, so relative paths
in the manifests are equal and any time stamp (HDF5 object times, zip member times) would show.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import files_in, random_sequences, write_ragged
from hostile import assert_ok, assert_refused, run_cli

SUFFIXES = (".npy", ".npz", ".h5")


def make_inputs(folder: Path) -> dict[str, str]:
    """One input per format: a dense .npy, a ragged .npz (savez), a ragged .h5 group."""
    rng = np.random.default_rng(11)
    folder.mkdir()
    np.save(folder / "dense.npy", rng.normal(size=(40, 25, 3)).astype(np.float32))
    seqs = random_sequences(rng, 30, 40, 3, min_length=1)
    return {
        "npy": str(folder / "dense.npy"),
        "npz": write_ragged(folder, "npz-savez", seqs, name="ragged"),
        "h5": write_ragged(folder, "h5-group", seqs, name="ragged"),
    }


def commands(inputs: dict[str, str]) -> dict[str, list[str]]:
    """name -> argv without ``-o``: every input format, and the commands that write."""
    runs: dict[str, list[str]] = {}
    for fmt, src in inputs.items():
        runs[f"pad-{fmt}"] = ["pad", src, "--maxlen", "p95", "--padding", "pre"]
    runs["truncate-h5"] = ["truncate", inputs["h5"], "--maxlen", "10", "--overflow", "split"]
    runs["batch-npy"] = ["batch", inputs["npy"], "--size", "8", "--shuffle", "--seed", "3"]
    runs["batch-h5"] = ["batch", inputs["h5"], "--size", "8", "--bucket-by-length",
                        "--remainder", "pad"]
    return runs


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Every (command, output format) run twice, into a/ and b/, a second and more apart."""
    root = tmp_path_factory.mktemp("determinism")
    runs = commands(make_inputs(root / "in"))
    names = []
    for index, side in enumerate(("a", "b")):
        if index:
            time.sleep(1.1)  # HDF5 and zip record times in whole seconds
        (root / side).mkdir()
        for name, argv in runs.items():
            for suffix in SUFFIXES:
                out = root / side / f"{name}{suffix}"
                proc = run_cli(*argv, "-o", out, "-q")
                if name == "truncate-h5" and suffix == ".npy":
                    assert_refused(proc, "ragged")  # documented: pad first or pick .npz/.h5
                    continue
                assert_ok(proc)
                names.append(out.name)
    return root, sorted(set(names))


def test_outputs_and_manifests_are_byte_identical(two_runs: tuple[Path, list[str]]) -> None:
    root, names = two_runs
    a_files, b_files = files_in(root / "a"), files_in(root / "b")
    assert a_files == b_files
    assert {f"{name}.json" for name in names} <= set(a_files)
    different = [name for name in a_files
                 if (root / "a" / name).read_bytes() != (root / "b" / name).read_bytes()]
    assert different == []


def test_manifest_hashes_match_the_files(two_runs: tuple[Path, list[str]]) -> None:
    root, names = two_runs
    folder = root / "a"
    for name in names:
        manifest = json.loads((folder / f"{name}.json").read_text())
        assert manifest["outputs"], name
        for role, entry in manifest["outputs"].items():
            path = folder / entry["path"]
            assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), (name, role)
        for entry in manifest["inputs"]:
            path = folder / entry["path"]
            assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), (name, path)


def test_manifest_is_sorted_json_without_times(two_runs: tuple[Path, list[str]]) -> None:
    root, names = two_runs
    for name in names:
        text = (root / "a" / f"{name}.json").read_text()
        manifest = json.loads(text)
        assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"
        assert "time" not in json.dumps(manifest).lower().replace("timesteps", "")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_block_size_does_not_change_the_bytes(suffix: str, tmp_path: Path) -> None:
    """The memory budget changes how many blocks are written, never what is written."""
    rng = np.random.default_rng(5)
    np.save(tmp_path / "in.npy", rng.normal(size=(600, 50, 8)).astype(np.float32))
    outputs = []
    for limit in ("1MiB", "256MB"):
        out = tmp_path / f"{limit}{suffix}"
        assert_ok(run_cli("pad", tmp_path / "in.npy", "-o", out, "--no-manifest",
                          "--memory-limit", limit, "-q"))
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_verify_catches_a_changed_tensor(suffix: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    np.save(tmp_path / "in.npy", rng.normal(size=(10, 12, 2)).astype(np.float32))
    out = tmp_path / f"x{suffix}"
    assert_ok(run_cli("pad", tmp_path / "in.npy", "-o", out, "-q"))
    assert_ok(run_cli("verify", out, "--no-model"))
    data = bytearray(out.read_bytes())
    position = len(data) - 1 if suffix != ".h5" else data.rfind(np.float32(
        np.load(tmp_path / "in.npy")[-1, -1, -1]).tobytes())
    assert position > 0
    data[position] ^= 0x01
    out.write_bytes(bytes(data))
    assert_refused(run_cli("verify", out, "--no-model"), f"x{suffix}", "sha256")
