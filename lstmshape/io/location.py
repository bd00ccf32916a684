"""``SRC`` arguments: a path, optionally ``:KEY`` naming one array inside a container.

Example:
    >>> parse_location("data.h5:/group/ds")
    Location(path='data.h5', key='/group/ds')
    >>> parse_location("train.npy")
    Location(path='train.npy', key=None)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

#: Suffixes lstmshape reads and writes, lower case; ``.hdf5`` is an alias of ``.h5``; a
#: ``.zarr`` is a directory (a Zarr v3 store).
SUFFIXES = (".npy", ".npz", ".h5", ".hdf5", ".zarr")
STDIO = "-"


@dataclass(frozen=True)
class Location:
    """A file path plus, for ``.npz``/``.h5`` containers, the key of one array or group."""

    path: str
    key: str | None = None

    def __str__(self) -> str:
        return self.path if self.key is None else f"{self.path}:{self.key}"

    @property
    def is_stdio(self) -> bool:
        return self.path == STDIO

    @property
    def suffix(self) -> str:
        """``.npy``, ``.npz`` or ``.h5`` (``.hdf5`` maps to ``.h5``); ``.npy`` for stdin/stdout."""
        if self.is_stdio:
            return ".npy"
        if self.path.lower().endswith(".csv.gz"):
            return ".csv.gz"
        suffix = os.path.splitext(self.path.rstrip("/"))[1].lower()
        return ".h5" if suffix == ".hdf5" else suffix


def parse_location(text: str) -> Location:
    """Split ``PATH[:KEY]``; a colon counts as the separator only right after a known suffix
    (of an array container, or of a table: ``tokens.arrow:input_ids`` names a list column)."""
    if text == STDIO or os.path.exists(text):
        return Location(text.rstrip("/") if text.endswith(".zarr/") else text)
    pattern = r"\.(?:npy|npz|h5|hdf5|zarr|parquet|csv|csv\.gz|tsv|arrow|feather|ipc):"
    for match in re.finditer(pattern, text, flags=re.IGNORECASE):
        path, key = text[:match.end() - 1], text[match.end():]
        return Location(path, key or None)
    return Location(text)


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting ``arr_2`` before ``arr_10``.

    Example:
        >>> sorted(["arr_10", "arr_2", "arr_1"], key=natural_key)
        ['arr_1', 'arr_2', 'arr_10']
    """
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def is_side_file(path: str, output: str) -> bool:
    """``output.<role>.npy`` in ``output``'s own folder: the only files lstmshape writes beside
    an output, and so the only ones it may ever remove or read on an output's behalf."""
    folder, name = os.path.split(os.path.abspath(path))
    out_folder, out_name = os.path.split(os.path.abspath(output))
    return folder == out_folder and name.startswith(out_name + ".") and name.endswith(".npy")


def same_path(first: str, second: str) -> bool:
    """The same file, existing or not yet (through links when it exists)."""
    if first == "-" or second == "-":
        return False
    if os.path.exists(first) and os.path.exists(second):
        return os.path.samefile(first, second)
    return os.path.realpath(first) == os.path.realpath(second)
