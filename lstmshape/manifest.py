"""The shape manifest (``lstmshape/manifest-v1``) written beside every output, and its schema.

A manifest is one JSON object (sorted keys, two-space indent, trailing newline; no time stamps, so
the same run gives the same bytes) that says what the output is and how it was made:

* ``schema``, ``tool`` ``{name, version}``, ``command``, ``params`` (every effective option);
* ``inputs``: ``[{path, key, sha256, shape, dtype}]``; ``outputs``: role (``x``, ``lengths``,
  ``y``, ``values``, ...) to ``{path, key, shape, dtype, sha256}``; ``sha256`` is that of the
  whole file; paths are relative to the manifest's own folder;
* ``layout`` ``["samples", "timesteps", "features"]``, ``samples``, ``timesteps``, ``features``,
  ``input_shape`` (``[timesteps, features]`` as ``keras.Input(shape=...)`` takes it; ``null``
  timesteps when the result is ragged), ``feature_names``;
* ``lengths``: ``{min, max, mean, truncated_samples, dropped_timesteps}`` of the true lengths;
* ``padding`` ``{side, value}`` or null, ``truncating`` ``{side, maxlen}`` or null;
* ``history``: the manifests of the inputs' own steps, oldest first.

:data:`JSON_SCHEMA` is the JSON Schema of that object (``lstmshape schema`` prints it).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__

SCHEMA_ID = "lstmshape/manifest-v1"
LAYOUT = ["samples", "timesteps", "features"]
#: Keys an input's manifest carries that are not copied into the next step's history entry.
PRIVATE_KEYS = ("_path", "history")


@dataclass
class FileEntry:
    """One file (or container member) an input was read from or an output written to."""

    path: str
    key: str | None
    shape: tuple[int, ...]
    dtype: str
    sha256: str | None = None


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


def history_from(input_manifests: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The history of a new step: each input's history, then that input's own step."""
    history: list[dict[str, Any]] = []
    for manifest in input_manifests:
        if manifest is None:
            continue
        history.extend(manifest.get("history") or [])
        history.append({k: v for k, v in manifest.items() if k not in PRIVATE_KEYS})
    return history


def render(data: ManifestData, manifest_path: str) -> dict[str, Any]:
    """The manifest object, with paths made relative to ``manifest_path``'s folder."""

    def entry(item: FileEntry) -> dict[str, Any]:
        return {"path": relative(item.path, manifest_path), "key": item.key,
                "shape": list(item.shape), "dtype": item.dtype, "sha256": item.sha256}

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
        "input_shape": [data.timesteps, int(data.features)],
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
        "input_shape": {"type": "array", "minItems": 2, "maxItems": 2,
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
    },
}
