"""``lstmshape inspect``: what an input holds and whether an LSTM can take it as it is.

:func:`inspect_file` returns one JSON-ready dict (the ``--json`` output, documented in the
README); the CLI renders the same dict as a rich table for people.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import CheckFailed, InputError, OptionError
from ..io.location import Location, parse_location
from ..io.source import DEFAULT_MEMORY_LIMIT, Source, open_source
from ..io.table import TableOptions, is_table, table_listing
from ..job import BLOCK_SHARE, target_entry
from ..ops.stats import ValueStats, length_histogram, length_statistics
from ..ops.tradeoffs import DEFAULT_BATCH_SIZE, candidate_labels, maxlen_tradeoffs
from ..words import plural


def list_arrays(location: Location, memory_limit: int) -> list[dict[str, Any]]:
    """Every array in a container (like ``h5ls -r``): key, shape and dtype."""
    if location.is_stdio or location.suffix == ".npy" or not os.path.isfile(location.path):
        return []
    if location.suffix == ".npz":
        from ..io.npz import NpzArchive, NpzMemberArray

        archive = NpzArchive(location.path, memory_limit, allow_pickle=True)
        try:
            listing: list[dict[str, Any]] = []
            for key in archive.keys():  # noqa: SIM118 - not a dict
                try:
                    member = NpzMemberArray(archive, key)
                    listing.append({"key": key, "shape": list(member.shape),
                                    "dtype": str(member.dtype)})
                except InputError as err:
                    listing.append({"key": key, "shape": None, "dtype": f"unreadable: {err}"})
            return listing
        finally:
            archive.close()
    if location.suffix == ".h5":
        from ..io.h5 import H5File

        h5 = H5File(location.path, memory_limit)
        try:
            return [{"key": name, "shape": list(shape), "dtype": dtype}
                    for name, shape, dtype in h5.listing()]
        finally:
            h5.close()
    return []


def parse_expected_shape(text: str) -> list[int | None]:
    """``'*,100,8'`` to ``[None, 100, 8]`` (``*`` matches anything).

    Example:
        >>> parse_expected_shape("*, 100, 8")
        [None, 100, 8]
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        shape = [None if p in ("*", "") else int(p) for p in parts]
    except ValueError:
        shape = []
    if len(shape) != 3:
        raise OptionError(f"--expect-shape {text!r}: expected samples,timesteps,features as "
                          f"three comma-separated integers or '*', e.g. '*,100,8'")
    return shape


