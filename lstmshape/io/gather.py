"""Reading the samples at given indices of a source, in any order, without reading the whole
input: what ``batch --shuffle``, ``partition`` and per-timestep labels of a reordered output
need."""

from __future__ import annotations

import numpy as np

from ..sequences import LENGTH_DTYPE, SequenceSet
from .source import Source

#: One more read costs about as much as reading this many more bytes (a seek plus per-call
#: overhead); below that, reading through unwanted samples is cheaper than skipping them.
READ_OVERHEAD_BYTES = 1 << 16


def gather(source: Source, indices: np.ndarray, blocks: np.ndarray) -> SequenceSet:
    """The samples at ``indices`` in that order, reading only what holds one of them.

    Within each input block, the wanted samples are read as one span from the first to the
    last when they are dense in it (a stateful plan's runs, a large chunk), and run by run when
    they are sparse (a shuffled plan): reading whole spans there would read the input once per
    output chunk -- quadratic in the input's size.
    """
    if indices.size == 0:
        return SequenceSet(np.zeros((0, source.n_features), dtype=source.dtype),
                           np.zeros(0, dtype=LENGTH_DTYPE))
    wanted = np.unique(indices)
    which = np.searchsorted(blocks[:, 0], wanted, side="right") - 1
    groups = np.split(wanted, np.flatnonzero(np.diff(which)) + 1)
    step_bytes = max(source.n_features * source.dtype.itemsize, 1)
    sample_steps = (source.lengths if source.timesteps is None
                    else np.full(source.n_samples, source.timesteps))
    ends = np.concatenate([[0], np.cumsum(sample_steps * step_bytes)])
    values, lengths = [], []
    for group in groups:  # the input blocks that hold a wanted sample
        low, high = int(group[0]), int(group[-1]) + 1
        runs = np.split(group, np.flatnonzero(np.diff(group) != 1) + 1)
        wanted_bytes = int((ends[group + 1] - ends[group]).sum())
        if len(runs) > 1 and (len(runs) * READ_OVERHEAD_BYTES + wanted_bytes
                              < int(ends[high] - ends[low])):
            for run in runs:
                part = source.read_block(int(run[0]), int(run[-1]) + 1)
                values.append(part.values)
                lengths.append(part.lengths)
            continue
        block = source.read_block(low, high)
        if group.shape[0] != high - low:
            block = block.take(group - low)
        values.append(block.values)
        lengths.append(block.lengths)
    found = SequenceSet(np.concatenate(values), np.concatenate(lengths))
    position = np.searchsorted(wanted, indices)
    if np.array_equal(position, np.arange(position.shape[0])):
        return found
    return found.take(position)
