/**
 * Infrastructure decorators: the config, the FHIR port, the Redis connections and the metrics registry, each
 * made once per app; the first two are closed in `onClose` (Fastify closes in reverse registration order, so
 * routes drain and the areas close before Redis goes). The metrics registry is per app, so tests can build
 * several apps in one process.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Config } from '../../config/config.js';
import type { FhirPort } from '../../fhir/client.js';
import { createFhirClient } from '../../config/fhir-client.js';
import { createConnections, type RedisConnections } from '../../queues/connections.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    fhir: FhirPort;
    redis: RedisConnections;
    metrics: Registry;
  }
}

export interface InfrastructureOptions {
  config: Config;
  /** Inject a FHIR port (tests, benchmarks); defaults to the configured client on FHIR_BASE_URL. */
  fhir?: FhirPort;
}

export default fp<InfrastructureOptions>(
  async function infrastructure(app: FastifyInstance, opts: InfrastructureOptions) {
    app.decorate('config', opts.config);
    // FHIR_AUTH / FHIR_TLS_* decide how Careway presents itself to the FHIR server (config/fhir-client.ts).
    app.decorate('fhir', opts.fhir ?? createFhirClient(opts.config));
    const redis = createConnections(opts.config.redis, opts.config.queuePrefix, opts.config.runWorkers);
    app.decorate('redis', redis);
    const metrics = new Registry();
    metrics.setDefaultLabels({ service: 'careway' });
    collectDefaultMetrics({ register: metrics });
    app.decorate('metrics', metrics);
    app.addHook('onClose', async () => {
      await Promise.all([redis.closeAll(), app.fhir.close()]);
    });
  },
  { name: 'careway-infrastructure' },
);
