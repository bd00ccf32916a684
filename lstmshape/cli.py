"""The ``lstmshape`` command line: parse options, call the library, report.

Each command is a few lines around a function of :mod:`lstmshape.commands`. Errors are turned
into messages and exit codes in one place, :func:`main`:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success
1     bad input data, unreadable or damaged file, failed check, unwritable output
2     usage error (unknown option, malformed value) -- click's own
130   interrupted (SIGINT / Ctrl-C); 143 terminated (SIGTERM); 129 hangup (SIGHUP);
      141 stdout closed (``| head``), silently
====  ==========================================================================

Imports of numpy, h5py and rich happen inside the commands, so ``lstmshape --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from . import __version__
from .errors import LstmshapeError
from .io.threads import HANDLED_SIGNALS

F = TypeVar("F", bound=Callable[..., Any])

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143
DEBUG_ENV = "LSTMSHAPE_DEBUG"
SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
              "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
              "tib": 2**40}


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM/SIGHUP so that cleanup (temp files) runs as for
    Ctrl-C; a BaseException so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class ReportedError(click.ClickException):
    """An error shown as one ``Error: ...`` line, with the exit code of the library error."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(one_printable_line(message))
        self.exit_code = exit_code  # type: ignore[misc]


def one_printable_line(message: str) -> str:
    r"""The message on one line, control characters escaped: names from a hostile file (HDF5
    keys, zip member names) must not reach a terminal as escape sequences or line breaks.

    Example:
        >>> one_printable_line("no key '/a\x1b[31m';\n keys: /b")
        "no key '/a\\x1b[31m'; keys: /b"
    """
    text = " ".join(message.split())
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class Escaped(BaseException):
    """Carries whatever a command raised past click's ``main()`` to :func:`exit_code_for`:
    click would otherwise turn Ctrl-C into a blank line plus "Aborted!" and a closed stdout
    into a plain exit 1 before lstmshape could say anything."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class LstmshapeGroup(click.Group):
    """The command group. However it is run (the console script, ``CliRunner``, a call of
    ``cli()``), every way a command can end reaches :func:`exit_code_for`, the one place
    exceptions become messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BaseException as error:
            raise Escaped(error) from None

    def main(self, args: Any = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> int:
        """Run a command; its exit code is returned, or exited with when ``standalone_mode``."""
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except click.exceptions.Exit as exit_:
            code = exit_.exit_code
        except click.ClickException as err:  # click's usage errors, shown with their usage
            err.show()
            code = err.exit_code
        except click.exceptions.Abort:  # Ctrl-C while click itself had control
            code = exit_code_for(KeyboardInterrupt())
        except Escaped as escaped:
            code = exit_code_for(escaped.error)
        except (KeyboardInterrupt, Terminated, BrokenPipeError) as error:  # outside a command
            code = exit_code_for(error)
        if standalone_mode:
            sys.exit(code)
        return code


# ---------------------------------------------------------------------------------------------
# Parameter types


class ByteSize(click.ParamType):  # type: ignore[type-arg]
    """``256MB``, ``1GiB``, ``500k`` or a plain number of bytes."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in SIZE_UNITS:
            self.fail(f"{value!r} is not a size like 256MB, 1GiB or 1000000", param, ctx)
        size = int(float(match.group(1)) * SIZE_UNITS[unit])
        if size < 1 << 20:
            self.fail(f"{value!r} is below the smallest budget, 1MiB", param, ctx)
        return size


class MaxLen(click.ParamType):  # type: ignore[type-arg]
    """``N``, ``max`` or ``pNN``."""

    name = "N|max|pNN"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | str:
        from .ops.pad import parse_maxlen

        try:
            return parse_maxlen(value)
        except LstmshapeError as err:
            self.fail(err.cli_message.removeprefix(f"--maxlen {value!r}: "), param, ctx)


class DType(click.ParamType):  # type: ignore[type-arg]
    """A numpy dtype name lstmshape can write (bool, ints, float16/32/64)."""

    name = "DTYPE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import numpy as np

        from .io.arrays import check_dtype

        try:
            dtype = np.dtype(value)
            check_dtype(dtype, "--dtype")
        except (TypeError, LstmshapeError):
            self.fail(f"{value!r} is not a supported dtype (bool, int8..int64, uint8..uint64, "
                      f"float16, float32, float64)", param, ctx)
        return str(dtype)


class PadValue(click.ParamType):  # type: ignore[type-arg]
    name = "V"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number (or 'nan')", param, ctx)


SIDE = click.Choice(["pre", "post"])


# ---------------------------------------------------------------------------------------------
# Shared options


def table_options(command: F, with_target: bool = True) -> F:
    """How a table's rows become sequences, and how a 2-D array reads: shared by every command
    that reads an input (they all read through the one reader). ``with_target=False`` for
    ``window``, whose own ``--target`` names the columns to predict."""
    decorators = [
        click.option("--id", "table_id", metavar="COL",
                     help="Table: the column whose value groups rows into sequences."),
        click.option("--time", "table_time", metavar="COL",
                     help="Table: the column that orders the rows of a sequence "
                          "[default: file order]."),
        click.option("--features", "table_features", metavar="COL,...",
                     help="Table: the feature columns [default: every numeric column but id, "
                          "time and target]."),
        *([click.option("--target", "table_target", metavar="COL",
                        help="Table: the column that becomes the targets y."),
           click.option("--target-kind", "table_target_kind",
                        type=click.Choice(["sequence", "timestep"]), default="sequence",
                        show_default=True,
                        help="Table: one --target value per sequence, or one per timestep.")]
          if with_target else []),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def table_from(kwargs: dict[str, Any]) -> Any:
    """The TableOptions of the shared table options (removed from ``kwargs``)."""
    from .io.table import TableOptions

    features = kwargs.pop("table_features")
    return TableOptions(
        id=kwargs.pop("table_id"), time=kwargs.pop("table_time"),
        features=None if features is None else tuple(
            name.strip() for name in features.split(",") if name.strip()),
        target=kwargs.pop("table_target", None),
        target_kind=kwargs.pop("table_target_kind", "sequence"))


class ReadingCommand(click.Command):
    """A command of one SRC: an unquoted glob the shell expanded into several files gets a
    usage error that says to quote it, instead of click's "unexpected extra arguments"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click consumes the list it parses
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            paths = [a for a in given if not a.startswith("-") and os.path.isfile(a)]
            if "unexpected extra argument" not in err.message or len(paths) < 2:
                raise
            folder = os.path.dirname(paths[0]) or "."
            suffix = os.path.splitext(paths[0])[1] or ""
            raise click.UsageError(
                f"got {len(paths)} input files ({paths[0]}, {paths[1]}, ...): a glob the shell "
                f"expanded? Quote it so lstmshape reads them as one set: "
                f"'{folder}/*{suffix}'", ctx) from None


def input_options(command: F, with_target: bool = True) -> F:
    """Options about reading inputs, shared by every command."""
    decorators = [
        lambda command: table_options(command, with_target),
        click.option("--lengths", "lengths", metavar="FILE",
                     help="True lengths (int, one per sample) of a dense, padded input."),
        click.option("--allow-pickle", is_flag=True,
                     help="Allow object arrays (unpickles them: only for files you trust)."),
        click.option("--memory-limit", type=ByteSize(), default="256MB", show_default=True,
                     help="Memory budget; inputs are processed in blocks that fit it."),
        click.option("--layout", type=click.Choice(["samples", "series"]), default=None,
                     help="A 2-D array is (samples, timesteps) token ids -- the default, as "
                          "pad_sequences reads it -- or one (timesteps, features) series, and "
                          "each file of a folder one sequence [default: samples; window: "
                          "series]."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def output_options(command: F, with_target: bool = True) -> F:
    """Options every transforming command takes."""
    return transform_options(several=False, with_target=with_target)(command)


def transform_options(several: bool, with_target: bool = True) -> Callable[[F], F]:
    """The shared options, with one ``-o`` (or, ``several``, one ``-o`` per output)."""
    help_text = ("Output file; .npy, .npz, .h5 or .zarr (a directory) by suffix; '-' writes .npy "
                 "to stdout." if not several else
                 "An output file (.npy, .npz, .h5 or .zarr by suffix); one per part.")
    decorators = [
        click.option("-o", "--output", required=True, metavar="PATH", multiple=several,
                     help=help_text),
        click.option("--manifest", metavar="PATH",
                     help="Write the JSON manifest here instead of OUTPUT.json."),
        click.option("--no-manifest", is_flag=True, help="Do not write a manifest."),
        click.option("-q", "--quiet", is_flag=True, help="No warnings, no progress, no summary."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar on stderr (default: when stderr is a terminal)."),
        click.option("--nan", type=click.Choice(["keep", "error"]), default="keep",
                     show_default=True, help="'error' refuses NaN/inf in the data."),
        click.option("--no-digest-cache", is_flag=True,
                     help="Hash every input and record nothing in the digest cache "
                          "(also: LSTMSHAPE_NO_DIGEST_CACHE=1)."),
    ]

    def decorate(command: F) -> F:
        for decorator in reversed(decorators):
            command = decorator(command)
        return input_options(command, with_target)

    return decorate


def window_options(command: F) -> F:
    """:func:`output_options` for ``window``: its own ``--target COLS`` names the columns to
    predict, so the table's ``--target``/``--target-kind`` are not offered."""
    return output_options(command, with_target=False)


def engine_options(command: F) -> F:
    """``--engine local|dask`` with ``--scheduler`` or ``--workers`` (pad, truncate,
    normalize)."""
    decorators = [
        click.option("--engine", type=click.Choice(["local", "dask"]), default="local",
                     show_default=True,
                     help="Where the work runs: here, or on a Dask cluster (output: .zarr)."),
        click.option("--scheduler", metavar="ADDRESS",
                     help="--engine dask: a running 'dask scheduler', e.g. tcp://host:8786."),
        click.option("--workers", type=click.IntRange(min=1), metavar="N",
                     help="--engine dask: start a local cluster of N worker processes."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


Y_HELP = ("Targets (PATH[:KEY]): one row per sample, or per-timestep labels (N, T[, k]) / "
          "ragged with x's lengths. Default: a 'y' in the input.")
WINDOW_Y_HELP = ("Targets (PATH[:KEY]), one row per series row: the window starting at row i "
                 "gets y[i], as timeseries_dataset_from_array(targets=...).")


def target_options(command: F) -> F:
    """``--y SRC``, ``--y-kind`` and ``--y-value``: the targets, for every command that carries
    them (pad, truncate, add-feature, batch, window, normalize, partition). They reach the
    library as :class:`~lstmshape.job.IOOptions` ``y``, ``y_kind``, ``y_value``
    (:func:`run_transform` moves them there)."""
    decorators = [
        click.option("--y", "y", metavar="SRC", help=Y_HELP),
        click.option("--y-kind", type=click.Choice(["auto", "sequence", "timestep"]),
                     default="auto", show_default=True,
                     help="Per sample or per timestep; auto: (N, T[, k]) beside x of T "
                          "timesteps, or ragged, is per timestep."),
        click.option("--y-value", type=PadValue(), default=None,
                     help="Pad value of per-timestep targets [default: the one --like or the "
                          "input's manifest records, else 0]."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def check_engine_options(kwargs: dict[str, Any]) -> tuple[str | None, int | None]:
    """Usage errors (exit 2) about --engine; the scheduler address or worker count to use."""
    engine, scheduler, workers = (kwargs.pop("engine", "local"), kwargs.pop("scheduler", None),
                                  kwargs.pop("workers", None))
    if engine == "local":
        if scheduler is not None or workers is not None:
            raise click.UsageError("--scheduler and --workers apply to --engine dask")
        return None, None
    if (scheduler is None) == (workers is None):
        raise click.UsageError("--engine dask needs one of --scheduler ADDRESS (a running "
                               "'dask scheduler') or --workers N (a local cluster)")
    from .io.location import Location

    if Location(kwargs["output"]).suffix != ".zarr":
        raise click.BadParameter(f"{kwargs['output']!r}: --engine dask writes a .zarr output "
                                 f"(a directory store its workers fill at once)",
                                 param_hint="'-o' / '--output'")
    if kwargs.get("y") == "-":  # before a cluster is started; Job says the same to the library
        raise click.BadParameter("'-' reads the targets from stdin, which the dask engine's "
                                 "workers cannot read; give them as a file",
                                 param_hint="'--y'")
    return scheduler, workers


def like_option(command: F) -> F:
    """``--like MANIFEST``: take every option not given from an earlier run's manifest."""
    return click.option(
        "--like", metavar="MANIFEST",
        help="Reuse every option the manifest's run resolved (e.g. train.npy.json: its maxlen, "
             "dtype, padding; normalize: its statistics); options given here win.")(command)


def given_options(like: str | None, **options: Any) -> dict[str, Any]:
    """The options as the library takes them: with ``--like``, those left at their defaults are
    None, so the manifest's are used; an option typed on the command line wins."""
    if like is None:
        return options
    from click.core import ParameterSource

    context = click.get_current_context()
    return {name: None if context.get_parameter_source(name) is ParameterSource.DEFAULT
            else value for name, value in options.items()}


def check_output_option(output: str, manifest: str | None, no_manifest: bool) -> None:
    """Usage errors (exit 2) about where the output goes, found before any file is opened."""
    from .io.location import SUFFIXES, Location

    if manifest is not None and no_manifest:
        raise click.UsageError("--manifest and --no-manifest exclude each other")
    if output == "-":
        if sys.stdout.isatty():
            raise click.UsageError("-o - writes binary .npy to stdout, which is a terminal; "
                                   "redirect it to a file or pipe it to a program")
        return
    if Location(output).suffix not in SUFFIXES:
        raise click.BadParameter(f"{output!r} has no .npy, .npz, .h5 or .zarr suffix (the "
                                 f"suffix picks the format)", param_hint="'-o' / '--output'")


def run_transform(label: str, kwargs: dict[str, Any],
                  call: Callable[[Any], dict[str, Any] | list[dict[str, Any]]]) -> None:
    """Build IOOptions from the shared options, run the command, print warnings and summary.

    ``-o`` may be given several times (``partition``): ``options.output`` is then the first,
    and the command gets every one itself. rich (``render``) is imported only when something
    is shown: a piped run in a Makefile never pays for it.
    """
    from .job import IOOptions

    quiet = kwargs.pop("quiet")
    progress = kwargs.pop("progress")
    scheduler, workers = check_engine_options(kwargs)
    given = kwargs.pop("output")
    paths = list(given) if isinstance(given, tuple) else [given]
    for path in paths:
        check_output_option(path, kwargs["manifest"], kwargs["no_manifest"])
    show_progress = not quiet and (progress if progress is not None else sys.stderr.isatty())
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        callback = None
        if show_progress:
            from . import render

            callback = stack.enter_context(render.progress_bar(label, True))
        engine = None
        if scheduler is not None or workers is not None:
            from .dask_engine import DaskEngine

            engine = stack.enter_context(DaskEngine(scheduler, workers))
        options = IOOptions(engine=engine,
            output=paths[0], manifest=kwargs.pop("manifest"),
            no_manifest=kwargs.pop("no_manifest"), memory_limit=kwargs.pop("memory_limit"),
            allow_pickle=kwargs.pop("allow_pickle"), lengths=kwargs.pop("lengths"),
            progress=callback, on_warning=notes.append, nan=kwargs.pop("nan"),
            digest_cache=not kwargs.pop("no_digest_cache"), table=table_from(kwargs),
            y=kwargs.pop("y", None), y_kind=kwargs.pop("y_kind", "auto"),
            y_value=kwargs.pop("y_value", None),
            layout=kwargs.pop("layout"))
        result = call(options)
    if not quiet and (notes or sys.stderr.isatty()):
        from . import render

        for note in notes:
            render.warn(note)
        for path, manifest in zip(paths, result if isinstance(result, list) else [result],
                                  strict=True):
            outputs = manifest["outputs"]
            x: dict[str, Any] = (outputs.get("x") or outputs.get("values")
                                 or next(iter(outputs.values()), {}))
            render.summary(f"{label}: wrote {path} {render.format_shape(x.get('shape'))} "
                           f"{x.get('dtype', '')}, input_shape={manifest['input_shape']}")


# ---------------------------------------------------------------------------------------------
# Commands


@click.group(cls=LstmshapeGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lstmshape")
def cli() -> None:
    """Turn raw .npy/.npz/.h5 arrays into LSTM-ready (samples, timesteps, features) tensors.

    \b
    Example pipeline:
      lstmshape inspect raw.h5
      lstmshape pad raw.h5:/sensors --maxlen p95 -o train.npy
      lstmshape truncate train.npy --maxlen 50 -o short.npy

    Each transforming command writes OUTPUT and a JSON manifest OUTPUT.json beside it.
    Errors: one line on stderr, exit 1 (bad data) or 2 (bad usage).
    """


@cli.command()
@click.argument("sources", nargs=-1, required=True, metavar="SRC...")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (a list for several).")
@click.option("--expect-shape", metavar="N,T,F",
              help="Exit 1 unless the shape matches, e.g. '*,100,8' (* matches anything).")
@click.option("--pad-value", type=PadValue(), default=None,
              help="Value counted as padding (default: the manifest's, else 0).")
@click.option("--maxlen", "maxlens", type=MaxLen(), multiple=True,
              help="Add a maxlen to the trade-off table (p50 ... p99 and max are always there); "
                   "repeatable.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Batch size for the table's bucketed padding and batch memory.")
@click.option("--plot", metavar="FILE.png",
              help="Draw the lengths and what each maxlen costs to a PNG (needs matplotlib).")
@input_options
def inspect(sources: tuple[str, ...], as_json: bool, expect_shape: str | None,
            pad_value: float | None, maxlens: tuple[int | str, ...], batch_size: int,
            plot: str | None, lengths: str | None, allow_pickle: bool,
            memory_limit: int, layout: str | None, **table: Any) -> None:
    """Show what SRC holds and whether an LSTM can take it.

    SRC is PATH or PATH:KEY (an array or group inside .npz/.h5), or '-' for .npy on stdin.
    Sequences of varying length get a maxlen trade-off table: padding, truncation and memory
    for p50 ... p99, max and each --maxlen.

    \b
    Examples:
      lstmshape inspect raw.h5
      lstmshape inspect train.npy --json | jq .input_shape
      lstmshape inspect train.npy --expect-shape '*,100,8'   # CI gate
      lstmshape inspect seqs.h5 --maxlen 200 --batch-size 64 --plot lengths.png
      lstmshape inspect events.parquet                 # columns, likely --id / --time
      lstmshape inspect events.parquet --id user --time ts
    """
    import json

    from . import render
    from .commands.inspect import inspect_file, parse_expected_shape

    if plot is not None and len(sources) > 1:
        raise click.UsageError(f"--plot draws one SRC; {len(sources)} were given")
    if plot is not None and not plot.lower().endswith(".png"):
        raise click.BadParameter(f"{plot!r}: expected a .png file name", param_hint="--plot")

    if expect_shape is not None:
        try:
            parse_expected_shape(expect_shape)
        except LstmshapeError as err:
            raise click.BadParameter(str(err).removeprefix(f"--expect-shape {expect_shape!r}: "),
                                     param_hint="--expect-shape") from None
    # Every SRC is reported even when an earlier one is bad; the failures come last, as one
    # error line (exit 1), so a CI gate over many files names every file that failed.
    table_options_given = table_from(table)
    reports: list[dict[str, Any]] = []
    failures: list[LstmshapeError] = []
    for src in sources:
        try:
            reports.append(inspect_file(src, memory_limit=memory_limit,
                                        allow_pickle=allow_pickle, lengths=lengths,
                                        pad_value=pad_value, expect_shape=expect_shape,
                                        maxlens=maxlens, batch_size=batch_size, plot=plot,
                                        table=table_options_given, layout=layout))
        except LstmshapeError as err:
            if len(sources) == 1:
                raise
            failures.append(err)
            reports.append({"path": src, "error": str(err)})
    if as_json:
        payload: Any = reports[0] if len(reports) == 1 else reports
        click.echo(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False,
                              default=str))
    else:
        for report in reports:
            if "error" not in report:
                render.render_inspect(report)
    if failures:
        raise type(failures[0])(f"{len(failures)} of {len(sources)} inputs failed: "
                                + "; ".join(map(str, failures)))


@cli.command(cls=ReadingCommand)
@click.argument("source", metavar="SRC")
@click.option("--maxlen", type=MaxLen(), default="max", show_default=True,
              help="Timesteps: a number, 'max', or a percentile of the lengths like 'p95'.")
@click.option("--padding", type=SIDE, default="post", show_default=True,
              help="Pad at the start (pre) or the end (post).")
@click.option("--truncating", type=SIDE, default="post", show_default=True,
              help="Cut longer sequences at the start (pre) or the end (post).")
@click.option("--value", type=PadValue(), default=0.0, show_default=True,
              help="Pad value ('nan' allowed for floats).")
@click.option("--dtype", type=DType(), default=None, help="Output dtype (default: the input's).")
@click.option("--allow-lossy", is_flag=True, help="Allow a --dtype cast that changes values.")
@click.option("--no-feature-axis", is_flag=True,
              help="Write a one-feature result as (samples, timesteps), as an Embedding takes it.")
@target_options
@like_option
@output_options
@engine_options
def pad(source: str, maxlen: int | str, padding: str, truncating: str, value: float,
        dtype: str | None, allow_lossy: bool, no_feature_axis: bool, like: str | None,
        **common: Any) -> None:
    """Pad (and truncate) sequences into one dense (samples, maxlen, features) tensor.

    Same result as keras.utils.pad_sequences with the same maxlen, padding, truncating, value and
    dtype; but the dtype defaults to the input's and padding/truncating default to 'post'.

    SRC may be a table (.parquet, .csv, .arrow...: --id groups its rows; PATH:COL reads a list
    column), a directory or a quoted glob of files (one set; --layout series: one sequence per
    file).

    \b
    Examples:
      lstmshape pad events.parquet --id user --time ts --maxlen p95 -o train.npy
      lstmshape pad tokens.arrow:input_ids --maxlen 128 -o ids.npy
      lstmshape pad recordings/ --layout series -o train.npz
      lstmshape pad sensors.npz --maxlen p95 -o train.npy
      lstmshape pad tokens.npy --lengths tokens_lengths.npy --padding pre -o - | python train.py
      lstmshape pad big.npz --maxlen p95 --engine dask --workers 4 -o train.zarr
      lstmshape pad seqs.npz --y tags.npz --y-value -1 -o train.npz  # per-timestep labels too
      lstmshape pad tokens.npz --no-feature-axis -o ids.npy          # (N, T) for an Embedding
      lstmshape pad test.npz --like train.npy.json -o test.npy   # train's maxlen, dtype, value
    """
    from .commands.pad import pad_file

    given = given_options(like, maxlen=maxlen, padding=padding, truncating=truncating,
                          value=value, dtype=dtype, allow_lossy=allow_lossy,
                          no_feature_axis=no_feature_axis)
    run_transform("pad", common, lambda options: pad_file(source, options, like=like, **given))


@cli.command(cls=ReadingCommand)
@click.argument("source", metavar="SRC")
@click.option("--maxlen", type=click.IntRange(min=1), default=None,
              help="Keep at most this many timesteps per sequence (required unless --like).")
@click.option("--truncating", type=SIDE, default="post", show_default=True,
              help="Cut at the start (pre) or the end (post).")
@click.option("--overflow", type=click.Choice(["drop", "split"]), default="drop",
              show_default=True, help="Drop the cut timesteps, or split them into new samples.")
@click.option("--no-feature-axis", is_flag=True,
              help="Write a one-feature result as (samples, timesteps), as an Embedding takes it.")
@target_options
@like_option
@output_options
@engine_options
def truncate(source: str, maxlen: int | None, truncating: str, overflow: str,
             no_feature_axis: bool, like: str | None,
             **common: Any) -> None:
    """Cut sequences to at most MAXLEN timesteps; a ragged input stays ragged.

    With --overflow split a long sequence becomes several consecutive samples instead of losing
    its end; the output's source_index says which input sample each came from.

    \b
    Examples:
      lstmshape truncate train.npy --maxlen 50 -o short.npy
      lstmshape truncate sensors.npz --maxlen 100 --overflow split -o pieces.npz
      lstmshape truncate test.npy --like short.npy.json -o test_short.npy
    """
    from .commands.truncate import truncate_file

    if overflow == "split" and common.get("engine") == "dask":  # before a cluster is started
        raise click.UsageError("--overflow split makes a new sample order, which --engine dask "
                               "does not plan; use --engine local for it")
    given = given_options(like, maxlen=maxlen, truncating=truncating, overflow=overflow,
                          no_feature_axis=no_feature_axis)
    run_transform("truncate", common, lambda options: truncate_file(
        source, options, like=like, **given))


@cli.command("add-feature")
@click.argument("base", metavar="BASE")
@click.argument("extras", nargs=-1, required=True, metavar="EXTRA...")
@click.option("--static", is_flag=True,
              help="Each EXTRA is (samples,) or (samples, k): one row per sample, repeated "
                   "over its timesteps.")
@click.option("--fill", type=PadValue(), default=0.0, show_default=True,
              help="Value for the timesteps a shorter dense EXTRA lacks.")
@click.option("--padding", type=SIDE, default="post", show_default=True,
              help="Side on which a shorter EXTRA is filled.")
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="Name of an added feature; repeat once per added feature.")
@target_options
@like_option
@output_options
def add_feature(base: str, extras: tuple[str, ...], static: bool, fill: float, padding: str,
                names: tuple[str, ...], like: str | None, **common: Any) -> None:
    """Concatenate the features of EXTRA arrays to BASE along the feature axis.

    An EXTRA is (N, T, k), (N, T) (one feature), ragged with BASE's lengths, or with --static
    (N, k) / (N,) values repeated over every timestep. Integer and float inputs give a float
    output; the manifest's feature_names grow by the new names.

    \b
    Examples:
      lstmshape add-feature raw.h5:/sensors temp.npy --name temp -o merged.npz
      lstmshape add-feature sensors.npz weather.npy --static --name temp --name humidity -o m.npz
      lstmshape add-feature train.npy age.npy --static --name age -o train_age.npy
      lstmshape add-feature test.npy age_test.npy --like train_age.npy.json -o test_age.npy
    """
    from .commands.add_feature import add_feature_file

    given = given_options(like, static=static, fill=fill, padding=padding, names=names)
    run_transform("add-feature", common, lambda options: add_feature_file(
        base, extras, options, like=like, **given))


@cli.command(cls=ReadingCommand)
@click.argument("source", metavar="SRC")
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Samples per batch (required unless --like).")
@click.option("--remainder", type=click.Choice(["keep", "drop", "pad"]), default="keep",
              show_default=True,
              help="The last N % size samples: a short last batch, dropped, or padded with "
                   "empty rows (order -1).")
@click.option("--shuffle", is_flag=True, help="Shuffle the samples (deterministic: --seed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --shuffle.")
@click.option("--bucket-by-length", is_flag=True,
              help="Batch sequences of similar length; pad each batch to its own longest.")
@click.option("--maxlen", type=click.IntRange(min=1), default=None,
              help="Pad/cut every batch to N timesteps (with --bucket-by-length: at most N).")
@click.option("--stateful", is_flag=True,
              help="Row j of batch k+1 continues row j of batch k (for stateful LSTMs).")
@click.option("--padding", type=SIDE, default=None,
              help="Pad side [default: the input's, else post].")
@click.option("--value", type=PadValue(), default=None,
              help="Pad value [default: the input's, else 0].")
@click.option("--no-feature-axis", is_flag=True,
              help="Write a one-feature result as (samples, timesteps), as an Embedding takes it.")
@target_options
@like_option
@output_options
def batch(source: str, size: int | None, remainder: str, shuffle: bool, seed: int,
          bucket_by_length: bool, maxlen: int | None, stateful: bool, padding: str | None,
          value: float | None, no_feature_axis: bool, like: str | None,
          **common: Any) -> None:
    """Group samples into padded batches, in the order training sees them.

    .npy holds one (num_batches, size, timesteps, features) array; .npz/.h5 hold x_000000,
    lengths_000000, ... per batch (each padded to its own longest sequence) and 'order', the
    source sample of every row (-1 for --remainder pad rows).

    \b
    Examples:
      lstmshape batch train.npy --size 64 --shuffle --seed 1 -o batches.h5
      lstmshape batch seqs.npz --y labels.npy --size 64 --shuffle --remainder pad -o b.h5
      lstmshape batch seqs.npz --size 64 --bucket-by-length --maxlen 200 -o buckets.npz
      lstmshape batch windows.npy --size 32 --stateful --remainder drop -o stateful.npy
      lstmshape batch val.npy --like batches.h5.json -o val_batches.h5
    """
    from .commands.batch import batch_file

    given = given_options(like, size=size, remainder=remainder, shuffle=shuffle, seed=seed,
                          bucket_by_length=bucket_by_length, stateful=stateful, maxlen=maxlen,
                          padding=padding, value=value, no_feature_axis=no_feature_axis)
    run_transform("batch", common, lambda options: batch_file(
        source, options, like=like, **given))


@cli.command(cls=ReadingCommand)
@click.argument("source", metavar="SRC")
@click.option("--timesteps", type=click.IntRange(min=1), default=None,
              help="Timesteps per window (required unless --like).")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Steps between the starts of consecutive windows.")
@click.option("--sampling-rate", type=click.IntRange(min=1), default=1, show_default=True,
              help="Take every R-th step inside a window.")
@click.option("--target", metavar="COLS",
              help="Columns to predict (indices or feature names, comma-separated); writes y.")
@click.option("--horizon", type=click.IntRange(min=1), default=1, show_default=True,
              help="y is the row this many steps after a window's last step.")
@click.option("--y", "y", metavar="SRC", help=WINDOW_Y_HELP)
@like_option
@window_options
def window(source: str, timesteps: int | None, stride: int, sampling_rate: int,
           target: str | None, horizon: int, like: str | None, **common: Any) -> None:
    """Cut a series (T_total,) or (T_total, F) into (N, timesteps, F) windows.

    Windows start every --stride steps, as keras.utils.timeseries_dataset_from_array selects
    them. A set of series (ragged, or 3-D) is windowed series by series; 'source_index' says
    which series each window came from.

    \b
    Examples:
      lstmshape window sensor.npy --timesteps 48 --stride 6 -o windows.npy
      lstmshape window prices.h5:/close --timesteps 30 --target 0 --horizon 5 -o train.npz
      lstmshape window ecg.npy --timesteps 100 --y labels.npy -o train.npz  # y[i]: window at row i
      lstmshape window later.npy --like train.npz.json -o test.npz
    """
    from .commands.window import window_file

    if target is None and horizon != 1:
        raise click.UsageError("--horizon needs --target (the columns to predict)")
    given = given_options(like, timesteps=timesteps, stride=stride,
                          sampling_rate=sampling_rate, target=target, horizon=horizon)
    run_transform("window", common, lambda options: window_file(
        source, options, like=like, **given))


@cli.command(cls=ReadingCommand)
@click.argument("source", metavar="SRC")
@click.option("--method", type=click.Choice(["standard", "minmax"]), default="standard",
              show_default=True,
              help="standard: mean 0, std 1 (as StandardScaler); minmax: into [0, 1].")
@target_options
@like_option
@output_options
@engine_options
def normalize(source: str, method: str, like: str | None, **common: Any) -> None:
    """Scale every feature over the real timesteps (padding never counts).

    Statistics are accumulated in float64 in one streaming pass, a second pass writes the
    scaled data (float32; float64 stays float64). Padded steps keep the pad value. The manifest
    records the statistics; --like applies a training set's to another set.

    \b
    Examples:
      lstmshape normalize train.npy -o train_n.npy
      lstmshape normalize test.npy --like train_n.npy.json -o test_n.npy
      lstmshape normalize seqs.npz --method minmax -o scaled.npz
      lstmshape normalize big.zarr --engine dask --scheduler tcp://host:8786 -o scaled.zarr
    """
    from .commands.normalize import normalize_file

    given = given_options(like, method=method)
    run_transform("normalize", common, lambda options: normalize_file(
        source, options, like=like, **given))


class Fractions(click.ParamType):  # type: ignore[type-arg]
    """``0.8,0.1,0.1``: positive fractions adding up to 1."""

    name = "F,F,..."

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> list[float]:
        from .ops.partition import check_fractions

        try:
            fractions = [float(part) for part in str(value).split(",")]
            check_fractions(fractions)
        except LstmshapeError as err:  # "they add up to 1.1, not 1"
            self.fail(err.cli_message.split(": ", 1)[-1], param, ctx)
        except ValueError:
            self.fail(f"{value!r}: expected fractions such as 0.8,0.1,0.1", param, ctx)
        return fractions


@cli.command(cls=ReadingCommand)
@click.argument("source", metavar="SRC")
@click.option("--fractions", type=Fractions(), required=True,
              help="Share of the samples in each output, in -o order, e.g. 0.8,0.1,0.1.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--stratify", is_flag=True,
              help="Keep the classes of an integer y in proportion in every part (within 1).")
@click.option("--by-source", is_flag=True,
              help="Keep samples sharing a source_index (windows of one series, pieces of one "
                   "sequence) in one part.")
@target_options
@transform_options(several=True)
def partition(source: str, fractions: list[float], seed: int, stratify: bool, by_source: bool,
              **common: Any) -> None:
    """Split the samples into several outputs (train/validation/test), seeded.

    One -o per fraction, each with its own manifest; rows keep the input's order, and 'order'
    records each row's source sample. Every output is written, or none.

    \b
    Examples:
      lstmshape partition all.npz --fractions 0.8,0.1,0.1 -o train.npz -o val.npz -o test.npz
      lstmshape partition labelled.h5 --fractions 0.8,0.2 --stratify -o train.h5 -o test.h5
      lstmshape partition windows.npz --fractions 0.8,0.2 --by-source -o tr.npz -o te.npz
    """
    from .commands.partition import partition_file

    outputs = list(common["output"])
    if len(outputs) != len(fractions):
        raise click.UsageError(f"{len(fractions)} fractions for {len(outputs)} -o: give one -o "
                               f"per fraction")
    run_transform("partition", common, lambda options: partition_file(
        source, outputs, options, fractions=fractions, seed=seed, stratify=stratify,
        by_source=by_source))


@cli.command()
@click.argument("source", metavar="SRC")
@click.option("--manifest", metavar="PATH",
              help="The manifest to check against (default: SRC.json).")
@click.option("--no-model", is_flag=True,
              help="Skip the Keras model check (then TensorFlow is not needed).")
@click.option("--debug", is_flag=True, help="Let TensorFlow's own log lines through to stderr.")
@click.option("--framework", type=click.Choice(["keras", "torch"]), default="keras",
              show_default=True,
              help="Run the model check with Keras, or with PyTorch (nn.LSTM over the packed "
                   "true lengths; needs the torch extra).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("-q", "--quiet", is_flag=True,
              help="Print nothing when every check passes (for Makefiles); errors still show.")
@click.option("--memory-limit", type=ByteSize(), default="256MB", show_default=True,
              help="Memory budget; the tensor is read in blocks that fit it.")
def verify(source: str, manifest: str | None, no_model: bool, debug: bool, framework: str,
           as_json: bool, quiet: bool, memory_limit: int) -> None:
    """Check an output against its manifest and run it through a small Keras LSTM.

    Checks shape, dtype and sha256 of every output file, lengths and input_shape, counts
    NaN/inf, then runs Input(shape=input_shape) -> Masking(pad value) -> LSTM(4) -> Dense(1) on
    the first 64 samples. Exit 0 only when every check passes (TensorFlow needed unless
    --no-model).

    \b
    Examples:
      lstmshape verify train.npy
      lstmshape verify batches.h5 --no-model --json | jq .ok
      lstmshape verify train.npz --framework torch     # PyTorch instead of Keras
      lstmshape verify -q train.npy && touch train.npy.verified    # a Makefile rule
    """
    import json

    from . import render
    from .commands.verify import VerifyFailed, verify_file

    try:
        report = verify_file(source, manifest=manifest, model=not no_model, debug=debug,
                             memory_limit=memory_limit, framework=framework)
    except VerifyFailed as failed:
        if as_json:  # CI keeps the whole report; the Error line still says what differs
            click.echo(json.dumps(failed.report, indent=2, sort_keys=True, default=str))
        raise
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True, default=str))
    if quiet:
        return
    for note in report["warnings"]:
        render.warn(note)
    if not as_json:
        render.render_verify(report)


@cli.group()
def cache() -> None:
    """See or empty the digest cache (sha256 of files, keyed by their stat).

    Each file's sha256 is computed once per pipeline: outputs are recorded as they are written,
    and an input whose stat has not changed is not read again for hashing. verify never uses it.
    Where: $LSTMSHAPE_CACHE_DIR, else $XDG_CACHE_HOME/lstmshape, else ~/.cache/lstmshape.

    \b
    Examples:
      lstmshape cache info
      lstmshape cache clear
    """


@cache.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cache_info(as_json: bool) -> None:
    """Show where the digest cache is, whether it is on, and how many records it holds.

    \b
    Example:
      lstmshape cache info --json | jq .entries
    """
    import json

    from .io.digest_cache import cache_info as info_of

    info = info_of()
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    entries = info["entries"] if info["problem"] is None else f"unknown ({info['problem']})"
    click.echo(f"path: {info['path']}\nenabled: {'yes' if info['enabled'] else 'no'}\n"
               f"entries: {entries} (at most {info['max_entries']:,})\nbytes: {info['bytes']:,}")


@cache.command("clear")
def cache_clear() -> None:
    """Remove every record from the digest cache (the next runs hash their files again).

    \b
    Example:
      lstmshape cache clear
    """
    from .io.digest_cache import clear_cache

    click.echo(f"removed {clear_cache():,} records")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the manifest lstmshape writes.

    \b
    Example:
      lstmshape schema > manifest.schema.json
    """
    import json

    from .manifest import JSON_SCHEMA

    click.echo(json.dumps(JSON_SCHEMA, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------------------------
# The one place errors become messages and exit codes


def error_line(message: str) -> None:
    first = " ".join(message.split("\n")).strip()
    click.echo(f"Error: {first}", err=True)


def on_terminate(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def quiet_broken_pipe() -> NoReturn:
    """stdout's reader went away (``| head``): exit without a traceback or flush error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    os._exit(EXIT_BROKEN_PIPE)


def run() -> NoReturn:
    """The ``lstmshape`` console script and ``python -m lstmshape``: :func:`main`, then an exit
    without Python's own teardown (freeing every module and object one by one: ~20 ms, 15% of a
    small command in a Makefile rule). Everything that matters is done by then: outputs are
    committed or removed, and :func:`main` has flushed stdout (a closed one ends there, 141)."""
    try:
        main()
        code = 0
    except SystemExit as done:  # how main() always ends, with an int
        code = done.code if isinstance(done.code, int) else 1
    if sys.getprofile() or sys.gettrace() or "coverage" in sys.modules:
        sys.exit(code)  # a profiler, debugger or coverage writes its report at exit: let it
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lstmshape`` console script and ``python -m lstmshape``.

    Sets up the process (signal handlers, closed descriptors), runs the command, and ends it:
    temp files removed, stdout flushed (a closed one exits 141). What a command raised is
    turned into its exit code by :func:`exit_code_for`.
    """
    # No command does linear algebra, and numpy's OpenBLAS otherwise starts a thread per core
    # that busy-waits for work after import: ~0.1 s of CPU taken from the block pipeline on a
    # 2-core machine (measured with perf). Set before numpy is imported; a user's setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # pyarrow (tables) allocates through mimalloc by default, which keeps freed blocks of every
    # thread for reuse: ~20 MB more peak RSS on a 10M-row Parquet table than malloc's (T1 of
    # the benchmarks: 298 MB against 281 MB, under a 300 MB ceiling). Read only when pyarrow is
    # imported; a user's setting wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    # Started with stdout or stderr closed (">&-", "2>&-"): Python then has no sys.stdout /
    # sys.stderr at all. What would go there goes nowhere, which is what the caller asked for;
    # the exit code still tells what happened.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - for the whole process
    # SIGTERM (kill, CI timeouts) and SIGHUP (closed terminal) clean up like Ctrl-C does.
    # SIGINT is left to Python's own handler (ignored if the parent ignores it: a background job).
    for signum in HANDLED_SIGNALS - {signal.SIGINT}:
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, on_terminate)
    try:
        code = cli.main(args=argv, prog_name="lstmshape", standalone_mode=False)
    except (KeyboardInterrupt, Terminated) as late:
        # a second signal while the first error was being reported: its line is already out
        code = signal_exit_code(late)
    # From here on the process only cleans up and exits: a late signal must not turn that into
    # a traceback, and it is not lost either -- the exit code already says what happened.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    remove_temp_files()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
    sys.exit(code)


def exit_code_for(error: BaseException) -> int:
    """The one place an exception becomes an exit code and at most one ``Error:`` line.

    ``LSTMSHAPE_DEBUG=1`` re-raises what is not a signal or a closed pipe, for its traceback.
    """
    if isinstance(error, BrokenPipeError):
        remove_temp_files()
        quiet_broken_pipe()
    if isinstance(error, KeyboardInterrupt):
        error = Terminated(signal.SIGINT)
    if isinstance(error, Terminated):
        messages = {int(signal.SIGINT): "interrupted", int(signal.SIGTERM): "terminated"}
        error_line(messages.get(error.signum,
                                f"stopped by signal {signal.Signals(error.signum).name}"))
        return signal_exit_code(error)
    if os.environ.get(DEBUG_ENV):
        raise error
    if isinstance(error, LstmshapeError):
        message, code = error.cli_message, error.exit_code
    elif isinstance(error, MemoryError):
        message, code = "out of memory; lower --memory-limit or use a smaller input", 1
    elif isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        message, code = f"{where}{error.strerror or error}", 1
    else:
        message, code = (f"internal error ({type(error).__name__}: {error}); this is a bug in "
                         f"lstmshape -- set {DEBUG_ENV}=1 for a traceback"), 1
    ReportedError(message, code).show()
    return code


def signal_exit_code(stop: BaseException) -> int:
    """128 + the signal number, as shells report a command a signal ended."""
    if isinstance(stop, Terminated):
        return 128 + stop.signum
    return EXIT_INTERRUPTED


def remove_temp_files() -> None:
    """Last line of defence for "no temp file left": one a signal orphaned between an error and
    its cleanup. Only if outputs were written at all (no import of numpy for ``--help``)."""
    output = sys.modules.get("lstmshape.io.output")
    if output is not None:
        output.remove_temp_files()
