"""Adding features: concatenating extra arrays to a base set along the feature axis.

The result has the base's samples and timeline. Each extra contributes ``k`` features to every
real timestep of the base, in one of three ways (:func:`extra_mode` picks it from the shapes):

* ``static`` -- an ``(N, k)`` array (``(N,)`` is one feature): row i repeated over every timestep
  of sample i (``np.repeat``);
* ``sequences`` -- a ragged extra, or any extra on a ragged base: sequence i of the extra must
  have exactly the base's length for sample i;
* ``rows`` -- a dense ``(N, T_e, k)`` (or ``(N, T_e)``) extra on a dense ``(N, T, F)`` base:
  ``T_e <= T``; a shorter extra is filled with ``fill`` on the ``padding`` side to ``T`` steps.

A dense base stays dense: the output is ``(N, T, F + sum k)`` and, where the base is padded (its
true lengths are shorter than T), the added features hold the base's pad value there too, so a
``Masking`` layer still sees whole pad timesteps. Mixing integer and float data gives the widest
float dtype among the inputs (:func:`common_dtype` says whether it promoted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..errors import InputError, Param
from ..sequences import (
    LENGTH_DTYPE,
    SequenceSet,
    Side,
    as_three_d,
    check_side,
    real_mask,
    rows_as_scalars,
)
from ..words import plural
from .pad import check_value_fits, pad

Mode = Literal["static", "sequences", "rows"]


@dataclass(frozen=True)
class Shape:
    """What alignment needs to know about one input, without its data."""

    name: str
    samples: int
    timesteps: int | None
    features: int
    lengths: np.ndarray
    stored: tuple[int | None, ...]

    def text(self) -> str:
        shown = ", ".join("None" if d is None else str(d) for d in self.stored)
        return f"{self.name} shape ({shown}{',' if len(self.stored) == 1 else ''})"

    @classmethod
    def of(cls, name: str, data: np.ndarray | SequenceSet) -> Shape:
        if isinstance(data, SequenceSet):
            return cls(name, data.n_samples, None, data.n_features, data.lengths,
                       (data.n_samples, None, data.n_features))
        n = data.shape[0] if data.ndim else 0
        t = data.shape[1] if data.ndim > 1 else None
        f = data.shape[2] if data.ndim == 3 else 1
        return cls(name, n, t, f, np.full(n, t or 0, dtype=LENGTH_DTYPE), tuple(data.shape))


def common_dtype(dtypes: Sequence[npt.DTypeLike], names: Sequence[str]) -> tuple[np.dtype, bool]:
    """The dtype of the result, and whether ints (or bools) were promoted to a float type.

    Floats win over ints and bools: the widest float among the inputs, but at least float32
    beside an integer input (float16 holds whole numbers exactly only up to 2,048; values
    beyond what the float holds exactly are refused block by block, see :func:`as_result`).
    Ints of different widths give numpy's common int type; ``uint64`` beside a signed int has
    none and is refused.

    Example:
        >>> common_dtype(["int64", "float32"], ["a", "b"])
        (dtype('float32'), True)
        >>> common_dtype(["int8", "int32"], ["a", "b"])
        (dtype('int32'), False)
    """
    types = [np.dtype(d) for d in dtypes]
    floats = [d for d in types if d.kind == "f"]
    if floats:
        widest = max(floats, key=lambda d: d.itemsize)
        if any(d.kind in "iu" for d in types):
            widest = max(widest, np.dtype(np.float32), key=lambda d: d.itemsize)
        return widest, len(floats) < len(types)
    result = types[0]
    for dtype, name in zip(types[1:], names[1:], strict=True):
        joined = np.promote_types(result, dtype)
        if joined.kind == "f":
            raise InputError(f"{name} dtype {dtype} and {names[0]} dtype {result} have no "
                             f"common integer type; cast one of them to float first")
        result = joined
    return result, False


def extra_mode(base: Shape, extra: Shape, static: bool) -> Mode:
    """How ``extra`` lines up with ``base``; one line naming both shapes when it cannot.

    Example:
        >>> import numpy as np
        >>> base = Shape.of("base", np.zeros((4, 10, 2)))
        >>> extra_mode(base, Shape.of("extra", np.zeros((4, 8))), static=False)
        'rows'
        >>> extra_mode(base, Shape.of("extra", np.zeros((3, 10))), static=False)
        Traceback (most recent call last):
        ...
        lstmshape.errors.InputError: extra shape (3, 10) does not match base shape (4, 10, 2): ...
    """
    both = f"{extra.text()} does not match {base.text()}"
    if static and len(extra.stored) > 2:
        raise InputError(f"{extra.text()}: a ", Param("static", True), " extra must be "
                         f"(samples,) or (samples, k), one row per sample of {base.text()}")
    if extra.samples != base.samples:
        raise InputError(f"{both}: {extra.samples} samples vs {base.samples}")
    if static:
        return "static"
    if len(extra.stored) < 2:
        raise InputError(f"{both}: a 1-D extra has one value per sample; pass ",
                         Param("static", True))
    hint: tuple[str | Param, ...] = (("; one row per sample? pass ", Param("static", True))
                                     if len(extra.stored) == 2 else ())
    if base.timesteps is not None and extra.timesteps is not None:
        if extra.timesteps > base.timesteps:
            raise InputError(f"{both}: {extra.timesteps} timesteps vs {base.timesteps}", *hint)
        return "rows"
    differ = np.flatnonzero(extra.lengths != base.lengths)
    if differ.size and base.timesteps is not None and extra.timesteps is None:
        # the base's padding is lost information here: which of its steps the extra's belong to
        hint = ("; the base is padded to a tensor and the extra is ragged: add features to the "
                "ragged sequences before padding (add-feature first, then pad)",)
    if differ.size:
        i = int(differ[0])
        raise InputError(f"{both}: sequence {i} has {plural(int(extra.lengths[i]), 'timestep')} "
                         f"vs {int(base.lengths[i])} ({plural(differ.size, 'sequence')} "
                         f"differ{'s' if differ.size == 1 else ''})", *hint)
    return "sequences"


def as_result(values: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """``values`` in the result dtype; integers a float cannot hold exactly are refused.

    Example:
        >>> import numpy as np
        >>> as_result(np.array([16_777_217]), np.dtype("float32"), "ids.npy")
        Traceback (most recent call last):
        ...
        lstmshape.errors.InputError: ids.npy: integer 16777217 cannot be stored exactly as ...
    """
    if values.dtype.kind in "iu" and dtype.kind == "f" and values.size:
        exact = 2 ** (np.finfo(dtype).nmant + 1)
        low, high = int(values.min()), int(values.max())
        worst = high if abs(high) >= abs(low) else low
        if abs(worst) > exact:
            raise InputError(f"{where}: integer {worst} cannot be stored exactly as {dtype} "
                             f"(whole numbers are exact up to {exact:,}); store the float "
                             f"inputs as float64 to add these features")
    return values.astype(dtype, copy=False)


def filled_rows(tensor: np.ndarray, timesteps: int, padding: Side, fill: float,
                dtype: np.dtype) -> np.ndarray:
    """``(n, T_e, k)`` rows filled with ``fill`` on the ``padding`` side up to ``timesteps``.

    Example:
        >>> import numpy as np
        >>> filled_rows(np.ones((1, 2, 1)), 3, "pre", -1.0, np.dtype("float64"))[0, :, 0].tolist()
        [-1.0, 1.0, 1.0]
    """
    check_side(padding, "padding")
    n, have, k = tensor.shape
    if have == timesteps:
        return tensor.astype(dtype, copy=False)
    out = np.full((n, timesteps, k), fill, dtype=dtype)
    if padding == "post":
        out[:, :have] = tensor
    else:
        out[:, timesteps - have:] = tensor
    return out


def aligned_values(base: Shape, extra: np.ndarray | SequenceSet, mode: Mode, side: Side,
                   padding: Side, fill: float, dtype: np.dtype,
                   where: str = "extra") -> np.ndarray:
    """The extra's features for every real timestep of the base, ``(sum(lengths), k)``."""
    lengths = base.lengths
    if isinstance(extra, SequenceSet):
        extra = SequenceSet(as_result(extra.values, dtype, where), extra.lengths)
    else:
        extra = as_result(np.asarray(extra), dtype, where)
    if mode == "static":
        assert isinstance(extra, np.ndarray)
        width = 1 if extra.ndim == 1 else extra.shape[1]
        rows = extra.reshape(extra.shape[0], width).astype(dtype, copy=False)
        return np.repeat(rows, lengths, axis=0)
    if mode == "sequences":
        if isinstance(extra, SequenceSet):
            return extra.values.astype(dtype, copy=False)
        tensor = as_three_d(extra)
        return tensor.reshape(-1, tensor.shape[2]).astype(dtype, copy=False)
    assert isinstance(extra, np.ndarray) and base.timesteps is not None
    full = filled_rows(as_three_d(extra), base.timesteps, padding, fill, dtype)
    if bool(np.all(lengths == base.timesteps)):
        return full.reshape(-1, full.shape[2])
    flat = full.reshape(-1, full.shape[2])
    picked: np.ndarray = rows_as_scalars(flat)[real_mask(lengths, base.timesteps, side)
                                               .reshape(-1)]
    return picked.view(dtype).reshape(-1, full.shape[2])


