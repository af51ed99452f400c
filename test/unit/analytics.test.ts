import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Measure } from 'fhir/r4.js';
import { mean, median, nps, percentile } from '../../src/analytics/aggregate.js';
import { buildReport, type ProportionItem } from '../../src/analytics/report.js';
import { MEASURES, MEASURE_IDS, MEASURE_VERSION, measureUrl } from '../../src/analytics/measures.js';
import { evaluationContext } from '../../src/analytics/module.js';
import { serviceStratum, stageAt, stageStratum, UNKNOWN_STRATUM } from '../../src/analytics/strata.js';
import { CarewayError } from '../../src/shared/errors.js';
import { projectRoot } from '../../src/shared/paths.js';

describe('analytics arithmetic', () => {
  it('when the count is odd or even then the median is the middle value or the mean of the two middle ones', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(median([])).toBeUndefined();
  });

  it('when p90 is asked then it interpolates between the closest ranks (R-7), and p50 is the median', () => {
    const ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    // rank (10 - 1) * 0.9 = 8.1: between the 9th (9) and 10th (10) values.
    expect(percentile(ten, 90)).toBeCloseTo(9.1, 10);
    expect(percentile([10, 0], 90)).toBeCloseTo(9, 10);
    expect(percentile([3], 90)).toBe(3);
    expect(percentile(ten, 50)).toBe(median(ten));
    expect(percentile(ten, 100)).toBe(10);
    expect(percentile(ten, 0)).toBe(1);
    expect(percentile([], 90)).toBeUndefined();
    expect(() => percentile(ten, 101)).toThrow(RangeError);
  });

  it('when the input is unsorted then it is not reordered in place', () => {
    const xs = [3, 1, 2];
    median(xs);
    percentile(xs, 90);
    expect(xs).toEqual([3, 1, 2]);
  });

  it('when scores are given then NPS is % of 9-10 minus % of 0-6, off-scale values ignored', () => {
    // 4 promoters, 3 passives, 3 detractors of 10: 40 - 30 = 10.
    expect(nps([10, 9, 9, 10, 8, 7, 7, 6, 0, 3])).toEqual({
      answered: 10,
      promoters: 4,
      detractors: 3,
      nps: 10,
    });
    expect(nps([0, 0]).nps).toBe(-100);
    expect(nps([9, 10]).nps).toBe(100);
    expect(nps([7, 8]).nps).toBe(0);
    expect(nps([11, -1, 4.5]).answered).toBe(0);
    expect(nps([]).nps).toBeUndefined();
  });

  it('when values are given then the mean is their average', () => {
    expect(mean([1, 2, 3, 4])).toBe(2.5);
    expect(mean([])).toBeUndefined();
  });
});

describe('MeasureReport building', () => {
  const care = stageStratum('care');
  const access = stageStratum('access');
  const cardio = serviceStratum({
    resourceType: 'EpisodeOfCare',
    status: 'active',
    patient: {},
    type: [{ coding: [{ system: 'urn:s', code: 'cardio', display: 'Cardiology' }] }],
  });
  const items: ProportionItem[] = [
    { stage: care, service: cardio, denominator: true, numerator: true },
    { stage: care, service: UNKNOWN_STRATUM, denominator: true, numerator: false },
    { stage: access, service: cardio, denominator: true, numerator: false },
    { stage: access, service: cardio, denominator: false, numerator: true },
  ];
  const report = buildReport({
    measure: 'https://careway.dev/fhir/Measure/x|0.1.0',
    period: { start: '2031-01-01', end: '2031-01-31' },
    date: '2031-02-01T00:00:00Z',
    groups: [{ kind: 'proportion', code: 'g', display: 'G', items }],
  });
  const counts = (
    pops: { code?: { coding?: { code?: string }[] }; count?: number }[] | undefined,
  ): Record<string, number> =>
    Object.fromEntries((pops ?? []).map((p) => [p.code?.coding?.[0]?.code ?? '', p.count ?? 0]));

  it('when built then it is a complete summary with the populations counted and the fraction as score', () => {
    expect(report).toMatchObject({ resourceType: 'MeasureReport', status: 'complete', type: 'summary' });
    const g = report.group![0]!;
    expect(counts(g.population)).toEqual({ 'initial-population': 4, denominator: 3, numerator: 1 });
    expect(g.measureScore?.value).toBeCloseTo(1 / 3, 12);
  });

  it('when stratified then stages come in journey order, unknown last, and strata add up to the group', () => {
    const [stage, service] = report.group![0]!.stratifier!;
    expect(stage!.code![0]!.coding![0]!.code).toBe('stage');
    expect(service!.code![0]!.coding![0]!.code).toBe('service');
    expect(stage!.stratum!.map((s) => s.value!.coding![0]!.code)).toEqual(['access', 'care']);
    expect(service!.stratum!.map((s) => s.value!.coding![0]!.code)).toEqual(['cardio', 'unknown']);
    const sum = (code: string): number =>
      stage!.stratum!.reduce((n, s) => n + (counts(s.population)[code] ?? 0), 0);
    expect(sum('initial-population')).toBe(4);
    expect(sum('numerator')).toBe(1);
    expect(stage!.stratum![0]!.measureScore?.value).toBe(0);
  });

  it('when a continuous variable has no observations then there is no score rather than 0', () => {
    const r = buildReport({
      measure: 'm',
      period: { start: '2031-01-01', end: '2031-01-31' },
      date: 'd',
      groups: [
        {
          kind: 'continuous',
          code: 'median',
          display: 'M',
          method: 'median',
          unit: 'd',
          items: [{ stage: care, service: cardio }],
        },
      ],
    });
    const g = r.group![0]!;
    expect(g.measureScore).toBeUndefined();
    expect(counts(g.population)).toEqual({
      'initial-population': 1,
      'measure-population': 0,
      'measure-observation': 0,
    });
    expect(g.population![2]!.extension?.[0]?.valueCode).toBe('median');
  });
});

