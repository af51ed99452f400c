/**
 * Scheduling operations on the FHIR facade. Routes are adapters: they read Parameters, decide access from
 * the caller's scopes, and call the scheduling service.
 *
 * Scopes:
 * - `$generate-slots` needs `c` on Slot from a user/ or system/ token;
 * - `$find` needs `s` on Slot; a patient token finds only for its own patient;
 * - `$hold`, `$book` need `c` on Appointment; `$cancel` and `$accept-offer` need `u` on Appointment. A patient
 *   token acts only for its own patient;
 * - `$noshow` and `$waitlist` are staff operations (user/ or system/ Appointment.u / .s);
 * - `$set-preferences` needs `u` on the Patient or EpisodeOfCare; a patient token only for itself.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Appointment, Bundle, Coding, ParametersParameter, Parameters, Resource } from 'fhir/r4.js';
import { Type } from 'typebox';
import { CarewayError } from '../../shared/errors.js';
import { localId, readParameters } from '../../fhir/parameters.js';
import type { CarewayOperation } from '../../fhir/facade.js';
import { CANONICAL_BASE } from '../../fhir/canonical.js';
import { WEEKDAY_CODES, type Weekday } from '../../shared/zoned-time.js';
import { TIMES_OF_DAY, type Preferences, type TimeOfDay } from '../../scheduling/ranking.js';
import type { AvailableTime, SlotTemplate } from '../../scheduling/slots.js';
import type { FindInput } from '../../scheduling/availability.js';
import type { BookInput, HoldResult } from '../../scheduling/booking.js';
import { principalOf } from '../plugins/auth.js';
import { actorOf, confinedPatient } from '../auth/access.js';
import { decide } from '../auth/scopes.js';
import { FHIR_JSON } from '../plugins/errors.js';

const op = (name: string, resourceType: string, documentation: string): CarewayOperation => ({
  name,
  definition: `${CANONICAL_BASE}/OperationDefinition/${resourceType}-${name}`,
  resourceType,
  documentation,
});

export const SCHEDULING_OPERATIONS: CarewayOperation[] = [
  op(
    'generate-slots',
    'Schedule',
    "POST Schedule/[id]/$generate-slots Parameters(start: date, end: date, slot-minutes: positiveInt, availableTime*: (daysOfWeek*: code, availableStartTime: time, availableEndTime: time), break*: (same parts), holiday*: date). Creates the Slots idempotently in the schedule's time zone.",
  ),
  op(
    'find',
    'Appointment',
    'POST Appointment/$find Parameters(service-type | specialty: CodeableConcept, visit-type?: CodeableConcept, practitioner?: Reference, location?: Reference, patient?: Reference, journey?: Reference, start?: dateTime, end?: dateTime, _count?: positiveInt). A searchset of proposed Appointments, best first, each with its score (entry.search.score and an extension) and reasons (comment); allergy alerts as Flags.',
  ),
  op(
    'hold',
    'Appointment',
    'POST Appointment/$hold Parameters(slot+: Reference, patient: Reference). Holds the Slots (busy-tentative) until SLOT_HOLD_TTL; returns hold id and expiry.',
  ),
  op(
    'book',
    'Appointment',
    'POST Appointment/$book Parameters(slot+: Reference | appointment: a proposed Appointment from $find, patient: Reference, journey?, referral?, replaces?: Reference, visit-type?, description?). Books atomically, never twice; replaces reschedules.',
  ),
  op(
    'cancel',
    'Appointment',
    'POST Appointment/[id]/$cancel Parameters(reason: string). Cancels and frees the Slots; the waitlist is offered them.',
  ),
  op(
    'noshow',
    'Appointment',
    'POST Appointment/[id]/$noshow. Marks a no-show and opens a follow-up Task for the care team.',
  ),
  op(
    'accept-offer',
    'Appointment',
    'POST Appointment/$accept-offer Parameters(offer: Reference(Communication)). Accepts a waitlist offer: books the held Slot.',
  ),
  op(
    'waitlist',
    'Appointment',
    'GET Appointment/$waitlist?service-type=system|code: the waitlist for a service, ranked (priority, then waiting time).',
  ),
  op(
    'set-preferences',
    'Patient',
    'POST Patient/[id]/$set-preferences (or EpisodeOfCare/[id]/$set-preferences) Parameters(weekday*: code, timeOfDay*: morning|afternoon|evening, language?: code, location*: Reference, maxTravelKm?: decimal).',
  ),
  op(
    'set-preferences',
    'EpisodeOfCare',
    'POST Patient/[id]/$set-preferences (or EpisodeOfCare/[id]/$set-preferences) Parameters(weekday*: code, timeOfDay*: morning|afternoon|evening, language?: code, location*: Reference, maxTravelKm?: decimal).',
  ),
];

const IdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9\\-.]{1,64}$' }) });
const FhirBody = Type.Object({ resourceType: Type.String() }, { additionalProperties: true });
const fhirResponses = { 200: FhirBody, 201: FhirBody, '4xx': FhirBody, '5xx': FhirBody };

function confine(confinedTo: string | undefined, patientId: string | undefined): void {
  if (confinedTo && confinedTo !== patientId)
    throw new CarewayError('outside-compartment', 'a patient token can only act for its own patient');
}

const firstCoding = (cc: { coding?: Coding[] } | undefined): Coding | undefined =>
  cc?.coding?.find((c) => c.code);

function send(reply: FastifyReply, status: number, body: Resource): FastifyReply {
  return reply.code(status).type(FHIR_JSON).send(body);
}

function refId(
  ref: { reference?: string } | undefined,
  type: string,
  name: string,
  problems: string[],
): string | undefined {
  if (!ref) return undefined;
  const id = localId(ref, type);
  if (!id) problems.push(`"${name}" must reference ${type}/{id}`);
  return id;
}

function readWindows(
  parts: ParametersParameter[][] | undefined,
  name: string,
  problems: string[],
): AvailableTime[] {
  return (parts ?? []).map((p, i) => {
    const v = readParameters(
      { resourceType: 'Parameters', parameter: p },
      {
        daysOfWeek: { kind: 'valueCode', repeats: true },
        availableStartTime: { kind: 'valueTime', required: true },
        availableEndTime: { kind: 'valueTime', required: true },
      },
      `$generate-slots ${name} ${i + 1}`,
    );
    const days = (v.daysOfWeek ?? []).filter((d) => {
      const ok = (WEEKDAY_CODES as readonly string[]).includes(d);
      if (!ok) problems.push(`${name} ${i + 1}: "${d.slice(0, 10)}" is not a day of week (mon…sun)`);
      return ok;
    }) as Weekday[];
    const hhmm = (t: string): string => (t === '24:00:00' ? '24:00' : t.slice(0, 5));
    return { days, start: hhmm(v.availableStartTime!), end: hhmm(v.availableEndTime!) };
  });
}

/** Throws a 400 naming every problem, when there are any. */
function refuse(operation: string, problems: readonly string[]): void {
  if (problems.length) throw new CarewayError('invalid-parameters', `${operation}: ${problems.join('; ')}`);
}

