/**
 * Authentication on every route except those that declare `config: { public: true }` (health, readiness,
 * docs, `GET /fhir/metadata`). Runs in `onRequest`, before the body is read, so an unauthenticated caller
 * cannot make Careway parse a large payload. Unknown routes are also behind authentication, so the route
 * table cannot be probed anonymously.
 *
 * Authorisation (which scope a route needs) stays with the route: `requireScope` and the facade's own
 * per-resource-type decision.
 *
 * Revocation: after the signature is verified (or the verified token is found in the verifier's cache), the
 * token's `jti` is looked up in the deny-list (revocation.ts, one Redis EXISTS); a revoked token gets 401.
 * When Redis cannot answer, the request is refused (502): a revoked token must not pass because Redis is
 * down. `POST /admin/revoke` {jti, exp} puts a token on the list (admin scope). Every failed authentication
 * is counted per client address (rate-limits.ts); past RATE_LIMIT_AUTH_FAILURES a minute it answers 429.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { CarewayError } from '../../shared/errors.js';
import { createVerifier, type Principal, type TokenVerifier } from '../auth/verifier.js';
import { isRevoked, JTI_RE, revoke } from '../auth/revocation.js';
import { ADMIN_SCOPES, decide, type Permission } from '../auth/scopes.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Verifies the request's bearer token and sets `request.principal` (throws 401 otherwise). */
    authenticate(request: FastifyRequest): Promise<void>;
  }
  interface FastifyContextConfig {
    /** The route needs no bearer token. */
    public?: boolean;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

function bearer(request: FastifyRequest): string {
  const header = request.headers.authorization;
  if (!header) {
    throw new CarewayError('unauthenticated', 'a bearer token is required', {
      headers: { 'WWW-Authenticate': 'Bearer' },
    });
  }
  const m = /^Bearer\s+([A-Za-z0-9\-_.~+/]+=*)$/i.exec(header.trim());
  if (!m?.[1]) {
    throw new CarewayError('unauthenticated', 'the Authorization header must be "Bearer <token>"', {
      headers: { 'WWW-Authenticate': 'Bearer error="invalid_request"' },
    });
  }
  return m[1];
}

/** The principal of an authenticated route; throws if auth did not run (a wiring bug). */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new CarewayError('unauthenticated', 'a bearer token is required');
  return request.principal;
}

/** Throws 403 unless the caller's scopes grant `permission` on `resourceType` outside any compartment. */
export function requireUnconfined(
  request: FastifyRequest,
  resourceType: string,
  permission: Permission,
): void {
  const d = decide(principalOf(request).scopes, resourceType, permission);
  if (!d.allowed || d.compartmentOnly) {
    throw new CarewayError(
      'insufficient-scope',
      `this route needs a user/ or system/ scope granting "${permission}" on ${resourceType}`,
      {
        headers: { 'WWW-Authenticate': 'Bearer error="insufficient_scope"' },
      },
    );
  }
}

/** Throws 403 unless the token holds an admin scope (`system/careway.admin` or `user/careway.admin`). */
export function requireAdmin(request: FastifyRequest): void {
  if (principalOf(request).admin) return;
  throw new CarewayError(
    'insufficient-scope',
    `this action needs an admin scope (${ADMIN_SCOPES.join(' or ')})`,
    { headers: { 'WWW-Authenticate': 'Bearer error="insufficient_scope"' } },
  );
}

export default fp<{ verifier?: TokenVerifier }>(
  async function auth(app: FastifyInstance, opts) {
    const verify = opts.verifier ?? createVerifier(app.config.auth);
    const prefix = app.config.queuePrefix;
    const authenticate = async (request: FastifyRequest): Promise<void> => {
      try {
        const principal = await verify(bearer(request));
        if (principal.tokenId !== undefined) {
          const revoked = await isRevoked(app.redis.producer, prefix, principal.tokenId).catch(
            (e: unknown) => {
              throw new CarewayError('upstream-unavailable', 'the token deny-list could not be checked', {
                cause: e,
              });
            },
          );
          if (revoked)
            throw new CarewayError('unauthenticated', 'token has been revoked', {
              headers: {
                'WWW-Authenticate': 'Bearer error="invalid_token", error_description="token revoked"',
              },
            });
        }
        request.principal = principal;
      } catch (e) {
        if (e instanceof CarewayError && e.code === 'unauthenticated')
          await app.rateLimits.authFailed(request);
        throw e;
      }
    };
    app.decorateRequest('principal', undefined);
    app.decorate('authenticate', authenticate);
    app.addHook('onRequest', async (request) => {
      // The OpenAPI UI and document are public (registered by @fastify/swagger-ui, which takes no route config).
      if (request.routeOptions.config.public === true || request.routeOptions.url?.startsWith('/docs'))
        return;
      // The queue dashboard authenticates in its own scope: its plugin's error handler would turn a 401 into 500.
      if (request.routeOptions.url?.startsWith('/admin/queues')) return;
      await authenticate(request);
    });

    app.post(
      '/admin/revoke',
      {
        schema: {
          tags: ['admin'],
          summary: 'Revoke a token by its jti until its exp (scope: careway.admin)',
          security: [{ bearer: [] }],
          body: Type.Object(
            {
              jti: Type.String({ pattern: JTI_RE.source }),
              exp: Type.Integer({ minimum: 0, description: "the token's exp, seconds since the epoch" }),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({ jti: Type.String(), revokedForSeconds: Type.Integer() }),
          },
        },
      },
      async (request) => {
        requireAdmin(request);
        const { jti, exp } = request.body as { jti: string; exp: number };
        const ttl = await revoke(app.redis.producer, prefix, jti, exp);
        request.log.info(
          { subject: principalOf(request).subject, route: '/admin/revoke', revokedForSeconds: ttl },
          'admin action',
        );
        return { jti, revokedForSeconds: ttl };
      },
    );
  },
  { name: 'careway-auth', dependencies: ['careway-infrastructure', 'careway-rate-limits'] },
);
