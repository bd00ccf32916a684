"""``lstmshape batch``: samples grouped into padded batches, in the order training will see them.

The plan (:func:`~lstmshape.ops.batch.plan_batches`) comes from the true lengths alone. The data
is then materialised a chunk of batches at a time: the chunk's samples are gathered from the
input block by block (only the blocks that hold one of them are read), padded, and written, so
memory stays within ``--memory-limit`` whatever the order.

Outputs: ``.npy`` holds one ``(num_batches, B, T, F)`` array (every batch the same size and
width); ``.npz``/``.h5`` hold ``x_000000``, ``lengths_000000`` (and ``y_000000`` when the input
has targets) per batch, plus ``order``: the source sample of every output row, ``-1`` for a row
added by ``--remainder pad``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import InputError, OptionError
from ..io.gather import gather
from ..io.location import Location
from ..io.output import Stream
from ..io.source import SAMPLE_WEIGHT, Source
from ..job import IOOptions, Job, Result, check_one_feature
from ..like import adopt, open_like, required, resolve
from ..manifest import ManifestData, json_number
from ..ops.batch import (
    PAD_ROW,
    BatchPlan,
    Remainder,
    pad_batch,
    plan_batches,
    with_uniform_width,
)
from ..ops.pad import check_value_fits, pads_as_stored
from ..sequences import LENGTH_DTYPE, SequenceSet, Side, bounds_within, check_side, real_mask
from ..words import plural

#: Key pattern of one batch's arrays in an .npz/.h5 output.
BATCH_KEY = "{role}_{index:06d}"


#: Each option's default, when neither given nor taken from a ``like`` manifest (``padding``
#: and ``value`` None: the input's own).
DEFAULTS: dict[str, Any] = {"size": None, "remainder": "keep", "shuffle": False, "seed": 0,
                            "bucket_by_length": False, "stateful": False, "maxlen": None,
                            "padding": None, "value": None, "no_feature_axis": False}


def batch_file(src: str, options: IOOptions, *, size: int | None = None,
               remainder: Remainder | None = None, shuffle: bool | None = None,
               seed: int | None = None, bucket_by_length: bool | None = None,
               stateful: bool | None = None, maxlen: int | None = None,
               padding: Side | None = None, value: float | None = None,
               no_feature_axis: bool | None = None, like: str | None = None) -> dict[str, Any]:
    """Batch the samples of ``src`` into ``options.output``; returns the manifest written.

    ``padding``/``value`` default to the input's own padding (from its manifest), else
    ``post`` and 0. ``like``: the manifest of an earlier ``batch`` whose options are reused
    where none is given here.

    Example:
        >>> import numpy as np, tempfile, os
        >>> folder = tempfile.mkdtemp(); src = os.path.join(folder, "seqs.npz")
        >>> np.savez(src, values=np.arange(10.0), lengths=np.array([4, 1, 3, 2]))
        >>> m = batch_file(src, IOOptions(os.path.join(folder, "b.npz")), size=2,
        ...                bucket_by_length=True)
        >>> m["batches"]["widths"], m["batches"]["padded_timesteps"]
        ([2, 4], {'before': 4, 'after': 2, 'real': 10})
    """
    recorded = open_like(like, "batch")
    chosen = resolve({"size": size, "remainder": remainder, "shuffle": shuffle, "seed": seed,
                      "bucket_by_length": bucket_by_length, "stateful": stateful,
                      "maxlen": maxlen, "padding": padding, "value": value,
                      "no_feature_axis": no_feature_axis}, DEFAULTS, recorded)
    size = required(chosen, "size")
    remainder, shuffle, seed = chosen["remainder"], chosen["shuffle"], chosen["seed"]
    bucket_by_length, stateful = chosen["bucket_by_length"], chosen["stateful"]
    maxlen, padding, value = chosen["maxlen"], chosen["padding"], chosen["value"]
    no_feature_axis = bool(chosen["no_feature_axis"])
    if padding is not None:
        check_side(padding, "padding")
    params: dict[str, Any] = {
        "size": size, "remainder": remainder, "shuffle": shuffle, "seed": seed,
        "bucket_by_length": bucket_by_length, "stateful": stateful, "maxlen": maxlen,
        "padding": padding, "value": None if value is None else json_number(value),
        "no_feature_axis": no_feature_axis}
    one_array = Location(options.output).suffix == ".npy"

    def produce(job: Job) -> Result:
        source = job.open(job.locations[0])
        check_one_feature(source, no_feature_axis)
        adopt(recorded, params, source.feature_names, source.location, job)
        side: Side = padding if padding is not None else source.side
        fill = value if value is not None else (source.pad_value or 0.0)
        check_value_fits(fill, source.dtype, "value", None if value is not None else "pad value")
        plan = plan_batches(source.lengths, size, remainder=remainder, shuffle=shuffle,
                            seed=seed, bucket=bucket_by_length, stateful=stateful,
                            maxlen=maxlen, width=source.timesteps)
        if len(plan.sizes) == 0:  # a file of no batch is no training set: say so, write nothing
            why = " (--remainder drop drops them all)" if source.n_samples else ""
            raise InputError(f"{source.location}: {plural(source.n_samples, 'sample')} make "
                             f"no batch of {size}{why}")
        if one_array:
            if not bool(np.all(plan.sizes == size)):
                raise OptionError(f"{options.output}: an .npy holds one (num_batches, {size}, "
                                  f"timesteps, features) array, but the last batch has "
                                  f"{int(plan.sizes[-1])} of {source.n_samples} samples; pass "
                                  f"--remainder drop or --remainder pad, or write .npz/.h5")
            if bucket_by_length and not plan.uniform:
                job.warn(f"{options.output}: an .npy pads every batch to the longest of "
                             f"all ({int(plan.widths.max())} timesteps); write .npz/.h5 to keep "
                             f"each bucket's own width")
            plan = with_uniform_width(plan)
        maker = BatchMaker(job, source, plan, side, fill, stored_value=source.pad_value)
        labels = None
        if source.step_targets is not None:  # per-timestep: batched exactly like x
            labels = BatchMaker(job, source.step_targets, plan, side,
                                job.padded_label_value(source))
        arrays = (one_array_roles(plan, maker, labels) if one_array
                  else per_batch_roles(plan, maker, labels))
        real = plan.order >= 0
        source_lengths = source.lengths[plan.order[real]]
        kept = plan.lengths[real]
        truncated = int(np.count_nonzero(kept < source_lengths))
        uniform = bool(plan.num_batches) and bool(np.all(plan.widths == plan.widths[0]))
        timesteps = int(plan.widths[0]) if uniform else None
        manifest = ManifestData(
            command="batch", params={**params, "padding": side, "value": json_number(fill)},
            inputs=[], outputs={}, samples=int(plan.sizes.sum()), timesteps=timesteps,
            features=source.n_features, feature_names=source.feature_names, lengths=kept,
            padding={"side": side, "value": json_number(fill)},
            truncating=({"side": "post", "maxlen": maxlen} if maxlen is not None else None),
            truncated_samples=truncated, dropped_timesteps=int((source_lengths - kept).sum()),
            history=job.history(), feature_axis=not no_feature_axis)
        manifest.extra["batches"] = batch_summary(plan, source, stateful, one_array, timesteps)
        return Result(arrays, manifest)

    return Job("batch", [src], options).run(produce)


def batch_summary(plan: BatchPlan, source: Source, stateful: bool, one_array: bool,
                  timesteps: int | None) -> dict[str, Any]:
    """The manifest's ``batches`` section: sizes, widths, padding before/after, where things are."""
    real = int(np.count_nonzero(plan.order >= 0))
    summary: dict[str, Any] = {
        "size": plan.size,
        "count": plan.num_batches,
        "rows": int(plan.sizes.sum()),
        "last_batch_rows": int(plan.sizes[-1]) if plan.num_batches else 0,
        "pad_rows": int(np.count_nonzero(plan.order == PAD_ROW)),
        "dropped_samples": source.n_samples - real,
        "widths": [int(w) for w in plan.widths],
        "padded_timesteps": {"before": plan.padding_before_bucketing,
                             "after": plan.padded_timesteps,
                             "real": int(plan.lengths.sum())},
        "order": "outputs.order",
        "layout": ("x: (num_batches, batch_size, timesteps, features)" if one_array
                   else "x_NNNNNN: (batch_size, timesteps, features), one per batch"),
    }
    if stateful:
        summary["batch_input_shape"] = [plan.size, timesteps, source.n_features]
    return summary


