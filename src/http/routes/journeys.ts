/**
 * Journey operations on the FHIR facade and the timeline. Routes are adapters: they read parameters,
 * decide access from the caller's scopes, and call the journey service.
 *
 * Scopes:
 * - `$start-journey` needs `c` on EpisodeOfCare (a patient token only for its own patient);
 * - `$advance-stage` needs `u` on EpisodeOfCare from a user/ or system/ token: a patient does not move
 *   their own journey;
 * - `$journey`, `$journeys` and the timeline need `r`/`s` on EpisodeOfCare, and a patient token only sees
 *   its own patient's journeys. Inside `$journey`, resources of types the caller cannot read are left out.
 * - the board needs a user/ or system/ token with EpisodeOfCare.r; each part of a card is there only for a
 *   token that reads its type (names: Patient.r, allergy flag: AllergyIntolerance.r, next appointment:
 *   Appointment.r, tasks: Task.r, reminders: Communication.r).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Bundle, EpisodeOfCare } from 'fhir/r4.js';
import { Type } from 'typebox';
import { CarewayError, operationOutcome } from '../../shared/errors.js';
import { localId, readParameters } from '../../fhir/parameters.js';
import type { CarewayOperation } from '../../fhir/facade.js';
import { CANONICAL_BASE } from '../../fhir/canonical.js';
import { isJourneyStage, JOURNEY_STAGES } from '../../journey/stages.js';
import type { StartJourneyInput } from '../../journey/service.js';
import { decide, type Permission } from '../auth/scopes.js';
import { actorOf, confinedPatient, forbidden } from '../auth/access.js';
import type { Principal } from '../auth/verifier.js';
import { principalOf, requireUnconfined } from '../plugins/auth.js';
import { checkBoardFilters, type BoardVisibility } from '../../journey/board.js';
import { FHIR_JSON } from '../plugins/errors.js';

export const JOURNEY_OPERATIONS: CarewayOperation[] = [
  {
    name: 'start-journey',
    definition: `${CANONICAL_BASE}/OperationDefinition/EpisodeOfCare-start-journey`,
    resourceType: 'EpisodeOfCare',
    documentation:
      'POST Parameters(patient: Reference, referral?: Reference, identifier?: Identifier, type?: CodeableConcept, stage?: code, organization?: Reference, careManager?: Reference). Starts a journey; idempotent on identifier (or the referral).',
  },
  {
    name: 'advance-stage',
    definition: `${CANONICAL_BASE}/OperationDefinition/EpisodeOfCare-advance-stage`,
    resourceType: 'EpisodeOfCare',
    documentation:
      'POST [id]/$advance-stage Parameters(stage: code, reason?: string; reason required to move back). Returns the EpisodeOfCare, or 409/422 naming the rule.',
  },
  {
    name: 'close-journey',
    definition: `${CANONICAL_BASE}/OperationDefinition/EpisodeOfCare-close-journey`,
    resourceType: 'EpisodeOfCare',
    documentation:
      'POST [id]/$close-journey Parameters(status: finished | cancelled, reason?: string; reason required to cancel).',
  },
  {
    name: 'journey',
    definition: `${CANONICAL_BASE}/OperationDefinition/EpisodeOfCare-journey`,
    resourceType: 'EpisodeOfCare',
    documentation:
      'GET [id]/$journey: the journey and every linked resource as one Bundle, with allergy alerts as Flags.',
  },
  {
    name: 'journeys',
    definition: `${CANONICAL_BASE}/OperationDefinition/Patient-journeys`,
    resourceType: 'Patient',
    documentation: "GET Patient/[id]/$journeys: the patient's journeys with current stage and status.",
  },
];

function doc(name: string): string {
  return JOURNEY_OPERATIONS.find((o) => o.name === name)?.documentation ?? '';
}

const IdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9\\-.]{1,64}$' }) });
const FhirBody = Type.Object({ resourceType: Type.String() }, { additionalProperties: true });
const fhirResponses = { 200: FhirBody, 201: FhirBody, '4xx': FhirBody, '5xx': FhirBody };

const TimelineSchema = Type.Object(
  {
    journey: Type.String(),
    patient: Type.String(),
    stage: Type.String(),
    status: Type.String(),
    alerts: Type.Array(
      Type.Object({
        kind: Type.String(),
        summary: Type.String(),
        criticality: Type.Optional(Type.String()),
        resource: Type.String(),
      }),
    ),
    painPoints: Type.Array(
      Type.Object({
        kind: Type.String(),
        severity: Type.String(),
        summary: Type.String(),
        durationMs: Type.Optional(Type.Number()),
        targetMs: Type.Optional(Type.Number()),
        resource: Type.String(),
      }),
    ),
    touchpoints: Type.Array(
      Type.Object({
        kind: Type.String(),
        time: Type.String(),
        stage: Type.Optional(Type.String()),
        status: Type.Optional(Type.String()),
        summary: Type.String(),
        resource: Type.String(),
      }),
    ),
  },
  { $id: 'JourneyTimeline' },
);

const Ref = Type.Object({ reference: Type.String(), display: Type.Optional(Type.String()) });

const BoardQuery = Type.Object(
  {
    service: Type.Optional(
      Type.String({ maxLength: 300, description: 'EpisodeOfCare.type: code or system|code' }),
    ),
    team: Type.Optional(Type.String({ maxLength: 80, description: 'CareTeam/{id}' })),
    careManager: Type.Optional(Type.String({ maxLength: 80, description: 'Practitioner/{id}' })),
    mine: Type.Optional(Type.Boolean({ description: "the token's fhirUser is the care manager" })),
    overdue: Type.Optional(Type.Boolean({ description: 'only journeys over their stage target' })),
    status: Type.Optional(
      Type.String({ maxLength: 200, description: 'EpisodeOfCare statuses, comma-separated (default open)' }),
    ),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, description: 'cards per stage (50)' })),
  },
  { additionalProperties: false },
);

const BoardSchema = Type.Object(
  {
    generatedAt: Type.String(),
    stages: Type.Array(
      Type.Object({
        code: Type.String(),
        display: Type.String(),
        count: Type.Integer(),
        targetDays: Type.Union([Type.Number(), Type.Null()]),
      }),
    ),
    cards: Type.Array(
      Type.Object({
        episodeId: Type.String(),
        patientId: Type.String(),
        patientName: Type.Optional(Type.String()),
        stage: Type.String(),
        stageSince: Type.String(),
        daysInStage: Type.Number(),
        targetDays: Type.Optional(Type.Number()),
        overTarget: Type.Boolean(),
        status: Type.String(),
        service: Type.Optional(Type.Object({ code: Type.String(), display: Type.Optional(Type.String()) })),
        team: Type.Optional(Ref),
        careManager: Type.Optional(Ref),
        nextAppointment: Type.Optional(
          Type.Object({
            id: Type.String(),
            start: Type.String(),
            status: Type.String(),
            description: Type.Optional(Type.String()),
          }),
        ),
        openTasks: Type.Optional(Type.Integer()),
        overdueTasks: Type.Optional(Type.Integer()),
        lastReminder: Type.Optional(
          Type.Record(Type.String(), Type.Object({ outcome: Type.String(), at: Type.String() })),
        ),
        allergy: Type.Optional(Type.Boolean()),
        painPoints: Type.Array(Type.Object({ code: Type.String(), summary: Type.String() })),
      }),
    ),
  },
  { $id: 'JourneyBoard' },
);

/** Whether a user/ or system/ scope lets the caller read `type` (patient scopes never widen a board). */
export function staffReads(principal: Principal, type: string): boolean {
  const d = decide(principal.scopes, type, 'r');
  return d.allowed && !d.compartmentOnly;
}

