"""``lstmshape verify``: an output checked against its manifest, then run through a real LSTM.

:func:`verify_file` returns one JSON-ready report (the ``--json`` output) when every check
passes, and raises :class:`VerifyFailed` -- one line naming the file and every difference found,
with the report attached -- when one does not. The checks, cheapest first:

1. the manifest (``PATH.json`` or ``manifest=``) is an lstmshape manifest that lists ``PATH``;
2. every file in its ``outputs`` exists with the recorded sha256, shape and dtype (the hashes
   run on background threads while the next steps read the data);
3. the tensor's ``(samples, timesteps, features)`` and ``input_shape`` are the manifest's, true
   lengths are one per sample in ``0..timesteps`` and their min/max are the manifest's;
4. NaN and inf in the real timesteps are counted, block by block within the memory budget (a
   warning, not a failure: the shape is right, the data needs cleaning);
5. with ``model=True`` (needs TensorFlow): ``keras.Input(shape=input_shape)`` ->
   ``Masking(mask_value=<pad value>)`` when padded -> ``LSTM(4)`` -> ``Dense(1)`` runs on the
   first 64 samples and must give ``(64, 1)``, finite where the data is. A NaN pad value is
   run the same way, ``Masking(mask_value=nan)``, which masks nothing (NaN != NaN): the outputs
   are NaN and verify fails, saying to pad with a number instead. A ragged output has no
   padding yet: there the mask comes from the true lengths.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import numpy as np

from ..errors import CheckFailed, InputError, OptionError
from ..io.digest import Digest, InputDigest, TreeDigest
from ..io.location import is_side_file, parse_location, same_path
from ..io.source import (
    DEFAULT_MEMORY_LIMIT,
    Source,
    check_readable_file,
    open_source,
    stored_array_info,
)
from ..io.zarr_store import check_tree, parse_listing
from ..job import BLOCK_SHARE
from ..manifest import Manifest
from ..ops.pad import pad
from ..ops.stats import ValueStats, foreign_pad_steps
from ..sequences import SequenceSet, real_mask
from ..tf import (
    INSTALL_HINT,
    TensorFlowMissing,
    import_tensorflow,
    quiet_stderr,
    tensorflow_available,
)
from ..words import plural

MODEL_SAMPLES = 64
LSTM_UNITS = 4
FRAMEWORKS = ("keras", "torch")


class VerifyFailed(CheckFailed):
    """A verify check failed; ``report`` is the report so far (``--json`` prints it)."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def shape_text(shape: Any) -> str:
    """``(50, 8, 3)``; ``None`` dimensions as ``None``, as Keras prints them.

    Example:
        >>> shape_text([None, 3]), shape_text((5,))
        ('(None, 3)', '(5,)')
    """
    return str(tuple(shape))


