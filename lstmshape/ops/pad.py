"""Padding a sequence set into a dense ``(N, maxlen, F)`` tensor, as Keras' ``pad_sequences``.

The result equals ``keras.utils.pad_sequences(seqs, maxlen, dtype, padding, truncating, value)``
for the same arguments, with two deliberate differences in the *defaults* only (see README):
the dtype defaults to the input's (Keras casts to int32 and silently truncates floats), and
``padding``/``truncating`` default to ``"post"`` (what cuDNN masking and torch packing expect).

The copy is vectorised: one boolean mask selects the kept timesteps of the flat values, another
the destination slots of the output, and a single masked assignment moves one whole timestep per
element (:func:`~lstmshape.sequences.rows_as_scalars`). No Python loop runs per sequence; the
samples are taken in blocks of a few MB, spread over threads when the tensor is large.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import ArgumentError, InputError, OptionError, Param
from ..io.arrays import check_dtype
from ..sequences import (
    LENGTH_DTYPE,
    SequenceSet,
    Side,
    bounds_within,
    check_side,
    positions_in_sequence,
    real_mask,
    rows_as_scalars,
)

#: Samples are padded in blocks of about this many bytes (input + output): small enough that
#: a block's temporaries stay cheap, large enough that per-block numpy overhead is noise.
#: 8 MB measured fastest on W1 (benchmarks/): 2 MB is 50% slower, 16 MB no faster.
PAD_BLOCK_BYTES = 8 << 20
#: Below this many bytes in all, one thread does the work (thread hand-off costs more).
PARALLEL_MIN_BYTES = 16 << 20
MAXLEN_PATTERN = re.compile(r"^(?:(?P<int>\d+)|max|p(?P<pct>\d+(?:\.\d+)?))$")


@dataclass(frozen=True)
class PadResult:
    """The padded tensor and each sample's true length after truncation (``<= maxlen``)."""

    tensor: np.ndarray
    lengths: np.ndarray


def parse_maxlen(spec: str | int | None) -> int | str:
    """``N`` (a positive integer), ``"max"`` or ``"pNN"`` (a percentile of the lengths);
    ``None`` (Keras' default) is ``"max"``, the longest sequence.

    Example:
        >>> parse_maxlen("p95"), parse_maxlen("100"), parse_maxlen("max"), parse_maxlen(None)
        ('p95', 100, 'max', 'max')
    """
    if spec is None:
        return "max"
    text = str(spec).strip().lower()
    match = MAXLEN_PATTERN.match(text)
    if match is None:
        raise ArgumentError(Param("maxlen", spec), ": expected a positive integer, 'max' or a "
                            "percentile such as 'p95'")
    if match.group("int") is not None:
        value = int(match.group("int"))
        if value < 1:
            raise ArgumentError(Param("maxlen", spec), ": must be at least 1")
        return value
    if match.group("pct") is not None:
        percent = float(match.group("pct"))
        if not 0 < percent <= 100:
            raise ArgumentError(Param("maxlen", spec), ": the percentile must lie in (0, 100]")
    return text


def resolve_maxlen(spec: str | int | None, lengths: np.ndarray) -> int:
    """The maxlen a spec means for these lengths; percentiles round up to a real length.

    Example:
        >>> import numpy as np
        >>> resolve_maxlen("p50", np.array([1, 2, 3, 10])), resolve_maxlen("max", np.array([4, 7]))
        (2, 7)
    """
    parsed = parse_maxlen(spec)
    if isinstance(parsed, int):
        return parsed
    if lengths.size == 0:
        return 0
    if parsed == "max":
        return int(lengths.max())
    return maxlen_from_histogram(parsed, np.bincount(lengths))


