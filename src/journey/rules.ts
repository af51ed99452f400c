/**
 * The journey rules: which stage changes are allowed, which events advance a journey, and closing.
 * Pure functions over a small state model, no I/O, so every rule is unit-tested on its own.
 *
 * Two kinds of change, on purpose:
 * - a **command** (`$advance-stage`, a person deciding) follows the transition table: forward to the stages
 *   listed, or back to any earlier stage with a reason;
 * - an **event** (a fact reported by the EHR: a discharge, a fulfilled visit) only ever moves a journey
 *   forward, and may skip stages, because the fact happened whether or not Careway saw the steps before it.
 *   An event that points at the current or an earlier stage changes nothing.
 */
import { JOURNEY_STAGES, type JourneyStage } from './stages.js';

/** FHIR EpisodeOfCare.status values. */
export type EpisodeStatus =
  'planned' | 'waitlist' | 'active' | 'onhold' | 'finished' | 'cancelled' | 'entered-in-error';

export const CLOSED_STATUSES: readonly EpisodeStatus[] = ['finished', 'cancelled', 'entered-in-error'];

export interface StagePeriod {
  readonly stage: JourneyStage;
  readonly start: string;
  readonly end?: string;
  readonly reason?: string;
}

export interface StatusPeriod {
  readonly status: EpisodeStatus;
  readonly start: string;
  readonly end?: string;
}

/** The parts of a journey the rules reason about. */
export interface JourneyState {
  readonly stage: JourneyStage;
  readonly status: EpisodeStatus;
  readonly stageHistory: readonly StagePeriod[];
  readonly statusHistory: readonly StatusPeriod[];
}

/** Forward moves a person may make. Skips are listed explicitly (a walk-in goes straight to care). */
export const FORWARD_TRANSITIONS: Readonly<Record<JourneyStage, readonly JourneyStage[]>> = {
  awareness: ['consideration', 'access', 'care'],
  consideration: ['access', 'care'],
  access: ['care'],
  care: ['recovery', 'continuous-care'],
  recovery: ['continuous-care'],
  'continuous-care': [],
};

/** Events that advance a journey, and the stage each one reaches. */
export const EVENT_STAGE = {
  'referral-accepted': 'access',
  'appointment-booked': 'access',
  'visit-fulfilled': 'care',
  'results-available': 'care',
  'careplan-active': 'care',
  admitted: 'care',
  discharged: 'recovery',
  'treatment-completed': 'recovery',
  'followup-plan-active': 'continuous-care',
} as const satisfies Record<string, JourneyStage>;

export type JourneyEvent = keyof typeof EVENT_STAGE;

export function stageIndex(stage: JourneyStage): number {
  return JOURNEY_STAGES.indexOf(stage);
}

export function isJourneyEvent(value: string): value is JourneyEvent {
  return Object.hasOwn(EVENT_STAGE, value);
}

/** A rule that refused a change: `rule` is a stable id for machines, `message` explains it to people. */
export interface RuleViolation {
  readonly ok: false;
  readonly rule: 'journey-closed' | 'transition-not-allowed' | 'reason-required' | 'invalid-status-change';
  readonly message: string;
}

export type TransitionCheck =
  { readonly ok: true; readonly direction: 'forward' | 'back' | 'same' } | RuleViolation;

/** Checks a commanded stage change against the transition table and the journey's status. */
export function checkTransition(state: JourneyState, to: JourneyStage, reason?: string): TransitionCheck {
  if (CLOSED_STATUSES.includes(state.status)) {
    return {
      ok: false,
      rule: 'journey-closed',
      message: `the journey is ${state.status}; its stage can no longer change`,
    };
  }
  const from = state.stage;
  if (from === to) return { ok: true, direction: 'same' };
  if (stageIndex(to) < stageIndex(from)) {
    if (!reason?.trim()) {
      return {
        ok: false,
        rule: 'reason-required',
        message: `moving back from ${from} to ${to} needs a reason`,
      };
    }
    return { ok: true, direction: 'back' };
  }
  if (!FORWARD_TRANSITIONS[from].includes(to)) {
    const allowed = FORWARD_TRANSITIONS[from];
    return {
      ok: false,
      rule: 'transition-not-allowed',
      message: `a journey cannot move from ${from} to ${to}; from ${from} it can move forward to ${
        allowed.length ? allowed.join(', ') : 'no later stage'
      }, or back to an earlier stage with a reason`,
    };
  }
  return { ok: true, direction: 'forward' };
}

/** The stage an event moves the journey to, or undefined when it changes nothing (never backwards). */
export function stageAfterEvent(state: JourneyState, event: JourneyEvent): JourneyStage | undefined {
  if (CLOSED_STATUSES.includes(state.status)) return undefined;
  const target = EVENT_STAGE[event];
  return stageIndex(target) > stageIndex(state.stage) ? target : undefined;
}

