/**
 * The arithmetic of Careway's measures, pure and unit-tested: median, percentiles, mean and the Net Promoter
 * Score. Empty inputs give `undefined` (a report then carries no measureScore), never NaN or 0, so "no data"
 * is never mistaken for "zero".
 */

/** Ascending copy; the inputs are never reordered in place. */
function sorted(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** The median: the middle value, or the mean of the two middle values of an even count. */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = sorted(values);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The p-th percentile by linear interpolation between closest ranks (the "R-7" rule of R, NumPy's and
 * spreadsheets' default): rank h = (n − 1) · p/100, interpolated between the values either side of h. So the
 * 50th percentile equals the median, and p90 of ten values lies between the 9th and 10th.
 */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be 0-100 (got ${p})`);
  const s = sorted(values);
  const h = ((s.length - 1) * p) / 100;
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  return s[lo]! + (h - lo) * (s[hi]! - s[lo]!);
}

export function mean(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  return values.reduce((a, b) => a + b, 0) / values.length;
}

export interface NpsBreakdown {
  /** Answers on the 0-10 scale counted (others are ignored). */
  readonly answered: number;
  /** 9 or 10. */
  readonly promoters: number;
  /** 0 to 6. */
  readonly detractors: number;
  /** % promoters − % detractors, from −100 to 100; undefined without answers. */
  readonly nps: number | undefined;
}

/** Net Promoter Score of 0-10 answers: % of 9-10 minus % of 0-6. Values off the scale are not counted. */
export function nps(scores: readonly number[]): NpsBreakdown {
  const valid = scores.filter((s) => Number.isInteger(s) && s >= 0 && s <= 10);
  const promoters = valid.filter((s) => s >= 9).length;
  const detractors = valid.filter((s) => s <= 6).length;
  return {
    answered: valid.length,
    promoters,
    detractors,
    nps: valid.length ? ((promoters - detractors) * 100) / valid.length : undefined,
  };
}

export type AggregateMethod = 'median' | 'p90' | 'average';

export function aggregate(method: AggregateMethod, values: readonly number[]): number | undefined {
  switch (method) {
    case 'median':
      return median(values);
    case 'p90':
      return percentile(values, 90);
    case 'average':
      return mean(values);
  }
}
