/**
 * Queue `no-show-sweep`: a BullMQ job scheduler runs the sweep every NOSHOW_SWEEP_INTERVAL. One scheduler
 * id, so several Careway instances share one schedule instead of sweeping N times.
 */
import type { Queue, Worker } from 'bullmq';
import type { RedisConnections } from '../queues/connections.js';
import type { SchedulingDeps } from './context.js';
import { sweepNoShows } from './booking.js';

export const NOSHOW_QUEUE = 'no-show-sweep';

export interface NoShowQueue {
  readonly queue: Queue;
  readonly worker: Worker;
  start(everyMs: number): Promise<void>;
}

export function init(conns: RedisConnections, deps: () => SchedulingDeps): NoShowQueue {
  const queue = conns.queue(NOSHOW_QUEUE, {
    defaultJobOptions: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
  });
  const worker = conns.worker(NOSHOW_QUEUE, async () => ({ marked: (await sweepNoShows(deps())).length }), {
    concurrency: 1,
  });
  return {
    queue,
    worker,
    async start(everyMs): Promise<void> {
      await queue.upsertJobScheduler('no-show-sweep', { every: everyMs }, { name: 'sweep' });
    },
  };
}
