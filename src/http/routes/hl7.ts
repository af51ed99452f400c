/**
 * `POST /hl7`: an ER7 body (one message or an FHS/BHS batch) through the same intake as MLLP; the response
 * is the ACK (one per message, in order). HTTP status follows the worst ACK: 200 accepted, 400 rejected (AR),
 * 422 readable but not mappable (AE with ERR: fix the message, resending it will not help), 503 not stored
 * (AE: resend later).
 *
 * `GET /hl7/authorities`: the assigning-authority registry in use and the namespaces that fell back to the
 * default rule (with message counts), so a site sees which to configure.
 *
 * `GET /hl7/messages`: the latest inbound messages with status, type, sender and time; no PHI. Filters: `mrn`
 * (matched through keyed hashes, hl7/mrn-index.ts), `controlId`, `type`, `sender`, `status`.
 *
 * `GET /hl7/messages/{id}`: one message, its ACK and the resources it wrote; `raw` (the decrypted ER7) only for a
 * token with `careway.hl7.raw` (scopes.ts HL7_RAW_SCOPES), and that read is named in its audit event.
 *
 * `GET /hl7/outbound`: the latest messages sent to the EHR (HL7_OUTBOUND_URL): the change, its trigger, MSH-10,
 * state, attempts and the EHR's answer; no PHI.
 *
 * Scope: a user/ or system/ token with `MessageHeader.c` (send) or `MessageHeader.r` (list, detail).
 */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { principalOf, requireUnconfined } from '../plugins/auth.js';
import { MESSAGE_STATES, type MessageFilter } from '../../hl7/message-log.js';

const FhirBody = Type.Object({ resourceType: Type.String() }, { additionalProperties: true });
import { CarewayError } from '../../shared/errors.js';

const ER7_TYPES = ['x-application/hl7-v2+er7', 'application/hl7-v2', 'text/plain'];

