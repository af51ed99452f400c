/**
 * The composition root: builds the areas from the shared infrastructure, in order, and wires every hook between
 * them here, in one place. To see what happens when an Appointment changes, read this file top to bottom.
 *
 *   journeys ──stage entered──────────────▶ reminders (the stage's education)
 *   referrals ─opens journeys─────────────▶ journeys
 *   scheduling ─appointment changed───────▶ reminders (re-plan)
 *   scheduling ─made by Careway───────────▶ hl7 (the change goes to the EHR as SIU, when HL7_OUTBOUND_URL is set)
 *   scheduling ─offer made────────────────▶ reminders (notify the patient)
 *   scheduling ─slot freed────────────────▶ scheduling's waitlist queue (inside the area)
 *   reminders ─reply received (cancel)────▶ scheduling.cancel
 *   reminders ─reply received (accept)────▶ scheduling.acceptOffer
 *   hl7 ─resources written────────────────▶ scheduling (Slots follow the Appointment) ─▶ reminders (re-plan)
 *   hl7 ─journey events from the maps─────▶ journeys
 *
 * Hooks pass ids and the resources already in hand; nothing is searched for again. No Fastify here: the HTTP
 * layer (http/plugins/areas.ts) decorates the app with what this returns. Every process builds the same areas;
 * its roles (CAREWAY_ROLES) decide what `start` starts: the workers and sweeps (`workers`), the MLLP listener
 * (`mllp`); the HTTP layer adds the routes (`api`).
 */
import type { Appointment, Resource, Slot } from 'fhir/r4.js';
import type { AreaContext, Infrastructure } from './area-context.js';
import { JourneyService } from './journey/service.js';
import { JourneyBoard } from './journey/board.js';
import { CareTasks } from './journey/tasks.js';
import { referralsModule, type ReferralsModule } from './referrals/module.js';
import { schedulingModule, type SchedulingModule } from './scheduling/module.js';
import { remindersModule, type RemindersModule } from './reminders/module.js';
import { hl7Module, type Hl7Module } from './hl7/module.js';
import { QueueRegistry } from './queues/registry.js';
import { queueSpecs } from './queues/specs.js';
import { redisLock } from './queues/locks.js';
import { auditModule, type AuditModule } from './audit/module.js';
import { patientsOf } from './audit/patients.js';
import { createFhirClient } from './config/fhir-client.js';
import { analyticsModule, type AnalyticsModule } from './analytics/module.js';

/** A write made through the /fhir facade: what changed, and the body written (none for a delete). */
export interface FhirWrite {
  readonly resourceType: string;
  readonly id: string;
  readonly version?: string;
  readonly resource?: Resource;
}

export interface Areas {
  readonly queues: QueueRegistry;
  readonly audit: AuditModule;
  readonly journeys: JourneyService;
  /** The journey board (GET /journeys/board). */
  readonly board: JourneyBoard;
  /** Every Careway Task: the worklist, $claim and $complete (referral triage stays with referrals). */
  readonly tasks: CareTasks;
  readonly referrals: ReferralsModule;
  readonly scheduling: SchedulingModule;
  readonly reminders: RemindersModule;
  readonly hl7: Hl7Module;
  /** `$evaluate-measure`: reads only, hooked to nothing (its cache's freshness is its TTL). */
  readonly analytics: AnalyticsModule;
  /**
   * Something was written through the /fhir facade: the areas react at once, as they would to the same change
   * arriving later by REST-hook or sweep. An Appointment is re-planned (and may move its journey), a CarePlan's
   * check-ups follow it, an Encounter may move its journey, a free Slot goes to the waitlist, and a Task's
   * referrer hears of its status.
   */
  fhirWritten(changes: readonly FhirWrite[]): Promise<void>;
  /** Starts what runs on its own, as this process's roles say: workers, the sweeps, the MLLP listener. */
  start(): Promise<void>;
  /**
   * The first half of a graceful shutdown (SIGTERM): the MLLP listener stops accepting, then the workers stop
   * taking jobs and finish those in hand within `graceMs` (see QueueRegistry.drainWorkers). HTTP keeps serving
   * meanwhile; `close` does the rest.
   */
  drain(graceMs: number): Promise<void>;
  /**
   * Stops the listener, then the workers (each finishes its job in hand) and queues, then the channels those
   * workers send on. The infrastructure (Redis connections, FHIR client) is closed by whoever made it.
   */
  close(): Promise<void>;
}

const PATIENT_REPLY = { subject: 'patient-reply' };

