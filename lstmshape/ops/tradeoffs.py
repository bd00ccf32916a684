"""What each candidate ``maxlen`` costs, computed from the true lengths alone (no values).

``inspect`` shows one row per candidate maxlen ``M`` -- the percentiles ``pad --maxlen pNN``
would pick (p50, p75, p90, p95, p99), ``max`` and any ``--maxlen`` the user gives -- for N
sequences of true lengths ``len_i``, F features and a dtype of ``itemsize`` bytes:

* ``padded_share``: the share of the ``(N, M, F)`` tensor that is padding,
  ``(N * M - sum(min(len_i, M))) / (N * M)``;
* ``truncated_samples``: how many sequences are longer than M (``pad`` cuts them);
* ``dropped_timesteps``: the real timesteps cut off, ``sum(max(len_i - M, 0))``, and
  ``dropped_share``, that over all real timesteps;
* ``tensor_bytes``: ``N * M * F * itemsize`` (``pad`` keeps the input's dtype);
* ``bucketed_padded_share``: the padding left when ``batch --bucket-by-length --size B --maxlen M``
  batches the same sequences, from the very planning code ``batch`` runs
  (:func:`~lstmshape.ops.batch.bucketed_padding`); the padded timesteps over the batches' slots;
* ``batch_bytes``: one full ``(B, M, F)`` batch, the largest a bucketed batch can be.

Everything is a function of the lengths: ``inspect`` of a 2 GB ragged ``.h5`` needs its lengths
array for the table, never its values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import OptionError
from ..sequences import LENGTH_DTYPE
from .batch import bucketed_padding
from .pad import parse_maxlen, resolve_maxlen

#: The candidates every table has, in this order; ``--maxlen`` values are added to them.
DEFAULT_CANDIDATES = ("p50", "p75", "p90", "p95", "p99", "max")
#: The row marked in the table: what ``pad --maxlen p95`` (the README's recipe) picks.
MARKED_CANDIDATE = "p95"
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class MaxlenTradeoff:
    """One row of the trade-off table: what padding (or cutting) to ``maxlen`` costs."""

    #: how the maxlen was asked for: ``p95``, ``max`` or a number as given (``"120"``)
    candidate: str
    maxlen: int
    padded_timesteps: int
    padded_share: float
    truncated_samples: int
    dropped_timesteps: int
    dropped_share: float
    tensor_bytes: int
    batch_size: int
    bucketed_padded_timesteps: int
    bucketed_padded_share: float
    batch_bytes: int
    #: True on the row ``pad --maxlen p95`` would pick
    pad_p95: bool

    def to_dict(self) -> dict[str, Any]:
        """The row as the JSON object of ``inspect --json``'s ``maxlen_tradeoffs``."""
        return dataclasses.asdict(self)


def candidate_labels(extra: Iterable[str | int] = ()) -> list[str]:
    """The default candidates followed by the ``--maxlen`` values not already among them.

    Example:
        >>> candidate_labels(["p80", 120, "max", "P80"])
        ['p50', 'p75', 'p90', 'p95', 'p99', 'max', 'p80', '120']
    """
    labels = list(DEFAULT_CANDIDATES)
    for spec in extra:
        label = str(parse_maxlen(spec))  # checks it, and spells "P80" and "p80" alike
        if label not in labels:
            labels.append(label)
    return labels


def kept_and_truncated(lengths: npt.ArrayLike,
                       maxlens: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """For each maxlen: the real timesteps kept, ``sum(min(len_i, M))``, and the samples cut.

    One sort of the lengths serves any number of maxlens (the plot asks for hundreds).

    Example:
        >>> kept, cut = kept_and_truncated([1, 4, 4, 10], [0, 4, 20])
        >>> kept.tolist(), cut.tolist()
        ([0, 13, 19], [4, 1, 0])
    """
    ordered = np.sort(np.asarray(lengths, dtype=LENGTH_DTYPE).reshape(-1))
    limits = np.asarray(maxlens, dtype=np.int64).reshape(-1)
    prefix = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(ordered)])
    fitting = np.searchsorted(ordered, limits, side="right")  # sequences with len_i <= M
    truncated = ordered.shape[0] - fitting
    kept = prefix[fitting] + limits * truncated
    return kept, truncated


def share(part: int, whole: int) -> float:
    """``part / whole``, 0.0 for an empty whole.

    Example:
        >>> share(1, 4), share(0, 0)
        (0.25, 0.0)
    """
    return part / whole if whole else 0.0


