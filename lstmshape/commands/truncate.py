"""``lstmshape truncate``: cut sequences to ``maxlen`` steps, or split them; ragged stays ragged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import OptionError
from ..io.output import Stream
from ..io.source import Source
from ..job import IOOptions, Job, Result, check_one_feature
from ..like import adopt, open_like, required, resolve
from ..manifest import ManifestData, json_number
from ..ops.pad import pad, pads_as_stored
from ..ops.truncate import cut_padded, split, split_lengths, truncate
from ..plan import Planned
from ..sequences import LENGTH_DTYPE, Side, check_side

OVERFLOW_CHOICES = ("drop", "split")


#: Each option's default, when neither given nor taken from a ``like`` manifest.
DEFAULTS: dict[str, Any] = {"maxlen": None, "truncating": "post", "overflow": "drop",
                            "no_feature_axis": False}


def truncate_file(src: str, options: IOOptions, *, maxlen: int | None = None,
                  truncating: Side | None = None, overflow: str | None = None,
                  no_feature_axis: bool | None = None,
                  like: str | None = None) -> dict[str, Any]:
    """Truncate (or, with ``overflow="split"``, split) the sequences of ``src``.

    A dense input gives a dense ``(N, min(maxlen, T), F)`` tensor that keeps its padding side and
    value; a ragged input gives ragged ``values`` + ``lengths``.

    Example:
        >>> import numpy as np, tempfile, os
        >>> folder = tempfile.mkdtemp(); src = os.path.join(folder, "seqs.npz")
        >>> np.savez(src, values=np.arange(5.0), lengths=np.array([4, 1]))
        >>> m = truncate_file(src, IOOptions(os.path.join(folder, "cut.npz")), maxlen=2)
        >>> m["lengths"]["max"], m["lengths"]["dropped_timesteps"]
        (2, 2)
    """
    recorded = open_like(like, "truncate")
    chosen = resolve({"maxlen": maxlen, "truncating": truncating, "overflow": overflow,
                      "no_feature_axis": no_feature_axis}, DEFAULTS, recorded)
    maxlen = required(chosen, "maxlen")
    truncating = check_side(chosen["truncating"], "truncating")
    overflow, no_feature_axis = chosen["overflow"], bool(chosen["no_feature_axis"])
    params: dict[str, Any] = {"maxlen": maxlen, "truncating": truncating, "overflow": overflow,
                              "no_feature_axis": no_feature_axis}

    def produce(job: Job) -> Result:
        source = job.open(job.locations[0])
        check_one_feature(source, no_feature_axis)
        adopt(recorded, params, source.feature_names, source.location, job)
        lengths = source.lengths
        source_index: np.ndarray | None = None
        if overflow == "split":
            new_lengths, source_index = split_lengths(lengths, maxlen, truncating)
        else:
            new_lengths = np.minimum(lengths, maxlen).astype(LENGTH_DTYPE)
        if overflow == "split" and job.options.engine is not None:
            raise OptionError("--overflow split makes a new sample order, which the dask engine "
                              "does not plan; use --engine local for it")
        dense = source.timesteps is not None
        width = min(maxlen, source.timesteps) if source.timesteps is not None else None
        pad_value = source.pad_value if source.pad_value is not None else 0.0
        rows = CutRows(maxlen, truncating, overflow, width, source.side, pad_value,
                       stored_value=source.pad_value)
        features = source.n_features
        main: tuple[str, Stream | Planned]
        offsets: np.ndarray | None = None  # of a ragged output's rows (its planned chunks)
        if dense:
            assert width is not None
            main = ("x", job.array(source, (len(new_lengths), width, features), source.dtype,
                                   rows))
            padding = ({"side": source.side, "value": json_number(pad_value)}
                       if bool(np.any(new_lengths < width)) or source.pad_value is not None
                       else None)
        else:
            offsets = np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64)
            main = ("values", job.array(source, (int(new_lengths.sum()), features),
                                        source.dtype, rows, offsets=offsets))
            padding = None
        arrays: list[tuple[str, Any]] = [main, ("lengths", new_lengths)]
        if source_index is not None:
            arrays.append(("source_index", source_index))
        labels = source.step_targets
        if labels is not None:  # per-timestep: cut (and split) exactly like x
            # ragged labels are cut, never padded: any value does for them
            label_value = job.padded_label_value(source) if dense else job.label_value(source)
            shape = ((len(new_lengths), width) if width is not None
                     else (int(new_lengths.sum()),))
            arrays.append(("y", job.labels(source, (*shape, *labels.step_shape), CutRows(
                maxlen, truncating, overflow, width, source.side, label_value),
                offsets=offsets)))
            if width is not None and bool(np.any(new_lengths < width)):
                arrays.append(("sample_weight", job.step_weights(new_lengths, width,
                                                                 source.side)))
        targets = job.targets(source, source_index)  # a piece gets its source sample's y
        if targets is not None:
            arrays.append(("y", targets))
        kept = np.minimum(lengths, maxlen)
        manifest = ManifestData(
            command="truncate", params=params, inputs=[], outputs={},
            samples=len(new_lengths), timesteps=width, features=features,
            feature_names=source.feature_names, lengths=new_lengths, padding=padding,
            truncating={"side": truncating, "maxlen": maxlen},
            truncated_samples=int(np.count_nonzero(lengths > maxlen)),
            dropped_timesteps=0 if overflow == "split" else int((lengths - kept).sum()),
            history=job.history(), feature_axis=not no_feature_axis)
        if source_index is not None:
            manifest.extra["split"] = {"source_samples": source.n_samples,
                                       "pieces": len(new_lengths),
                                       "source_index": "outputs.source_index"}
        return Result(arrays, manifest)

    return Job("truncate", [src], options).run(produce)


@dataclass(frozen=True)
class CutRows:
    """Samples ``start:stop`` of a source, truncated or split: a dense ``(n, width, F)`` block
    padded on the source's side (``width`` given), else the ragged values. The row function of
    the output (it crosses to Dask workers: resolved parameters only).

    A stored tensor cut on its own padding side is a column slice of it (:func:`cut_padded`),
    with no unpadding and padding again, whenever that slice is what padding would write: its
    pad steps hold ``pad_value`` (``stored_value``, the recorded pad value, fills alike), or
    the block has no pad step left in ``width``.
    """

    maxlen: int
    truncating: Side
    overflow: str
    width: int | None
    side: Side
    pad_value: float
    #: the value a stored tensor's pad steps hold (its manifest's), None when not known
    stored_value: float | None = None

    def __call__(self, source: Source, start: int, stop: int) -> np.ndarray:
        if (self.width is not None and self.width > 0 and self.overflow == "drop"
                and self.truncating == self.side):
            stored = self.stored_columns(source, start, stop, self.width)
            if stored is not None:
                return stored
        block = source.read_block(start, stop)
        if self.overflow == "split":
            pieces, _ = split(block, self.maxlen, self.truncating)
        else:
            pieces = truncate(block, self.maxlen, self.truncating)
        if self.width is None:
            return pieces.values
        return pad(pieces, self.width, self.side, self.truncating, self.pad_value).tensor

    def stored_columns(self, source: Source, start: int, stop: int,
                       width: int) -> np.ndarray | None:
        """The block as :func:`cut_padded` of the stored rows, or None where it would differ
        from padding the cut sequences (or the input stores no padded tensor)."""
        if not pads_as_stored(self.stored_value, self.pad_value, source.dtype,
                              source.lengths[start:stop], width):
            return None
        stored = source.read_stored(start, stop)
        return None if stored is None else np.ascontiguousarray(cut_padded(stored, width,
                                                                          self.side))
