/**
 * Queue `reminders`: one delayed job per planned reminder, due when it should go out. Job data is ids only
 * (appointment, offset, start, due time); the job id repeats them, so planning the same reminder twice queues
 * it once. The worker re-reads the Appointment before sending (service.ts), and the ledger keeps a reminder
 * from going out twice when a job runs again after a crash or a stall.
 *
 * A provider that is down or throttling is retried with backoff (REMINDER_ATTEMPTS); the last attempt writes a
 * not-done Communication and the job goes to `reminders-dead` with the reason.
 */
import { randomUUID } from 'node:crypto';
import { DelayedError, type Queue, type Worker } from 'bullmq';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import type { Recurring } from './care-plans.js';
import { LEASE_MS, LedgerBusyError } from './ledger.js';
import { reminderDelay } from './jobs.js';
import {
  notifyJobId,
  reminderJobId,
  type NotifyJob,
  type ReminderJob,
  type ReminderService,
  type SendOutcome,
} from './service.js';

export const REMINDERS_QUEUE = QUEUES.reminders;

export interface ReminderQueue {
  readonly queue: Queue<ReminderJob>;
  readonly dead: Queue;
  readonly worker: Worker<ReminderJob>;
  schedule(job: ReminderJob): Promise<void>;
  notify(job: NotifyJob, delayMs?: number): Promise<void>;
  remove(jobId: string): Promise<void>;
  upsertRecurring(r: Recurring): Promise<void>;
  removeRecurring(id: string): Promise<void>;
}

export function init(queues: QueueRegistry, service: () => ReminderService): ReminderQueue {
  // The ledger owner: this process, so a claim left by a crashed process is told apart from our own retry.
  const processId = randomUUID();
  const { queue, dead, worker } = queues.openWithDeadLetters<ReminderJob>(
    REMINDERS_QUEUE,
    async (job, token): Promise<SendOutcome> => {
      const owner = `${processId}-${job.id ?? ''}`;
      const final = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      try {
        // Two kinds of job share the queue (its retries and dead letters): reminders and one-off notifications.
        if (job.name !== 'notify') return await service().send(job.data, owner, final);
        const data = job.data as unknown as NotifyJob;
        // A job scheduler's run (a recurring check-up) is one occurrence: its id names the run.
        return await service().notify(
          job.repeatJobKey ? { ...data, occurrence: job.id ?? String(job.timestamp) } : data,
          owner,
          final,
        );
      } catch (e) {
        // Someone else holds the send (or died holding it): wait out the lease without using up an attempt.
        if (e instanceof LedgerBusyError && token) {
          await job.moveToDelayed(Date.now() + LEASE_MS / 2, token);
          throw new DelayedError();
        }
        throw e;
      }
    },
  );
  return {
    queue,
    dead,
    worker,
    async schedule(job): Promise<void> {
      await queue.add('remind', job, {
        jobId: reminderJobId(job),
        delay: reminderDelay(job),
      });
    },
    async notify(job, delayMs = 0): Promise<void> {
      await (queue as unknown as Queue<NotifyJob>).add('notify', job, {
        jobId: notifyJobId(job),
        delay: Math.max(0, delayMs),
      });
    },
    async upsertRecurring(r): Promise<void> {
      await queue.upsertJobScheduler(
        r.id,
        { every: r.everyMs, ...(r.startMs && r.startMs > Date.now() ? { startDate: r.startMs } : {}) },
        { name: 'notify', data: r.job as unknown as ReminderJob },
      );
    },
    async removeRecurring(id): Promise<void> {
      await queue.removeJobScheduler(id);
    },
    async remove(jobId): Promise<void> {
      const job = await queue.getJob(jobId);
      const state = job ? await job.getState() : undefined;
      if (job && (state === 'delayed' || state === 'waiting')) await job.remove();
    },
  };
}
