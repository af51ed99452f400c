/**
 * Infrastructure decorators: the config, the FHIR port and the Redis connections, each made once per app and
 * closed in `onClose` (Fastify closes in reverse registration order, so routes drain before Redis goes).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../config/config.js';
import { FhirClient, type FhirPort } from '../../fhir/client.js';
import { createConnections, type RedisConnections } from '../../queues/connections.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    fhir: FhirPort;
    redis: RedisConnections;
  }
}

export interface InfrastructureOptions {
  config: Config;
  /** Inject a FHIR port (e.g. one with extra headers); defaults to a client on FHIR_BASE_URL. */
  fhir?: FhirPort;
}

export default fp<InfrastructureOptions>(
  async function infrastructure(app: FastifyInstance, opts: InfrastructureOptions) {
    app.decorate('config', opts.config);
    app.decorate(
      'fhir',
      opts.fhir ?? new FhirClient({ baseUrl: opts.config.fhirBaseUrl, timeoutMs: opts.config.fhirTimeoutMs }),
    );
    const redis = createConnections(opts.config.redisUrl, opts.config.queuePrefix, opts.config.runWorkers);
    app.decorate('redis', redis);
    app.addHook('onClose', async () => {
      await Promise.all([redis.closeAll(), app.fhir.close()]);
    });
  },
  { name: 'careway-infrastructure' },
);
