/**
 * Referral intake in the three shapes referral systems use, and the triage operations. Routes are adapters:
 * they check scopes, read the envelope into a Submission, and call the referral service.
 *
 * Scopes: intake needs `ServiceRequest.c` (and `Patient.c` when the bundle carries the Patient) from a
 * system/ or user/ token; triage needs `Task.u`. Patient-context tokens cannot submit or triage referrals.
 */
import { bundleWriter, isReferralBundle } from './fhir-writes.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Task } from 'fhir/r4.js';
import { Type } from 'typebox';
import { CarewayError } from '../../shared/errors.js';
import { readParameters } from '../../fhir/parameters.js';
import type { CarewayOperation } from '../../fhir/facade.js';
import { CANONICAL_BASE } from '../../fhir/canonical.js';
import { readMessage, readSingle, readTransaction, type ReadResult } from '../../referrals/submission.js';
import {
  messageResponse,
  rejectProblems,
  type IntakeResult,
  type TriageAction,
} from '../../referrals/service.js';
import { actorOf, forbidden } from '../auth/access.js';
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
    documentation:
      a === 'complete'
        ? 'POST Task/[id]/$complete Parameters(note?: string): completes any Careway Task (If-Match honoured); a referral triage Task keeps its triage semantics (the journey follows, the referrer is told).'
        : `POST Task/[id]/$${a}${a === 'reject' ? ' Parameters(reason: string, required)' : ' Parameters(reason?: string)'}: triage the referral; the journey follows and the referrer is told.`,
  })),
];

const FhirBody = Type.Object({ resourceType: Type.String() }, { additionalProperties: true });
const fhirResponses = { 200: FhirBody, 201: FhirBody, '4xx': FhirBody, '5xx': FhirBody };
const TaskIdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9\\-.]{1,64}$' }) });

function requireScope(principal: Principal, type: string, permission: Permission): void {
  const d = decide(principal.scopes, type, permission);
  if (!d.allowed) throw forbidden(`${d.reason}; a scope like system/${type}.${permission} is needed`);
  if (d.compartmentOnly) throw forbidden('patient-context tokens cannot submit or triage referrals');
}

const publicBase = (request: FastifyRequest): string => `${request.protocol}://${request.host}/fhir`;
const idOf = (request: FastifyRequest): string => (request.params as { id: string }).id;

function ifMatchOf(request: FastifyRequest): string | undefined {
  const h = request.headers['if-match'];
  return typeof h === 'string' ? h : undefined;
}

/**
 * The status (and reason) a JSON Patch of a triage Task sets. Only `/status` and `/statusReason` may be
 * replaced or added; anything else is refused naming the operation.
 */
function statusFromPatch(body: unknown): { status: unknown; reason: string | undefined } {
  const ops = body as { op?: string; path?: string; value?: unknown }[];
  if (!Array.isArray(ops) || ops.length === 0)
    throw new CarewayError('bad-request', 'the body must be a JSON Patch array');
  let status: unknown;
  let reason: string | undefined;
  for (const op of ops) {
    if (!op || typeof op !== 'object')
      throw new CarewayError('bad-request', 'every JSON Patch operation must be an object');
    const sets = op.op === 'replace' || op.op === 'add';
    if (sets && op.path === '/status') status = op.value;
    else if (sets && op.path === '/statusReason/text' && typeof op.value === 'string') reason = op.value;
    else if (sets && op.path === '/statusReason') reason = (op.value as { text?: string } | undefined)?.text;
    else
      throw new CarewayError(
        'rule-violation',
        `rule triage-fields: a triage Task patch may only set /status and /statusReason (got ${String(op.op)} ${String(op.path)})`,
        { detailsCode: 'triage-fields' },
      );
  }
  return { status, reason };
}

function intakeSchema(summary: string) {
  return {
    tags: ['referrals'],
    summary,
    security: [{ bearer: [] }],
    body: FhirBody,
    response: fhirResponses,
  };
}

function triageSchema(summary: string, withBody: boolean) {
  return {
    tags: ['referrals'],
    summary,
    security: [{ bearer: [] }],
    params: TaskIdParams,
    ...(withBody ? { body: FhirBody } : {}),
    response: fhirResponses,
  };
}

