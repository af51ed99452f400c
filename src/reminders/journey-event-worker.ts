/**
 * Queue `journey-events`: "this Appointment, CarePlan or Encounter changed on the FHIR server, see whether it
 * moves its journey". Fed by the REST-hook receiver and the reconciliation sweep (the two ways Careway hears
 * of edits made directly on the server); the journey domain decides (journey/resource-events.ts) and applies
 * (journey/raise-events.ts).
 *
 * Invariants:
 * - Job data is the resource's type and id, and which feed saw it: never the resource (no PHI in Redis).
 * - `exec` re-reads the resource as it is now, so a stale, repeated or out-of-order job acts on the current
 *   version; the journey rules make a repeated event a no-op, so replays write nothing.
 * - No coalescing (as `reminder-plans`): a change made while a job runs must not be dropped, and an extra job
 *   costs one read.
 */
import type { Queue, Worker } from 'bullmq';
import type { Resource } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { readIfExists } from '../fhir/reads.js';
import {
  raiseResourceEvents,
  type RaisedEvent,
  type ResourceEventJourneys,
} from '../journey/raise-events.js';
import type { EventResourceType } from '../journey/resource-events.js';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';

export const JOURNEY_EVENTS_QUEUE = QUEUES.journeyEvents;

export interface JourneyEventJob {
  readonly resourceType: EventResourceType;
  readonly id: string;
  /** Which feed saw the change; it goes into the Provenance's trigger display. */
  readonly source: 'rest-hook' | 'sweep';
}

export interface JourneyEventQueue {
  readonly queue: Queue<JourneyEventJob>;
  readonly dead: Queue;
  readonly worker: Worker<JourneyEventJob>;
  add(job: JourneyEventJob): Promise<void>;
}

export interface JourneyEventDeps {
  readonly fhir: FhirPort;
  readonly journeys: ResourceEventJourneys;
}

/** Re-reads the resource and raises the events it implies now; a resource deleted meanwhile raises none. */
export async function exec(job: JourneyEventJob, deps: JourneyEventDeps): Promise<RaisedEvent[]> {
  const resource = await readIfExists<Resource>(deps.fhir, job.resourceType, job.id);
  return resource ? raiseResourceEvents(deps.journeys, [resource], job.source) : [];
}

export function init(queues: QueueRegistry, deps: () => JourneyEventDeps): JourneyEventQueue {
  const { queue, dead, worker } = queues.openWithDeadLetters<JourneyEventJob>(
    JOURNEY_EVENTS_QUEUE,
    // The return value (ids, events and outcomes) is kept with the completed job, for the dashboard.
    async (job) => ({ raised: await exec(job.data, deps()) }),
  );
  return {
    queue,
    dead,
    worker,
    async add(job): Promise<void> {
      // Only the ids: a caller that holds the resource (the hook's body) must not hand it on.
      await queue.add('journey-event', { resourceType: job.resourceType, id: job.id, source: job.source });
    },
  };
}
