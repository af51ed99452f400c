/**
 * What the reminder queue's jobs carry: ids only (appointment, offset, start, due time; or the notification's
 * kind, recipient and subject resource), never PHI. Their ids and ledger keys are derived here, in one place.
 */
import type { TemplateKind } from './templates.js';

export interface ReminderJob {
  readonly appointmentId: string;
  readonly offset: string;
  readonly startMs: number;
  /** When it was planned to go (BullMQ's `delay` reads 0 inside the processor). */
  readonly dueAt: number;
}

/** A one-off notification on the patient's channel about a resource (an offer, a new message, a survey…). */
export interface NotifyJob {
  readonly kind: Exclude<TemplateKind, 'reminder'>;
  /** `Patient/{id}` or `Practitioner/{id}`. */
  readonly recipient: string;
  /** The resource it is about, `Type/id`; with the kind (and context) it makes the notification's identity. */
  readonly about: string;
  /** Scopes the identity further: education is sent once per journey (`EpisodeOfCare/{id}`). */
  readonly context?: string;
  /** One occurrence of a recurring notification (a check-up scheduler's run). */
  readonly occurrence?: string;
}

export const notifyKey = (j: NotifyJob): string =>
  ['notify', j.kind, j.about, j.context ?? '', j.occurrence ?? ''].join('|');
/** A ledger key as a BullMQ job id (which must not hold `:` and reads best without the key's separators). */
export const jobIdOf = (key: string): string => key.replace(/[|/:#@]/g, '-');
export const notifyJobId = (j: NotifyJob): string => jobIdOf(notifyKey(j));

/**
 * How far ahead of its due time a reminder's job is queued. BullMQ hands out a delayed job tens of milliseconds
 * after its time (bench P4's raw comparator: p50 ≈ 50 ms, p99 ≈ 100 ms), so a job queued exactly on time sends
 * that late. Queued a lead ahead, the worker re-reads and claims early, then waits for the due instant and sends
 * on it (never before: the plan's quiet hours hold to the millisecond).
 */
export const REMINDER_LEAD_MS = 150;

/** The BullMQ delay for a reminder job queued now. */
export const reminderDelay = (j: Pick<ReminderJob, 'dueAt'>, nowMs = Date.now()): number =>
  Math.max(0, j.dueAt - REMINDER_LEAD_MS - nowMs);

export const reminderJobId = (j: Pick<ReminderJob, 'appointmentId' | 'offset' | 'startMs'>): string =>
  `rem-${j.appointmentId}-${j.offset}-${j.startMs}`;
export const reminderKey = (j: Pick<ReminderJob, 'appointmentId' | 'offset' | 'startMs'>): string =>
  `${j.appointmentId}|${j.offset}|${j.startMs}`;
