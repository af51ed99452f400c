/**
 * The one error handler: every error leaving a route becomes an OperationOutcome with the right status.
 *
 * - CarewayError → its registry status and issue code;
 * - FhirError from the FHIR server → the server's OperationOutcome for 4xx (it describes the caller's
 *   request); 502/504 for 5xx, network failures and timeouts (the caller did nothing wrong, and the
 *   upstream's internals are not echoed);
 * - Fastify validation and parser errors → 400/413/415;
 * - anything else → 500 with a generic message; details go to the log by id, never to the caller.
 */
import fp from 'fastify-plugin';
import type { FastifyError, FastifyInstance } from 'fastify';
import { CarewayError, operationOutcome } from '../../shared/errors.js';
import { FhirError } from '../../fhir/errors.js';

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

export function toCarewayError(error: unknown): CarewayError | FhirError {
  if (error instanceof CarewayError || error instanceof FhirError) return error;
  const fe = error as Partial<FastifyError> & { validation?: unknown };
  // Not every thrown error's `code` is a string (ioredis and BullMQ throw some with numbers); reading it as one
  // made the error handler itself throw, and the client got Fastify's serialization 500 instead of an outcome.
  const code = typeof fe.code === 'string' ? fe.code : undefined;
  if (fe.validation) return new CarewayError('bad-request', fe.message ?? 'request is invalid');
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return new CarewayError('unsupported-media-type', 'send application/fhir+json or application/json');
  }
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return new CarewayError('payload-too-large', 'request body is too large');
  if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return new CarewayError('bad-request', 'request body is empty');
  if (code?.startsWith('FST_ERR_CTP') || (error instanceof SyntaxError && fe.statusCode === 400)) {
    return new CarewayError('bad-request', 'request body is not valid JSON');
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new CarewayError('bad-request', fe.message ?? 'bad request');
  }
  return new CarewayError('internal', 'internal error', { cause: error });
}

export default fp(
  async function errorHandler(app: FastifyInstance) {
    app.setErrorHandler(async (error, request, reply) => {
      const e = toCarewayError(error);
      if (e instanceof FhirError) {
        if (e.kind === 'http' && e.status >= 400 && e.status < 500 && e.status !== 401 && e.status !== 403) {
          request.log.info({ fhirStatus: e.status, path: e.path }, 'FHIR server rejected the request');
          return reply
            .code(e.status)
            .type(FHIR_JSON)
            .send(e.outcome ?? operationOutcome('error', 'processing', `FHIR server answered ${e.status}`));
        }
        // 401/403 from the FHIR server means *our* credentials to it are wrong: a server-side problem.
        request.log.error({ err: e, fhirStatus: e.status, kind: e.kind }, 'FHIR server failure');
        const timeout = e.kind === 'timeout';
        return reply
          .code(timeout ? 504 : 502)
          .type(FHIR_JSON)
          .send(
            operationOutcome(
              'error',
              timeout ? 'timeout' : 'transient',
              timeout ? 'the FHIR server did not answer in time' : 'the FHIR server is unavailable',
              timeout ? 'upstream-timeout' : 'upstream-unavailable',
            ),
          );
      }
      if (e.status >= 500) request.log.error({ err: e.cause ?? e, code: e.code }, 'request failed');
      else request.log.info({ code: e.code, status: e.status }, 'request refused');
      for (const [k, v] of Object.entries(e.headers)) void reply.header(k, v);
      return reply.code(e.status).type(FHIR_JSON).send(e.toOperationOutcome());
    });

    app.setNotFoundHandler(async (request, reply) => {
      return reply
        .code(404)
        .type(FHIR_JSON)
        .send(
          operationOutcome(
            'error',
            'not-found',
            `no route for ${request.method} ${request.url.split('?')[0] ?? ''}`,
            'not-found',
          ),
        );
    });
  },
  { name: 'careway-errors' },
);
