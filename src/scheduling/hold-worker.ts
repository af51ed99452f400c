/**
 * Queue `slot-holds`: one delayed job per held Slot, due at the hold's expiry. The job carries ids only (Slot, hold).
 * Releasing re-reads the Slot under its lock and frees it only if the same hold still stands, so a hold
 * that was booked, or replaced by a newer one, is left alone; a replayed job changes nothing.
 * An expired waitlist offer hands the Slot back to the waitlist for the next patient in the same round.
 */
import type { Queue, Worker } from 'bullmq';
import type { RedisConnections } from '../queues/connections.js';
import { withDeadLetters } from '../queues/dead-letter.js';
import type { SchedulingDeps } from './context.js';
import { releaseHold } from './booking.js';

export const SLOT_HOLDS_QUEUE = 'slot-holds';

export interface HoldJob {
  readonly slotId: string;
  readonly holdId: string;
}

export interface HoldQueue {
  readonly queue: Queue<HoldJob>;
  readonly worker: Worker<HoldJob>;
  schedule(slotId: string, holdId: string, atMs: number): Promise<void>;
}

export async function exec(data: HoldJob, deps: SchedulingDeps): Promise<'released' | 'stale'> {
  const released = await releaseHold(deps, data.slotId, data.holdId);
  if (!released) return 'stale';
  if (released.offer) {
    deps.metrics?.expired();
    if (released.round) await deps.slotFreed(data.slotId, released.round, data.holdId);
  }
  return 'released';
}

export function init(conns: RedisConnections, deps: () => SchedulingDeps): HoldQueue {
  const { queue, worker } = withDeadLetters<HoldJob>(
    conns,
    SLOT_HOLDS_QUEUE,
    (job) => exec(job.data, deps()),
    {
      job: {
        attempts: 10,
        backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: { age: 86400 },
        removeOnFail: { age: 30 * 86400 },
      },
      worker: { concurrency: 4 },
    },
  );
  return {
    queue,
    worker,
    async schedule(slotId, holdId, atMs): Promise<void> {
      await queue.add(
        'release',
        { slotId, holdId },
        { jobId: `hold-${holdId}-${slotId}`, delay: Math.max(0, atMs - Date.now()) },
      );
    },
  };
}
