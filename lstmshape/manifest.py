"""The shape manifest (``lstmshape/manifest-v1``) written beside every output, and its schema.

A manifest is one JSON object (sorted keys, two-space indent, trailing newline; no time stamps, so
the same run gives the same bytes) that says what the output is and how it was made:

* ``schema``, ``tool`` ``{name, version}``, ``command``, ``params`` (every effective option);
* ``inputs``: ``[{path, key, sha256, shape, dtype}]``; ``outputs``: role (``x``, ``lengths``,
  ``y``, ``values``, ...) to ``{path, key, shape, dtype, sha256}``; ``sha256`` is that of the
  whole file; paths are relative to the manifest's own folder;
* ``layout`` ``["samples", "timesteps", "features"]``, ``samples``, ``timesteps``, ``features``,
  ``input_shape`` (``[timesteps, features]`` as ``keras.Input(shape=...)`` takes it; ``null``
  timesteps when the result is ragged; ``[timesteps]`` with ``--no-feature-axis``),
  ``feature_names``;
* ``targets`` (when the output holds ``y``): ``{kind: sequence|timestep, shape, dtype}``, the
  shape being one sample's target (``[T, ...]`` per timestep);
* ``lengths``: ``{min, max, mean, truncated_samples, dropped_timesteps}`` of the true lengths;
* ``padding`` ``{side, value}`` or null, ``truncating`` ``{side, maxlen}`` or null;
* ``history``: the manifests of the inputs' own steps, oldest first.

:data:`JSON_SCHEMA` is the JSON Schema of that object (``lstmshape schema`` prints it).

:class:`Manifest` is the one reader of a manifest file: every question about an existing
manifest (true lengths, pad value, padding side, feature names, which side file a role names and
whether it may be read, the sha256 it records) is a method on it. Nothing else parses one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .errors import InputError
from .io.location import is_side_file, same_path
from .sequences import Side

if TYPE_CHECKING:
    from .ops.normalize import Normalization

SCHEMA_ID = "lstmshape/manifest-v1"
LAYOUT = ["samples", "timesteps", "features"]
#: The manifest of ``OUT`` is ``OUT`` + this suffix unless ``--manifest`` names another file.
MANIFEST_SUFFIX = ".json"
#: A manifest larger than this is refused unread (lstmshape's are a few KB).
MAX_MANIFEST_BYTES = 16 * 10**6
#: How a manifest lstmshape wrote begins (sorted keys, 2-space indent), and what it holds: an
#: unparsable ``IN.json`` that looks like this is a damaged manifest, not someone else's file.
MANIFEST_START = b'{\n  "'
SCHEMA_MARK = b'"' + SCHEMA_ID.encode() + b'"'
#: Types of the keys lstmshape reads back from a manifest; any other type means damage.
READ_KEY_TYPES: dict[str, type] = {"outputs": dict, "history": list, "padding": dict,
                                   "feature_names": list, "params": dict}


@dataclass
class FileEntry:
    """One file (or container member) an input was read from or an output written to."""

    path: str
    key: str | None
    shape: tuple[int, ...]
    dtype: str
    sha256: str | None = None
    #: a directory output (``.zarr``): ``sha256  relative/path`` of each file of this role's
    #: array, sorted; ``sha256`` is then that of the whole directory's listing
    files: list[str] | None = None


@dataclass
class ManifestData:
    """Everything a command knows about its result; :func:`render` turns it into JSON."""

    command: str
    params: dict[str, Any]
    inputs: list[FileEntry]
    outputs: dict[str, FileEntry]
    samples: int
    timesteps: int | None
    features: int
    feature_names: list[str]
    lengths: np.ndarray
    padding: dict[str, Any] | None = None
    truncating: dict[str, Any] | None = None
    truncated_samples: int = 0
    dropped_timesteps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: False for ``--no-feature-axis``: one feature written ``(N, T)``, input_shape ``[T]``
    feature_axis: bool = True


def json_number(value: float) -> float | str:
    """JSON has no NaN or infinity: they are written as the strings ``"nan"``, ``"inf"``."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def length_summary(lengths: np.ndarray) -> dict[str, Any]:
    if lengths.size == 0:
        return {"min": 0, "max": 0, "mean": 0.0}
    return {"min": int(lengths.min()), "max": int(lengths.max()),
            "mean": round(float(lengths.mean()), 6)}


