/**
 * Prometheus metrics (prom-client) on the app's registry (infrastructure plugin): the HTTP request histogram
 * and `GET /metrics`.
 * Labels use the route pattern (`/fhir/:type/:id`), never the concrete URL: ids and query strings would
 * leak identifiers into the metrics store and explode cardinality.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { Histogram } from 'prom-client';
import { requireUnconfined } from './auth.js';

export default fp(
  async function metrics(app: FastifyInstance) {
    const registry = app.metrics;
    const duration = new Histogram({
      name: 'careway_http_request_duration_seconds',
      help: 'HTTP request duration by method, route pattern and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    });

    app.addHook('onResponse', async (request, reply) => {
      duration.observe(
        {
          method: request.method,
          route: request.routeOptions.url ?? 'unmatched',
          status: String(reply.statusCode),
        },
        reply.elapsedTime / 1000,
      );
    });

    app.get(
      '/metrics',
      {
        schema: {
          tags: ['operations'],
          summary: 'Prometheus metrics (needs a user/ or system/ token)',
          security: [{ bearer: [] }],
        },
      },
      async (request, reply) => {
        // Metrics are operational data, not patient data, but they are not for patient-context tokens.
        requireUnconfined(request, 'metrics', 'r');
        return reply.type(registry.contentType).send(await registry.metrics());
      },
    );
  },
  { name: 'careway-metrics', dependencies: ['careway-infrastructure', 'careway-auth'] },
);
