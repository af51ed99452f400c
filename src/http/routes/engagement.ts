/**
 * Engagement edges:
 * - `POST /engagement/replies`: inbound replies from the SMS provider (and e-mail through the same shape),
 *   signed with HMAC-SHA256 over `<timestamp>.<raw body>` using SMS_WEBHOOK_SECRET; unsigned, badly signed or
 *   stale (over 5 minutes) requests get 401. The route is public to bearer auth because the signature is its
 *   authentication.
 * - `/engagement/fhir-hook`: the FHIR server's REST-hook deliveries (Appointment, CarePlan, Encounter changes),
 *   authenticated by the Subscriptions' bearer secret; they re-plan reminders and queue journey events.
 * - `GET /engagement/dead-letters`: jobs of every queue that failed for good (the registry's dead-letter queues:
 *   HL7 messages, reminders, write-backs, re-plans, journey events, holds, offers, referral callbacks), ids and
 *   reasons only.
 * - `POST /engagement/dead-letters/{queue}/{jobId}/$replay`: the failed job goes back to its queue (admin scope,
 *   logged as an admin action and audited); its dead letter is removed first, so a second replay enqueues nothing.
 * - `/admin/queues`: the BullMQ dashboard (bull-board) over every registered queue: staff tokens read it,
 *   read-only; its actions (pause, clean, obliterate, …) need an admin scope and are logged as admin actions.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Resource } from 'fhir/r4.js';
import { Type } from 'typebox';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { CarewayError } from '../../shared/errors.js';
import { verify } from '../../reminders/channels/sms-webhook.js';
import { HOOK_PATH, HOOKED_TYPES } from '../../reminders/subscription.js';
import { isEventResourceType, type EventResourceType } from '../../journey/resource-events.js';
import { principalOf, requireAdmin, requireUnconfined } from '../plugins/auth.js';
import { FHIR_JSON } from '../plugins/errors.js';
import { confinedPatient } from '../auth/access.js';
import { postMessage } from '../../reminders/messaging.js';
import { submitResponse } from '../../reminders/feedback.js';

const FhirBody = Type.Object({ resourceType: Type.String() }, { additionalProperties: true });

const ReplyBody = Type.Object(
  {
    from: Type.String({ minLength: 3, maxLength: 320 }),
    text: Type.String({ maxLength: 4000 }),
    messageId: Type.String({ minLength: 1, maxLength: 200 }),
    channel: Type.Optional(Type.Union([Type.Literal('sms'), Type.Literal('email')])),
  },
  { additionalProperties: true },
);

export default async function engagementRoutes(app: FastifyInstance): Promise<void> {
  // The signature covers the exact bytes sent: keep the raw body next to the parsed one (this scope only).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'string', bodyLimit: 64 * 1024 },
    (request, body, done) => {
      (request as { rawBody?: string }).rawBody = body as string;
      try {
        done(null, JSON.parse(body as string) as unknown);
      } catch {
        done(new CarewayError('bad-request', 'the body is not valid JSON'), undefined);
      }
    },
  );

  app.post(
    '/engagement/replies',
    {
      config: { public: true },
      schema: {
        tags: ['engagement'],
        summary:
          'Inbound patient replies from the SMS provider (HMAC-signed: x-careway-timestamp, x-careway-signature)',
        body: ReplyBody,
        response: { 200: Type.Object({ outcome: Type.String() }) },
      },
      // The signature is checked before the body is validated, so an unsigned request never learns the schema.
      preValidation: async (request) => {
        const secret = app.config.smsWebhookSecret;
        if (!secret) throw new CarewayError('not-found', 'replies are not configured (SMS_WEBHOOK_SECRET)');
        const raw = (request as { rawBody?: string }).rawBody ?? '';
        const ts = request.headers['x-careway-timestamp'];
        const sig = request.headers['x-careway-signature'];
        if (
          !verify(
            secret,
            typeof ts === 'string' ? ts : undefined,
            typeof sig === 'string' ? sig : undefined,
            raw,
          )
        )
          throw new CarewayError(
            'unauthenticated',
            'the reply is not signed with the configured secret, or is stale',
            {
              headers: { 'WWW-Authenticate': 'HMAC-SHA256' },
            },
          );
      },
    },
    async (request) => {
      const b = request.body as { from: string; text: string; messageId: string; channel?: 'sms' | 'email' };
      const outcome = await app.reminders.reply({
        channel: b.channel ?? (b.from.includes('@') ? 'email' : 'sms'),
        from: b.from.trim(),
        text: b.text,
        messageId: b.messageId,
      });
      return { outcome };
    },
  );

  // The FHIR server's REST-hooks (one Subscription per type, reminders/subscription.ts): HAPI PUTs each changed
  // resource to `<endpoint>/<type>/<id>` (and POSTs to the endpoint itself when there is no payload).
  // Authenticated by the bearer secret the Subscriptions carry.
  const hook =
    (urlType: EventResourceType | undefined) =>
    async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      const secret = app.config.reminders.webhook?.secret;
      const given = request.headers.authorization ?? '';
      const expected = `Bearer ${secret ?? ''}`;
      if (
        !secret ||
        given.length !== expected.length ||
        !timingSafeEqual(Buffer.from(given), Buffer.from(expected))
      )
        throw new CarewayError('unauthenticated', 'the FHIR server hook needs its bearer secret');
      const { id } = (request.params as { id?: string }) ?? {};
      const body = request.body as (Resource & { resourceType?: string }) | undefined;
      // The URL names the type; a POST to the endpoint itself names it only in its body (Appointment when
      // the body has none, as the first, Appointment-only subscription delivered).
      const type = urlType ?? body?.resourceType ?? 'Appointment';
      const resourceId = id ?? body?.id;
      if (isEventResourceType(type) && resourceId && /^[A-Za-z0-9\-.]{1,64}$/.test(resourceId))
        await app.reminders.fhirChanged(type, resourceId, body);
      // Without a payload there is nothing to name: the next sweep picks the change up.
      return reply
        .code(200)
        .type(FHIR_JSON)
        .send(request.body ?? {});
    };
  app.route({
    method: ['POST', 'PUT'],
    url: HOOK_PATH,
    config: { public: true },
    schema: {
      tags: ['engagement'],
      summary: `The FHIR server's REST-hook for ${HOOKED_TYPES.join(', ')} changes`,
    },
    handler: hook(undefined),
  });
  for (const type of HOOKED_TYPES)
    for (const url of [`${HOOK_PATH}/${type}`, `${HOOK_PATH}/${type}/:id`])
      app.route({
        method: ['POST', 'PUT'],
        url,
        config: { public: true },
        schema: {
          tags: ['engagement'],
          summary: `The FHIR server's REST-hook for ${type} changes`,
          hide: true,
        },
        handler: hook(type),
      });

  app.get(
    '/engagement/dead-letters',
    {
      schema: {
        tags: ['engagement'],
        summary:
          'Jobs of every queue that failed for good, ids and reasons only (user/ or system/ Communication.r)',
        security: [{ bearer: [] }],
        response: {
          200: Type.Object({
            deadLetters: Type.Array(
              Type.Object({
                queue: Type.String(),
                id: Type.String(),
                data: Type.Record(Type.String(), Type.Unknown()),
                at: Type.String(),
              }),
            ),
          }),
        },
      },
    },
    async (request) => {
      requireUnconfined(request, 'Communication', 'r');
      const rows = [];
      for (const q of app.areas.queues.deadLetterQueues()) {
        for (const j of await q.getJobs(['waiting', 'completed', 'failed', 'delayed'], 0, 199, false))
          rows.push({
            queue: q.name,
            id: j.id ?? '',
            data: j.data as Record<string, unknown>,
            at: new Date(j.timestamp).toISOString(),
          });
      }
      return { deadLetters: rows };
    },
  );

  app.post(
    '/engagement/dead-letters/:queue/:jobId/$replay',
    {
      schema: {
        tags: ['engagement'],
        summary:
          'Move a dead-lettered job back to its queue (scope: careway.admin); a second replay enqueues nothing',
        security: [{ bearer: [] }],
        params: Type.Object({
          queue: Type.String({ pattern: '^[a-z0-9-]{1,80}$' }),
          jobId: Type.String({ pattern: '^[A-Za-z0-9:_.-]{1,200}$' }),
        }),
        response: {
          202: Type.Object({ queue: Type.String(), id: Type.String(), status: Type.String() }),
          '4xx': FhirBody,
          '5xx': FhirBody,
        },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
      const { queue, jobId } = request.params as { queue: string; jobId: string };
      const r = await app.areas.queues.replayDeadLetter(queue, jobId);
      // Logged as the dashboard's actions are: who, which route pattern, which queue (ids only).
      request.log.info(
        {
          subject: principalOf(request).subject,
          route: request.routeOptions.url,
          queue,
          outcome: r.outcome,
        },
        'admin action',
      );
      switch (r.outcome) {
        case 'unknown-queue':
          throw new CarewayError('not-found', `no queue with dead letters is named ${queue}`);
        case 'not-found':
          throw new CarewayError('not-found', `no dead letter ${jobId} in ${queue}`);
        case 'gone':
          throw new CarewayError(
            'conflict',
            `the job behind dead letter ${jobId} is past its queue's retention and cannot run again`,
          );
        case 'replayed':
        case 'already-replayed':
          return reply.code(202).send({
            queue: r.queue,
            id: r.id,
            status: r.outcome === 'replayed' ? 'queued' : 'already-replayed',
          });
      }
    },
  );

  app.post(
    '/fhir/Communication',
    {
      schema: {
        tags: ['engagement'],
        summary: 'Send a secure message (a Communication in a thread; scope: Communication.c)',
        security: [{ bearer: [] }],
        body: FhirBody,
        response: { 200: FhirBody, 201: FhirBody, '4xx': FhirBody },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const confinedTo = confinedPatient(principal, 'Communication', 'c');
      const r = await postMessage(
        {
          fhir: app.fhir,
          notify: (recipient, id) =>
            app.reminders.enqueueNotify({
              kind: 'message-notification',
              recipient,
              about: `Communication/${id}`,
            }),
        },
        request.body,
        {
          ...(confinedTo ? { patient: confinedTo } : {}),
          ...(principal.fhirUser ? { fhirUser: principal.fhirUser } : {}),
        },
      );
      return reply
        .code(r.created ? 201 : 200)
        .type(FHIR_JSON)
        .send(r.communication);
    },
  );

  app.post(
    '/fhir/QuestionnaireResponse',
    {
      schema: {
        tags: ['engagement'],
        summary: 'Submit a survey answer, linked to the journey (scope: QuestionnaireResponse.c)',
        security: [{ bearer: [] }],
        body: FhirBody,
        response: { 200: FhirBody, 201: FhirBody, '4xx': FhirBody },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const confinedTo = confinedPatient(principal, 'QuestionnaireResponse', 'c');
      const r = await submitResponse(
        { fhir: app.fhir, journeysOf: (id) => app.journeys.journeysOf(id) },
        request.body,
        confinedTo,
      );
      return reply
        .code(r.created ? 201 : 200)
        .type(FHIR_JSON)
        .send(r.response);
    },
  );

  // The dashboard: every route under /admin/queues needs a staff token (bearer auth runs first). Reading is
  // for staff (user/ or system/ Communication.r); every action that changes a queue (any method but GET/HEAD:
  // pause, resume, retry, promote, clean, empty, obliterate, add, edit) needs an admin scope
  // (`system/careway.admin` or `user/careway.admin`, scopes.ts ADMIN_SCOPES), and is logged as an admin action.
  await app.register(async (admin) => {
    const mutating = (request: FastifyRequest): boolean =>
      request.method !== 'GET' && request.method !== 'HEAD';
    // Answered here, not thrown: bull-board's own error handler would turn an auth failure into a 500.
    admin.addHook('onRequest', async (request, reply) => {
      try {
        await app.authenticate(request);
        if (mutating(request)) requireAdmin(request);
        else if (!principalOf(request).admin) requireUnconfined(request, 'Communication', 'r');
      } catch (e) {
        const err =
          e instanceof CarewayError ? e : new CarewayError('unauthenticated', 'a bearer token is required');
        return reply.code(err.status).headers(err.headers).type(FHIR_JSON).send(err.toOperationOutcome());
      }
    });
    // Every admin action, allowed or refused, after its answer: who, which route pattern, which queue (no PHI).
    admin.addHook('onResponse', async (request, reply) => {
      if (!mutating(request) || !request.principal) return;
      const queue = (request.params as { queueName?: string } | undefined)?.queueName;
      request.log.info(
        {
          subject: request.principal.subject,
          method: request.method,
          route: request.routeOptions.url,
          ...(queue ? { queue } : {}),
          status: reply.statusCode,
        },
        reply.statusCode === 403 ? 'admin action refused' : 'admin action',
      );
    });
    // Readers get the board read-only: bull-board's UI offers a queue's actions by its `readOnlyMode` and
    // `allowRetries`, so they are turned off in the queue list a reader is sent (the server refuses the
    // actions anyway, above).
    admin.addHook('onSend', async (request, _reply, payload) => {
      if (request.principal?.admin || request.routeOptions.url !== '/admin/queues/api/queues') return payload;
      if (typeof payload !== 'string') return payload;
      try {
        const body = JSON.parse(payload) as { queues?: Record<string, unknown>[] };
        for (const q of body.queues ?? [])
          Object.assign(q, { readOnlyMode: true, allowRetries: false, allowCompletedRetries: false });
        return JSON.stringify(body);
      } catch {
        return payload;
      }
    });
    const adapter = new FastifyAdapter();
    adapter.setBasePath('/admin/queues');
    createBullBoard({
      // Every queue and dead-letter queue the registry holds: a queue added there shows up here.
      queues: app.areas.queues.bullQueues().map((q) => new BullMQAdapter(q)),
      serverAdapter: adapter,
    });
    await admin.register(adapter.registerPlugin(), { prefix: '/admin/queues' });
  });
}
