/**
 * Rate limits, counted in Redis (@fastify/rate-limit's Redis store on the producer connection, keys under
 * `${QUEUE_PREFIX}:rate-limit:`), so every instance of a deployment shares one count:
 * - failed bearer authentications per client address (RATE_LIMIT_AUTH_FAILURES a minute): past it, a
 *   failure answers 429 instead of 401, so a client probing tokens learns nothing more for the rest of the
 *   minute. Valid tokens from the same address are not limited (one bad client behind a hospital NAT does not
 *   lock out its colleagues);
 * - inbound replies (`POST /engagement/replies`) per client address (RATE_LIMIT_REPLIES), counted before the
 *   signature is checked, so unsigned floods are limited too;
 * - `$hold` and `$book` together per patient (RATE_LIMIT_BOOKINGS), for patient-context tokens: a patient app
 *   hoarding slots. Staff and system tokens (a front desk, the EHR's interface engine) book for many patients and
 *   are trusted with it; they are not limited here.
 *
 * Keys never hold PHI: a client address (an identifier under HIPAA) and a token subject are pseudonymised
 * with an HMAC keyed from HL7_ENCRYPTION_KEY, the secret every instance already shares. A 429 is an
 * OperationOutcome (`throttled`) with Retry-After in seconds. When Redis cannot count, the request goes on
 * (availability first; the deny-list of revoked tokens, in the auth plugin, fails closed instead).
 */
import { createHmac } from 'node:crypto';
import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CarewayError } from '../../shared/errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    rateLimits: {
      /** Counts one failed authentication for the request's client address; throws 429 past the limit. */
      authFailed(request: FastifyRequest): Promise<void>;
    };
  }
}

const WINDOW_MS = 60_000;
const BOOKING_ROUTES = new Set(['/fhir/Appointment/$hold', '/fhir/Appointment/$book']);
const REPLY_ROUTES = new Set(['/engagement/replies']);

type Limiter = (request: FastifyRequest) => Promise<void>;

export default fp(
  async function rateLimits(app: FastifyInstance) {
    const { rateLimits: limits, queuePrefix } = app.config;
    await app.register(rateLimit, {
      global: false,
      redis: app.redis.producer,
      nameSpace: `${queuePrefix}:rate-limit:`,
      skipOnError: true,
    });
    const pseudonymKey = createHmac('sha256', app.config.hl7.encryptionKey)
      .update('careway rate-limit keys')
      .digest();
    const pseudonym = (kind: string, value: string): string =>
      `${kind}:${createHmac('sha256', pseudonymKey).update(value).digest('base64url').slice(0, 22)}`;

    const limiter = (
      what: string,
      max: number,
      keyOf: (request: FastifyRequest) => string,
    ): Limiter | undefined => {
      if (max <= 0) return undefined;
      const check = app.createRateLimit({ max, timeWindow: WINDOW_MS, keyGenerator: keyOf });
      return async (request) => {
        const r = await check(request);
        if (r.isAllowed || !r.isExceeded) return;
        const retryAfter = Math.max(1, r.ttlInSeconds);
        throw new CarewayError(
          'rate-limited',
          `too many ${what}: at most ${max} a minute; retry after ${retryAfter} s`,
          { headers: { 'Retry-After': String(retryAfter) } },
        );
      };
    };

    const authFailures = limiter('failed authentications from this client', limits.authFailures, (r) =>
      pseudonym('auth-failures', r.ip),
    );
    const replies = limiter('replies from this client', limits.replies, (r) => pseudonym('replies', r.ip));
    const bookings = limiter('holds and bookings for this patient', limits.bookings, (r) =>
      pseudonym('bookings', r.principal?.patient ?? `ip:${r.ip}`),
    );

    app.decorate('rateLimits', {
      authFailed: async (request: FastifyRequest) => {
        await authFailures?.(request);
      },
    });
    // preValidation: after authentication (the principal is known), before any route's own checks.
    app.addHook('preValidation', async (request) => {
      const route = request.routeOptions.url ?? '';
      if (REPLY_ROUTES.has(route)) await replies?.(request);
      else if (BOOKING_ROUTES.has(route) && request.principal?.patient) await bookings?.(request);
    });
  },
  { name: 'careway-rate-limits', dependencies: ['careway-infrastructure'] },
);
