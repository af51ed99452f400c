import type { Appointment, CarePlan, Encounter } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { journeyProvenance } from '../../src/journey/provenance.js';
import { occurredAt } from '../../src/journey/resource-events.js';
import {
  EVENT_CLOCK_SKEW_MS,
  eventDate,
  initialState,
  withStage,
  type JourneyState,
} from '../../src/journey/rules.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { messageEventTime } from '../../src/hl7/inbound-worker.js';

const NOW = '2026-11-30T12:00:00.000Z';
const START = '2026-09-01T08:00:00.000Z';
const state: JourneyState = initialState('access', 'active', START);
const plusMs = (iso: string, ms: number): string => new Date(Date.parse(iso) + ms).toISOString();

describe('eventDate: a stage change raised by an event is dated when the event happened', () => {
  it('uses the event time when it lies between the current stage start and now', () => {
    expect(eventDate(state, '2026-10-01T10:00:00+02:00', NOW)).toBe('2026-10-01T10:00:00+02:00');
  });

  it('uses now without an event time, or with an unreadable one', () => {
    expect(eventDate(state, undefined, NOW)).toBe(NOW);
    expect(eventDate(state, 'yesterday', NOW)).toBe(NOW);
  });

  it('clamps a future time beyond the clock-skew allowance to now', () => {
    expect(eventDate(state, plusMs(NOW, EVENT_CLOCK_SKEW_MS + 1000), NOW)).toBe(NOW);
    expect(eventDate(state, '2027-06-01T00:00:00Z', NOW)).toBe(NOW);
  });

  it('never dates later than now, even within the allowance', () => {
    expect(eventDate(state, plusMs(NOW, 1000), NOW)).toBe(NOW);
  });

  it('clamps a time before the current stage start to that start, so periods never overlap or reverse', () => {
    const dated = eventDate(state, '2026-08-01T00:00:00Z', NOW);
    expect(dated).toBe(START);
    const next = withStage(state, 'care', dated, 'event: admitted');
    const [first, second] = next.stageHistory;
    expect(first?.end).toBe(START);
    expect(Date.parse(second?.start ?? '')).toBeGreaterThanOrEqual(Date.parse(first?.start ?? ''));
  });

  it('also respects a later status period start (a status change after the stage began)', () => {
    const onhold: JourneyState = {
      ...state,
      status: 'onhold',
      statusHistory: [
        { status: 'active', start: START, end: '2026-10-01T00:00:00.000Z' },
        { status: 'onhold', start: '2026-10-01T00:00:00.000Z' },
      ],
    };
    expect(eventDate(onhold, '2026-09-15T00:00:00Z', NOW)).toBe('2026-10-01T00:00:00.000Z');
  });

  it('keeps successive event-dated stages in order', () => {
    let s = state;
    s = withStage(s, 'care', eventDate(s, '2026-10-01T00:00:00Z', NOW), 'event: admitted');
    // A discharge reported with a time before the admission: clamped, not reversed.
    s = withStage(s, 'recovery', eventDate(s, '2026-09-20T00:00:00Z', NOW), 'event: discharged');
    const starts = s.stageHistory.map((p) => Date.parse(p.start));
    expect(starts).toEqual([...starts].sort((a, b) => a - b));
    for (const p of s.stageHistory)
      if (p.end) expect(Date.parse(p.end)).toBeGreaterThanOrEqual(Date.parse(p.start));
  });
});

describe('occurredAt: the time a resource-driven event happened', () => {
  it('reads an Appointment end, else its start', () => {
    const a: Appointment = {
      resourceType: 'Appointment',
      status: 'fulfilled',
      participant: [],
      start: 'S',
      end: 'E',
    };
    expect(occurredAt(a, 'visit-fulfilled')).toBe('E');
    expect(
      occurredAt(
        { resourceType: 'Appointment', status: 'fulfilled', participant: [], start: 'S' } as Appointment,
        'visit-fulfilled',
      ),
    ).toBe('S');
  });
  it('reads an Encounter period end', () => {
    const e: Encounter = {
      resourceType: 'Encounter',
      status: 'finished',
      class: { code: 'AMB' },
      period: { start: 'S', end: 'E' },
    };
    expect(occurredAt(e, 'visit-fulfilled')).toBe('E');
  });
  it('reads a CarePlan period start when active, its end when completed', () => {
    const p: CarePlan = {
      resourceType: 'CarePlan',
      status: 'active',
      intent: 'plan',
      subject: { reference: 'Patient/1' },
      period: { start: 'S', end: 'E' },
    };
    expect(occurredAt(p, 'careplan-active')).toBe('S');
    expect(occurredAt(p, 'treatment-completed')).toBe('E');
    expect(occurredAt({ ...p, period: {} } as CarePlan, 'careplan-active')).toBeUndefined();
  });
});

describe('messageEventTime: EVN-2, else MSH-7, in the sender zone', () => {
  const msh = 'MSH|^~\\&|EHR|FAC|CW|CW|20261130120000||ADT^A01|C1|P|2.5';
  it('prefers EVN-2', () => {
    const m = Hl7Message.parse(`${msh}\rEVN|A01|20260930081500+0000\rPID|1||123`);
    expect(messageEventTime(m, 'Europe/Amsterdam')).toBe('2026-09-30T08:15:00+00:00');
  });
  it('falls back to MSH-7, read in the sender zone', () => {
    const m = Hl7Message.parse(`${msh}\rEVN|A01|\rPID|1||123`);
    expect(messageEventTime(m, 'Europe/Amsterdam')).toBe('2026-11-30T12:00:00+01:00');
  });
  it('ignores an unreadable EVN-2 and falls back', () => {
    const m = Hl7Message.parse(`${msh}\rEVN|A01|notadate\rPID|1||123`);
    expect(messageEventTime(m, 'UTC')).toBe('2026-11-30T12:00:00+00:00');
  });
});

describe('journeyProvenance', () => {
  it('keeps recorded = now and adds occurredDateTime = the event time', () => {
    const p = journeyProvenance({
      target: 'EpisodeOfCare/1',
      at: NOW,
      actor: { subject: 'x' },
      activity: 'UPDATE',
      reason: 'event: admitted',
      change: 'stage:access->care',
      occurred: START,
    });
    expect(p.recorded).toBe(NOW);
    expect(p.occurredDateTime).toBe(START);
  });
});
