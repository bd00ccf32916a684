"""``lstmshape partition``: the samples split into train/validation/test outputs, streamed.

The split comes from metadata alone (the sample count, the classes of ``y``, the
``source_index``; :func:`~lstmshape.ops.partition.split_indices`). Each part is then written
in source order, a chunk of its samples at a time: the chunk's samples are gathered from the
input blocks that hold them (:func:`~lstmshape.io.gather.gather`), so memory stays within
``--memory-limit`` whatever the input's size. Every part keeps the input's layout (padded or
ragged), its ``y`` and ``source_index``, and gains ``order``: the source sample of every row.
All the outputs and their manifests are committed together, or none is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import InputError, OptionError
from ..io.gather import gather
from ..io.location import STDIO
from ..io.output import Stream
from ..io.source import Source
from ..job import IOOptions, Job, Result
from ..manifest import ManifestData
from ..ops.partition import are_classes, check_fractions, split_indices
from ..sequences import bounds_within
from .layout import Layout


def partition_file(src: str, outputs: Sequence[str], options: IOOptions, *,
                   fractions: Sequence[float], seed: int = 0, stratify: bool = False,
                   by_source: bool = False) -> list[dict[str, Any]]:
    """Split the samples of ``src`` into ``outputs``, one per fraction; returns the manifests.

    ``stratify``: keep the classes of a sequence-level integer ``y`` in proportion (each part
    within one sample of its share of every class). ``by_source``: samples that share a
    ``source_index`` (windows of one series, pieces of one split sequence) go to one part.
    ``options.output`` is not used: each output is named in ``outputs``.

    Example:
        >>> import numpy as np, tempfile, os
        >>> folder = tempfile.mkdtemp(); src = os.path.join(folder, "x.npy")
        >>> np.save(src, np.arange(20.0).reshape(10, 2))
        >>> paths = [os.path.join(folder, name) for name in ("a.npz", "b.npz")]
        >>> ms = partition_file(src, paths, IOOptions(paths[0]), fractions=[0.7, 0.3])
        >>> [m["samples"] for m in ms], sorted(np.load(paths[1])["order"].tolist())
        ([7, 3], [0, 1, 8])
    """
    shares = check_fractions(fractions)
    if len(outputs) != len(shares):
        raise OptionError(f"{len(shares)} fractions for {len(outputs)} output"
                          f"{'s' if len(outputs) != 1 else ''}: give one output per fraction")
    if STDIO in outputs:
        raise OptionError("partition writes each part to a file of its own; -o - is not one")
    params: dict[str, Any] = {"fractions": [float(f) for f in fractions], "seed": seed,
                              "stratify": stratify, "by_source": by_source}

    def produce(job: Job) -> list[Result]:
        source = job.open(job.locations[0])
        classes = class_labels(job, source) if stratify else None
        groups = None
        if by_source:
            groups = source.read_source_index()
            if groups is None:
                raise InputError(f"{source.location}: has no source_index to keep together "
                                 f"(window on a set of series and truncate --overflow split "
                                 f"write one); drop --by-source")
        parts = split_indices(source.n_samples, shares, seed, classes, groups)
        for path, share, index in zip(outputs, shares, parts, strict=True):
            if not len(index):
                job.warn(f"{path}: 0 of {source.n_samples} samples (fraction {share:g}); "
                         f"the part is empty")
        done = [0]
        return [part_result(job, source, index, number, len(parts), params, done,
                            None if classes is None else classes[index])
                for number, index in enumerate(parts)]

    return Job("partition", [src], options, outputs=list(outputs)).run_all(produce)


def class_labels(job: Job, source: Source) -> np.ndarray:
    """The class of every sample: a sequence-level integer ``y``, read a block at a time."""
    if source.target_kind is None:
        raise InputError(f"{source.location}: has no y to stratify by; drop --stratify")
    rows = job.targets(source)  # None for per-timestep labels
    if rows is None or not are_classes(tuple(rows.shape[1:]), rows.dtype):
        raise InputError(f"{source.location}: --stratify needs one integer class per sample; "
                         f"its y is per {source.target_kind}, shape {source.target_shape} per "
                         f"sample")
    assert isinstance(rows, Stream)  # partition runs here, never planned for an engine
    labels: np.ndarray = np.concatenate([np.zeros(0, np.int64),
                                         *(block.reshape(-1) for block in rows.blocks)])
    return labels


def part_result(job: Job, source: Source, index: np.ndarray, number: int, count: int,
                params: dict[str, Any], done: list[int], classes: np.ndarray | None) -> Result:
    """One part: samples ``index`` of the source, in that (source) order."""
    layout = Layout.of(source)
    step_bytes = max(source.n_features * source.dtype.itemsize, 1)
    steps = source.lengths if source.timesteps is None else np.full(source.n_samples,
                                                                   source.timesteps)
    blocks_in = np.array(source.block_bounds(job.block_bytes), dtype=np.int64)
    lengths = source.lengths[index]

    def blocks() -> Iterator[np.ndarray]:
        # a chunk's samples are read (input) and written again (output): twice their bytes
        for first, last in bounds_within(2 * steps[index] * step_bytes, job.block_bytes):
            yield layout.rows(gather(source, index[first:last], blocks_in), source.dtype)
            done[0] += last - first
            if job.options.progress is not None:
                job.options.progress(done[0], source.n_samples)

    arrays: list[tuple[str, Any]] = [
        layout.main(lengths, source.n_features, source.dtype, blocks()), ("lengths", lengths),
        ("order", index), *job.kept_labels(source, index), *job.side_arrays(source, index)]
    manifest = ManifestData(
        command="partition", params={**params, "part": number}, inputs=[], outputs={},
        samples=len(index), timesteps=source.timesteps, features=source.n_features,
        feature_names=source.feature_names, lengths=lengths, padding=layout.padding(),
        history=job.history())
    summary: dict[str, Any] = {
        "part": number, "parts": count, "fraction": float(params["fractions"][number]),
        "samples": len(index), "source_samples": source.n_samples, "order": "outputs.order"}
    if classes is not None:
        names, counts = np.unique(classes, return_counts=True)
        summary["classes"] = {str(int(n)): int(c) for n, c in zip(names, counts, strict=True)}
    manifest.extra["partition"] = summary
    return Result(arrays, manifest)
