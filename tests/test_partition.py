"""``partition``: seeded, disjoint, covering splits; classes in proportion; sources kept whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from conftest import files_in, random_sequences, write_ragged

import lstmshape
from lstmshape.manifest import JSON_SCHEMA
from lstmshape.ops.partition import allocate, check_fractions, split_indices

FRACTIONS = [0.8, 0.1, 0.1]


def labelled_set(folder: Path, rng: np.random.Generator, count: int = 200,
                 classes: int = 3) -> tuple[str, list[np.ndarray], np.ndarray]:
    seqs = random_sequences(rng, count, 25, 2, "float32", min_length=1)
    y = rng.choice(classes, size=count, p=np.linspace(1, 2, classes) / np.linspace(
        1, 2, classes).sum()).astype(np.int64)
    path = folder / "all.npz"
    np.savez(path, values=np.concatenate(seqs), lengths=[len(s) for s in seqs], y=y)
    return str(path), seqs, y


def run_partition(invoke: Any, src: str, folder: Path, *options: Any,
                  names: tuple[str, ...] = ("train.npz", "val.npz", "test.npz")) -> list[Path]:
    outputs = [folder / name for name in names]
    args = [arg for out in outputs for arg in ("-o", out)]
    result = invoke("partition", src, "--fractions", ",".join(map(str, FRACTIONS[:len(names)]
                                                                  if len(names) == 3 else
                                                                  [0.5, 0.5])),
                    *options, *args)
    assert result.exit_code == 0, result.output
    return outputs


def test_deterministic_disjoint_covering_and_sized(invoke: Any, tmp_path: Path,
                                                   rng: np.random.Generator) -> None:
    src, seqs, y = labelled_set(tmp_path, rng)
    first = run_partition(invoke, src, tmp_path, "--seed", "7")
    again = run_partition(invoke, src, tmp_path / "..", "--seed", "7",
                          names=tuple(f"{tmp_path.name}/again_{p.name}" for p in first))
    orders = []
    for path, copy in zip(first, again, strict=True):
        assert path.read_bytes() == copy.read_bytes()
        part = np.load(path)
        order = part["order"]
        orders.append(order)
        assert np.all(np.diff(order) > 0)  # source order
        assert part["y"].tolist() == y[order].tolist()
        expected = np.concatenate([seqs[i] for i in order])
        np.testing.assert_array_equal(part["values"], expected)
        manifest = json.loads(Path(f"{path}.json").read_text())
        jsonschema.validate(manifest, JSON_SCHEMA)
        assert manifest["outputs"]["order"]["shape"] == [len(order)]
    everything = np.concatenate(orders)
    assert sorted(everything.tolist()) == list(range(len(seqs)))  # disjoint and covering
    assert [len(o) for o in orders] == allocate(len(seqs), check_fractions(FRACTIONS)).tolist()
    other = run_partition(invoke, src, tmp_path, "--seed", "8",
                          names=("o1.npz", "o2.npz", "o3.npz"))
    assert np.load(other[1])["order"].tolist() != orders[1].tolist()


def test_stratify_keeps_every_class_within_one(invoke: Any, tmp_path: Path,
                                               rng: np.random.Generator) -> None:
    src, _, y = labelled_set(tmp_path, rng, count=301, classes=4)
    outputs = run_partition(invoke, src, tmp_path, "--stratify", "--seed", "3")
    counts = np.bincount(y, minlength=4)
    for path, share in zip(outputs, FRACTIONS, strict=True):
        part_y = np.load(path)["y"]
        got = np.bincount(part_y, minlength=4)
        assert np.all(np.abs(got - share * counts) < 1), (got, share * counts)
        assert abs(len(part_y) - share * len(y)) <= 2
        assert json.loads(Path(f"{path}.json").read_text())["partition"]["classes"] == {
            str(c): int(n) for c, n in enumerate(got) if n}


@pytest.mark.parametrize("seed", range(5))
def test_stratify_property_on_many_class_mixes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, rng.integers(1, 12), size=rng.integers(1, 500))
    fractions = rng.dirichlet(np.ones(rng.integers(2, 5)))
    parts = split_indices(len(labels), fractions, seed, classes=labels)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))
    for part, share in zip(parts, fractions / fractions.sum(), strict=True):
        for label in np.unique(labels):
            exact = share * np.count_nonzero(labels == label)
            assert abs(np.count_nonzero(labels[part] == label) - exact) < 1


def test_by_source_never_splits_a_source(invoke: Any, tmp_path: Path,
                                         rng: np.random.Generator) -> None:
    series = random_sequences(rng, 30, 120, 2, "float32", min_length=20)
    src = write_ragged(tmp_path, "npz-lengths", series)
    windows = tmp_path / "windows.npz"
    assert invoke("window", src, "--timesteps", 10, "--stride", 5, "-o", windows).exit_code == 0
    outputs = run_partition(invoke, str(windows), tmp_path, "--by-source", "--seed", "2")
    seen: dict[int, int] = {}
    for number, path in enumerate(outputs):
        for source in np.load(path)["source_index"].tolist():
            assert seen.setdefault(source, number) == number, "a series went to two parts"
    assert len(seen) == 30
    plain = tmp_path / "plain"
    plain.mkdir()
    leaked = run_partition(invoke, str(windows), plain, "--seed", "2")
    sources = [set(np.load(p)["source_index"].tolist()) for p in leaked]
    assert sources[0] & sources[2], "without --by-source windows of one series are spread"


def test_dense_padded_input_keeps_its_padding(invoke: Any, tmp_path: Path,
                                              rng: np.random.Generator) -> None:
    src, _, y = labelled_set(tmp_path, rng, count=40)
    padded = tmp_path / "padded.npy"
    assert invoke("pad", src, "--padding", "pre", "--value", "-1", "-o", padded).exit_code == 0
    outputs = run_partition(invoke, str(padded), tmp_path, names=("a.npy", "b.h5"))
    x = np.load(padded)
    first = np.load(outputs[0])
    order = np.load(f"{outputs[0]}.order.npy")
    np.testing.assert_array_equal(first, x[order])
    assert np.load(f"{outputs[0]}.y.npy").tolist() == y[order].tolist()
    manifest = json.loads(Path(f"{outputs[0]}.json").read_text())
    assert manifest["padding"] == {"side": "pre", "value": -1}


def test_a_failure_leaves_no_output(invoke: Any, tmp_path: Path,
                                    rng: np.random.Generator) -> None:
    src, _, _ = labelled_set(tmp_path, rng, count=20)
    before = files_in(tmp_path)
    # ragged data cannot go to the third output, an .npy: the first two are not kept either
    result = invoke("partition", src, "--fractions", "0.5,0.3,0.2", "-o", tmp_path / "a.npz",
                    "-o", tmp_path / "b.npz", "-o", tmp_path / "c.npy")
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert files_in(tmp_path) == before


@pytest.mark.parametrize("args,message", [
    (["--fractions", "0.5,0.6"], "add up to"),
    (["--fractions", "0.5,0.5", "--stratify"], "no y"),
    (["--fractions", "0.5,0.5", "--by-source"], "source_index"),
])
def test_refusals_are_one_line(invoke: Any, tmp_path: Path, args: list[str],
                               message: str) -> None:
    np.save(tmp_path / "x.npy", np.zeros((6, 3, 1), np.float32))
    result = invoke("partition", tmp_path / "x.npy", *args, "-o", tmp_path / "a.npz",
                    "-o", tmp_path / "b.npz")
    assert result.exit_code in (1, 2)
    assert message in result.output


def test_outputs_train_through_tf_dataset(invoke: Any, tmp_path: Path, keras: Any,
                                          rng: np.random.Generator) -> None:
    src, _, y = labelled_set(tmp_path, rng, count=60)
    padded = tmp_path / "padded.npz"
    assert invoke("pad", src, "--maxlen", 20, "-o", padded).exit_code == 0
    outputs = run_partition(invoke, str(padded), tmp_path, "--stratify")
    dataset = lstmshape.tf.dataset(str(outputs[0]), batch_size=8)
    xs, ys = zip(*[(x.numpy(), t.numpy()) for x, t in dataset], strict=True)
    order = np.load(outputs[0])["order"]
    np.testing.assert_array_equal(np.concatenate(ys).reshape(-1), y[order])
    assert np.concatenate(xs).shape == (len(order), 20, 2)


def test_library_partition(rng: np.random.Generator) -> None:
    seqs = random_sequences(rng, 50, 10, 1, "float32", min_length=1)
    labels = rng.integers(0, 2, 50)
    parts = lstmshape.partition(seqs, [0.6, 0.4], seed=4, y=labels, stratify=True)
    assert sum(p.sequences.n_samples for p in parts) == 50
    for part in parts:
        assert part.y is not None and part.y.tolist() == labels[part.order].tolist()
        np.testing.assert_array_equal(part.sequences.values,
                                      np.concatenate([seqs[i] for i in part.order]))


def test_source_index_survives_pad_and_normalize(invoke: Any, tmp_path: Path,
                                                 rng: np.random.Generator) -> None:
    """truncate --overflow split -> pad -> normalize -> partition --by-source: no recording's
    pieces in both parts, and y (the recording's) follows."""
    src, _, _ = labelled_set(tmp_path, rng, count=40)
    labels = np.arange(40)
    data = dict(np.load(src))
    np.savez(src, **{**data, "y": labels})
    pieces, padded, scaled = (tmp_path / f"{name}.npz" for name in ("pieces", "padded", "n"))
    assert invoke("truncate", src, "--maxlen", 6, "--overflow", "split", "-o", pieces
                  ).exit_code == 0
    assert invoke("pad", pieces, "-o", padded).exit_code == 0
    assert invoke("normalize", padded, "-o", scaled).exit_code == 0
    outputs = run_partition(invoke, str(scaled), tmp_path, "--by-source",
                            names=("a.npz", "b.npz"))
    parts = [np.load(path) for path in outputs]
    assert not set(parts[0]["source_index"]) & set(parts[1]["source_index"])
    for part in parts:
        assert part["y"].tolist() == part["source_index"].tolist()


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_y_given_with_dash_dash_y_follows_every_part(invoke: Any, tmp_path: Path,
                                                     rng: np.random.Generator,
                                                     suffix: str) -> None:
    """--y: sequence-level classes (stratified), and per-timestep labels gathered like x."""
    seqs = random_sequences(rng, 60, 12, 2, "float32", min_length=1)
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    padded = tmp_path / "padded.npy"
    assert invoke("pad", src, "--maxlen", 12, "-o", padded).exit_code == 0
    classes = rng.integers(0, 3, 60)
    np.save(tmp_path / "classes.npy", classes)
    outputs = [tmp_path / f"part{i}{suffix}" for i in range(2)]
    result = invoke("partition", padded, "--fractions", "0.7,0.3", "--stratify", "--y",
                    tmp_path / "classes.npy", "-o", outputs[0], "-o", outputs[1])
    assert result.exit_code == 0, result.output
    for path in outputs:
        part = lstmshape.read(str(path))
        assert part.n_samples in (42, 18)
        if suffix == ".npz":
            order = np.load(path)["order"]
            assert np.load(path)["y"].tolist() == classes[order].tolist()
    labels = [rng.integers(0, 5, (len(s), 1)) for s in seqs]  # one tag per timestep
    tags = tmp_path / "tags.npz"
    np.savez(tags, values=np.concatenate(labels), lengths=[len(s) for s in seqs])
    steps = [tmp_path / f"steps{i}.npz" for i in range(2)]
    result = invoke("partition", padded, "--fractions", "0.5,0.5", "--y", tags, "--y-value", -1,
                    "-o", steps[0], "-o", steps[1])
    assert result.exit_code == 0, result.output
    for path in steps:
        part = np.load(path)
        order = part["order"]
        expected = np.full((len(order), 12), -1)  # one label a step: (N, T)
        for row, sample in enumerate(order):
            expected[row, :len(labels[sample])] = labels[sample][:, 0]
        np.testing.assert_array_equal(part["y"], expected)
        np.testing.assert_array_equal(part["sample_weight"], (expected != -1) * 1.0)
