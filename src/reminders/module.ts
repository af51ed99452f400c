/**
 * The reminders and engagement area: the reminder service, its channels and templates, and the queues that
 * plan, send, write back and reconcile (`reminder-plans`, `reminders`, `reminder-writebacks`, `reminder-sweep`),
 * plus `journey-events` for edits made straight on the FHIR server, and `care-plan-sweep` (overdue care-plan
 * activities as Tasks for the care team).
 *
 * Every Appointment change anywhere in Careway reaches `enqueuePlan` (wired in areas.ts). Edits made directly on
 * the FHIR server arrive through the REST-hook Subscriptions and the sweep, and `fhirChanged` fans each out: an
 * Appointment is re-planned, and an Appointment, CarePlan or Encounter that may move its journey goes to the
 * `journey-events` queue. A patient's reply that cancels or accepts goes back to scheduling through the hooks.
 */
import { join } from 'node:path';
import { Counter } from 'prom-client';
import type { EpisodeOfCare, Resource } from 'fhir/r4.js';
import type { AreaContext } from '../area-context.js';
import type { JourneyService } from '../journey/service.js';
import { eventsForResource, type EventResourceType } from '../journey/resource-events.js';
import { projectRoot } from '../shared/paths.js';
import { ReminderService, type NotifyJob, type ReminderJobs } from './service.js';
import { Templates } from './templates.js';
import { redisLedger } from './ledger.js';
import { emailChannel } from './channels/email.js';
import { smsChannel } from './channels/sms-webhook.js';
import { portalChannel } from './channels/portal.js';
import type { Channel, ChannelKind } from './channels/channel.js';
import { init as initReminders, type ReminderQueue } from './reminder-worker.js';
import { init as initPlans, type PlanQueue } from './plan-worker.js';
import { init as initSweep, type SweepQueue } from './sweep-worker.js';
import { init as initWriteBacks, type WriteBackQueue } from './writeback-worker.js';
import { init as initJourneyEvents, type JourneyEventQueue } from './journey-event-worker.js';
import { redisLock } from '../queues/locks.js';
import { init as initCarePlanSweep, type CarePlanSweepQueue } from './care-plan-sweep-worker.js';
import { handleReply, type InboundReply, type ReplyOutcome } from './replies.js';
import { educationFor } from './care-plans.js';
import { ensureSubscriptions } from './subscription.js';

export interface RemindersHooks {
  /** A patient's reply cancels their appointment. */
  cancelAppointment(appointmentId: string, reason: string): Promise<void>;
  /** A patient's reply accepts a waitlist offer (its Communication). */
  acceptOffer(communicationId: string): Promise<void>;
}

export interface RemindersModule {
  readonly service: ReminderService;
  readonly queue: ReminderQueue;
  readonly plans: PlanQueue;
  readonly sweep: SweepQueue;
  readonly writeBacks: WriteBackQueue;
  readonly journeyEvents: JourneyEventQueue;
  /** Overdue care-plan activities as Tasks for the care team (care-plan-sweep-worker.ts). */
  readonly carePlanSweep: CarePlanSweepQueue;
  enqueuePlan(appointmentId: string): Promise<void>;
  /**
   * A resource changed on the FHIR server (REST-hook delivery). `delivered` is the body the server sent, when it
   * sent one: used only to skip resources that cannot move a journey, never stored or logged.
   */
  fhirChanged(type: EventResourceType, id: string, delivered?: Resource): Promise<void>;
  enqueueNotify(job: NotifyJob): Promise<void>;
  /** A journey entered a stage: its education goes out (once per journey and document). */
  stageEntered(episode: EpisodeOfCare, stage: string): Promise<void>;
  reply(reply: InboundReply): Promise<ReplyOutcome>;
  /** Creates the REST-hook Subscriptions (if configured) and schedules the sweeps. */
  start(): Promise<void>;
  /** Closes the channels (SMTP pools); the queues close with the registry. */
  close(): Promise<void>;
}

function channelsOf(ctx: AreaContext): Map<ChannelKind, Channel> {
  const { config } = ctx;
  const channels = new Map<ChannelKind, Channel>([['portal', portalChannel]]);
  if (config.smtpUrl && config.smtpFrom) channels.set('email', emailChannel(config.smtpUrl, config.smtpFrom));
  if (config.smsWebhookUrl && config.smsWebhookSecret)
    channels.set(
      'sms',
      smsChannel(config.smsWebhookUrl, config.smsWebhookSecret, config.reminders.smsPerSecond),
    );
  return channels;
}

/** The reminder jobs the service schedules, on the `reminders` queue, and the per-appointment plan record. */
function jobsOf(ctx: AreaContext, queue: ReminderQueue): ReminderJobs {
  const redis = ctx.redis.producer;
  const plannedKey = (id: string): string => `${ctx.config.queuePrefix}:reminder-plan:${id}`;
  return {
    schedule: (job) => queue.schedule(job),
    notify: (job, delayMs) => queue.notify(job, delayMs),
    upsertRecurring: (r) => queue.upsertRecurring(r),
    removeRecurring: (id) => queue.removeRecurring(id),
    remove: (id) => queue.remove(id),
    planned: (id) => redis.smembers(plannedKey(id)),
    async setPlanned(id, ids): Promise<void> {
      // One key only, so the MULTI is in one slot on a Redis Cluster too.
      const tx = redis.multi().del(plannedKey(id));
      if (ids.length) tx.sadd(plannedKey(id), ...ids).expire(plannedKey(id), 400 * 86400);
      await tx.exec();
    },
  };
}

