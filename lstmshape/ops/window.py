"""Cutting series into overlapping windows, as ``keras.utils.timeseries_dataset_from_array``.

A series of ``n`` timesteps gives the windows that start at ``0, stride, 2 * stride, ...`` while
the window -- ``timesteps`` rows taken every ``sampling_rate`` rows -- fits, exactly the starts
Keras computes: ``np.arange(0, n - (timesteps - 1) * sampling_rate, stride)``. With a target
``horizon`` H, window ``i`` is labelled with the row H steps after its last row, and a window whose
label would lie past the end is not emitted (Keras does the same when handed the shifted targets).

On a set of series (a :class:`~lstmshape.sequences.SequenceSet`), each sequence is windowed on its
own: no window crosses from one sequence into the next. The windows are read from a strided view
of the flat values (one fancy-index gather for all of them), never built in a Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import ArgumentError, OptionError, Param
from ..sequences import LENGTH_DTYPE, SequenceSet, positions_in_sequence


@dataclass(frozen=True)
class WindowSpec:
    """How windows are cut: length, stride, sampling rate, and the target horizon (0: none)."""

    timesteps: int
    stride: int = 1
    sampling_rate: int = 1
    horizon: int = 0

    def __post_init__(self) -> None:
        for name in ("timesteps", "stride", "sampling_rate", "horizon"):
            value = getattr(self, name)
            least = 0 if name == "horizon" else 1
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
                raise ArgumentError(Param(name, value), f": expected an integer of at least "
                                    f"{least}")

    @property
    def span(self) -> int:
        """Rows from a window's first row to its last, both included."""
        return (self.timesteps - 1) * self.sampling_rate + 1

    @property
    def reach(self) -> int:
        """Rows a window needs from its start: its span, plus the horizon of its target."""
        return self.span + self.horizon

    def counts(self, lengths: np.ndarray) -> np.ndarray:
        """How many windows each series of ``lengths`` rows gives.

        Example:
            >>> import numpy as np
            >>> WindowSpec(3, stride=2).counts(np.array([2, 3, 6])).tolist()
            [0, 1, 2]
        """
        room = np.asarray(lengths, dtype=LENGTH_DTYPE) - self.reach + 1
        counts: np.ndarray = np.where(room > 0, -(-room // self.stride), 0).astype(LENGTH_DTYPE)
        return counts


@dataclass(frozen=True)
class WindowResult:
    """Windows ``x (W, timesteps, F)``, targets ``y (W, k)`` or None, and where each came from."""

    x: np.ndarray
    y: np.ndarray | None
    source_index: np.ndarray
    start: np.ndarray


def window_starts(lengths: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """Every window's first row in the flat values, and the index of its series.

    Example:
        >>> import numpy as np
        >>> rows, series = window_starts(np.array([4, 5]), WindowSpec(2, stride=2))
        >>> rows.tolist(), series.tolist()
        ([0, 2, 4, 6], [0, 0, 1, 1])
    """
    lengths = np.asarray(lengths, dtype=LENGTH_DTYPE)
    counts = spec.counts(lengths)
    offsets = np.cumsum(lengths) - lengths
    series = np.repeat(np.arange(lengths.shape[0], dtype=np.int64), counts)
    rows = np.repeat(offsets, counts) + spec.stride * positions_in_sequence(counts)
    return rows.astype(np.int64), series


def cut(values: np.ndarray, starts: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """The windows of ``values (rows, F)`` that begin at ``starts``, as ``(W, timesteps, F)``.

    Every start must leave room for a whole window (``start + span <= rows``).

    Example:
        >>> import numpy as np
        >>> spec = WindowSpec(2, sampling_rate=2)
        >>> cut(np.arange(6).reshape(6, 1), np.array([0, 3]), spec)[..., 0].tolist()
        [[0, 2], [3, 5]]
    """
    features = values.shape[1]
    if starts.size == 0 or values.shape[0] < spec.span:
        return np.zeros((0, spec.timesteps, features), dtype=values.dtype)
    # (rows - span + 1, F, span) view -> every sampling_rate-th step -> (starts, timesteps, F)
    view = np.lib.stride_tricks.sliding_window_view(values, spec.span, axis=0)
    view = view[:, :, ::spec.sampling_rate].transpose(0, 2, 1)
    return np.ascontiguousarray(view[starts])


def target_rows(values: np.ndarray, starts: np.ndarray, spec: WindowSpec,
                columns: Sequence[int]) -> np.ndarray:
    """``values[start + span - 1 + horizon, columns]`` for each window: ``(W, len(columns))``."""
    rows = starts + (spec.span - 1 + spec.horizon)
    return np.ascontiguousarray(values[rows][:, list(columns)])


def window(data: npt.ArrayLike | SequenceSet, timesteps: int, stride: int = 1,
           sampling_rate: int = 1, target: Sequence[int] | None = None,
           horizon: int = 1) -> WindowResult:
    """Cut a series ``(n,)``/``(n, F)`` -- or every sequence of a set -- into windows.

    ``x`` equals what ``keras.utils.timeseries_dataset_from_array(data, None, timesteps,
    stride, sampling_rate, batch_size=None)`` yields. With ``target`` (column indices), ``y[i]``
    holds those columns ``horizon`` rows after window i's last row, and windows whose target
    would fall outside the series are left out.

    Example:
        >>> import numpy as np
        >>> result = window(np.arange(6), timesteps=3, target=[0], horizon=1)
        >>> result.x[..., 0].tolist(), result.y.tolist()
        ([[0, 1, 2], [1, 2, 3], [2, 3, 4]], [[3], [4], [5]])
    """
    if isinstance(data, SequenceSet):
        seqs = data
    else:
        array = np.asarray(data)
        if array.ndim not in (1, 2):
            raise OptionError(f"a series must be 1-D (timesteps,) or 2-D (timesteps, features), "
                              f"found shape {array.shape}; pass a SequenceSet for several")
        rows = array.reshape(array.shape[0], 1 if array.ndim == 1 else array.shape[1])
        seqs = SequenceSet(rows, np.array([rows.shape[0]], dtype=LENGTH_DTYPE))
    columns = None if target is None else resolve_columns(target, seqs.n_features)
    spec = WindowSpec(timesteps, stride, sampling_rate, horizon if columns is not None else 0)
    starts, series = window_starts(seqs.lengths, spec)
    x = cut(seqs.values, starts, spec)
    y = None if columns is None else target_rows(seqs.values, starts, spec, columns)
    return WindowResult(x, y, series, starts - seqs.offsets[:-1][series])


def resolve_columns(spec: Sequence[int | str] | str, n_features: int,
                    names: Sequence[str] | None = None) -> list[int]:
    """Target columns from indices (negative allowed) or feature names, e.g. ``"0,temp"``.

    Example:
        >>> resolve_columns("temp,-1", 3, ["f0", "temp", "f2"])
        [1, 2]
    """
    items: list[int | str] = ([p.strip() for p in spec.split(",")] if isinstance(spec, str)
                              else list(spec))
    if not items or any(item == "" for item in items):
        raise OptionError(Param("target", spec), ": expected column indices or feature names "
                          "separated by commas")
    known = list(names) if names is not None else [f"f{i}" for i in range(n_features)]
    columns: list[int] = []
    for item in items:
        text = str(item)
        if text.lstrip("-").isdigit():
            index = int(text)
            if not -n_features <= index < n_features:
                raise OptionError(Param("target", item, shown=text), f": no such column; the "
                                  f"data has {n_features} features (0..{n_features - 1})")
            columns.append(index % n_features)
        elif text in known:
            columns.append(known.index(text))
        else:
            raise OptionError(Param("target", item, shown=repr(text)), ": no feature of that "
                              f"name; features are {', '.join(known)}")
    return columns
