/**
 * Queue `slot-holds`: one delayed job per held Slot, due at the hold's expiry. The job carries ids only (Slot, hold).
 * Releasing re-reads the Slot under its lock and frees it only if the same hold still stands, so a hold
 * that was booked, or replaced by a newer one, is left alone; a replayed job changes nothing.
 * An expired waitlist offer hands the Slot back to the waitlist for the next patient in the same round.
 */
import type { Queue, Worker } from 'bullmq';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import type { SchedulingDeps } from './context.js';
import { releaseHold } from './booking.js';

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

export async function exec(data: HoldJob, deps: SchedulingDeps): Promise<'released' | 'stale'> {
  const released = await releaseHold(deps, data.slotId, data.holdId);
  if (!released) return 'stale';
  if (released.offer) {
    deps.metrics?.expired();
    if (released.round) await deps.slotFreed(data.slotId, released.round, data.holdId);
  }
  return 'released';
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
