/**
 * Scheduling: the service, and its three queues (hold expiry, waitlist offers, the no-show sweep). The
 * workers are closed with the other Redis connections (infrastructure plugin).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { Counter } from 'prom-client';
import { SchedulingService } from '../../scheduling/service.js';
import type { SchedulingDeps } from '../../scheduling/context.js';
import { init as initHolds, type HoldQueue } from '../../scheduling/hold-worker.js';
import { init as initWaitlist, type WaitlistQueue } from '../../scheduling/waitlist-worker.js';
import { init as initNoShow, type NoShowQueue } from '../../scheduling/noshow-worker.js';
import { redisLock } from '../../queues/locks.js';

declare module 'fastify' {
  interface FastifyInstance {
    scheduling: SchedulingService;
    schedulingQueues: { holds: HoldQueue; waitlist: WaitlistQueue; noShow: NoShowQueue };
  }
}

export default fp(
  async function scheduling(app: FastifyInstance) {
    const cfg = app.config.scheduling;
    const offers = new Counter({
      name: 'careway_waitlist_offers_total',
      help: 'Waitlist offers, by outcome (offered, accepted, expired)',
      labelNames: ['outcome'] as const,
      registers: [app.metrics],
    });
    const noShows = new Counter({
      name: 'careway_noshows_total',
      help: 'Appointments marked as no-shows',
      registers: [app.metrics],
    });
    // The queues' workers call back into the service, and the service adds to the queues: built in two steps.
    const get = (): SchedulingDeps => deps;
    const holds = initHolds(app.redis, get);
    const waitlist = initWaitlist(app.redis, get);
    const noShow = initNoShow(app.redis, get);
    const deps: SchedulingDeps = {
      fhir: app.fhir,
      lock: redisLock(app.redis.producer),
      journeys: app.journeys,
      weights: cfg.weights,
      holdMs: cfg.holdMs,
      offerMs: cfg.offerMs,
      noShowGraceMs: cfg.noShowGraceMs,
      defaultZone: app.config.defaultTimezone,
      scheduleRelease: (slotId, holdId, atMs) => holds.schedule(slotId, holdId, atMs),
      slotFreed: (slotId, round, after) => waitlist.add(slotId, round, after),
      // Every Appointment change re-plans its reminders (the reminders plugin is registered after this one).
      appointmentChanged: (id) => app.reminders.enqueuePlan(id),
      offerMade: (communicationId, patientId) =>
        app.reminders.enqueueNotify({
          kind: 'waitlist-offer',
          recipient: `Patient/${patientId}`,
          about: `Communication/${communicationId}`,
        }),
      metrics: {
        offered: () => offers.inc({ outcome: 'offered' }),
        accepted: () => offers.inc({ outcome: 'accepted' }),
        expired: () => offers.inc({ outcome: 'expired' }),
        noShow: () => noShows.inc(),
      },
    };
    app.decorate('scheduling', new SchedulingService(deps));
    app.decorate('schedulingQueues', { holds, waitlist, noShow });
    app.addHook('onReady', async () => {
      if (cfg.noShowSweepMs <= 0) return;
      try {
        await noShow.start(cfg.noShowSweepMs);
      } catch (err) {
        // Redis down at start: the app still serves; readiness reports Redis, and the next start registers it.
        app.log.warn({ err }, 'no-show sweep not scheduled');
      }
    });
  },
  {
    name: 'careway-scheduling',
    dependencies: ['careway-infrastructure', 'careway-metrics', 'careway-journeys'],
  },
);