def maxlen_from_histogram(spec: str | int | None, histogram: np.ndarray) -> int:
    """The maxlen a spec means for lengths counted as ``histogram`` (``histogram[k]``: how
    many sequences are ``k`` long) -- what :func:`resolve_maxlen` gives for the lengths
    themselves, exactly: the histograms of many shards add up (``--engine dask`` plans one task
    per shard), and numpy's weighted ``inverted_cdf`` equals the unweighted one on the repeated
    lengths.

    Example:
        >>> maxlen_from_histogram("p50", np.bincount([1, 2, 3, 10]))
        2
    """
    parsed = parse_maxlen(spec)
    if isinstance(parsed, int):
        return parsed
    found = np.flatnonzero(histogram)
    if found.size == 0:
        return 0
    if parsed == "max":
        return int(found[-1])
    percent = float(parsed[1:])
    # the smallest length that at least `percent`% of the sequences fit in whole
    try:
        return int(np.percentile(found, percent, method="inverted_cdf",
                                 weights=histogram[found]))
    except TypeError:  # numpy < 2 has no weights: the lengths themselves, repeated
        return int(np.percentile(np.repeat(found, histogram[found]), percent,
                                 method="inverted_cdf"))


def check_value_fits(value: object, dtype: np.dtype, name: str = "value",
                     flag: str | None = None) -> None:
    """Refuse a pad value that is not a number (:class:`ArgumentError`), or one the output
    dtype cannot hold exactly (``nan`` in ints, -1 in uint8). ``name`` is the parameter that
    gave it (``value``, ``fill``); ``flag`` its command-line spelling when not ``--name``
    (``"pad value"`` for one taken from an input's manifest).

    Example:
        >>> check_value_fits("pad", np.dtype("int32"))
        Traceback (most recent call last):
        ...
        lstmshape.errors.ArgumentError: value='pad': expected a number (float('nan') allowed ...
    """
    if not isinstance(value, numbers.Real):
        raise ArgumentError(Param(name, value, flag), ": expected a number (float('nan') "
                            "allowed for float data); lstmshape pads numeric data only")
    number = float(value)
    param = Param(name, value, flag, shown=f"{number:g}")
    if dtype.kind == "f":
        if math.isfinite(number) and abs(number) > float(np.finfo(dtype).max):
            raise OptionError(param, f" does not fit dtype {dtype}")
        return
    if not math.isfinite(number) or not number.is_integer():
        raise OptionError(param, f" cannot be stored in {dtype} data; use a whole number or a "
                          f"float ", Param("dtype"))
    if dtype.kind == "b":
        if number not in (0, 1):
            raise OptionError(param, " cannot be stored in bool data (0 or 1)")
        return
    info = np.iinfo(dtype)
    if not info.min <= number <= info.max:
        raise OptionError(param, f" is outside the range of {dtype} ({info.min}..{info.max})")


def output_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """The ``dtype=`` argument as a numpy dtype lstmshape writes (bool, ints, float16/32/64).

    Example:
        >>> output_dtype("float32")
        dtype('float32')
        >>> output_dtype(object)
        Traceback (most recent call last):
        ...
        lstmshape.errors.ArgumentError: dtype=<class 'object'>: expected bool, int8..int64, ...
    """
    try:
        result = np.dtype(dtype)
        check_dtype(result, "dtype")
    except (TypeError, InputError):
        raise ArgumentError(Param("dtype", dtype), ": expected bool, int8..int64, uint8..uint64, "
                            "float16, float32 or float64") from None
    return result


