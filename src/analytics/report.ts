/**
 * Builds a summary MeasureReport from classified items, pure. Each measure (measures.ts) turns FHIR resources
 * into items, one per member of its initial population, each tagged with its `stage` and `service` stratum and
 * with what the group counts: in the denominator and numerator (proportion), an observed value (continuous
 * variable), or a 0-10 answer (NPS). Every figure of the report, and of each stratum, is counted here from the
 * same items, so a stratum's populations always add up to the group's.
 *
 * Shape (as the CQM IG's summary reports): `group.population` coded from FHIR's measure-population system;
 * proportions carry initial-population, denominator and numerator with the fraction as `measureScore`;
 * continuous variables carry initial-population, measure-population and measure-observation (its count), with
 * the aggregate method in the cqfm-aggregateMethod extension and the aggregate as `measureScore`.
 */
import type {
  CodeableConcept,
  Extension,
  MeasureReport,
  MeasureReportGroup,
  MeasureReportGroupPopulation,
  MeasureReportGroupStratifier,
  Quantity,
} from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import { aggregate, nps, type AggregateMethod } from './aggregate.js';

export const MEASURE_POPULATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/measure-population';
export const AGGREGATE_METHOD_URL =
  'http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-aggregateMethod';

/** One value of a stratifier: a stable key (for grouping and ordering) and the CodeableConcept reported. */
export interface Stratum {
  readonly key: string;
  /** Position among its stratifier's strata (stages in journey order; the rest by key). */
  readonly order: number;
  readonly value: CodeableConcept;
}

export interface Stratified {
  readonly stage: Stratum;
  readonly service: Stratum;
}

export interface ProportionItem extends Stratified {
  readonly denominator: boolean;
  readonly numerator: boolean;
}

export interface ObservationItem extends Stratified {
  /** The observed value; undefined: in the initial population but not (yet) in the measure population. */
  readonly value?: number;
}

export interface NpsItem extends Stratified {
  /** The 0-10 answer, when the response has one. */
  readonly score?: number;
}

export interface GroupCode {
  readonly code: string;
  readonly display: string;
  /** The coding's system; Careway's measure-group CodeSystem unless given (a stage group uses the stage's). */
  readonly system?: string;
}

export type GroupSpec =
  | (GroupCode & { readonly kind: 'proportion'; readonly items: readonly ProportionItem[] })
  | (GroupCode & {
      readonly kind: 'continuous';
      readonly method: AggregateMethod;
      /** Durations carry their unit; a score (e.g. a 1-5 rating) has none. */
      readonly unit?: UnitOfTime;
      readonly items: readonly ObservationItem[];
    })
  | (GroupCode & { readonly kind: 'nps'; readonly items: readonly NpsItem[] });

export type UnitOfTime = 'd' | 'h';
const UNIT_DISPLAY: Record<UnitOfTime, string> = { d: 'days', h: 'hours' };

export interface ReportInput {
  /** `url|version` of the published Measure. */
  readonly measure: string;
  readonly period: { readonly start: string; readonly end: string };
  /** `Patient/{id}` when the report is about one patient. */
  readonly subject?: string;
  /** When the figures were computed (the cache's freshness starts here). */
  readonly date: string;
  readonly groups: readonly GroupSpec[];
}

const population = (code: string, count: number): MeasureReportGroupPopulation => ({
  code: { coding: [{ system: MEASURE_POPULATION_SYSTEM, code }] },
  count,
});

function quantity(value: number | undefined, unit?: UnitOfTime): Quantity | undefined {
  if (value === undefined) return undefined;
  return unit
    ? { value, unit: UNIT_DISPLAY[unit], system: 'http://unitsofmeasure.org', code: unit }
    : { value };
}

interface Figures {
  readonly population: MeasureReportGroupPopulation[];
  readonly measureScore?: Quantity;
}

/** The populations and the score of one group, over `items` (the whole group, or one stratum of it). */
function figures(spec: GroupSpec, items: readonly Stratified[]): Figures {
  switch (spec.kind) {
    case 'proportion': {
      const its = items as readonly ProportionItem[];
      const den = its.filter((i) => i.denominator).length;
      const num = its.filter((i) => i.denominator && i.numerator).length;
      const score = den > 0 ? quantity(num / den) : undefined;
      return {
        population: [
          population('initial-population', its.length),
          population('denominator', den),
          population('numerator', num),
        ],
        ...(score ? { measureScore: score } : {}),
      };
    }
    case 'continuous': {
      const its = items as readonly ObservationItem[];
      const values = its.flatMap((i) => (i.value === undefined ? [] : [i.value]));
      const observation: MeasureReportGroupPopulation & { extension: Extension[] } = {
        ...population('measure-observation', values.length),
        extension: [{ url: AGGREGATE_METHOD_URL, valueCode: spec.method }],
      };
      const score = quantity(aggregate(spec.method, values), spec.unit);
      return {
        population: [
          population('initial-population', its.length),
          population('measure-population', values.length),
          observation,
        ],
        ...(score ? { measureScore: score } : {}),
      };
    }
    case 'nps': {
      const its = items as readonly NpsItem[];
      const b = nps(its.flatMap((i) => (i.score === undefined ? [] : [i.score])));
      const score = b.nps === undefined ? undefined : { value: b.nps, unit: 'NPS points' };
      return {
        population: [
          population('initial-population', its.length),
          population('denominator', b.answered),
          population('numerator', b.promoters),
          // Detractors have no code of their own in FHIR's population system: numerator-exclusion is the
          // nearest (they count against the score), and the `detractors` group states them as a proportion.
          population('numerator-exclusion', b.detractors),
        ],
        ...(score ? { measureScore: score } : {}),
      };
    }
  }
}

function stratifier(spec: GroupSpec, code: 'stage' | 'service'): MeasureReportGroupStratifier {
  const byKey = new Map<string, { stratum: Stratum; items: Stratified[] }>();
  for (const item of spec.items) {
    const s = item[code];
    const entry = byKey.get(s.key) ?? { stratum: s, items: [] };
    entry.items.push(item);
    byKey.set(s.key, entry);
  }
  const strata = [...byKey.values()].sort(
    (a, b) => a.stratum.order - b.stratum.order || a.stratum.key.localeCompare(b.stratum.key),
  );
  return {
    code: [{ coding: [{ system: canonical.measureStratifierCodeSystem, code }], text: code }],
    stratum: strata.map(({ stratum, items }) => {
      const f = figures(spec, items);
      return {
        value: stratum.value,
        population: f.population,
        ...(f.measureScore ? { measureScore: f.measureScore } : {}),
      };
    }),
  };
}

function group(spec: GroupSpec): MeasureReportGroup {
  const f = figures(spec, spec.items);
  return {
    code: {
      coding: [
        { system: spec.system ?? canonical.measureGroupCodeSystem, code: spec.code, display: spec.display },
      ],
      text: spec.display,
    },
    population: f.population,
    ...(f.measureScore ? { measureScore: f.measureScore } : {}),
    stratifier: [stratifier(spec, 'stage'), stratifier(spec, 'service')],
  };
}

export function buildReport(input: ReportInput): MeasureReport {
  return {
    resourceType: 'MeasureReport',
    status: 'complete',
    type: 'summary',
    measure: input.measure,
    ...(input.subject ? { subject: { reference: input.subject } } : {}),
    date: input.date,
    reporter: { display: 'Careway' },
    period: { start: input.period.start, end: input.period.end },
    group: input.groups.map(group),
  };
}
