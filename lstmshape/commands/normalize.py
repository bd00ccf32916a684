"""``lstmshape normalize``: every feature scaled over the real timesteps, in two streaming passes.

The first pass reads the input a block at a time; its rows go, in chunks and groups of chunks
counted from the first row, into float64 moments merged exactly
(:class:`~lstmshape.ops.normalize.Accumulator`, Chan's pairwise formulas), so the statistics
are those of all the real timesteps at once, padding never counts, and the numbers are the
same for any ``--memory-limit``. The second pass reads the blocks again, scales them and
writes them. A padded input stays padded, its padded steps holding the pad value; a ragged one
stays ragged. With ``like`` the first pass is skipped: the statistics are the training set's,
from its manifest.

With ``--engine dask`` the first pass is one task per group of the same grid (the client folds
their groups in row order: the same bits, see :meth:`~lstmshape.job.Job.moments`), the second
one task per output chunk (:class:`ScaleRows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.output import Stream
from ..io.source import Source
from ..job import IOOptions, Job, Result
from ..like import adopt, open_like, resolve
from ..manifest import ManifestData
from ..ops.normalize import Method, Normalization, check_method, output_dtype
from ..plan import Planned
from ..sequences import SequenceSet
from .layout import Layout


def normalize_file(src: str, options: IOOptions, *, method: Method | None = None,
                   like: str | None = None) -> dict[str, Any]:
    """Scale each feature of ``src`` over its real timesteps; returns the manifest written.

    ``method``: ``"standard"`` (the default: mean 0, std 1, as sklearn's ``StandardScaler``) or
    ``"minmax"`` (into [0, 1], as ``MinMaxScaler``). ``like``: the manifest of a ``normalize``
    run (the training set's) whose statistics are applied instead of fitting new ones.

    Example:
        >>> import numpy as np, tempfile, os
        >>> folder = tempfile.mkdtemp(); src = os.path.join(folder, "seqs.npz")
        >>> np.savez(src, values=np.array([1, 3, 5]), lengths=np.array([2, 1]))
        >>> m = normalize_file(src, IOOptions(os.path.join(folder, "n.npz")), method="minmax")
        >>> m["normalization"], m["outputs"]["values"]["dtype"]
        ({'method': 'minmax', 'min': [1.0], 'max': [5.0]}, 'float32')
    """
    recorded = open_like(like, "normalize")
    chosen = check_method(resolve({"method": method}, {"method": "standard"}, recorded)["method"])
    params: dict[str, Any] = {"method": chosen}

    def produce(job: Job) -> Result:
        source = job.open(job.locations[0])
        names = source.feature_names
        statistics: Normalization | None = None
        adopt(recorded, params, names, source.location, job)
        # an explicit --method other than the manifest's fits new statistics
        if recorded is not None and recorded.param("method") == chosen:
            statistics = recorded.step.normalization()
        if statistics is None:
            statistics = Normalization.fit(job.moments(source), chosen)
            constant = [names[i] for i in np.flatnonzero(statistics.constant)]
            if constant:
                job.warn(f"{source.location}: feature{'s' if len(constant) > 1 else ''} "
                         f"{', '.join(constant)} {'are' if len(constant) > 1 else 'is'} "
                         f"constant over the real timesteps: shifted, scaled by 1")
        stats = statistics
        target = output_dtype(source.dtype)
        layout = Layout.of(source)
        lengths = source.lengths
        rows = ScaleRows(stats, layout, target)
        steps = lengths if layout.timesteps is None else layout.timesteps
        extra = steps * source.n_features * target.itemsize
        main: tuple[str, Stream | Planned]
        if layout.timesteps is None:
            offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
            main = ("values", job.array(source, (int(offsets[-1]), source.n_features), target,
                                        rows, extra, offsets))
        else:
            main = ("x", job.array(source, (len(lengths), layout.timesteps, source.n_features),
                                   target, rows, extra))
        arrays: list[tuple[str, Any]] = [
            main, ("lengths", lengths), *job.kept_labels(source), *job.side_arrays(source)]
        manifest = ManifestData(
            command="normalize", params=params, inputs=[], outputs={},
            samples=source.n_samples, timesteps=source.timesteps, features=source.n_features,
            feature_names=names, lengths=lengths, padding=layout.padding(),
            history=job.history())
        manifest.extra["normalization"] = stats.to_json()
        return Result(arrays, manifest)

    return Job("normalize", [src], options).run(produce)


@dataclass(frozen=True)
class ScaleRows:
    """Samples ``start:stop`` of a source, scaled and laid out as the input was: the row
    function of the output (it crosses to Dask workers: the statistics and the layout)."""

    statistics: Normalization
    layout: Layout
    dtype: np.dtype

    def __call__(self, source: Source, start: int, stop: int) -> np.ndarray:
        block = source.read_block(start, stop)
        scaled = SequenceSet(self.statistics.apply(block.values, self.dtype), block.lengths)
        return self.layout.rows(scaled, self.dtype)