export default async function referralRoutes(app: FastifyInstance): Promise<void> {
  const limits = { maxEntries: app.config.referrals.maxEntries };
  const general = bundleWriter(app, limits);
  const bodyLimit = app.config.referrals.maxBytes;

  /** Every intake shape: the scopes, then the envelope's problems, then the referral service. */
  const intake = async (request: FastifyRequest, read: ReadResult): Promise<IntakeResult> => {
    const principal = principalOf(request);
    requireScope(principal, 'ServiceRequest', 'c');
    if (!read.ok) throw rejectProblems(read.problems);
    if (read.submission.patient) requireScope(principal, 'Patient', 'c');
    return app.referrals.intake(read.submission, actorOf(principal));
  };

  app.post(
    '/fhir',
    {
      bodyLimit,
      schema: intakeSchema(
        'A batch or transaction Bundle: a transaction that creates a ServiceRequest is a referral (system/ServiceRequest.c, Patient.c); any other is checked entry by entry as its REST twin',
      ),
    },
    async (request, reply) => {
      // A Bundle that creates a ServiceRequest is a referral; any other batch or transaction is a general write
      // (fhir-writes.ts), checked entry by entry.
      if (!isReferralBundle(request.body)) return general(request, reply);
      const result = await intake(request, readTransaction(request.body, limits));
      const base = publicBase(request);
      for (const e of result.response.entry ?? [])
        if (e.response?.location) e.response.location = `${base}/${e.response.location}`;
      return reply.code(200).type(FHIR_JSON).send(result.response);
    },
  );

  app.post(
    '/fhir/$process-message',
    { bodyLimit, schema: intakeSchema('Submit a referral as a message Bundle (BSeR style)') },
    async (request, reply) => {
      const read = readMessage(request.body, limits);
      const result = await intake(request, read);
      const response = messageResponse(result, read.ok ? read.submission : undefined, publicBase(request));
      return reply.code(200).type(FHIR_JSON).send(response);
    },
  );

  app.post(
    '/fhir/ServiceRequest',
    {
      bodyLimit,
      schema: intakeSchema('Submit a single referral whose subject exists (scope: system/ServiceRequest.c)'),
    },
    async (request, reply) => {
      const result = await intake(request, readSingle(request.body));
      const sr = result.serviceRequest;
      return reply
        .code(result.outcome === 'created' ? 201 : 200)
        .header(
          'location',
          `${publicBase(request)}/ServiceRequest/${sr.id}/_history/${sr.meta?.versionId ?? '1'}`,
        )
        .header('x-careway-journey', `EpisodeOfCare/${result.episode.id}`)
        .type(FHIR_JSON)
        .send(sr);
    },
  );

  // Triage through plain FHIR writes, for systems that do not call operations: PUT of the Task with a new
  // status, or a JSON Patch of /status. Only status and statusReason may change this way.
  app.put(
    '/fhir/Task/:id',
    {
      schema: triageSchema(
        'Triage by updating the Task status (scope: Task.u); other fields cannot change here',
        true,
      ),
    },
    async (request, reply) => {
      const principal = principalOf(request);
      requireScope(principal, 'Task', 'u');
      const task = await app.referrals.triageByUpdate(
        idOf(request),
        request.body as Task,
        actorOf(principal),
        ifMatchOf(request),
      );
      return reply.code(200).type(FHIR_JSON).send(task);
    },
  );

  app.patch(
    '/fhir/Task/:id',
    {
      schema: triageSchema('Triage with a JSON Patch of /status (and /statusReason) (scope: Task.u)', false),
    },
    async (request, reply) => {
      const principal = principalOf(request);
      requireScope(principal, 'Task', 'u');
      const { status, reason } = statusFromPatch(request.body);
      const task = await app.referrals.triageToStatus(
        idOf(request),
        status,
        reason,
        actorOf(principal),
        ifMatchOf(request),
      );
      return reply.code(200).type(FHIR_JSON).send(task);
    },
  );

  const triage = (action: TriageAction) => async (request: FastifyRequest, reply: FastifyReply) => {
    const principal = principalOf(request);
    requireScope(principal, 'Task', 'u');
    const body = request.body ?? { resourceType: 'Parameters' };
    const p = readParameters(
      body,
      { reason: { kind: 'valueString', required: action === 'reject' } },
      `$${action}`,
    );
    const task = await app.referrals.triage(idOf(request), action, p.reason, actorOf(principal));
    return reply.code(200).type(FHIR_JSON).send(task);
  };
  // `$complete` is registered with every Careway Task kind (routes/tasks.ts), and hands a triage Task back here.
  for (const action of ['accept', 'reject', 'start'] as const) {
    app.post(
      `/fhir/Task/:id/$${action}`,
      { schema: triageSchema(`Triage: ${action} the referral (scope: Task.u)`, false) },
      triage(action),
    );
  }
}
