"""The notebook-facing helpers: read a file into a SequenceSet, write arrays, inspect a file.

    >>> import numpy as np, tempfile, os, lstmshape
    >>> folder = tempfile.mkdtemp()
    >>> lstmshape.write(os.path.join(folder, "s.npz"),
    ...                 lstmshape.SequenceSet.from_sequences([[1.0, 2.0], [3.0]]))
    >>> seqs = lstmshape.read(os.path.join(folder, "s.npz"))
    >>> lstmshape.pad(seqs, maxlen=3).tensor[:, :, 0].tolist()
    [[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .commands.inspect import inspect_file
from .errors import OutputError
from .io.location import Location
from .io.output import ArrayData, OutputSet, check_writable_folder
from .io.source import DEFAULT_MEMORY_LIMIT, open_source
from .sequences import SequenceSet, as_three_d


def read(src: str, *, memory_limit: int = DEFAULT_MEMORY_LIMIT, allow_pickle: bool = False,
         lengths: str | None = None) -> SequenceSet:
    """Read every sequence of ``PATH[:KEY]`` (any layout lstmshape reads) into memory.

    A padded tensor written by lstmshape comes back as its true, unpadded sequences (the
    lengths and padding side come from its ``lengths`` array or manifest).
    """
    with open_source(src, memory_limit=memory_limit, allow_pickle=allow_pickle,
                     lengths_file=lengths) as source:
        return source.read()


def write(path: str, data: SequenceSet | np.ndarray, *, lengths: Any = None,
          y: Any = None) -> None:
    """Write a tensor or a sequence set to ``.npy``/``.npz``/``.h5`` atomically (no manifest).

    A :class:`SequenceSet` is written as ``values`` + ``lengths`` (``.npz``/``.h5`` only, unless
    every sequence has the same length); an array as ``x``, with ``lengths`` and ``y`` beside it
    when given (``.npy`` keeps only ``x``).
    """
    location = Location(path)
    check_writable_folder(path)
    arrays: list[tuple[str, ArrayData]]
    if isinstance(data, SequenceSet):
        if location.suffix == ".npy":
            if not data.is_uniform:
                raise OutputError(f"{path}: ragged sequences cannot be one .npy tensor; pad them "
                                  f"first or write .npz/.h5")
            length = data.max_length
            arrays = [("x", data.values.reshape(data.n_samples, length, data.n_features))]
        else:
            arrays = [("values", data.values), ("lengths", data.lengths)]
    else:
        arrays = [("x", as_three_d(np.asarray(data)))]
        if location.suffix != ".npy":
            arrays += [(name, np.asarray(extra)) for name, extra in
                       (("lengths", lengths), ("y", y)) if extra is not None]
    with OutputSet() as outputs:
        outputs.write_file(location, arrays)


def inspect(src: str, **options: Any) -> dict[str, Any]:
    """The ``inspect --json`` report of ``src`` as a dict (see :func:`inspect_file`)."""
    return inspect_file(src, **options)
