/**
 * Queue `reminder-sweep`: the reconciliation sweep. Every REMINDER_SWEEP_INTERVAL it lists the Appointments
 * changed on the FHIR server since the last sweep (with a minute of overlap) and queues a re-plan for each, so
 * an edit made directly on the server (by the EHR) re-plans its reminders even when the REST-hook delivery was
 * lost. CarePlans changed since then get their recurring check-ups synced the same way. The last sweep time is
 * kept in Redis.
 *
 * It is also the safety net for journey events: the Appointments, CarePlans and Encounters changed since then
 * that may move a journey (journey/resource-events.ts EVENT_CANDIDATES: fulfilled, active or completed,
 * finished outpatient) are queued on `journey-events` by id, where the events are decided on a fresh read. A
 * change the REST-hook already delivered is seen twice; the journey rules make the second one a no-op.
 */
import type { Queue, Worker } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import type { Appointment, CarePlan } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import {
  EVENT_CANDIDATES,
  EVENT_RESOURCE_TYPES,
  type EventResourceType,
} from '../journey/resource-events.js';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import { keepScheduler, type SchedulerLog } from '../queues/schedulers.js';

export const REMINDER_SWEEP_QUEUE = QUEUES.reminderSweep;

export interface SweepQueue {
  readonly queue: Queue;
  readonly worker: Worker;
  /** Registers the job scheduler, and registers it again whenever Redis has lost it (queues/schedulers.ts). */
  start(everyMs: number, log?: SchedulerLog): Promise<void>;
}

/** What the sweep hands each changed resource to, besides the Appointment re-plan. */
export interface SweepHooks {
  /** Re-syncs a changed CarePlan's recurring check-ups. */
  readonly syncCarePlan?: (id: string) => Promise<void>;
  /** Queues a resource that may raise a journey event (ids only). */
  readonly journeyEvent?: (type: EventResourceType, id: string) => Promise<void>;
}

export async function sweep(
  fhir: FhirPort,
  redis: Redis | Cluster,
  key: string,
  replan: (id: string) => Promise<void>,
  nowMs = Date.now(),
  hooks: SweepHooks = {},
): Promise<number> {
  const last = Number((await redis.get(key)) ?? nowMs - 86400_000);
  const since = new Date(last - 60_000).toISOString();
  const changed = await fhir.searchAll<Appointment>(
    'Appointment',
    { _lastUpdated: `gt${since}`, _elements: 'id', _count: 200 },
    { noCache: true, maxPages: 50 },
  );
  for (const a of changed) await replan(a.id!);
  let plans = 0;
  if (hooks.syncCarePlan) {
    const changedPlans = await fhir.searchAll<CarePlan>(
      'CarePlan',
      { _lastUpdated: `gt${since}`, _elements: 'id', _count: 200 },
      { noCache: true, maxPages: 50 },
    );
    for (const p of changedPlans) await hooks.syncCarePlan(p.id!);
    plans = changedPlans.length;
  }
  let journeyCandidates = 0;
  if (hooks.journeyEvent) {
    // A search per type narrowed to candidates, so bookings and inpatient stays cost nothing more here.
    for (const type of EVENT_RESOURCE_TYPES) {
      const found = await fhir.searchAll(
        type,
        { ...EVENT_CANDIDATES[type], _lastUpdated: `gt${since}`, _elements: 'id', _count: 200 },
        { noCache: true, maxPages: 50 },
      );
      for (const r of found) await hooks.journeyEvent(type, r.id!);
      journeyCandidates += found.length;
    }
  }
  await redis.set(key, String(nowMs));
  return changed.length + plans + journeyCandidates;
}

export function init(
  queues: QueueRegistry,
  /** Where the sweep keeps the time of its last run. */
  redis: Redis | Cluster,
  deps: {
    fhir: FhirPort;
    prefix: string;
    replan: (id: string) => Promise<void>;
    syncCarePlan: (id: string) => Promise<void>;
    journeyEvent: (type: EventResourceType, id: string) => Promise<void>;
  },
): SweepQueue {
  const key = `${deps.prefix}:reminder-sweep:last`;
  const { queue, worker } = queues.open(REMINDER_SWEEP_QUEUE, async () => ({
    replanned: await sweep(deps.fhir, redis, key, deps.replan, Date.now(), {
      syncCarePlan: deps.syncCarePlan,
      journeyEvent: deps.journeyEvent,
    }),
  }));
  return {
    queue,
    worker,
    async start(everyMs, log): Promise<void> {
      await keepScheduler(queue, 'reminder-sweep', {
        every: everyMs,
        jobName: 'sweep',
        ...(log ? { log } : {}),
      });
    },
  };
}
