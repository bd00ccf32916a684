"""TensorFlow helpers: :func:`dataset` turns an lstmshape output into a ``tf.data.Dataset``.

Train straight from what ``pad``, ``window`` or ``batch`` wrote, without loading the file::

    import keras
    import lstmshape.tf

    # lstmshape window series.npy --timesteps 48 --target 0 --horizon 1 -o train.h5
    train = lstmshape.tf.dataset("train.h5", batch_size=64, shuffle=True, seed=1)
    model = keras.Sequential([keras.Input(shape=(48, 3)), keras.layers.LSTM(32),
                              keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(train, epochs=10)

Importing this module does not import TensorFlow: :func:`dataset` does, on its first call, and
raises :class:`TensorFlowMissing` (``pip install 'lstmshape[tf]'``) when it is not installed.

Outputs are read by the one reader every command uses
(:func:`lstmshape.io.source.open_source`), so the dataset holds exactly what ``pad``,
``verify`` and ``inspect`` see:

=============  =====================================================================  =========
layout         stored as                                                               elements
=============  =====================================================================  =========
``dense``      ``x (N, T, F)`` -- ``.npy`` (true lengths in ``OUT.lengths.npy``,      one sample
               targets in ``OUT.y.npy``) or ``.npz``/``.h5`` keys ``x``, ``lengths``,
               ``y``
``ragged``     ``.npz``/``.h5`` ``values (sum(len), F)`` + ``lengths`` (or             one sample,
               ``row_splits``/``offsets``)                                            batches
                                                                                      padded
``batches``    ``lstmshape batch``: ``.npz``/``.h5`` ``x_000000``, ``lengths_000000``  one stored
               (``y_000000``), ...; or ``.npy`` ``(num_batches, B, T, F)``             batch
=============  =====================================================================  =========
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np

from .errors import InputError, LstmshapeError
from .io.source import Source, open_source
from .manifest import Manifest

INSTALL_HINT = "pip install 'lstmshape[tf]'"
__all__ = ["INSTALL_HINT", "TensorFlowMissing", "dataset", "import_tensorflow", "quiet_stderr",
           "tensorflow_available"]
DEFAULT_BATCH_SIZE = 32
#: Bytes of samples one read hands to tf.data (and, with shuffle, one shuffle buffer's worth).
DEFAULT_BLOCK_BYTES = 16 * 10**6


class TensorFlowMissing(LstmshapeError):
    """TensorFlow (the ``tf`` extra) is not installed but a TensorFlow feature was asked for."""


# ---------------------------------------------------------------------------------------------
# Importing TensorFlow


def tensorflow_available() -> bool:
    """Whether ``tensorflow`` and ``keras`` can be found, without importing them (fast)."""
    try:
        return all(importlib.util.find_spec(name) is not None
                   for name in ("tensorflow", "keras"))
    except (ImportError, ValueError):
        return False


@contextmanager
def quiet_stderr(enabled: bool = True) -> Iterator[None]:
    """Send file descriptor 2 to ``/dev/null`` for the duration of the block.

    TensorFlow's C++ runtime writes to fd 2 directly (absl's "All log messages before
    absl::InitializeLog()" banner, oneDNN and CUDA notices), some of it even with
    ``TF_CPP_MIN_LOG_LEVEL=3``; only redirecting the descriptor keeps it off the terminal.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        with suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(*, quiet: bool = False, purpose: str = "this") -> tuple[Any, Any]:
    """``(tensorflow, keras)``, imported on first use; :class:`TensorFlowMissing` if absent.

    ``quiet=True`` (the CLI, unless ``--debug``) sets ``TF_CPP_MIN_LOG_LEVEL=3`` -- read once,
    when TensorFlow's C++ library loads, so it must be set before the import -- and silences
    fd 2 during the import. A library call (``quiet=False``) leaves the user's environment alone.
    """
    missing = TensorFlowMissing(f"{purpose} needs TensorFlow, which is not installed: "
                                f"{INSTALL_HINT}")
    if "tensorflow" not in sys.modules and not tensorflow_available():
        raise missing
    if quiet:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        with quiet_stderr(quiet):
            import keras
            import tensorflow as tf
    except ImportError as err:
        raise TensorFlowMissing(f"{purpose} needs TensorFlow, which cannot be imported "
                                f"({err}): {INSTALL_HINT}") from None
    if quiet:
        tf.get_logger().setLevel("ERROR")
    return tf, keras


# ---------------------------------------------------------------------------------------------
# tf.data


