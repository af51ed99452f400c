/**
 * Every queue Careway runs, its name and its options, in one table (read by the queue registry). The worker files
 * name their queue from `QUEUES`; the options that a site tunes (attempts, concurrency, partitions) come from
 * the config. Retention: completed jobs are kept as long as something relies on them (the HL7 dedupe record, a
 * reminder's "already sent" answer), failed ones long enough to be looked into.
 */
import type { Config } from '../config/config.js';
import type { QueueSpec } from './registry.js';

export const QUEUES = {
  hl7Inbound: 'hl7-inbound',
  hl7Outbound: 'hl7-outbound',
  reminders: 'reminders',
  reminderWriteBacks: 'reminder-writebacks',
  reminderPlans: 'reminder-plans',
  journeyEvents: 'journey-events',
  reminderSweep: 'reminder-sweep',
  slotHolds: 'slot-holds',
  waitlistOffers: 'waitlist-offers',
  noShowSweep: 'no-show-sweep',
  carePlanSweep: 'care-plan-sweep',
  referralStatus: 'referral-status',
  auditEvents: 'audit-events',
} as const;

/**
 * Worker lock settings for the reminder and write-back queues: a worker that dies mid-job (kill -9) loses its
 * lock within 15 s, and another takes the job over at the next stalled check (every 5 s). The ledger and the
 * conditional creates keep a takeover from doing anything twice.
 */
const QUICK_TAKEOVER = { lockDuration: 15_000, stalledInterval: 5_000 } as const;

const DAY_S = 86400;
const backoff = (delay: number) => ({ type: 'exponential', delay }) as const;

