import { describe, expect, it } from 'vitest';
import { checkTemplate, generateSlots, type SlotTemplate } from '../../src/scheduling/slots.js';
import { rankWaitlist, fits } from '../../src/scheduling/waitlist.js';
import { holdOf, preferencesExtension, readPreferences, withHold } from '../../src/scheduling/resources.js';
import type { Appointment, Slot } from 'fhir/r4.js';

const base: SlotTemplate = {
  zone: 'Europe/Berlin',
  availableTimes: [{ days: ['mon', 'tue'], start: '09:00', end: '11:00' }],
  breaks: [{ days: [], start: '10:00', end: '10:15' }],
  holidays: [],
  from: '2026-12-07',
  to: '2026-12-13',
  slotMinutes: 30,
};

describe('slot generation', () => {
  it('when a week is generated then slots follow the template, skip the break, and carry the local offset', () => {
    const slots = generateSlots(base);
    expect(slots.map((s) => s.key)).toEqual([
      '2026-12-07T09:00',
      '2026-12-07T09:30',
      '2026-12-07T10:15',
      '2026-12-08T09:00',
      '2026-12-08T09:30',
      '2026-12-08T10:15',
    ]);
    expect(slots[0]!.start).toBe('2026-12-07T09:00:00+01:00');
    expect(slots[2]!.end).toBe('2026-12-07T10:45:00+01:00');
    expect(generateSlots(base)).toEqual(slots);
  });

  it('when the period crosses a DST change then wall-clock times stay and instants move', () => {
    const t: SlotTemplate = {
      ...base,
      availableTimes: [{ days: [], start: '09:00', end: '09:30' }],
      breaks: [],
      from: '2026-03-28',
      to: '2026-03-30',
    };
    expect(generateSlots(t).map((s) => s.start)).toEqual([
      '2026-03-28T09:00:00+01:00',
      '2026-03-29T09:00:00+02:00',
      '2026-03-30T09:00:00+02:00',
    ]);
    // 02:00-03:00 does not exist on 29 March in Berlin: no slot is made for it.
    const gap: SlotTemplate = {
      ...t,
      availableTimes: [{ days: [], start: '02:00', end: '03:00' }],
      from: '2026-03-29',
      to: '2026-03-29',
    };
    expect(generateSlots(gap)).toEqual([]);
    // On the fall-back night a 30-minute slot is 30 real minutes.
    const back: SlotTemplate = {
      ...t,
      availableTimes: [{ days: [], start: '02:00', end: '02:30' }],
      from: '2026-10-25',
      to: '2026-10-25',
    };
    const [s] = generateSlots(back);
    expect(s!.endMs - s!.startMs).toBe(1800_000);
  });

  it('when holidays and bad templates are given then holidays are skipped and every problem is listed', () => {
    expect(
      generateSlots({ ...base, holidays: ['2026-12-07'] }).every((s) => !s.key.startsWith('2026-12-07')),
    ).toBe(true);
    const problems = checkTemplate({
      ...base,
      slotMinutes: 2,
      from: '2026-12-10',
      to: '2026-12-01',
      availableTimes: [{ days: [], start: '9am', end: '10:00' }],
    });
    expect(problems).toEqual([
      'slot length must be a whole number of minutes between 5 and 480',
      'availableTime 1: times must be HH:MM',
      'end must not be before start',
    ]);
  });
});

describe('waitlist and holds on FHIR resources', () => {
  const entry = (id: string, priority: number | undefined, created: string): Appointment => ({
    resourceType: 'Appointment',
    id,
    status: 'waitlist',
    ...(priority !== undefined ? { priority } : {}),
    created,
    participant: [{ actor: { reference: `Patient/${id}` }, status: 'needs-action' }],
  });

  it('when entries wait then priority ranks first, then waiting time', () => {
    const ranked = rankWaitlist([
      entry('routine-old', undefined, '2026-01-01T00:00:00Z'),
      entry('urgent-new', 1, '2026-11-01T00:00:00Z'),
      entry('p2-old', 2, '2026-02-01T00:00:00Z'),
      entry('p2-new', 2, '2026-03-01T00:00:00Z'),
    ]);
    expect(ranked.map((e) => e.id)).toEqual(['urgent-new', 'p2-old', 'p2-new', 'routine-old']);
  });

  it('when a slot is outside the window or the wanted practitioner then it does not fit', () => {
    const slot: Slot = {
      resourceType: 'Slot',
      schedule: { reference: 'Schedule/1' },
      status: 'free',
      start: '2026-12-07T09:00:00+01:00',
      end: '2026-12-07T09:30:00+01:00',
    };
    const e = {
      ...entry('x', 1, '2026-01-01T00:00:00Z'),
      requestedPeriod: [{ start: '2026-12-08T00:00:00Z' }],
    };
    expect(fits(e, slot, undefined, undefined, 'UTC')).toBe(false);
    const wantsDr: Appointment = {
      ...entry('y', 1, '2026-01-01T00:00:00Z'),
      participant: [
        ...entry('y', 1, '').participant,
        { actor: { reference: 'Practitioner/2' }, status: 'needs-action' },
      ],
    };
    expect(
      fits(
        wantsDr,
        slot,
        { resourceType: 'Schedule', actor: [{ reference: 'Practitioner/1' }] },
        undefined,
        'UTC',
      ),
    ).toBe(false);
    expect(
      fits(
        wantsDr,
        slot,
        { resourceType: 'Schedule', actor: [{ reference: 'Practitioner/2' }] },
        undefined,
        'UTC',
      ),
    ).toBe(true);
  });

  it('when preferences and holds are written then they read back the same', () => {
    const prefs = {
      weekdays: ['tue' as const],
      timesOfDay: ['morning' as const],
      language: 'de',
      locations: ['Location/1'],
      maxTravelKm: 20,
    };
    expect(readPreferences({ extension: [preferencesExtension(prefs)] })).toEqual(prefs);
    const slot: Slot = {
      resourceType: 'Slot',
      schedule: { reference: 'Schedule/1' },
      status: 'free',
      start: 'x',
      end: 'y',
    };
    const hold = { id: 'h1', expires: '2026-12-07T09:00:00Z', holder: 'Patient/1' };
    const held = withHold(slot, 'busy-tentative', hold);
    expect(holdOf(held)).toEqual(hold);
    const freed = withHold(held, 'free');
    expect(freed.extension).toBeUndefined();
    expect(freed.status).toBe('free');
  });
});