def dataset(path: str, batch_size: int | None = None, *, shuffle: bool = False, seed: int = 0,
            manifest: str | None = None, shuffle_buffer: int | None = None,
            drop_remainder: bool = False, dtype: str | None = None,
            pad_value: float | None = None, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Any:
    """A ``tf.data.Dataset`` of ``x`` batches -- or ``(x, y)`` when the output has targets, and
    ``(x, y, sample_weight)`` when it also holds ``sample_weight`` (rows added by ``batch
    --remainder pad``, padded steps of per-timestep targets: 0, so Keras leaves them out of
    the loss).

    ``path`` is any lstmshape output (``.npy``, ``.npz``, ``.h5``; batched by ``lstmshape batch``
    or not), read through its manifest ``PATH.json`` (or ``manifest``). Files are streamed a block
    of about ``block_bytes`` at a time, so a file larger than memory trains fine::

        train = lstmshape.tf.dataset("train.h5", batch_size=64, shuffle=True)
        model.fit(train, epochs=10)

    or simply ``model.fit(lstmshape.tf.dataset("train.h5"))``.

    * Dense outputs give batches of ``batch_size`` samples (default 32), ``(B, T, F)``, padded as
      stored -- put ``keras.layers.Masking(mask_value=<the manifest's padding.value>)`` first.
    * Ragged outputs (``values`` + ``lengths``) give batches padded (post) to their own longest
      sequence with ``pad_value`` (default: the manifest's pad value, else 0), as
      ``padded_batch`` does.
    * Batched outputs give their stored batches as they are (``batch_size`` must be None).

    ``shuffle=True`` reads the blocks in a random order, permutes the samples in each, and runs
    a shuffle buffer of ``shuffle_buffer`` samples (default: one block's worth); every epoch
    draws a new order, and the same ``seed`` gives the same orders. Batched outputs shuffle the
    order of their batches (refused for ``--stateful`` batches, whose order carries state).
    ``dtype`` casts ``x`` (e.g. ``"float32"``; default: as stored).

    Example (not run by the doctests: it imports TensorFlow):
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npz")
        >>> np.savez(path, x=np.zeros((5, 4, 2), np.float32), y=np.ones((5, 1), np.float32))
        >>> ds = dataset(path, batch_size=2)  # doctest: +SKIP
        >>> [tuple(x.shape) for x, y in ds]  # doctest: +SKIP
        [(2, 4, 2), (2, 4, 2), (1, 4, 2)]
    """
    tf, _ = import_tensorflow(purpose="lstmshape.tf.dataset")
    with open_output(path, manifest) as source:
        batched = bool(source.batches)
        ragged = not batched and source.timesteps is None
        features, timesteps, samples = source.n_features, source.timesteps, source.n_samples
        stored_dtype = source.dtype
        target_shape = source.target_shape
        target_dtype = None if source.targets is None else source.targets.dtype
        if source.step_targets is not None and source.targets is None:
            raise InputError(f"{path}: per-timestep targets of ragged sequences; pad them first "
                             f"(lstmshape pad {path} -o OUT.npz), which also writes their "
                             f"sample_weight")
        has_weight = source.sample_weight is not None and target_shape is not None
        weight_shape = None if source.sample_weight is None else source.sample_weight.shape[1:]
        num_batches = len(source.batches)
        stateful = source.manifest is not None and bool(source.manifest.params.get("stateful"))
        fill = pad_value if pad_value is not None else source.pad_value
        # --no-feature-axis: (batch, T), what an Embedding layer takes
        feature_axis = source.manifest is None or source.manifest.feature_axis
        row_bytes = max((timesteps or max(int(source.lengths.mean()) if samples and ragged
                                          else 1, 1))
                        * features * stored_dtype.itemsize, 1)
    if batched:
        if batch_size is not None:
            raise InputError(f"{path}: already batched by 'lstmshape batch' ({num_batches} "
                             f"batches); leave batch_size out")
        if shuffle and stateful:
            raise InputError(f"{path}: stateful batches must stay in order; shuffle=False")
    elif batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE
    elif batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    x_dtype = np.dtype(dtype) if dtype is not None else stored_dtype
    has_y = target_shape is not None
    epochs = itertools.count()

    def generate() -> Iterator[Any]:
        # A fresh source per epoch: tf.data runs this on its own thread, and each epoch draws
        # its own block order from (seed, epoch).
        rng = np.random.default_rng([seed, next(epochs)]) if shuffle else None
        with open_source(path, manifest=manifest) as epoch_source:
            for x, lengths, y, weight in stored_blocks(epoch_source, block_bytes, rng):
                x = x.astype(x_dtype, copy=False)
                if not feature_axis:
                    x = x.reshape(x.shape[:-1])
                if ragged:
                    x = tf.RaggedTensor.from_row_lengths(x, lengths, validate=False)
                yield (x, y, weight) if has_weight else (x, y) if has_y else x

    tf_x_dtype = tf.as_dtype(x_dtype)
    if ragged:
        x_spec = tf.RaggedTensorSpec(shape=(None, None, features), dtype=tf_x_dtype,
                                     ragged_rank=1, row_splits_dtype=tf.int64)
    else:
        x_spec = tf.TensorSpec(shape=(None, timesteps, features)[:3 if feature_axis else 2],
                               dtype=tf_x_dtype)
    signature: Any = x_spec
    if has_y:
        assert target_shape is not None and target_dtype is not None
        signature = (x_spec, tf.TensorSpec(shape=(None, *target_shape),
                                           dtype=tf.as_dtype(target_dtype)))
        if has_weight:  # pad rows / padded steps: 0, so they do not count in the loss
            assert weight_shape is not None
            signature = (*signature, tf.TensorSpec(
                shape=(None, *(None if batched else d for d in weight_shape)),
                dtype=tf.float32))
    data = tf.data.Dataset.from_generator(generate, output_signature=signature)
    if batched:  # with shuffle, the generator permutes the stored batches
        count = num_batches
    else:
        assert batch_size is not None
        data = data.unbatch()
        if ragged:
            def dense(x: Any, *rest: Any) -> Any:
                # unbatch leaves ragged_rank-0 pieces, which padded_batch refuses
                x = x.flat_values if isinstance(x, tf.RaggedTensor) else x
                return (x, *rest) if rest else x

            data = data.map(dense)
        if shuffle:
            buffer = shuffle_buffer or max(batch_size, block_bytes // row_bytes)
            data = data.shuffle(min(buffer, max(samples, 1)), seed=seed,
                                reshuffle_each_iteration=True)
        if ragged:
            fill_value = 0.0 if fill is None or (math.isnan(fill) and x_dtype.kind != "f") \
                else fill
            x_fill = tf.constant(fill_value, dtype=tf_x_dtype)
            padding_values: Any = (x_fill, tf.constant(0, dtype=tf.as_dtype(target_dtype))) \
                if has_y else x_fill
            if has_weight:
                padding_values = (*padding_values, tf.constant(0, dtype=tf.float32))
            data = data.padded_batch(batch_size, padding_values=padding_values,
                                     drop_remainder=drop_remainder)
        else:
            data = data.batch(batch_size, drop_remainder=drop_remainder)
        count = samples // batch_size if drop_remainder else -(-samples // batch_size)
    # A known length lets Keras show progress and size epochs on the first pass.
    data = data.apply(tf.data.experimental.assert_cardinality(count))
    return data.prefetch(tf.data.AUTOTUNE)


def open_output(path: str, manifest: str | None) -> Source:
    """An lstmshape output, opened by the one reader; a raw input that cannot be read as one
    gets a line naming the command that makes it one."""
    try:
        return open_source(path, manifest=manifest)
    except InputError as err:
        if manifest is not None or Manifest.beside(path) is not None:
            raise
        raise InputError(f"{path}: not an lstmshape output ({err}); make one first, e.g. "
                         f"'lstmshape pad {path} -o train.npz' (or 'lstmshape inspect {path}' to "
                         f"see what it holds)") from None


Block = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def stored_blocks(source: Source, block_bytes: int,
                  rng: np.random.Generator | None) -> Iterator[Block]:
    """``(x, lengths, y, sample_weight)`` blocks as the output stores them: a dense
    ``(n, T, F)`` block, flat ragged ``values``, or one stored batch at a time (batched
    outputs); ``y`` and ``sample_weight`` None where the output has none.

    With ``rng``, the blocks come in a random order and the samples inside each block are
    permuted (batched outputs: only the order of the batches), so that a shuffle buffer of one
    block's samples mixes the whole file without reading it all into memory.
    """
    if source.batches:
        order = np.arange(len(source.batches))
        if rng is not None:
            order = rng.permutation(order)
        for index in order:
            start, stop, width = source.batches[int(index)]
            yield (source.read_dense(start, stop, width), source.lengths[start:stop],
                   source.read_targets(start, stop), read_weights(source, start, stop))
        return
    bounds = source.block_bounds(block_bytes)
    if rng is not None:
        bounds = [bounds[int(i)] for i in rng.permutation(len(bounds))]
    for start, stop in bounds:
        y = source.read_targets(start, stop)
        weight = read_weights(source, start, stop)
        perm = rng.permutation(stop - start) if rng is not None else None
        if perm is not None:
            y = None if y is None else y[perm]
            weight = None if weight is None else weight[perm]
        if source.timesteps is None:
            block = source.read_block(start, stop)
            if perm is not None:
                block = block.take(perm)
            yield block.values, block.lengths, y, weight
        else:
            x, lengths = source.read_dense(start, stop), source.lengths[start:stop]
            if perm is not None:
                x, lengths = x[perm], lengths[perm]
            yield x, lengths, y, weight


def read_weights(source: Source, start: int, stop: int) -> np.ndarray | None:
    """``sample_weight`` of samples start:stop as float32, None when the output has none."""
    if source.sample_weight is None:
        return None
    return source.sample_weight.read_rows(start, stop).astype(np.float32, copy=False)