function access(principal: Principal, permission: Permission): { confinedTo: string | undefined } {
  return { confinedTo: confinedPatient(principal, 'EpisodeOfCare', permission) };
}

function patientOfEpisode(reference: string | undefined): string | undefined {
  return /^Patient\/(.+)$/.exec(reference ?? '')?.[1];
}

/** A patient-context token sees only journeys of its own patient. */
function assertVisible(confinedTo: string | undefined, patientReference: string | undefined): void {
  if (confinedTo && patientOfEpisode(patientReference) !== confinedTo) {
    throw new CarewayError('outside-compartment', "this journey is outside the token's patient compartment");
  }
}

const publicBase = (request: FastifyRequest): string => `${request.protocol}://${request.host}/fhir`;
const idOf = (request: FastifyRequest): string => (request.params as { id: string }).id;

/** `$start-journey` Parameters, every problem named; a patient token starts only its own journey. */
function readStartInput(body: unknown, confinedTo: string | undefined): StartJourneyInput {
  const p = readParameters(
    body,
    {
      patient: { kind: 'valueReference', required: true },
      referral: { kind: 'valueReference' },
      identifier: { kind: 'valueIdentifier' },
      type: { kind: 'valueCodeableConcept' },
      stage: { kind: 'valueCode' },
      organization: { kind: 'valueReference' },
      careManager: { kind: 'valueReference' },
    },
    '$start-journey',
  );
  const problems: string[] = [];
  const patientId = localId(p.patient, 'Patient');
  if (!patientId) problems.push('"patient" must reference Patient/{id}');
  const referralId = p.referral ? localId(p.referral, 'ServiceRequest') : undefined;
  if (p.referral && !referralId) problems.push('"referral" must reference ServiceRequest/{id}');
  const organizationId = p.organization ? localId(p.organization, 'Organization') : undefined;
  if (p.organization && !organizationId) problems.push('"organization" must reference Organization/{id}');
  const careManager = p.careManager;
  if (careManager && !localId(careManager, 'Practitioner'))
    problems.push('"careManager" must reference Practitioner/{id}');
  const stage = p.stage;
  if (stage !== undefined && !isJourneyStage(stage))
    problems.push(`"stage" must be one of ${JOURNEY_STAGES.join(', ')}`);
  const identifier = p.identifier;
  if (identifier && (!identifier.system || !identifier.value))
    problems.push('"identifier" needs a system and a value');
  if (problems.length) throw new CarewayError('invalid-parameters', `$start-journey: ${problems.join('; ')}`);
  if (confinedTo && confinedTo !== patientId)
    throw new CarewayError('outside-compartment', 'a patient token can only start its own journey');
  return {
    patientId: patientId!,
    ...(referralId ? { referralId } : {}),
    ...(identifier ? { identifier } : {}),
    ...(p.type ? { type: p.type } : {}),
    ...(stage && isJourneyStage(stage) ? { stage } : {}),
    ...(organizationId ? { organizationId } : {}),
    ...(careManager ? { careManager } : {}),
  };
}

