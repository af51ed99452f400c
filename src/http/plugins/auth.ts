/**
 * Authentication on every route except those that declare `config: { public: true }` (health, readiness,
 * docs, `GET /fhir/metadata`). Runs in `onRequest`, before the body is read, so an unauthenticated caller
 * cannot make Careway parse a large payload. Unknown routes are also behind authentication, so the route
 * table cannot be probed anonymously.
 *
 * Authorisation (which scope a route needs) stays with the route: `requireScope` and the facade's own
 * per-resource-type decision.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CarewayError } from '../../shared/errors.js';
import { createVerifier, type Principal, type TokenVerifier } from '../auth/verifier.js';
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
    app.decorateRequest('principal', undefined);
    app.decorate('authenticate', async (request: FastifyRequest) => {
      request.principal = await verify(bearer(request));
    });
    app.addHook('onRequest', async (request) => {
      // The OpenAPI UI and document are public (registered by @fastify/swagger-ui, which takes no route config).
      if (request.routeOptions.config.public === true || request.routeOptions.url?.startsWith('/docs'))
        return;
      // The queue dashboard authenticates in its own scope: its plugin's error handler would turn a 401 into 500.
      if (request.routeOptions.url?.startsWith('/admin/queues')) return;
      request.principal = await verify(bearer(request));
    });
  },
  { name: 'careway-auth', dependencies: ['careway-infrastructure'] },
);
