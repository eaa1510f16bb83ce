"""Downsampling that keeps every bucket's extremes and non-finite values.

The points of a series are split into buckets of consecutive steps. From each
bucket we keep the point with the smallest and the one with the largest ordered
value, and the first NaN, +Inf, -Inf and null, so a spike or a NaN survives at
any sampling level. The first and last points are always kept. The number of
buckets is chosen as large as the sample budget allows.
"""

from __future__ import annotations

import numpy as np

from assay import protocol
from assay_server.batch import Float64Array, Int64Array, UInt8Array

#: The fewest samples that leave room for a bucket's six kept points and the last point.
MIN_SAMPLES = 8


def overview(values: Float64Array, kinds: UInt8Array, bucket: int) -> Int64Array:
    """Return the sorted positions of each ``bucket``-point bucket's extremes and firsts.

    Every point that is the minimum, the maximum or the first NaN, +Inf,
    -Inf or null of its small bucket is kept, so spikes and non-finite points
    survive. A later ``downsample`` of these points draws the shape that a
    ``downsample`` of every point draws, except that its bucket edges fall
    between small buckets.
    """
    count = len(values)
    if count <= 2 * bucket:
        return np.arange(count)
    return _bucket_points(values, _Classes(values, kinds), -(-count // bucket))


def downsample(values: Float64Array, kinds: UInt8Array, samples: int) -> Int64Array:
    """Return the sorted positions of at most ``samples`` points to keep."""
    count = len(values)
    if count <= samples:
        return np.arange(count)
    classes = _Classes(values, kinds)
    # Each bucket keeps its min and max, the series its first and last point,
    # and the non-finite points take what room they need, up to half.
    room = samples - 2 - min(len(classes.special), samples // 2)
    buckets = max(1, room // 2)
    while True:
        keep = _bucket_points(values, classes, buckets)
        if len(keep) <= samples or buckets == 1:
            return keep
        buckets = max(1, min(buckets - 1, buckets * samples // len(keep)))


class _Classes:
    """The masks of NaN, null and ordered points, and the positions of non-finite ones."""

    def __init__(self, values: Float64Array, kinds: UInt8Array) -> None:
        floats = kinds == protocol.KIND_FLOAT
        self.nulls = kinds == protocol.KIND_NULL
        self.nans = floats & np.isnan(values)
        self.ordered = ~(self.nans | self.nulls)
        self.special = np.flatnonzero(~self.ordered | (floats & np.isinf(values)))
        special_values = values[self.special]
        special_floats = floats[self.special]
        self.special_masks = (
            self.nans[self.special],
            special_floats & (special_values == np.inf),
            special_floats & (special_values == -np.inf),
            self.nulls[self.special],
        )


def _bucket_points(values: Float64Array, classes: _Classes, buckets: int) -> Int64Array:
    """Keep each bucket's first min, first max and first of each non-finite kind.

    Buckets hold ``size`` consecutive points each, the last one fewer, so a
    reshape turns per-bucket reductions into single NumPy calls.
    """
    count = len(values)
    size = -(-count // buckets)
    buckets = -(-count // size)
    ordered = classes.ordered
    kept = np.zeros(count, dtype=np.bool_)
    kept[0] = kept[-1] = True
    starts = np.arange(buckets, dtype=np.int64) * size
    # A point that is not ordered takes the value that never wins. It still wins
    # a bucket with no ordered point, so the ordered check below drops it.
    for reduce, identity in ((np.argmin, np.inf), (np.argmax, -np.inf)):
        grid = np.full(buckets * size, identity)
        np.copyto(grid[:count], values, where=ordered)
        positions = starts + reduce(grid.reshape(buckets, size), axis=1)
        positions = positions[positions < count]
        kept[positions[ordered[positions]]] = True
    for mask in classes.special_masks:
        kept[_first_in_bucket(classes.special[mask], size)] = True
    return np.flatnonzero(kept).astype(np.int64)


def _first_in_bucket(positions: Int64Array, size: int) -> Int64Array:
    """Return the first of the ascending ``positions`` in each bucket of ``size`` points."""
    if not len(positions):
        return positions
    bucket = positions // size
    starts = np.empty(len(bucket), dtype=np.bool_)
    starts[0] = True
    np.not_equal(bucket[1:], bucket[:-1], out=starts[1:])
    return positions[starts]
