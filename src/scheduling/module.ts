/**
 * The scheduling area: the service (slot search, hold, book, cancel, waitlist, no-shows) and its three queues
 * (hold expiry, waitlist offers, the no-show sweep). What scheduling tells the other areas goes through the
 * hooks it is given (composition root, areas.ts); the queues' workers call back into the service, so both are
 * built from one set of dependencies.
 */
import type { Appointment } from 'fhir/r4.js';
import { Counter } from 'prom-client';
import type { AreaContext } from '../area-context.js';
import type { JourneyService } from '../journey/service.js';
import { SchedulingService } from './service.js';
import { announceFree } from './booking.js';
import type { AppointmentMade, SchedulingDeps } from './context.js';
import { init as initHolds, type HoldQueue } from './hold-worker.js';
import { init as initWaitlist, type WaitlistQueue } from './waitlist-worker.js';
import { init as initNoShow, type NoShowQueue } from './noshow-worker.js';

export interface SchedulingHooks {
  /** Any Appointment changed (booked, moved, cancelled, no-show; here or elsewhere). */
  appointmentChanged(appointmentId: string): Promise<void>;
  /** Careway itself booked, moved, cancelled or marked a no-show (never a change that came from elsewhere). */
  appointmentMadeByCareway(made: AppointmentMade): Promise<void>;
  /** A waitlist offer was made: its portal Communication, for the patient. */
  offerMade(communicationId: string, patientId: string): Promise<void>;
}

export interface SchedulingModule {
  readonly service: SchedulingService;
  readonly queues: { holds: HoldQueue; waitlist: WaitlistQueue; noShow: NoShowQueue };
  /** An Appointment was written outside the booking operations (HL7 SIU): Slots follow it. */
  appointmentWritten(appointment: Appointment): Promise<void>;
  /** A Slot was written free outside the booking operations (through the facade): the waitlist may take it. */
  slotOpened(slotId: string): Promise<void>;
  /**
   * Schedules the no-show sweep, which also frees Slots whose hold expired (one job scheduler shared by every
   * instance, registered again whenever Redis has lost it).
   */
  start(): Promise<void>;
}

export function schedulingModule(
  ctx: AreaContext,
  journeys: JourneyService,
  hooks: SchedulingHooks,
): SchedulingModule {
  const cfg = ctx.config.scheduling;
  const offers = new Counter({
    name: 'careway_waitlist_offers_total',
    help: 'Waitlist offers, by outcome (offered, accepted, expired)',
    labelNames: ['outcome'] as const,
    registers: [ctx.metrics],
  });
  const noShows = new Counter({
    name: 'careway_noshows_total',
    help: 'Appointments marked as no-shows',
    registers: [ctx.metrics],
  });
  // The queues' workers call back into the service, and the service adds to the queues: built in two steps.
  const get = (): SchedulingDeps => deps;
  const holds = initHolds(ctx.queues, get);
  const waitlist = initWaitlist(ctx.queues, get);
  const noShow = initNoShow(ctx.queues, get);
  const deps: SchedulingDeps = {
    fhir: ctx.fhir,
    lock: ctx.lock,
    journeys,
    weights: cfg.weights,
    holdMs: cfg.holdMs,
    offerMs: cfg.offerMs,
    noShowGraceMs: cfg.noShowGraceMs,
    defaultZone: ctx.config.defaultTimezone,
    // The same test as the reminders' channels (reminders/module.ts channelsOf): configured means usable.
    outsideChannels: new Set([
      ...(ctx.config.smtpUrl && ctx.config.smtpFrom ? (['email'] as const) : []),
      ...(ctx.config.smsWebhookUrl && ctx.config.smsWebhookSecret ? (['sms'] as const) : []),
    ]),
    scheduleRelease: (slotId, holdId, atMs) => holds.schedule(slotId, holdId, atMs),
    slotFreed: (slotId, round, after) => waitlist.add(slotId, round, after),
    appointmentChanged: (id) => hooks.appointmentChanged(id),
    appointmentMade: (made) => hooks.appointmentMadeByCareway(made),
    offerMade: (communicationId, patientId) => hooks.offerMade(communicationId, patientId),
    metrics: {
      offered: () => offers.inc({ outcome: 'offered' }),
      accepted: () => offers.inc({ outcome: 'accepted' }),
      expired: () => offers.inc({ outcome: 'expired' }),
      noShow: () => noShows.inc(),
    },
  };
  const service = new SchedulingService(deps);
  return {
    service,
    queues: { holds, waitlist, noShow },
    appointmentWritten: (appointment) => service.appointmentWrittenElsewhere(appointment),
    slotOpened: (slotId) => announceFree(deps, slotId),
    async start(): Promise<void> {
      // Every process keeps the sweep's scheduler (a record in Redis with a fixed id, so one per cluster); only a
      // process with the `workers` role runs the sweeps it makes.
      if (cfg.noShowSweepMs <= 0) return;
      try {
        await noShow.start(cfg.noShowSweepMs, ctx.log);
      } catch (err) {
        // Redis down at start: the app still serves; readiness reports Redis, and the scheduler is registered
        // once Redis is back (queues/schedulers.ts).
        ctx.log.warn({ err }, 'no-show sweep not scheduled');
      }
    },
  };
}
