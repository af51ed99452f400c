/**
 * What every scheduling use case needs: the FHIR port, the per-key lock, the journey service, the clock,
 * configuration, and the hooks that reach the queues (hold release, waitlist offers) and the reminders.
 * Scheduling never imports BullMQ: the plugin wires these hooks to queues.
 */
import type { Appointment, Reference, Resource } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { retryOnConflict } from '../fhir/conflicts.js';
import type { JourneyService } from '../journey/service.js';
import type { KeyedLock } from '../shared/lock.js';
import type { Weights } from './ranking.js';
import type { OutsideChannel } from './offer-tasks.js';

export interface SchedulingMetrics {
  offered(): void;
  accepted(): void;
  expired(): void;
  noShow(): void;
}

export interface SchedulingDeps {
  readonly fhir: FhirPort;
  readonly lock: KeyedLock;
  readonly journeys: JourneyService;
  readonly clock?: () => Date;
  readonly weights: Weights;
  readonly holdMs: number;
  readonly offerMs: number;
  readonly noShowGraceMs: number;
  readonly defaultZone: string;
  /** Releases the hold at its expiry unless it was confirmed (a delayed job). */
  scheduleRelease(slotId: string, holdId: string, atMs: number): Promise<void>;
  /**
   * A Slot became free: the waitlist gets a chance at it. `round` names this freeing; `after` names the
   * offer that just expired, when the Slot moves on to the next patient in the same round.
   */
  slotFreed(slotId: string, round: string, after?: string): Promise<void>;
  /**
   * The channels besides the portal this site can tell patients on (offer-tasks.ts): an offer to a patient
   * reachable on none of them gets a Task for staff. Undefined: no such Tasks.
   */
  readonly outsideChannels?: ReadonlySet<OutsideChannel>;
  /** A waitlist offer was made (its portal Communication): tell the patient on their channel. */
  offerMade?(communicationId: string, patientId: string): Promise<void>;
  /** Reminder re-planning; called after every Appointment change. */
  appointmentChanged(appointmentId: string): Promise<void>;
  /**
   * A change Careway itself made (a booking, a reschedule, a cancellation, a no-show), for systems that keep
   * their own copy (the EHR, over HL7). Never called for changes that came from elsewhere (HL7 SIU, edits made
   * on the FHIR server): those systems already know, and echoing them back would loop.
   */
  appointmentMade?(made: AppointmentMade): Promise<void>;
  readonly metrics?: SchedulingMetrics;
}

/** What `appointmentMade` is told: ids, the version the change wrote, and what kind of change it was. */
export interface AppointmentMade {
  readonly appointmentId: string;
  readonly versionId: string;
  readonly patientId: string;
  readonly change: 'booked' | 'rescheduled' | 'cancelled' | 'noshow';
}

/** Reports a change Careway made, from the Appointment as written (read back after the write). */
export async function reportMade(
  deps: SchedulingDeps,
  a: Appointment,
  change: AppointmentMade['change'],
): Promise<void> {
  const patient = a.participant.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor?.reference;
  if (!deps.appointmentMade || !a.id || !patient) return;
  await deps.appointmentMade({
    appointmentId: a.id,
    versionId: a.meta?.versionId ?? '0',
    patientId: patient.slice('Patient/'.length),
    change,
  });
}

export const now = (deps: SchedulingDeps): Date => (deps.clock ?? (() => new Date()))();

/**
 * `retryOnConflict` with scheduling's answer when it gives up: someone wrote a Slot (or the Appointment)
 * between our read and our write five times over, and the caller gets a 409 to try again.
 */
export function retryOnSlotConflict<T>(attempt: () => Promise<T>): Promise<T> {
  return retryOnConflict(attempt, { exhausted: 'the slots kept changing while booking; try again' });
}

export function versionOf(r: Resource): string | undefined {
  return r.meta?.versionId;
}

export const ref = (r: Resource): Reference => ({ reference: `${r.resourceType}/${r.id ?? ''}` });