def relative(path: str, manifest_path: str) -> str:
    if path == "-":
        return path
    folder = os.path.dirname(os.path.abspath(manifest_path))
    return os.path.relpath(os.path.abspath(path), folder)


def history_from(input_manifests: list[Manifest | None]) -> list[dict[str, Any]]:
    """The history of a new step: each input's history, then that input's own step."""
    history: list[dict[str, Any]] = []
    for manifest in input_manifests:
        if manifest is None:
            continue
        history.extend(manifest.data.get("history") or [])
        history.append({k: v for k, v in manifest.data.items() if k != "history"})
    return history


def side_file_path(output: str, role: str) -> str:
    """Where the array ``role`` of an ``.npy`` output lies: ``OUT.<role>.npy``, beside it."""
    return f"{output}.{role}.npy"


@dataclass(frozen=True)
class Manifest:
    """A manifest-v1 read from a file: ``data`` is its JSON object, ``path`` where it lies.

    Build one with :meth:`from_file` (the manifest must exist) or :meth:`beside` (the
    ``PATH.json`` an earlier step may have left beside an input); both check the keys lstmshape
    reads, each raising :class:`~lstmshape.errors.InputError` with the bad value shown.

    Example:
        >>> import json, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy.json")
        >>> _ = open(path, "w").write(json.dumps({"schema": SCHEMA_ID, "padding":
        ...                                        {"side": "pre", "value": "nan"}}))
        >>> m = Manifest.from_file(path)
        >>> m.side, m.pad_value, m.feature_names(2)
        ('pre', nan, ['f0', 'f1'])
    """

    path: str
    data: dict[str, Any]
    #: sha256 of the file's bytes as they were parsed (``--like`` records it)
    sha256: str | None = None

    @classmethod
    def from_file(cls, path: str, described: str | None = None) -> Manifest:
        """The manifest at ``path``; one clear error if it is missing, unreadable or not ours.

        ``described``: the data file it was asked for, named in the message when it is missing.
        """
        where = described or path
        if not os.path.isfile(path):
            raise InputError(f"{where}: no manifest {path} (re-run the lstmshape command that "
                             f"wrote it, or name it with --manifest)")
        text = cls._read(path, where)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise InputError(f"{path}: not a readable JSON manifest") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_ID:
            raise InputError(f"{path}: not an lstmshape manifest (expected \"schema\": "
                             f"\"{SCHEMA_ID}\")")
        return cls(path, data, hashlib.sha256(text).hexdigest()).checked()

    @classmethod
    def beside(cls, data_path: str) -> Manifest | None:
        """The manifest ``PATH.json`` an earlier lstmshape step wrote beside ``data_path``.

        None when there is none, or when the file is someone else's JSON (not ours to read); an
        error when it is ours and damaged: silently ignoring it would drop the true lengths.
        """
        path = data_path + MANIFEST_SUFFIX
        if not os.path.isfile(path):
            return None
        text = cls._read(path, data_path)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            if text.startswith(MANIFEST_START) or SCHEMA_MARK in text[:65536]:
                raise InputError(f"{path}: damaged manifest (not valid JSON) beside "
                                 f"{data_path}; remake it, or move or delete it") from None
            return None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_ID:
            return None
        return cls(path, data).checked()

    @staticmethod
    def _read(path: str, where: str) -> bytes:
        size = os.path.getsize(path)
        if size > MAX_MANIFEST_BYTES:  # lstmshape's own are a few KB; never parse a huge one
            raise InputError(f"{path}: {size:,} bytes, too large for a manifest of {where}; "
                             f"move or delete it")
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as err:
            raise InputError(f"{path}: cannot read the manifest of {where} "
                             f"({err.strerror or err}); fix its permissions, or move or delete "
                             f"it") from None

    def checked(self) -> Manifest:
        """Itself, once every key lstmshape reads back has the type the schema gives it."""
        for key, kind in READ_KEY_TYPES.items():
            if self.data.get(key) is not None and not isinstance(self.data[key], kind):
                raise InputError(f"{self.path}: damaged manifest: {key!r} is a "
                                 f"{type(self.data[key]).__name__}; move or delete it")
        value = (self.data.get("padding") or {}).get("value", 0)
        if not ((isinstance(value, int | float) and not isinstance(value, bool))
                or value in ("nan", "inf", "-inf")):
            raise InputError(f"{self.path}: damaged manifest: padding value {value!r} is not a "
                             f"number; move or delete it")
        return self

    # -- what it says ----------------------------------------------------------------------------
    @property
    def command(self) -> str | None:
        command = self.data.get("command")
        return command if isinstance(command, str) else None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.data.get("params") or {})

    @property
    def pad_value(self) -> float | None:
        """``padding.value`` as a float (``"nan"`` -> NaN); None when nothing is padded."""
        padding = self.data.get("padding")
        if not isinstance(padding, dict) or "value" not in padding:
            return None
        return float(padding["value"])  # checked(): a number or "nan"/"inf"/"-inf"

    @property
    def label_pad_value(self) -> float | None:
        """``params.y_value``: what this step padded per-timestep labels with (``"nan"`` ->
        NaN); None when it recorded none.

        Example:
            >>> Manifest("t.json", {"params": {"y_value": "nan"}}).label_pad_value
            nan
        """
        value = self.params.get("y_value")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if value in ("nan", "inf", "-inf"):  # json_number's spelling of what JSON lacks
            return float(value)
        return None

    @property
    def feature_axis(self) -> bool:
        """False when the output was written without its one-feature axis
        (``--no-feature-axis``: ``input_shape`` ``[T]``)."""
        shape = self.data.get("input_shape")
        return not (isinstance(shape, list) and len(shape) == 1)

    @property
    def target_kind(self) -> str | None:
        """``targets.kind`` as recorded (``"sequence"``/``"timestep"``), None when absent."""
        targets = self.data.get("targets")
        kind = targets.get("kind") if isinstance(targets, dict) else None
        return kind if kind in ("sequence", "timestep") else None

    @property
    def side(self) -> Side:
        """Where the padding is: ``"pre"``, or ``"post"`` (also when nothing is padded)."""
        padding = self.data.get("padding")
        return "pre" if isinstance(padding, dict) and padding.get("side") == "pre" else "post"

    @property
    def features(self) -> int | None:
        """The feature count of the output it describes (None when not recorded)."""
        features = self.data.get("features")
        return features if isinstance(features, int) and not isinstance(features, bool) else None

    @property
    def recorded_feature_names(self) -> list[str] | None:
        """``feature_names`` as recorded, or None when there are none."""
        names = self.data.get("feature_names")
        return [str(name) for name in names] if isinstance(names, list) else None

    def step(self, command: str) -> Manifest:
        """The latest step made by ``command``: this manifest's own, else the newest one of that
        command in its ``history`` (a ``pad`` followed by ``normalize`` still records how it
        was padded). One clear error when there is none.

        Example:
            >>> m = Manifest("t.json", {"command": "normalize", "history": [{"command": "pad",
            ...                          "params": {"resolved_maxlen": 154}}]})
            >>> m.step("pad").params, m.step("normalize").command
            ({'resolved_maxlen': 154}, 'normalize')
        """
        steps = [self.data, *reversed(self.data.get("history") or [])]
        for step in steps:
            if isinstance(step, dict) and step.get("command") == command:
                return Manifest(self.path, step, self.sha256).checked()
        made = [str(s.get("command")) for s in steps if isinstance(s, dict)]
        raise InputError(f"{self.path}: records no {command} step (its steps: "
                         f"{', '.join(reversed(made)) or 'none'}); pass the manifest of the "
                         f"{command} output to copy its options")

    def output_dtype(self, role: str) -> str | None:
        """The dtype recorded for ``outputs.<role>``."""
        dtype = self.outputs.get(role, {}).get("dtype")
        return dtype if isinstance(dtype, str) else None

    def normalization(self) -> Normalization:
        """The scaler a ``normalize`` step recorded (``normalization``), checked."""
        from .ops.normalize import Normalization

        return Normalization.from_json(self.data.get("normalization"), self.path)

    def feature_names(self, count: int) -> list[str]:
        """The recorded names when there is one per feature, else ``f0, f1, ...``."""
        names = self.data.get("feature_names")
        if isinstance(names, list) and len(names) == count:
            return [str(name) for name in names]
        return [f"f{i}" for i in range(count)]

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        """The ``outputs`` entries that have a path (the others are damage verify reports)."""
        return {role: entry for role, entry in (self.data.get("outputs") or {}).items()
                if isinstance(entry, dict) and isinstance(entry.get("path"), str)}

    def file_of(self, role: str) -> str | None:
        """The file ``outputs.<role>`` names, resolved against the manifest's folder."""
        entry = self.outputs.get(role)
        if entry is None:
            return None
        folder = os.path.dirname(os.path.abspath(self.path))
        return os.path.normpath(os.path.join(folder, entry["path"]))

    def side_file(self, role: str, output: str) -> str | None:
        """The ``OUT.<role>.npy`` file of the ``.npy`` output ``output``, if it may be read.

        The one rule: lstmshape writes an ``.npy`` output's other arrays only as
        ``OUT.<role>.npy`` beside it, so that is the only file read for ``role`` -- a manifest
        that names another one (``../secret``, ``sub/l.npy``) is refused, not followed. Without
        an entry the file is read when it exists (``OUT.y.npy`` is written even without a
        manifest: it is data, not metadata).
        """
        conventional = side_file_path(output, role)
        named = self.file_of(role)
        if named is not None and not is_side_file(named, output):
            raise InputError(f"{self.path}: outputs.{role}.path "
                             f"{self.outputs[role]['path']!r} is not {output}'s own "
                             f"{os.path.basename(conventional)}; lstmshape reads only that file "
                             f"-- remake the output, or move or delete the manifest")
        return conventional if os.path.isfile(conventional) else None

    def recorded_sha256(self, path: str) -> str | None:
        """The sha256 recorded for the output file at ``path``, if the manifest lists it."""
        for role in self.outputs:
            named = self.file_of(role)
            if named is not None and same_path(named, path):
                digest = self.outputs[role].get("sha256")
                return digest if isinstance(digest, str) else None
        return None


