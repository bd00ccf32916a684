"""Truncating sequences to at most ``maxlen`` timesteps, or splitting the long ones.

``truncate`` keeps each sequence's first (``side="post"``) or last (``"pre"``) ``maxlen`` steps,
as ``pad_sequences`` truncates, but without padding: a ragged set stays ragged. ``split`` loses
nothing: a sequence of ``L`` steps becomes ``ceil(L / maxlen)`` consecutive pieces, and the
returned ``source_index`` says which input sample each piece came from.
"""

from __future__ import annotations

import numpy as np

from ..sequences import LENGTH_DTYPE, SequenceSet, Side
from .pad import truncated_values


def truncate(seqs: SequenceSet, maxlen: int, side: Side = "post") -> SequenceSet:
    """Cut every sequence to at most ``maxlen`` timesteps.

    Example:
        >>> cut = truncate(SequenceSet.from_sequences([[1, 2, 3], [4]]), 2, side="pre")
        >>> cut.values.ravel().tolist(), cut.lengths.tolist()
        ([2, 3, 4], [2, 1])
    """
    values, lengths = truncated_values(seqs.values, seqs.lengths, maxlen, side)
    return SequenceSet(values, lengths)


def split(seqs: SequenceSet, maxlen: int, side: Side = "post") -> tuple[SequenceSet, np.ndarray]:
    """Cut every sequence into consecutive pieces of at most ``maxlen`` timesteps.

    With ``side="post"`` the pieces are cut from the start (the last piece may be short); with
    ``"pre"`` from the end (the first piece may be short). An empty sequence stays one empty
    piece, so no sample disappears. The values are not copied: only the lengths change.

    Example:
        >>> pieces, source = split(SequenceSet.from_sequences([[1, 2, 3, 4, 5], [6]]), 2)
        >>> pieces.lengths.tolist(), source.tolist()
        ([2, 2, 1, 1], [0, 0, 0, 1])
    """
    lengths = seqs.lengths
    counts = np.maximum(1, -(-lengths // maxlen))
    source_index = np.repeat(np.arange(seqs.n_samples, dtype=np.int64), counts)
    pieces = np.full(int(counts.sum()), maxlen, dtype=LENGTH_DTYPE)
    first_piece = np.cumsum(counts) - counts
    short = lengths - (counts - 1) * maxlen  # length of the one piece that may be short
    if side == "post":
        pieces[first_piece + counts - 1] = short
    else:
        pieces[first_piece] = short
    return SequenceSet(seqs.values, pieces), source_index