def maxlen_tradeoffs(lengths: npt.ArrayLike, *, features: int, itemsize: int,
                     batch_size: int = DEFAULT_BATCH_SIZE,
                     extra: Iterable[str | int] = ()) -> list[MaxlenTradeoff]:
    """The trade-off rows for sequences of these true ``lengths``, sorted by maxlen.

    ``extra`` adds candidates (``120``, ``"p80"``, ``"max"``) to the default ones; equal maxlens
    keep a row each, so ``p95`` is there even when it ties with ``p99``. An empty set has no rows.

    Example:
        >>> rows = maxlen_tradeoffs([2, 4, 4, 10], features=3, itemsize=4, batch_size=2,
        ...                         extra=[5])
        >>> [(r.candidate, r.maxlen, r.truncated_samples, r.dropped_timesteps) for r in rows]
        ... # doctest: +NORMALIZE_WHITESPACE
        [('p50', 4, 1, 6), ('p75', 4, 1, 6), ('5', 5, 1, 5), ('p90', 10, 0, 0),
         ('p95', 10, 0, 0), ('p99', 10, 0, 0), ('max', 10, 0, 0)]
        >>> longest = rows[-1]  # 10 steps: half the tensor is padding, 2 of 7 after bucketing
        >>> longest.padded_share, round(longest.bucketed_padded_share, 4)
        (0.5, 0.2857)
        >>> longest.tensor_bytes, longest.batch_bytes
        (480, 240)
    """
    lengths = np.asarray(lengths, dtype=LENGTH_DTYPE).reshape(-1)
    if lengths.size == 0:
        return []
    if batch_size < 1:
        raise OptionError(f"--batch-size must be at least 1, got {batch_size}")
    count = int(lengths.shape[0])
    total = int(lengths.sum())
    labels = candidate_labels(extra)
    maxlens = [resolve_maxlen(label, lengths) for label in labels]
    kept, truncated = kept_and_truncated(lengths, maxlens)
    # what `batch --bucket-by-length --size B --maxlen M` writes; it pads a batch to at least
    # one timestep, so a maxlen of 0 (most sequences empty) is planned as 1, as batch would be
    bucketed = bucketed_padding(lengths, batch_size, [max(maxlen, 1) for maxlen in maxlens])
    step_bytes = features * itemsize
    rows = []
    for label, maxlen, kept_steps, cut, (bucketed_padded, bucketed_slots) in zip(
            labels, maxlens, kept.tolist(), truncated.tolist(), bucketed, strict=True):
        slots = count * maxlen
        rows.append(MaxlenTradeoff(
            candidate=label, maxlen=maxlen,
            padded_timesteps=slots - kept_steps, padded_share=share(slots - kept_steps, slots),
            truncated_samples=cut,
            dropped_timesteps=total - kept_steps, dropped_share=share(total - kept_steps, total),
            tensor_bytes=slots * step_bytes, batch_size=batch_size,
            bucketed_padded_timesteps=bucketed_padded,
            bucketed_padded_share=share(bucketed_padded, bucketed_slots),
            batch_bytes=batch_size * maxlen * step_bytes,
            pad_p95=label == MARKED_CANDIDATE))
    return sorted(rows, key=lambda row: row.maxlen)  # stable: tied rows keep their order


def share_curves(lengths: npt.ArrayLike,
                 maxlens: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The padded share of the tensor and the dropped share of real timesteps, per maxlen.

    The curves of ``inspect --plot``; the same figures as the table's rows.

    Example:
        >>> padded, dropped = share_curves([2, 4], [1, 2, 4])
        >>> padded.tolist(), dropped.tolist()
        ([0.0, 0.0, 0.25], [0.6666666666666666, 0.3333333333333333, 0.0])
    """
    lengths = np.asarray(lengths, dtype=LENGTH_DTYPE).reshape(-1)
    limits = np.asarray(maxlens, dtype=np.int64).reshape(-1)
    kept, _ = kept_and_truncated(lengths, limits)
    slots = lengths.shape[0] * limits
    total = int(lengths.sum())
    padded = np.divide(slots - kept, slots, out=np.zeros(limits.shape, dtype=np.float64),
                       where=slots > 0)
    dropped = (total - kept) / total if total else np.zeros(limits.shape, dtype=np.float64)
    return padded, dropped
