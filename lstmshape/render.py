"""Everything lstmshape shows to people: rich tables, progress bars, warnings and summaries.

Only this module and the CLI import rich. Output goes to stderr except what the user asked to see
(``inspect``'s report, ``schema``), so ``-o -`` can stream a tensor to stdout. Colour follows
rich's rules: none when the stream is not a terminal, none when ``NO_COLOR`` is set.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .words import plural, shown_rows

HISTOGRAM_WIDTH = 30


# markup=False: keys, paths and names come from the user's files; "[f0, f1]" or an HDF5 key
# "a[/]" must print as written, not be parsed as rich styles. Styles go through Text objects.
class PipeConsole(Console):
    """A Console whose closed pipe (``lstmshape inspect ... | head -1``) is a plain
    BrokenPipeError, which the CLI turns into a quiet exit 141 like any other write to a closed
    stdout; rich's own reaction (``on_broken_pipe``, meant to be overridden) is exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")


def stdout_console() -> Console:
    return PipeConsole(file=sys.stdout, highlight=False, soft_wrap=True, markup=False)


def stderr_console() -> Console:
    return PipeConsole(file=sys.stderr, highlight=False, soft_wrap=True, markup=False)


def warn(message: str) -> None:
    console = stderr_console()
    console.print(Text("Warning: ", style="yellow bold") + Text(message))


def summary(message: str) -> None:
    """A one-line summary for a person at a terminal; nothing when stderr is piped."""
    if sys.stderr.isatty():
        stderr_console().print(Text(message, style="green"))


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A callback ``(done, total)`` drawing a progress bar on stderr, or None when disabled."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("samples"), TaskProgressColumn(), SpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr_console(), transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


class SpeedColumn(ProgressColumn):
    """Throughput in samples per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} samples/s")


def format_shape(shape: Any) -> str:
    if shape is None:
        return "?"
    dims = ["?" if d is None else str(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"


def render_inspect(report: dict[str, Any]) -> None:
    """Print an ``inspect`` report as tables: container listing, the data, the verdict."""
    console = stdout_console()
    title = report["path"] + (f":{report['key']}" if report.get("key") else "")
    if report.get("arrays"):
        listing = Table(title=f"{report['path']} holds", title_justify="left", show_edge=False)
        listing.add_column("key")
        listing.add_column("shape")
        listing.add_column("dtype")
        first, hidden, last = shown_rows(report["arrays"])
        for entry in first:
            listing.add_row(entry["key"], format_shape(entry["shape"]), entry["dtype"])
        if hidden:  # np.savez(*270 arrays) is one set, not 270 rows to read
            listing.add_row(f"... {hidden:,} more ...", "", "")
        for entry in last:
            listing.add_row(entry["key"], format_shape(entry["shape"]), entry["dtype"])
        listing.caption = f"{plural(len(report['arrays']), 'array')}" if hidden else None
        console.print(listing)
    if report.get("table"):
        info = report["table"]
        columns = Table(title=f"{report['path']}: table of {info['rows']:,} rows",
                        title_justify="left", show_edge=False)
        columns.add_column("column")
        columns.add_column("type")
        columns.add_column("")
        for entry in info["columns"]:
            role = ("likely --id" if entry["name"] == info["likely_id"] else
                    "likely --time" if entry["name"] == info["likely_time"] else
                    "list column" if entry["name"] in info["list_columns"] else "")
            columns.add_row(entry["name"], entry["type"], role)
        console.print(columns)
    if report.get("kind") is None:
        console.print(Text(report.get("suggestion") or "", style="yellow"))
        return
    table = Table(title=title, title_justify="left", show_header=False, show_edge=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    lengths = report["lengths"]
    rows = [
        ("kind", report["kind"] if report["layout"] == report["kind"]
         else f"{report['kind']} ({report['layout']}"
              + (f": {report['layout_detail']})" if report.get("layout_detail") else ")")),
        ("samples", f"{report['samples']:,}"),
        ("timesteps", str(report["timesteps"]) if report["timesteps"] is not None
         else "variable"),
        ("features", f"{report['features']}  [{', '.join(report['feature_names'][:8])}"
                     f"{', ...' if report['features'] > 8 else ''}]"),
        ("dtype", report["dtype"]),
        ("size", human_bytes(report["nbytes"])),
        ("lengths", f"min {lengths['min']}  p50 {lengths['p50']:g}  p95 {lengths['p95']:g}  "
                    f"max {lengths['max']}  mean {lengths['mean']:.2f}"),
        ("NaN / inf", f"{report['nan']:,} / {report['inf']:,}"),
        ("value range", "empty" if report["value_range"] is None
         else f"{report['value_range'][0]:g} .. {report['value_range'][1]:g}"),
        ("pad value hits", f"{plural(report['pad_collisions'], 'real timestep')} equal"
                           f"{'s' if report['pad_collisions'] == 1 else ''} the pad value "
                           f"{report['pad_value']} in every feature"),
    ]
    targets = report.get("targets")
    if targets:
        each = format_shape(targets["shape"]) if targets["shape"] else "one value"
        rows.append(("targets", f"{targets['kind']}-level y, {each} per sample, "
                                f"{targets['dtype']}"))
    if report.get("manifest"):
        rows.append(("manifest", os.path.relpath(report["manifest"])))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    histogram = lengths.get("histogram") or []
    if len(histogram) > 1:
        console.print(Text("lengths histogram", style="bold"))
        peak = max(count for _, _, count in histogram) or 1
        for low, high, count in histogram:
            bar = "█" * max(1 if count else 0, round(HISTOGRAM_WIDTH * count / peak))
            console.print(f"  {low:>6}-{high:<6} {bar:<{HISTOGRAM_WIDTH}} {count:,}")
    if report.get("maxlen_tradeoffs"):
        console.print(tradeoff_table(report["maxlen_tradeoffs"]))
    if report.get("readings"):
        console.print(Text("A 2-D array reads two ways (pick one with --layout):", style="bold"))
    for reading in report.get("readings") or []:
        shape = ", ".join("None" if d is None else str(d) for d in reading["input_shape"])
        console.print(Text(f"  --layout {reading['layout']}: ", style="bold")
                      + Text(f"{reading['meaning']} -> input_shape=({shape}): "
                             f"{reading['command']}"))
    if report["lstm_ready"]:
        shape = ", ".join("None" if d is None else str(d) for d in report["input_shape"])
        console.print(Text(f"LSTM-ready: input_shape=({shape})", style="green bold"))
    else:
        console.print(Text("Not LSTM-ready: ", style="yellow bold") +
                      Text(report.get("suggestion") or ""))


def tradeoff_table(rows: list[dict[str, Any]]) -> Table:
    """``inspect``'s maxlen trade-off rows as a table; the ``pad --maxlen p95`` row marked."""
    size = rows[0]["batch_size"]
    table = Table(title="maxlen trade-offs", title_justify="left", show_edge=False,
                  caption=f"◀ pad --maxlen p95 picks this; bucketed: batch --bucket-by-length "
                          f"--size {size} --maxlen N", caption_justify="left")
    for name in ("maxlen", "padded", "samples\ncut", "timesteps\ndropped", "tensor",
                 "bucketed\npadded", f"batch\nof {size}"):
        table.add_column(name, justify="left" if name == "maxlen" else "right", no_wrap=True)
    for row in rows:
        name = str(row["maxlen"])
        if row["candidate"] != name:  # a number given with --maxlen is its own name
            name = f"{row['candidate']} {name}"
        table.add_row(
            name + (" ◀" if row["pad_p95"] else ""), f"{row['padded_share']:.1%}",
            f"{row['truncated_samples']:,}",
            f"{row['dropped_timesteps']:,} ({row['dropped_share']:.1%})",
            human_bytes(row["tensor_bytes"]), f"{row['bucketed_padded_share']:.1%}",
            human_bytes(row["batch_bytes"]), style="bold" if row["pad_p95"] else None)
    return table


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"