export function queueSpecs(config: Config): Record<string, QueueSpec> {
  return {
    [QUEUES.hl7Inbound]: {
      purpose: 'HL7 v2 messages received, sealed, written to FHIR in per-patient order',
      // Completed jobs are kept a week: they are the dedupe record for resends and the replay source.
      job: {
        attempts: 8,
        backoff: backoff(1000),
        removeOnComplete: { age: 7 * DAY_S },
        removeOnFail: { age: 30 * DAY_S },
      },
      // One worker per partition, one job at a time: one patient's messages in arrival order. A job whose
      // process died is taken over quickly (the partition waits for it: inbound-worker.ts), and a death is
      // not the message's fault: with kills every minute during a FHIR outage the job at a partition's head
      // stalls several times, and BullMQ's default (1) failed it for good after the second (chaos suite).
      // A message that kills the process every time still stops, after 20.
      worker: { concurrency: 1, ...QUICK_TAKEOVER, maxStalledCount: 20 },
      partitions: config.hl7.partitions,
      dead: 'hl7-dead',
    },
    [QUEUES.hl7Outbound]: {
      purpose: 'Careway’s appointment changes sent to the EHR as SIU, in per-patient order, until it ACKs',
      // Completed jobs are kept a month: their ids (appointment, version, trigger) keep a change from being
      // sent twice, and they are the outbound message log. The worker retries an unanswered message in place
      // (keeping each patient's order); BullMQ's attempts only come into play after a shutdown cut one short.
      job: {
        attempts: config.hl7Outbound?.attempts ?? 12,
        backoff: backoff(config.hl7Outbound?.backoffMs ?? 2000),
        removeOnComplete: { age: 30 * DAY_S },
        removeOnFail: { age: 30 * DAY_S },
      },
      // One worker per partition, one message at a time: one patient's changes reach the EHR in order.
      worker: { concurrency: 1 },
      partitions: config.hl7Outbound?.partitions ?? 4,
      dead: 'hl7-outbound-dead',
    },
    [QUEUES.reminders]: {
      purpose: 'reminders and one-off notifications, sent at their time on the patient’s channel',
      job: {
        attempts: config.reminders.attempts,
        backoff: backoff(2000),
        removeOnComplete: { age: 30 * DAY_S },
        removeOnFail: { age: 90 * DAY_S },
      },
      worker: { concurrency: config.reminders.concurrency, ...QUICK_TAKEOVER },
      dead: 'reminders-dead',
    },
    [QUEUES.reminderWriteBacks]: {
      purpose: 'the Communication of each send, written back to FHIR in batches',
      // Kept a day so a send re-run meanwhile finds its write-back already queued (same job id).
      job: {
        attempts: 10,
        backoff: backoff(2000),
        removeOnComplete: { age: DAY_S },
        removeOnFail: { age: 90 * DAY_S },
      },
      // Many in flight per process: they wait together for one transaction (WriteBackBatch's lane).
      worker: { concurrency: 200, ...QUICK_TAKEOVER },
      dead: 'reminder-writebacks-dead',
    },
    [QUEUES.reminderPlans]: {
      purpose: 'an Appointment changed: its reminders are planned again',
      job: {
        attempts: 8,
        backoff: backoff(1000),
        removeOnComplete: { count: 5000 },
        removeOnFail: { age: 30 * DAY_S },
      },
      worker: { concurrency: 4 },
      dead: 'reminder-plans-dead',
    },
    [QUEUES.journeyEvents]: {
      purpose: 'a resource changed on the FHIR server that may move a journey',
      job: {
        attempts: 8,
        backoff: backoff(1000),
        removeOnComplete: { count: 5000 },
        removeOnFail: { age: 30 * DAY_S },
      },
      worker: { concurrency: 4 },
      dead: 'journey-events-dead',
    },
    [QUEUES.reminderSweep]: {
      purpose: 'every REMINDER_SWEEP_INTERVAL: changes made straight on the FHIR server',
      job: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
      worker: { concurrency: 1 },
    },
    [QUEUES.slotHolds]: {
      purpose: 'a held Slot is released at the hold’s expiry unless it was booked',
      job: {
        attempts: 10,
        backoff: backoff(1000),
        removeOnComplete: { age: DAY_S },
        removeOnFail: { age: 30 * DAY_S },
      },
      worker: { concurrency: 4 },
      dead: 'slot-holds-dead',
    },
    [QUEUES.waitlistOffers]: {
      purpose: 'a freed Slot is offered to the next patient on the waitlist',
      job: {
        attempts: 8,
        backoff: backoff(1000),
        removeOnComplete: { age: 7 * DAY_S },
        removeOnFail: { age: 30 * DAY_S },
      },
      worker: { concurrency: 2 },
      dead: 'waitlist-offers-dead',
    },
    [QUEUES.noShowSweep]: {
      purpose: 'every NOSHOW_SWEEP_INTERVAL: past appointments nobody arrived for',
      job: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
      worker: { concurrency: 1 },
    },
    [QUEUES.carePlanSweep]: {
      purpose:
        'every CAREPLAN_SWEEP_INTERVAL: overdue care-plan activities become Tasks, done ones close them',
      job: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
      worker: { concurrency: 1 },
    },
    [QUEUES.referralStatus]: {
      purpose: 'a referral’s triage changed: the referrer is told',
      job: {
        attempts: config.referrals.callbackAttempts,
        backoff: backoff(config.referrals.callbackBackoffMs),
        removeOnComplete: { count: 1000 },
        removeOnFail: { count: 5000 },
      },
      worker: { concurrency: 4 },
      dead: 'referral-status-dead',
    },
    [QUEUES.auditEvents]: {
      purpose: 'every AuditEvent (sealed), written to the audit server in transaction Bundles',
      // Kept an hour once written: a re-enqueued event (same id) is not written twice meanwhile.
      job: {
        attempts: 10,
        backoff: backoff(2000),
        removeOnComplete: { age: 3600 },
        removeOnFail: { age: 30 * DAY_S },
      },
      // Many in flight per process: they wait together for one Bundle (audit-worker.ts).
      worker: { concurrency: 500, ...QUICK_TAKEOVER },
      dead: 'audit-events-dead',
    },
  };
}
