/**
 * The journey service, decorated on the app: the FHIR port, a Redis lock per patient, and the timeline
 * targets from config.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { JourneyService } from '../../journey/service.js';
import { redisLock } from '../../queues/locks.js';

declare module 'fastify' {
  interface FastifyInstance {
    journeys: JourneyService;
  }
}

export default fp(
  async function journeys(app: FastifyInstance) {
    app.decorate(
      'journeys',
      new JourneyService({
        fhir: app.fhir,
        lock: redisLock(app.redis.producer),
        targets: app.config.journeyTargets,
        // Engagement sends a stage's education when a journey enters it (the reminders plugin comes later).
        onStageEntered: (episode, stage) => app.reminders.stageEntered(episode, stage),
      }),
    );
  },
  { name: 'careway-journeys', dependencies: ['careway-infrastructure'] },
);