export async function remindersModule(
  ctx: AreaContext,
  journeys: JourneyService,
  hooks: RemindersHooks,
): Promise<RemindersModule> {
  const { config, fhir } = ctx;
  const cfg = config.reminders;
  const templates = await Templates.load([
    join(projectRoot(), 'templates'),
    ...(cfg.templatesDir ? [cfg.templatesDir] : []),
  ]);
  const channels = channelsOf(ctx);
  // Built in two steps: the queues' workers call the service, and the service adds to the queues.
  const get = (): ReminderService => service;
  const queue = initReminders(ctx.queues, get);
  const plans = initPlans(ctx.queues, get);
  // Up to 200 write-backs per transaction, one transaction in flight per process, giving way to this
  // process's sends while they read (writeback-worker.ts).
  const writeBacks = initWriteBacks(ctx.queues, fhir, config.hl7.encryptionKey, {
    maxBatch: 200,
    yieldTo: () => service.sending(),
  });
  const journeyEvents = initJourneyEvents(ctx.queues, () => ({ fhir, journeys }));
  const sweep = initSweep(ctx.queues, ctx.redis.producer, {
    fhir,
    prefix: config.queuePrefix,
    replan: (id) => plans.add(id),
    syncCarePlan: async (id) => {
      await service.syncCarePlan(id);
    },
    journeyEvent: (resourceType, id) => journeyEvents.add({ resourceType, id, source: 'sweep' }),
  });
  const carePlanSweep = initCarePlanSweep(ctx.queues, {
    fhir,
    // Its own lock lifetime: a sweep over many plans outlasts the per-patient locks' 30 s.
    lock: redisLock(ctx.redis.producer, {
      prefix: `${config.queuePrefix}:lock:`,
      ttlMs: 10 * 60_000,
      waitMs: 10 * 60_000,
    }),
  });
  const service = new ReminderService({
    fhir,
    lock: ctx.lock,
    ledger: redisLedger(ctx.redis.producer, config.queuePrefix),
    templates,
    channels,
    offsets: cfg.offsets,
    offsetsByService: cfg.offsetsByService,
    quiet: config.quietHours,
    defaultZone: config.defaultTimezone,
    jobs: jobsOf(ctx, queue),
    writeBacks,
    ...(cfg.portalUrl ? { portalUrl: cfg.portalUrl } : {}),
    surveyDelayMs: cfg.surveyDelayMs,
  });
  const replies = new Counter({
    name: 'careway_reminder_replies_total',
    help: 'Patient replies to reminders and offers, by outcome',
    labelNames: ['outcome'] as const,
    registers: [ctx.metrics],
  });
  return {
    service,
    queue,
    plans,
    sweep,
    writeBacks,
    journeyEvents,
    carePlanSweep,
    enqueuePlan: (id) => plans.add(id),
    async fhirChanged(type, id, delivered): Promise<void> {
      if (type === 'Appointment') await plans.add(id);
      // Most deliveries (bookings, moves, inpatient stays) cannot move a journey: no job for them. Without a
      // body of that type there is nothing to judge by, so the job decides on its own read.
      const judged = delivered?.resourceType === type ? delivered : undefined;
      let worthAJob = true;
      try {
        if (judged) worthAJob = eventsForResource(judged).length > 0;
      } catch {
        // A malformed body is the job's to judge, on the server's stored (validated) version.
      }
      if (worthAJob) await journeyEvents.add({ resourceType: type, id, source: 'rest-hook' });
    },
    enqueueNotify: (job) => queue.notify(job),
    async stageEntered(episode, stage): Promise<void> {
      for (const job of await educationFor(fhir, episode, stage)) await queue.notify(job);
    },
    async reply(reply): Promise<ReplyOutcome> {
      const outcome = await handleReply(
        {
          fhir,
          cancelAppointment: (id, reason) => hooks.cancelAppointment(id, reason),
          acceptOffer: (id) => hooks.acceptOffer(id),
        },
        reply,
      );
      replies.inc({ outcome });
      return outcome;
    },
    async start(): Promise<void> {
      if (cfg.webhook) {
        try {
          const r = await ensureSubscriptions(fhir, cfg.webhook.publicBaseUrl, cfg.webhook.secret);
          ctx.log.info({ subscriptions: r }, 'REST-hook subscriptions');
        } catch (err) {
          // The sweep still catches direct edits; the next start tries again.
          ctx.log.warn({ err }, 'REST-hook subscriptions not created');
        }
      }
      // Every process keeps the sweeps' schedulers (records in Redis with fixed ids, so one per cluster); only a
      // process with the `workers` role runs the sweeps they make.
      if (cfg.carePlanSweepMs > 0)
        try {
          await carePlanSweep.start(cfg.carePlanSweepMs, ctx.log);
        } catch (err) {
          ctx.log.warn({ err }, 'care-plan sweep not scheduled');
        }
      if (cfg.sweepMs <= 0) return;
      try {
        await sweep.start(cfg.sweepMs, ctx.log);
      } catch (err) {
        ctx.log.warn({ err }, 'reminder sweep not scheduled');
      }
    },
    async close(): Promise<void> {
      await Promise.allSettled([...channels.values()].map((c) => c.close?.() ?? Promise.resolve()));
    },
  };
}
