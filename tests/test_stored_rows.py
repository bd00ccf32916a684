"""A padded tensor cut or batched on its own padding side is copied as stored, not unpadded and
padded again (commands/truncate.CutRows.stored_columns, commands/batch.BatchMaker.stored_rows):
the outputs must be exactly what padding the sequences would write, and the shortcut must stay
taken."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import random_sequences, write_ragged
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmshape.io.source import Source
from lstmshape.job import Job

SIDES = ("pre", "post")


@contextmanager
def small_blocks_if(small: bool) -> Iterator[None]:
    """Blocks of a few samples (the smallest --memory-limit still holds all of these), so that
    some blocks of one input take the shortcut and others not."""
    with pytest.MonkeyPatch.context() as patch:
        if small:
            patch.setattr(Job, "block_bytes", property(lambda self: 200))
        yield


def padded_input(folder: Path, sequences: list[np.ndarray], side: str, value: float,
                 invoke: Any) -> Path:
    """The sequences as lstmshape's own padded output (its manifest records the pad value)."""
    ragged = write_ragged(folder, "h5-lengths", sequences)
    dense = folder / "padded.npy"
    result = invoke("pad", ragged, "--padding", side, "--truncating", side, "--value", value,
                    "-o", dense, "-q")
    assert result.exit_code == 0, result.output
    return dense


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), side=st.sampled_from(SIDES),
       truncating=st.sampled_from(SIDES), maxlen=st.integers(1, 12),
       value=st.sampled_from([0.0, -1.0, 2.5, float("nan")]), dtype=st.sampled_from(
           ["float32", "int16"]), small_blocks=st.booleans())
def test_truncating_a_padded_tensor_equals_keras(tmp_path_factory: pytest.TempPathFactory,
                                                 invoke: Any, keras: Any, seed: int, side: str,
                                                 truncating: str, maxlen: int, value: float,
                                                 dtype: str, small_blocks: bool) -> None:
    if np.dtype(dtype).kind != "f" and not float(value).is_integer():
        value = -1.0
    folder = tmp_path_factory.mktemp("cut")
    rng = np.random.default_rng(seed)
    sequences = random_sequences(rng, int(rng.integers(1, 40)), 10, 3, dtype)
    dense = padded_input(folder, sequences, side, value, invoke)
    out = folder / "cut.npy"
    with small_blocks_if(small_blocks):
        result = invoke("truncate", dense, "--maxlen", maxlen, "--truncating", truncating,
                        "-o", out, "-q")
    assert result.exit_code == 0, result.output
    width = min(maxlen, max(len(s) for s in sequences))
    expected = keras.utils.pad_sequences(sequences, maxlen=width, dtype=dtype, padding=side,
                                         truncating=truncating, value=value)
    got = np.load(out)
    assert got.dtype == np.dtype(dtype)
    assert got.tobytes() == expected.tobytes()  # bytes: NaN pads compare too
    lengths = np.load(f"{out}.lengths.npy")
    assert lengths.tolist() == [min(len(s), width) for s in sequences]


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), side=st.sampled_from(SIDES),
       padding=st.sampled_from([None, *SIDES]), size=st.integers(1, 7),
       remainder=st.sampled_from(["keep", "drop", "pad"]), shuffle=st.booleans(),
       stored=st.sampled_from([-1.0, 0.0]), value=st.sampled_from([None, -1.0, 0.0]),
       suffix=st.sampled_from([".npz", ".npy"]), small_blocks=st.booleans())