def verify_file(src: str, *, manifest: str | None = None, model: bool = True,
                debug: bool = False, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                model_samples: int = MODEL_SAMPLES, framework: str = "keras") -> dict[str, Any]:
    """Check the output ``src`` against its manifest and, with ``model``, a Keras LSTM.

    ``framework="torch"`` runs the model check with PyTorch instead (``nn.LSTM`` over the
    packed true lengths, see :func:`lstmshape.torch.model_check`); it needs the ``torch`` extra.

    ``debug=True`` lets TensorFlow's own log lines through to stderr. Raises
    :class:`VerifyFailed` when a check fails and :class:`~lstmshape.tf.TensorFlowMissing` when
    ``model`` is asked for without TensorFlow installed.

    Example (not run by the doctests: it imports TensorFlow):
        >>> report = verify_file("train.npy")  # doctest: +SKIP
        >>> report["ok"], report["input_shape"], report["model"]["output_shape"]  # doctest: +SKIP
        (True, [100, 8], [64, 1])
    """
    path = parse_location(src).path
    if path == "-":
        raise InputError("verify checks a file and its manifest; it cannot read stdin")
    if framework not in FRAMEWORKS:
        raise OptionError(f"--framework {framework!r}: expected one of {', '.join(FRAMEWORKS)}")
    if model and framework == "torch":
        from ..torch import INSTALL_HINT as TORCH_HINT
        from ..torch import TorchMissing, torch_available

        if not torch_available():
            raise TorchMissing(f"verify --framework torch runs nn.LSTM on {path} and needs "
                               f"PyTorch: {TORCH_HINT} (or pass --no-model)")
    elif model and not tensorflow_available():
        # Before reading anything: the user asked for a check this machine cannot run.
        raise TensorFlowMissing(f"verify runs a Keras LSTM on {path} and needs TensorFlow: "
                                f"{INSTALL_HINT} (or pass --no-model to skip the model check)")
    if not os.path.isdir(path) or parse_location(path).suffix != ".zarr":
        check_readable_file(path)
    manifest_path = manifest if manifest is not None else path + ".json"
    recorded = Manifest.from_file(manifest_path, path)
    data = recorded.data
    failures: list[str] = []
    report: dict[str, Any] = {
        "path": path, "manifest": manifest_path, "command": data.get("command"),
        "samples": data.get("samples"), "timesteps": data.get("timesteps"),
        "features": data.get("features"), "input_shape": data.get("input_shape"),
        "padding": data.get("padding"), "ok": False, "failures": failures, "warnings": [],
        "model": None,
    }
    hashes, files = check_entries(path, data, manifest_path, memory_limit, failures)
    report["files"] = files
    if not any(same_path(row["file"], path) for row in files):
        # Another output's manifest: nothing in it applies to this file.
        wait_for_hashes(hashes)
        raise VerifyFailed(f"{path}: " + "; ".join(failures), report)
    source: Source | None = None
    try:  # the one reader, as every command reads this output
        source = open_source(path, memory_limit=memory_limit, manifest=manifest_path)
    except InputError as err:  # a damaged tensor: report it with what else is found
        failures.append(str(err).removeprefix(f"{path}: "))
    stats = head = pad_value = None
    layout = "unreadable"
    if source is not None:
        with source:
            layout = layout_of(source)
            report.update(layout=layout, dtype=str(source.dtype))
            geometry_ok = check_geometry(source, data, failures)
            if geometry_ok:
                try:
                    stats = count_values(source, max(memory_limit // BLOCK_SHARE, 1 << 16))
                except InputError as err:  # a damaged chunk of a store: said with the rest
                    failures.append(str(err))
                    geometry_ok, model = False, False
            if geometry_ok and stats is not None:
                report.update(nan=stats.nan, inf=stats.inf, pad_collisions=stats.collisions,
                              foreign_pad_steps=stats.foreign_pads)
                if stats.foreign_pads:
                    assert source.pad_value is not None
                    failures.append(
                        f"{plural(stats.foreign_pads, 'pad step')} "
                        f"{'does' if stats.foreign_pads == 1 else 'do'} not hold the pad value "
                        f"{source.pad_value:g} the manifest records: a mask on that value "
                        f"would not hide {'it' if stats.foreign_pads == 1 else 'them'}")
                report["warnings"] = value_warnings(stats, source.pad_value)
            head = model_inputs(source, model_samples) if model and geometry_ok else None
            pad_value = source.pad_value
    for file, digest in hashes.items():
        expected = next(row["sha256"] for row in files if row["file"] == file)
        actual = digest.hexdigest()
        for row in files:
            if row["file"] == file:
                row["sha256_ok"] = actual == expected
        if expected is not None and actual != expected:
            which = "" if same_path(file, path) else f"{display(file)}: "
            failures.append(f"{which}sha256 {actual[:12]}... differs from the "
                            f"{str(expected)[:12]}... recorded in "
                            f"{os.path.basename(manifest_path)} (the file changed after its "
                            f"manifest was written)")
    if failures:
        raise VerifyFailed(f"{path}: " + "; ".join(failures), report)
    if head is not None:
        assert stats is not None
        if framework == "torch":
            from ..torch import model_check

            report["model"] = model_check(head_sequences(head), LSTM_UNITS)
        else:
            # without a feature axis the model sees (T, 1): what Embedding's output gives LSTM
            report["model"] = run_model(head, [*data["input_shape"], 1][:2], pad_value, layout,
                                        quiet=not debug)
        model_report = report["model"]
        if model_report.get("error"):
            failures.append(model_report["error"])
        elif model_report["samples"] and model_report["output_shape"] != \
                [model_report["samples"], 1]:
            failures.append(f"the model gave output shape "
                            f"{shape_text(model_report['output_shape'])}, expected "
                            f"({model_report['samples']}, 1)")
        elif (not model_report["finite"] and pad_value is not None and math.isnan(pad_value)
              and model_report["mask"] == "masking"):
            failures.append(NAN_PADDING_FAILURE)
        elif not model_report["finite"] and stats.nan == 0 and stats.inf == 0:
            failures.append("the LSTM's outputs are NaN/inf although every real timestep is "
                            "finite: the padding is not masked")
        if failures:
            raise VerifyFailed(f"{path}: " + "; ".join(failures), report)
    report["ok"] = True
    return report


#: What verify says when a NaN pad value reaches the model (issue 11: it trains to NaN).
NAN_PADDING_FAILURE = (
    "the pad value is NaN: Masking(mask_value=nan) masks nothing (NaN never equals NaN), so the "
    "LSTM's outputs and the loss are NaN; pad with a number the data never takes instead "
    "(e.g. lstmshape pad --value -1, after checking that no real timestep equals it)")


def wait_for_hashes(hashes: dict[str, Digest]) -> None:
    """Let background hashes finish (quietly) before the files they read are reported on."""
    for digest in hashes.values():
        with contextlib.suppress(Exception):
            digest.hexdigest()


def display(path: str) -> str:
    """A path as the user would type it: relative when it is below the working folder."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


# ---------------------------------------------------------------------------------------------
# 1-2. The manifest's output files


def check_entries(path: str, data: dict[str, Any], manifest_path: str, memory_limit: int,
                  failures: list[str]) -> tuple[dict[str, Digest], list[dict[str, Any]]]:
    """Check each ``outputs`` entry's file, shape and dtype; start hashing each file once."""
    outputs = data.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        failures.append(f"{manifest_path} lists no outputs")
        return {}, []
    folder = os.path.dirname(os.path.abspath(manifest_path))
    hashes: dict[str, Digest] = {}
    rows: list[dict[str, Any]] = []
    #: each .zarr output's recorded files, over every role stored in it
    stores: dict[str, dict[str, str]] = {}
    named = [os.path.join(folder, entry["path"]) for entry in outputs.values()
             if isinstance(entry, dict) and isinstance(entry.get("path"), str)]
    if not any(same_path(file, path) for file in named):
        listed = ", ".join(sorted({os.path.relpath(f, folder) for f in named})) or "nothing"
        failures.append(f"{manifest_path} describes {listed}, not this file")
        return hashes, rows
    for role, entry in sorted(outputs.items()):
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and isinstance(entry.get("shape"), list)
                and isinstance(entry.get("dtype"), str)):
            failures.append(f"outputs.{role} of {manifest_path} is not a "
                            f"{{path, key, shape, dtype, sha256}} entry")
            continue
        file = os.path.normpath(os.path.join(folder, entry["path"]))
        row = {"role": role, "path": entry["path"], "file": file, "key": entry.get("key"),
               "shape": entry["shape"], "dtype": entry["dtype"],
               "sha256": entry.get("sha256"), "sha256_ok": None}
        rows.append(row)
        if not own_file(file, path):
            # lstmshape writes OUT and OUT.<role>.npy only: a manifest naming any other
            # file (../secret) is not read, whatever it says
            failures.append(f"outputs.{role} names {entry['path']!r}, which is not one of "
                            f"{display(path)}'s own files; not reading it")
            continue
        if not (os.path.isfile(file) or is_store(file)):
            failures.append(f"{display(file)} (outputs.{role}) is missing")
            continue
        if file not in hashes:
            hashes[file] = TreeDigest(file) if is_store(file) else InputDigest(file)
            hashes[file].hash_whole_file()
        if is_store(file):
            store_files = parse_listing(entry.get("files"))
            if store_files is None:
                failures.append(f"outputs.{role} of {manifest_path} has no 'files' listing of "
                                f"{entry['path']}")
            else:
                stores.setdefault(file, {}).update(store_files)
        try:
            shape, dtype = stored_array_info(file, entry.get("key"), memory_limit)
        except InputError as err:
            failures.append(f"outputs.{role}: {err}")
            continue
        where = f"{display(file)}" + (f":{entry['key']}" if entry.get("key") else "")
        if list(shape) != entry["shape"]:
            failures.append(f"{where} has shape {shape_text(shape)} but the manifest "
                            f"records {shape_text(entry['shape'])}")
        if not same_dtype(dtype, entry["dtype"]):
            failures.append(f"{where} has dtype {dtype} but the manifest records "
                            f"{entry['dtype']}")
    for store, recorded in stores.items():  # every file of a store, named when it differs
        failures += [f"{display(store)}/{problem}" for problem in check_tree(store, recorded)]
    return hashes, rows


def is_store(path: str) -> bool:
    """A ``.zarr`` directory output."""
    return os.path.isdir(path) and parse_location(path).suffix == ".zarr"


def own_file(file: str, output: str) -> bool:
    """``output`` itself or one of its ``output.<role>.npy`` side files (same folder)."""
    return same_path(file, output) or is_side_file(file, output)


def same_dtype(actual: np.dtype, recorded: str) -> bool:
    try:
        return bool(np.dtype(recorded).newbyteorder("=") == actual.newbyteorder("="))
    except TypeError:
        return False


# ---------------------------------------------------------------------------------------------
# 3. Geometry and lengths


def layout_of(source: Source) -> str:
    """``"batches"`` (a ``batch`` output), ``"dense"`` or ``"ragged"``."""
    return "batches" if source.batches else source.kind


def check_geometry(source: Source, data: dict[str, Any], failures: list[str]) -> bool:
    """The manifest's samples/timesteps/features/input_shape/lengths against the tensor.

    The per-batch checks (3-D batches of one feature count, lengths one per row within the
    batch's width) are the reader's own: a batch output that breaks them does not open.
    """
    before = len(failures)
    features, timesteps = source.n_features, source.timesteps
    recorded_shape = data.get("input_shape")
    # --no-feature-axis: [T], a one-feature tensor stored (N, T)
    fits = recorded_shape in ([timesteps, features], [timesteps] if features == 1 else None)
    # batched: samples counts every row (pad rows too) and timesteps is None when the batches
    # have widths of their own -- the same as lstmshape batch writes them
    dims = [source.n_samples, timesteps, features]
    recorded = [data.get("samples"), data.get("timesteps"), data.get("features")]
    if recorded != dims:
        failures.append(f"the manifest records (samples, timesteps, features) = "
                        f"{shape_text(recorded)} but the tensor has {shape_text(dims)}")
    if not source.batches:
        check_lengths_fit(source, data, failures)
    if not fits:
        failures.append(f"the manifest's input_shape {recorded_shape} does not fit the tensor's "
                        f"(timesteps, features) = {shape_text([timesteps, features])}")
    return len(failures) == before


def check_lengths_fit(source: Source, data: dict[str, Any], failures: list[str]) -> None:
    lengths = source.lengths
    if not lengths.size:
        return
    low, high = int(lengths.min()), int(lengths.max())
    recorded = data.get("lengths")
    if isinstance(recorded, dict) and (recorded.get("min"), recorded.get("max")) != (low, high):
        failures.append(f"true lengths are {low}..{high} but the manifest records "
                        f"{recorded.get('min')}..{recorded.get('max')}")


# ---------------------------------------------------------------------------------------------
# 4. Values


def count_values(source: Source, block_bytes: int) -> ValueStats:
    """NaN/inf/range/pad collisions of the real timesteps, and pad steps that do not hold the
    recorded pad value, one block in memory at a time."""
    pad_value = source.pad_value
    stats = ValueStats(pad_value=pad_value if pad_value is not None else math.nan)
    for start, stop in source.block_bounds(block_bytes):
        stored = source.read_stored(start, stop) if pad_value is not None else None
        if stored is None:
            stats.add(source.read_block(start, stop))
            continue
        lengths = source.lengths[start:stop]
        stats.add(SequenceSet.from_dense(stored, lengths, source.side))
        assert pad_value is not None
        stats.foreign_pads += foreign_pad_steps(stored, lengths, source.side, pad_value)
    if pad_value is None:
        stats.collisions = 0  # nothing is padded, so nothing can be mistaken for padding
    return stats


def value_warnings(stats: ValueStats, pad_value: float | None) -> list[str]:
    notes = []
    if stats.nan or stats.inf:
        notes.append(f"{stats.nan:,} NaN and {stats.inf:,} inf values in real timesteps: an "
                     f"LSTM carries them into every later step; clean or impute them")
    if stats.collisions and pad_value is not None and not math.isnan(pad_value):
        notes.append(f"{plural(stats.collisions, 'real timestep')} equal"
                     f"{'s' if stats.collisions == 1 else ''} the pad value {pad_value:g} in "
                     f"every feature; Masking(mask_value={pad_value:g}) hides them too")
    return notes


# ---------------------------------------------------------------------------------------------
# 5. The model


def model_inputs(source: Source, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, mask)``: the first ``count`` samples (of the first batch, when batched) as float32
    ``(n, T, F)`` as stored, and which of their timesteps are real. A ragged output is padded
    here, as ``padded_batch`` would: post, to its longest."""
    if source.batches:
        start, stop, width = source.batches[0]
        stop = min(stop, start + count)
        lengths = source.lengths[start:stop]
        x = source.read_dense(start, stop, width)
        side = source.side
    elif source.timesteps is None:
        stop = min(count, source.n_samples)
        block = source.read_block(0, stop)
        lengths = block.lengths
        width = max(int(lengths.max()) if lengths.size else 0, 1)
        x = pad(block, width, "post", "post", 0.0, np.float32).tensor
        side = "post"
    else:
        stop = min(count, source.n_samples)
        lengths = source.lengths[:stop]
        x = source.read_dense(0, stop)
        side = source.side
    x = x.astype(np.float32)
    return x, real_mask(lengths, x.shape[1], side)


def head_sequences(head: tuple[np.ndarray, np.ndarray]) -> SequenceSet:
    """The first samples at their true lengths (for PyTorch, which packs them): the real
    timesteps of each row, whichever side it was padded on."""
    x, mask = head
    return SequenceSet(x[mask], mask.sum(axis=1))


def run_model(head: tuple[np.ndarray, np.ndarray], input_shape: list[int | None],
              pad_value: float | None, layout: str, *, quiet: bool) -> dict[str, Any]:
    """Build ``Input -> [Masking] -> LSTM(4) -> Dense(1)`` and run it on ``head``."""
    x, mask = head
    samples = int(x.shape[0])
    padded = not bool(mask.all())
    # A NaN pad value is run as the user would write it, Masking(mask_value=nan): it masks
    # nothing (NaN != NaN), and the failure that follows is the honest answer.
    if layout == "ragged" or (pad_value is None and padded):
        how = "lengths"  # no pad value to mask (ragged, or unknown): the true lengths can
        x = np.where(mask[:, :, None], x, np.float32(0))  # NaN * 0 would still be NaN
    elif pad_value is not None:
        how = "masking"
    else:
        how = "none"
    shape = tuple(input_shape)
    layers = [f"Input(shape={shape_text(shape)})"]
    layers += {"masking": [f"Masking(mask_value={pad_value:g})" if pad_value is not None
                           else ""],
               "lengths": ["mask from the true lengths"], "none": []}[how]
    layers += [f"LSTM({LSTM_UNITS})", "Dense(1)"]
    result: dict[str, Any] = {"layers": layers, "mask": how, "samples": samples,
                              "output_shape": None, "finite": None, "error": None}
    if samples == 0:
        result["output_shape"] = [0, 1]
        result["finite"] = True
        return result
    tf, keras = import_tensorflow(quiet=quiet, purpose="verify")
    result.update(tensorflow=tf.__version__, keras=keras.__version__)
    try:
        with quiet_stderr(quiet):
            inputs = keras.Input(shape=shape, name="x")
            if how == "lengths":
                mask_input = keras.Input(shape=(shape[0],), dtype="bool", name="mask")
                hidden = keras.layers.LSTM(LSTM_UNITS)(inputs, mask=mask_input)
                feed: Any = [x, mask]
                model_in: Any = [inputs, mask_input]
            else:
                hidden = inputs
                if how == "masking":
                    hidden = keras.layers.Masking(mask_value=pad_value)(hidden)
                hidden = keras.layers.LSTM(LSTM_UNITS)(hidden)
                feed, model_in = x, inputs
            model = keras.Model(model_in, keras.layers.Dense(1)(hidden))
            output = np.asarray(model(feed, training=False))
    except Exception as err:  # Keras raises many types for a shape it cannot take
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        result["error"] = (f"Keras could not run {' -> '.join(layers)} on "
                           f"{shape_text(x.shape)}: {first}")
        return result
    result["output_shape"] = [int(d) for d in output.shape]
    result["finite"] = bool(np.isfinite(output).all())
    return result