def lossy_cast_reason(values: np.ndarray, target: np.dtype) -> str | None:
    """Why casting ``values`` to ``target`` would change them, or None if it is exact enough.

    Float precision loss (float64 to float32) is accepted; what is refused is a value that
    cannot survive at all: a fraction or NaN cast to an integer, a value out of the target's
    range, anything but 0/1 cast to bool.

    Example:
        >>> import numpy as np
        >>> lossy_cast_reason(np.array([1.5]), np.dtype("int32"))
        'non-integral value 1.5'
        >>> lossy_cast_reason(np.array([300]), np.dtype("uint8"))
        'value 300 outside uint8 range 0..255'
    """
    if values.size == 0 or np.can_cast(values.dtype, target, casting="safe"):
        return None
    if target.kind == "f":
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        limit = float(np.finfo(target).max)
        if finite.size and float(np.max(np.abs(finite))) > limit:
            worst = finite.reshape(-1)[int(np.argmax(np.abs(finite)))]
            return f"value {worst} overflows {target} (max {limit:g})"
        return None
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            return f"non-finite value {values[bad].reshape(-1)[0]}"
        fraction = values != np.round(values)
        if fraction.any():
            return f"non-integral value {values[fraction].reshape(-1)[0]}"
    low, high = values.min(), values.max()
    if target.kind == "b":
        if low < 0 or high > 1:
            return f"value {high if high > 1 else low} is not 0 or 1 (bool)"
        return None
    info = np.iinfo(target)
    for extreme in (low, high):
        # compare as Python numbers: in float64, 2.0**63 == int64's max + 1 would pass
        exact = int(extreme) if float(extreme).is_integer() else float(extreme)
        if not info.min <= exact <= info.max:
            return f"value {extreme} outside {target} range {info.min}..{info.max}"
    return None


def pad(seqs: SequenceSet | list[npt.ArrayLike], maxlen: int | str | None = None,
        padding: Side = "post", truncating: Side = "post", value: float = 0.0,
        dtype: npt.DTypeLike | None = None, allow_lossy: bool = False) -> PadResult:
    """Pad (and truncate) sequences to one dense ``(N, maxlen, F)`` tensor.

    ``maxlen``: an int, ``None`` or ``"max"`` (the longest sequence, Keras' default), or a
    percentile of the lengths such as ``"p95"``. Arguments Keras refuses are refused too, with a
    :class:`~lstmshape.errors.ArgumentError` (a ``ValueError``) naming the parameter.

    Example:
        >>> result = pad([[1, 2, 3], [4]], maxlen=2, padding="pre", truncating="pre")
        >>> result.tensor[:, :, 0].tolist(), result.lengths.tolist()
        ([[2, 3], [0, 4]], [2, 1])
        >>> pad([[1, 2, 3], [4]], padding="middle")
        Traceback (most recent call last):
        ...
        lstmshape.errors.ArgumentError: padding='middle': expected 'pre' or 'post'
    """
    check_side(padding, "padding")
    check_side(truncating, "truncating")
    parse_maxlen(maxlen)  # a bad maxlen is named before the sequences are looked at
    target = output_dtype(dtype) if dtype is not None else None
    if not isinstance(seqs, SequenceSet):
        seqs = SequenceSet.from_sequences(seqs)
    length = resolve_maxlen(maxlen, seqs.lengths)
    target = target if target is not None else seqs.dtype
    check_value_fits(value, target)
    count, features = seqs.n_samples, seqs.n_features
    if value == 0:
        tensor = np.zeros((count, length, features), dtype=target)  # calloc: pages come free
    else:
        tensor = np.full((count, length, features), value, dtype=target)
    offsets = seqs.offsets

    def fill(start: int, stop: int) -> None:
        values = seqs.values[offsets[start]:offsets[stop]]
        kept_values, kept = truncated_values(values, seqs.lengths[start:stop], length,
                                             truncating)
        if target != seqs.dtype:
            reason = None if allow_lossy else lossy_cast_reason(kept_values, target)
            if reason is not None:
                raise InputError(f"casting {seqs.dtype} to {target} would lose data ({reason}); "
                                 f"pass ", Param("allow_lossy", True), " to cast anyway")
            kept_values = kept_values.astype(target)
        place(tensor[start:stop], kept_values, kept, padding)

    row_bytes = max(features * seqs.dtype.itemsize, 1)
    run_in_blocks(fill, seqs.lengths, row_bytes, length * row_bytes)
    return PadResult(tensor, np.minimum(seqs.lengths, length).astype(LENGTH_DTYPE))