def render_verify(report: dict[str, Any]) -> None:
    """Print a passed ``verify`` report: the files checked, the tensor, the model run."""
    console = stdout_console()
    files = Table(title=f"{report['path']} against {os.path.relpath(report['manifest'])}",
                  title_justify="left", show_edge=False)
    for column in ("role", "file", "shape", "dtype", "sha256"):
        files.add_column(column)
    def add(row: dict[str, Any]) -> None:
        where = row["path"] + (f":{row['key']}" if row.get("key") else "")
        files.add_row(row["role"], where, format_shape(row["shape"]), row["dtype"],
                      "ok" if row.get("sha256_ok") else "not recorded"
                      if row.get("sha256") is None else "differs")

    rows = report.get("files", [])
    first, hidden, last = shown_rows(rows)
    for row in first:
        add(row)
    if hidden:  # a batched output: thousands of x_NNNNNN, all checked (--json lists them)
        checked = all(row.get("sha256_ok") for row in rows[len(first):len(rows) - len(last)])
        files.add_row(f"... {hidden:,} more ...", "", "", "", "ok" if checked else "see --json")
    for row in last:
        add(row)
    console.print(files)
    model = report.get("model")
    rows = [
        ("layout", report.get("layout") or "?"),
        ("shape", f"{report['samples']:,} samples, input_shape="
                  f"{format_shape(report['input_shape'])}, {report.get('dtype')}"),
        ("NaN / inf", f"{report.get('nan', 0):,} / {report.get('inf', 0):,}"),
        ("model", "skipped (--no-model)" if model is None else
         f"{' -> '.join(model['layers'])} on {model['samples']} samples -> "
         f"{format_shape(model['output_shape'])}"),
    ]
    table = Table(show_header=False, show_edge=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(Text(f"OK: {report['path']} matches its manifest", style="green bold"))