/** `$generate-slots` Parameters as a slot template (the Schedule's zone is added by the service). */
function readTemplate(body: unknown): Omit<SlotTemplate, 'zone'> {
  const p = readParameters(
    body,
    {
      start: { kind: 'valueDate', required: true },
      end: { kind: 'valueDate', required: true },
      'slot-minutes': { kind: 'valuePositiveInt', required: true },
      availableTime: { kind: 'part', repeats: true, required: true },
      break: { kind: 'part', repeats: true },
      holiday: { kind: 'valueDate', repeats: true },
    },
    '$generate-slots',
  );
  const problems: string[] = [];
  const availableTimes = readWindows(p.availableTime, 'availableTime', problems);
  const breaks = readWindows(p.break, 'break', problems);
  refuse('$generate-slots', problems);
  return {
    from: p.start!,
    to: p.end!,
    slotMinutes: p['slot-minutes']!,
    availableTimes,
    breaks,
    holidays: p.holiday ?? [],
  };
}

/** `$find` Parameters; a patient token finds for its own patient when it names none. */
function readFindInput(body: unknown, confinedTo: string | undefined): FindInput {
  const p = readParameters(
    body,
    {
      'service-type': { kind: 'valueCodeableConcept' },
      specialty: { kind: 'valueCodeableConcept' },
      'visit-type': { kind: 'valueCodeableConcept' },
      practitioner: { kind: 'valueReference' },
      location: { kind: 'valueReference' },
      patient: { kind: 'valueReference' },
      journey: { kind: 'valueReference' },
      start: { kind: 'valueDateTime' },
      end: { kind: 'valueDateTime' },
      _count: { kind: 'valuePositiveInt' },
    },
    '$find',
  );
  const problems: string[] = [];
  const serviceType = firstCoding(p['service-type']);
  const specialty = firstCoding(p.specialty);
  const visitType = firstCoding(p['visit-type']);
  if (p['service-type'] && !serviceType) problems.push('"service-type" needs a coding with a code');
  if (p.specialty && !specialty) problems.push('"specialty" needs a coding with a code');
  const practitionerId = refId(p.practitioner, 'Practitioner', 'practitioner', problems);
  const locationId = refId(p.location, 'Location', 'location', problems);
  const patientId = refId(p.patient, 'Patient', 'patient', problems) ?? confinedTo;
  const journeyId = refId(p.journey, 'EpisodeOfCare', 'journey', problems);
  const count = p._count ?? 10;
  if (count > 100) problems.push('"_count" may be at most 100');
  refuse('$find', problems);
  confine(confinedTo, patientId);
  return {
    ...(serviceType ? { serviceType } : {}),
    ...(specialty ? { specialty } : {}),
    ...(visitType ? { visitType } : {}),
    ...(practitionerId ? { practitionerId } : {}),
    ...(locationId ? { locationId } : {}),
    ...(patientId ? { patientId } : {}),
    ...(journeyId ? { journeyId } : {}),
    ...(p.start ? { start: p.start } : {}),
    ...(p.end ? { end: p.end } : {}),
    count,
  };
}

