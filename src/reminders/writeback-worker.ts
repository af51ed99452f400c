/**
 * Queue `reminder-writebacks`: the Communication each send attempt leaves on the FHIR server (and the planned
 * CommunicationRequest it completes), written off the send path.
 *
 * Why a queue: a reminder goes out on its minute whatever the FHIR server is doing. Writing back inside the
 * send made every send wait for a transaction, so a busy server (bench P4: HAPI's transactions slow down as its
 * database grows) made reminders late. Now a send is done once the provider accepted it and the ledger says so;
 * its write-back is a durable job here, and this worker writes many of them per transaction (WriteBackBatch),
 * one transaction in flight per process, so the write-backs keep up in bulk and the re-reads of later sends are
 * not queued behind them.
 *
 * - Job data: the reminder key (ids) and the Communication sealed with AES-256-GCM (its text names the
 *   patient), never PHI in clear.
 * - The job id is the key, so the same write-back queued twice (a send re-run after a crash) is one job; the
 *   Communication's create is conditional on the key as well, so a replay after the job is gone writes nothing.
 * - A refused write-back retries with backoff, then goes to `reminder-writebacks-dead` with the reason.
 */
import { randomUUID } from 'node:crypto';
import { UnrecoverableError, type Queue, type Worker } from 'bullmq';
import type { Communication } from 'fhir/r4.js';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import type { FhirPort } from '../fhir/client.js';
import { seal, unseal, type Sealed } from '../shared/seal.js';
import { WriteBackBatch, type WriteBack } from './send-batch.js';
import { jobIdOf } from './jobs.js';

export const REMINDER_WRITEBACKS_QUEUE = QUEUES.reminderWriteBacks;

export interface WriteBackJob {
  /** The reminder or notification key (appointment, offset, start: ids). */
  readonly key: string;
  readonly status: Communication['status'];
  readonly communication: Sealed;
}

export interface WriteBackQueue {
  readonly queue: Queue<WriteBackJob>;
  readonly dead: Queue;
  readonly worker: Worker<WriteBackJob>;
  add(item: WriteBack): Promise<void>;
}

export function init(
  queues: QueueRegistry,
  fhir: FhirPort,
  key: Buffer,
  options: { maxBatch: number; yieldTo?: () => boolean },
): WriteBackQueue {
  const batch = new WriteBackBatch(fhir, {
    maxBatch: options.maxBatch,
    lanes: 1,
    ...(options.yieldTo ? { yieldTo: options.yieldTo } : {}),
  });
  const { queue, dead, worker } = queues.openWithDeadLetters<WriteBackJob>(
    REMINDER_WRITEBACKS_QUEUE,
    async (job) => {
      let communication: Communication;
      try {
        communication = JSON.parse(unseal(job.data.communication, key).toString('utf8')) as Communication;
      } catch {
        // Sealed under another key (rotated without draining the queue): no attempt can succeed.
        throw new UnrecoverableError('the write-back could not be unsealed (HL7_ENCRYPTION_KEY changed?)');
      }
      await batch.writeBack({ key: job.data.key, communication });
      return { written: job.data.status };
    },
    // The sealed Communication stays with the failed job (kept 90 days); the dead letter lists ids only.
    ({ data: { key: reminder, status }, attemptsMade }, err) => ({
      key: reminder,
      status,
      reason: err.message.slice(0, 1000),
      attempts: attemptsMade,
    }),
  );
  return {
    queue,
    dead,
    worker,
    async add(item): Promise<void> {
      const id = jobIdOf(item.key);
      await queue.add(
        'write-back',
        {
          key: item.key,
          status: item.communication.status,
          communication: seal(Buffer.from(JSON.stringify(item.communication), 'utf8'), key),
        },
        // A delivered message is written once (its key); every failed attempt has its own Communication.
        {
          jobId: item.communication.status === 'completed' ? `wb-${id}` : `wb-${id}-not-done-${randomUUID()}`,
        },
      );
    },
  };
}