def add_feature(base: npt.ArrayLike | SequenceSet, *extras: np.ndarray | SequenceSet,
                static: bool = False, fill: float = 0.0, padding: Side = "post",
                lengths: npt.ArrayLike | None = None, side: Side = "post",
                pad_value: float = 0.0) -> np.ndarray | SequenceSet:
    """Concatenate ``extras`` to ``base`` along the feature axis.

    A dense ``base`` (``(N, T, F)`` or ``(N, T)``, true ``lengths`` optional, padded on
    ``side`` with ``pad_value``) gives a dense ``(N, T, F + k)`` array; a :class:`SequenceSet`
    base gives a :class:`SequenceSet`. See the module docstring for how extras line up.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((2, 3, 1))
        >>> add_feature(x, np.array([[1.0], [2.0]]), static=True)[:, :, 1].tolist()
        [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
        >>> add_feature(x, np.ones((2, 2)), fill=-1)[:, :, 1].tolist()
        [[1.0, 1.0, -1.0], [1.0, 1.0, -1.0]]
    """
    check_side(padding, "padding")
    check_side(side, "side")
    if isinstance(base, SequenceSet):
        seqs: SequenceSet = base
        shape = Shape.of("base", base)
        dense: np.ndarray | None = None
    else:
        dense = as_three_d(np.asarray(base))
        seqs = SequenceSet.from_dense(dense, lengths, side)
        shape = Shape("base", dense.shape[0], dense.shape[1], dense.shape[2], seqs.lengths,
                      tuple(np.shape(base)))
    names = ["base", *(f"extra {i + 1}" for i in range(len(extras)))]
    dtype, _ = common_dtype([seqs.dtype, *(e.dtype for e in extras)], names)
    check_value_fits(fill, dtype, "fill")
    aligned: list[tuple[str, np.ndarray | SequenceSet, Mode]] = []
    for name, extra in zip(names[1:], extras, strict=True):
        extra_shape = Shape.of(name, extra if isinstance(extra, SequenceSet)
                               else np.asarray(extra))
        aligned.append((name, extra, extra_mode(shape, extra_shape, static)))
    joined = join_features(shape, seqs.values, aligned, side, padding, fill, dtype, pad_value)
    if dense is None:
        return SequenceSet(joined, seqs.lengths)
    return joined


def join_features(base: Shape, values: np.ndarray,
                  extras: Sequence[tuple[str, np.ndarray | SequenceSet, Mode]], side: Side,
                  padding: Side, fill: float, dtype: np.dtype,
                  pad_value: float) -> np.ndarray:
    """The base's real timesteps (flat ``values``) with every extra's features beside them.

    Returns flat ``(sum(lengths), F')`` values for a ragged base, a ``(n, T, F')`` tensor
    padded with ``pad_value`` on ``side`` for a dense one. :func:`add_feature` calls this for
    a whole set, ``lstmshape add-feature`` once per block of samples.
    """
    columns = [as_result(values, dtype, base.name)]
    for name, extra, mode in extras:
        columns.append(aligned_values(base, extra, mode, side, padding, fill, dtype, name))
    joined = np.concatenate(columns, axis=1)
    if base.timesteps is None:
        return joined
    return pad(SequenceSet(joined, base.lengths), base.timesteps, side, value=pad_value,
               dtype=dtype).tensor
