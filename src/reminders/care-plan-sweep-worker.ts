/**
 * Queue `care-plan-sweep`: every CAREPLAN_SWEEP_INTERVAL the overdue activities of active CarePlans become
 * `care-plan-activity` Tasks for the care team, and the Tasks of activities no longer overdue are closed
 * (journey/care-plan-tasks.ts). One job scheduler id, so several Careway instances share one schedule; it is
 * registered again when Redis has lost it (queues/schedulers.ts). Sweeps also hold one lock, so a sweep run by
 * hand (the demo) never overlaps the scheduled one: HAPI's conditional create is not safe under parallel load.
 * The job carries nothing: each run reads the FHIR server afresh.
 */
import type { Queue, Worker } from 'bullmq';
import type { FhirPort } from '../fhir/client.js';
import type { KeyedLock } from '../shared/lock.js';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import { keepScheduler, type SchedulerLog } from '../queues/schedulers.js';
import { sweepCarePlanActivities, type CarePlanSweepResult } from '../journey/care-plan-tasks.js';

export const CARE_PLAN_SWEEP_QUEUE = QUEUES.carePlanSweep;

export interface CarePlanSweepQueue {
  readonly queue: Queue;
  readonly worker: Worker;
  /** One sweep now, in this process (serialised with the scheduled ones). */
  run(now?: Date): Promise<CarePlanSweepResult>;
  start(everyMs: number, log?: SchedulerLog): Promise<void>;
}

export function init(queues: QueueRegistry, deps: { fhir: FhirPort; lock: KeyedLock }): CarePlanSweepQueue {
  const run = (now?: Date): Promise<CarePlanSweepResult> =>
    deps.lock.withLock('care-plan-sweep', () => sweepCarePlanActivities(deps.fhir, now ? { now } : {}));
  const { queue, worker } = queues.open(CARE_PLAN_SWEEP_QUEUE, async () => ({ ...(await run()) }));
  return {
    queue,
    worker,
    run,
    async start(everyMs, log): Promise<void> {
      await keepScheduler(queue, 'care-plan-sweep', {
        every: everyMs,
        jobName: 'sweep',
        ...(log ? { log } : {}),
      });
    },
  };
}