def one_array_roles(plan: BatchPlan, maker: BatchMaker,
                    labels: BatchMaker | None = None) -> list[tuple[str, Any]]:
    count, width = plan.num_batches, int(plan.widths[0]) if plan.num_batches else 0
    features = maker.source.n_features
    x = Stream((count, plan.size, width, features), maker.source.dtype, maker.all_batches())
    arrays: list[tuple[str, Any]] = [
        ("x", x), ("lengths", plan.lengths.reshape(count, plan.size)), ("order", plan.order)]
    if labels is not None:
        inner = (plan.size, width, *labels.source.step_shape)
        arrays.append(("y", Stream((count, *inner), labels.source.dtype,
                                   reshaped(labels.all_batches(), (-1, *inner)))))
        arrays.append((SAMPLE_WEIGHT, Stream(
            (count, plan.size, width), np.dtype(np.float32),
            weight_blocks(plan.lengths, width, maker.side, plan.size, maker.job.block_bytes))))
    rows = maker.job.targets(maker.source, plan.order)  # pad rows (order -1) get zeros
    if rows is not None:
        assert isinstance(rows, Stream), "batch runs on the local engine only"
        arrays.append(("y", Stream((count, plan.size, *rows.shape[1:]), rows.dtype,
                                   (block.reshape(-1, plan.size, *block.shape[1:])
                                    for block in whole_batches(rows, plan.size)))))
        if bool(np.any(plan.order == PAD_ROW)):  # pad rows must not count in the loss
            weights = (plan.order >= 0).astype(np.float32)
            arrays.append((SAMPLE_WEIGHT, weights.reshape(count, plan.size)))
    return arrays