/**
 * Undoing an event (an EHR cancels what it announced: A11 cancel admit, S15/S17 cancel or delete a booking):
 * the stage the journey goes back to, only when that very event is what moved it to its current stage. A
 * journey that has moved on since (another event, a person's decision) is left alone, and so is a closed one.
 */
export function stageBeforeEvent(state: JourneyState, event: JourneyEvent): JourneyStage | undefined {
  if (CLOSED_STATUSES.includes(state.status)) return undefined;
  const history = state.stageHistory;
  const current = history.at(-1);
  const previous = history.at(-2);
  if (!current || !previous || current.stage !== state.stage) return undefined;
  if (current.reason !== `event: ${event}`) return undefined;
  return previous.stage;
}

/** Applies a stage change: closes the current stage period at `at` and opens the new one. */
export function withStage(state: JourneyState, to: JourneyStage, at: string, reason?: string): JourneyState {
  if (state.stage === to) return state;
  const history = state.stageHistory.map((p, i, all) =>
    i === all.length - 1 && p.end === undefined ? { ...p, end: at } : p,
  );
  const next: StagePeriod = { stage: to, start: at, ...(reason?.trim() ? { reason: reason.trim() } : {}) };
  // A paused journey that moves on is active again; planned/waitlist journeys become active once care starts.
  const status: EpisodeStatus =
    state.status === 'onhold' ||
    ((state.status === 'planned' || state.status === 'waitlist') && stageIndex(to) >= stageIndex('access'))
      ? 'active'
      : state.status;
  return withStatus({ ...state, stage: to, stageHistory: [...history, next] }, status, at);
}

/** Applies a status change, keeping statusHistory with periods. */
export function withStatus(state: JourneyState, status: EpisodeStatus, at: string): JourneyState {
  if (state.status === status) return state;
  const history = state.statusHistory.map((p, i, all) =>
    i === all.length - 1 && p.end === undefined ? { ...p, end: at } : p,
  );
  return { ...state, status, statusHistory: [...history, { status, start: at }] };
}

export type CloseCheck = { readonly ok: true } | RuleViolation;

/** Closing (finished) or cancelling a journey: allowed from any open status; a reason is needed to cancel. */
export function checkClose(
  state: JourneyState,
  status: 'finished' | 'cancelled',
  reason?: string,
): CloseCheck {
  if (CLOSED_STATUSES.includes(state.status)) {
    return { ok: false, rule: 'journey-closed', message: `the journey is already ${state.status}` };
  }
  if (status === 'cancelled' && !reason?.trim()) {
    return { ok: false, rule: 'reason-required', message: 'cancelling a journey needs a reason' };
  }
  return { ok: true };
}

/** Closes the journey: ends the current stage period and records the status. */
export function closed(state: JourneyState, status: 'finished' | 'cancelled', at: string): JourneyState {
  const history = state.stageHistory.map((p, i, all) =>
    i === all.length - 1 && p.end === undefined ? { ...p, end: at } : p,
  );
  return withStatus({ ...state, stageHistory: history }, status, at);
}

/** A new journey's state. */
export function initialState(
  stage: JourneyStage,
  status: EpisodeStatus,
  at: string,
  reason?: string,
): JourneyState {
  return {
    stage,
    status,
    stageHistory: [{ stage, start: at, ...(reason ? { reason } : {}) }],
    statusHistory: [{ status, start: at }],
  };
}

/** How far ahead of our clock an event may be dated before it is treated as clock skew (the sender's clock). */
export const EVENT_CLOCK_SKEW_MS = 5 * 60_000;

/**
 * The time a stage change raised by an event is dated at: when the event happened (an HL7 EVN-2, a visit's
 * end), not when Careway processed it, so a replayed or delayed feed still measures time in stage correctly.
 * - no (or an unreadable) event time: `now`;
 * - in the future beyond the clock-skew allowance: `now` (a period must not start after it was recorded);
 * - before the current stage's (or status's) start: that start. A late event for something that happened
 *   while the journey was in an earlier stage cannot be placed back in time without rewriting the history
 *   that followed; dating it at the current stage's start keeps the periods ordered and non-overlapping
 *   (the current stage simply lasts zero time) instead of producing a period that ends before it starts.
 */
export function eventDate(
  state: JourneyState,
  occurred: string | undefined,
  now: string,
  skewMs = EVENT_CLOCK_SKEW_MS,
): string {
  const nowMs = Date.parse(now);
  const ms = occurred ? Date.parse(occurred) : NaN;
  if (!occurred || Number.isNaN(ms) || Number.isNaN(nowMs)) return now;
  if (ms > nowMs + skewMs) return now;
  const floors = [state.stageHistory.at(-1)?.start, state.statusHistory.at(-1)?.start].filter(
    (s): s is string => !!s && !Number.isNaN(Date.parse(s)),
  );
  const floor = floors.sort((a, b) => Date.parse(b) - Date.parse(a))[0];
  if (floor && ms < Date.parse(floor)) return floor;
  // Past the allowance is `now`; within it, still never later than `now`.
  return ms > nowMs ? now : occurred;
}
