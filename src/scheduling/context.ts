/**
 * What every scheduling use case needs: the FHIR port, the per-key lock, the journey service, the clock,
 * configuration, and the hooks that reach the queues (hold release, waitlist offers) and the reminders.
 * Scheduling never imports BullMQ: the plugin wires these hooks to queues.
 */
import type { Reference, Resource } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { FhirError } from '../fhir/errors.js';
import type { JourneyService } from '../journey/service.js';
import { CarewayError } from '../shared/errors.js';
import type { KeyedLock } from '../shared/lock.js';
import type { Weights } from './ranking.js';

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
  /** A waitlist offer was made (its portal Communication): tell the patient on their channel. */
  offerMade?(communicationId: string, patientId: string): Promise<void>;
  /** Reminder re-planning; called after every Appointment change. */
  appointmentChanged(appointmentId: string): Promise<void>;
  readonly metrics?: SchedulingMetrics;
}

export const now = (deps: SchedulingDeps): Date => (deps.clock ?? (() => new Date()))();

/** Reads a resource or fails with a 4xx naming it (`unknown-reference` for a parameter, `not-found` for the URL). */
export async function mustRead<T extends Resource>(
  deps: SchedulingDeps,
  type: T['resourceType'],
  id: string,
  code: 'not-found' | 'unknown-reference' = 'unknown-reference',
): Promise<T> {
  try {
    return await deps.fhir.read<T>(type, id, { noCache: true });
  } catch (e) {
    if (e instanceof FhirError && e.isNotFound) throw new CarewayError(code, `${type}/${id} does not exist`);
    throw e;
  }
}

/**
 * Runs `attempt` again when the FHIR server reports a version conflict (412/409 on If-Match): someone wrote
 * between our read and our write; the attempt re-reads and decides again, so nothing is overwritten.
 */
export async function retryOnConflict<T>(attempt: () => Promise<T>, max = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (e) {
      if (!(e instanceof FhirError && e.isConflict) || i >= max) {
        if (e instanceof FhirError && e.isConflict)
          throw new CarewayError('concurrent-update', 'the slots kept changing while booking; try again', {
            cause: e,
          });
        throw e;
      }
    }
  }
}

export function versionOf(r: Resource): string | undefined {
  return r.meta?.versionId;
}

export const ref = (r: Resource): Reference => ({ reference: `${r.resourceType}/${r.id ?? ''}` });