def test_batching_a_padded_tensor_equals_keras(
        tmp_path_factory: pytest.TempPathFactory, invoke: Any, keras: Any, seed: int,
        side: str, padding: str | None, size: int, remainder: str, shuffle: bool,
        stored: float, value: float | None, suffix: str, small_blocks: bool) -> None:
    if suffix == ".npy" and remainder == "keep":
        remainder = "pad"  # an .npy holds batches of one size
    folder = tmp_path_factory.mktemp("batch")
    rng = np.random.default_rng(seed)
    sequences = random_sequences(rng, int(rng.integers(size, 40)), 8, 2, "float32")
    dense = padded_input(folder, sequences, side, stored, invoke)
    options = ["--size", size, "--remainder", remainder, "--seed", seed]
    options += ["--padding", padding] if padding else []
    options += ["--value", value] if value is not None else []
    options += ["--shuffle"] if shuffle else []
    out = folder / f"batched{suffix}"
    with small_blocks_if(small_blocks):
        result = invoke("batch", dense, *options, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    if suffix == ".npy":
        x, order = np.load(out), np.load(f"{out}.order.npy")
        batches = list(x)
    else:
        with np.load(out) as arrays:
            order = arrays["order"]
            batches = [arrays[key] for key in sorted(arrays) if key.startswith("x_")]
    width = np.load(dense).shape[1]
    fill = value if value is not None else stored  # the input's, as its manifest records
    first = 0
    for tensor in batches:
        rows = order[first:first + len(tensor)]
        first += len(tensor)
        expected = keras.utils.pad_sequences(
            [sequences[i] if i >= 0 else np.zeros((0, 2), np.float32) for i in rows],
            maxlen=width, dtype="float32", padding=padding or side, value=fill)
        if expected.ndim == 2:  # Keras takes the feature shape from a non-empty sequence
            expected = np.full((len(rows), width, 2), fill, np.float32)
        assert tensor.shape == expected.shape and np.array_equal(tensor, expected)
    assert first == len(order)


def test_the_stored_rows_are_copied_not_padded_again(tmp_path: Path, invoke: Any, rng: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut is taken: cutting or batching a padded tensor on its side reads no block
    as sequences (where the unpadding and padding again would happen)."""
    sequences = random_sequences(rng, 50, 10, 3, min_length=1)
    dense = padded_input(tmp_path, sequences, "post", 0.0, invoke)
    unpadded: list[tuple[int, int]] = []
    original = Source.read_block

    def spy(self: Source, start: int, stop: int) -> Any:
        unpadded.append((start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(Source, "read_block", spy)
    for command in (["truncate", dense, "--maxlen", 4],
                    ["batch", dense, "--size", 10],
                    ["batch", dense, "--size", 7, "-o", tmp_path / "b.npz"]):
        if "-o" not in command:
            command += ["-o", tmp_path / f"{command[0]}.npy"]
        assert invoke(*command, "-q").exit_code == 0
        assert unpadded == [], command
    # the other side, or another pad value: padded again, as the output must change
    assert invoke("truncate", dense, "--maxlen", 4, "--truncating", "pre", "-o",
                  tmp_path / "pre.npy", "-q").exit_code == 0
    assert unpadded
    unpadded.clear()
    assert invoke("batch", dense, "--size", 10, "--value", 9, "-o", tmp_path / "nine.npy",
                  "-q").exit_code == 0
    assert unpadded and np.count_nonzero(np.load(tmp_path / "nine.npy") == 9) > 0


def test_pad_steps_of_a_tensor_without_a_manifest_are_padded_again(tmp_path: Path,
                                                                   invoke: Any) -> None:
    """A user's tensor with lengths holds anything in its pad steps: only its real steps are
    kept, and the output's pad steps are written."""
    x = np.full((3, 4, 1), 7.0, np.float32)
    x[0, :2], x[1, :], x[2, :1] = 1, 2, 3
    src = tmp_path / "raw.npz"
    np.savez(src, x=x, lengths=np.array([2, 4, 1]))
    out = tmp_path / "cut.npy"
    assert invoke("truncate", src, "--maxlen", 3, "-o", out, "-q").exit_code == 0
    assert np.load(out)[..., 0].tolist() == [[1, 1, 0], [2, 2, 2], [3, 0, 0]]
    batched = tmp_path / "b.npy"
    assert invoke("batch", src, "--size", 3, "-o", batched, "-q").exit_code == 0
    assert np.load(batched)[0, ..., 0].tolist() == [[1, 1, 0, 0], [2, 2, 2, 2], [3, 0, 0, 0]]


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".zarr"])
def test_a_batch_output_is_cut_and_batched_again_across_its_batches(tmp_path: Path, invoke: Any,
                                                                    suffix: str) -> None:
    """Batches stored one array each: a block of samples spans several of them."""
    x = np.arange(2 * 10 * 3, dtype=np.float32).reshape(10, 3, 2)
    np.save(tmp_path / "x.npy", x)
    batched = tmp_path / f"b{suffix}"
    assert invoke("batch", tmp_path / "x.npy", "--size", 2, "-o", batched, "-q").exit_code == 0
    cut = tmp_path / "cut.npy"
    result = invoke("truncate", batched, "--maxlen", 2, "-o", cut, "-q")
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(cut), x[:, :2])
    again = tmp_path / "again.npy"
    result = invoke("batch", batched, "--size", 5, "-o", again, "-q")
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(again), x.reshape(2, 5, 3, 2))


def test_nan_error_is_checked_on_the_stored_rows_too(tmp_path: Path, invoke: Any) -> None:
    x = np.zeros((4, 3, 1), np.float32)
    x[2, 1, 0] = np.nan
    np.save(tmp_path / "n.npy", x)
    for command in (["truncate", "--maxlen", 2], ["batch", "--size", 2]):
        out = tmp_path / "out.npy"
        result = invoke(command[0], tmp_path / "n.npy", *command[1:], "--nan", "error", "-o", out)
        assert result.exit_code == 1, command
        assert "nan at sample 2, timestep 1" in result.output
        assert not out.exists()


def test_lengths_file_on_a_padded_output_pads_past_its_lengths(tmp_path: Path,
                                                               invoke: Any) -> None:
    """``--lengths`` says where the real steps end, whatever the input's manifest says: the
    steps past them are padding in the output (the stored rows are not copied as they are)."""
    src = tmp_path / "r.npz"
    np.savez(src, values=np.arange(1, 6, dtype=np.float32).reshape(5, 1),
             lengths=np.array([3, 2]))
    padded = tmp_path / "p.npy"
    assert invoke("pad", src, "-o", padded, "-q").exit_code == 0  # [[1,2,3],[4,5,0]]
    np.save(tmp_path / "L.npy", np.array([1, 2]))
    cut, batched = tmp_path / "cut.npy", tmp_path / "b.npy"
    for command, out in ((["truncate", "--maxlen", 3], cut), (["batch", "--size", 2], batched)):
        result = invoke(command[0], padded, *command[1:], "--lengths", tmp_path / "L.npy",
                        "-o", out, "-q")
        assert result.exit_code == 0, result.output
    assert np.load(cut)[..., 0].tolist() == [[1, 0, 0], [4, 5, 0]]
    assert np.load(batched)[0, ..., 0].tolist() == [[1, 0, 0], [4, 5, 0]]
