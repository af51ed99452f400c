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
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Bundle } from 'fhir/r4.js';
import { Type } from 'typebox';
import { CarewayError, operationOutcome } from '../../shared/errors.js';
import { localId, readParameters } from '../../fhir/parameters.js';
import type { CarewayOperation } from '../../fhir/facade.js';
import { CANONICAL_BASE } from '../../fhir/canonical.js';
import { isJourneyStage, JOURNEY_STAGES } from '../../journey/stages.js';
import { decide, type Permission } from '../auth/scopes.js';
import { actorOf, confinedPatient, forbidden } from '../auth/access.js';
import type { Principal } from '../auth/verifier.js';
import { principalOf } from '../plugins/auth.js';
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

export default async function journeyRoutes(app: FastifyInstance): Promise<void> {
  const base = (request: FastifyRequest): string => `${request.protocol}://${request.host}/fhir`;

  app.post(
    '/fhir/EpisodeOfCare/$start-journey',
    {
      schema: {
        tags: ['journeys'],
        summary: 'Start a patient journey (scope: EpisodeOfCare.c)',
        description: doc('start-journey'),
        security: [{ bearer: [] }],
        body: FhirBody,
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { confinedTo } = access(principal, 'c');
      const p = readParameters(
        request.body,
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
      if (problems.length)
        throw new CarewayError('invalid-parameters', `$start-journey: ${problems.join('; ')}`);
      if (confinedTo && confinedTo !== patientId)
        throw new CarewayError('outside-compartment', 'a patient token can only start its own journey');

      const result = await app.journeys.startJourney(
        {
          patientId: patientId!,
          ...(referralId ? { referralId } : {}),
          ...(identifier ? { identifier } : {}),
          ...(p.type ? { type: p.type } : {}),
          ...(stage && isJourneyStage(stage) ? { stage } : {}),
          ...(organizationId ? { organizationId } : {}),
          ...(careManager ? { careManager } : {}),
        },
        actorOf(principal),
      );
      if (result.changed)
        void reply.header(
          'location',
          `${base(request)}/EpisodeOfCare/${result.episode.id}/_history/${result.episode.meta?.versionId ?? '1'}`,
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
      schema: {
        tags: ['journeys'],
        summary: 'Move a journey to another stage (scope: user/ or system/ EpisodeOfCare.u)',
        description: doc('advance-stage'),
        security: [{ bearer: [] }],
        params: IdParams,
        body: FhirBody,
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      if (access(principal, 'u').confinedTo)
        throw forbidden("patient-context tokens cannot change a journey's stage");
      const { id } = request.params as { id: string };
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
      const result = await app.journeys.advanceStage(id, stage, p.reason, actorOf(principal));
      return reply
        .code(200)
        .header('etag', `W/"${result.episode.meta?.versionId ?? ''}"`)
        .type(FHIR_JSON)
        .send(result.episode);
    },
  );

  app.post(
    '/fhir/EpisodeOfCare/:id/$close-journey',
    {
      schema: {
        tags: ['journeys'],
        summary: 'Finish or cancel a journey (scope: user/ or system/ EpisodeOfCare.u)',
        description: doc('close-journey'),
        security: [{ bearer: [] }],
        params: IdParams,
        body: FhirBody,
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      if (access(principal, 'u').confinedTo) throw forbidden('patient-context tokens cannot close a journey');
      const { id } = request.params as { id: string };
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
      const result = await app.journeys.close(id, p.status, p.reason, actorOf(principal));
      return reply
        .code(200)
        .header('etag', `W/"${result.episode.meta?.versionId ?? ''}"`)
        .type(FHIR_JSON)
        .send(result.episode);
    },
  );

  /** Drops entries the caller may not read; for patient tokens, refuses another patient's journey. */
  const visibleBundle = (bundle: Bundle, principal: Principal): Bundle => {
    let dropped = 0;
    const entry = (bundle.entry ?? []).filter((e) => {
      const type = e.resource?.resourceType;
      if (!type || type === 'Flag') return true;
      const ok = decide(principal.scopes, type, 'r').allowed;
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
    return { ...bundle, entry, total: entry.length };
  };

  app.get(
    '/fhir/EpisodeOfCare/:id/$journey',
    {
      schema: {
        tags: ['journeys'],
        summary: 'The whole journey as one Bundle (scope: EpisodeOfCare.r)',
        description: doc('journey'),
        security: [{ bearer: [] }],
        params: IdParams,
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { confinedTo } = access(principal, 'r');
      const { id } = request.params as { id: string };
      const { bundle, episode } = await app.journeys.journeyBundle(id);
      assertVisible(confinedTo, episode.patient.reference);
      const b = base(request);
      const shaped = visibleBundle(bundle, principal);
      for (const e of shaped.entry ?? [])
        if (e.fullUrl && !e.fullUrl.startsWith('urn:')) e.fullUrl = `${b}/${e.fullUrl}`;
      return reply.type(FHIR_JSON).send(shaped);
    },
  );

  app.get(
    '/fhir/Patient/:id/$journeys',
    {
      schema: {
        tags: ['journeys'],
        summary: "A patient's journeys with stage and status (scope: EpisodeOfCare.s)",
        description: doc('journeys'),
        security: [{ bearer: [] }],
        params: IdParams,
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { confinedTo } = access(principal, 's');
      const { id } = request.params as { id: string };
      if (confinedTo && confinedTo !== id)
        throw new CarewayError(
          'outside-compartment',
          "a patient token can only list its own patient's journeys",
        );
      const journeys = await app.journeys.journeysOf(id);
      const b = base(request);
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'searchset',
        total: journeys.length,
        entry: journeys.map((j) => ({
          fullUrl: `${b}/EpisodeOfCare/${j.id}`,
          resource: j,
          search: { mode: 'match' },
        })),
      };
      return reply.type(FHIR_JSON).send(bundle);
    },
  );

  app.get(
    '/journeys/:id/timeline',
    {
      schema: {
        tags: ['journeys'],
        summary: 'Journey timeline with computed pain points and allergy alerts (scope: EpisodeOfCare.r)',
        security: [{ bearer: [] }],
        params: IdParams,
        response: { 200: TimelineSchema, '4xx': FhirBody, '5xx': FhirBody },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { confinedTo } = access(principal, 'r');
      const { id } = request.params as { id: string };
      const timeline = await app.journeys.timeline(id);
      assertVisible(confinedTo, timeline.patient);
      return timeline;
    },
  );
}
