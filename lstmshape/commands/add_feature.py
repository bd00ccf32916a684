"""``lstmshape add-feature``: extra arrays concatenated to a base along the feature axis.

Every input is checked against the base before any data is read (sample counts, timesteps,
sequence lengths, dtypes), so a mismatch is one line that names both shapes. The data is then
read block by block -- the same samples from the base and from every extra -- and written as it
goes. A dense base gives a dense ``x``; a ragged base gives ragged ``values`` + ``lengths``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import InputError, OptionError
from ..io.output import Stream
from ..io.source import Source
from ..job import IOOptions, Job, Result
from ..like import adopt, open_like, resolve
from ..manifest import ManifestData, json_number
from ..ops.add_feature import Mode, Shape, common_dtype, extra_mode, join_features
from ..ops.pad import check_value_fits, pad
from ..sequences import SequenceSet, Side, check_side

#: Each option's default, when neither given nor taken from a ``like`` manifest.
DEFAULTS: dict[str, Any] = {"static": False, "fill": 0.0, "padding": "post", "names": ()}


def add_feature_file(base_src: str, extra_srcs: Sequence[str], options: IOOptions, *,
                     static: bool | None = None, fill: float | None = None,
                     padding: Side | None = None, names: Sequence[str] | None = None,
                     like: str | None = None) -> dict[str, Any]:
    """Add the features of ``extra_srcs`` to ``base_src``; returns the manifest written.

    With ``static``, every extra is ``(N,)`` or ``(N, k)``: one row per sample, repeated over
    that sample's timesteps. ``names`` name the new features (one per added feature).
    ``like``: the manifest of an earlier ``add-feature`` whose options (and so feature names)
    are reused where none is given here.

    Example:
        >>> import numpy as np, tempfile, os
        >>> folder = tempfile.mkdtemp(); base = os.path.join(folder, "x.npy")
        >>> extra = os.path.join(folder, "age.npy")
        >>> np.save(base, np.zeros((2, 3, 1), np.float32)); np.save(extra, np.array([30, 41]))
        >>> m = add_feature_file(base, [extra], IOOptions(os.path.join(folder, "out.npy")),
        ...                      static=True, names=["age"])
        >>> m["feature_names"], m["input_shape"], m["dtype_promotion"]["to"]
        (['f0', 'age'], [3, 2], 'float32')
    """
    if not extra_srcs:
        raise OptionError("add-feature needs at least one EXTRA input")
    recorded = open_like(like, "add-feature")
    chosen = resolve({"static": static, "fill": fill, "padding": padding, "names": names},
                     DEFAULTS, recorded)
    static, fill = bool(chosen["static"]), float(chosen["fill"])
    padding, names = check_side(chosen["padding"], "padding"), list(chosen["names"])
    params: dict[str, Any] = {"static": static, "fill": json_number(fill), "padding": padding,
                              "names": names}

    def produce(job: Job) -> Result:
        base = job.open(job.locations[0])
        extras = [open_extra(job, location, static) for location in job.locations[1:]]
        base_shape = shape_of(base)
        modes = [extra_mode(base_shape, shape_of(e, static), static) for e in extras]
        where = [str(base.location), *(str(e.location) for e in extras)]
        dtype, promoted = common_dtype([base.dtype, *(e.dtype for e in extras)], where)
        check_value_fits(fill, dtype, "fill")
        pad_value = base.pad_value if base.pad_value is not None else 0.0
        widths = [e.n_features for e in extras]
        new_names = feature_names(base, extras, widths, list(names))
        adopt(recorded, params, base.feature_names + new_names, base.location, job)
        features = base.n_features + sum(widths)
        out_step = features * dtype.itemsize
        dtypes = dict(zip(where, input_dtypes(base, extras), strict=True))
        if promoted:
            listed = ", ".join(f"{w} {d}" for w, d in dtypes.items())
            job.warn(f"mixed integer and float inputs ({listed}): the output is {dtype}")
        for extra, mode in zip(extras, modes, strict=True):
            # (N, k) with k < T reads as k timesteps of one feature, filled to T -- or was it
            # k values per sample? Both are legal; say which was taken.
            if (mode == "rows" and len(extra.records[0].shape) == 2
                    and extra.timesteps is not None and base.timesteps is not None
                    and extra.timesteps < base.timesteps):
                job.warn(f"{extra.location}: shape {extra.records[0].shape} taken as "
                             f"{extra.timesteps} timesteps of one feature, filled to "
                             f"{base.timesteps} with {fill:g}; if it is one row of values per "
                             f"sample, pass --static")

        def blocks() -> Iterator[np.ndarray]:
            steps = (base.lengths if base.timesteps is None
                     else np.full(base.n_samples, base.timesteps))
            extra_cost = steps * out_step + sum(extra_row_bytes(e, steps) for e in extras)
            for start, stop in job.blocks(base, extra_cost):
                yield combine(base, extras, modes, start, stop, padding, fill, dtype, pad_value)

        lengths = base.lengths
        arrays: list[tuple[str, Any]]
        if base.timesteps is not None:
            shape: tuple[int, ...] = (base.n_samples, base.timesteps, features)
            arrays = [("x", Stream(shape, dtype, blocks())), ("lengths", lengths)]
        else:
            arrays = [("values", Stream((int(lengths.sum()), features), dtype, blocks())),
                      ("lengths", lengths)]
        arrays.extend(job.kept_labels(base))  # per-timestep y (+ sample_weight)
        arrays.extend(job.side_arrays(base))  # y, and source_index for partition --by-source
        padded = base.timesteps is not None and (bool(np.any(lengths != base.timesteps))
                                                 or base.pad_value is not None)
        manifest = ManifestData(
            command="add-feature", params=params, inputs=[], outputs={},
            samples=base.n_samples, timesteps=base.timesteps, features=features,
            feature_names=base.feature_names + new_names, lengths=lengths,
            padding={"side": base.side, "value": json_number(pad_value)} if padded else None,
            history=job.history())
        offsets = np.cumsum([0, *widths])
        manifest.extra["added_features"] = [
            {"input": str(e.location), "mode": mode,
             "names": new_names[int(offsets[i]):int(offsets[i + 1])]}
            for i, (e, mode) in enumerate(zip(extras, modes, strict=True))]
        manifest.extra["dtype_promotion"] = (
            {"from": dtypes, "to": str(dtype)} if promoted else None)
        return Result(arrays, manifest)

    return Job("add-feature", [base_src, *extra_srcs], options).run(produce)


def open_extra(job: Job, location: Any, static: bool) -> Source:
    """A time extra opens like any input; a static one as plain rows (``(N,)`` or ``(N, k)``)."""
    if not static:
        return job.open(location, with_lengths=False)
    try:
        return job.open(location, series=True, with_lengths=False)
    except InputError as err:
        raise InputError(f"--static extra {err}") from None


def input_dtypes(base: Source, extras: list[Source]) -> list[str]:
    return [str(base.dtype), *(str(e.dtype) for e in extras)]


def shape_of(source: Source, static: bool = False) -> Shape:
    """What :func:`~lstmshape.ops.add_feature.extra_mode` checks, from metadata alone."""
    name = str(source.location)
    if static and source.layout == "series":
        stored: tuple[int | None, ...] = tuple(source.records[0].shape)
        return Shape(name, int(stored[0] or 0), None, source.n_features, source.lengths, stored)
    if source.timesteps is not None:
        stored = tuple(source.records[0].shape)
    else:
        stored = (source.n_samples, None, source.n_features)
    return Shape(name, source.n_samples, source.timesteps, source.n_features, source.lengths,
                 stored)


def extra_row_bytes(extra: Source, base_steps: np.ndarray) -> np.ndarray:
    """Bytes one sample of the extra takes when read (per base sample)."""
    item = extra.dtype.itemsize * extra.n_features
    if extra.layout == "series":
        return np.full(base_steps.shape[0], item, dtype=np.int64)
    steps = extra.lengths if extra.timesteps is None else np.full(extra.n_samples,
                                                                  extra.timesteps)
    return np.asarray(steps * item, dtype=np.int64)


def feature_names(base: Source, extras: list[Source], widths: list[int],
                  given: list[str]) -> list[str]:
    """Names of the added features: ``--name``s, else an extra's own (from its manifest), else
    ``f<position>``; duplicates are refused."""
    total = sum(widths)
    if given and len(given) != total:
        raise OptionError(f"{len(given)} --name for {total} added feature"
                          f"{'s' if total != 1 else ''}: give one --name per added feature, "
                          f"or none")
    if given:
        names = given
    else:
        names = []
        position = base.n_features
        for extra, width in zip(extras, widths, strict=True):
            own = None if extra.manifest is None else extra.manifest.data.get("feature_names")
            if isinstance(own, list) and len(own) == width:
                names.extend(str(n) for n in own)
            else:
                names.extend(f"f{position + i}" for i in range(width))
            position += width
    every = base.feature_names + names
    seen = {n for n in every if every.count(n) > 1}
    if seen:
        raise OptionError(f"feature name {sorted(seen)[0]!r} appears twice; name the added "
                          f"features with --name")
    return names


def combine(base: Source, extras: list[Source], modes: list[Mode], start: int, stop: int,
            padding: Side, fill: float, dtype: np.dtype, pad_value: float) -> np.ndarray:
    """Samples ``start:stop`` of the base with every extra's features, as the output stores them
    (``(n, T, F')`` for a dense base, flat ``(rows, F')`` values for a ragged one)."""
    block = base.read_block(start, stop)
    shape = Shape(str(base.location), stop - start, base.timesteps, base.n_features,
                  block.lengths, ())
    aligned: list[tuple[str, np.ndarray | SequenceSet, Mode]] = []
    for extra, mode in zip(extras, modes, strict=True):
        data: np.ndarray | SequenceSet
        if mode == "static":
            data = extra.read_rows(start, stop)
        elif mode == "sequences":
            data = extra.read_block(start, stop)
        else:
            data = full_rows(extra, start, stop)
        aligned.append((str(extra.location), data, mode))
    return join_features(shape, block.values, aligned, base.side, padding, fill, dtype,
                         pad_value)


def full_rows(extra: Source, start: int, stop: int) -> np.ndarray:
    """A dense extra's rows ``start:stop`` as stored: ``(n, T_e, k)``, padding included."""
    assert extra.timesteps is not None
    block = extra.read_block(start, stop)
    n = stop - start
    if bool(np.all(block.lengths == extra.timesteps)):
        return block.values.reshape(n, extra.timesteps, extra.n_features)
    value = extra.pad_value if extra.pad_value is not None else 0.0
    return pad(block, extra.timesteps, extra.side, value=value).tensor
