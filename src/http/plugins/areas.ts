/**
 * The areas, as the routes reach them: built once by the composition root (areas.ts) and decorated on the app.
 * This plugin only adapts: the areas start when the app is ready (the MLLP listener, sweeps, subscriptions)
 * and close when it closes, before the infrastructure plugin closes Redis and the FHIR client.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { buildAreas, type Areas } from '../../areas.js';
import type { JourneyService } from '../../journey/service.js';
import type { ReferralService } from '../../referrals/service.js';
import type { StatusQueue } from '../../referrals/status-worker.js';
import type { SchedulingService } from '../../scheduling/service.js';
import type { SchedulingModule } from '../../scheduling/module.js';
import type { RemindersModule } from '../../reminders/module.js';
import type { Hl7Module } from '../../hl7/module.js';

declare module 'fastify' {
  interface FastifyInstance {
    areas: Areas;
    journeys: JourneyService;
    referrals: ReferralService;
    referralStatus: StatusQueue;
    scheduling: SchedulingService;
    schedulingQueues: SchedulingModule['queues'];
    reminders: RemindersModule;
    hl7: Hl7Module;
  }
}

export default fp(
  async function areas(app: FastifyInstance) {
    const built = await buildAreas({
      config: app.config,
      fhir: app.fhir,
      redis: app.redis,
      metrics: app.metrics,
      log: app.log,
    });
    app.decorate('areas', built);
    app.decorate('journeys', built.journeys);
    app.decorate('referrals', built.referrals.service);
    app.decorate('referralStatus', built.referrals.status);
    app.decorate('scheduling', built.scheduling.service);
    app.decorate('schedulingQueues', built.scheduling.queues);
    app.decorate('reminders', built.reminders);
    app.decorate('hl7', built.hl7);
    app.addHook('onReady', () => built.start());
    app.addHook('onClose', () => built.close());
  },
  { name: 'careway-areas', dependencies: ['careway-infrastructure', 'careway-metrics'] },
);
