/**
 * The care team's worklist and the Task operations every Careway Task kind takes (journey/tasks.ts):
 * - `GET /tasks/worklist?kind=&owner=&status=&overdue=`: referral triage, no-show follow-ups, patient messages
 *   to answer, care-plan activities and waitlist offers, overdue first (user/ or system/ Task.r; patient names
 *   only with Patient.r). Audited as one search.
 * - `POST /fhir/Task/{id}/$claim` Parameters(owner?: Reference; default the token's fhirUser): the Task gets
 *   an owner. `POST /fhir/Task/{id}/$complete` Parameters(note?: string): the Task is done; a referral triage
 *   Task goes through the referral service (its journey moves, the referrer is told), any other is completed
 *   here. Both need user/ or system/ Task.u, honour If-Match, write a Provenance naming the agent, and change
 *   nothing when replayed.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Reference } from 'fhir/r4.js';
import { Type } from 'typebox';
import { CarewayError } from '../../shared/errors.js';
import { readParameters } from '../../fhir/parameters.js';
import type { CarewayOperation } from '../../fhir/facade.js';
import { CANONICAL_BASE } from '../../fhir/canonical.js';
import { isTaskKind, TASK_KINDS, TASK_STATUSES, type TaskKind } from '../../journey/tasks.js';
import { actorOf } from '../auth/access.js';
import { principalOf, requireUnconfined } from '../plugins/auth.js';
import { FHIR_JSON } from '../plugins/errors.js';
import { staffReads } from './journeys.js';

export const TASK_OPERATIONS: CarewayOperation[] = [
  {
    name: 'claim',
    definition: `${CANONICAL_BASE}/OperationDefinition/Task-claim`,
    resourceType: 'Task',
    documentation:
      "POST Task/[id]/$claim Parameters(owner?: Reference; default the token's fhirUser): any Careway Task gets an owner; If-Match honoured.",
  },
];

const FhirBody = Type.Object({ resourceType: Type.String() }, { additionalProperties: true });
const fhirResponses = { 200: FhirBody, '4xx': FhirBody, '5xx': FhirBody };
const TaskIdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9\\-.]{1,64}$' }) });

const WorklistQuery = Type.Object(
  {
    kind: Type.Optional(
      Type.String({ maxLength: 200, description: `comma-separated: ${TASK_KINDS.join(', ')}` }),
    ),
    owner: Type.Optional(
      Type.String({ pattern: '^[A-Z][A-Za-z]+/[A-Za-z0-9\\-.]{1,64}$', description: 'e.g. Practitioner/1' }),
    ),
    status: Type.Optional(
      Type.String({ maxLength: 200, description: 'Task statuses, comma-separated (default the open ones)' }),
    ),
    overdue: Type.Optional(Type.Boolean()),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'at most (200)' })),
  },
  { additionalProperties: false },
);

const WorklistSchema = Type.Object({
  tasks: Type.Array(
    Type.Object({
      id: Type.String(),
      kind: Type.String(),
      status: Type.String(),
      priority: Type.Optional(Type.String()),
      authoredOn: Type.String(),
      due: Type.Optional(Type.String()),
      overdue: Type.Boolean(),
      owner: Type.Optional(Type.Object({ reference: Type.String(), display: Type.Optional(Type.String()) })),
      patientId: Type.Optional(Type.String()),
      patientName: Type.Optional(Type.String()),
      episodeId: Type.Optional(Type.String()),
      summary: Type.String(),
      version: Type.Optional(Type.String()),
    }),
  ),
});

function list(raw: string | undefined, allowed: readonly string[], name: string): string[] | undefined {
  if (raw === undefined) return undefined;
  const items = raw
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  const bad = items.filter((x) => !allowed.includes(x));
  if (bad.length || items.length === 0)
    throw new CarewayError(
      'invalid-parameters',
      `/tasks/worklist: "${name}" must be among ${allowed.join(', ')} (got "${raw.slice(0, 60)}")`,
    );
  return items;
}

function ifMatchOf(request: FastifyRequest): string | undefined {
  const h = request.headers['if-match'];
  return typeof h === 'string' ? h : undefined;
}

function opSchema(summary: string) {
  return {
    tags: ['tasks'],
    summary,
    security: [{ bearer: [] }],
    params: TaskIdParams,
    response: fhirResponses,
  };
}

export default async function taskRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    '/tasks/worklist',
    {
      schema: {
        tags: ['tasks'],
        summary:
          "The care team's worklist: every Careway Task kind, overdue first (scope: user/ or system/ Task.r; names with Patient.r)",
        security: [{ bearer: [] }],
        querystring: WorklistQuery,
        response: { 200: WorklistSchema, '4xx': FhirBody, '5xx': FhirBody },
      },
    },
    async (request) => {
      requireUnconfined(request, 'Task', 'r');
      const principal = principalOf(request);
      const q = request.query as {
        kind?: string;
        owner?: string;
        status?: string;
        overdue?: boolean;
        limit?: number;
      };
      const kinds = list(q.kind, TASK_KINDS, 'kind') as TaskKind[] | undefined;
      const statuses = list(q.status, TASK_STATUSES, 'status');
      const tasks = await app.areas.tasks.worklist(
        {
          ...(kinds ? { kinds: kinds.filter(isTaskKind) } : {}),
          ...(q.owner ? { owner: q.owner } : {}),
          ...(statuses ? { statuses } : {}),
          ...(q.overdue ? { overdue: true } : {}),
          limit: q.limit ?? 200,
        },
        { patients: staffReads(principal, 'Patient'), practitioners: staffReads(principal, 'Practitioner') },
      );
      return { tasks };
    },
  );

  app.post(
    '/fhir/Task/:id/$claim',
    { schema: opSchema('Claim any Careway Task: it gets an owner (scope: user/ or system/ Task.u)') },
    async (request, reply) => {
      requireUnconfined(request, 'Task', 'u');
      const principal = principalOf(request);
      const p = readParameters(
        request.body ?? { resourceType: 'Parameters' },
        { owner: { kind: 'valueReference' } },
        '$claim',
      );
      const owner: Reference | undefined =
        p.owner ?? (principal.fhirUser ? { reference: principal.fhirUser } : undefined);
      if (!owner?.reference || !/^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(owner.reference))
        throw new CarewayError(
          'invalid-parameters',
          '$claim: "owner" must reference Practitioner/{id} (or the like), or the token must carry a fhirUser',
        );
      const { task } = await app.areas.tasks.claim(
        (request.params as { id: string }).id,
        { reference: owner.reference, ...(owner.display ? { display: owner.display } : {}) },
        actorOf(principal),
        ifMatchOf(request),
      );
      return reply
        .code(200)
        .header('etag', `W/"${task.meta?.versionId ?? ''}"`)
        .type(FHIR_JSON)
        .send(task);
    },
  );

  app.post(
    '/fhir/Task/:id/$complete',
    {
      schema: opSchema(
        'Complete any Careway Task; a referral triage Task keeps its triage semantics (scope: user/ or system/ Task.u)',
      ),
    },
    async (request, reply) => {
      requireUnconfined(request, 'Task', 'u');
      const principal = principalOf(request);
      // `reason` is the triage operations' name for the same text; both are taken.
      const p = readParameters(
        request.body ?? { resourceType: 'Parameters' },
        { note: { kind: 'valueString' }, reason: { kind: 'valueString' } },
        '$complete',
      );
      const id = (request.params as { id: string }).id;
      const note = p.note ?? p.reason;
      const { task: current, kind } = await app.areas.tasks.read(id);
      const ifMatch = ifMatchOf(request);
      // A replay of a triage completion answers the completed Task, whatever version it names.
      const task =
        kind !== 'referral-triage'
          ? (await app.areas.tasks.complete(id, note, actorOf(principal), ifMatch)).task
          : current.status === 'completed'
            ? current
            : await app.referrals.triageToStatus(id, 'completed', note, actorOf(principal), ifMatch);
      return reply
        .code(200)
        .header('etag', `W/"${task.meta?.versionId ?? ''}"`)
        .type(FHIR_JSON)
        .send(task);
    },
  );
}
