/**
 * Queue `no-show-sweep`: a BullMQ job scheduler runs the sweep every NOSHOW_SWEEP_INTERVAL. One scheduler
 * id, so several Careway instances share one schedule instead of sweeping N times; it is registered again
 * when Redis has lost it (queues/schedulers.ts).
 *
 * The same sweep frees Slots whose hold has expired: the hold's expiry is on the Slot itself (the `slot-hold`
 * extension), so a release job Redis lost (a restart without persistence) does not leave a Slot held.
 */
import type { Queue, Worker } from 'bullmq';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import type { SchedulingDeps } from './context.js';
import { sweepExpiredHolds, sweepNoShows } from './booking.js';
import { keepScheduler, type SchedulerLog } from '../queues/schedulers.js';

export const NOSHOW_QUEUE = QUEUES.noShowSweep;

export interface NoShowQueue {
  readonly queue: Queue;
  readonly worker: Worker;
  start(everyMs: number, log?: SchedulerLog): Promise<void>;
}

export function init(queues: QueueRegistry, deps: () => SchedulingDeps): NoShowQueue {
  const { queue, worker } = queues.open(NOSHOW_QUEUE, async () => ({
    released: (await sweepExpiredHolds(deps())).length,
    marked: (await sweepNoShows(deps())).length,
  }));
  return {
    queue,
    worker,
    async start(everyMs, log): Promise<void> {
      await keepScheduler(queue, 'no-show-sweep', {
        every: everyMs,
        jobName: 'sweep',
        ...(log ? { log } : {}),
      });
    },
  };
}
