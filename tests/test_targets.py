"""Targets through every command (``--y``): sequence-level y follows every reordering and split,
per-timestep labels are padded, cut and batched exactly like x (Keras' ``pad_sequences`` as the
reference), ``sample_weight`` keeps padding out of the loss, and ``window --y`` equals
``timeseries_dataset_from_array(targets=...)``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import Result

from lstmshape.io.source import open_source
from tests.conftest import run_lstmshape, write_ragged

Invoke = Callable[..., Result]


@pytest.fixture
def labelled(tmp_path: Path, rng: np.random.Generator) -> dict[str, Any]:
    """A ragged set of 11 sequences (2 features, lengths 1..9) with sequence-level classes in
    ``cls.npy`` and per-timestep labels (ragged, same lengths) in ``steps.npz``."""
    lengths = rng.integers(1, 10, size=11)
    seqs = [rng.normal(size=(n, 2)).astype(np.float32) for n in lengths]
    labels = [rng.integers(1, 5, size=n).astype(np.int32) for n in lengths]
    src = write_ragged(tmp_path, "npz-lengths", seqs)
    np.save(tmp_path / "cls.npy", np.arange(11, dtype=np.int64) * 10)
    np.savez(tmp_path / "steps.npz", values=np.concatenate(labels),
             lengths=lengths.astype(np.int64))
    return {"src": src, "seqs": seqs, "labels": labels, "lengths": lengths,
            "cls": str(tmp_path / "cls.npy"), "steps": str(tmp_path / "steps.npz"),
            "y": np.arange(11) * 10}


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def batched(path: Path, role: str) -> list[np.ndarray]:
    with np.load(path) as data:
        keys = sorted(k for k in data.files if k.startswith(role + "_") and k[len(role) + 1:]
                      .isdigit())
        return [data[k] for k in keys]


# ---------------------------------------------------------------------------------------------
# Sequence-level y


@pytest.mark.parametrize("how", [["--shuffle", "--seed", "3"], ["--bucket-by-length"],
                                 ["--shuffle", "--remainder", "pad"]])
def test_sequence_y_follows_batch_order(how: list[str], labelled: dict[str, Any],
                                        tmp_path: Path, invoke: Invoke) -> None:
    out = tmp_path / "b.npz"
    ok(invoke("batch", labelled["src"], "--y", labelled["cls"], "--size", 4, *how, "-o", out))
    with np.load(out) as data:
        order = data["order"]
    got = np.concatenate(batched(out, "y"))
    expected = np.where(order >= 0, labelled["y"][np.maximum(order, 0)], 0)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(order[order >= 0], np.arange(11))  # the order did change
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["params"]["y"] == "cls.npy"
    y_input = [i for i in manifest["inputs"] if i["path"] == "cls.npy"]
    assert len(y_input) == 1 and len(y_input[0]["sha256"]) == 64
    assert manifest["targets"] == {"kind": "sequence", "shape": [], "dtype": "int64"}
    weights = batched(out, "sample_weight")
    if "pad" in how:  # pad rows must not count in the loss
        np.testing.assert_array_equal(np.concatenate(weights), (order >= 0).astype(np.float32))
    else:
        assert weights == []


def test_sequence_y_follows_split(labelled: dict[str, Any], tmp_path: Path,
                                  invoke: Invoke) -> None:
    out = tmp_path / "pieces.npz"
    ok(invoke("truncate", labelled["src"], "--y", labelled["cls"], "--maxlen", 3,
              "--overflow", "split", "-o", out))
    with np.load(out) as data:
        np.testing.assert_array_equal(data["y"], labelled["y"][data["source_index"]])
        assert len(data["source_index"]) > 11


def test_explicit_y_wins_over_the_inputs_own(labelled: dict[str, Any], tmp_path: Path,
                                             invoke: Invoke) -> None:
    src = tmp_path / "withy.npz"
    with np.load(labelled["src"]) as data:
        np.savez(src, values=data["values"], lengths=data["lengths"], y=np.ones(11))
    ok(invoke("pad", src, "-o", tmp_path / "a.npz"))
    ok(invoke("pad", src, "--y", labelled["cls"], "-o", tmp_path / "b.npz"))
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        np.testing.assert_array_equal(a["y"], np.ones(11))
        np.testing.assert_array_equal(b["y"], labelled["y"])


def test_sample_count_mismatch_is_one_error_naming_both(labelled: dict[str, Any],
                                                        tmp_path: Path) -> None:
    np.save(tmp_path / "short.npy", np.zeros(7))
    done = run_lstmshape("pad", labelled["src"], "--y", tmp_path / "short.npy",
                         "-o", tmp_path / "o.npy")
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, lines
    assert "short.npy" in lines[0] and "(7,)" in lines[0] and "11 samples" in lines[0]
    assert "seqs.npz" in lines[0]
    assert not (tmp_path / "o.npy").exists()


# ---------------------------------------------------------------------------------------------
# Per-timestep labels


@pytest.mark.parametrize(("padding", "truncating", "maxlen"),
                         [("post", "post", None), ("pre", "pre", 5), ("pre", "post", 4)])
def test_timestep_labels_pad_like_pad_sequences(padding: str, truncating: str,
                                                maxlen: int | None, labelled: dict[str, Any],
                                                tmp_path: Path, invoke: Invoke,
                                                keras: Any) -> None:
    out = tmp_path / "p.npz"
    extra = ["--maxlen", maxlen] if maxlen is not None else []
    ok(invoke("pad", labelled["src"], "--y", labelled["steps"], "--padding", padding,
              "--truncating", truncating, "--y-value", -1, *extra, "-o", out))
    expected = keras.utils.pad_sequences(labelled["labels"], maxlen=maxlen, padding=padding,
                                         truncating=truncating, value=-1, dtype="int32")
    with np.load(out) as data:
        np.testing.assert_array_equal(data["y"], expected)
        assert data["y"].dtype == np.int32
        mask = keras.utils.pad_sequences([np.ones(n) for n in labelled["lengths"]],
                                         maxlen=maxlen, padding=padding, truncating=truncating)
        np.testing.assert_array_equal(data["sample_weight"], mask.astype(np.float32))
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["targets"] == {"kind": "timestep", "shape": [expected.shape[1]],
                                   "dtype": "int32"}
    assert manifest["params"]["y_value"] == -1


def test_dense_timestep_labels_beside_dense_x(tmp_path: Path, invoke: Invoke,
                                              rng: np.random.Generator) -> None:
    """(N, T) labels beside an (N, T, F) tensor with true lengths: per timestep, and cut by
    truncate exactly where x is."""
    x = rng.normal(size=(6, 8, 3)).astype(np.float32)
    lengths = np.array([8, 3, 5, 1, 7, 2])
    labels = rng.integers(1, 9, size=(6, 8))
    np.savez(tmp_path / "in.npz", x=x, lengths=lengths, y=labels)
    ok(invoke("truncate", tmp_path / "in.npz", "--maxlen", 4, "--truncating", "pre",
              "-o", tmp_path / "t.npz"))
    with np.load(tmp_path / "t.npz") as data:
        expected = [labels[i, :n][-4:] for i, n in enumerate(lengths)]
        for row, want in zip(data["y"], expected, strict=True):
            np.testing.assert_array_equal(row[:len(want)], want)
            assert not row[len(want):].any()
        np.testing.assert_array_equal(data["sample_weight"].sum(axis=1),
                                      np.minimum(lengths, 4))


def test_timestep_labels_batched_like_x(labelled: dict[str, Any], tmp_path: Path,
                                        invoke: Invoke, keras: Any) -> None:
    out = tmp_path / "b.npz"
    ok(invoke("batch", labelled["src"], "--y", labelled["steps"], "--size", 3,
              "--bucket-by-length", "--shuffle", "--remainder", "pad", "-o", out))
    with np.load(out) as data:
        order = data["order"]
    start = 0
    for y, weight, x in zip(batched(out, "y"), batched(out, "sample_weight"),
                            batched(out, "x"), strict=True):
        rows = order[start:start + len(y)]
        start += len(y)
        labels = [labelled["labels"][i] if i >= 0 else np.zeros(0, np.int32) for i in rows]
        expected = keras.utils.pad_sequences(labels, maxlen=x.shape[1], padding="post",
                                             dtype="int32")
        np.testing.assert_array_equal(y, expected)
        np.testing.assert_array_equal(weight.sum(axis=1),
                                      [len(s) for s in labels])
    assert -1 in order  # a pad row was added, and weighs 0


def test_label_pad_value_carries_through_a_chain_and_like(labelled: dict[str, Any],
                                                           tmp_path: Path, invoke: Invoke,
                                                           keras: Any) -> None:
    """Labels padded with -1 (the value a loss ignores) stay padded with -1 when the padded
    output is batched again, and a test set made --like the training set pads them with -1
    too -- without repeating --y-value; an explicit --y-value still wins."""
    padded = tmp_path / "train.npz"
    ok(invoke("pad", labelled["src"], "--y", labelled["steps"], "--y-value", -1, "-o", padded))
    out = tmp_path / "b.npz"
    ok(invoke("batch", padded, "--size", 4, "--bucket-by-length", "-o", out))
    with np.load(out) as data:
        order = data["order"]
    start = 0
    for y in batched(out, "y"):
        rows = order[start:start + len(y)]
        start += len(y)
        expected = keras.utils.pad_sequences([labelled["labels"][i] for i in rows],
                                             maxlen=y.shape[1], padding="post", value=-1)
        np.testing.assert_array_equal(y, expected)
    assert json.loads(Path(f"{out}.json").read_text())["params"]["y_value"] == -1
    test = tmp_path / "test.npz"
    ok(invoke("pad", labelled["src"], "--y", labelled["steps"], "--like", f"{padded}.json",
              "-o", test))
    with np.load(test) as data:
        assert (data["y"][data["sample_weight"] == 0] == -1).all()
    ok(invoke("batch", padded, "--size", 4, "--y-value", 7, "-o", out))
    with np.load(out) as data:
        assert (data["y_000000"][data["sample_weight_000000"] == 0] == 7).all()
    # --y names other labels: the input's recorded -1 was about its own labels, not these
    ok(invoke("batch", padded, "--y", labelled["steps"], "--size", 4, "-o", out))
    with np.load(out) as data:
        assert (data["y_000000"][data["sample_weight_000000"] == 0] == 0).all()


def test_timestep_labels_split_like_x(labelled: dict[str, Any], tmp_path: Path,
                                      invoke: Invoke) -> None:
    out = tmp_path / "pieces.npz"
    ok(invoke("truncate", labelled["src"], "--y", labelled["steps"], "--maxlen", 2,
              "--overflow", "split", "-o", out))
    with open_source(str(out)) as source:
        assert source.target_kind == "timestep"
        assert source.step_targets is not None
        pieces = source.step_targets.read().to_list()
    expected = [label[i:i + 2] for label in labelled["labels"]
                for i in range(0, len(label), 2)]
    assert len(pieces) == len(expected)
    for got, want in zip(pieces, expected, strict=True):
        np.testing.assert_array_equal(got[:, 0], want)


def test_label_lengths_mismatch_names_both(labelled: dict[str, Any], tmp_path: Path,
                                           invoke: Invoke) -> None:
    lengths = labelled["lengths"].copy()
    lengths[4] += 1
    np.savez(tmp_path / "bad.npz", values=np.zeros(int(lengths.sum()), np.int32),
             lengths=lengths)
    result = invoke("pad", labelled["src"], "--y", tmp_path / "bad.npz", "-o",
                    tmp_path / "o.npz")
    assert result.exit_code == 1
    message = result.output.strip()
    assert message.count("Error:") == 1
    assert "label sequence 4" in message and "seqs.npz" in message and "bad.npz" in message


# ---------------------------------------------------------------------------------------------
# window --y


@pytest.mark.parametrize(("stride", "rate"), [(1, 1), (3, 2)])
def test_window_y_equals_timeseries_dataset_from_array(stride: int, rate: int, tmp_path: Path,
                                                       invoke: Invoke, keras: Any,
                                                       rng: np.random.Generator) -> None:
    data = rng.normal(size=(60, 2)).astype(np.float32)
    targets = np.arange(60) * 10
    np.save(tmp_path / "series.npy", data)
    np.save(tmp_path / "targets.npy", targets)
    out = tmp_path / "w.npz"
    ok(invoke("window", tmp_path / "series.npy", "--timesteps", 5, "--stride", stride,
              "--sampling-rate", rate, "--y", tmp_path / "targets.npy", "-o", out))
    reference = keras.utils.timeseries_dataset_from_array(
        data, targets, sequence_length=5, sequence_stride=stride, sampling_rate=rate,
        batch_size=1000)
    x_ref, y_ref = next(iter(reference))
    with np.load(out) as written:
        np.testing.assert_array_equal(written["x"], x_ref.numpy())
        np.testing.assert_array_equal(written["y"], y_ref.numpy())


# ---------------------------------------------------------------------------------------------
# Training through lstmshape.tf.dataset


def classification_set(rng: np.random.Generator, count: int) -> tuple[list[np.ndarray],
                                                                      np.ndarray]:
    """Ragged sequences whose class is whether their first feature sums above zero."""
    lengths = rng.integers(3, 12, size=count)
    seqs = [rng.normal(size=(n, 2)).astype(np.float32) for n in lengths]
    return seqs, np.array([int(s[:, 0].sum() > 0) for s in seqs], dtype=np.int64)


def small_model(keras: Any) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(None, 2)), keras.layers.Masking(0.0),
                              keras.layers.LSTM(8), keras.layers.Dense(1, "sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


def test_training_on_shuffled_batches_matches_hand_fed(tmp_path: Path, invoke: Invoke,
                                                       keras: Any) -> None:
    import tensorflow as tf

    import lstmshape.tf

    rng = np.random.default_rng(7)
    train, labels = classification_set(rng, 320)
    test, test_labels = classification_set(rng, 200)
    np.savez(tmp_path / "train.npz", *train)
    np.save(tmp_path / "labels.npy", labels)
    out = tmp_path / "batches.npz"
    ok(invoke("batch", tmp_path / "train.npz", "--y", tmp_path / "labels.npy", "--size", 32,
              "--shuffle", "--seed", 1, "-o", out))
    x_test = keras.utils.pad_sequences(test, padding="post", dtype="float32")

    def accuracy(model: Any) -> float:
        predicted = (model.predict(x_test, verbose=0)[:, 0] > 0.5).astype(int)
        return float((predicted == test_labels).mean())

    by_lstmshape = small_model(keras)
    by_lstmshape.fit(lstmshape.tf.dataset(str(out)), epochs=12, shuffle=False, verbose=0)
    by_hand = small_model(keras)
    by_hand.fit(keras.utils.pad_sequences(train, padding="post", dtype="float32"), labels,
                batch_size=32, epochs=12, shuffle=True, verbose=0)
    # the control: the user's own labels, in file order, zipped onto the shuffled batches
    misaligned = small_model(keras)
    xs = lstmshape.tf.dataset(str(out)).map(lambda x, y: x)
    ys = tf.data.Dataset.from_tensor_slices(labels).batch(32)
    misaligned.fit(tf.data.Dataset.zip((xs, ys)), epochs=12, shuffle=False, verbose=0)

    ours, hand, control = accuracy(by_lstmshape), accuracy(by_hand), accuracy(misaligned)
    assert ours >= 0.85 and hand >= 0.85, (ours, hand)
    assert abs(ours - hand) <= 0.08, (ours, hand)
    assert control < 0.75, control


def test_sample_weight_gives_the_hand_masked_loss(labelled: dict[str, Any], tmp_path: Path,
                                                  invoke: Invoke, keras: Any) -> None:
    import lstmshape.tf

    out = tmp_path / "p.npz"
    ok(invoke("pad", labelled["src"], "--y", labelled["steps"], "--y-value", 3, "-o", out))
    data = lstmshape.tf.dataset(str(out), batch_size=64)
    _, y, weight = next(iter(data))
    assert weight.shape == y.shape
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(None, 2)),
                              keras.layers.LSTM(4, return_sequences=True),
                              keras.layers.Dense(5, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    loss = model.evaluate(data, verbose=0)
    # by hand: the label sequences padded, per-step losses, padded steps masked out (Keras
    # divides the weighted sum by the number of steps)
    x_hand = keras.utils.pad_sequences(labelled["seqs"], padding="post", dtype="float32")
    y_hand = keras.utils.pad_sequences(labelled["labels"], padding="post")
    mask = keras.utils.pad_sequences([np.ones(n) for n in labelled["lengths"]], padding="post")
    per_step = keras.losses.sparse_categorical_crossentropy(y_hand, model.predict(x_hand,
                                                                                 verbose=0))
    masked = float((np.asarray(per_step) * mask).sum() / mask.size)
    unmasked = float(np.asarray(per_step).mean())
    assert loss == pytest.approx(masked, rel=1e-5)
    assert abs(masked - unmasked) > 1e-3  # the padded steps would have counted


# ---------------------------------------------------------------------------------------------
# Reading back, and the other formats


def test_npy_output_keeps_labels_and_weights_beside_it(labelled: dict[str, Any],
                                                       tmp_path: Path, invoke: Invoke) -> None:
    out = tmp_path / "p.npy"
    ok(invoke("pad", labelled["src"], "--y", labelled["steps"], "-o", out))
    assert (tmp_path / "p.npy.y.npy").exists() and (tmp_path / "p.npy.sample_weight.npy").exists()
    with open_source(str(out)) as source:
        assert source.target_kind == "timestep" and source.sample_weight is not None
        assert source.sample_weight.shape == (11, int(labelled["lengths"].max()))
    # a second step (batch) reads them back as labels and pads them again
    ok(invoke("batch", out, "--size", 4, "--shuffle", "-o", tmp_path / "b.h5"))
    with h5py.File(tmp_path / "b.h5") as h5:
        order = h5["order"][:]
        first = h5["y_000000"][:]
    for row, index in zip(first, order[:4], strict=True):
        label = labelled["labels"][index]
        np.testing.assert_array_equal(row[:len(label)], label)


def test_verify_checks_the_new_roles(labelled: dict[str, Any], tmp_path: Path,
                                     invoke: Invoke) -> None:
    out = tmp_path / "p.npz"
    ok(invoke("pad", labelled["src"], "--y", labelled["steps"], "-o", out))
    result = ok(invoke("verify", out, "--no-model", "--json"))
    roles = {row["role"] for row in json.loads(result.output)["files"]}
    assert {"x", "y", "sample_weight"} <= roles


def test_flat_labels_as_many_as_samples_still_read_as_per_timestep(tmp_path: Path,
                                                                  invoke: Invoke) -> None:
    """Beside ragged x, labels stored flat (one a real step) whose count equals the sample
    count -- every sequence one step long, or an empty part of a partition -- are read as the
    manifest recorded them: per timestep, not one per sample."""
    src = tmp_path / "one.npz"
    np.savez(src, values=np.arange(8, dtype=np.float32).reshape(4, 2),
             lengths=np.ones(4, np.int64))
    np.savez(tmp_path / "tags.npz", values=np.arange(4) + 5, lengths=np.ones(4, np.int64))
    ragged = tmp_path / "r.npz"
    ok(invoke("truncate", src, "--y", tmp_path / "tags.npz", "--y-kind", "timestep",
              "--maxlen", 5, "-o", ragged))
    ok(invoke("verify", ragged, "--no-model", "-q"))
    padded = tmp_path / "p.npz"
    ok(invoke("pad", ragged, "-o", padded))
    with np.load(padded) as data:
        assert data["y"].tolist() == [[5], [6], [7], [8]]
    parts = [tmp_path / "a.npz", tmp_path / "b.h5"]
    ok(invoke("partition", ragged, "--fractions", "0.9,0.1", "-o", parts[0], "-o", parts[1]))
    for part in parts:  # b.h5 is empty: 0 labels for 0 steps
        ok(invoke("verify", part, "--no-model", "-q"))


@pytest.mark.parametrize("layout", ["values+lengths", "flat"])
@pytest.mark.parametrize("kind", ["auto", "timestep"])
@pytest.mark.parametrize("step_shape", [(3,), ()])
def test_ragged_labels_of_k_values_a_step_pad_like_pad_sequences(
        tmp_path: Path, invoke: Invoke, keras: Any, rng: np.random.Generator, layout: str,
        kind: str, step_shape: tuple[int, ...]) -> None:
    """A label of k values a step (a multi-label tag, a k-dim regression target) beside ragged
    x: as ragged label sequences, or stored flat with one row a real step, it pads to
    ``(N, T, k)`` (this was an internal error, and flat rows were refused as "one row per
    sample")."""
    lengths = np.array([3, 5, 2, 4])
    src = write_ragged(tmp_path, "npz-lengths", [rng.normal(size=(n, 2)).astype(np.float32)
                                                 for n in lengths])
    labels = [rng.integers(0, 9, size=(n, *step_shape)) for n in lengths]
    y = tmp_path / ("tags.npz" if layout == "values+lengths" else "tags.npy")
    if layout == "flat":
        np.save(y, np.concatenate(labels))
    else:
        np.savez(y, values=np.concatenate(labels), lengths=lengths)
    out = tmp_path / "p.npz"
    ok(invoke("pad", src, "--y", y, "--y-kind", kind, "--y-value", -1, "--maxlen", 4,
              "-o", out))
    expected = keras.utils.pad_sequences(labels, maxlen=4, value=-1, dtype="int64",
                                         padding="post", truncating="post")
    with np.load(out) as data:
        np.testing.assert_array_equal(data["y"], expected)
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["targets"] == {"kind": "timestep", "shape": [4, *step_shape],
                                   "dtype": "int64"}
    ok(invoke("verify", out, "--no-model", "-q"))
    ragged = tmp_path / "t.h5"  # ragged all along, then padded
    ok(invoke("truncate", src, "--y", y, "--y-kind", kind, "--maxlen", 4, "-o", ragged))
    ok(invoke("pad", ragged, "--y-value", -1, "-o", tmp_path / "again.npz"))
    with np.load(tmp_path / "again.npz") as data:
        np.testing.assert_array_equal(data["y"], expected)


def test_the_kind_of_a_y_given_by_name_is_its_own_not_the_inputs(tmp_path: Path,
                                                                   invoke: Invoke) -> None:
    """An input whose manifest records per-sample targets, given per-step labels with --y (and
    the other way round): the kind is read from the named file's shapes, not from the kind
    the input's manifest recorded for its own y."""
    lengths = np.array([3, 1, 4, 2, 5])
    src = write_ragged(tmp_path, "npz-lengths", [np.ones((n, 2), np.float32) for n in lengths])
    np.save(tmp_path / "per_sample.npy", np.arange(15).reshape(5, 3))
    np.save(tmp_path / "per_step.npy", np.arange(45).reshape(15, 3))  # a row a real step
    np.savez(tmp_path / "steps.npz", values=np.arange(15), lengths=lengths)
    for own, other, shape in (("per_sample.npy", "per_step.npy", [5, 5, 3]),
                              ("steps.npz", "per_sample.npy", [5, 3])):
        ragged = tmp_path / f"with-{own}.npz"
        ok(invoke("truncate", src, "--maxlen", 9, "--y", tmp_path / own, "-o", ragged))
        out = tmp_path / f"{own}-then-{other}.npz"
        ok(invoke("pad", ragged, "--maxlen", "max", "--y", tmp_path / other, "-o", out))
        with np.load(out) as data:
            assert list(data["y"].shape) == shape, (own, other)


@pytest.mark.parametrize("command", [["pad"], ["batch", "--size", "4"],
                                     ["partition", "--fractions", "1"]])
def test_a_label_pad_value_the_labels_cannot_hold_is_one_error(
        command: list[str], labelled: dict[str, Any], tmp_path: Path, invoke: Invoke) -> None:
    """int32 labels padded with NaN: refused naming --y-value, before anything is written;
    truncate of ragged labels pads nothing, so any value does."""
    padded = tmp_path / "p.npz"
    if command[0] == "partition":  # kept_labels pads a padded input's labels again
        ok(invoke("pad", labelled["src"], "--y", labelled["steps"], "-o", padded))
        src, extra = padded, ["--y-value", "nan"]
    else:
        src, extra = labelled["src"], ["--y", labelled["steps"], "--y-value", "nan"]
    out = tmp_path / "out.npz"
    result = invoke(command[0], src, *command[1:], *extra, "-o", out)
    assert result.exit_code == 1
    assert result.output == "Error: --y-value nan cannot be stored in int32 data; use a whole " \
                            "number or a float --dtype\n"
    assert not out.exists()
    ok(invoke("truncate", labelled["src"], "--y", labelled["steps"], "--y-value", "nan",
              "--maxlen", 3, "-o", out))
