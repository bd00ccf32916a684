"""``--like MANIFEST``: shape another set exactly as an earlier run shaped the training set.

The manifest of the training set's step records every option as it was resolved (``pad --maxlen
p95`` as ``resolved_maxlen: 154``, ``normalize`` as its statistics). A run with ``like`` takes
each option it was not given from there, so the test set is padded to 154 timesteps whatever its
own 95th percentile, with the same dtype, side and value, and scaled with the training set's
statistics. An option given explicitly wins (and is what the new manifest records). The step is
the manifest's own when it was made by the same command, else the newest one of that command in
its history. Its data must have the same features: a different count or different
``feature_names`` is one error naming both.

Example:
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.npy.json")
    >>> _ = open(path, "w").write(json.dumps({"schema": "lstmshape/manifest-v1",
    ...     "command": "pad", "features": 1, "feature_names": ["f0"],
    ...     "params": {"maxlen": "p95", "resolved_maxlen": 154, "value": "nan"}}))
    >>> like = Like.open(path, "pad")
    >>> resolve({"maxlen": None, "value": None, "padding": "pre"},
    ...         {"maxlen": "max", "value": 0.0, "padding": "post"}, like,
    ...         {"maxlen": like.param("resolved_maxlen")})
    {'maxlen': 154, 'value': nan, 'padding': 'pre'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ArgumentError, InputError, Param
from .manifest import Manifest, relative

if TYPE_CHECKING:
    from .job import Job

#: JSON has no NaN: numbers recorded as these strings are read back as floats
SPECIAL_NUMBERS = ("nan", "inf", "-inf")


@dataclass(frozen=True)
class Like:
    """The step of ``command`` that a ``--like`` manifest records, and that file's identity."""

    path: str
    step: Manifest
    sha256: str

    @classmethod
    def open(cls, path: str, command: str) -> Like:
        """Read ``path`` (through :meth:`Manifest.from_file`) and find its ``command`` step."""
        manifest = Manifest.from_file(path)
        assert manifest.sha256 is not None  # from_file always hashes what it parsed
        return cls(path, manifest.step(command), manifest.sha256)

    def has(self, name: str) -> bool:
        return name in self.step.params

    def param(self, name: str) -> Any:
        """The recorded option ``name`` (``"nan"`` read back as NaN)."""
        value = self.step.params.get(name)
        return float(value) if isinstance(value, str) and value in SPECIAL_NUMBERS else value

    def check_features(self, names: list[str], where: str) -> None:
        """Refuse data whose features are not those the step was made for."""
        recorded = self.step.recorded_feature_names
        count = self.step.features if self.step.features is not None else (
            None if recorded is None else len(recorded))
        if (count is None or count == len(names)) and recorded in (None, names):
            return
        theirs = f"{count} features" + ("" if recorded is None else f" {recorded}")
        raise InputError(f"{where}: {len(names)} feature{'s' if len(names) != 1 else ''} "
                         f"{names}, but --like {self.path} was made for {theirs}; --like needs "
                         f"data with the same features")

    def record(self, manifest_path: str) -> dict[str, str]:
        """The new manifest's ``params.like``: the manifest's path (relative to the new
        manifest's folder, as every path in it) and the sha256 of its bytes."""
        return {"path": relative(self.path, manifest_path), "sha256": self.sha256}


def open_like(path: str | None, command: str) -> Like | None:
    """:meth:`Like.open`, or None without ``--like``."""
    return None if path is None else Like.open(path, command)


def resolve(given: dict[str, Any], defaults: dict[str, Any], like: Like | None,
            resolved: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every option's effective value: the one given (not None) wins; else, with ``like``, the
    recorded one (``resolved`` overrides what was recorded as given, e.g. ``pad``'s
    ``resolved_maxlen`` for ``maxlen``); else the default.

    Example:
        >>> resolve({"size": None, "seed": 3}, {"size": 32, "seed": 0}, None)
        {'size': 32, 'seed': 3}
    """
    effective: dict[str, Any] = {}
    for name, value in given.items():
        if value is not None:
            effective[name] = value
        elif like is not None and resolved is not None and name in resolved:
            effective[name] = resolved[name]
        elif like is not None and like.has(name):
            effective[name] = like.param(name)
        else:
            effective[name] = defaults[name]
    return effective


def adopt(like: Like | None, params: dict[str, Any], names: list[str], where: object,
          job: Job) -> None:
    """With a ``like``: refuse data with other features and an output that would overwrite the
    manifest itself, and record ``params.like``."""
    if like is not None:
        job.like = like
        job.refuse_overwriting(like.path)
        like.check_features(names, str(where))
        params["like"] = like.record(job.record_path)


def required(chosen: dict[str, Any], name: str) -> Any:
    """An option that has no default: given, or recorded in the ``like`` manifest.

    Example:
        >>> required({"maxlen": None}, "maxlen")
        Traceback (most recent call last):
        ...
        lstmshape.errors.ArgumentError: maxlen is required (or like=MANIFEST that records it)
    """
    if chosen[name] is None:
        raise ArgumentError(Param(name), " is required (or ", Param("like", "MANIFEST",
                                                                   shown="MANIFEST"),
                          " that records it)")
    return chosen[name]
