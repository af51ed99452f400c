/**
 * Reminders and engagement: the reminder service, its channels and templates, and the queues that plan,
 * send, write back and reconcile (`reminder-plans`, `reminders`, `reminder-writebacks`, `reminder-sweep`). Every Appointment change anywhere in
 * Careway (scheduling operations, HL7 SIU) reaches `enqueuePlan`.
 *
 * Edits made directly on the FHIR server arrive here too (the REST-hook Subscriptions and the sweep), and
 * `fhirChanged` fans each out: an Appointment is re-planned, and an Appointment, CarePlan or Encounter that may
 * move its journey goes to the `journey-events` queue.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { Counter } from 'prom-client';
import { ReminderService, type NotifyJob, type ReminderJobs } from '../../reminders/service.js';
import { Templates } from '../../reminders/templates.js';
import { redisLedger } from '../../reminders/ledger.js';
import { emailChannel } from '../../reminders/channels/email.js';
import { smsChannel } from '../../reminders/channels/sms-webhook.js';
import { portalChannel } from '../../reminders/channels/portal.js';
import type { Channel, ChannelKind } from '../../reminders/channels/channel.js';
import { init as initReminders, type ReminderQueue } from '../../reminders/reminder-worker.js';
import { init as initPlans, type PlanQueue } from '../../reminders/plan-worker.js';
import { init as initSweep, type SweepQueue } from '../../reminders/sweep-worker.js';
import { init as initWriteBacks, type WriteBackQueue } from '../../reminders/writeback-worker.js';
import { init as initJourneyEvents, type JourneyEventQueue } from '../../reminders/journey-event-worker.js';
import { handleReply, type InboundReply, type ReplyOutcome } from '../../reminders/replies.js';
import { redisLock } from '../../queues/locks.js';
import { educationFor } from '../../reminders/care-plans.js';
import { ensureSubscriptions } from '../../reminders/subscription.js';
import { eventsForResource, type EventResourceType } from '../../journey/resource-events.js';
import type { EpisodeOfCare, Resource } from 'fhir/r4.js';
import { projectRoot } from '../../shared/paths.js';

declare module 'fastify' {
  interface FastifyInstance {
    reminders: {
      service: ReminderService;
      queue: ReminderQueue;
      plans: PlanQueue;
      sweep: SweepQueue;
      writeBacks: WriteBackQueue;
      journeyEvents: JourneyEventQueue;
      enqueuePlan(appointmentId: string): Promise<void>;
      /**
       * A resource changed on the FHIR server (REST-hook delivery). `delivered` is the body the server sent, when
       * it sent one: used only to skip resources that cannot move a journey, never stored or logged.
       */
      fhirChanged(type: EventResourceType, id: string, delivered?: Resource): Promise<void>;
      enqueueNotify(job: NotifyJob): Promise<void>;
      /** A journey entered a stage: its education goes out (once per journey and document). */
      stageEntered(episode: EpisodeOfCare, stage: string): Promise<void>;
      reply(reply: InboundReply): Promise<ReplyOutcome>;
    };
  }
}