export default async function hl7Routes(app: FastifyInstance): Promise<void> {
  // Encapsulated to this plugin: only /hl7 takes ER7 bodies.
  app.addContentTypeParser(
    ER7_TYPES,
    { parseAs: 'buffer', bodyLimit: app.config.hl7.maxFrameBytes * 16 },
    (_req, body, done) => done(null, body),
  );

  app.post(
    '/hl7',
    {
      schema: {
        tags: ['hl7'],
        summary: 'Send HL7 v2 (ER7) messages; the response is the ACK(s)',
        security: [{ bearer: [] }],
        consumes: ER7_TYPES,
        produces: ['x-application/hl7-v2+er7'],
      },
    },
    async (request, reply) => {
      requireUnconfined(request, 'MessageHeader', 'c');
      const body = request.body as Buffer;
      const results = await app.hl7.receive(Buffer.isBuffer(body) ? body : Buffer.from(String(body)), 'http');
      const failed = results.filter((r) => r.code === 'AE' || r.code === 'CE');
      const status = failed.some((r) => !r.invalid)
        ? 503
        : failed.length
          ? 422
          : results.some((r) => r.code === 'AR' || r.code === 'CR')
            ? 400
            : 200;
      const text = results.map((r) => r.ack ?? '').join('');
      return reply.code(status).type('x-application/hl7-v2+er7; charset=utf-8').send(text);
    },
  );

  const Listing = Type.Object({
    messages: Type.Array(
      Type.Object({
        id: Type.String(),
        type: Type.String(),
        sender: Type.String(),
        controlId: Type.String(),
        receivedAt: Type.String(),
        status: Type.String(),
        error: Type.Optional(Type.String()),
      }),
    ),
  });

  app.get(
    '/hl7/messages',
    {
      schema: {
        tags: ['hl7'],
        summary:
          'Latest inbound HL7 messages (no PHI): status, type, sender, time; searchable by MRN, control id, type, sender and status',
        security: [{ bearer: [] }],
        querystring: Type.Object(
          {
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
            mrn: Type.Optional(
              Type.String({
                minLength: 1,
                maxLength: 100,
                description: 'a PID-3 identifier (matched by keyed hash)',
              }),
            ),
            controlId: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'MSH-10' })),
            type: Type.Optional(
              Type.String({ pattern: '^[A-Z0-9]{3}(\\^[A-Z0-9]{3})?$', description: 'e.g. ADT or ADT^A04' }),
            ),
            sender: Type.Optional(
              Type.String({ minLength: 1, maxLength: 400, description: 'MSH-3^MSH-4 as listed' }),
            ),
            status: Type.Optional(
              Type.Union(
                MESSAGE_STATES.map((s) => Type.Literal(s)),
                { description: 'failed = dead-lettered' },
              ),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: Listing },
      },
    },
    async (request) => {
      requireUnconfined(request, 'MessageHeader', 'r');
      const { limit = 100, ...filter } = request.query as MessageFilter & { limit?: number };
      return { messages: await app.hl7.log.list(filter, limit) };
    },
  );

  const Detail = Type.Object({
    id: Type.String(),
    controlId: Type.String(),
    type: Type.String(),
    sender: Type.String(),
    status: Type.String(),
    receivedAt: Type.String(),
    ack: Type.String(),
    resources: Type.Array(Type.String()),
    error: Type.Optional(Type.String()),
    raw: Type.Optional(Type.String()),
  });

  app.get(
    '/hl7/messages/:id',
    {
      schema: {
        tags: ['hl7'],
        summary:
          'One inbound HL7 message: ids, status, ACK and the resources it wrote; the raw ER7 only with careway.hl7.raw (scope: MessageHeader.r)',
        security: [{ bearer: [] }],
        params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9-]{1,80}$' }) }),
        response: { 200: Detail, '4xx': FhirBody, '5xx': FhirBody },
      },
    },
    async (request) => {
      requireUnconfined(request, 'MessageHeader', 'r');
      const principal = principalOf(request);
      const { id } = request.params as { id: string };
      const withRaw = principal.hl7Raw === true;
      const detail = await app.hl7.log.detail(id, withRaw);
      if (!detail) throw new CarewayError('not-found', `no inbound message ${id} (or past its retention)`);
      // The raw text is everything the EHR sent about the patient: its disclosure is named in the audit event.
      if (detail.raw !== undefined) request.auditDetail = 'HL7 v2 raw message read';
      return detail;
    },
  );

  const OutboundListing = Type.Object({
    messages: Type.Array(
      Type.Object({
        id: Type.String(),
        appointment: Type.String(),
        change: Type.String(),
        trigger: Type.String(),
        controlId: Type.String(),
        queuedAt: Type.String(),
        status: Type.String(),
        attempts: Type.Integer(),
        ack: Type.Optional(Type.String()),
        error: Type.Optional(Type.String()),
      }),
    ),
  });

  app.get(
    '/hl7/outbound',
    {
      schema: {
        tags: ['hl7'],
        summary:
          'Latest outbound HL7 messages to the EHR (no PHI): change, trigger, control id, state, attempts, ACK',
        security: [{ bearer: [] }],
        querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) }),
        response: { 200: OutboundListing },
      },
    },
    async (request) => {
      requireUnconfined(request, 'MessageHeader', 'r');
      const { limit = 100 } = request.query as { limit?: number };
      return { messages: await app.hl7.outboundMessages(limit) };
    },
  );

  const Authorities = Type.Object({
    default: Type.String(),
    configured: Type.Array(Type.Object({ namespace: Type.String(), system: Type.String() })),
    defaulted: Type.Array(
      Type.Object({
        namespace: Type.String(),
        system: Type.String(),
        messages: Type.Integer(),
        lastSeen: Type.String(),
      }),
    ),
  });

  app.get(
    '/hl7/authorities',
    {
      schema: {
        tags: ['hl7'],
        summary:
          'Assigning authorities: the registry in use, and the namespaces that fell back to the default rule (configure them in authorities.yaml)',
        security: [{ bearer: [] }],
        response: { 200: Authorities },
      },
    },
    async (request) => {
      requireUnconfined(request, 'MessageHeader', 'r');
      const registry = app.hl7.mapper.authorities;
      return {
        default: registry.default,
        configured: [...registry.namespaces].map(([namespace, system]) => ({ namespace, system })),
        defaulted: await app.hl7.defaultedAuthorities(),
      };
    },
  );

  app.post(
    '/hl7/messages/:id/$replay',
    {
      schema: {
        tags: ['hl7'],
        summary:
          'Process a failed (dead-lettered) message again, after its cause was fixed (scope: MessageHeader.c)',
        security: [{ bearer: [] }],
        params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9-]{1,80}$' }) }),
        response: { 202: Type.Object({ id: Type.String(), status: Type.String() }) },
      },
    },
    async (request, reply) => {
      requireUnconfined(request, 'MessageHeader', 'c');
      const { id } = request.params as { id: string };
      const job = await app.hl7.queue.getJob(id);
      if (!job) throw new CarewayError('not-found', `no inbound message ${id}`);
      const state = await job.getState();
      if (state !== 'failed') {
        throw new CarewayError(
          'conflict',
          `message ${id} is ${state}; only failed messages are replayed (a processed one would change nothing)`,
        );
      }
      // The same job, same sealed message and same Provenance id: a replay that succeeds writes what the first
      // run would have, and a second replay is refused above.
      await job.retry('failed');
      return reply.code(202).send({ id, status: 'queued' });
    },
  );
}
