/**
 * One log line per request with ids and the route pattern only. The concrete URL is not logged: resource
 * ids are fine, but query strings carry search values such as names and birth dates.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';

export default fp(
  async function requestLog(app: FastifyInstance) {
    app.addHook('onResponse', async (request, reply) => {
      request.log.info(
        {
          method: request.method,
          route: request.routeOptions.url ?? 'unmatched',
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 10) / 10,
          sub: request.principal?.subject,
        },
        'request completed',
      );
    });
  },
  { name: 'careway-request-log' },
);
