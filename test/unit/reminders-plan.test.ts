import { describe, expect, it } from 'vitest';
import { planReminders, type Offset } from '../../src/reminders/plan.js';

const OFFSETS: Offset[] = [
  { text: 'P3D', ms: 3 * 86400_000 },
  { text: 'P1D', ms: 86400_000 },
  { text: 'PT2H', ms: 2 * 3600_000 },
];
const QUIET = { startMinute: 21 * 60, endMinute: 8 * 60 };
const t = (iso: string): number => Date.parse(iso);
const iso = (ms: number): string => new Date(ms).toISOString();

describe('reminder plan', () => {
  it('when nothing falls in quiet hours then each offset is due at start minus offset', () => {
    const plan = planReminders({
      startMs: t('2026-12-10T14:00:00Z'),
      nowMs: t('2026-12-01T00:00:00Z'),
      offsets: OFFSETS,
      quiet: QUIET,
      zone: 'UTC',
    });
    expect(plan.map((p) => [p.offset, iso(p.dueMs), p.moved])).toEqual([
      ['P3D', '2026-12-07T14:00:00.000Z', undefined],
      ['P1D', '2026-12-09T14:00:00.000Z', undefined],
      ['PT2H', '2026-12-10T12:00:00.000Z', undefined],
    ]);
  });

  it('when a reminder falls in quiet hours then it moves to their end, or before them if the appointment would pass', () => {
    // 07:30 Berlin appointment: P1D would be 07:30 the day before (quiet until 08:00) → 08:00;
    // PT2H would be 05:30 (quiet; 08:00 is after the start) → 20:59 the evening before.
    const plan = planReminders({
      startMs: t('2026-12-10T06:30:00Z'),
      nowMs: t('2026-12-01T00:00:00Z'),
      offsets: OFFSETS,
      quiet: QUIET,
      zone: 'Europe/Berlin',
    });
    expect(plan.map((p) => [p.offset, iso(p.dueMs), p.moved])).toEqual([
      ['P3D', '2026-12-07T07:00:00.000Z', 'after-quiet-hours'],
      ['P1D', '2026-12-09T07:00:00.000Z', 'after-quiet-hours'],
      ['PT2H', '2026-12-09T19:59:00.000Z', 'before-quiet-hours'],
    ]);
  });

  it('when quiet hours span a daylight-saving change then the local window still holds', () => {
    // Spring forward in Berlin: 29 March 2026 02:00 → 03:00. A 09:00 appointment on the 29th (07:00Z): P3D
    // and P1D are 07:00Z, 08:00 local in winter time, just outside quiet hours; PT2H is 07:00 local
    // (+02:00 = 05:00Z), quiet until 08:00 local = 06:00Z.
    const spring = planReminders({
      startMs: t('2026-03-29T07:00:00Z'),
      nowMs: t('2026-03-20T00:00:00Z'),
      offsets: OFFSETS,
      quiet: QUIET,
      zone: 'Europe/Berlin',
    });
    expect(spring.map((p) => [p.offset, iso(p.dueMs)])).toEqual([
      ['P3D', '2026-03-26T07:00:00.000Z'],
      ['P1D', '2026-03-28T07:00:00.000Z'],
      ['PT2H', '2026-03-29T06:00:00.000Z'],
    ]);
    // Fall back: 25 October 2026 03:00 → 02:00. A 09:30 appointment (+01:00 = 08:30Z): offsets are exact
    // durations, so P1D is 08:30Z (10:30 summer time); PT2H is 07:30 local (06:30Z), quiet until 08:00 local,
    // which is 07:00Z in winter time.
    const fall = planReminders({
      startMs: t('2026-10-25T08:30:00Z'),
      nowMs: t('2026-10-20T00:00:00Z'),
      offsets: OFFSETS,
      quiet: QUIET,
      zone: 'Europe/Berlin',
    });
    expect(fall.map((p) => [p.offset, iso(p.dueMs)])).toEqual([
      ['P3D', '2026-10-22T08:30:00.000Z'],
      ['P1D', '2026-10-24T08:30:00.000Z'],
      ['PT2H', '2026-10-25T07:00:00.000Z'],
    ]);
  });

  it('when a reminder time has passed, or it can only go out in quiet hours, then it is not planned', () => {
    // Planned at 23:00 for a 07:00 appointment: P1D and P3D have passed; PT2H (05:00) can only be sent
    // before 21:00 yesterday, which has passed too.
    const plan = planReminders({
      startMs: t('2026-12-10T07:00:00Z'),
      nowMs: t('2026-12-09T23:00:00Z'),
      offsets: OFFSETS,
      quiet: QUIET,
      zone: 'UTC',
    });
    expect(plan).toEqual([]);
    const noQuiet = planReminders({
      startMs: t('2026-12-10T07:00:00Z'),
      nowMs: t('2026-12-09T23:00:00Z'),
      offsets: OFFSETS,
      quiet: undefined,
      zone: 'UTC',
    });
    expect(noQuiet.map((p) => p.offset)).toEqual(['PT2H']);
  });
});
