/**
 * Referral intake: the referral service and the `referral-status` queue that tells referrers about triage
 * changes. The worker is closed with the other Redis connections (infrastructure plugin).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { ReferralService } from '../../referrals/service.js';
import { init as initStatusQueue, type StatusQueue } from '../../referrals/status-worker.js';
import { redisLock } from '../../queues/locks.js';

declare module 'fastify' {
  interface FastifyInstance {
    referrals: ReferralService;
    referralStatus: StatusQueue;
  }
}

export default fp(
  async function referrals(app: FastifyInstance) {
    const cfg = app.config.referrals;
    const status = initStatusQueue(app.redis, {
      fhir: app.fhir,
      attempts: cfg.callbackAttempts,
      backoffMs: cfg.callbackBackoffMs,
    });
    app.decorate('referralStatus', status);
    app.decorate(
      'referrals',
      new ReferralService({
        fhir: app.fhir,
        lock: redisLock(app.redis.producer),
        journeys: app.journeys,
        replyAllowlist: cfg.replyAllowlist,
        endpoints: cfg.endpoints,
        ...(cfg.receivingOrganization ? { receivingOrganization: cfg.receivingOrganization } : {}),
        onStatusChange: (taskId, version) => status.add({ taskId, version }),
      }),
    );
  },
  { name: 'careway-referrals', dependencies: ['careway-infrastructure', 'careway-journeys'] },
);
