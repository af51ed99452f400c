/**
 * Queue `no-show-sweep`: a BullMQ job scheduler runs the sweep every NOSHOW_SWEEP_INTERVAL. One scheduler
 * id, so several Careway instances share one schedule instead of sweeping N times.
 */
import type { Queue, Worker } from 'bullmq';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import type { SchedulingDeps } from './context.js';
import { sweepNoShows } from './booking.js';

export const NOSHOW_QUEUE = QUEUES.noShowSweep;

export interface NoShowQueue {
  readonly queue: Queue;
  readonly worker: Worker;
  start(everyMs: number): Promise<void>;
}

export function init(queues: QueueRegistry, deps: () => SchedulingDeps): NoShowQueue {
  const { queue, worker } = queues.open(NOSHOW_QUEUE, async () => ({
    marked: (await sweepNoShows(deps())).length,
  }));
  return {
    queue,
    worker,
    async start(everyMs): Promise<void> {
      await queue.upsertJobScheduler('no-show-sweep', { every: everyMs }, { name: 'sweep' });
    },
  };
}
