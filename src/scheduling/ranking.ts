/**
 * The `$find` score: a pure, documented function of the candidate and what Careway knows about the patient.
 *
 *   score = Σ wᵢ·sᵢ / Σ wᵢ, every factor sᵢ in [0, 1], weights from SCHEDULING_WEIGHTS.
 *
 * | factor       | sᵢ                                                                                         |
 * |--------------|--------------------------------------------------------------------------------------------|
 * | preference   | mean of: weekday in the preferred weekdays; start in a preferred time of day (patient zone) |
 * |              | (1 when the patient stated none)                                                           |
 * | continuity   | 1 for the practitioner of the journey's latest earlier visit, 0.7 for an older one, else 0  |
 * | earliest     | 1 − (start − window start) / (window length): sooner is better                             |
 * | travel       | 1 at a preferred location; else 1 − distance / max travel (home → Location.position);      |
 * |              | 0.5 when unknown                                                                           |
 * | load         | 1 − the share of the practitioner's slots in the window already taken (balances staff)     |
 * | language     | 1 if the practitioner speaks the patient's preferred language, 0 if not, 0.5 unknown        |
 *
 * Ties break on the earlier start, then the slot id, so the order is total and stable.
 */
import { localParts, type Weekday } from '../shared/zoned-time.js';

export const TIMES_OF_DAY = {
  morning: [6 * 60, 12 * 60],
  afternoon: [12 * 60, 17 * 60],
  evening: [17 * 60, 22 * 60],
} as const;
export type TimeOfDay = keyof typeof TIMES_OF_DAY;

export const FACTORS = ['preference', 'continuity', 'earliest', 'travel', 'load', 'language'] as const;
export type Factor = (typeof FACTORS)[number];
export type Weights = Readonly<Record<Factor, number>>;

export const DEFAULT_WEIGHTS: Weights = {
  preference: 3,
  continuity: 2,
  earliest: 2,
  travel: 1,
  load: 1,
  language: 1,
};

export interface GeoPoint {
  readonly latitude: number;
  readonly longitude: number;
}

export interface Preferences {
  readonly weekdays?: readonly Weekday[];
  readonly timesOfDay?: readonly TimeOfDay[];
  /** BCP-47, compared on the primary subtag (`de-CH` speaks `de`). */
  readonly language?: string;
  /** `Location/{id}` references. */
  readonly locations?: readonly string[];
  readonly maxTravelKm?: number;
}

export interface Candidate {
  readonly slotId: string;
  readonly startMs: number;
  readonly endMs: number;
  /** `Practitioner/{id}` when the slot's schedule is a practitioner's. */
  readonly practitioner?: string;
  /** `Location/{id}` of the schedule (or the practitioner's usual location). */
  readonly location?: string;
  readonly position?: GeoPoint;
  /** Languages the practitioner speaks (Practitioner.communication). */
  readonly languages: readonly string[];
  /** Share of this practitioner's (or schedule's) slots in the window already busy, 0..1. */
  readonly load: number;
}

export interface RankingContext {
  readonly windowStartMs: number;
  readonly windowEndMs: number;
  /** The patient's IANA zone, for weekdays and times of day. */
  readonly zone: string;
  readonly preferences: Preferences;
  /** Practitioners of earlier visits in the journey, most recent first. */
  readonly previousPractitioners: readonly string[];
  readonly home?: GeoPoint;
  readonly weights: Weights;
}

export interface Scored {
  readonly candidate: Candidate;
  /** 0..1, rounded to 4 places. */
  readonly score: number;
  readonly factors: Readonly<Record<Factor, number>>;
  /** Why, in words, for the people choosing (no patient data beyond what the caller sent). */
  readonly reasons: readonly string[];
}

const DEFAULT_MAX_TRAVEL_KM = 50;

/** Great-circle distance in km (haversine). */
export function distanceKm(a: GeoPoint, b: GeoPoint): number {
  const rad = Math.PI / 180;
  const dLat = (b.latitude - a.latitude) * rad;
  const dLon = (b.longitude - a.longitude) * rad;
  const h =
    Math.sin(dLat / 2) ** 2 +
    Math.cos(a.latitude * rad) * Math.cos(b.latitude * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.min(1, Math.sqrt(h)));
}

export function timeOfDayOf(minuteOfDay: number): TimeOfDay | undefined {
  for (const [k, [s, e]] of Object.entries(TIMES_OF_DAY))
    if (minuteOfDay >= s && minuteOfDay < e) return k as TimeOfDay;
  return undefined;
}

const primary = (lang: string): string => lang.toLowerCase().split('-')[0] ?? '';