/** `$hold` Parameters: the Slots and the patient (a patient token only for itself). */
function readHoldInput(
  body: unknown,
  confinedTo: string | undefined,
): { slotIds: string[]; patientId: string } {
  const p = readParameters(
    body,
    {
      slot: { kind: 'valueReference', repeats: true, required: true },
      patient: { kind: 'valueReference', required: true },
    },
    '$hold',
  );
  const problems: string[] = [];
  const slotIds = (p.slot ?? []).map((r) => refId(r, 'Slot', 'slot', problems) ?? '');
  const patientId = refId(p.patient, 'Patient', 'patient', problems);
  refuse('$hold', problems);
  confine(confinedTo, patientId);
  return { slotIds, patientId: patientId! };
}

function holdParameters(r: HoldResult): Parameters {
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'hold', valueString: r.hold.id },
      { name: 'expires', valueInstant: r.hold.expires },
      ...r.slots.map((s) => ({ name: 'slot', valueReference: { reference: `Slot/${s.id}` } })),
    ],
  };
}

/**
 * `$book` Parameters: the Slots and patient come as parameters, or from a proposed Appointment of `$find`.
 * A patient token books only for itself, and its booking counts as confirmed.
 */
function readBookInput(body: unknown, confinedTo: string | undefined): BookInput {
  const p = readParameters(
    body,
    {
      slot: { kind: 'valueReference', repeats: true },
      appointment: { kind: 'resource' },
      patient: { kind: 'valueReference' },
      journey: { kind: 'valueReference' },
      referral: { kind: 'valueReference' },
      replaces: { kind: 'valueReference' },
      'visit-type': { kind: 'valueCodeableConcept' },
      description: { kind: 'valueString' },
    },
    '$book',
  );
  const problems: string[] = [];
  const proposed = p.appointment as Appointment | undefined;
  if (proposed && proposed.resourceType !== 'Appointment')
    problems.push('"appointment" must be an Appointment');
  const fromProposed = proposed?.resourceType === 'Appointment' ? proposed : undefined;
  const slotRefs = p.slot ?? fromProposed?.slot ?? [];
  if (slotRefs.length === 0)
    problems.push('at least one "slot" (or an "appointment" with slots) is required');
  const slotIds = slotRefs.map((r) => refId(r, 'Slot', 'slot', problems) ?? '');
  const patientRef =
    p.patient ?? fromProposed?.participant?.find((x) => x.actor?.reference?.startsWith('Patient/'))?.actor;
  const patientId = patientRef ? refId(patientRef, 'Patient', 'patient', problems) : confinedTo;
  if (!patientId) problems.push('"patient" is required');
  const journeyId = refId(p.journey, 'EpisodeOfCare', 'journey', problems);
  const referralId = refId(p.referral, 'ServiceRequest', 'referral', problems);
  const replacesId = refId(p.replaces, 'Appointment', 'replaces', problems);
  refuse('$book', problems);
  confine(confinedTo, patientId);
  return {
    slotIds,
    patientId: patientId!,
    ...(journeyId ? { journeyId } : {}),
    ...(referralId ? { referralId } : {}),
    ...(replacesId ? { replacesId } : {}),
    ...(p['visit-type'] ? { appointmentType: p['visit-type'] } : {}),
    ...(p.description ? { description: p.description } : {}),
    ...(confinedTo ? { byPatient: true } : {}),
  };
}

