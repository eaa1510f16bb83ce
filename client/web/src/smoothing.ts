/**
 * Smoothing of one line's drawable values, the same methods and results as
 * server/assay_server/smoothing.py, for lines that grow live.
 */
export type Method = "none" | "ema" | "average" | "gaussian";

/** EMA debiased by 1 - weight**n after n points, as TensorBoard does it. */
export function ema(values: number[], weight: number): number[] {
  const smoothed: number[] = [];
  let last = 0;
  values.forEach((value, index) => {
    last = weight * last + (1 - weight) * value;
    smoothed.push(last / (1 - weight ** (index + 1)));
  });
  return smoothed;
}

/** Mean over halfWidth points before and after each point, cut at the ends. */
export function runningAverage(values: number[], halfWidth: number): number[] {
  const sums = [0];
  for (const value of values) sums.push((sums[sums.length - 1] ?? 0) + value);
  return values.map((_, index) => {
    const low = Math.max(index - halfWidth, 0);
    const high = Math.min(index + halfWidth + 1, values.length);
    return ((sums[high] ?? 0) - (sums[low] ?? 0)) / (high - low);
  });
}

/** Gaussian-weighted mean in x units, skipping points beyond 3 sigma. */
export function gaussian(
  x: number[],
  values: number[],
  sigma: number,
): number[] {
  if (sigma === 0) return values.slice();
  const reach = 3 * sigma;
  let low = 0;
  return x.map((centre) => {
    while ((x[low] ?? Infinity) < centre - reach) low += 1;
    let total = 0;
    let weights = 0;
    for (
      let j = low;
      j < x.length && (x[j] ?? Infinity) <= centre + reach;
      j += 1
    ) {
      const weight = Math.exp(
        -(((x[j] ?? 0) - centre) ** 2) / (2 * sigma ** 2),
      );
      total += weight * (values[j] ?? 0);
      weights += weight;
    }
    return total / weights;
  });
}

export function smooth(
  method: Method,
  parameter: number,
  x: number[],
  values: number[],
): number[] {
  switch (method) {
    case "ema":
      return ema(values, parameter);
    case "average":
      return runningAverage(values, Math.round(parameter));
    case "gaussian":
      return gaussian(x, values, parameter);
    default:
      return values.slice();
  }
}
