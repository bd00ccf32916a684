"""Statistics over sequence sets, accumulated block by block (for ``inspect`` and warnings)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..sequences import SequenceSet, Side, real_mask


def pad_collisions(values: np.ndarray, pad_value: float) -> int:
    """How many real timesteps have *every* feature equal to the pad value.

    A Keras ``Masking(mask_value=pad_value)`` layer would hide those timesteps as if they were
    padding.

    Example:
        >>> import numpy as np
        >>> pad_collisions(np.array([[0, 0], [0, 1], [0, 0]]), 0)
        2
    """
    if values.size == 0:
        return 0
    if math.isnan(pad_value):
        if values.dtype.kind != "f":
            return 0
        first = np.isnan(values[:, 0])
    else:
        first = values[:, 0] == pad_value
    # Most data never equals the pad value: test the first feature everywhere, and all the
    # features only on the few rows where the first one matches.
    candidates = values[np.flatnonzero(first)]
    if math.isnan(pad_value):
        return int(np.isnan(candidates).all(axis=1).sum())
    return int((candidates == pad_value).all(axis=1).sum())


def foreign_pad_steps(tensor: np.ndarray, lengths: np.ndarray, side: Side,
                      pad_value: float) -> int:
    """How many pad steps of a padded ``(n, T, F)`` tensor do not hold ``pad_value`` in every
    feature (NaN matches NaN). A mask on the pad value would take them for real steps, and a
    command that copies pad steps as stored would carry them on.

    Example:
        >>> import numpy as np
        >>> foreign_pad_steps(np.array([[[1], [0]], [[2], [7]]]), np.array([1, 1]), "post", 0)
        1
    """
    pads = tensor[~real_mask(lengths, tensor.shape[1], side)]
    if pads.size == 0:
        return 0
    if math.isnan(pad_value):
        same = np.isnan(pads) if pads.dtype.kind in "fc" else np.zeros(pads.shape, bool)
    else:
        same = pads == pad_value
    return int(np.count_nonzero(~same.all(axis=1)))


@dataclass
class ValueStats:
    """Running NaN/inf counts, finite value range and pad-value collisions."""

    pad_value: float = 0.0
    nan: int = 0
    inf: int = 0
    minimum: float | None = None
    maximum: float | None = None
    collisions: int = 0
    #: pad steps that do not hold the pad value (:func:`foreign_pad_steps`)
    foreign_pads: int = 0

    def add(self, block: SequenceSet) -> None:
        values = block.values
        if values.size == 0:
            return
        self.collisions += pad_collisions(values, self.pad_value)
        if values.dtype.kind == "f":
            nan_mask = np.isnan(values)
            inf_mask = np.isinf(values)
            self.nan += int(nan_mask.sum())
            self.inf += int(inf_mask.sum())
            finite = values[~(nan_mask | inf_mask)]
        else:
            finite = values.reshape(-1)
        if finite.size:
            low, high = float(finite.min()), float(finite.max())
            self.minimum = low if self.minimum is None else min(self.minimum, low)
            self.maximum = high if self.maximum is None else max(self.maximum, high)


def length_statistics(lengths: np.ndarray) -> dict[str, Any]:
    """min/p50/p95/max/mean of the true lengths (zeros for an empty set).

    Example:
        >>> import numpy as np
        >>> length_statistics(np.array([1, 2, 3, 10]))["p50"]
        2
    """
    if lengths.size == 0:
        return {"min": 0, "p50": 0, "p95": 0, "max": 0, "mean": 0.0}
    return {
        "min": int(lengths.min()),
        # the same real lengths `pad --maxlen p50/p95` would pick
        "p50": int(np.percentile(lengths, 50, method="inverted_cdf")),
        "p95": int(np.percentile(lengths, 95, method="inverted_cdf")),
        "max": int(lengths.max()),
        "mean": round(float(lengths.mean()), 6),
    }


def length_histogram(lengths: np.ndarray, bins: int = 10) -> list[tuple[int, int, int]]:
    """``(low, high, count)`` bins of the lengths, for the terminal histogram."""
    if lengths.size == 0:
        return []
    low, high = int(lengths.min()), int(lengths.max())
    width = max(1, math.ceil((high - low + 1) / bins))
    edges = np.arange(low, high + width + 1, width)
    counts, _ = np.histogram(lengths, bins=edges)
    return [(int(edges[i]), int(edges[i + 1]) - 1, int(c)) for i, c in enumerate(counts)]
