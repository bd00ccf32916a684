"""PyTorch helpers: train from any lstmshape output with packing and length bucketing.

::

    import functools, torch
    import lstmshape.torch as lt

    # lstmshape window series.npy --timesteps 48 --target 0 --horizon 1 -o train.h5
    data = lt.SequenceDataset("train.h5")                      # items (x_i, length_i, y_i)
    sampler = lt.LengthBucketSampler(data, batch_size=64, seed=1)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler,
                                         collate_fn=functools.partial(lt.collate, pack=True))
    for epoch in range(10):
        sampler.set_epoch(epoch)
        for batch in loader:          # {"x": PackedSequence, "lengths", "mask", "y"}
            out, _ = lstm(batch["x"])
            prediction = head(lt.last_valid(out, batch["lengths"]))

* :class:`SequenceDataset` -- a map-style dataset over any lstmshape output (``.npy``, ``.npz``,
  ``.h5``; padded, ragged or batched), read through :func:`~lstmshape.io.source.open_source`,
  the reader every command uses. Each item is one sequence at its true length.
* :class:`LengthBucketSampler` -- a batch sampler that groups similar lengths with the bucketing
  of ``lstmshape batch --bucket-by-length``, a new seeded order every epoch, and equal shares
  for distributed ranks.
* :func:`collate` -- a padded (post) batch, its ``lengths`` as the CPU int64 tensor
  ``pack_padded_sequence`` wants, a boolean ``mask``, ``y`` and ``sample_weight``; or a
  ``PackedSequence``.
* :func:`last_valid` -- each sequence's output at its last real step.

Importing this module does not import PyTorch: the first item, batch or call does, and raises
:class:`TorchMissing` (``pip install 'lstmshape[torch]'``) when it is not installed. Invalid
arguments raise :class:`~lstmshape.errors.ArgumentError` (a ``ValueError``) naming the
parameter.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import math
import numbers
import operator
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ArgumentError, InputError, LstmshapeError, Param
from .io.source import DEFAULT_MEMORY_LIMIT, Source, open_source
from .ops.batch import plan_rows
from .sequences import LENGTH_DTYPE, SequenceSet

__all__ = ["INSTALL_HINT", "ItemBatch", "LengthBucketSampler", "SequenceDataset",
           "TorchMissing", "collate", "import_torch", "last_valid", "torch_available"]

INSTALL_HINT = "pip install 'lstmshape[torch]'"
#: Bytes read from the file at a time while a dataset is loaded into memory.
LOAD_BLOCK_BYTES = 16 * 10**6


class TorchMissing(LstmshapeError):
    """PyTorch (the ``torch`` extra) is not installed but a PyTorch feature was asked for."""


def torch_available() -> bool:
    """Whether ``torch`` can be found, without importing it (fast).

    Example:
        >>> isinstance(torch_available(), bool)
        True
    """
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def import_torch(purpose: str = "this") -> Any:
    """The ``torch`` module, imported on first use; :class:`TorchMissing` when it is absent.

    Typed ``Any`` on purpose: this module's own types stay numpy's, and ``mypy`` need not
    analyse PyTorch to check lstmshape.

    Example:
        >>> import_torch().__name__
        'torch'
    """
    loaded = sys.modules.get("torch")  # per batch: skip import_module's own look-ups
    if loaded is not None:
        return loaded
    try:
        return importlib.import_module("torch")
    except ImportError as err:
        raise TorchMissing(f"{purpose} needs PyTorch, which cannot be imported ({err}): "
                           f"{INSTALL_HINT}") from None


# ---------------------------------------------------------------------------------------------
# Checking arguments


def whole_number(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``; :class:`ArgumentError` naming ``name``.

    Example:
        >>> whole_number(3, "batch_size", 1)
        3
        >>> whole_number(0, "batch_size", 1)
        Traceback (most recent call last):
        ...
        lstmshape.errors.ArgumentError: batch_size=0: expected an integer >= 1
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ArgumentError(Param(name, value), f": expected an integer >= {minimum}")
    return int(value)


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ArgumentError(Param(name, value), ": expected True or False")
    return bool(value)


# ---------------------------------------------------------------------------------------------
# Items and batches of items


def as_tensor(torch: Any, array: np.ndarray) -> Any:
    """``torch.from_numpy`` without its warning on read-only arrays (those are copied)."""
    return torch.from_numpy(array if array.flags.writeable else array.copy())


class ItemBatch:
    """The items of one batch, held as one block of rows instead of one tensor per item.

    :meth:`SequenceDataset.__getitems__` returns one (``DataLoader`` calls it for a whole
    batch of indices and hands the result to ``collate_fn``): :func:`collate` then pads it
    with one vectorised copy, not item by item. Indexing or iterating it gives the same
    ``(x_i, length_i[, y_i[, w_i]])`` items as the dataset, so any other ``collate_fn`` works
    too.

    ``values`` holds the timesteps; item ``k`` is ``values[starts[k]:starts[k] + lengths[k]]``.
    ``targets`` and ``weights`` (``sample_weight``) hold one row per item, or with
    ``per_step`` one entry per timestep, laid out like ``values`` (the same ``starts``).

    Example:
        >>> batch = ItemBatch(np.arange(5.0).reshape(5, 1), np.array([3, 0]), np.array([2, 3]))
        >>> len(batch), batch.padded(0.0)[0][:, :, 0].tolist()
        (2, [[3.0, 4.0, 0.0], [0.0, 1.0, 2.0]])
    """

    def __init__(self, values: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                 targets: np.ndarray | None = None, weights: np.ndarray | None = None,
                 per_step: bool = False) -> None:
        self.values = values
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=LENGTH_DTYPE)
        self.targets = targets
        self.weights = weights
        self.per_step = per_step

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        torch = import_torch("lstmshape.torch")
        k = operator.index(index)
        if not -len(self) <= k < len(self):
            raise IndexError(f"item {k} of a batch of {len(self)}")
        start, length = int(self.starts[k]), int(self.lengths[k])
        steps = slice(start, start + length)
        x = as_tensor(torch, self.values[steps])
        if self.targets is None:
            return x, length
        y = as_tensor(torch, np.asarray(self.targets[steps if self.per_step else k]))
        if self.weights is None:
            return x, length, y
        return x, length, y, as_tensor(torch, np.asarray(self.weights[steps if self.per_step
                                                                      else k]))

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return (self[k] for k in range(len(self)))

    def padded(self, value: float) -> tuple[np.ndarray, np.ndarray]:
        """``(x, mask)``: the items padded (post) to the longest, ``(B, T, F)``, and ``(B, T)``
        True on real steps."""
        fits_value(value, self.values.dtype)
        width = int(self.lengths.max()) if len(self) else 0
        mask = STEPS[:width] < self.lengths[:, None] if width <= STEPS.shape[0] else \
            np.arange(width) < self.lengths[:, None]
        return gather_padded(self.values, self.starts, self.lengths, width, value, mask), mask


#: ``STEPS[:T]``, the step numbers of a mask, without a new ``arange`` per batch
STEPS = np.arange(4096)
#: record dtypes of ``width`` steps of ``row_bytes``, by ``(row_bytes, width)``
WINDOW_DTYPES: dict[tuple[int, int], np.dtype] = {}


def gather_padded(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int,
                  value: float, mask: np.ndarray | None = None) -> np.ndarray:
    """``(B, width, *flat.shape[1:])``: row k holds ``flat[starts[k]:starts[k] + lengths[k]]``
    followed by ``value``.

    One fancy index of whole rows: ``flat`` is viewed (no copy) as overlapping windows, one
    opaque record of ``width`` steps starting at every step, so each row is one block copy
    (~2x faster than gathering every (row, step) slot, which was itself ~2x a masked scatter).
    A window reads past a sequence's end into its neighbours; those steps then get ``value``
    (a bucketed batch has few). Rows whose window would run past the end of ``flat`` are
    copied on their own. ``mask`` (``(B, width)``, True on real steps) saves computing it.

    Example:
        >>> flat = np.arange(5.0).reshape(5, 1)
        >>> gather_padded(flat, np.array([3, 0]), np.array([2, 3]), 3, -1.0)[:, :, 0].tolist()
        [[3.0, 4.0, -1.0], [0.0, 1.0, 2.0]]
    """
    count = starts.shape[0]
    shape = (count, width, *flat.shape[1:])
    row_bytes = flat.dtype.itemsize * math.prod(flat.shape[1:])
    total = flat.shape[0]
    if not count or not width or not row_bytes:
        return np.full(shape, value, dtype=flat.dtype)
    if not flat.flags.c_contiguous:
        flat = np.ascontiguousarray(flat)
    last = total - width  # the last step a whole window can start at
    every = last >= 0 and int(starts.max()) <= last
    if last >= 0:
        key = (row_bytes, width)
        record = WINDOW_DTYPES.get(key)
        if record is None:
            record = WINDOW_DTYPES.setdefault(key, np.dtype((np.void, row_bytes * width)))
        windows = np.ndarray((last + 1,), dtype=record, buffer=flat, strides=(row_bytes,))
        picked = windows[starts if every else np.where(starts <= last, starts, 0)]
    else:
        picked = np.empty(count, dtype=np.dtype((np.void, row_bytes * width)))
    out: np.ndarray = picked.view(flat.dtype).reshape(shape)
    if not every:
        for k in np.flatnonzero(starts > last).tolist():
            start, length = int(starts[k]), int(lengths[k])
            out[k, :length] = flat[start:start + length]
    if int(lengths.min()) < width:
        if mask is None:
            mask = np.arange(width) < lengths[:, None]
        out[~mask] = value
    return out


def fits_value(value: float, dtype: np.dtype) -> None:
    """Refuse a ``padding_value`` that ``dtype`` cannot hold (NaN in ints, 2.5 in ints)."""
    if dtype.kind == "f":
        return
    if not math.isfinite(value) or not float(value).is_integer():
        raise ArgumentError(Param("padding_value", value), f" cannot be stored in {dtype} "
                            f"data; use a whole number, or a float dtype= for the dataset")


def fits_label(value: float, dtype: np.dtype) -> None:
    """Refuse a ``y_padding_value`` that labels of ``dtype`` cannot hold (NaN or 0.5 in ints,
    -100 in uint8)."""
    if dtype.kind == "f":
        return
    whole = math.isfinite(value) and float(value).is_integer()
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    if not whole or (info is not None and not info.min <= value <= info.max):
        raise ArgumentError(Param("y_padding_value", value), f" cannot be stored in the "
                            f"{dtype} labels; use a value they can hold")


# ---------------------------------------------------------------------------------------------
# The dataset


class SequenceDataset:
    """A map-style dataset over an lstmshape output: item i is ``(x_i, length_i)``,
    ``(x_i, length_i, y_i)`` when the output has targets, and ``(x_i, length_i, y_i, w_i)``
    when it also holds ``sample_weight``.

    ``x_i`` is a ``(length_i, F)`` tensor holding sequence i at its true length: a ragged
    output's sequence as stored, a padded output's row with the padding taken off on the side
    the output was padded (``pre`` or ``post``, from its manifest or ``padding_side``).
    ``length_i`` is an int; ``y_i`` the target row as a tensor -- per-timestep targets at the
    true length too, ``(length_i, ...)``, taken off the same side as x. ``w_i`` is float32: a
    sample's weight (0 for a pad row of ``batch --remainder pad``), or with per-timestep
    targets ``(length_i,)`` (the real steps' weights). ``per_step`` and ``has_weights`` say
    which. :func:`collate` pads per-timestep ``y`` and ``w`` like x. ``dtype`` casts ``x`` (e.g.
    ``"float32"`` for ``nn.LSTM``; default: as stored). Any layout lstmshape reads is read the
    same way, batched outputs included (their rows in order, a pad row as an empty sequence).

    Memory: the true ``lengths`` (8 bytes a sample) are always held (``.lengths``). When the
    real timesteps and targets fit ``memory_limit`` (default 256 MB, the CLI's
    ``--memory-limit``) -- or with ``in_memory=True`` -- they are read at construction, a block
    of about 16 MB at a time, into one array that items are views of. Otherwise
    (``in_memory=False``, or a larger file) nothing more is read at construction: each item is
    read from the file when asked for, and a batch (``__getitems__``) in one read per run of
    consecutive indices. Each process (each ``DataLoader`` worker) opens the file for itself.
    Items read from memory share it with the dataset, as ``TensorDataset``'s do (a worker
    started by ``spawn`` gets its own copy).

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "r.npz")
        >>> np.savez(path, values=np.arange(5.0).reshape(5, 1), lengths=np.array([2, 3]),
        ...          y=np.array([0, 1]))
        >>> data = SequenceDataset(path, dtype="float32")
        >>> x, length, y = data[1]
        >>> x[:, 0].tolist(), length, int(y)
        ([2.0, 3.0, 4.0], 3, 1)
        >>> len(data), data.lengths.tolist(), data.in_memory
        (2, [2, 3], True)
    """

    def __init__(self, path: str | os.PathLike[str], *, dtype: npt.DTypeLike | None = None,
                 in_memory: bool | None = None,
                 memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
        if not isinstance(path, str | os.PathLike):
            raise ArgumentError(f"path must be a file path, got {type(path).__name__}")
        self.path = os.fspath(path)
        self.memory_limit = whole_number(memory_limit, "memory_limit", 1)
        if in_memory is not None:
            flag(in_memory, "in_memory")
        self._source: Source | None = None
        self._pid = 0
        source = open_source(self.path, memory_limit=self.memory_limit)
        try:
            try:
                self.dtype = np.dtype(dtype) if dtype is not None else source.dtype
            except TypeError:
                raise ArgumentError(Param("dtype", dtype), ": not a numpy dtype") from None
            lengths = np.array(source.lengths, dtype=LENGTH_DTYPE)
            lengths.flags.writeable = False  # the sampler and the offsets rely on them
            self.lengths: np.ndarray = lengths
            self.n_features = source.n_features
            self.timesteps = source.timesteps
            self.layout = source.layout
            self.side = source.side
            self.pad_value = source.pad_value
            self.feature_names = source.feature_names
            # Per-timestep targets come at each item's true length, like x (collate pads them
            # as it pads x); sample_weight, like lstmshape.tf's, only beside targets.
            self.per_step = source.step_targets is not None
            #: what per-timestep labels were padded with (the manifest's ``y_value``, else 0):
            #: ``collate(..., y_padding_value=dataset.y_padding_value)`` pads them alike
            recorded = source.manifest.label_pad_value if source.manifest is not None else None
            self.y_padding_value = 0.0 if recorded is None else recorded
            self.has_targets = source.targets is not None or self.per_step
            self.has_weights = self.has_targets and source.sample_weight is not None
            if self.has_weights:
                assert source.sample_weight is not None
                wanted = 2 if self.per_step else 1
                if len(source.sample_weight.shape) != wanted:
                    raise InputError(f"{path}: sample_weight of shape "
                                     f"{tuple(source.sample_weight.shape)} beside "
                                     f"{'per-timestep' if self.per_step else 'sequence'} "
                                     f"targets; expected {'(N, T)' if self.per_step else '(N,)'}")
            self.offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lengths)])
            #: where each sample's steps start in the flat values (a view of ``offsets``)
            self.starts = self.offsets[:-1]
            steps = int(self.offsets[-1])
            target_bytes = 0
            if self.per_step:
                assert source.step_targets is not None
                target_bytes = steps * int(np.prod(source.step_targets.step_shape)) * \
                    source.step_targets.dtype.itemsize
            elif source.targets is not None:
                target_bytes = int(np.prod(source.targets.shape)) * source.targets.dtype.itemsize
            if self.has_weights:
                target_bytes += 4 * (steps if self.per_step else len(self))
            real_bytes = steps * self.n_features * self.dtype.itemsize
            load = in_memory if in_memory is not None else \
                real_bytes + target_bytes <= self.memory_limit
            self._values: np.ndarray | None = None
            self._targets: np.ndarray | None = None
            self._weights: np.ndarray | None = None
            if load:
                self._values, self._targets, self._weights = self._load(source)
        finally:
            source.close()

    @property
    def in_memory(self) -> bool:
        """True when the data was read at construction (see the class's note on memory)."""
        return self._values is not None

    def _load(self, source: Source) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Every real timestep (and target, and weight) into one array each, block by block: a
        padded block never sits in memory beside more than one other."""
        offsets = self.offsets
        values = np.empty((int(offsets[-1]), self.n_features), dtype=self.dtype)
        targets = weights = None
        rows = int(offsets[-1]) if self.per_step else len(self)
        if self.per_step:
            assert source.step_targets is not None
            targets = np.empty((rows, *source.step_targets.step_shape),
                               dtype=source.step_targets.dtype)
        elif source.targets is not None:
            targets = np.empty(source.targets.shape, dtype=source.targets.dtype)
        if self.has_weights:
            weights = np.empty(rows, dtype=np.float32)
        for start, stop in source.block_bounds(LOAD_BLOCK_BYTES):
            block = source.read_block(start, stop)
            values[offsets[start]:offsets[stop]] = block.values
            where = slice(offsets[start], offsets[stop]) if self.per_step else slice(start, stop)
            if targets is not None:
                targets[where] = self._read_targets(source, start, stop)
            if weights is not None:
                weights[where] = self._read_weights(source, start, stop)
        return values, targets, weights

    def _read_targets(self, source: Source, start: int, stop: int) -> np.ndarray | None:
        """Targets of samples start:stop: a row each, or per-timestep ones at true length."""
        if not self.per_step:
            return source.read_targets(start, stop)
        assert source.step_targets is not None
        labels = source.step_targets.read_block(start, stop).values
        return labels.reshape(labels.shape[0], *source.step_targets.step_shape)

    def _read_weights(self, source: Source, start: int, stop: int) -> np.ndarray | None:
        """``sample_weight`` of samples start:stop as float32: a weight each, or per-timestep
        ones with the padding taken off on the output's side, like x."""
        if not self.has_weights or source.sample_weight is None:
            return None
        if not self.per_step:
            return source.sample_weight.read_rows(start, stop).astype(np.float32, copy=False)
        # a batched output's batches each have their own width: read them one at a time
        cuts = [start, *(first for first, _, _ in source.batches if start < first < stop), stop]
        if len(cuts) > 2:
            return np.concatenate([self._read_weights(source, a, b)
                                   for a, b in itertools.pairwise(cuts)])
        stored = source.sample_weight.read_rows(start, stop).astype(np.float32, copy=False)
        lengths = self.lengths[start:stop, None]
        width = stored.shape[1]
        steps = np.arange(width)[None, :]
        real = steps >= width - lengths if self.side == "pre" else steps < lengths
        return stored[real]

    def _open(self) -> Source:
        """This process's own reader: an open file must not cross a fork (h5py's do not
        survive one), so a ``DataLoader`` worker opens the file again."""
        if self._source is None or self._pid != os.getpid():
            source = open_source(self.path, memory_limit=self.memory_limit)
            if source.n_samples != len(self) or not np.array_equal(source.lengths,
                                                                   self.lengths):
                source.close()
                raise InputError(f"{self.path}: changed since the dataset was opened (its "
                                 f"samples or true lengths differ); make a new dataset")
            self._source, self._pid = source, os.getpid()
        return self._source

    def _read(self, start: int,
              stop: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The timesteps ``(sum(lengths[start:stop]), F)``, targets and weights of samples
        start:stop."""
        if self._values is not None:
            where = slice(self.offsets[start], self.offsets[stop]) if self.per_step else \
                slice(start, stop)
            return (self._values[self.offsets[start]:self.offsets[stop]],
                    None if self._targets is None else self._targets[where],
                    None if self._weights is None else self._weights[where])
        source = self._open()
        block = source.read_block(start, stop)
        return (block.values.astype(self.dtype, copy=False),
                self._read_targets(source, start, stop) if self.has_targets else None,
                self._read_weights(source, start, stop))

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def _index(self, index: Any) -> int:
        try:
            k = operator.index(index)
        except TypeError:
            raise TypeError(f"dataset indices must be integers, not "
                            f"{type(index).__name__}") from None
        count = len(self)
        if not -count <= k < count:
            raise IndexError(f"index {k} is out of range for {count} samples")
        return k + count if k < 0 else k

    def _indices(self, indices: Any) -> np.ndarray:
        """Many indices checked at once (a batch's: per-index Python calls cost as much as
        the padding itself), negative ones counted from the end."""
        order = integer_vector(indices)
        if order is None:
            raise TypeError(f"dataset indices must be a list of integers, got "
                            f"{type(indices).__name__}")
        count = len(self)
        if order.size and (int(order.min()) < -count or int(order.max()) >= count):
            bad = order[(order < -count) | (order >= count)][0]
            raise IndexError(f"index {int(bad)} is out of range for {count} samples")
        return np.where(order < 0, order + count, order)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        k = self._index(index)
        values, targets, weights = self._read(k, k + 1)
        return ItemBatch(values, np.zeros(1, dtype=np.int64), self.lengths[k:k + 1],
                         targets, weights, self.per_step)[0]

    def __getitems__(self, indices: list[int]) -> ItemBatch:
        """The items at ``indices`` as one :class:`ItemBatch` (``DataLoader`` calls this)."""
        if self._values is not None:
            # numpy's own indexing checks the bounds and counts negative indices from the
            # end, in C: a batch's indices need no pass of their own
            try:
                order = np.asarray(indices)
                if order.ndim != 1 or (order.size and order.dtype.kind not in "iu"):
                    raise TypeError
                lengths, starts = self.lengths[order], self.starts[order]
            except (TypeError, ValueError, IndexError):
                order = self._indices(indices)  # raises, naming the bad index
                lengths, starts = self.lengths[order], self.starts[order]
            if self.per_step:
                return ItemBatch(self._values, starts, lengths, self._targets, self._weights,
                                 True)
            return ItemBatch(self._values, starts, lengths,
                             None if self._targets is None else self._targets[order],
                             None if self._weights is None else self._weights[order])
        # From the file: one read per run of consecutive indices, in file order
        order = self._indices(indices)
        lengths = self.lengths[order]
        wanted = np.unique(order)
        runs = np.split(wanted, np.flatnonzero(np.diff(wanted) != 1) + 1) if wanted.size else []
        parts = [self._read(int(run[0]), int(run[-1]) + 1) for run in runs]
        values = np.concatenate([p[0] for p in parts]) if parts else \
            np.zeros((0, self.n_features), dtype=self.dtype)
        local = np.concatenate([np.zeros(1, dtype=np.int64),
                                np.cumsum(self.lengths[wanted])])[:-1]
        where = np.searchsorted(wanted, order)
        targets = weights = None
        if self.has_targets and parts:
            targets = np.concatenate([np.asarray(p[1]) for p in parts])
        if self.has_weights and parts:
            weights = np.concatenate([np.asarray(p[2]) for p in parts])
        if not self.per_step:
            targets = None if targets is None else targets[where]
            weights = None if weights is None else weights[where]
        return ItemBatch(values, local[where], lengths, targets, weights, self.per_step)

    def close(self) -> None:
        """Close this process's open file, if any (items read from memory need none)."""
        if self._source is not None and self._pid == os.getpid():
            self._source.close()
        self._source = None

    def __enter__(self) -> SequenceDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # Sent to spawned DataLoader workers: without the open file, which each reopens.
        state = self.__dict__.copy()
        state["_source"], state["_pid"] = None, 0
        return state


# ---------------------------------------------------------------------------------------------
# The sampler


def lengths_of(dataset: Any) -> np.ndarray:
    """The true lengths of a dataset (its ``lengths``), or the lengths themselves."""
    lengths = integer_vector(getattr(dataset, "lengths", dataset))
    if lengths is None:
        raise ArgumentError(f"dataset must be a SequenceDataset (or have .lengths), or a 1-D "
                            f"sequence of integer lengths; got {type(dataset).__name__}")
    if lengths.size and int(lengths.min()) < 0:
        raise ArgumentError(f"dataset has a negative length {int(lengths.min())}")
    return lengths.astype(LENGTH_DTYPE)


def integer_vector(raw: Any) -> np.ndarray | None:
    """``raw`` as a 1-D int64 array, or None when it is not a sequence of integers.

    Example:
        >>> integer_vector([3, 1]).tolist(), integer_vector([[1]]), integer_vector([0.5])
        ([3, 1], None, None)
    """
    try:
        array = np.asarray(raw)
    except (TypeError, ValueError):
        return None
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        return None
    return array.astype(np.int64)


def distributed_world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(num_replicas, rank)``: as given, else from ``torch.distributed`` when initialised,
    else one replica."""
    world, me = 1, 0
    torch = sys.modules.get("torch")  # not imported: then no process group can exist
    if (num_replicas is None or rank is None) and torch is not None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            world, me = dist.get_world_size(), dist.get_rank()
    replicas = whole_number(world if num_replicas is None else num_replicas, "num_replicas", 1)
    mine = whole_number(me if rank is None else rank, "rank", 0)
    if mine >= replicas:
        raise ArgumentError(Param("rank", mine), f": expected 0..{replicas - 1} for ",
                            Param("num_replicas", replicas))
    return replicas, mine


class LengthBucketSampler:
    """Batches of indices of similar lengths, for ``DataLoader(..., batch_sampler=...)``.

    The bucketing is ``lstmshape batch --bucket-by-length``'s own
    (:func:`~lstmshape.ops.batch.plan_rows` with ``bucket=True``): every sample sorted by
    true length and cut into batches of ``batch_size``, so a batch is padded only to its own
    longest sequence. With ``shuffle``, equal lengths are shuffled and so is the order of the
    batches, from ``(seed, epoch)``: call :meth:`set_epoch` at each epoch for a new order; the
    same seed and epoch give the same batches. The short last batch (``N % batch_size``
    samples) comes last; ``drop_last`` drops it.

    ``dataset`` is a :class:`SequenceDataset` (anything with ``.lengths``) or the lengths.

    Distributed (``num_replicas`` ranks; default: ``torch.distributed``'s world when it is
    initialised, else 1): each epoch's batches are dealt to the ranks in turn, so every rank
    gets the same number of batches (as ``DistributedSampler`` gives equal shares) and the
    ranks' shares are disjoint. When the batches do not divide evenly, the first ones are
    repeated to fill the last round (every sample is still seen), or with ``drop_last`` the
    last ones are dropped.

    Example:
        >>> sampler = LengthBucketSampler([5, 1, 4, 2, 3], batch_size=2, shuffle=False)
        >>> list(sampler), len(sampler)
        ([[1, 3], [4, 2], [0]], 3)
    """

    def __init__(self, dataset: Any, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        self.lengths = lengths_of(dataset)
        self.batch_size = whole_number(batch_size, "batch_size", 1)
        self.shuffle = flag(shuffle, "shuffle")
        self.seed = whole_number(seed, "seed", 0)
        self.drop_last = flag(drop_last, "drop_last")
        self.num_replicas, self.rank = distributed_world(num_replicas, rank)
        self.epoch = 0
        count = int(self.lengths.shape[0])
        batches = count // self.batch_size if self.drop_last else -(-count // self.batch_size)
        self.num_batches: int
        if self.drop_last:
            self.num_batches = batches // self.num_replicas
        else:
            self.num_batches = -(-batches // self.num_replicas)
        if count and not self.num_batches:
            raise ArgumentError(f"drop_last with {count} samples, batch_size {self.batch_size} "
                                f"and num_replicas {self.num_replicas} leaves no batch for a "
                                f"rank; use a smaller batch_size or drop_last=False")

    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch ``epoch`` (a new one each epoch when ``shuffle``)."""
        self.epoch = whole_number(epoch, "epoch", 0)

    def epoch_batches(self) -> list[np.ndarray]:
        """Every rank's batches of this epoch, in order (rank r takes r, r + R, r + 2R...)."""
        order, bounds = self.epoch_plan()
        return [order[a:b] for a, b in itertools.pairwise(bounds)]

    def epoch_plan(self) -> tuple[np.ndarray, list[int]]:
        """This epoch's batches of every rank, as one array of indices and the batches'
        ``len(batches) + 1`` bounds in it (batch k is ``order[bounds[k]:bounds[k + 1]]``)."""
        if not self.lengths.size:
            return np.zeros(0, dtype=np.int64), [0]
        # One seed from (seed, epoch): batch's planner takes an int
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        order, sizes, _ = plan_rows(self.lengths, self.batch_size,
                                    remainder="drop" if self.drop_last else "keep",
                                    shuffle=self.shuffle, seed=seed, bucket=True)
        bounds = [0, *np.cumsum(sizes).tolist()]
        wanted = self.num_batches * self.num_replicas
        if len(bounds) - 1 >= wanted:
            return order, bounds[:wanted + 1]
        # too few batches for a last round: repeat the first ones
        batches = [order[a:b] for a, b in itertools.pairwise(bounds)]
        repeated = [batches[k % len(batches)] for k in range(wanted)]
        return (np.concatenate(repeated),
                [0, *np.cumsum([len(b) for b in repeated]).tolist()])

    def __iter__(self) -> Iterator[list[int]]:
        # One plan for the epoch, made when iteration starts; a batch is then a slice of one
        # list of Python ints (no array per batch to split off and convert)
        order, bounds = self.epoch_plan()
        flat = order.tolist()
        mine = range(self.rank, len(bounds) - 1, self.num_replicas)
        return (flat[bounds[k]:bounds[k + 1]] for k in mine)

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        return self.num_batches


# ---------------------------------------------------------------------------------------------
# Collating


def collate(batch: Any, padding_value: float = 0.0, batch_first: bool = True,
            pack: bool = False, y_padding_value: float = 0.0) -> dict[str, Any]:
    """One batch of ``(x_i, length_i[, y_i[, w_i]])`` items as a dict of tensors.

    * ``x``: the sequences padded at the end to the longest with ``padding_value``,
      ``(B, T, F)`` (``(T, B, F)`` when not ``batch_first``); with ``pack=True`` a
      ``PackedSequence`` of them (``enforce_sorted=False``: the batch keeps its order, and
      ``nn.LSTM`` gives outputs in that order). Packing needs every length >= 1.
    * ``lengths``: a CPU int64 tensor, as ``pack_padded_sequence`` requires;
    * ``mask``: bool, True on real steps, the shape of ``x`` without its feature axis;
    * ``y``: the targets, when the items have them: stacked, ``(B, ...)``; per-timestep
      targets (items of ``(length_i, ...)``) padded at the end with ``y_padding_value``
      (default 0; e.g. -100, ``CrossEntropyLoss``'s ``ignore_index``, or the dataset's
      ``y_padding_value``, what the output's labels were padded with) like ``x``,
      ``(B, T, ...)`` (``(T, B, ...)`` when not ``batch_first``);
    * ``sample_weight``: float32, when the items have it (an output's ``sample_weight``): one
      weight a sample, ``(B,)`` (0 on the pad rows of ``batch --remainder pad``), or with
      per-timestep targets one a step, padded with 0 like ``y`` -- so a loss weighted by it
      leaves padding out.

    Use it as ``DataLoader(..., collate_fn=collate)`` or, for other arguments,
    ``collate_fn=functools.partial(collate, pack=True)``. A batch from
    :meth:`SequenceDataset.__getitems__` is padded in one vectorised copy.

    Example:
        >>> import torch
        >>> out = collate([(torch.ones(3, 2), 3), (torch.ones(1, 2), 1)])
        >>> out["x"].shape, out["lengths"].tolist(), out["mask"].sum(1).tolist()
        (torch.Size([2, 3, 2]), [3, 1], [3, 1])
    """
    if isinstance(padding_value, bool) or not isinstance(padding_value, numbers.Real):
        raise ArgumentError(Param("padding_value", padding_value), ": expected a number")
    value = float(padding_value)
    if isinstance(y_padding_value, bool) or not isinstance(y_padding_value, numbers.Real):
        raise ArgumentError(Param("y_padding_value", y_padding_value), ": expected a number")
    label_value = float(y_padding_value)
    batch_first = flag(batch_first, "batch_first")
    pack = flag(pack, "pack")
    torch = import_torch("lstmshape.torch.collate")
    if isinstance(batch, ItemBatch):
        x, lengths, mask, y, weight = collate_item_batch(torch, batch, value, label_value,
                                                         batch_first)
    else:
        x, lengths, mask, y, weight = collate_items(torch, batch, value, label_value,
                                                    batch_first)
    if pack:
        if lengths.numel() and int(lengths.min()) == 0:
            empty = torch.nonzero(lengths == 0).flatten().tolist()
            raise ArgumentError(f"collate(pack=True): item {empty[0]} has length 0 and "
                                f"pack_padded_sequence needs every length >= 1; leave empty "
                                f"sequences out, or use pack=False and the mask")
        x = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=batch_first,
                                                    enforce_sorted=False)
    out = {"x": x, "lengths": lengths, "mask": mask}
    if y is not None:
        out["y"] = y
    if weight is not None:
        out["sample_weight"] = weight
    return out


def collate_item_batch(torch: Any, batch: ItemBatch, value: float, label_value: float,
                       batch_first: bool) -> tuple[Any, Any, Any, Any, Any]:
    """:func:`collate` of a dataset's :class:`ItemBatch`: numpy gathers, then
    ``torch.from_numpy`` of each (no copy)."""
    padded, real = batch.padded(value)
    width = real.shape[1]
    y = weight = None
    if batch.per_step:
        if batch.targets is not None:
            fits_label(label_value, batch.targets.dtype)
            y = gather_padded(batch.targets, batch.starts, batch.lengths, width, label_value,
                              real)
        if batch.weights is not None:
            weight = gather_padded(batch.weights, batch.starts, batch.lengths, width, 0.0, real)
    else:
        y, weight = batch.targets, batch.weights
    tensors = [torch.from_numpy(padded), as_tensor(torch, batch.lengths),
               torch.from_numpy(real), None if y is None else as_tensor(torch, y),
               None if weight is None else as_tensor(torch, weight)]
    if not batch_first:
        steps = [0, 2, 3, 4] if batch.per_step else [0, 2]
        for k in steps:
            if tensors[k] is not None:
                tensors[k] = tensors[k].transpose(0, 1).contiguous()
    x, lengths, mask, y, weight = tensors
    return x, lengths, mask, y, weight


def collate_items(torch: Any, batch: Any, value: float, label_value: float,
                  batch_first: bool) -> tuple[Any, Any, Any, Any, Any]:
    """:func:`collate` of any list of items: ``pad_sequence``, item by item.

    Targets are per-timestep -- padded like x, not stacked -- when the items' ``y`` differ in
    shape or their weights are one a step, and every ``y_i`` has ``length_i`` rows.
    """
    try:
        items = list(batch)
    except TypeError:
        raise ArgumentError(f"batch must be a list of (x, length[, y[, sample_weight]]) "
                            f"items, got {type(batch).__name__}") from None
    if not items:
        raise ArgumentError("batch is empty: collate needs at least one item")
    arity = len(items[0]) if isinstance(items[0], tuple | list) else 0
    for index, item in enumerate(items):
        if not isinstance(item, tuple | list) or len(item) != arity or arity not in (2, 3, 4):
            raise ArgumentError(f"batch item {index} must be (x, length), (x, length, y) or "
                                f"(x, length, y, sample_weight) like item 0, got "
                                f"{type(item).__name__} of "
                                f"{len(item) if isinstance(item, tuple | list) else '?'}")
    xs = [torch.as_tensor(item[0]) for item in items]
    lengths = torch.tensor([int(item[1]) for item in items], dtype=torch.int64)
    for index, (x, length) in enumerate(zip(xs, lengths.tolist(), strict=True)):
        if x.dim() < 1 or x.shape[0] != length:
            raise ArgumentError(f"batch item {index}: x has shape {tuple(x.shape)} but its "
                                f"length is {length}; x must be (length, features)")
    if not all(x.is_floating_point() for x in xs):
        fits_value(value, np.dtype(np.int64))  # torch would cut 2.5 to 2 without a word
    ys = [torch.as_tensor(item[2]) for item in items] if arity >= 3 else []
    weights = [torch.as_tensor(item[3]).to(torch.float32) for item in items] \
        if arity == 4 else []
    per_step = bool(ys) and (len({tuple(y.shape) for y in ys}) > 1
                             or any(w.dim() >= 1 for w in weights)) and \
        all(y.dim() >= 1 and y.shape[0] == n for y, n in zip(ys, lengths.tolist(), strict=True))
    try:
        x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=batch_first, padding_value=value)
        y = weight = None
        if per_step:
            fits_label(label_value, torch.empty(0, dtype=ys[0].dtype).numpy().dtype)
            y = torch.nn.utils.rnn.pad_sequence(ys, batch_first=batch_first,
                                                padding_value=label_value)
            if weights:
                weight = torch.nn.utils.rnn.pad_sequence(weights, batch_first=batch_first,
                                                         padding_value=0.0)
        else:
            y = torch.stack(ys) if ys else None
            weight = torch.stack(weights) if weights else None
    except RuntimeError as err:  # items of other feature counts, targets of other shapes
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ArgumentError(f"batch items do not stack: {first}") from None
    width = x.shape[1] if batch_first else x.shape[0]
    mask = torch.arange(width)[None, :] < lengths[:, None]
    mask = (mask if batch_first else mask.T.contiguous()).to(x.device)
    return x, lengths, mask, y, weight