/** A changed journey, with its version as the ETag. */
function sendEpisode(reply: FastifyReply, episode: EpisodeOfCare): FastifyReply {
  return reply
    .code(200)
    .header('etag', `W/"${episode.meta?.versionId ?? ''}"`)
    .type(FHIR_JSON)
    .send(episode);
}

/**
 * `$journey` as this caller may see it: entries of types no scope lets it read are dropped (an
 * OperationOutcome says how many), and server-relative fullUrls become absolute on Careway's base.
 */
function visibleBundle(bundle: Bundle, principal: Principal, base: string): Bundle {
  let dropped = 0;
  const entry = (bundle.entry ?? []).filter((e) => {
    const type = e.resource?.resourceType;
    if (!type) return true;
    // Alert Flags are computed from the patient's AllergyIntolerances: shown only to a caller who reads those.
    const ok = decide(principal.scopes, type === 'Flag' ? 'AllergyIntolerance' : type, 'r').allowed;
    if (!ok) dropped++;
    return ok;
  });
  if (dropped) {
    entry.push({
      resource: operationOutcome(
        'warning',
        'forbidden',
        `${dropped} linked resource(s) omitted: no scope grants reading their type`,
      ),
    });
  }
  for (const e of entry) if (e.fullUrl && !e.fullUrl.startsWith('urn:')) e.fullUrl = `${base}/${e.fullUrl}`;
  return { ...bundle, entry, total: entry.length };
}

