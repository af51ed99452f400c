/**
 * Liveness and readiness. Both are public (load balancers and orchestrators carry no tokens).
 * Readiness is 200 only when the FHIR server answers `/metadata`, Redis answers PING and the profiles are
 * on the FHIR server; the body names each check so an operator sees which one is failing.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';

const Check = Type.Object({
  status: Type.Union([Type.Literal('up'), Type.Literal('down')]),
  detail: Type.Optional(Type.String()),
});
const Ready = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not-ready')]),
  checks: Type.Object({ fhir: Check, redis: Check, profiles: Check }),
});

export default async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    '/health',
    {
      config: { public: true },
      schema: {
        tags: ['operations'],
        summary: 'Liveness: the process is up',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/ready',
    {
      config: { public: true },
      schema: {
        tags: ['operations'],
        summary: 'Readiness: the FHIR server and Redis answer, profiles are uploaded',
        response: { 200: Ready, 503: Ready },
      },
    },
    async (_request, reply) => {
      const [fhir, redis] = await Promise.all([
        app.fhir
          .capabilities({ timeoutMs: 2000 })
          .then(() => ({ status: 'up' as const }))
          .catch((e: unknown) => ({
            status: 'down' as const,
            detail: e instanceof Error ? e.message : 'unreachable',
          })),
        app.redis
          .ping(1000)
          .then((ok) => (ok ? { status: 'up' as const } : { status: 'down' as const, detail: 'no PONG' })),
      ]);
      const profiles = app.profiles.uploaded
        ? { status: 'up' as const }
        : { status: 'down' as const, detail: app.profiles.lastError ?? 'upload pending' };
      const ok = fhir.status === 'up' && redis.status === 'up' && profiles.status === 'up';
      return reply
        .code(ok ? 200 : 503)
        .send({ status: ok ? 'ready' : 'not-ready', checks: { fhir, redis, profiles } });
    },
  );
}