def inspect_file(src: str, *, memory_limit: int = DEFAULT_MEMORY_LIMIT, allow_pickle: bool = False,
                 lengths: str | None = None, pad_value: float | None = None,
                 expect_shape: str | None = None, maxlens: Sequence[str | int] = (),
                 batch_size: int = DEFAULT_BATCH_SIZE, plot: str | None = None,
                 table: TableOptions | None = None,
                 layout: str | None = None) -> dict[str, Any]:
    """Describe ``src``: layout, shape, length statistics, value checks and an LSTM verdict.

    ``maxlen_tradeoffs`` holds what each candidate maxlen (p50 ... max and ``maxlens``) costs,
    with ``batch_size`` for the bucketed and per-batch figures (see
    :mod:`lstmshape.ops.tradeoffs`); ``plot`` writes the lengths and those costs to a PNG
    (needs matplotlib). Raises :class:`~lstmshape.errors.CheckFailed` when ``expect_shape``
    does not match. ``table``: ``--id``, ``--time``... for a long table; a table is described by
    its columns, row count, list columns and likely id/time columns too (``table``), and
    without ``--id`` a long table's report says which command reads it.
    does not match. ``layout``: ``"samples"`` or ``"series"`` reads a 2-D array one way; by
    default it is read as samples and the report's ``readings`` show both ways, each with the
    command that makes it LSTM-ready.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
        >>> np.save(path, np.zeros((4, 10, 3), np.float32))
        >>> report = inspect_file(path)
        >>> report["kind"], report["input_shape"], report["lstm_ready"]
        ('dense', [10, 3], True)
    """
    location = parse_location(src)
    # before anything is read: a bad --maxlen, a missing extra or an unwritable folder fail now
    candidate_labels(maxlens)
    if plot is not None:
        check_plot_path(plot)
    report: dict[str, Any] = {"path": location.path, "key": location.key,
                              "arrays": list_arrays(location, memory_limit)}
    series = layout == "series"
    flags = table_flags(table, series)
    if is_table(location.path) and os.path.isfile(location.path):
        report["table"] = table_listing(location.path, memory_limit)
    try:
        source = open_source(location, memory_limit=memory_limit, allow_pickle=allow_pickle,
                             lengths_file=lengths, table=table, series=series)
    except OptionError as err:
        listing = report.get("table")
        if listing is None or (table is not None and table.id is not None) or plot is not None:
            raise
        # a long table without --id: the answer is which columns to group it by
        guess = (f" --id {shlex.quote(listing['likely_id'] or 'COL')}"
                 + (f" --time {shlex.quote(listing['likely_time'])}"
                    if listing["likely_time"] else ""))
        path = shlex.quote(location.path)
        report.update(kind=None, lstm_ready=False, input_shape=None, maxlen_tradeoffs=None,
                      problem=str(err),
                      suggestion=(f"lstmshape inspect {path}{guess}   # then: lstmshape pad "
                                  f"{path}{guess} --maxlen p95 -o train.npy"))
        return report
    except InputError as err:
        # a listing is an answer to "what is in it?", but not a picture of one array's lengths
        if (len(report["arrays"]) > 1 and location.key is None and "pick one" in str(err)
                and plot is None):
            keys = [shlex.quote(f"{location.path}:{entry['key']}")
                    for entry in report["arrays"][:3]]
            report.update(kind=None, lstm_ready=False, input_shape=None, maxlen_tradeoffs=None,
                          suggestion=f"pick an array or group: lstmshape inspect {keys[0]}"
                                     + "".join(f" (or {key})" for key in keys[1:]))
            return report
        raise
    with source:
        report.update(describe(source, pad_value, max(memory_limit // BLOCK_SHARE, 1 << 16)))
        where = shlex.quote(str(source.location))
        if flags and isinstance(report["suggestion"], str) and where in report["suggestion"]:
            report["suggestion"] = report["suggestion"].replace(where, where + flags, 1)
        # the suggestion stays one runnable command (the default reading's); both are here
        report["readings"] = readings(source) if layout is None else None
        # from the lengths alone: the values were read once, block by block, by describe()
        rows = maxlen_tradeoffs(source.lengths, features=source.n_features,
                                itemsize=source.dtype.itemsize, batch_size=batch_size,
                                extra=maxlens)
        varied = bool(np.any(source.lengths != source.lengths.max())) if rows else False
        # every row of an unpadded dense tensor says "T timesteps, no padding": shown only
        # when asked for with --maxlen
        report["maxlen_tradeoffs"] = ([row.to_dict() for row in rows]
                                      if varied or maxlens else None)
        if plot is not None:
            from ..plot import write_length_plot

            write_length_plot(plot, source.lengths, rows, str(location))
    if expect_shape is not None:
        check_expected_shape(report, expect_shape)
    return report


def table_flags(table: TableOptions | None, series: bool) -> str:
    """The reading options as command-line flags, for a suggested command.

    Example:
        >>> table_flags(TableOptions(id="user", time="ts"), False)
        ' --id user --time ts'
        >>> table_flags(TableOptions(id="user", target="tag", target_kind="timestep"), False)
        ' --id user --target tag --target-kind timestep'
    """
    flags = " --layout series" if series else ""
    if table is None:
        return flags
    # the default --target-kind (sequence) goes unsaid; per-timestep labels must be asked for
    per_step = table.target is not None and table.target_kind == "timestep"
    for flag, value in (("--id", table.id), ("--time", table.time),
                        ("--features", None if table.features is None
                         else ",".join(table.features)), ("--target", table.target),
                        ("--target-kind", "timestep" if per_step else None)):
        if value is not None:
            flags += f" {flag} {shlex.quote(value)}"
    return flags


def check_plot_path(plot: str) -> None:
    """Refuse a ``--plot`` that cannot be written, before the input is read."""
    from ..io.output import check_writable_folder
    from ..plot import import_matplotlib

    if os.path.splitext(plot)[1].lower() != ".png":
        raise OptionError(f"--plot {plot}: expected a .png file name")
    import_matplotlib(f"--plot {plot}")
    check_writable_folder(plot)


def describe(source: Source, pad_value: float | None, block_bytes: int) -> dict[str, Any]:
    """The report's fields for an opened input, reading it block by block."""
    if pad_value is None:
        pad_value = source.pad_value if source.pad_value is not None else 0.0
    stats = ValueStats(pad_value=pad_value)
    for start, stop in source.block_bounds(block_bytes):
        stats.add(source.read_block(start, stop))
    dense = source.kind == "dense"
    timesteps = source.timesteps if dense else None
    stored_3d = dense and len(source.records[0].shape) == 3
    # batch's output: every stored batch is a (B, T_k, F) tensor an LSTM with
    # input_shape (None, F) takes as it is, even when T_k differs between batches
    batched = source.layout == "batches"
    padded = dense and bool(np.any(source.lengths != timesteps))
    ready = (stored_3d or batched) and stats.nan == 0 and stats.inf == 0
    size = source.n_samples * (timesteps or 0) * source.n_features * source.dtype.itemsize
    if not dense:
        size = int(source.lengths.sum()) * source.n_features * source.dtype.itemsize
    report: dict[str, Any] = {
        "key": source.location.key,
        "kind": "dense" if dense else "ragged",
        "layout": source.layout,
        "layout_detail": source.detail,
        "samples": source.n_samples,
        "timesteps": timesteps,
        "features": source.n_features,
        "dtype": str(source.dtype),
        "nbytes": size,
        "lengths": {**length_statistics(source.lengths),
                    "histogram": [list(b) for b in length_histogram(source.lengths)]},
        "padded": padded,
        "nan": stats.nan,
        "inf": stats.inf,
        "value_range": None if stats.minimum is None else [stats.minimum, stats.maximum],
        "pad_value": "nan" if math.isnan(pad_value) else pad_value,
        "pad_collisions": stats.collisions,
        "feature_names": source.feature_names,
        "manifest": None if source.manifest is None else source.manifest.path,
        "lstm_ready": ready,
        "input_shape": [timesteps, source.n_features] if dense else [None, source.n_features],
        "suggestion": None if ready else suggestion(source, stored_3d, stats),
        "targets": None if source.target_kind is None else
        target_entry(source, timesteps if dense else None),
    }
    return report


def readings(source: Source) -> list[dict[str, Any]] | None:
    """Both readings of a plain 2-D array -- ``(N, T)`` token ids, or one ``(T, F)`` recording
    -- each with its shape and the command that makes it LSTM-ready; None for anything else.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "ecg.npy"); np.save(path, np.zeros((7500, 1)))
        >>> with open_source(path) as src:
        ...     [r["layout"] for r in readings(src)], readings(src)[1]["input_shape"]
        (['samples', 'series'], [100, 1])
    """
    stored = source.records[0].shape
    if source.layout != "dense" or len(stored) != 2:
        return None
    rows, columns = int(stored[0]), int(stored[1])
    where = shlex.quote(str(source.location))
    stem = os.path.splitext(os.path.basename(source.location.path))[0] or "out"
    window = max(min(rows // 10, 100), 1)
    return [
        {"layout": "samples", "samples": rows, "timesteps": columns, "features": 1,
         "meaning": f"{plural(rows, 'sample')} of {plural(columns, 'timestep')}, 1 feature "
                    f"(token ids; how pad_sequences reads it)",
         "input_shape": [columns, 1],
         "command": f"lstmshape pad {where} -o {shlex.quote(stem + '_3d.npy')}"},
        {"layout": "series", "samples": 1, "timesteps": rows, "features": columns,
         "meaning": f"one series of {plural(rows, 'timestep')} x {plural(columns, 'feature')} "
                    f"(a recording)",
         "input_shape": [window, columns],
         "command": f"lstmshape window {where} --timesteps {window} -o "
                    f"{shlex.quote(stem + '_windows.npy')}"},
    ]


def suggestion(source: Source, stored_3d: bool, stats: ValueStats) -> str | None:
    """The command that makes this input LSTM-ready, or None when it already is."""
    where = shlex.quote(str(source.location))
    stem = os.path.splitext(os.path.basename(source.location.path))[0] or "out"
    if stats.nan or stats.inf:
        return (f"{stats.nan:,} NaN and {stats.inf:,} inf values: clean or impute them before "
                f"training (an LSTM propagates NaN through every later timestep)")
    if source.layout == "series":  # one long recording: windows of it are the samples
        window = max(min(int(source.lengths.max()) // 10, 100), 1)
        return (f"lstmshape window {where} --timesteps {window} -o "
                f"{shlex.quote(stem + '_windows.npy')}")
    if source.kind == "dense":
        if stored_3d:
            return None
        return f"lstmshape pad {where} -o {shlex.quote(stem + '_3d.npy')}"
    stats_ = length_statistics(source.lengths)
    maxlen = "p95" if stats_["max"] > 2 * stats_["p95"] else "max"
    return f"lstmshape pad {where} --maxlen {maxlen} -o {shlex.quote(stem + '_padded.npy')}"


def check_expected_shape(report: dict[str, Any], text: str) -> None:
    expected = parse_expected_shape(text)
    actual = [report.get("samples"), report.get("timesteps"), report.get("features")]
    mismatch = any(e is not None and e != a for e, a in zip(expected, actual, strict=False))
    if len(expected) != 3 or mismatch:
        shown = ",".join("*" if a is None else str(a) for a in actual)
        raise CheckFailed(f"{report['path']}: shape ({shown}) does not match expected "
                          f"({text})")