/** Whether a slot fits the stated preferences (weekday and time of day); the waitlist uses this as a filter. */
export function fitsPreferences(startMs: number, zone: string, p: Preferences): boolean {
  const local = localParts(startMs, zone);
  if (p.weekdays?.length && !p.weekdays.includes(local.weekday)) return false;
  const tod = timeOfDayOf(local.minuteOfDay);
  if (p.timesOfDay?.length && (!tod || !p.timesOfDay.includes(tod))) return false;
  return true;
}

export function scoreCandidate(c: Candidate, ctx: RankingContext): Scored {
  const reasons: string[] = [];
  const p = ctx.preferences;
  const local = localParts(c.startMs, ctx.zone);

  // preference
  const prefParts: number[] = [];
  if (p.weekdays?.length) {
    const ok = p.weekdays.includes(local.weekday);
    prefParts.push(ok ? 1 : 0);
    reasons.push(ok ? `preferred weekday (${local.weekday})` : `not a preferred weekday (${local.weekday})`);
  }
  if (p.timesOfDay?.length) {
    const tod = timeOfDayOf(local.minuteOfDay);
    const ok = !!tod && p.timesOfDay.includes(tod);
    prefParts.push(ok ? 1 : 0);
    reasons.push(ok ? `preferred time of day (${tod})` : `outside the preferred times of day`);
  }
  const preference = prefParts.length ? prefParts.reduce((a, b) => a + b, 0) / prefParts.length : 1;

  // continuity
  const seen = c.practitioner ? ctx.previousPractitioners.indexOf(c.practitioner) : -1;
  const continuity = seen === 0 ? 1 : seen > 0 ? 0.7 : 0;
  if (seen >= 0) reasons.push('same practitioner as an earlier visit');

  // earliest
  const span = Math.max(1, ctx.windowEndMs - ctx.windowStartMs);
  const earliest = Math.min(1, Math.max(0, 1 - (c.startMs - ctx.windowStartMs) / span));

  // travel
  let travel = 0.5;
  if (c.location && p.locations?.includes(c.location)) {
    travel = 1;
    reasons.push('preferred location');
  } else if (ctx.home && c.position) {
    const km = distanceKm(ctx.home, c.position);
    const max = p.maxTravelKm ?? DEFAULT_MAX_TRAVEL_KM;
    travel = Math.max(0, 1 - km / max);
    reasons.push(`about ${Math.round(km)} km away`);
  }

  // load
  const load = 1 - Math.min(1, Math.max(0, c.load));
  reasons.push(`practitioner load ${Math.round(c.load * 100)}%`);

  // language
  let language = 0.5;
  if (p.language && c.languages.length) {
    language = c.languages.some((l) => primary(l) === primary(p.language!)) ? 1 : 0;
    if (language === 1) reasons.push(`speaks ${primary(p.language)}`);
  }

  const factors = { preference, continuity, earliest, travel, load, language };
  let total = 0;
  let weight = 0;
  for (const f of FACTORS) {
    total += ctx.weights[f] * factors[f];
    weight += ctx.weights[f];
  }
  const score = weight > 0 ? Math.round((total / weight) * 10_000) / 10_000 : 0;
  return { candidate: c, score, factors, reasons };
}

/** Candidates best first. */
export function rank(candidates: readonly Candidate[], ctx: RankingContext): Scored[] {
  return candidates
    .map((c) => scoreCandidate(c, ctx))
    .sort(
      (a, b) =>
        b.score - a.score ||
        a.candidate.startMs - b.candidate.startMs ||
        (a.candidate.slotId < b.candidate.slotId ? -1 : a.candidate.slotId > b.candidate.slotId ? 1 : 0),
    );
}

/** Parses SCHEDULING_WEIGHTS (`preference=3,continuity=2,…`); unknown names and negatives are problems. */
export function parseWeights(text: string | undefined): { weights: Weights; problems: string[] } {
  const weights: Record<Factor, number> = { ...DEFAULT_WEIGHTS };
  const problems: string[] = [];
  for (const item of (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [name, value] = item.split('=').map((s) => s.trim());
    const n = Number(value);
    if (!FACTORS.includes(name as Factor))
      problems.push(`unknown factor "${name}" (known: ${FACTORS.join(', ')})`);
    else if (!value || !Number.isFinite(n) || n < 0)
      problems.push(`weight for "${name}" must be a number ≥ 0`);
    else weights[name as Factor] = n;
  }
  if (FACTORS.every((f) => weights[f] === 0)) problems.push('at least one weight must be above 0');
  return { weights, problems };
}
