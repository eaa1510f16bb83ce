"""Downsampling that keeps every bucket's extremes and non-finite values.

The points of a series are split into buckets of consecutive steps. From each
bucket we keep the point with the smallest and the one with the largest ordered
value, and the first NaN, +Inf, -Inf and null, so a spike or a NaN survives at
any sampling level. The first and last points are always kept. The number of
buckets is chosen as large as the sample budget allows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from assay import protocol
from assay_server.batch import Float64Array, Int64Array, UInt8Array

#: The fewest samples that leave room for a bucket's six kept points and the last point.
MIN_SAMPLES = 8


def downsample(values: Float64Array, kinds: UInt8Array, samples: int) -> Int64Array:
    """Return the sorted positions of at most ``samples`` points to keep."""
    count = len(values)
    if count <= samples:
        return np.arange(count)
    buckets = max(1, samples // 2)
    while True:
        keep = _bucket_points(values, kinds, buckets)
        if len(keep) <= samples or buckets == 1:
            return keep
        buckets = max(1, min(buckets - 1, buckets * samples // len(keep)))


def _bucket_points(values: Float64Array, kinds: UInt8Array, buckets: int) -> Int64Array:
    count = len(values)
    edges = np.linspace(0, count, buckets + 1).astype(np.int64)
    floats = kinds == protocol.KIND_FLOAT
    nans = floats & np.isnan(values)
    ordered = ~nans & (kinds != protocol.KIND_NULL)
    picks: list[npt.NDArray[np.int64]] = [np.array([0, count - 1])]
    for mask in (
        _extreme(values, ordered, edges, np.minimum),
        _extreme(values, ordered, edges, np.maximum),
        nans,
        floats & (values == np.inf),
        floats & (values == -np.inf),
        kinds == protocol.KIND_NULL,
    ):
        picks.append(_first_in_bucket(mask, edges))
    return np.unique(np.concatenate(picks))


def _extreme(
    values: Float64Array,
    ordered: npt.NDArray[np.bool_],
    edges: Int64Array,
    reduce: np.ufunc,
) -> npt.NDArray[np.bool_]:
    """Mark the points equal to their bucket's min (or max) ordered value.

    ``reduce`` is ``np.minimum`` or ``np.maximum``. Points that are not ordered
    get the reduction's identity, so they never win a bucket. The final ``and``
    with ``ordered`` drops them even where they tie with the bucket's extreme.
    """
    identity = np.inf if reduce is np.minimum else -np.inf
    masked = np.where(ordered, values, identity)
    # Every bucket contains at least one point, so the starts are valid reduceat indices.
    per_bucket = reduce.reduceat(masked, edges[:-1])
    lengths = np.diff(edges)
    extremes: npt.NDArray[np.bool_] = ordered & (values == np.repeat(per_bucket, lengths))
    return extremes


def _first_in_bucket(mask: npt.NDArray[np.bool_], edges: Int64Array) -> Int64Array:
    positions = np.flatnonzero(mask)
    if not len(positions):
        return positions.astype(np.int64)
    bucket = np.searchsorted(edges, positions, side="right") - 1
    _, first = np.unique(bucket, return_index=True)
    return positions[first].astype(np.int64)
