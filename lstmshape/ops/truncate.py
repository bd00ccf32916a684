"""Truncating sequences to at most ``maxlen`` timesteps, or splitting the long ones.

``truncate`` keeps each sequence's first (``side="post"``) or last (``"pre"``) ``maxlen`` steps,
as ``pad_sequences`` truncates, but without padding: a ragged set stays ragged. ``split`` loses
nothing: a sequence of ``L`` steps becomes ``ceil(L / maxlen)`` consecutive pieces, and the
returned ``source_index`` says which input sample each piece came from.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..errors import ArgumentError, Param
from ..sequences import LENGTH_DTYPE, SequenceSet, Side, check_side
from .pad import truncated_values


def truncate(seqs: SequenceSet | list[npt.ArrayLike], maxlen: int,
             side: Side = "post") -> SequenceSet:
    """Cut every sequence to at most ``maxlen`` timesteps.

    Example:
        >>> cut = truncate([[1, 2, 3], [4]], 2, side="pre")
        >>> cut.values.ravel().tolist(), cut.lengths.tolist()
        ([2, 3, 4], [2, 1])
    """
    check_side(side)
    check_maxlen(maxlen)
    seqs = as_sequence_set(seqs)
    values, lengths = truncated_values(seqs.values, seqs.lengths, maxlen, side)
    return SequenceSet(values, lengths)


def cut_padded(tensor: np.ndarray, width: int, side: Side) -> np.ndarray:
    """A tensor padded on ``side``, truncated on that same side to ``width`` timesteps: a column
    slice (a view). Every row's real steps sit against the side away from the padding, so
    keeping the ``width`` columns there keeps each sequence's last (``"pre"``) or first
    (``"post"``) ``width`` steps, and its padding, exactly as :func:`truncate` and a pad on that
    side would.

    Example:
        >>> tensor = np.array([[0, 1, 2], [0, 0, 3]])  # padded "pre"
        >>> cut_padded(tensor, 2, "pre").tolist()
        [[1, 2], [0, 3]]
    """
    check_side(side)
    timesteps = tensor.shape[1]
    return tensor[:, timesteps - width:] if side == "pre" else tensor[:, :width]


def split(seqs: SequenceSet | list[npt.ArrayLike], maxlen: int,
          side: Side = "post") -> tuple[SequenceSet, np.ndarray]:
    """Cut every sequence into consecutive pieces of at most ``maxlen`` timesteps.

    With ``side="post"`` the pieces are cut from the start (the last piece may be short); with
    ``"pre"`` from the end (the first piece may be short). An empty sequence stays one empty
    piece, so no sample disappears. The values are not copied: only the lengths change.

    Example:
        >>> pieces, source = split(SequenceSet.from_sequences([[1, 2, 3, 4, 5], [6]]), 2)
        >>> pieces.lengths.tolist(), source.tolist()
        ([2, 2, 1, 1], [0, 0, 0, 1])
    """
    check_side(side)
    check_maxlen(maxlen)
    seqs = as_sequence_set(seqs)
    pieces, source_index = split_lengths(seqs.lengths, maxlen, side)
    return SequenceSet(seqs.values, pieces), source_index


def split_lengths(lengths: np.ndarray, maxlen: int,
                  side: Side = "post") -> tuple[np.ndarray, np.ndarray]:
    """The piece lengths :func:`split` cuts, and each piece's source sample, from the lengths
    alone (a streaming command knows them before it reads any value).

    Example:
        >>> pieces, source = split_lengths(np.array([5, 0]), 2, side="pre")
        >>> pieces.tolist(), source.tolist()
        ([1, 2, 2, 0], [0, 0, 0, 1])
    """
    check_side(side)
    check_maxlen(maxlen)
    counts = np.maximum(1, -(-lengths // maxlen))
    source_index = np.repeat(np.arange(lengths.shape[0], dtype=np.int64), counts)
    pieces = np.full(int(counts.sum()), maxlen, dtype=LENGTH_DTYPE)
    first_piece = np.cumsum(counts) - counts
    short = lengths - (counts - 1) * maxlen  # length of the one piece that may be short
    if side == "post":
        pieces[first_piece + counts - 1] = short
    else:
        pieces[first_piece] = short
    return pieces, source_index


def check_maxlen(maxlen: int) -> None:
    """A maxlen to cut at: a positive integer (``None`` cuts nothing, so it is refused here).

    Example:
        >>> check_maxlen(0)
        Traceback (most recent call last):
        ...
        lstmshape.errors.ArgumentError: maxlen=0: expected a positive integer
    """
    if isinstance(maxlen, bool) or not isinstance(maxlen, int | np.integer) or maxlen < 1:
        raise ArgumentError(Param("maxlen", maxlen), ": expected a positive integer")


def as_sequence_set(seqs: SequenceSet | list[npt.ArrayLike]) -> SequenceSet:
    return seqs if isinstance(seqs, SequenceSet) else SequenceSet.from_sequences(seqs)
