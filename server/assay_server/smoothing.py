"""Smoothing of one line's finite values: EMA, running average and gaussian.

Each function takes the x positions and y values of the finite points of one
line, in x order, and returns one smoothed value per point. NaN, infinities
and nulls are left out by the caller, so they never spread into their
neighbours. ``client/web/src/smoothing.ts`` implements the same methods for
points that arrive live; the two must agree.
"""

from __future__ import annotations

import math

import numpy as np

from assay_server.batch import Float64Array

NONE = "none"
EMA = "ema"
RUNNING_AVERAGE = "average"
GAUSSIAN = "gaussian"
METHODS = (NONE, EMA, RUNNING_AVERAGE, GAUSSIAN)

#: Gaussian weights beyond this many standard deviations are taken as zero.
GAUSSIAN_CUTOFF = 3.0


def ema(values: Float64Array, weight: float) -> Float64Array:
    """Compute the exponential moving average with the debiasing TensorBoard's scalar charts use.

    ``last = weight * last + (1 - weight) * y`` starting from ``last = 0``,
    divided by ``1 - weight ** n`` after ``n`` points, so that the first
    points are not pulled towards zero. ``weight`` is in ``[0, 1)``; 0 returns
    the values unchanged.
    """
    if not 0 <= weight < 1:
        raise ValueError(f"EMA weight must be in [0, 1), got {weight}")
    smoothed = np.empty(len(values))
    last = 0.0
    for index, value in enumerate(values.tolist()):
        last = weight * last + (1 - weight) * value
        smoothed[index] = last / (1 - weight ** (index + 1))
    return smoothed


def running_average(values: Float64Array, half_width: int) -> Float64Array:
    """Mean over a window of ``half_width`` points before and after each point.

    The window is cut at both ends of the line, so the first point averages
    itself and the ``half_width`` points after it.
    """
    if half_width < 0:
        raise ValueError(f"running average half width must be 0 or more, got {half_width}")
    count = len(values)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(count)
    low = np.maximum(index - half_width, 0)
    high = np.minimum(index + half_width + 1, count)
    return (sums[high] - sums[low]) / (high - low)  # type: ignore[no-any-return]


def gaussian(x: Float64Array, values: Float64Array, sigma: float) -> Float64Array:
    """Weighted mean with weights ``exp(-(x_j - x_i)**2 / (2 sigma**2))``, in x units.

    Points before and after each point count, so the result is not causal.
    Points farther than ``GAUSSIAN_CUTOFF`` sigmas away are skipped; their
    weight is below 1.2 % of the centre's. ``sigma`` 0 returns the values
    unchanged.
    """
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"gaussian sigma must be a finite number of 0 or more, got {sigma}")
    if sigma == 0 or len(values) == 0:
        return values.astype(np.float64)
    reach = GAUSSIAN_CUTOFF * sigma
    lows = np.searchsorted(x, x - reach, "left")
    highs = np.searchsorted(x, x + reach, "right")
    smoothed = np.empty(len(values))
    for index, (low, high) in enumerate(zip(lows.tolist(), highs.tolist(), strict=True)):
        distance = x[low:high] - x[index]
        weights = np.exp(-(distance**2) / (2 * sigma**2))
        smoothed[index] = float(np.dot(weights, values[low:high]) / weights.sum())
    return smoothed


def check_parameter(method: str, parameter: float) -> None:
    """Raise ``ValueError`` when ``parameter`` is out of range for ``method``."""
    smooth(method, parameter, np.zeros(1), np.zeros(1))


def smooth(method: str, parameter: float, x: Float64Array, values: Float64Array) -> Float64Array:
    """Apply the smoothing ``method`` with its ``parameter`` (see ``METHODS``)."""
    if method == NONE:
        return values.astype(np.float64)
    if method == EMA:
        return ema(values, parameter)
    if method == RUNNING_AVERAGE:
        if parameter != int(parameter):
            raise ValueError(f"running average half width must be an integer, got {parameter}")
        return running_average(values, int(parameter))
    if method == GAUSSIAN:
        return gaussian(x, values, parameter)
    raise ValueError(f"unknown smoothing method {method!r}; expected one of {', '.join(METHODS)}")
