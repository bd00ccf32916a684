"""``lstmshape pad``: any input to a dense ``(N, maxlen, F)`` tensor, block by block."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.output import Stream
from ..io.source import Source
from ..job import IOOptions, Job, Result, check_one_feature
from ..like import adopt, open_like, resolve
from ..manifest import ManifestData, json_number
from ..ops.pad import check_value_fits, maxlen_from_histogram, pad
from ..ops.stats import pad_collisions
from ..ops.truncate import truncate
from ..sequences import Side, check_side
from ..words import plural

#: Each option's default, when neither given nor taken from a ``like`` manifest.
DEFAULTS: dict[str, Any] = {"maxlen": "max", "padding": "post", "truncating": "post",
                            "value": 0.0, "dtype": None, "allow_lossy": False,
                            "no_feature_axis": False}


def pad_file(src: str, options: IOOptions, *, maxlen: int | str | None = None,
             padding: Side | None = None, truncating: Side | None = None,
             value: float | None = None, dtype: str | None = None,
             allow_lossy: bool | None = None, no_feature_axis: bool | None = None,
             like: str | None = None) -> dict[str, Any]:
    """Pad the sequences of ``src`` into ``options.output``; returns the manifest written.

    An option left None takes its default (:data:`DEFAULTS`; ``dtype``: the input's), or with
    ``like`` (a manifest path) the one that manifest's ``pad`` step resolved: its maxlen as a
    number, its dtype, side and value (see :mod:`lstmshape.like`).

    Example:
        >>> import numpy as np, tempfile, os
        >>> folder = tempfile.mkdtemp(); src = os.path.join(folder, "seqs.npz")
        >>> np.savez(src, values=np.arange(4.0), lengths=np.array([3, 1]))
        >>> pad_file(src, IOOptions(os.path.join(folder, "x.npy")), maxlen=2)["input_shape"]
        [2, 1]
    """
    recorded = open_like(like, "pad")
    given = {"maxlen": maxlen, "padding": padding, "truncating": truncating, "value": value,
             "dtype": dtype, "allow_lossy": allow_lossy, "no_feature_axis": no_feature_axis}
    resolved = None if recorded is None else {
        "maxlen": recorded.param("resolved_maxlen"),
        "dtype": recorded.param("dtype") or recorded.step.output_dtype("x")}
    chosen = resolve(given, DEFAULTS, recorded, resolved)
    maxlen, value, dtype = chosen["maxlen"], float(chosen["value"]), chosen["dtype"]
    padding = check_side(chosen["padding"], "padding")
    truncating = check_side(chosen["truncating"], "truncating")
    allow_lossy, no_feature_axis = bool(chosen["allow_lossy"]), bool(chosen["no_feature_axis"])
    params: dict[str, Any] = {
        "maxlen": maxlen, "padding": padding, "truncating": truncating,
        "value": json_number(value), "dtype": dtype, "allow_lossy": allow_lossy,
        "no_feature_axis": no_feature_axis}

    def produce(job: Job) -> Result:
        source = job.open(job.locations[0])
        check_one_feature(source, no_feature_axis)
        adopt(recorded, params, source.feature_names, source.location, job)
        length = maxlen_from_histogram(maxlen, job.length_histogram(source))
        if length == 0:  # "max" or "pNN" of sequences that are all empty
            raise InputError(f"{source.location}: every sequence is empty (0 timesteps), so "
                             f"--maxlen {maxlen} would make 0 timesteps; pass --maxlen N to pad "
                             f"them to N timesteps anyway")
        target = np.dtype(dtype) if dtype is not None else source.dtype
        check_value_fits(value, target)
        kept = np.minimum(source.lengths, length)
        rows = PadRows(length, padding, truncating, value, target, allow_lossy)
        tensor = job.array(source, (source.n_samples, length, source.n_features), target, rows,
                           extra_per_sample=length * source.n_features * target.itemsize)
        if isinstance(tensor, Stream):  # streamed here: count collisions as blocks go by
            tensor = Stream(tensor.shape, tensor.dtype, warn_collisions(job, source, rows,
                                                                        tensor.blocks))
        arrays: list[tuple[str, Any]] = [("x", tensor), ("lengths", kept)]
        labels = source.step_targets
        if labels is not None:  # per-timestep: padded and cut exactly like x, then weighted
            arrays.append(("y", job.labels(
                source, (source.n_samples, length, *labels.step_shape),
                PadRows(length, padding, truncating, job.padded_label_value(source),
                        labels.dtype, False),
                out_row_bytes=length)))
            arrays.append(("sample_weight", job.step_weights(kept, length, padding)))
        arrays.extend(job.side_arrays(source))  # y, and source_index for partition --by-source
        manifest = ManifestData(
            command="pad", params={**params, "resolved_maxlen": length},
            inputs=[], outputs={}, samples=source.n_samples, timesteps=length,
            features=source.n_features, feature_names=source.feature_names, lengths=kept,
            padding={"side": padding, "value": json_number(value)},
            truncating={"side": truncating, "maxlen": length},
            truncated_samples=int(np.count_nonzero(source.lengths > length)),
            dropped_timesteps=int((source.lengths - kept).sum()),
            history=job.history(), feature_axis=not no_feature_axis)
        return Result(arrays, manifest)

    return Job("pad", [src], options).run(produce)


@dataclass
class PadRows:
    """Samples ``start:stop`` of a source, padded: the row function of ``x`` (it crosses to Dask
    workers: resolved parameters only). ``collisions`` counts, where it runs, real timesteps
    equal to the pad value."""

    maxlen: int
    padding: Side
    truncating: Side
    value: float
    dtype: np.dtype
    allow_lossy: bool
    collisions: int = 0

    def __call__(self, source: Source, start: int, stop: int) -> np.ndarray:
        block = source.read_block(start, stop)
        result = pad(block, self.maxlen, self.padding, self.truncating, self.value, self.dtype,
                     self.allow_lossy)
        if block.lengths.size and int(block.lengths.max()) > self.maxlen:
            block = truncate(block, self.maxlen, self.truncating)  # count only what is kept
        self.collisions += pad_collisions(block.values, self.value)
        return result.tensor


def warn_collisions(job: Job, source: Source, rows: PadRows,
                    blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The blocks, then one warning when real timesteps equal the pad value."""
    yield from blocks
    if rows.collisions:
        one = rows.collisions == 1
        job.warn(f"{plural(rows.collisions, 'real timestep')} of {source.location} "
                 f"equal{'s' if one else ''} the pad value {rows.value:g} in every feature; "
                 f"a Masking layer would hide {'it' if one else 'them'} -- consider --value "
                 f"with a value the data never takes")
