/**
 * Referral intake in the three shapes referral systems use, and the triage operations. Routes are adapters:
 * they check scopes, read the envelope into a Submission, and call the referral service.
 *
 * Scopes: intake needs `ServiceRequest.c` (and `Patient.c` when the bundle carries the Patient) from a
 * system/ or user/ token; triage needs `Task.u`. Patient-context tokens cannot submit or triage referrals.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Bundle, MessageHeader, Task } from 'fhir/r4.js';
import { Type } from 'typebox';
import { CarewayError } from '../../shared/errors.js';
import { readParameters } from '../../fhir/parameters.js';
import type { CarewayOperation } from '../../fhir/facade.js';
import { CANONICAL_BASE } from '../../fhir/canonical.js';
import { readMessage, readSingle, readTransaction, type ReadResult } from '../../referrals/submission.js';
import { rejectProblems, type IntakeResult, type TriageAction } from '../../referrals/service.js';
import { decide, type Permission } from '../auth/scopes.js';
import type { Principal } from '../auth/verifier.js';
import { principalOf } from '../plugins/auth.js';
import { FHIR_JSON } from '../plugins/errors.js';

export const REFERRAL_OPERATIONS: CarewayOperation[] = [
  {
    name: 'process-message',
    definition: 'http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message',
    documentation:
      'POST a referral message Bundle (MessageHeader → Task → ServiceRequest). Starts a journey.',
  },
  ...(['accept', 'reject', 'start', 'complete'] as const).map((a) => ({
    name: a,
    definition: `${CANONICAL_BASE}/OperationDefinition/Task-${a}`,
    resourceType: 'Task',
    documentation: `POST Task/[id]/$${a}${a === 'reject' ? ' Parameters(reason: string, required)' : ' Parameters(reason?: string)'}: triage the referral; the journey follows and the referrer is told.`,
  })),
];

const FhirBody = Type.Object({ resourceType: Type.String() }, { additionalProperties: true });
const fhirResponses = { 200: FhirBody, 201: FhirBody, '4xx': FhirBody, '5xx': FhirBody };

function forbidden(message: string): CarewayError {
  return new CarewayError('insufficient-scope', message, {
    headers: { 'WWW-Authenticate': 'Bearer error="insufficient_scope"' },
  });
}

function requireScope(principal: Principal, type: string, permission: Permission): void {
  const d = decide(principal.scopes, type, permission);
  if (!d.allowed) throw forbidden(`${d.reason}; a scope like system/${type}.${permission} is needed`);
  if (d.compartmentOnly) throw forbidden('patient-context tokens cannot submit or triage referrals');
}

function actorOf(principal: Principal) {
  return { subject: principal.subject, ...(principal.fhirUser ? { fhirUser: principal.fhirUser } : {}) };
}

export default async function referralRoutes(app: FastifyInstance): Promise<void> {
  const limits = { maxEntries: app.config.referrals.maxEntries };
  const base = (request: FastifyRequest): string => `${request.protocol}://${request.host}/fhir`;

  const intake = async (request: FastifyRequest, read: ReadResult): Promise<IntakeResult> => {
    const principal = principalOf(request);
    requireScope(principal, 'ServiceRequest', 'c');
    if (!read.ok) throw rejectProblems(read.problems);
    if (read.submission.patient) requireScope(principal, 'Patient', 'c');
    return app.referrals.intake(read.submission, actorOf(principal));
  };

  const bodyLimit = app.config.referrals.maxBytes;
  app.post(
    '/fhir',
    {
      bodyLimit,
      schema: {
        tags: ['referrals'],
        summary: 'Submit a referral as a transaction Bundle (scope: system/ServiceRequest.c, Patient.c)',
        security: [{ bearer: [] }],
        body: FhirBody,
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const result = await intake(request, readTransaction(request.body, limits));
      const b = base(request);
      for (const e of result.response.entry ?? [])
        if (e.response?.location) e.response.location = `${b}/${e.response.location}`;
      return reply.code(200).type(FHIR_JSON).send(result.response);
    },
  );

  app.post(
    '/fhir/$process-message',
    {
      bodyLimit,
      schema: {
        tags: ['referrals'],
        summary: 'Submit a referral as a message Bundle (BSeR style)',
        security: [{ bearer: [] }],
        body: FhirBody,
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const read = readMessage(request.body, limits);
      const result = await intake(request, read);
      const b = base(request);
      const incoming = read.ok ? read.submission : undefined;
      const header: MessageHeader = {
        resourceType: 'MessageHeader',
        id: crypto.randomUUID(),
        eventCoding: {
          system: incoming?.event?.system ?? `${CANONICAL_BASE}/CodeSystem/message-event`,
          code: incoming?.event?.code ?? 'referral',
        },
        source: { name: 'Careway', endpoint: b },
        response: { identifier: incoming?.messageId ?? 'unknown', code: 'ok' },
        focus: [
          { reference: `ServiceRequest/${result.serviceRequest.id}` },
          { reference: `Task/${result.task.id}` },
          { reference: `EpisodeOfCare/${result.episode.id}` },
        ],
      };
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'message',
        timestamp: new Date().toISOString(),
        entry: [
          { fullUrl: `urn:uuid:${header.id}`, resource: header },
          { fullUrl: `${b}/ServiceRequest/${result.serviceRequest.id}`, resource: result.serviceRequest },
          { fullUrl: `${b}/Task/${result.task.id}`, resource: result.task },
          { fullUrl: `${b}/EpisodeOfCare/${result.episode.id}`, resource: result.episode },
        ],
      };
      return reply.code(200).type(FHIR_JSON).send(bundle);
    },
  );

  app.post(
    '/fhir/ServiceRequest',
    {
      bodyLimit,
      schema: {
        tags: ['referrals'],
        summary: 'Submit a single referral whose subject exists (scope: system/ServiceRequest.c)',
        security: [{ bearer: [] }],
        body: FhirBody,
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const result = await intake(request, readSingle(request.body));
      const sr = result.serviceRequest;
      return reply
        .code(result.outcome === 'created' ? 201 : 200)
        .header('location', `${base(request)}/ServiceRequest/${sr.id}/_history/${sr.meta?.versionId ?? '1'}`)
        .header('x-careway-journey', `EpisodeOfCare/${result.episode.id}`)
        .type(FHIR_JSON)
        .send(sr);
    },
  );

  const triage = (action: TriageAction) => async (request: FastifyRequest, reply: FastifyReply) => {
    const principal = principalOf(request);
    requireScope(principal, 'Task', 'u');
    const { id } = request.params as { id: string };
    const body = request.body ?? { resourceType: 'Parameters' };
    const p = readParameters(
      body,
      { reason: { kind: 'valueString', required: action === 'reject' } },
      `$${action}`,
    );
    const task = await app.referrals.triage(id, action, p.reason, actorOf(principal));
    return reply.code(200).type(FHIR_JSON).send(task);
  };
  // Triage through plain FHIR writes, for systems that do not call operations: PUT of the Task with a new
  // status, or a JSON Patch of /status. Only status and statusReason may change this way.
  const ACTION_FOR: Record<string, TriageAction> = {
    accepted: 'accept',
    rejected: 'reject',
    'in-progress': 'start',
    completed: 'complete',
  };
  const triageTo = async (
    request: FastifyRequest,
    id: string,
    status: unknown,
    reason: string | undefined,
  ): Promise<Task> => {
    const principal = principalOf(request);
    requireScope(principal, 'Task', 'u');
    const current = await app.referrals.readTask(id);
    const ifMatch = request.headers['if-match'];
    if (
      typeof ifMatch === 'string' &&
      ifMatch.replace(/^W\//, '').replace(/"/g, '') !== current.meta?.versionId
    ) {
      throw new CarewayError(
        'conflict',
        `If-Match ${ifMatch} does not match the current version ${current.meta?.versionId ?? '?'}`,
      );
    }
    const action = typeof status === 'string' ? ACTION_FOR[status] : undefined;
    if (!action) {
      if (status === current.status) return current;
      throw new CarewayError(
        'rule-violation',
        `rule triage-transition: status must become one of ${Object.keys(ACTION_FOR).join(', ')}`,
        {
          detailsCode: 'triage-transition',
        },
      );
    }
    return app.referrals.triage(id, action, reason, actorOf(principal));
  };

  app.put(
    '/fhir/Task/:id',
    {
      schema: {
        tags: ['referrals'],
        summary: 'Triage by updating the Task status (scope: Task.u); other fields cannot change here',
        security: [{ bearer: [] }],
        params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9\\-.]{1,64}$' }) }),
        body: FhirBody,
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const body = request.body as Task;
      if (body.resourceType !== 'Task' || (body.id !== undefined && body.id !== id)) {
        throw new CarewayError('bad-request', 'the body must be the Task with the id in the URL');
      }
      const current = await app.referrals.readTask(id);
      const strip = (t: Task): string => {
        const { meta: _m, status: _s, statusReason: _r, lastModified: _l, text: _t, ...rest } = t;
        return JSON.stringify(rest, Object.keys(rest).sort());
      };
      if (strip({ ...body, id }) !== strip(current)) {
        throw new CarewayError(
          'rule-violation',
          'rule triage-fields: only status and statusReason of a triage Task can change',
          {
            detailsCode: 'triage-fields',
          },
        );
      }
      const task = await triageTo(request, id, body.status, body.statusReason?.text);
      return reply.code(200).type(FHIR_JSON).send(task);
    },
  );

  app.addContentTypeParser(
    'application/json-patch+json',
    { parseAs: 'string' },
    app.getDefaultJsonParser('error', 'error'),
  );
  app.patch(
    '/fhir/Task/:id',
    {
      schema: {
        tags: ['referrals'],
        summary: 'Triage with a JSON Patch of /status (and /statusReason) (scope: Task.u)',
        security: [{ bearer: [] }],
        params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9\\-.]{1,64}$' }) }),
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const ops = request.body as { op?: string; path?: string; value?: unknown }[];
      if (!Array.isArray(ops) || ops.length === 0)
        throw new CarewayError('bad-request', 'the body must be a JSON Patch array');
      let status: unknown;
      let reason: string | undefined;
      for (const op of ops) {
        if ((op.op === 'replace' || op.op === 'add') && op.path === '/status') status = op.value;
        else if (
          (op.op === 'replace' || op.op === 'add') &&
          op.path === '/statusReason/text' &&
          typeof op.value === 'string'
        )
          reason = op.value;
        else if ((op.op === 'replace' || op.op === 'add') && op.path === '/statusReason')
          reason = (op.value as { text?: string } | undefined)?.text;
        else
          throw new CarewayError(
            'rule-violation',
            `rule triage-fields: a triage Task patch may only set /status and /statusReason (got ${String(op.op)} ${String(op.path)})`,
            { detailsCode: 'triage-fields' },
          );
      }
      const task = await triageTo(request, id, status, reason);
      return reply.code(200).type(FHIR_JSON).send(task);
    },
  );

  for (const action of ['accept', 'reject', 'start', 'complete'] as const) {
    app.post(
      `/fhir/Task/:id/$${action}`,
      {
        schema: {
          tags: ['referrals'],
          summary: `Triage: ${action} the referral (scope: Task.u)`,
          security: [{ bearer: [] }],
          params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9\\-.]{1,64}$' }) }),
          response: fhirResponses,
        },
      },
      triage(action),
    );
  }
}