def run_in_blocks(work: Callable[[int, int], None], lengths: np.ndarray, row_bytes: int,
                  extra_per_sample: int) -> None:
    """Call ``work(start, stop)`` over blocks of samples, on a few threads if the work is large.

    numpy's masked copies release the GIL, so the cores share the copying, and a block's
    temporaries (kept timesteps, masks) stay small: about 2.5x faster than one whole-array
    pass on two cores (see benchmarks/).
    """
    cost = lengths * row_bytes + extra_per_sample
    total = int(cost.sum())
    bounds = bounds_within(cost, PAD_BLOCK_BYTES)
    if total < PARALLEL_MIN_BYTES or len(bounds) < 2:
        for start, stop in bounds:
            work(start, stop)
        return
    for future in [worker_pool().submit(work, start, stop) for start, stop in bounds]:
        future.result()


_POOL: ThreadPoolExecutor | None = None


def worker_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                                   thread_name_prefix="lstmshape-pad")
    return _POOL


def truncated_values(values: np.ndarray, lengths: np.ndarray, maxlen: int,
                     side: Side) -> tuple[np.ndarray, np.ndarray]:
    """The timesteps kept when every sequence is cut to ``maxlen``, and the new lengths.

    ``side="post"`` keeps each sequence's first ``maxlen`` steps, ``"pre"`` its last ones.
    Returns ``values`` itself (no copy) when nothing is cut.
    """
    kept = np.minimum(lengths, maxlen).astype(LENGTH_DTYPE)
    if check_side(side) and (lengths.size == 0 or int(lengths.max()) <= maxlen):
        return values, kept
    position = positions_in_sequence(lengths)
    if side == "post":
        keep = position < np.repeat(kept, lengths)
    else:
        keep = position >= np.repeat(lengths - kept, lengths)
    return rows_as_scalars(values)[keep].view(values.dtype).reshape(-1, values.shape[1]), kept


def fills_alike(stored: float | None, value: float, dtype: np.dtype) -> bool:
    """Whether padding ``dtype`` data with ``value`` writes the very bytes a stored tensor's pad
    steps hold (``stored``, its recorded pad value; None: not known). When it does, a padded
    tensor's rows can be copied as stored instead of unpadded and padded again.

    Example:
        >>> fills_alike(float("nan"), float("nan"), np.dtype("float32"))
        True
        >>> fills_alike(0.0, -1.0, np.dtype("int64")), fills_alike(None, 0.0, np.dtype("int8"))
        (False, False)
    """
    if stored is None:
        return False
    try:
        return np.array(stored, dtype).tobytes() == np.array(value, dtype).tobytes()
    except (ValueError, OverflowError):  # nan or out of range for an integer dtype
        return False


def pads_as_stored(stored: float | None, value: float, dtype: np.dtype, lengths: np.ndarray,
                   width: int) -> bool:
    """Whether stored rows whose pad steps hold ``stored`` (see :func:`fills_alike`) already
    hold what padding sequences of ``lengths`` to ``width`` steps with ``value`` would write:
    the values fill alike, or no sequence leaves a pad step in ``width``.

    Example:
        >>> pads_as_stored(None, 0.0, np.dtype("float32"), np.array([3, 4]), 3)
        True
        >>> pads_as_stored(0.0, -1.0, np.dtype("float32"), np.array([2, 4]), 3)
        False
    """
    return fills_alike(stored, value, dtype) or bool(np.all(lengths >= width))


def place(tensor: np.ndarray, values: np.ndarray, lengths: np.ndarray,
          side: Side) -> None:
    """Scatter sequences of ``lengths <= T`` into an ``(N, T, F)`` tensor already holding the
    pad value: at the start of each row (``side="post"``) or at its end (``"pre"``)."""
    count, maxlen, features = tensor.shape
    if values.shape[0] == 0 or features == 0:
        return
    if values.shape[0] == count * maxlen:  # every sequence exactly maxlen long: one copy
        tensor.reshape(-1, features)[...] = values
        return
    slots = real_mask(lengths, maxlen, side)
    rows_as_scalars(tensor.reshape(-1, features))[slots.reshape(-1)] = rows_as_scalars(values)
