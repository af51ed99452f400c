/**
 * Liveness and readiness. Both are public (load balancers and orchestrators carry no tokens).
 * Readiness is 200 only when the FHIR server answers `/metadata`, Redis answers PING and the profiles are
 * on the FHIR server; the body names each check so an operator sees which one is failing. Each check is
 * bounded by READY_TIMEOUT_MS, so a server that hangs gives a quick 503, never a hung probe.
 * From SIGTERM on, `/ready` answers 503 at once (`draining`), so load balancers stop sending work while the
 * process finishes what it holds; `/health` stays 200 until HTTP closes, so nothing restarts a draining pod.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';

const Check = Type.Object({
  status: Type.Union([Type.Literal('up'), Type.Literal('down')]),
  detail: Type.Optional(Type.String()),
});
const Ready = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not-ready'), Type.Literal('draining')]),
  checks: Type.Object({ fhir: Check, redis: Check, profiles: Check }),
});

/** How long `/ready` waits on any one check before it calls it down (an orchestrator's probe waits ~1-5 s). */
export const READY_TIMEOUT_MS = 2000;

type CheckResult = { status: 'up' } | { status: 'down'; detail: string };

/** The check's result, or `down` when it fails or has not answered within READY_TIMEOUT_MS. */
async function bounded(check: Promise<CheckResult>, what: string): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(
      () => resolve({ status: 'down', detail: `${what} did not answer within ${READY_TIMEOUT_MS} ms` }),
      READY_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([
      check.catch((e: unknown) => ({
        status: 'down' as const,
        detail: e instanceof Error ? e.message : 'unreachable',
      })),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

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
      if (app.lifecycle.draining) {
        const down = { status: 'down' as const, detail: 'shutting down' };
        return reply
          .code(503)
          .send({ status: 'draining', checks: { fhir: down, redis: down, profiles: down } });
      }
      // Every check has the same deadline, and they run side by side: a FHIR server that accepts connections
      // and never answers (stopped, overloaded), a token endpoint that hangs or a Redis that is away cannot hold
      // the answer past READY_TIMEOUT_MS (nor do retries: the client stops once the deadline has passed).
      const signal = AbortSignal.timeout(READY_TIMEOUT_MS);
      const [fhir, redis] = await Promise.all([
        bounded(
          app.fhir
            .capabilities({ timeoutMs: READY_TIMEOUT_MS, signal })
            .then(() => ({ status: 'up' as const })),
          'the FHIR server',
        ),
        bounded(
          app.redis
            .ping(READY_TIMEOUT_MS)
            .then((ok) => (ok ? { status: 'up' as const } : { status: 'down' as const, detail: 'no PONG' })),
          'Redis',
        ),
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