export default fp(
  async function reminders(app: FastifyInstance) {
    const cfg = app.config.reminders;
    const templates = await Templates.load([
      join(projectRoot(), 'templates'),
      ...(cfg.templatesDir ? [cfg.templatesDir] : []),
    ]);
    const channels = new Map<ChannelKind, Channel>([['portal', portalChannel]]);
    if (app.config.smtpUrl && app.config.smtpFrom)
      channels.set('email', emailChannel(app.config.smtpUrl, app.config.smtpFrom));
    if (app.config.smsWebhookUrl && app.config.smsWebhookSecret)
      channels.set(
        'sms',
        smsChannel(app.config.smsWebhookUrl, app.config.smsWebhookSecret, cfg.smsPerSecond),
      );
    const redis = app.redis.producer;
    const prefix = app.config.queuePrefix;
    const plannedKey = (id: string): string => `${prefix}:reminder-plan:${id}`;
    // Built in two steps: the queues' workers call the service, and the service adds to the queues.
    const get = (): ReminderService => service;
    const queue = initReminders(app.redis, get, { attempts: cfg.attempts, concurrency: cfg.concurrency });
    const plans = initPlans(app.redis, get);
    // Up to 200 write-backs per transaction, one transaction in flight per process, giving way to this
    // process's sends while they read (writeback-worker.ts).
    const writeBacks = initWriteBacks(app.redis, app.fhir, app.config.hl7.encryptionKey, {
      concurrency: 200,
      maxBatch: 200,
      yieldTo: () => service.sending(),
    });
    const journeyEvents = initJourneyEvents(app.redis, () => ({ fhir: app.fhir, journeys: app.journeys }));
    const sweep = initSweep(app.redis, {
      fhir: app.fhir,
      prefix,
      replan: (id) => plans.add(id),
      syncCarePlan: async (id) => {
        await service.syncCarePlan(id);
      },
      journeyEvent: (resourceType, id) => journeyEvents.add({ resourceType, id, source: 'sweep' }),
    });
    const jobs: ReminderJobs = {
      schedule: (job) => queue.schedule(job),
      notify: (job, delayMs) => queue.notify(job, delayMs),
      upsertRecurring: (r) => queue.upsertRecurring(r),
      removeRecurring: (id) => queue.removeRecurring(id),
      remove: (id) => queue.remove(id),
      planned: (id) => redis.smembers(plannedKey(id)),
      async setPlanned(id, ids): Promise<void> {
        const tx = redis.multi().del(plannedKey(id));
        if (ids.length) tx.sadd(plannedKey(id), ...ids).expire(plannedKey(id), 400 * 86400);
        await tx.exec();
      },
    };
    const service = new ReminderService({
      fhir: app.fhir,
      lock: redisLock(redis),
      ledger: redisLedger(redis, prefix),
      templates,
      channels,
      offsets: cfg.offsets,
      offsetsByService: cfg.offsetsByService,
      quiet: app.config.quietHours,
      defaultZone: app.config.defaultTimezone,
      jobs,
      writeBacks,
      ...(cfg.portalUrl ? { portalUrl: cfg.portalUrl } : {}),
      surveyDelayMs: cfg.surveyDelayMs,
    });
    const sent = new Counter({
      name: 'careway_reminder_replies_total',
      help: 'Patient replies to reminders and offers, by outcome',
      labelNames: ['outcome'] as const,
      registers: [app.metrics],
    });
    app.decorate('reminders', {
      service,
      queue,
      plans,
      sweep,
      writeBacks,
      journeyEvents,
      enqueuePlan: (id: string) => plans.add(id),
      async fhirChanged(type: EventResourceType, id: string, delivered?: Resource): Promise<void> {
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
      enqueueNotify: (job: NotifyJob) => queue.notify(job),
      async stageEntered(episode: EpisodeOfCare, stage: string): Promise<void> {
        for (const job of await educationFor(app.fhir, episode, stage)) await queue.notify(job);
      },
      async reply(reply: InboundReply): Promise<ReplyOutcome> {
        const outcome = await handleReply(
          {
            fhir: app.fhir,
            cancelAppointment: async (id, reason) => {
              await app.scheduling.cancel(id, reason, { subject: 'patient-reply' });
            },
            acceptOffer: async (id) => {
              await app.scheduling.acceptOffer(id, { subject: 'patient-reply' });
            },
          },
          reply,
        );
        sent.inc({ outcome });
        return outcome;
      },
    });
    app.addHook('onReady', async () => {
      if (cfg.webhook) {
        try {
          const r = await ensureSubscriptions(app.fhir, cfg.webhook.publicBaseUrl, cfg.webhook.secret);
          app.log.info({ subscriptions: r }, 'REST-hook subscriptions');
        } catch (err) {
          // The sweep still catches direct edits; the next start tries again.
          app.log.warn({ err }, 'REST-hook subscriptions not created');
        }
      }
      if (cfg.sweepMs <= 0) return;
      try {
        await sweep.start(cfg.sweepMs);
      } catch (err) {
        app.log.warn({ err }, 'reminder sweep not scheduled');
      }
    });
    app.addHook('onClose', async () => {
      await Promise.allSettled([...channels.values()].map((c) => c.close?.() ?? Promise.resolve()));
    });
  },
  {
    name: 'careway-reminders',
    dependencies: ['careway-infrastructure', 'careway-metrics', 'careway-journeys', 'careway-scheduling'],
  },
);