/** `$set-preferences` Parameters as preferences, every bad value named. */
function readPreferencesInput(body: unknown): Preferences {
  const p = readParameters(
    body,
    {
      weekday: { kind: 'valueCode', repeats: true },
      timeOfDay: { kind: 'valueCode', repeats: true },
      language: { kind: 'valueCode' },
      location: { kind: 'valueReference', repeats: true },
      maxTravelKm: { kind: 'valueDecimal' },
    },
    '$set-preferences',
  );
  const problems: string[] = [];
  for (const d of p.weekday ?? [])
    if (!(WEEKDAY_CODES as readonly string[]).includes(d))
      problems.push(`weekday "${d.slice(0, 10)}" must be one of mon…sun`);
  for (const t of p.timeOfDay ?? [])
    if (!Object.hasOwn(TIMES_OF_DAY, t))
      problems.push(`timeOfDay "${t.slice(0, 12)}" must be morning, afternoon or evening`);
  for (const l of p.location ?? []) refId(l, 'Location', 'location', problems);
  if (p.language !== undefined && !/^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(p.language))
    problems.push('"language" must be a BCP-47 code');
  if (p.maxTravelKm !== undefined && !(p.maxTravelKm > 0)) problems.push('"maxTravelKm" must be above 0');
  refuse('$set-preferences', problems);
  return {
    ...(p.weekday ? { weekdays: p.weekday as Weekday[] } : {}),
    ...(p.timeOfDay ? { timesOfDay: p.timeOfDay as TimeOfDay[] } : {}),
    ...(p.language ? { language: p.language } : {}),
    ...(p.location ? { locations: p.location.map((l) => l.reference!) } : {}),
    ...(p.maxTravelKm !== undefined ? { maxTravelKm: p.maxTravelKm } : {}),
  };
}

/** The ranked waitlist as a searchset; the score falls from 1 with the rank, for clients that sort on it. */
function waitlistBundle(entries: readonly Appointment[]): Bundle {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total: entries.length,
    entry: entries.map((a, i) => ({
      fullUrl: `Appointment/${a.id}`,
      resource: a,
      search: { mode: 'match', score: Math.round((1 - i / Math.max(1, entries.length)) * 10_000) / 10_000 },
    })),
  };
}

const idOf = (request: FastifyRequest): string => (request.params as { id: string }).id;

function schema(summary: string, name: string, withId = false) {
  return {
    tags: ['scheduling'],
    summary,
    description: SCHEDULING_OPERATIONS.find((o) => o.name === name)?.documentation ?? '',
    security: [{ bearer: [] }],
    ...(withId ? { params: IdParams } : {}),
    body: FhirBody,
    response: fhirResponses,
  };
}

const WaitlistSchema = {
  tags: ['scheduling'],
  summary: 'The ranked waitlist for a service type (scope: user/ or system/ Appointment.s)',
  security: [{ bearer: [] }],
  querystring: Type.Object({ 'service-type': Type.String({ minLength: 1, maxLength: 512 }) }),
  response: fhirResponses,
};

