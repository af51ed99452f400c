/**
 * Queue `waitlist-offers`: a freed Slot (ids only: the Slot and the round) is offered to the waitlist.
 * The job id is the round plus what ended the previous offer, so the same freeing is offered once however
 * often it is reported, and an expired offer makes exactly one next offer.
 */
import type { Queue, Worker } from 'bullmq';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import type { SchedulingDeps } from './context.js';
import { offerSlot, type OfferOutcome } from './waitlist.js';

export const WAITLIST_QUEUE = QUEUES.waitlistOffers;

export interface OfferJob {
  readonly slotId: string;
  readonly round: string;
}

export interface WaitlistQueue {
  readonly queue: Queue<OfferJob>;
  readonly worker: Worker<OfferJob>;
  add(slotId: string, round: string, after?: string): Promise<void>;
}

export function init(queues: QueueRegistry, deps: () => SchedulingDeps): WaitlistQueue {
  const { queue, worker } = queues.openWithDeadLetters<OfferJob>(
    WAITLIST_QUEUE,
    (job): Promise<OfferOutcome> => offerSlot(deps(), job.data.slotId, job.data.round),
  );
  return {
    queue,
    worker,
    async add(slotId, round, after): Promise<void> {
      await queue.add(
        'offer',
        { slotId, round },
        { jobId: `offer-${round}${after ? `-after-${after}` : ''}` },
      );
    },
  };
}
