"""The Python API equals Keras for the same arguments, and refuses what Keras refuses.

The cases of Keras' own ``sequence_utils_test.py`` and of PyTorch's ``test_nn.py``
(``test_pad_sequence``), run against ``lstmshape.pad`` and the other functions that take a
side; errors name Python parameters (``maxlen=``), the CLI names flags (``--maxlen``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lstmshape
from lstmshape.errors import ArgumentError, InputError, LstmshapeError, OptionError
from lstmshape.ops.add_feature import add_feature
from lstmshape.ops.batch import batch, pad_batch
from lstmshape.ops.pad import pad
from lstmshape.ops.truncate import split, split_lengths, truncate
from lstmshape.sequences import SequenceSet, real_mask

KERAS_DEFAULTS = {"padding": "pre", "truncating": "pre"}  # ours default to post/post


def rows(result: Any) -> list[Any]:
    """The padded tensor without its feature axis when it has one feature, as Keras gives it."""
    tensor = result.tensor
    return (tensor[:, :, 0] if tensor.shape[2] == 1 else tensor).tolist()


# -- Keras' own test cases (keras/src/utils/sequence_utils_test.py) -------------------------------


def test_keras_pad_sequences_cases() -> None:
    a = [[1], [1, 2], [1, 2, 3]]
    args = {**KERAS_DEFAULTS, "dtype": "int32"}
    assert rows(pad(a, maxlen=3, **{**args, "padding": "pre"})) == [[0, 0, 1], [0, 1, 2],
                                                                      [1, 2, 3]]
    assert rows(pad(a, maxlen=3, **{**args, "padding": "post"})) == [[1, 0, 0], [1, 2, 0],
                                                                       [1, 2, 3]]
    assert rows(pad(a, maxlen=2, **{**args, "truncating": "pre"})) == [[0, 1], [1, 2], [2, 3]]
    assert rows(pad(a, maxlen=2, **{**args, "truncating": "post"})) == [[0, 1], [1, 2], [1, 2]]
    assert rows(pad(a, maxlen=3, value=1, **args)) == [[1, 1, 1], [1, 1, 2], [1, 2, 3]]
    assert pad(a, maxlen=3, **args).tensor.dtype == np.int32


def test_keras_pad_sequences_float_cases() -> None:
    a = [[1.2], [1.2, 2.3], [1.2, 2.3, 3.4]]
    args = {**KERAS_DEFAULTS, "dtype": "float32"}

    def close(result: Any, expected: list[list[float]]) -> None:
        np.testing.assert_allclose(rows(result), np.array(expected, np.float32))

    close(pad(a, maxlen=3, **args), [[0, 0, 1.2], [0, 1.2, 2.3], [1.2, 2.3, 3.4]])
    close(pad(a, maxlen=3, **{**args, "padding": "post"}),
          [[1.2, 0, 0], [1.2, 2.3, 0], [1.2, 2.3, 3.4]])
    close(pad(a, maxlen=2, **args), [[0, 1.2], [1.2, 2.3], [2.3, 3.4]])
    close(pad(a, maxlen=2, **{**args, "truncating": "post"}), [[0, 1.2], [1.2, 2.3], [1.2, 2.3]])
    close(pad(a, maxlen=3, value=1, **args), [[1, 1, 1.2], [1, 1.2, 2.3], [1.2, 2.3, 3.4]])


def test_keras_pad_sequences_vector_cases() -> None:
    a = [[[1, 1]], [[2, 1], [2, 2]], [[3, 1], [3, 2], [3, 3]]]
    args = {**KERAS_DEFAULTS, "dtype": "int32"}
    assert rows(pad(a, maxlen=3, **args)) == [[[0, 0], [0, 0], [1, 1]],
                                              [[0, 0], [2, 1], [2, 2]],
                                              [[3, 1], [3, 2], [3, 3]]]
    assert rows(pad(a, maxlen=3, **{**args, "padding": "post"})) == [[[1, 1], [0, 0], [0, 0]],
                                                                       [[2, 1], [2, 2], [0, 0]],
                                                                       [[3, 1], [3, 2], [3, 3]]]
    assert rows(pad(a, maxlen=2, **args)) == [[[0, 0], [1, 1]], [[2, 1], [2, 2]],
                                              [[3, 2], [3, 3]]]
    assert rows(pad(a, maxlen=2, **{**args, "truncating": "post"})) == [
        [[0, 0], [1, 1]], [[2, 1], [2, 2]], [[3, 1], [3, 2]]]
    assert rows(pad(a, maxlen=3, value=1, **args)) == [[[1, 1], [1, 1], [1, 1]],
                                                       [[1, 1], [2, 1], [2, 2]],
                                                       [[3, 1], [3, 2], [3, 3]]]


def test_keras_pad_sequences_str_cases_are_refused_with_our_errors() -> None:
    """Keras pads strings with dtype=object; lstmshape pads numbers only and says so. Keras'
    own ValueError case (value='pad' with an int dtype) is a ValueError here too."""
    a = [["1"], ["1", "2"], ["1", "2", "3"]]
    with pytest.raises(InputError, match="unicode string"):
        pad(a, maxlen=3, **KERAS_DEFAULTS)
    with pytest.raises(ArgumentError, match=r"^dtype=") as refused:
        pad(a, maxlen=3, value="pad", dtype=object)
    assert isinstance(refused.value, ValueError)
    with pytest.raises(ValueError, match=r"^value='pad': expected a number"):
        pad([[1], [1, 2]], maxlen=2, truncating="post", value="pad")
    with pytest.raises(InputError, match="object"):
        pad([np.array([1, None], dtype=object)])


# -- PyTorch's test_nn.py test_pad_sequence --------------------------------------------------------


def test_torch_pad_sequence_cases() -> None:
    a, b, c = [1, 2, 3], [4, 5], [6]
    # torch pads on the right: our "post"; batch_first=True is our layout
    assert rows(pad([b, a, c])) == [[4, 5, 0], [1, 2, 3], [6, 0, 0]]
    assert rows(pad([b, a, c], value=1)) == [[4, 5, 1], [1, 2, 3], [6, 1, 1]]
    assert rows(pad([a, b, c])) == [[1, 2, 3], [4, 5, 0], [6, 0, 0]]
    # padding_side="left" (torch >= 2.5) is our "pre"
    assert rows(pad([b, a, c], padding="pre")) == [[0, 4, 5], [1, 2, 3], [0, 0, 6]]
    # "more dimensions", num_dim 0: sequences (i * i, 5) padded to 81 timesteps
    generator = random.Random(0)
    sequences = [np.random.default_rng(i).random((i * i, 5)) for i in range(1, 10)]
    generator.shuffle(sequences)
    expected = np.stack([np.concatenate([s, np.zeros((81 - len(s), 5))]) for s in sequences])
    np.testing.assert_array_equal(pad(sequences).tensor, expected)
    # num_dim >= 1, (len, 5, 4) per sequence: more than (timesteps, features), refused
    with pytest.raises(InputError, match=r"expected \(timesteps,\) or \(timesteps, features\)"):
        pad([np.zeros((n, 5, 4)) for n in (1, 4)])


def test_torch_pad_sequence_equals_post_padding() -> None:
    import torch
    rnn = torch.nn.utils.rnn
    seqs = [torch.tensor([4, 5]), torch.tensor([1, 2, 3]), torch.tensor([6]),
            torch.tensor([], dtype=torch.int64)]
    arrays = [s.numpy() for s in seqs]
    for side, ours in (("right", "post"), ("left", "pre")):
        expected = rnn.pad_sequence(seqs, batch_first=True, padding_value=-1,
                                    padding_side=side).numpy()
        np.testing.assert_array_equal(rows(pad(arrays, padding=ours, value=-1)), expected)
        with pytest.raises(ArgumentError, match=f"PyTorch's '{side}' is '{ours}'"):
            pad(arrays, padding=side)  # type: ignore[arg-type]


# -- every function that takes a side --------------------------------------------------------------

SEQS = [[1, 2, 3], [4]]
SIDE_CALLS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "pad padding": ("padding", lambda side: pad(SEQS, padding=side)),
    "pad truncating": ("truncating", lambda side: pad(SEQS, maxlen=2, truncating=side)),
    "truncate": ("side", lambda side: truncate(SEQS, 2, side=side)),
    "split": ("side", lambda side: split(SEQS, 2, side=side)),
    "split_lengths": ("side", lambda side: split_lengths(np.array([3, 1]), 2, side=side)),
    "batch": ("padding", lambda side: batch(SEQS, 2, padding=side)),
    "pad_batch": ("padding", lambda side: pad_batch(SequenceSet.from_sequences(SEQS), 3,
                                                    padding=side)),
    "add_feature padding": ("padding", lambda side: add_feature(np.zeros((2, 3)),
                                                                np.ones((2, 2)), padding=side)),
    "add_feature side": ("side", lambda side: add_feature(np.zeros((2, 3)), np.ones((2, 3)),
                                                          lengths=[3, 1], side=side)),
    "from_dense": ("side", lambda side: SequenceSet.from_dense(np.zeros((2, 3)), [3, 1], side)),
    "real_mask": ("side", lambda side: real_mask(np.array([1, 2]), 3, side)),
}


@pytest.mark.parametrize("call", sorted(SIDE_CALLS))
@pytest.mark.parametrize("side", ["middle", "right", "left", "PRE", None, 0])
def test_every_side_parameter_refuses_other_values(call: str, side: Any) -> None:
    name, function = SIDE_CALLS[call]
    with pytest.raises(ArgumentError) as refused:
        function(side)
    message = str(refused.value)
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, LstmshapeError)
    assert message.startswith(f"{name}={side!r}: expected 'pre' or 'post'"), message
    assert "--" not in message and refused.value.exit_code == 2


@pytest.mark.parametrize("call", sorted(SIDE_CALLS))
def test_every_side_parameter_takes_pre_and_post(call: str) -> None:
    _, function = SIDE_CALLS[call]
    function("pre")
    function("post")


# -- maxlen=None, pad values, dtypes ---------------------------------------------------------------


def test_maxlen_none_is_the_longest_sequence() -> None:
    assert pad(SEQS, maxlen=None).tensor.shape == (2, 3, 1)
    assert rows(pad(SEQS, maxlen=None, padding="pre")) == [[1, 2, 3], [0, 0, 4]]
    assert pad(SEQS).tensor.shape == (2, 3, 1)  # None is the default, as in Keras
    assert lstmshape.pad(SEQS, maxlen="max").tensor.shape == (2, 3, 1)


@pytest.mark.parametrize("maxlen", [0, -1, "abc", 2.5, True, "p0"])
def test_bad_maxlen_names_the_parameter(maxlen: Any) -> None:
    with pytest.raises(ArgumentError, match=r"^maxlen=") as refused:
        pad(SEQS, maxlen=maxlen)
    assert "--" not in str(refused.value) and isinstance(refused.value, ValueError)


@pytest.mark.parametrize("value", ["pad", "0", None, [0]])
def test_a_pad_value_that_is_not_a_number_is_refused(value: Any) -> None:
    for call in (lambda: pad(SEQS, value=value), lambda: batch(SEQS, 2, value=value),
                 lambda: add_feature(np.zeros((2, 3)), np.ones((2, 2)), fill=value)):
        with pytest.raises(ArgumentError, match=r"^(value|fill)=.*expected a number"):
            call()


def test_empty_sequence_dtype_does_not_count(keras: Any) -> None:
    seqs = [np.array([1, 2, 3], np.int64), np.array([]), np.array([7], np.int64)]
    assert np.array([]).dtype == np.float64  # what an empty list becomes
    result = pad(seqs, maxlen=None, **KERAS_DEFAULTS)
    assert result.tensor.dtype == np.int64
    expected = keras.utils.pad_sequences(seqs, dtype="int64")
    np.testing.assert_array_equal(result.tensor[:, :, 0], expected)
    assert SequenceSet.from_sequences([[1.5], []]).dtype == np.float64
    assert SequenceSet.from_sequences([np.zeros((2, 2), np.int16), []]).dtype == np.int16


def test_empty_sequence_dtype_does_not_count_in_the_cli(invoke: Any, keras: Any,
                                                        tmp_path: Path) -> None:
    seqs = [np.array([1, 2, 3], np.int64), np.array([]), np.array([7, 8], np.int64)]
    src = tmp_path / "seqs.npz"
    np.savez(src, *seqs)
    result = invoke("pad", src, "--padding", "pre", "--truncating", "pre", "-o",
                    tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "x.npy")
    assert x.dtype == np.int64
    np.testing.assert_array_equal(x[:, :, 0], keras.utils.pad_sequences(seqs, dtype="int64"))
    # the same in an .h5 group of sequences
    import h5py

    with h5py.File(tmp_path / "seqs.h5", "w") as h5:
        for index, seq in enumerate(seqs):
            h5[f"s{index}"] = seq
    result = invoke("pad", tmp_path / "seqs.h5", "--padding", "pre", "-o", tmp_path / "h.npy")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "h.npy"), x)
    # two non-empty sequences of different dtypes still disagree
    np.savez(src, np.array([1, 2], np.int64), np.array([0.5]))
    refused = invoke("pad", src, "-o", tmp_path / "x.npy")
    assert refused.exit_code == 1 and "different dtypes" in refused.output


# -- Python errors name parameters, the CLI names flags --------------------------------------------

PYTHON_ERRORS: dict[str, tuple[Callable[[], Any], str, str]] = {
    "lossy cast": (lambda: pad([[1.5]], dtype="int16"), "pass allow_lossy=True to cast",
                   "pass --allow-lossy to cast"),
    "value range": (lambda: pad([[1]], value=300, dtype="uint8"), "value=300 is outside",
                    "--value 300 is outside"),
    "nan in ints": (lambda: pad([[1]], value=float("nan")), "use a whole number or a float dtype",
                    "--value nan cannot be stored in int64 data; use a whole number or a "
                    "float --dtype"),
    "stateful shuffle": (lambda: batch(SEQS, 2, stateful=True, shuffle=True),
                         "stateful=True cannot be combined with shuffle=True",
                         "--stateful cannot be combined with --shuffle"),
    "stateful bucket": (lambda: batch(SEQS, 2, stateful=True, bucket=True),
                        "stateful=True cannot be combined with bucket=True",
                        "--stateful cannot be combined with --bucket-by-length"),
    "stateful rest": (lambda: batch([[1], [2], [3]], 2, stateful=True),
                      "divide by size: 3 samples, batch size 2 leaves 1; pass remainder='drop'",
                      "divide by --size: 3 samples, batch size 2 leaves 1; pass --remainder "
                      "drop"),
    "drop all": (lambda: batch(SEQS, 3, remainder="drop"),
                 "remainder='drop' with 2 samples and size=3 drops every sample; use a smaller "
                 "size", "--remainder drop with 2 samples and --size 3 drops every sample; use "
                 "a smaller --size"),
    "size": (lambda: batch(SEQS, 0), "size=0: expected a positive integer", "--size 0"),
    "remainder": (lambda: batch(SEQS, 2, remainder="rest"),  # type: ignore[arg-type]
                  "remainder='rest': expected one of 'keep', 'drop', 'pad'", "--remainder 'rest'"),
    "window": (lambda: lstmshape.window(np.arange(5), 0), "timesteps=0: expected an integer",
               "--timesteps 0"),
    "target": (lambda: lstmshape.window(np.arange(5), 2, target=[3]),
               "target=3: no such column", "--target 3: no such column"),
    "static": (lambda: add_feature(np.zeros((2, 3)), np.ones(2)),
               "a 1-D extra has one value per sample; pass static=True", "pass --static"),
    "truncate": (lambda: truncate(SEQS, 0), "maxlen=0: expected a positive integer",
                 "--maxlen 0"),
}


@pytest.mark.parametrize("case", sorted(PYTHON_ERRORS))
def test_python_errors_name_parameters_and_the_cli_message_flags(case: str) -> None:
    call, python_text, cli_text = PYTHON_ERRORS[case]
    with pytest.raises(OptionError if case not in ("lossy cast", "static")
                       else InputError) as refused:
        call()
    assert python_text in str(refused.value) and "--" not in str(refused.value)
    assert cli_text in refused.value.cli_message


# -- the property: equal to keras.utils.pad_sequences for equal arguments --------------------------


@settings(max_examples=150, deadline=None)
@given(data=st.data(), lengths=st.lists(st.integers(0, 9), min_size=1, max_size=10),
       maxlen=st.none() | st.integers(1, 12), padding=st.sampled_from(["pre", "post"]),
       truncating=st.sampled_from(["pre", "post"]), features=st.sampled_from([None, 2]),
       dtype=st.sampled_from(["int32", "int64", "float32", "float64", "uint8"]))
def test_pad_equals_keras_pad_sequences(keras: Any, data: Any, lengths: list[int],
                                        maxlen: int | None, padding: str, truncating: str,
                                        features: int | None, dtype: str) -> None:
    rng = np.random.default_rng(sum(lengths) * 7 + len(lengths))
    shape = [(n,) if features is None else (n, features) for n in lengths]
    # empty sequences come as [] (float64, as np.savez writes them); the others as int64
    seqs = [rng.integers(0, 100, size=s) if s[0] else np.array([]) for s in shape]
    if features is not None:
        seqs = [s if len(s) else np.zeros((0, features)) for s in seqs]
    value: float = (data.draw(st.integers(0, 200)) if dtype[0] in "iu"
                    else data.draw(st.floats(-1e6, 1e6) | st.just(float("nan"))))
    kwargs = {"maxlen": maxlen, "padding": padding, "truncating": truncating, "value": value,
              "dtype": dtype}
    expected = np.asarray(keras.utils.pad_sequences(seqs, **kwargs))
    ours = pad(seqs, **kwargs).tensor  # type: ignore[arg-type]
    if features and not any(lengths):  # Keras takes the feature axis from a non-empty one
        expected = np.broadcast_to(expected[..., None], ours.shape)  # all pad values
    assert ours.dtype == expected.dtype
    np.testing.assert_array_equal(ours if features else ours[:, :, 0], expected)


@pytest.mark.parametrize("command", ["pad", "truncate", "batch", "add_feature"])
def test_file_level_functions_refuse_other_sides(tmp_path: Path, command: str) -> None:
    """The file-level API (``lstmshape.commands.*``) checks its sides before opening anything."""
    from lstmshape.commands.add_feature import add_feature_file
    from lstmshape.commands.batch import batch_file
    from lstmshape.commands.pad import pad_file
    from lstmshape.commands.truncate import truncate_file
    from lstmshape.job import IOOptions

    src = str(tmp_path / "missing.npy")  # never opened: the side is refused first
    options = IOOptions(str(tmp_path / "out.npz"))
    calls: dict[str, tuple[str, Callable[[], Any]]] = {
        "pad": ("truncating", lambda: pad_file(src, options, truncating="right")),  # type: ignore[arg-type]
        "truncate": ("truncating", lambda: truncate_file(src, options, maxlen=2,
                                                          truncating="right")),  # type: ignore[arg-type]
        "batch": ("padding", lambda: batch_file(src, options, size=2, padding="right")),  # type: ignore[arg-type]
        "add_feature": ("padding", lambda: add_feature_file(src, [src], options,
                                                            padding="right")),  # type: ignore[arg-type]
    }
    name, call = calls[command]
    with pytest.raises(ArgumentError, match=f"^{name}='right': expected 'pre' or 'post'"):
        call()
    assert list(tmp_path.iterdir()) == []
