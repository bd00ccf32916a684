"""What commands that keep their input's layout share: a padded input gives a padded output
(same width, side and pad value), a ragged one a ragged output (``normalize``, ``partition``).

Example:
    >>> import numpy as np
    >>> from lstmshape.sequences import SequenceSet
    >>> layout = Layout(timesteps=3, side="pre", pad_value=-1.0, padded=True)
    >>> layout.rows(SequenceSet.from_sequences([[5.0]]), np.dtype("float32"))[:, :, 0].tolist()
    [[-1.0, -1.0, 5.0]]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.output import Stream
from ..io.source import Source
from ..manifest import json_number
from ..ops.pad import pad
from ..sequences import SequenceSet, Side


@dataclass(frozen=True)
class Layout:
    """A dense input's width, padding side and pad value (``timesteps`` None: ragged)."""

    timesteps: int | None
    side: Side
    pad_value: float
    padded: bool

    @classmethod
    def of(cls, source: Source) -> Layout:
        """The source's layout; a dense input without a recorded pad value pads with 0."""
        value = source.pad_value if source.pad_value is not None else 0.0
        padded = source.timesteps is not None and (
            bool(np.any(source.lengths != source.timesteps)) or source.pad_value is not None)
        return cls(source.timesteps, source.side, value, padded)

    def rows(self, seqs: SequenceSet, dtype: np.dtype) -> np.ndarray:
        """``seqs`` as the output stores them: ``(n, T, F)`` padded back to the input's width,
        or the flat ``values`` of a ragged output."""
        if self.timesteps is None:
            return seqs.values.astype(dtype, copy=False)
        return pad(seqs, self.timesteps, self.side, self.side, self.pad_value, dtype).tensor

    def main(self, lengths: np.ndarray, features: int, dtype: np.dtype,
             blocks: Iterable[np.ndarray]) -> tuple[str, Stream]:
        """The output's main array: ``x`` of a dense layout, ``values`` of a ragged one."""
        if self.timesteps is None:
            return "values", Stream((int(lengths.sum()), features), dtype, blocks)
        return "x", Stream((len(lengths), self.timesteps, features), dtype, blocks)

    def padding(self) -> dict[str, Any] | None:
        """The manifest's ``padding``: the input's, when it is padded."""
        return ({"side": self.side, "value": json_number(self.pad_value)} if self.padded
                else None)