export async function buildAreas(infra: Infrastructure): Promise<Areas> {
  const roles = infra.config.roles;
  const queues = new QueueRegistry(infra.redis, queueSpecs(infra.config), {
    runWorkers: roles.workers,
    onRetry: (err) =>
      infra.log.warn({ err }, 'ordered queues not started yet (Redis unavailable); retrying every second'),
  });
  const ctx: AreaContext = {
    ...infra,
    queues,
    // Under QUEUE_PREFIX like every other key, so deployments sharing a Redis never hold each other's locks
    // (and a prefix with a {hash tag} keeps them in the deployment's slot). The default prefix gives the
    // same keys as before (`careway:lock:…`).
    lock: redisLock(infra.redis.producer, { prefix: `${infra.config.queuePrefix}:lock:` }),
  };

  // The audit trail first: every other area records through it. A site may keep audit on its own server.
  const auditFhir = infra.config.audit.fhirBaseUrl
    ? createFhirClient({ ...infra.config, fhirBaseUrl: infra.config.audit.fhirBaseUrl })
    : ctx.fhir;
  const audit = auditModule(ctx, auditFhir);

  // Areas that call each other are built in this order; a hook that calls an area built later is bound when it
  // runs, which is never before buildAreas returns (no worker or route runs earlier).
  let reminders: RemindersModule | undefined = undefined;
  const remindersArea = (): RemindersModule => {
    if (!reminders) throw new Error('the reminders area is not built yet');
    return reminders;
  };
  let hl7Built: Hl7Module | undefined = undefined;
  const hl7Area = (): Hl7Module => {
    if (!hl7Built) throw new Error('the hl7 area is not built yet');
    return hl7Built;
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
    // Only what Careway itself booked, moved, cancelled or marked a no-show (a reply's cancel and a waitlist
    // booking included): an SIU from the EHR or an edit on the FHIR server is never echoed back to the EHR.
    appointmentMadeByCareway: (made) => hl7Area().sendAppointmentChange(made),
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

  const hl7 = (hl7Built = await hl7Module(ctx, journeys, {
    // The written Appointments, with their server ids: Slots follow them and reminders are re-planned. The
    // message is audited (who: the sending system; what: the resources; about whom: its patients).
    written: async (resources: readonly Resource[], message) => {
      await audit.record(
        {
          interaction: 'hl7v2',
          action: 'C',
          status: 200,
          at: new Date(),
          user: { subject: message.sender },
          detail: message.type,
          data: resources.filter((r) => r.id).map((r) => `${r.resourceType}/${r.id}`),
          requestId: message.controlId,
        },
        patientsOf(resources),
      );
      for (const r of resources)
        if (r.resourceType === 'Appointment') await scheduling.appointmentWritten(r as Appointment);
    },
    // An outbound message the EHR answered: disclosed to the EHR, about this patient.
    sent: (m) =>
      audit.record(
        {
          interaction: 'hl7v2',
          action: 'E',
          status: m.code === 'AA' || m.code === 'CA' ? 200 : 400,
          at: new Date(),
          user: { subject: 'careway' },
          detail: `SIU^${m.trigger}`,
          data: [`Appointment/${m.appointmentId}`],
          reason: m.code,
        },
        [m.patientId],
      ),
  }));

  const analytics = analyticsModule(ctx);

  queues.registerMetrics(ctx.metrics);
  const built = reminders;
  return {
    queues,
    analytics,
    audit,
    journeys,
    board: new JourneyBoard(ctx.fhir, ctx.config.journeyTargets),
    tasks: new CareTasks(ctx.fhir),
    referrals,
    scheduling,
    reminders: built,
    hl7,
    async fhirWritten(changes): Promise<void> {
      for (const c of changes) {
        switch (c.resourceType) {
          case 'Appointment':
          case 'Encounter':
            await built.fhirChanged(c.resourceType, c.id, c.resource);
            break;
          case 'CarePlan':
            await built.service.syncCarePlan(c.id);
            await built.fhirChanged('CarePlan', c.id, c.resource);
            break;
          case 'Slot':
            if ((c.resource as Slot | undefined)?.status === 'free') await scheduling.slotOpened(c.id);
            break;
          case 'Task':
            if (c.version) await referrals.status.add({ taskId: c.id, version: c.version });
            break;
          default:
            break;
        }
      }
    },
    async start(): Promise<void> {
      await queues.start();
      await scheduling.start();
      await built.start();
      if (roles.mllp) await hl7.start();
    },
    async drain(graceMs): Promise<void> {
      await hl7.stopIntake();
      infra.log.info('MLLP listener closed');
      await queues.drainWorkers(graceMs);
      infra.log.info({ graceMs }, 'workers drained');
    },
    async close(): Promise<void> {
      await hl7.close();
      await queues.close();
      await built.close();
      if (auditFhir !== ctx.fhir) await auditFhir.close();
    },
  };
}