# ---------------------------------------------------------------------------------------------
# Outputs


def last_valid(outputs: Any, lengths: Any, batch_first: bool = True) -> Any:
    """Each sequence's output at its last real step: ``(B, H)`` from ``(B, T, H)`` outputs.

    ``outputs`` is what an RNN gave for a post-padded batch (``(T, B, H)`` when not
    ``batch_first``) or the ``PackedSequence`` it gave for a packed one (unpacked here, in the
    batch's own order). ``lengths`` are the true lengths (a tensor or a list, e.g.
    ``batch["lengths"]``); every one must be in ``1..T``. The result is on ``outputs``'
    device, with its gradient.

    Example:
        >>> import torch
        >>> out = torch.arange(6.0).reshape(2, 3, 1)
        >>> last_valid(out, [2, 3])[:, 0].tolist()
        [1.0, 5.0]
    """
    torch = import_torch("lstmshape.torch.last_valid")
    batch_first = flag(batch_first, "batch_first")
    try:
        given = torch.as_tensor(lengths).to("cpu")
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentError(f"lengths must be a 1-D sequence of integers, got "
                            f"{type(lengths).__name__}") from None
    if given.dim() != 1 or given.is_floating_point() or given.is_complex():
        raise ArgumentError(f"lengths must be a 1-D sequence of integers, got shape "
                            f"{tuple(given.shape)} dtype {given.dtype}")
    given = given.to(torch.int64)
    if isinstance(outputs, torch.nn.utils.rnn.PackedSequence):
        outputs, packed = torch.nn.utils.rnn.pad_packed_sequence(outputs,
                                                                 batch_first=batch_first)
        if not torch.equal(packed.to(torch.int64), given):
            raise ArgumentError(f"lengths {given.tolist()[:8]}... differ from the packed "
                                f"sequence's own {packed.tolist()[:8]}...")
    if not isinstance(outputs, torch.Tensor) or outputs.dim() < 2:
        raise ArgumentError(f"outputs must be a (B, T, ...) tensor or a PackedSequence, got "
                            f"{type(outputs).__name__}")
    count, steps = (outputs.shape[0], outputs.shape[1]) if batch_first else \
        (outputs.shape[1], outputs.shape[0])
    if given.shape[0] != count:
        raise ArgumentError(f"lengths has {given.shape[0]} entries for a batch of {count}")
    if count and (int(given.min()) < 1 or int(given.max()) > steps):
        raise ArgumentError(f"lengths must be in 1..{steps} (the outputs' timesteps), found "
                            f"{int(given.min())}..{int(given.max())}")
    rows = torch.arange(count, device=outputs.device)
    last = (given - 1).to(outputs.device)
    return outputs[rows, last] if batch_first else outputs[last, rows]


