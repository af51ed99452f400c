import { describe, expect, it } from 'vitest';
import {
  checkClose,
  checkTransition,
  closed,
  EVENT_STAGE,
  FORWARD_TRANSITIONS,
  initialState,
  stageAfterEvent,
  stageBeforeEvent,
  withStage,
  type JourneyState,
} from '../../src/journey/rules.js';
import { JOURNEY_STAGES, type JourneyStage } from '../../src/journey/stages.js';

const T0 = '2026-11-01T09:00:00.000Z';
const T1 = '2026-11-05T09:00:00.000Z';
const at = (stage: JourneyStage, status: JourneyState['status'] = 'active'): JourneyState =>
  initialState(stage, status, T0);

describe('checkTransition (commands)', () => {
  it('when moving along every listed forward transition then it is allowed', () => {
    for (const from of JOURNEY_STAGES) {
      for (const to of FORWARD_TRANSITIONS[from])
        expect(checkTransition(at(from), to)).toEqual({ ok: true, direction: 'forward' });
    }
  });

  it.each([
    ['awareness', 'recovery'],
    ['awareness', 'continuous-care'],
    ['consideration', 'recovery'],
    ['access', 'recovery'],
    ['access', 'continuous-care'],
  ] as const)(
    'when jumping from %s to %s then the rule transition-not-allowed refuses it and names the options',
    (from, to) => {
      const r = checkTransition(at(from), to);
      expect(r).toMatchObject({ ok: false, rule: 'transition-not-allowed' });
      expect(!r.ok && r.message).toContain(`cannot move from ${from} to ${to}`);
    },
  );

  it('when moving back without a reason then reason-required refuses it; with one it is allowed', () => {
    expect(checkTransition(at('care'), 'access')).toMatchObject({ ok: false, rule: 'reason-required' });
    expect(checkTransition(at('care'), 'access', '  ')).toMatchObject({ ok: false, rule: 'reason-required' });
    expect(checkTransition(at('care'), 'access', 'second opinion requested')).toEqual({
      ok: true,
      direction: 'back',
    });
  });

  it('when the target is the current stage then it is a no-op', () => {
    expect(checkTransition(at('care'), 'care')).toEqual({ ok: true, direction: 'same' });
  });

  it('when the journey is finished or cancelled then no stage change is allowed', () => {
    expect(checkTransition(at('care', 'finished'), 'recovery')).toMatchObject({
      ok: false,
      rule: 'journey-closed',
    });
    expect(checkTransition(at('care', 'cancelled'), 'care')).toMatchObject({
      ok: false,
      rule: 'journey-closed',
    });
  });
});

describe('stageAfterEvent (facts from the EHR)', () => {
  it('when an event points forward then it moves there, even skipping stages', () => {
    expect(stageAfterEvent(at('awareness'), 'referral-accepted')).toBe('access');
    expect(stageAfterEvent(at('access'), 'visit-fulfilled')).toBe('care');
    expect(stageAfterEvent(at('awareness'), 'discharged')).toBe('recovery');
    expect(stageAfterEvent(at('recovery'), 'followup-plan-active')).toBe('continuous-care');
  });

  it('when an event points at the current or an earlier stage then nothing changes', () => {
    expect(stageAfterEvent(at('care'), 'results-available')).toBeUndefined();
    expect(stageAfterEvent(at('recovery'), 'appointment-booked')).toBeUndefined();
  });

  it('when the journey is closed then events change nothing', () => {
    expect(stageAfterEvent(at('care', 'finished'), 'discharged')).toBeUndefined();
  });

  it('when the event table is read then every event maps to a stage', () => {
    for (const stage of Object.values(EVENT_STAGE)) expect(JOURNEY_STAGES).toContain(stage);
  });
});

describe('withStage / closed', () => {
  it('when the stage changes then the previous period ends and a new one starts with the reason', () => {
    const s = withStage(at('access'), 'care', T1, 'first visit');
    expect(s.stage).toBe('care');
    expect(s.stageHistory).toEqual([
      { stage: 'access', start: T0, end: T1 },
      { stage: 'care', start: T1, reason: 'first visit' },
    ]);
  });

  it('when a planned journey reaches access then it becomes active, with status history', () => {
    const s = withStage(at('awareness', 'planned'), 'access', T1);
    expect(s.status).toBe('active');
    expect(s.statusHistory).toEqual([
      { status: 'planned', start: T0, end: T1 },
      { status: 'active', start: T1 },
    ]);
  });

  it('when a journey is cancelled then a reason is required and periods close', () => {
    expect(checkClose(at('care'), 'cancelled')).toMatchObject({ ok: false, rule: 'reason-required' });
    expect(checkClose(at('care'), 'finished')).toEqual({ ok: true });
    const s = closed(at('care'), 'finished', T1);
    expect(s.status).toBe('finished');
    expect(s.stageHistory.at(-1)?.end).toBe(T1);
    expect(checkClose(s, 'cancelled', 'x')).toMatchObject({ ok: false, rule: 'journey-closed' });
  });

  it('when an event is undone then the journey goes back only if that event set the current stage', () => {
    const at = '2026-01-01T00:00:00Z';
    const booked = withStage(
      initialState('awareness', 'active', at),
      'access',
      at,
      'event: appointment-booked',
    );
    expect(stageBeforeEvent(booked, 'appointment-booked')).toBe('awareness');
    expect(stageBeforeEvent(booked, 'admitted')).toBeUndefined();
    const movedOn = withStage(booked, 'care', at, 'event: admitted');
    expect(stageBeforeEvent(movedOn, 'appointment-booked')).toBeUndefined();
    expect(stageBeforeEvent(closed(movedOn, 'finished', at), 'admitted')).toBeUndefined();
    expect(stageBeforeEvent(initialState('access', 'active', at), 'appointment-booked')).toBeUndefined();
  });
});
