/**
 * The demo hospital generator (src/demo/hospital.ts): deterministic, every stage covered at any size, unique
 * business identifiers, dates over the last months, and an HL7 feed Careway's own parser reads.
 */
import { describe, expect, it } from 'vitest';
import {
  anchorMs,
  cohortSizes,
  COHORTS,
  generateHospital,
  hl7Feed,
  hl7MessagesOf,
  referralBundle,
  REFERRED,
  timesOf,
} from '../../src/demo/hospital.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { JOURNEY_STAGES } from '../../src/journey/stages.js';

const opts = { ns: 'demo', patients: 200, anchor: '2026-12-01' };

describe('generateHospital', () => {
  it('when called twice with the same options then the hospital, its feed and its bundles are identical', () => {
    const a = generateHospital(opts);
    const b = generateHospital(opts);
    expect(b).toEqual(a);
    expect(hl7Feed(b)).toEqual(hl7Feed(a));
    expect(b.patients.filter((p) => REFERRED.includes(p.cohort)).map((p) => referralBundle(b, p))).toEqual(
      a.patients.filter((p) => REFERRED.includes(p.cohort)).map((p) => referralBundle(a, p)),
    );
  });

  it('when the namespace differs then no MRN, phone or NPI is shared', () => {
    const a = generateHospital(opts);
    const b = generateHospital({ ...opts, ns: 't1' });
    const ids = (h: typeof a) => [
      ...h.patients.flatMap((p) => [p.mrn, p.phone]),
      ...h.clinicians.map((c) => c.npi),
    ];
    const shared = ids(a).filter((x) => new Set(ids(b)).has(x));
    expect(shared).toEqual([]);
  });

  it.each([14, 30, 200, 500])(
    'when it has %i patients then every stage and every cohort has some, and identifiers are unique',
    (n) => {
      const h = generateHospital({ ...opts, patients: n });
      expect(h.patients).toHaveLength(n);
      for (const s of JOURNEY_STAGES)
        expect(
          h.patients.some((p) => p.stage === s),
          s,
        ).toBe(true);
      for (const c of Object.keys(COHORTS))
        expect(
          h.patients.some((p) => p.cohort === c),
          c,
        ).toBe(true);
      expect(new Set(h.patients.map((p) => p.mrn)).size).toBe(n);
      expect(new Set(h.patients.map((p) => p.phone)).size).toBe(n);
      const sizes = cohortSizes(n);
      expect(Object.values(sizes).reduce((x, y) => x + y, 0)).toBe(n);
    },
  );

  it('when it has fewer patients than cohorts then it says so', () => {
    expect(() => generateHospital({ ...opts, patients: 5 })).toThrow(/at least 14 patients/);
  });

  it('when the demo size is used then it has 200+ patients over several services and care managers, with pain points', () => {
    const h = generateHospital(opts);
    expect(h.patients.length).toBeGreaterThanOrEqual(200);
    expect(new Set(h.patients.map((p) => p.service)).size).toBe(5);
    expect(new Set(h.patients.map((p) => p.careManager)).size).toBeGreaterThanOrEqual(8);
    expect(h.patients.filter((p) => p.overdueTask).length).toBeGreaterThan(10);
    expect(h.patients.filter((p) => p.writesIn).length).toBeGreaterThan(10);
    expect(h.patients.filter((p) => p.cohort.startsWith('noshow')).length).toBeGreaterThan(10);
    const scores = h.patients.flatMap((p) => (p.survey ? [p.survey.recommend] : []));
    expect(scores.length).toBeGreaterThan(30);
    expect(scores.every((s) => Number.isInteger(s) && s >= 0 && s <= 10)).toBe(true);
    // Promoters, passives and detractors all present, so an NPS means something.
    expect(
      scores.some((s) => s >= 9) && scores.some((s) => s === 7 || s === 8) && scores.some((s) => s <= 6),
    ).toBe(true);
  });

  it('when dates are laid out then past events fall in the last ~3 months, before the anchor day, and spread over months', () => {
    const h = generateHospital(opts);
    const anchor = anchorMs(h);
    const months = new Set<string>();
    for (const p of h.patients) {
      const t = timesOf(h, p);
      expect(t.start).toBeLessThan(anchor);
      expect(t.start).toBeGreaterThan(anchor - 92 * 86_400_000);
      if (p.cohort === 'booked-hl7') expect(t.visit).toBeGreaterThan(anchor);
      else expect(t.visit).toBeLessThan(anchor);
      expect(t.discharge).toBeLessThan(anchor);
      months.add(new Date(t.start).toISOString().slice(0, 7));
    }
    expect(months.size).toBeGreaterThanOrEqual(3);
  });

  it('when the HL7 feed is built then every message parses, control ids are unique and each patient’s messages keep their order', () => {
    const h = generateHospital(opts);
    const feed = hl7Feed(h);
    expect(new Set(feed.map((m) => m.controlId)).size).toBe(feed.length);
    const types = new Set<string>();
    for (const m of feed) {
      const msg = Hl7Message.parse(m.text);
      expect(msg.controlId).toBe(m.controlId);
      types.add(msg.segment('MSH')!.get(9, 1));
    }
    expect([...types].sort()).toEqual(['ADT', 'ORU', 'SIU']);
    for (const p of h.patients) {
      const own = feed.filter((m) => m.mrn === p.mrn).map((m) => m.controlId);
      expect(own).toEqual(hl7MessagesOf(h, p).map((m) => m.controlId));
    }
  });

  it('when a namespace or an anchor is malformed then it is refused', () => {
    expect(() => generateHospital({ ...opts, ns: 'Demo!' })).toThrow(/namespace/);
    expect(() => generateHospital({ ...opts, anchor: '1.12.2026' })).toThrow(/anchor/);
  });
});