def render(data: ManifestData, manifest_path: str) -> dict[str, Any]:
    """The manifest object, with paths made relative to ``manifest_path``'s folder."""

    def entry(item: FileEntry) -> dict[str, Any]:
        found: dict[str, Any] = {"path": relative(item.path, manifest_path), "key": item.key,
                 "shape": list(item.shape), "dtype": item.dtype, "sha256": item.sha256}
        if item.files is not None:
            found["files"] = item.files
        return found

    lengths = length_summary(data.lengths)
    lengths["truncated_samples"] = int(data.truncated_samples)
    lengths["dropped_timesteps"] = int(data.dropped_timesteps)
    manifest: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "tool": {"name": "lstmshape", "version": __version__},
        "command": data.command,
        "params": data.params,
        "inputs": [entry(item) for item in data.inputs],
        "outputs": {role: entry(item) for role, item in data.outputs.items()},
        "layout": LAYOUT,
        "samples": int(data.samples),
        "timesteps": data.timesteps,
        "features": int(data.features),
        "input_shape": ([data.timesteps, int(data.features)] if data.feature_axis
                        else [data.timesteps]),
        "feature_names": list(data.feature_names),
        "lengths": lengths,
        "padding": data.padding,
        "truncating": data.truncating,
        "history": data.history,
    }
    manifest.update(data.extra)
    return manifest


