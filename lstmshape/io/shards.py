"""Folders of shards: a directory or a quoted glob read as one sequence set.

``lstmshape pad recordings/`` and ``lstmshape pad 'parts/part-*.h5'`` open every file, in natural
order (``part-2`` before ``part-10``), each through the one reader, and chain them: samples of
the first file, then of the second... Every file is an input of the manifest, with its sha256;
lengths are known for all of them before anything is read, so ``--maxlen p95`` is over all.
With ``--layout series`` every 2-D file is one sequence (a folder of recordings).

Example:
    >>> import numpy as np, tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> for i in (1, 2, 10):
    ...     np.save(os.path.join(folder, f"rec{i}.npy"), np.full((i, 3), i, np.float32))
    >>> from lstmshape.io.source import open_source
    >>> with open_source(folder, series=True) as src:
    ...     src.lengths.tolist(), src.n_features, len(src.records)
    ([1, 2, 10], 3, 3)
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..sequences import LENGTH_DTYPE, SequenceSet
from .location import SUFFIXES, Location, natural_key

if TYPE_CHECKING:
    from .source import Source

GLOB_CHARS = "*?["


def is_shard_set(path: str) -> bool:
    """A directory (not a ``.zarr`` store), or a glob pattern that names no file itself.

    Example:
        >>> is_shard_set("recordings/*.npy"), is_shard_set("-")
        (True, False)
    """
    if path == "-":
        return False
    if os.path.isdir(path):
        return not path.rstrip("/").lower().endswith(".zarr")  # a .zarr store is one array set
    return any(ch in path for ch in GLOB_CHARS) and not os.path.exists(path)


def readable(name: str) -> bool:
    from .table import is_table

    lower = name.lower()
    return not name.startswith(".") and (is_table(lower) or lower.endswith(SUFFIXES)) and \
        not lower.endswith(".json") and ".npy." not in lower  # OUT.lengths.npy side files


def shard_paths(path: str) -> list[str]:
    """The files of a directory or glob, in natural order; one line when there are none."""
    if os.path.isdir(path):
        # scandir: whether an entry is a file comes with the listing (no stat a file)
        with os.scandir(path) as entries:
            names = [entry.name for entry in entries if readable(entry.name)
                     and entry.is_file()]
        found = [os.path.join(path, n) for n in sorted(names, key=natural_key)]
        if not found:
            raise InputError(f"{path}: is a directory with no .npy, .npz, .h5 or table files "
                             f"in it")
        return found
    found = sorted((p for p in glob.glob(path) if os.path.isfile(p)), key=natural_key)
    if not found:
        raise InputError(f"{path}: no files match this pattern")
    return found


def shard_side_files(paths: list[str]) -> list[str]:
    """Every ``SHARD.json`` and ``SHARD.<role>.npy`` that exists beside the shards, from one
    listing per folder (a glob per shard is quadratic in a folder of 1,000 of them).

    Example:
        >>> import tempfile, os
        >>> folder = tempfile.mkdtemp()
        >>> for name in ("a.npy", "a.npy.lengths.npy", "a.npy.json", "b.npy"):
        ...     _ = open(os.path.join(folder, name), "w").close()
        >>> sorted(os.path.basename(p) for p in shard_side_files(
        ...     [os.path.join(folder, "a.npy"), os.path.join(folder, "b.npy")]))
        ['a.npy.json', 'a.npy.lengths.npy']
    """
    found: list[str] = []
    folders: dict[str, set[str]] = {}
    for path in paths:
        folder, name = os.path.split(path)
        folders.setdefault(folder, set()).add(name)
    for folder, names in folders.items():
        for entry in os.listdir(folder or "."):
            dots = [i for i, ch in enumerate(entry) if ch == "."]
            side = entry.endswith(".npy") or entry.endswith(".json")
            if side and any(entry[:i] in names and entry != entry[:i] for i in dots):
                found.append(os.path.join(folder, entry))
    return found


def open_shards(location: Location, open_one: Callable[[str], Source]) -> Source:
    """Every shard opened with ``open_one`` and chained into one Source."""
    from .source import ConcatRows, Source

    if location.key is not None:
        raise InputError(f"{location}: a directory or glob takes no :KEY")
    sources: list[Source] = []
    try:
        for path in shard_paths(location.path):
            source = open_one(path)
            sources.append(source)
            first = sources[0]
            if (source.n_features, source.dtype) != (first.n_features, first.dtype):
                raise InputError(f"{path}: this shard has {source.n_features} features of "
                                 f"{source.dtype}, but {first.location} has {first.n_features} "
                                 f"of {first.dtype}; every shard needs the same")
    except BaseException:
        for source in sources:
            source.close()
        raise
    counts = np.array([s.n_samples for s in sources], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    widths = {s.timesteps for s in sources}
    dense = len(widths) == 1 and None not in widths and all(s.kind == "dense" for s in sources)
    with_targets = [s.targets for s in sources if s.targets is not None]
    if with_targets and len(with_targets) != len(sources):
        missing = next(s for s in sources if s.targets is None)
        raise InputError(f"{missing.location}: has no targets (y) but other shards do")

    def read(start: int, stop: int) -> SequenceSet:
        parts = [SequenceSet(np.zeros((0, sources[0].n_features), sources[0].dtype),
                             np.zeros(0, dtype=LENGTH_DTYPE))]
        first = int(np.searchsorted(offsets, start, side="right")) - 1
        for index in range(max(first, 0), len(sources)):
            low, high = int(offsets[index]), int(offsets[index + 1])
            if low >= stop:
                break
            if high > start:
                parts.append(sources[index].read_block(max(start, low) - low,
                                                       min(stop, high) - low))
        return SequenceSet(np.concatenate([p.values for p in parts]),
                           np.concatenate([p.lengths for p in parts]))

    notes = []
    if all(s.layout == "dense" and len(s.records[0].shape) == 2 for s in sources):
        # a folder of 2-D files is most often recordings (T, F): say how to read them so
        notes.append(f"{location}: read every 2-D file as (samples, timesteps) with one "
                     f"feature; for a folder of recordings (timesteps, features), one sequence "
                     f"per file, pass --layout series")
    ids = [s.ids for s in sources if s.ids is not None]
    closers = [s.close for s in sources]
    first = sources[0]
    return Source(
        location=location, kind="dense" if dense else "ragged", layout="shards",
        detail=f"{len(sources)} files", n_samples=int(offsets[-1]),
        n_features=first.n_features, dtype=first.dtype,
        timesteps=widths.pop() if dense else None,
        lengths=np.concatenate([s.lengths for s in sources]).astype(LENGTH_DTYPE),
        side=first.side, records=[r for s in sources for r in s.records],
        block_reader=read, closers=closers, notes=notes,
        targets=ConcatRows(with_targets, str(location)) if with_targets else None,
        ids=np.concatenate(ids) if len(ids) == len(sources) else None,
        names=first.names if first.names else None)