describe('stage at an instant', () => {
  const state = {
    stage: 'care' as const,
    status: 'active' as const,
    statusHistory: [],
    stageHistory: [
      { stage: 'access' as const, start: '2031-01-01T00:00:00Z', end: '2031-01-10T00:00:00Z' },
      { stage: 'care' as const, start: '2031-01-10T00:00:00Z' },
    ],
  };
  it('when asked at an instant then the stay covering it answers', () => {
    expect(stageAt(state, Date.parse('2031-01-05T00:00:00Z'))).toBe('access');
    expect(stageAt(state, Date.parse('2031-01-10T00:00:00Z'))).toBe('care');
    expect(stageAt(state, Date.parse('2030-12-31T00:00:00Z'))).toBeUndefined();
  });
});

describe('evaluation parameters', () => {
  const now = Date.parse('2031-06-01T00:00:00Z');
  it('when dates are given then the period runs from the start day to the end of the end day (UTC)', () => {
    const c = evaluationContext({ periodStart: '2031-01-01', periodEnd: '2031-01-31' }, now);
    expect(c.start).toBe('2031-01-01T00:00:00.000Z');
    expect(c.end).toBe('2031-02-01T00:00:00.000Z');
  });

  it.each([
    [{ periodEnd: '2031-01-31' }, /periodStart is required/],
    [{ periodStart: '2031-01-01' }, /periodEnd is required/],
    [{ periodStart: '2031-02-30', periodEnd: '2031-03-01' }, /periodStart must be a date/],
    [{ periodStart: 'yesterday', periodEnd: '2031-03-01' }, /periodStart must be a date/],
    [{ periodStart: '2031-03-01', periodEnd: '2031-02-01' }, /periodEnd must not be before periodStart/],
    [{ periodStart: '2001-01-01', periodEnd: '2031-01-01' }, /ten years/],
    [{ periodStart: '2031-01-01', periodEnd: '2031-01-02', subject: 'Group/1' }, /subject must be Patient/],
  ])('when given %j then it is refused naming the problem', (input, message) => {
    let error: unknown;
    try {
      evaluationContext(input, now);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CarewayError);
    expect((error as CarewayError).code).toBe('invalid-parameters');
    expect((error as Error).message).toMatch(message);
  });
});

describe('the published Measures', () => {
  it('when profiles/ is read then there is one Measure per measure id, with its canonical, version and group codes', async () => {
    const ctx = evaluationContext({ periodStart: '2031-01-01', periodEnd: '2031-01-31' }, Date.now());
    const empty = { matches: [], included: new Map() };
    for (const id of MEASURE_IDS) {
      const m = JSON.parse(
        await readFile(join(projectRoot(), 'profiles', `Measure-${id}.json`), 'utf8'),
      ) as Measure;
      expect(m.id).toBe(id);
      expect(m.url).toBe(measureUrl(id));
      expect(m.version).toBe(MEASURE_VERSION);
      expect(m.status).toBe('active');
      const computed = MEASURES[id].groups(new Proxy({}, { get: () => empty }), ctx);
      expect(m.group?.map((g) => g.code?.coding?.[0]?.code)).toEqual(computed.map((g) => g.code));
      for (const g of m.group ?? [])
        expect(g.stratifier?.map((s) => s.code?.coding?.[0]?.code)).toEqual(['stage', 'service']);
    }
  });
});
