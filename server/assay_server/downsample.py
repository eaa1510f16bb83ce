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
    starts = edges[:-1]
    floats = kinds == protocol.KIND_FLOAT
    nans = floats & np.isnan(values)
    ordered = ~nans & (kinds != protocol.KIND_NULL)
    picks: list[npt.NDArray[np.int64]] = [np.array([0, count - 1])]
    picks.append(_extreme(values, ordered, starts, np.argmin))
    picks.append(_extreme(values, ordered, starts, np.argmax))
    for mask in (
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
    starts: Int64Array,
    pick: object,
) -> Int64Array:
    """Position of the min (or max) ordered value in each bucket that has one."""
    found: list[int] = []
    ends = np.append(starts[1:], len(values))
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        candidates = start + np.flatnonzero(ordered[start:end])
        if len(candidates):
            found.append(int(candidates[pick(values[candidates])]))  # type: ignore[operator]
    return np.array(found, dtype=np.int64)


def _first_in_bucket(mask: npt.NDArray[np.bool_], edges: Int64Array) -> Int64Array:
    positions = np.flatnonzero(mask)
    if not len(positions):
        return positions.astype(np.int64)
    bucket = np.searchsorted(edges, positions, side="right") - 1
    _, first = np.unique(bucket, return_index=True)
    return positions[first].astype(np.int64)
