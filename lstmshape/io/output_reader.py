"""Reading any lstmshape output through its manifest: no TensorFlow needed.

:class:`OutputReader` opens what ``pad``, ``truncate``, ``add-feature``, ``window`` or ``batch``
wrote -- dense ``x`` (+ ``lengths``, ``y``), ragged ``values`` + ``lengths``, or batched
``x_NNNNNN`` / ``(num_batches, B, T, F)`` -- and hands out blocks of samples or stored batches.
``lstmshape verify`` checks outputs with it and :func:`lstmshape.tf.dataset` streams them to
TensorFlow with it. Side files are only ever ``OUT.<role>.npy`` beside the output.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..manifest import SCHEMA_ID as MANIFEST_SCHEMA
from ..sequences import LENGTH_DTYPE, SequenceSet, Side
from .arrays import StoredArray
from .location import Location, is_side_file
from .source import (
    DEFAULT_MEMORY_LIMIT,
    MAX_MANIFEST_BYTES,
    RAGGED_LENGTH_KEYS,
    Source,
    check_lengths,
    dense_reader,
    lengths_from_splits,
    pad_value_of,
    side_of,
)

#: Bytes of samples one read hands out; callers split them further.
DEFAULT_BLOCK_BYTES = 16 * 10**6
BATCH_KEY = re.compile(r"^x_(\d+)$")

def load_manifest(manifest_path: str, described: str | None = None) -> dict[str, Any]:
    """A manifest-v1 object read from ``manifest_path``; one clear :class:`InputError` if not.

    Example:
        >>> load_manifest("/nonexistent/train.npy.json", "train.npy")
        Traceback (most recent call last):
        ...
        lstmshape.errors.InputError: train.npy: no manifest /nonexistent/train.npy.json ...
    """
    where = described or manifest_path
    if not os.path.isfile(manifest_path):
        raise InputError(f"{where}: no manifest {manifest_path} (re-run the lstmshape command "
                         f"that wrote it, or name it with --manifest)")
    size = os.path.getsize(manifest_path)
    if size > MAX_MANIFEST_BYTES:  # lstmshape's own are a few KB; never parse a huge one
        raise InputError(f"{manifest_path}: {size:,} bytes, too large for a manifest")
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as err:
        raise InputError(f"{manifest_path}: not a readable JSON manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise InputError(f"{manifest_path}: not an lstmshape manifest (expected \"schema\": "
                         f"\"{MANIFEST_SCHEMA}\")")
    return manifest


class ArrayFiles:
    """Stored arrays by ``(path, key)``, each ``.npz``/``.h5`` file opened once.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.npz"); np.savez(path, x=np.zeros((2, 3)))
        >>> with ArrayFiles() as files:
        ...     files.keys(path), files.array(path, "x").shape
        (['x'], (2, 3))
    """

    def __init__(self, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
        self.memory_limit = memory_limit
        self.containers: dict[str, Any] = {}
        self.closers: list[Callable[[], None]] = []

    def _container(self, path: str) -> Any:
        if path not in self.containers:
            suffix = Location(path).suffix
            if suffix == ".npz":
                from .npz import NpzArchive

                container: Any = NpzArchive(path, self.memory_limit)
            elif suffix == ".h5":
                from .h5 import H5File

                container = H5File(path, self.memory_limit)
            else:
                raise InputError(f"{path}: unknown suffix {suffix or '(none)'!r}; lstmshape "
                                 f"outputs are .npy, .npz or .h5")
            self.containers[path] = container
            self.closers.append(container.close)
        return self.containers[path]

    def keys(self, path: str) -> list[str]:
        """The arrays at the top of a container (an ``.npy`` holds one, with key None)."""
        if Location(path).suffix == ".npy":
            return []
        container = self._container(path)
        if Location(path).suffix == ".npz":
            return list(container.keys())
        return [name for name, node in container.children(container.file)
                if not container.is_group(node)]

    def array(self, path: str, key: str | None) -> StoredArray:
        """The array ``key`` of ``path`` (``key`` None for an ``.npy``)."""
        if Location(path).suffix == ".npy":
            from .npy import NpyFileArray

            if not os.path.isfile(path):
                raise InputError(f"{path}: no such file")
            array = NpyFileArray(path)
            self.closers.append(array.close)
            return array
        if key is None:
            raise InputError(f"{path}: a container needs a key to name one of its arrays")
        container = self._container(path)
        if Location(path).suffix == ".npz":
            if key not in container.keys():  # noqa: SIM118 - not a dict
                raise InputError(f"{path}: no array {key!r}; keys found: "
                                 f"{', '.join(container.keys()) or 'none'}")
            member: StoredArray = container.array(key)
            return member
        from .h5 import H5DatasetArray

        return H5DatasetArray(container, container.get(key))

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()
        self.containers.clear()

    def __enter__(self) -> ArrayFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Block:
    """Consecutive samples as stored: ``x`` is ``(n, T, F)`` (dense, batched) or flat ragged
    ``values (sum(lengths), F)``; ``lengths`` the true lengths; ``y`` the targets or None."""

    x: np.ndarray
    lengths: np.ndarray
    y: np.ndarray | None


@dataclass
class StoredBatch:
    """One batch of a ``lstmshape batch`` container: ``x_NNNNNN``, ``lengths_NNNNNN``, ...."""

    x: StoredArray
    lengths: StoredArray | None
    y: StoredArray | None


class OutputReader:
    """An lstmshape output opened through its manifest: layout, geometry, and blocks of rows.

    ``manifest`` names the manifest (default ``PATH.json``, used when present); the pad value,
    padding side and, for an ``.npy``, the ``lengths``/``y`` files beside it come from it.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "out.npz")
        >>> np.savez(path, values=np.arange(5.0).reshape(5, 1), lengths=np.array([3, 2]))
        >>> with OutputReader(path) as out:
        ...     out.layout, out.samples, out.input_shape, [b.lengths.tolist() for b in out.blocks()]
        ('ragged', 2, [None, 1], [[3, 2]])
    """

    def __init__(self, path: str, *, manifest: str | None = None,
                 memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
        self.path = path
        self.memory_limit = memory_limit
        self.manifest_path = manifest if manifest is not None else path + ".json"
        self.manifest: dict[str, Any] | None = None
        if manifest is not None or os.path.isfile(self.manifest_path):
            self.manifest = load_manifest(self.manifest_path, path)
        self.files = ArrayFiles(memory_limit)
        self.pad_value = pad_value_of(self.manifest)
        self.side: Side = side_of(self.manifest)
        self.x: StoredArray | None = None
        self.y: StoredArray | None = None
        self.lengths = np.zeros(0, dtype=LENGTH_DTYPE)
        self.batches: list[StoredBatch] = []
        self.batch_lengths: StoredArray | None = None  # batched .npy: OUT.lengths.npy
        try:
            self.layout = self._open()
        except BaseException:
            self.files.close()
            raise

    # -- opening --------------------------------------------------------------------------------
    def side_file(self, role: str) -> str | None:
        """An ``.npy`` output's side file: its manifest entry, else ``OUT.<role>.npy``."""
        entry = ((self.manifest or {}).get("outputs") or {}).get(role)
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            candidate = os.path.join(os.path.dirname(os.path.abspath(self.manifest_path)),
                                     entry["path"])
            # only OUT.<role>.npy beside the output, whatever the manifest names (../secret)
            if os.path.isfile(candidate) and is_side_file(candidate, self.path):
                return candidate
        conventional = f"{self.path}.{role}.npy"
        return conventional if os.path.isfile(conventional) else None

    def _read_all(self, array: StoredArray) -> np.ndarray:
        return array.read_rows(0, array.shape[0] if array.shape else 1)

    def _open(self) -> str:
        if Location(self.path).suffix == ".npy":
            self.x = self.files.array(self.path, None)
            lengths_path = self.side_file("lengths")
            target_path = self.side_file("y")
            self.y = self.files.array(target_path, None) if target_path else None
            if len(self.x.shape) == 4:
                if lengths_path:
                    self.batch_lengths = self.files.array(lengths_path, None)
                return "batched"
            self._dense(self.files.array(lengths_path, None) if lengths_path else None)
            return "dense"
        keys = self.files.keys(self.path)
        if "x" in keys:
            self.x = self.files.array(self.path, "x")
            self.y = self.files.array(self.path, "y") if "y" in keys else None
            self._dense(self.files.array(self.path, "lengths") if "lengths" in keys else None)
            return "dense"
        if "values" in keys:
            self._ragged(keys)
            return "ragged"
        numbers = sorted(match.group(1) for key in keys if (match := BATCH_KEY.match(key)))
        if numbers:
            for number in numbers:
                lengths_key, target_key = f"lengths_{number}", f"y_{number}"
                self.batches.append(StoredBatch(
                    self.files.array(self.path, f"x_{number}"),
                    self.files.array(self.path, lengths_key) if lengths_key in keys else None,
                    self.files.array(self.path, target_key) if target_key in keys else None))
            return "batched"
        raise InputError(f"{self.path}: not an lstmshape output (no 'x', 'values' or "
                         f"'x_000000' array; keys found: {', '.join(keys) or 'none'})")

    def _dense(self, lengths: StoredArray | None) -> None:
        assert self.x is not None
        if len(self.x.shape) not in (2, 3):
            raise InputError(f"{self.path}: expected a (samples, timesteps, features) tensor, "
                             f"found shape {self.x.shape}")
        count, timesteps = self.x.shape[0], self.x.shape[1]
        if lengths is None:
            self.lengths = np.full(count, timesteps, dtype=LENGTH_DTYPE)
        else:  # bounds are verify's to report; only the count must fit to read rows
            self.lengths = check_lengths(self._read_all(lengths), count, None,
                                         f"{self.path}: lengths")

    def _ragged(self, keys: list[str]) -> None:
        self.x = self.files.array(self.path, "values")
        if len(self.x.shape) not in (1, 2):
            raise InputError(f"{self.path}: ragged values must be (timesteps, features), found "
                             f"shape {self.x.shape}")
        split_key = next((k for k in RAGGED_LENGTH_KEYS if k in keys), None)
        if split_key is None:
            raise InputError(f"{self.path}: has 'values' but no lengths/row_splits/offsets")
        raw = self._read_all(self.files.array(self.path, split_key))
        where = f"{self.path}:{split_key}"
        self.lengths = (check_lengths(raw, None, None, where) if split_key == "lengths"
                        else lengths_from_splits(raw, where))
        if int(self.lengths.sum()) != self.x.shape[0]:
            raise InputError(f"{where}: lengths add up to {int(self.lengths.sum())} timesteps "
                             f"but values has {self.x.shape[0]}")
        self.y = self.files.array(self.path, "y") if "y" in keys else None

    # -- geometry -------------------------------------------------------------------------------
    @property
    def main(self) -> StoredArray:
        if self.x is not None:
            return self.x
        return self.batches[0].x

    @property
    def features(self) -> int:
        shape = self.main.shape
        if self.layout == "ragged":
            return shape[1] if len(shape) == 2 else 1
        return shape[-1] if len(shape) in (3, 4) else 1

    @property
    def dtype(self) -> np.dtype:
        return self.main.dtype

    @property
    def timesteps(self) -> int | None:
        """Timesteps of every sample, None when they vary (ragged, or batches of their own T)."""
        if self.layout == "ragged":
            return None
        if self.layout == "batched" and self.x is None:
            widths = {batch.x.shape[1] for batch in self.batches if len(batch.x.shape) == 3}
            return widths.pop() if len(widths) == 1 else None
        return self.main.shape[-2] if len(self.main.shape) == 4 else self.main.shape[1]

    @property
    def samples(self) -> int:
        if self.layout != "batched":
            return len(self.lengths)
        if self.x is not None:
            return self.x.shape[0] * self.x.shape[1]
        return sum(batch.x.shape[0] for batch in self.batches)

    @property
    def num_batches(self) -> int:
        if self.layout != "batched":
            return 0
        return self.x.shape[0] if self.x is not None else len(self.batches)

    @property
    def input_shape(self) -> list[int | None]:
        """``[timesteps, features]`` as ``keras.Input(shape=...)`` takes it."""
        return [self.timesteps, self.features]

    def target_shape(self) -> tuple[int, ...] | None:
        """The shape of one sample's target, or None when the output has no ``y``."""
        if self.layout == "batched" and self.x is None:
            first = self.batches[0].y if self.batches else None
            return None if first is None else tuple(first.shape[1:])
        if self.y is None:
            return None
        return tuple(self.y.shape[2:] if self.layout == "batched" else self.y.shape[1:])

    def target_dtype(self) -> np.dtype | None:
        if self.layout == "batched" and self.x is None:
            first = self.batches[0].y if self.batches else None
            return None if first is None else first.dtype
        return None if self.y is None else self.y.dtype

    # -- reading --------------------------------------------------------------------------------
    def source(self) -> Source:
        """A :class:`~lstmshape.io.source.Source` over the real timesteps (dense, ragged)."""
        assert self.x is not None and self.layout != "batched"
        location = Location(self.path, None if Location(self.path).suffix == ".npy" else
                            ("values" if self.layout == "ragged" else "x"))
        if self.layout == "dense":
            timesteps = self.x.shape[1]
            reader = dense_reader(self.x, self.lengths, self.side, timesteps)
        else:
            timesteps = None
            values, features = self.x, self.features
            offsets = np.concatenate([[0], np.cumsum(self.lengths)])

            def reader(start: int, stop: int) -> SequenceSet:
                rows = values.read_rows(int(offsets[start]), int(offsets[stop]))
                return SequenceSet(rows.reshape(-1, features), self.lengths[start:stop])

        return Source(location=location, kind="dense" if timesteps is not None else "ragged",
                      layout=self.layout, n_samples=len(self.lengths),
                      n_features=self.features, dtype=self.dtype, timesteps=timesteps,
                      lengths=self.lengths, side=self.side, records=[], block_reader=reader,
                      manifest=self.manifest)

    def batch(self, index: int) -> Block:
        """Stored batch ``index`` of a batched output."""
        if self.x is not None:  # (num_batches, B, T, F) .npy; side files (NB, B) or (NB*B,)
            x = self.x.read_rows(index, index + 1)[0]
            size = x.shape[0]
            lengths = np.full(size, x.shape[1], dtype=LENGTH_DTYPE)
            if self.batch_lengths is not None:
                lengths = self._batch_rows(self.batch_lengths, index, size).astype(LENGTH_DTYPE)
            y = None if self.y is None else self._batch_rows(self.y, index, size)
            return Block(x, lengths, y)
        stored = self.batches[index]
        x = stored.x.read_rows(0, stored.x.shape[0])
        lengths = (np.full(x.shape[0], x.shape[1], dtype=LENGTH_DTYPE) if stored.lengths is None
                   else self._read_all(stored.lengths).astype(LENGTH_DTYPE))
        y = None if stored.y is None else self._read_all(stored.y)
        return Block(x, lengths, y)

    def _batch_rows(self, array: StoredArray, index: int, size: int) -> np.ndarray:
        """Batch ``index``'s rows of a side file stored per batch or per sample."""
        assert self.x is not None
        if array.shape[:2] == self.x.shape[:2]:
            rows: np.ndarray = array.read_rows(index, index + 1)[0]
            return rows
        return array.read_rows(index * size, (index + 1) * size)

    def blocks(self, max_bytes: int = DEFAULT_BLOCK_BYTES,
               rng: np.random.Generator | None = None) -> Iterator[Block]:
        """The output as blocks of about ``max_bytes``; one per stored batch when batched.

        With ``rng``, the blocks come in a random order and the samples inside each block are
        permuted (batched outputs: only the order of the batches), so that a shuffle buffer of
        one block's samples mixes the whole file without reading it all into memory.
        """
        if self.layout == "batched":
            order = np.arange(self.num_batches)
            if rng is not None:
                order = rng.permutation(order)
            for index in order:
                yield self.batch(int(index))
            return
        assert self.x is not None
        bounds = self.source().block_bounds(max_bytes)
        if rng is not None:
            bounds = [bounds[int(i)] for i in rng.permutation(len(bounds))]
        offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        for start, stop in bounds:
            lengths = self.lengths[start:stop]
            y = None if self.y is None else self.y.read_rows(start, stop)
            if self.layout == "dense":
                x = self.x.read_rows(start, stop)
                x = x.reshape(*x.shape[:2], -1)
                if rng is not None:
                    perm = rng.permutation(stop - start)
                    x, lengths = x[perm], lengths[perm]
                    y = None if y is None else y[perm]
            else:
                rows = self.x.read_rows(int(offsets[start]), int(offsets[stop]))
                seqs = SequenceSet(rows.reshape(-1, self.features), lengths)
                if rng is not None:
                    perm = rng.permutation(stop - start)
                    seqs = seqs.take(perm)
                    y = None if y is None else y[perm]
                x, lengths = seqs.values, seqs.lengths
            yield Block(x, lengths, y)

    def head(self, count: int) -> Block:
        """The first ``count`` samples (of the first batch, when batched), as stored."""
        if self.layout == "batched":
            block = self.batch(0) if self.num_batches else None
            if block is None:
                return Block(np.zeros((0, 0, self.features), self.dtype),
                             np.zeros(0, LENGTH_DTYPE), None)
            return Block(block.x[:count], block.lengths[:count],
                         None if block.y is None else block.y[:count])
        assert self.x is not None
        stop = min(count, len(self.lengths))
        lengths = self.lengths[:stop]
        y = None if self.y is None else self.y.read_rows(0, stop)
        if self.layout == "dense":
            x = self.x.read_rows(0, stop)
            return Block(x.reshape(*x.shape[:2], -1), lengths, y)
        rows = self.x.read_rows(0, int(lengths.sum()))
        return Block(rows.reshape(-1, self.features), lengths, y)

    def close(self) -> None:
        self.files.close()

    def __enter__(self) -> OutputReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