def weight_blocks(lengths: np.ndarray, width: int, side: Side, size: int,
                  block_bytes: int) -> Iterator[np.ndarray]:
    """``sample_weight`` of per-timestep labels, 1 on real steps, made when the writer gets to
    it (a batch output has thousands of batches), whole batches of ``size`` rows at a time."""
    batches = max(block_bytes // max(size * width * 4, 1), 1)
    for start in range(0, len(lengths), batches * size):
        mask = real_mask(lengths[start:start + batches * size], width, side)
        yield mask.astype(np.float32).reshape(-1, size, width)


def reshaped(blocks: Iterable[np.ndarray], shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """Each block as ``shape``: a label batch ``(B, W, k)`` as ``(B, W)`` for 1-D labels."""
    for block in blocks:
        yield block.reshape(shape)


def whole_batches(rows: Stream, size: int) -> Iterator[np.ndarray]:
    """The blocks of ``rows`` regrouped to hold whole batches of ``size`` rows."""
    held = np.zeros((0, *rows.shape[1:]), dtype=rows.dtype)
    for block in rows.blocks:
        held = np.concatenate([held, block])
        cut = len(held) - len(held) % size
        if cut:
            yield held[:cut]
            held = held[cut:]


def per_batch_roles(plan: BatchPlan, maker: BatchMaker,
                    labels: BatchMaker | None = None) -> list[tuple[str, Any]]:
    arrays: list[tuple[str, Any]] = []
    offsets = plan.offsets
    features = maker.source.n_features
    pad_rows = bool(np.any(plan.order == PAD_ROW))
    for index in range(plan.num_batches):  # a few small entries per batch, no data yet
        rows_count, width = int(plan.sizes[index]), int(plan.widths[index])
        arrays.append((BATCH_KEY.format(role="x", index=index),
                       Stream((rows_count, width, features), maker.source.dtype,
                              OneBatch(maker, index))))
        where = slice(int(offsets[index]), int(offsets[index + 1]))
        arrays.append((BATCH_KEY.format(role="lengths", index=index), plan.lengths[where]))
        if labels is not None:
            inner = (rows_count, width, *labels.source.step_shape)
            arrays.append((BATCH_KEY.format(role="y", index=index), Stream(
                inner, labels.source.dtype, reshaped(OneBatch(labels, index), inner))))
            arrays.append((BATCH_KEY.format(role=SAMPLE_WEIGHT, index=index), Stream(
                (rows_count, width), np.dtype(np.float32),
                reshaped(weight_blocks(plan.lengths[where], width, maker.side, rows_count,
                                       maker.job.block_bytes), (rows_count, width)))))
        rows = maker.job.targets(maker.source, plan.order[where])
        if rows is not None:
            arrays.append((BATCH_KEY.format(role="y", index=index), rows))
            if pad_rows:  # pad rows must not count in the loss
                arrays.append((BATCH_KEY.format(role=SAMPLE_WEIGHT, index=index),
                               (plan.order[where] >= 0).astype(np.float32)))
    arrays.append(("order", plan.order))
    return arrays


class OneBatch:
    """The blocks of one batch's ``x``: computed when the writer gets to it."""

    def __init__(self, maker: BatchMaker, index: int) -> None:
        self.maker = maker
        self.index = index

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.maker.batch(self.index)


class BatchMaker:
    """Pads batches a chunk at a time, gathering each chunk's samples from the input."""

    def __init__(self, job: Job, source: Source, plan: BatchPlan, side: Side,
                 value: float, stored_value: float | None = None) -> None:
        self.job = job
        self.source = source
        self.plan = plan
        self.side = side
        self.value = value
        #: the value the input's stored pad steps hold (see stored_rows), None when not known
        self.stored_value = stored_value
        step_bytes = max(source.n_features * source.dtype.itemsize, 1)
        real = plan.order >= 0
        in_steps = np.zeros(plan.order.shape[0], dtype=np.int64)
        per_sample = (source.lengths if source.timesteps is None
                      else np.full(source.n_samples, source.timesteps))
        in_steps[real] = per_sample[plan.order[real]]
        row_batch = np.repeat(np.arange(plan.num_batches), plan.sizes)
        in_cost = np.bincount(row_batch, weights=in_steps, minlength=plan.num_batches)
        costs = (plan.sizes * plan.widths + in_cost.astype(np.int64)) * step_bytes
        self.chunks = bounds_within(costs, job.block_bytes)
        self.chunk_of = np.repeat(np.arange(len(self.chunks)),
                                  [stop - start for start, stop in self.chunks])
        self.blocks = np.array(source.block_bounds(job.block_bytes), dtype=np.int64)
        self.cached: tuple[int, list[np.ndarray]] | None = None

    def batch(self, index: int) -> np.ndarray:
        chunk = int(self.chunk_of[index])
        if self.cached is None or self.cached[0] != chunk:
            self.cached = None  # free the previous chunk before making the next
            self.cached = (chunk, self.make_chunk(*self.chunks[chunk]))
        return self.cached[1][index - self.chunks[chunk][0]]

    def all_batches(self) -> Iterator[np.ndarray]:
        """Every batch of a uniform plan, a chunk at a time as one ``(chunk, B, T, F)`` block."""
        plan = self.plan
        for start, stop in self.chunks:
            width = int(plan.widths[start])
            tensor = self.stored_rows(start, stop)
            if tensor is None:
                tensor = pad_batch(self.rows(start, stop), width, self.side, self.value).tensor
            yield tensor.reshape(stop - start, plan.size, width, self.source.n_features)
            self.report(stop)

    def rows(self, start: int, stop: int) -> SequenceSet:
        """The output rows of batches ``start:stop``: gathered samples, empty pad rows."""
        offsets = self.plan.offsets
        order = self.plan.order[int(offsets[start]):int(offsets[stop])]
        real = order >= 0
        picked = gather(self.source, order[real], self.blocks)
        lengths = np.zeros(order.shape[0], dtype=LENGTH_DTYPE)
        lengths[real] = picked.lengths
        return SequenceSet(picked.values, lengths)

    def stored_rows(self, start: int, stop: int) -> np.ndarray | None:
        """The output rows of batches ``start:stop`` read as stored, when they are a run of
        the input's stored tensor that padding would only write again: consecutive samples in
        input order, no pad row, every batch as wide as the input and padded on its side, with
        the pad value its pad steps hold (or none in these rows). Else None."""
        source, plan = self.source, self.plan
        if (source.stored_reader is None or source.timesteps is None
                or self.side != source.side
                or not bool(np.all(plan.widths[start:stop] == source.timesteps))):
            return None
        order = plan.order[int(plan.offsets[start]):int(plan.offsets[stop])]
        first = int(order[0]) if order.size else -1
        if first < 0 or not np.array_equal(order, np.arange(first, first + order.size)):
            return None
        last = first + order.size
        if not pads_as_stored(self.stored_value, self.value, source.dtype,
                              source.lengths[first:last], source.timesteps):
            return None
        return source.read_stored(first, last)

    def report(self, stop: int) -> None:
        offsets = self.plan.offsets
        if self.job.options.progress is not None:
            self.job.options.progress(int(offsets[stop]), int(offsets[-1]))

    def make_chunk(self, start: int, stop: int) -> list[np.ndarray]:
        plan = self.plan
        offsets = plan.offsets
        stored = self.stored_rows(start, stop)
        if stored is not None:
            self.report(stop)
            return np.split(stored, (offsets[start + 1:stop] - offsets[start]).astype(np.intp))
        rows = self.rows(start, stop)
        batches = []
        for index in range(start, stop):  # one vectorised pad per batch
            first = int(offsets[index] - offsets[start])
            last = int(offsets[index + 1] - offsets[start])
            result = pad_batch(rows.select(first, last), int(plan.widths[index]), self.side,
                               self.value)
            batches.append(result.tensor)
        self.report(stop)
        return batches