# ---------------------------------------------------------------------------------------------
# verify --framework torch


def model_check(seqs: SequenceSet, units: int = 4) -> dict[str, Any]:
    """``verify``'s model check with PyTorch: ``nn.LSTM(F, units)`` over the packed sequences,
    :func:`last_valid`, ``nn.Linear(units, 1)``; ``output_shape`` must be ``(n, 1)``.

    An empty sequence has no step to run: its last state is the LSTM's initial one (zeros).
    Returns verify's ``model`` report (``error`` set when PyTorch could not run it).

    Example:
        >>> seqs = SequenceSet.from_sequences([np.ones((3, 2)), np.ones((1, 2))])
        >>> model_check(seqs)["output_shape"]
        [2, 1]
    """
    torch = import_torch("verify --framework torch")
    count, features = seqs.n_samples, seqs.n_features
    layers = ["PackedSequence(true lengths)", f"nn.LSTM({features}, {units})", "last_valid",
              f"nn.Linear({units}, 1)"]
    report: dict[str, Any] = {"layers": layers, "mask": "packed", "samples": count,
                              "output_shape": None, "finite": None, "error": None,
                              "torch": torch.__version__}
    real = seqs.lengths > 0
    try:
        lstm = torch.nn.LSTM(features, units, batch_first=True)
        head = torch.nn.Linear(units, 1)
        with torch.no_grad():
            last = torch.zeros(count, units)
            if real.any():
                values = np.ascontiguousarray(seqs.values, dtype=np.float32)
                items = ItemBatch(values, seqs.offsets[:-1][real], seqs.lengths[real])
                batch = collate(items, pack=True)
                out, _ = lstm(batch["x"])
                last[torch.from_numpy(real)] = last_valid(out, batch["lengths"])
            output = head(last).numpy()
    except Exception as err:  # PyTorch raises many types for input it cannot take
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        report["error"] = f"PyTorch could not run {' -> '.join(layers)}: {first}"
        return report
    report["output_shape"] = [int(d) for d in output.shape]
    report["finite"] = bool(np.isfinite(output).all())
    return report