/** `$journeys`: the patient's journeys as a searchset. */
function journeysBundle(journeys: readonly EpisodeOfCare[], base: string): Bundle {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total: journeys.length,
    entry: journeys.map((j) => ({
      fullUrl: `${base}/EpisodeOfCare/${j.id}`,
      resource: j,
      search: { mode: 'match' },
    })),
  };
}

/** A route's OpenAPI schema: `id` for a `:id` in the path, `body` for a Parameters body. */
function schema(
  summary: string,
  operation: string | undefined,
  shape: { id?: boolean; body?: boolean; response?: Record<string, unknown> } = {},
) {
  return {
    tags: ['journeys'],
    summary,
    ...(operation ? { description: doc(operation) } : {}),
    security: [{ bearer: [] }],
    ...(shape.id ? { params: IdParams } : {}),
    ...(shape.body ? { body: FhirBody } : {}),
    response: shape.response ?? fhirResponses,
  };
}

export default async function journeyRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    '/journeys/board',
    {
      schema: {
        tags: ['journeys'],
        summary:
          'The journey board: per stage a count and cards (scope: user/ or system/ EpisodeOfCare.r; card parts by their own read scopes)',
        security: [{ bearer: [] }],
        querystring: BoardQuery,
        response: { 200: BoardSchema, '4xx': FhirBody, '5xx': FhirBody },
      },
    },
    async (request) => {
      requireUnconfined(request, 'EpisodeOfCare', 'r');
      const principal = principalOf(request);
      const q = request.query as {
        service?: string;
        team?: string;
        careManager?: string;
        mine?: boolean;
        overdue?: boolean;
        status?: string;
        limit?: number;
      };
      let careManager = q.careManager;
      if (q.mine) {
        if (!principal.fhirUser)
          throw new CarewayError('invalid-parameters', '"mine" needs a token with a fhirUser claim');
        if (careManager && careManager !== principal.fhirUser)
          throw new CarewayError('invalid-parameters', '"mine" and "careManager" name different people');
        careManager = principal.fhirUser;
      }
      const filters = {
        ...(q.service ? { service: q.service } : {}),
        ...(q.team ? { team: q.team } : {}),
        ...(careManager ? { careManager } : {}),
        ...(q.overdue ? { overdue: true } : {}),
        ...(q.status ? { status: q.status.split(',').map((x) => x.trim()) } : {}),
        limit: q.limit ?? 50,
      };
      const problems = checkBoardFilters(filters);
      if (problems.length)
        throw new CarewayError('invalid-parameters', `/journeys/board: ${problems.join('; ')}`);
      const reads = (type: string): boolean => staffReads(principal, type);
      const see: BoardVisibility = {
        patients: reads('Patient'),
        allergies: reads('AllergyIntolerance'),
        appointments: reads('Appointment'),
        tasks: reads('Task'),
        reminders: reads('Communication'),
        carePlans: reads('CarePlan'),
        referrals: reads('ServiceRequest'),
        practitioners: reads('Practitioner'),
        careTeams: reads('CareTeam'),
      };
      return app.areas.board.board(filters, see);
    },
  );

  app.post(
    '/fhir/EpisodeOfCare/$start-journey',
    {
      schema: schema('Start a patient journey (scope: EpisodeOfCare.c)', 'start-journey', { body: true }),
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { confinedTo } = access(principal, 'c');
      const input = readStartInput(request.body, confinedTo);
      const result = await app.journeys.startJourney(input, actorOf(principal));
      if (result.changed)
        void reply.header(
          'location',
          `${publicBase(request)}/EpisodeOfCare/${result.episode.id}/_history/${result.episode.meta?.versionId ?? '1'}`,
        );
      return reply
        .code(result.changed ? 201 : 200)
        .type(FHIR_JSON)
        .send(result.episode);
    },
  );

  app.post(
    '/fhir/EpisodeOfCare/:id/$advance-stage',
    {
      schema: schema(
        'Move a journey to another stage (scope: user/ or system/ EpisodeOfCare.u)',
        'advance-stage',
        { id: true, body: true },
      ),
    },
    async (request, reply) => {
      const principal = principalOf(request);
      if (access(principal, 'u').confinedTo)
        throw forbidden("patient-context tokens cannot change a journey's stage");
      const p = readParameters(
        request.body,
        { stage: { kind: 'valueCode', required: true }, reason: { kind: 'valueString' } },
        '$advance-stage',
      );
      const stage = p.stage as string;
      if (!isJourneyStage(stage)) {
        throw new CarewayError(
          'invalid-parameters',
          `$advance-stage: "stage" must be one of ${JOURNEY_STAGES.join(', ')} (got "${stage.slice(0, 40)}")`,
        );
      }
      const result = await app.journeys.advanceStage(idOf(request), stage, p.reason, actorOf(principal));
      return sendEpisode(reply, result.episode);
    },
  );

  app.post(
    '/fhir/EpisodeOfCare/:id/$close-journey',
    {
      schema: schema(
        'Finish or cancel a journey (scope: user/ or system/ EpisodeOfCare.u)',
        'close-journey',
        { id: true, body: true },
      ),
    },
    async (request, reply) => {
      const principal = principalOf(request);
      if (access(principal, 'u').confinedTo) throw forbidden('patient-context tokens cannot close a journey');
      const p = readParameters(
        request.body,
        { status: { kind: 'valueCode', required: true }, reason: { kind: 'valueString' } },
        '$close-journey',
      );
      if (p.status !== 'finished' && p.status !== 'cancelled') {
        throw new CarewayError(
          'invalid-parameters',
          '$close-journey: "status" must be finished or cancelled',
        );
      }
      const result = await app.journeys.close(idOf(request), p.status, p.reason, actorOf(principal));
      return sendEpisode(reply, result.episode);
    },
  );

  app.get(
    '/fhir/EpisodeOfCare/:id/$journey',
    {
      schema: schema('The whole journey as one Bundle (scope: EpisodeOfCare.r)', 'journey', { id: true }),
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { confinedTo } = access(principal, 'r');
      const { bundle, episode } = await app.journeys.journeyBundle(idOf(request));
      assertVisible(confinedTo, episode.patient.reference);
      return reply.type(FHIR_JSON).send(visibleBundle(bundle, principal, publicBase(request)));
    },
  );

  app.get(
    '/fhir/Patient/:id/$journeys',
    {
      schema: schema("A patient's journeys with stage and status (scope: EpisodeOfCare.s)", 'journeys', {
        id: true,
      }),
    },
    async (request, reply) => {
      const { confinedTo } = access(principalOf(request), 's');
      const id = idOf(request);
      if (confinedTo && confinedTo !== id)
        throw new CarewayError(
          'outside-compartment',
          "a patient token can only list its own patient's journeys",
        );
      const journeys = await app.journeys.journeysOf(id);
      return reply.type(FHIR_JSON).send(journeysBundle(journeys, publicBase(request)));
    },
  );

  app.get(
    '/journeys/:id/timeline',
    {
      schema: schema(
        'Journey timeline with computed pain points and allergy alerts (scope: EpisodeOfCare.r)',
        undefined,
        { id: true, response: { 200: TimelineSchema, '4xx': FhirBody, '5xx': FhirBody } },
      ),
    },
    async (request) => {
      const principal = principalOf(request);
      const { confinedTo } = access(principal, 'r');
      // Built only from the linked resources of types the caller may read (per-type scopes hold here too).
      const timeline = await app.journeys.timeline(
        idOf(request),
        (type) => decide(principal.scopes, type, 'r').allowed,
      );
      assertVisible(confinedTo, timeline.patient);
      return timeline;
    },
  );
}