export default async function schedulingRoutes(app: FastifyInstance): Promise<void> {
  app.post(
    '/fhir/Schedule/:id/$generate-slots',
    { schema: schema('Generate Slots from a weekly template (scope: Slot.c)', 'generate-slots', true) },
    async (request, reply) => {
      confinedPatient(principalOf(request), 'Slot', 'c', true);
      const template = readTemplate(request.body);
      const result = await app.scheduling.generateSlots(idOf(request), template);
      const out: Parameters = {
        resourceType: 'Parameters',
        parameter: [
          { name: 'created', valueInteger: result.created },
          { name: 'existing', valueInteger: result.existing },
        ],
      };
      return send(reply, result.created > 0 ? 201 : 200, out);
    },
  );

  app.post(
    '/fhir/Appointment/$find',
    { schema: schema('Find appointment slots ranked for a patient (scope: Slot.s)', 'find') },
    async (request, reply) => {
      const principal = principalOf(request);
      const confinedTo = confinedPatient(principal, 'Slot', 's');
      const bundle = await app.scheduling.find(readFindInput(request.body, confinedTo));
      // Allergy alerts (Flags) are AllergyIntolerance content: only for a caller who may read those.
      if (!decide(principal.scopes, 'AllergyIntolerance', 'r').allowed)
        bundle.entry = (bundle.entry ?? []).filter((e) => e.resource?.resourceType !== 'Flag');
      return send(reply, 200, bundle);
    },
  );

  app.post(
    '/fhir/Appointment/$hold',
    { schema: schema('Hold Slots for a patient for a short time (scope: Appointment.c)', 'hold') },
    async (request, reply) => {
      const principal = principalOf(request);
      const confinedTo = confinedPatient(principal, 'Appointment', 'c');
      const { slotIds, patientId } = readHoldInput(request.body, confinedTo);
      const r = await app.scheduling.hold(slotIds, patientId, actorOf(principal));
      return send(reply, r.changed ? 201 : 200, holdParameters(r));
    },
  );

  app.post(
    '/fhir/Appointment/$book',
    { schema: schema('Book Slots for a patient, atomically (scope: Appointment.c)', 'book') },
    async (request, reply) => {
      const principal = principalOf(request);
      const confinedTo = confinedPatient(principal, 'Appointment', 'c');
      const r = await app.scheduling.book(readBookInput(request.body, confinedTo), actorOf(principal));
      if (r.created)
        void reply.header(
          'location',
          `Appointment/${r.appointment.id}/_history/${r.appointment.meta?.versionId ?? '1'}`,
        );
      return send(reply, r.created ? 201 : 200, r.appointment);
    },
  );

  app.post(
    '/fhir/Appointment/:id/$cancel',
    { schema: schema('Cancel an appointment and free its Slots (scope: Appointment.u)', 'cancel', true) },
    async (request, reply) => {
      const principal = principalOf(request);
      const confinedTo = confinedPatient(principal, 'Appointment', 'u');
      const p = readParameters(request.body, { reason: { kind: 'valueString', required: true } }, '$cancel');
      const r = await app.scheduling.cancel(idOf(request), p.reason!, actorOf(principal), confinedTo);
      return send(reply, 200, r.appointment);
    },
  );

  app.post(
    '/fhir/Appointment/:id/$noshow',
    { schema: schema('Mark a no-show (scope: user/ or system/ Appointment.u)', 'noshow', true) },
    async (request, reply) => {
      const principal = principalOf(request);
      confinedPatient(principal, 'Appointment', 'u', true);
      if (request.body !== undefined && request.body !== null) readParameters(request.body, {}, '$noshow');
      const r = await app.scheduling.markNoShow(idOf(request), actorOf(principal));
      return send(reply, 200, r.appointment);
    },
  );

  app.post(
    '/fhir/Appointment/$accept-offer',
    { schema: schema('Accept a waitlist offer (scope: Appointment.u)', 'accept-offer') },
    async (request, reply) => {
      const principal = principalOf(request);
      const confinedTo = confinedPatient(principal, 'Appointment', 'u');
      const p = readParameters(
        request.body,
        { offer: { kind: 'valueReference', required: true } },
        '$accept-offer',
      );
      const problems: string[] = [];
      const offerId = refId(p.offer, 'Communication', 'offer', problems);
      refuse('$accept-offer', problems);
      const r = await app.scheduling.acceptOffer(offerId!, actorOf(principal), confinedTo);
      return send(reply, 200, r.appointment);
    },
  );

  app.get('/fhir/Appointment/$waitlist', { schema: WaitlistSchema }, async (request, reply) => {
    confinedPatient(principalOf(request), 'Appointment', 's', true);
    const q = request.query as { 'service-type': string };
    const entries = await app.scheduling.waitlist(q['service-type'].split(','));
    return send(reply, 200, waitlistBundle(entries));
  });

  for (const type of ['Patient', 'EpisodeOfCare'] as const) {
    app.post(
      `/fhir/${type}/:id/$set-preferences`,
      {
        schema: schema(`Set scheduling preferences on a ${type} (scope: ${type}.u)`, 'set-preferences', true),
      },
      async (request, reply) => {
        const confinedTo = confinedPatient(principalOf(request), type, 'u');
        const prefs = readPreferencesInput(request.body);
        return send(reply, 200, await app.scheduling.setPreferences(type, idOf(request), prefs, confinedTo));
      },
    );
  }
}
