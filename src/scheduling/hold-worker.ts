/**
 * Queue `slot-holds`: one delayed job per held Slot, due at the hold's expiry. The job carries ids only (Slot, hold).
 * Releasing re-reads the Slot under its lock and frees it only if the same hold still stands, so a hold
 * that was booked, or replaced by a newer one, is left alone; a replayed job changes nothing.
 * An expired waitlist offer hands the Slot back to the waitlist for the next patient in the same round.
 * Redis may lose these jobs (a restart without persistence): the hold carries its expiry on the Slot, so
 * `$hold`/`$book` treat an expired hold as free and the no-show sweep frees it (booking.ts sweepExpiredHolds).
 */
import type { Queue, Worker } from 'bullmq';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import type { SchedulingDeps } from './context.js';
import { expireHold } from './booking.js';

export const SLOT_HOLDS_QUEUE = QUEUES.slotHolds;

export interface HoldJob {
  readonly slotId: string;
  readonly holdId: string;
}

export interface HoldQueue {
  readonly queue: Queue<HoldJob>;
  readonly worker: Worker<HoldJob>;
  schedule(slotId: string, holdId: string, atMs: number): Promise<void>;
}

export function exec(data: HoldJob, deps: SchedulingDeps): Promise<'released' | 'stale'> {
  return expireHold(deps, data.slotId, data.holdId);
}

export function init(queues: QueueRegistry, deps: () => SchedulingDeps): HoldQueue {
  const { queue, worker } = queues.openWithDeadLetters<HoldJob>(SLOT_HOLDS_QUEUE, (job) =>
    exec(job.data, deps()),
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