def dumps(manifest: dict[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(manifest, sort_keys=True, indent=2, allow_nan=False) + "\n"


_FILE_ENTRY = {
    "type": "object",
    "required": ["path", "key", "shape", "dtype", "sha256"],
    "properties": {
        "path": {"type": "string"},
        "key": {"type": ["string", "null"]},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "dtype": {"type": "string"},
        "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
        "files": {"type": "array",
                  "description": "a directory output (.zarr): 'sha256  relative/path' of each "
                                 "file of this role's array, sorted; sha256 is then that of the "
                                 "whole directory's sorted listing",
                  "items": {"type": "string", "pattern": "^[0-9a-f]{64}  .+$"}},
    },
}

_NUMBER_OR_SPECIAL = {"oneOf": [{"type": "number"}, {"enum": ["nan", "inf", "-inf"]}]}

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://lstmshape.invalid/schema/manifest-v1.json",
    "title": "lstmshape shape manifest, version 1",
    "description": "Written beside every lstmshape output: what the tensor is and how it was made.",
    "type": "object",
    "required": ["schema", "tool", "command", "params", "inputs", "outputs", "layout", "samples",
                 "timesteps", "features", "input_shape", "feature_names", "lengths", "padding",
                 "truncating", "history"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "tool": {"type": "object", "required": ["name", "version"],
                 "properties": {"name": {"const": "lstmshape"}, "version": {"type": "string"}}},
        "command": {"type": "string"},
        "params": {"type": "object"},
        "inputs": {"type": "array", "items": _FILE_ENTRY},
        "outputs": {"type": "object", "additionalProperties": _FILE_ENTRY},
        "layout": {"const": LAYOUT},
        "samples": {"type": "integer", "minimum": 0},
        "timesteps": {"type": ["integer", "null"], "minimum": 0},
        "features": {"type": "integer", "minimum": 0},
        "input_shape": {"type": "array", "minItems": 1, "maxItems": 2,
                        "prefixItems": [{"type": ["integer", "null"]}, {"type": "integer"}]},
        "feature_names": {"type": "array", "items": {"type": "string"}},
        "lengths": {
            "type": "object",
            "required": ["min", "max", "mean", "truncated_samples", "dropped_timesteps"],
            "properties": {
                "min": {"type": "integer"}, "max": {"type": "integer"}, "mean": {"type": "number"},
                "truncated_samples": {"type": "integer", "minimum": 0},
                "dropped_timesteps": {"type": "integer", "minimum": 0},
            },
        },
        "padding": {
            "oneOf": [{"type": "null"},
                      {"type": "object", "required": ["side", "value"],
                       "properties": {"side": {"enum": ["pre", "post"]},
                                      "value": _NUMBER_OR_SPECIAL}}],
        },
        "truncating": {
            "oneOf": [{"type": "null"},
                      {"type": "object", "required": ["side", "maxlen"],
                       "properties": {"side": {"enum": ["pre", "post"]},
                                      "maxlen": {"type": "integer", "minimum": 0}}}],
        },
        "history": {"type": "array", "items": {"type": "object"}},
        "targets": {  # optional: only outputs that hold y
            "type": "object", "required": ["kind", "shape", "dtype"],
            "properties": {"kind": {"enum": ["sequence", "timestep"]},
                           "shape": {"type": "array",
                                     "items": {"type": ["integer", "null"], "minimum": 0}},
                           "dtype": {"type": "string"}},
        },
        "normalization": {
            "oneOf": [
                {"type": "object", "required": ["method", "mean", "std"],
                 "properties": {"method": {"const": "standard"},
                                "mean": {"type": "array", "items": {"type": "number"}},
                                "std": {"type": "array",
                                        "items": {"type": "number", "exclusiveMinimum": 0}}}},
                {"type": "object", "required": ["method", "min", "max"],
                 "properties": {"method": {"const": "minmax"},
                                "min": {"type": "array", "items": {"type": "number"}},
                                "max": {"type": "array", "items": {"type": "number"}}}},
            ],
        },
    },
}
