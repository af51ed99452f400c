import { describe, expect, it } from 'vitest';
import {
  DEFAULT_WEIGHTS,
  distanceKm,
  fitsPreferences,
  parseWeights,
  rank,
  scoreCandidate,
  type Candidate,
  type RankingContext,
} from '../../src/scheduling/ranking.js';

const at = (iso: string): number => Date.parse(iso);
const ctx = (over: Partial<RankingContext> = {}): RankingContext => ({
  windowStartMs: at('2026-12-07T00:00:00Z'),
  windowEndMs: at('2026-12-12T00:00:00Z'),
  zone: 'Europe/Berlin',
  preferences: {},
  previousPractitioners: [],
  weights: DEFAULT_WEIGHTS,
  ...over,
});
const slot = (id: string, iso: string, over: Partial<Candidate> = {}): Candidate => ({
  slotId: id,
  startMs: at(iso),
  endMs: at(iso) + 1800_000,
  languages: [],
  load: 0,
  ...over,
});

describe('scheduling ranking', () => {
  it('when there are no preferences then earlier is better and the score is the documented weighted mean', () => {
    const early = scoreCandidate(slot('a', '2026-12-07T08:00:00Z'), ctx());
    // preference 1, continuity 0, earliest 1 - 8h/120h, travel 0.5, load 1, language 0.5
    const earliest = 1 - 8 / 120;
    const expected = (3 * 1 + 2 * 0 + 2 * earliest + 1 * 0.5 + 1 * 1 + 1 * 0.5) / 10;
    expect(early.score).toBe(Math.round(expected * 10_000) / 10_000);
    expect(early.factors.earliest).toBeCloseTo(earliest, 10);
    const late = scoreCandidate(slot('b', '2026-12-10T08:00:00Z'), ctx());
    expect(late.score).toBeLessThan(early.score);
  });

  it('when weekday and time of day are preferred then they are read in the patient zone, not UTC', () => {
    // 23:30 UTC on Monday is 00:30 Tuesday in Berlin: a Tuesday, but not morning/afternoon/evening.
    const c = slot('a', '2026-12-07T23:30:00Z');
    const s = scoreCandidate(c, ctx({ preferences: { weekdays: ['tue'], timesOfDay: ['morning'] } }));
    expect(s.factors.preference).toBe(0.5);
    expect(s.reasons).toContain('preferred weekday (tue)');
    expect(s.reasons).toContain('outside the preferred times of day');
    expect(fitsPreferences(c.startMs, 'Europe/Berlin', { weekdays: ['tue'] })).toBe(true);
    expect(fitsPreferences(c.startMs, 'UTC', { weekdays: ['tue'] })).toBe(false);
  });

  it('when a practitioner was seen before then continuity outweighs a slightly earlier stranger', () => {
    const ranked = rank(
      [
        slot('stranger', '2026-12-07T08:00:00Z', { practitioner: 'Practitioner/x' }),
        slot('known', '2026-12-08T08:00:00Z', { practitioner: 'Practitioner/y' }),
      ],
      ctx({ previousPractitioners: ['Practitioner/y'] }),
    );
    expect(ranked.map((r) => r.candidate.slotId)).toEqual(['known', 'stranger']);
    expect(ranked[0]!.reasons).toContain('same practitioner as an earlier visit');
  });

  it('when locations, distance, load and language differ then each moves the score the documented way', () => {
    const home = { latitude: 52.52, longitude: 13.405 };
    const near = scoreCandidate(
      slot('n', '2026-12-07T08:00:00Z', { position: { latitude: 52.53, longitude: 13.4 } }),
      ctx({ home }),
    );
    const far = scoreCandidate(
      slot('f', '2026-12-07T08:00:00Z', { position: { latitude: 48.14, longitude: 11.58 } }),
      ctx({ home }),
    );
    expect(near.factors.travel).toBeGreaterThan(0.9);
    expect(far.factors.travel).toBe(0);
    const preferred = scoreCandidate(
      slot('p', '2026-12-07T08:00:00Z', { location: 'Location/1' }),
      ctx({ preferences: { locations: ['Location/1'] } }),
    );
    expect(preferred.factors.travel).toBe(1);
    const busy = scoreCandidate(slot('b', '2026-12-07T08:00:00Z', { load: 0.75 }), ctx());
    expect(busy.factors.load).toBe(0.25);
    const speaks = scoreCandidate(
      slot('s', '2026-12-07T08:00:00Z', { languages: ['de'] }),
      ctx({ preferences: { language: 'de-CH' } }),
    );
    const doesNot = scoreCandidate(
      slot('d', '2026-12-07T08:00:00Z', { languages: ['en'] }),
      ctx({ preferences: { language: 'de' } }),
    );
    expect([speaks.factors.language, doesNot.factors.language]).toEqual([1, 0]);
    expect(distanceKm(home, { latitude: 48.14, longitude: 11.58 })).toBeGreaterThan(500);
  });

  it('when scores tie then the order is by start, then slot id (a total, stable order)', () => {
    const r = rank(
      [slot('b', '2026-12-07T08:00:00Z'), slot('a', '2026-12-07T08:00:00Z')],
      ctx({ weights: { ...DEFAULT_WEIGHTS, earliest: 0 } }),
    );
    expect(r.map((x) => x.candidate.slotId)).toEqual(['a', 'b']);
  });

  it('when weights are configured then they are parsed, and bad ones are listed', () => {
    expect(parseWeights('preference=5, load=0').weights).toMatchObject({
      preference: 5,
      load: 0,
      continuity: 2,
    });
    expect(parseWeights('speed=1,load=-1').problems).toHaveLength(2);
    expect(parseWeights('preference=0,continuity=0,earliest=0,travel=0,load=0,language=0').problems).toEqual([
      'at least one weight must be above 0',
    ]);
  });
});
