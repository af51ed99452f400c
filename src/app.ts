/**
 * buildApp(config): the Fastify application, with plugins registered in a fixed order and nothing else.
 * Tests build it without a port and use `app.inject()`; main.ts builds it and listens.
 *
 * Order: errors and docs first (the docs plugin must see every route), infrastructure (config, FHIR port,
 * Redis, metrics registry), CORS and security headers, auth, then the areas, then the routes.
 *
 * CAREWAY_ROLES without `api`: the same plugins and areas, and only the operational routes (`/health`, `/ready`,
 * `/metrics`), which every process serves for its probes and for Prometheus.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Config } from './config/config.js';
import type { FhirPort } from './fhir/client.js';
import errors from './http/plugins/errors.js';
import docs from './http/plugins/docs.js';
import infrastructure from './http/plugins/infrastructure.js';
import auth from './http/plugins/auth.js';
import rateLimits from './http/plugins/rate-limits.js';
import metrics from './http/plugins/metrics.js';
import profiles from './http/plugins/profiles.js';
import requestLog from './http/plugins/request-log.js';
import structure from './http/plugins/structure.js';
import web from './http/plugins/web.js';
import healthRoutes from './http/routes/health.js';
import smartRoutes from './http/routes/smart.js';
import fhirRoutes from './http/routes/fhir.js';
import fhirWriteRoutes from './http/routes/fhir-writes.js';
import journeyRoutes, { JOURNEY_OPERATIONS } from './http/routes/journeys.js';
import areas from './http/plugins/areas.js';
import audit from './http/plugins/audit.js';
import engagementRoutes from './http/routes/engagement.js';
import schedulingRoutes, { SCHEDULING_OPERATIONS } from './http/routes/scheduling.js';
import hl7Routes from './http/routes/hl7.js';
import appRoutes from './http/routes/app.js';
import referralRoutes, { REFERRAL_OPERATIONS } from './http/routes/referrals.js';
import taskRoutes, { TASK_OPERATIONS } from './http/routes/tasks.js';
import analyticsRoutes, { ANALYTICS_OPERATIONS } from './http/routes/analytics.js';
import type { TokenVerifier } from './http/auth/verifier.js';
import { VERSION } from './shared/version.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Set when SIGTERM arrives: `/ready` answers 503 from then on, while the process drains (main.ts). */
    lifecycle: { draining: boolean };
  }
}

export interface AppDependencies {
  config: Config;
  /** A pino logger from shared/logger.ts (its redaction must stay the root's). */
  logger: FastifyBaseLogger;
  /** Overrides for tests and benchmarks. */
  fhir?: FhirPort;
  verifier?: TokenVerifier;
}

export async function buildApp(deps: AppDependencies): Promise<FastifyInstance> {
  // HTTP_BODY_LIMIT (1 MiB) bounds every body sized to one resource; the routes that take more set their own
  // `bodyLimit` (bundles: REFERRAL_MAX_BYTES; `POST /hl7`: its ER7 parser, HL7_MAX_FRAME_BYTES × 16).
  const BODY_LIMIT = deps.config.httpBodyLimit;
  const app = Fastify({
    loggerInstance: deps.logger,
    // Fastify's own request log prints the URL with its query string, which can hold PHI
    // (e.g. `Patient?name=`); request-log.ts logs the route pattern instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    return503OnClosing: true,
    // Fastify's default (10 s) for each plugin to load was missed on a loaded 2-core host (chaos runs, benches:
    // starts that failed and had to be retried) while nothing hung. Every wait a plugin makes on Redis or the
    // FHIR server has a bound of its own; this one only catches a plugin that never returns.
    pluginTimeout: 60_000,
    requestIdHeader: 'x-request-id',
    genReqId: () => crypto.randomUUID(),
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false } },
  });

  // Only JSON bodies are accepted (415 otherwise); an edge that needs another type (HL7 ER7) adds its own parser.
  app.removeContentTypeParser('text/plain');
  // FHIR's JSON media type, parsed by the same hardened parser as application/json (prototype poisoning checks).
  app.addContentTypeParser(
    ['application/fhir+json', 'application/json+fhir'],
    { parseAs: 'string', bodyLimit: BODY_LIMIT },
    app.getDefaultJsonParser('error', 'error'),
  );
  // JSON Patch bodies (PATCH of a resource, of a triage Task), parsed the same way.
  app.addContentTypeParser(
    'application/json-patch+json',
    { parseAs: 'string', bodyLimit: BODY_LIMIT },
    app.getDefaultJsonParser('error', 'error'),
  );

  app.decorate('lifecycle', { draining: false });
  await app.register(errors);
  await app.register(docs, { version: VERSION });
  await app.register(infrastructure, { config: deps.config, ...(deps.fhir ? { fhir: deps.fhir } : {}) });
  await app.register(requestLog);
  // CORS before auth: a browser's preflight carries no token.
  await app.register(web);
  await app.register(rateLimits);
  await app.register(auth, deps.verifier ? { verifier: deps.verifier } : {});
  await app.register(metrics);
  // Every FHIR body is checked against the FHIR R4 schema before a route's domain code reads it.
  await app.register(structure);
  await app.register(profiles);
  // The areas, built and wired by the composition root (areas.ts); the routes below adapt HTTP to them.
  await app.register(areas);
  // Every PHI access is recorded before its answer leaves (registered before the routes it watches).
  await app.register(audit);
  await app.register(healthRoutes);
  if (!deps.config.roles.api) return app;
  await app.register(smartRoutes);
  if (!deps.config.pagingSecret)
    app.log.warn(
      'PAGING_SECRET is not set: paging links are signed with a key of this process only, so they fail on other replicas',
    );
  // Before the facade, whose wildcard answers every other POST under /fhir with 405.
  await app.register(analyticsRoutes);
  await app.register(fhirRoutes, {
    version: VERSION,
    operations: [
      ...JOURNEY_OPERATIONS,
      ...REFERRAL_OPERATIONS,
      ...TASK_OPERATIONS,
      ...SCHEDULING_OPERATIONS,
      ...ANALYTICS_OPERATIONS,
    ],
    // Referral intake (ServiceRequest), secure messaging (Communication) and survey intake (QuestionnaireResponse).
    createTypes: ['ServiceRequest', 'Communication', 'QuestionnaireResponse'],
    ...(deps.config.pagingSecret ? { pagingKey: deps.config.pagingSecret } : {}),
  });
  await app.register(fhirWriteRoutes);
  await app.register(journeyRoutes);
  await app.register(referralRoutes);
  await app.register(taskRoutes);
  await app.register(hl7Routes);
  await app.register(schedulingRoutes);
  await app.register(engagementRoutes);
  // The care-team web app (static, public files; its data comes from the routes above with a bearer token).
  await app.register(appRoutes);
  return app;
}
