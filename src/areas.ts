/**
 * The composition root: builds the areas from the shared infrastructure, in order, and wires every hook between
 * them here, in one place. To see what happens when an Appointment changes, read this file top to bottom.
 *
 *   journeys ──stage entered──────────────▶ reminders (the stage's education)
 *   referrals ─opens journeys─────────────▶ journeys
 *   scheduling ─appointment changed───────▶ reminders (re-plan)
 *   scheduling ─offer made────────────────▶ reminders (notify the patient)
 *   scheduling ─slot freed────────────────▶ scheduling's waitlist queue (inside the area)
 *   reminders ─reply received (cancel)────▶ scheduling.cancel
 *   reminders ─reply received (accept)────▶ scheduling.acceptOffer
 *   hl7 ─resources written────────────────▶ scheduling (Slots follow the Appointment) ─▶ reminders (re-plan)
 *   hl7 ─journey events from the maps─────▶ journeys
 *
 * Hooks pass ids and the resources already in hand; nothing is searched for again. No Fastify here: the HTTP
 * layer (http/plugins/areas.ts) decorates the app with what this returns, and a workers-only process
 * (RUN_WORKERS) is the same areas with the HTTP layer doing nothing but health.
 */
import type { Appointment, Resource } from 'fhir/r4.js';
import type { AreaContext, Infrastructure } from './area-context.js';
import { JourneyService } from './journey/service.js';
import { referralsModule, type ReferralsModule } from './referrals/module.js';
import { schedulingModule, type SchedulingModule } from './scheduling/module.js';
import { remindersModule, type RemindersModule } from './reminders/module.js';
import { hl7Module, type Hl7Module } from './hl7/module.js';
import { QueueRegistry } from './queues/registry.js';
import { queueSpecs } from './queues/specs.js';
import { redisLock } from './queues/locks.js';

export interface Areas {
  readonly queues: QueueRegistry;
  readonly journeys: JourneyService;
  readonly referrals: ReferralsModule;
  readonly scheduling: SchedulingModule;
  readonly reminders: RemindersModule;
  readonly hl7: Hl7Module;
  /** Starts what runs on its own: the MLLP listener, subscriptions and the periodic sweeps. */
  start(): Promise<void>;
  /**
   * Stops the listener, then the workers (each finishes its job in hand) and queues, then the channels those
   * workers send on. The infrastructure (Redis connections, FHIR client) is closed by whoever made it.
   */
  close(): Promise<void>;
}

const PATIENT_REPLY = { subject: 'patient-reply' };

export async function buildAreas(infra: Infrastructure): Promise<Areas> {
  const queues = new QueueRegistry(infra.redis, queueSpecs(infra.config));
  const ctx: AreaContext = {
    ...infra,
    queues,
    lock: redisLock(infra.redis.producer),
  };

  // Areas that call each other are built in this order; a hook that calls an area built later is bound when it
  // runs, which is never before buildAreas returns (no worker or route runs earlier).
  let reminders: RemindersModule | undefined = undefined;
  const remindersArea = (): RemindersModule => {
    if (!reminders) throw new Error('the reminders area is not built yet');
    return reminders;
  };

  const journeys = new JourneyService({
    fhir: ctx.fhir,
    lock: ctx.lock,
    targets: ctx.config.journeyTargets,
    onStageEntered: (episode, stage) => remindersArea().stageEntered(episode, stage),
  });

  const referrals = referralsModule(ctx, journeys);

  const scheduling = schedulingModule(ctx, journeys, {
    appointmentChanged: (id) => remindersArea().enqueuePlan(id),
    offerMade: (communicationId, patientId) =>
      remindersArea().enqueueNotify({
        kind: 'waitlist-offer',
        recipient: `Patient/${patientId}`,
        about: `Communication/${communicationId}`,
      }),
  });

  reminders = await remindersModule(ctx, journeys, {
    cancelAppointment: async (id, reason) => {
      await scheduling.service.cancel(id, reason, PATIENT_REPLY);
    },
    acceptOffer: async (communicationId) => {
      await scheduling.service.acceptOffer(communicationId, PATIENT_REPLY);
    },
  });

  const hl7 = await hl7Module(ctx, journeys, {
    // The written Appointments, with their server ids: Slots follow them and reminders are re-planned.
    written: async (resources: readonly Resource[]) => {
      for (const r of resources)
        if (r.resourceType === 'Appointment') await scheduling.appointmentWritten(r as Appointment);
    },
  });

  queues.registerMetrics(ctx.metrics);
  const built = reminders;
  return {
    queues,
    journeys,
    referrals,
    scheduling,
    reminders: built,
    hl7,
    async start(): Promise<void> {
      await scheduling.start();
      await built.start();
      await hl7.start();
    },
    async close(): Promise<void> {
      await hl7.close();
      await queues.close();
      await built.close();
    },
  };
}
