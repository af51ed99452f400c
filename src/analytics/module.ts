/**
 * The analytics area: `$evaluate-measure` for Careway's published Measures. A report is computed from FHIR
 * searches (measures.ts), built as a summary MeasureReport (report.ts) and cached in Redis.
 *
 * Freshness: a report is kept MEASURE_CACHE_SECONDS [300] under its measure, version, period and subject, so
 * a figure is at most that old; `MeasureReport.date` says when it was computed. Every Careway instance shares
 * the cache (Redis), and concurrent requests for the same report in one process share one computation.
 * MEASURE_CACHE_SECONDS=0 computes every request.
 */
import type { MeasureReport } from 'fhir/r4.js';
import type { AreaContext } from '../area-context.js';
import type { FhirPort } from '../fhir/client.js';
import { CarewayError } from '../shared/errors.js';
import {
  isMeasureId,
  MEASURES,
  MEASURE_IDS,
  MEASURE_VERSION,
  measureUrl,
  type Collected,
  type EvaluationContext,
  type MeasureId,
} from './measures.js';
import { buildReport } from './report.js';
import { fhirSearcher } from './searches.js';

export interface EvaluateInput {
  readonly periodStart?: string;
  readonly periodEnd?: string;
  /** `Patient/{id}` (or the bare id). */
  readonly subject?: string;
}

export interface Evaluation {
  readonly report: MeasureReport;
  readonly cached: boolean;
}

export interface AnalyticsModule {
  readonly measureIds: readonly MeasureId[];
  /** The report of measure `id`; 404 for an unknown measure, 400 naming every bad parameter. */
  evaluate(id: string, input: EvaluateInput): Promise<Evaluation>;
}

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;
/** Ten years: a report over more is not a dashboard's question, and would page through the whole server. */
const MAX_SPAN_MS = 3660 * 86_400_000;

/** A real calendar date (2031-02-30 is refused), as UTC midnight in ms. */
function dateMs(text: string): number | undefined {
  const m = DATE_RE.exec(text);
  if (!m) return undefined;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return new Date(ms).toISOString().slice(0, 10) === text ? ms : undefined;
}

/**
 * The period as the searches use it: [start, end) in UTC. A date means the whole day, so
 * `periodEnd=2031-03-31` runs to 2031-04-01T00:00Z; a dateTime (with its offset) is taken as the instant.
 */
export function evaluationContext(input: EvaluateInput, nowMs: number): EvaluationContext {
  const problems: string[] = [];
  const bound = (name: 'periodStart' | 'periodEnd'): number | undefined => {
    const v = input[name];
    if (v === undefined || v === '') {
      problems.push(`${name} is required (YYYY-MM-DD)`);
      return undefined;
    }
    const d = dateMs(v);
    if (d !== undefined) return name === 'periodEnd' ? d + 86_400_000 : d;
    if (DATETIME_RE.test(v) && Number.isFinite(Date.parse(v))) return Date.parse(v);
    problems.push(
      `${name} must be a date (YYYY-MM-DD) or a dateTime with a time zone (got "${v.slice(0, 40)}")`,
    );
    return undefined;
  };
  const startMs = bound('periodStart');
  const endMs = bound('periodEnd');
  if (startMs !== undefined && endMs !== undefined) {
    if (endMs <= startMs) problems.push('periodEnd must not be before periodStart');
    else if (endMs - startMs > MAX_SPAN_MS) problems.push('the period may span at most ten years');
  }
  let patient: string | undefined;
  if (input.subject !== undefined) {
    const m = /^(?:Patient\/)?([^/]*)$/.exec(input.subject);
    if (m?.[1] && ID_RE.test(m[1])) patient = m[1];
    else problems.push('subject must be Patient/{id}');
  }
  if (problems.length)
    throw new CarewayError('invalid-parameters', `$evaluate-measure: ${problems.join('; ')}`);
  return {
    start: new Date(startMs!).toISOString(),
    end: new Date(endMs!).toISOString(),
    startMs: startMs!,
    endMs: endMs!,
    nowMs,
    ...(patient ? { patient } : {}),
  };
}

/** The searches of one measure, alone (the benchmark times them straight against the FHIR server). */
export function collect(fhir: FhirPort, id: MeasureId, ctx: EvaluationContext): Promise<Collected> {
  return MEASURES[id].collect(fhirSearcher(fhir), ctx);
}

/** Computes a report without the cache. */
export async function computeReport(
  fhir: FhirPort,
  id: MeasureId,
  input: EvaluateInput,
  ctx: EvaluationContext,
): Promise<MeasureReport> {
  const collected = await collect(fhir, id, ctx);
  return buildReport({
    measure: `${measureUrl(id)}|${MEASURE_VERSION}`,
    period: { start: input.periodStart!, end: input.periodEnd! },
    ...(ctx.patient ? { subject: `Patient/${ctx.patient}` } : {}),
    date: new Date(ctx.nowMs).toISOString(),
    groups: MEASURES[id].groups(collected, ctx),
  });
}

export function analyticsModule(
  ctx: Pick<AreaContext, 'fhir' | 'redis' | 'config' | 'log'>,
  clock: () => number = Date.now,
): AnalyticsModule {
  const ttl = ctx.config.analytics.cacheSeconds;
  const redis = ctx.redis.producer;
  const inFlight = new Map<string, Promise<MeasureReport>>();
  const keyOf = (id: string, input: EvaluateInput, patient: string | undefined): string =>
    `${ctx.config.queuePrefix}:measure-report:${id}|${MEASURE_VERSION}|${input.periodStart}|${input.periodEnd}|${patient ?? '*'}`;

  return {
    measureIds: MEASURE_IDS,
    async evaluate(id, input): Promise<Evaluation> {
      if (!isMeasureId(id))
        throw new CarewayError('not-found', `Measure/${id.slice(0, 64)} is not one of Careway's measures`);
      const ectx = evaluationContext(input, clock());
      const key = keyOf(id, input, ectx.patient);
      if (ttl > 0) {
        const hit = await redis.get(key);
        if (hit) return { report: JSON.parse(hit) as MeasureReport, cached: true };
      }
      let pending = inFlight.get(key);
      if (!pending) {
        pending = computeReport(ctx.fhir, id, input, ectx).finally(() => inFlight.delete(key));
        inFlight.set(key, pending);
      }
      const report = await pending;
      if (ttl > 0) {
        try {
          await redis.set(key, JSON.stringify(report), 'EX', ttl);
        } catch (err) {
          // The report is right without its cache entry; the next request computes it again.
          ctx.log.warn(
            { err: { type: err instanceof Error ? err.name : typeof err } },
            'measure report not cached',
          );
        }
      }
      return { report, cached: false };
    },
  };
}
