/**
 * Issue #17, "Bad input never gives 5xx": generated (fast-check) mutations of valid payloads for every write
 * endpoint, against the real HAPI and Redis.
 *
 * For each endpoint a valid payload carrying a unique marker (an identifier value, a reason text) is mutated
 * (see test/support/fuzz.ts) and sent. The answer is classified:
 * - never a 5xx;
 * - a 4xx is an OperationOutcome naming the problem, and nothing was written: no resource carries the run's
 *   marker, and the resources the operation acts on kept their version;
 * - a 2xx is only for a mutation that stayed valid: the body passes the FHIR R4 structure check.
 *
 * Seeds are fixed (FUZZ_SEED + the endpoint's index), so a failure replays; FUZZ_RUNS raises the runs.
 * Plus deterministic regressions for the three 500s the issue reported.
 */
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Appointment,
  Bundle,
  Communication,
  EpisodeOfCare,
  MessageHeader,
  OperationOutcome,
  ServiceRequest,
  Parameters,
  Patient,
  Practitioner,
  Resource,
  Schedule,
  Slot,
  Task,
} from 'fhir/r4.js';
import { startHarness, uniq, type Harness } from '../support/harness.js';
import { describeMutations, FUZZ_RUNS, FUZZ_SEED, MARKER, mutatedHl7, mutatedJson } from '../support/fuzz.js';
import { structureProblems } from '../../src/fhir/structure.js';
import { canonical } from '../../src/fhir/canonical.js';

const SECRET = 'fuzz-webhook-secret-0123456789';
const FUZZ = 'urn:careway:test:fuzz';
const REFERRER = 'urn:oid:2.16.840.1.113883.19.5.1';
const MRN = 'urn:oid:2.16.840.1.113883.19.5.99';
const run = uniq();

let h: Harness;
let token: string;

/** Fixtures the operations act on. */
const f = {
  patient: '',
  practitioner: '',
  journeyAdvance: '',
  journeyClose: '',
  schedule: '',
  slots: [] as string[],
  appointmentCancel: '',
  appointmentNoshow: '',
  communication: '',
  task: '',
  taskBody: undefined as Task | undefined,
  observation: '',
};

async function search<T extends Resource>(type: string, query: Record<string, string>): Promise<T[]> {
  return h.fhir.searchAll<T>(type, query, { noCache: true });
}
const byIdentifier = async (type: string, system: string, marker: string): Promise<boolean> =>
  (await search(type, { identifier: `${system}|${marker}` })).length > 0;
const versionOf = async (type: string, id: string): Promise<string> =>
  (await h.fhir.read<Resource>(type, id, { noCache: true })).meta?.versionId ?? '';

async function inject(method: 'POST' | 'PUT' | 'PATCH', url: string, payload: string, contentType: string) {
  return h.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
    payload,
  });
}

const params = (...p: NonNullable<Parameters['parameter']>): Parameters => ({
  resourceType: 'Parameters',
  parameter: p,
});
const ref = (reference: string) => ({ reference });

function referralTransaction(): Bundle {
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: 'urn:uuid:11111111-1111-4111-8111-111111111111',
        resource: {
          resourceType: 'Patient',
          identifier: [{ system: MRN, value: MARKER }],
          name: [{ family: 'Fuzzed', given: ['Ada'] }],
          gender: 'female',
          birthDate: '1970-01-01',
        } as Patient,
        request: { method: 'POST', url: 'Patient' },
      },
      {
        fullUrl: 'urn:uuid:22222222-2222-4222-8222-222222222222',
        resource: {
          resourceType: 'Practitioner',
          identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.6', value: `npi-${MARKER}` }],
          name: [{ family: 'Gp' }],
        } as Practitioner,
        request: { method: 'POST', url: 'Practitioner' },
      },
      {
        fullUrl: 'urn:uuid:33333333-3333-4333-8333-333333333333',
        resource: {
          resourceType: 'ServiceRequest',
          identifier: [{ system: REFERRER, value: MARKER }],
          status: 'active',
          intent: 'order',
          priority: 'routine',
          code: { text: 'Cardiology consultation' },
          subject: ref('urn:uuid:11111111-1111-4111-8111-111111111111'),
          requester: ref('urn:uuid:22222222-2222-4222-8222-222222222222'),
          authoredOn: '2026-11-20T10:00:00Z',
        } as ServiceRequest,
        request: { method: 'POST', url: 'ServiceRequest' },
      },
    ],
  };
}

function referralMessage(): Bundle {
  const tx = referralTransaction();
  return {
    resourceType: 'Bundle',
    type: 'message',
    entry: [
      {
        fullUrl: 'urn:uuid:00000000-0000-4000-8000-000000000000',
        resource: {
          resourceType: 'MessageHeader',
          id: 'msg-fuzz',
          eventCoding: {
            system: 'http://hl7.org/fhir/us/bser/CodeSystem/bser-messageheader-event',
            code: 'bser-referral-request',
          },
          source: { name: 'GP system', endpoint: 'http://127.0.0.1:9/fhir' },
          focus: [ref('urn:uuid:44444444-4444-4444-8444-444444444444')],
        } as MessageHeader,
      },
      {
        fullUrl: 'urn:uuid:44444444-4444-4444-8444-444444444444',
        resource: {
          resourceType: 'Task',
          status: 'requested',
          intent: 'order',
          focus: ref('urn:uuid:33333333-3333-4333-8333-333333333333'),
        } as Task,
      },
      ...(tx.entry ?? []).map((e) => ({ fullUrl: e.fullUrl, resource: e.resource })),
    ],
  };
}

const referralWritten = async (m: string) =>
  (await byIdentifier('ServiceRequest', REFERRER, m)) || (await byIdentifier('Patient', MRN, m));

function observation(id?: string): Resource {
  return {
    resourceType: 'Observation',
    ...(id ? { id } : {}),
    identifier: [{ system: FUZZ, value: MARKER }],
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }], text: 'Heart rate' },
    subject: ref(`Patient/${f.patient}`),
    effectiveDateTime: '2026-11-20T10:00:00Z',
    valueQuantity: { value: 72, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  } as Resource;
}
const observationWritten = (m: string) => byIdentifier('Observation', FUZZ, m);

interface Target {
  readonly name: string;
  readonly method?: 'POST' | 'PUT' | 'PATCH';
  readonly url: (marker: string) => string;
  readonly contentType?: string;
  /** The valid payload, with MARKER where the run's marker goes. */
  readonly base: () => unknown;
  /** Whether the payload is a FHIR resource (a 2xx then needs it to pass the structure check). */
  readonly fhir?: boolean;
  /** Something carrying the marker was written. */
  readonly written?: (marker: string) => Promise<boolean>;
  /** State a refused request must leave as it was (e.g. the versions of the resources an operation acts on). */
  readonly state?: () => Promise<string>;
  /** Extra headers for a run (the reply signature). */
  readonly headers?: (payload: string) => Record<string, string>;
}

const targets: Target[] = [
  // ---- referral intake ----
  {
    name: 'POST /fhir referral transaction',
    url: () => '/fhir',
    base: referralTransaction,
    written: referralWritten,
  },
  {
    name: 'POST /fhir/$process-message',
    url: () => '/fhir/$process-message',
    base: referralMessage,
    written: referralWritten,
  },
  {
    name: 'POST /fhir/ServiceRequest',
    url: () => '/fhir/ServiceRequest',
    base: () => ({
      resourceType: 'ServiceRequest',
      identifier: [{ system: REFERRER, value: MARKER }],
      status: 'active',
      intent: 'order',
      code: { text: 'Physiotherapy' },
      subject: ref(`Patient/${f.patient}`),
      requester: ref(`Practitioner/${f.practitioner}`),
    }),
    written: (m) => byIdentifier('ServiceRequest', REFERRER, m),
  },
  // ---- journeys ----
  {
    name: 'EpisodeOfCare/$start-journey',
    url: () => '/fhir/EpisodeOfCare/$start-journey',
    base: () =>
      params(
        { name: 'patient', valueReference: ref(`Patient/${f.patient}`) },
        { name: 'identifier', valueIdentifier: { system: FUZZ, value: MARKER } },
        { name: 'stage', valueCode: 'awareness' },
      ),
    written: (m) => byIdentifier('EpisodeOfCare', FUZZ, m),
  },
  {
    name: 'EpisodeOfCare/[id]/$advance-stage',
    url: () => `/fhir/EpisodeOfCare/${f.journeyAdvance}/$advance-stage`,
    base: () =>
      params({ name: 'stage', valueCode: 'consideration' }, { name: 'reason', valueString: MARKER }),
    state: () => versionOf('EpisodeOfCare', f.journeyAdvance),
  },
  {
    name: 'EpisodeOfCare/[id]/$close-journey',
    url: () => `/fhir/EpisodeOfCare/${f.journeyClose}/$close-journey`,
    base: () => params({ name: 'status', valueCode: 'cancelled' }, { name: 'reason', valueString: MARKER }),
    state: () => versionOf('EpisodeOfCare', f.journeyClose),
  },
  // ---- scheduling ----
  {
    name: 'Schedule/[id]/$generate-slots',
    url: () => `/fhir/Schedule/${f.schedule}/$generate-slots`,
    base: () =>
      params(
        { name: 'start', valueDate: dateAhead(21) },
        { name: 'end', valueDate: dateAhead(22) },
        { name: 'slot-minutes', valuePositiveInt: 30 },
        {
          name: 'availableTime',
          part: [
            { name: 'daysOfWeek', valueCode: 'mon' },
            { name: 'daysOfWeek', valueCode: 'tue' },
            { name: 'availableStartTime', valueTime: '09:00:00' },
            { name: 'availableEndTime', valueTime: '10:00:00' },
          ],
        },
      ),
    state: async () =>
      String((await search<Slot>('Slot', { schedule: `Schedule/${f.schedule}`, _count: '200' })).length),
  },
  {
    name: 'Appointment/$find',
    url: () => '/fhir/Appointment/$find',
    base: () =>
      params(
        { name: 'service-type', valueCodeableConcept: { coding: [{ system: FUZZ, code: `svc-${run}` }] } },
        { name: 'patient', valueReference: ref(`Patient/${f.patient}`) },
      ),
  },
  {
    name: 'Appointment/$hold',
    url: () => '/fhir/Appointment/$hold',
    base: () =>
      params(
        { name: 'slot', valueReference: ref(`Slot/${f.slots[0]}`) },
        { name: 'patient', valueReference: ref(`Patient/${f.patient}`) },
      ),
    state: () => slotState(),
  },
  {
    name: 'Appointment/$book',
    url: () => '/fhir/Appointment/$book',
    base: () =>
      params(
        { name: 'slot', valueReference: ref(`Slot/${f.slots[1]}`) },
        { name: 'patient', valueReference: ref(`Patient/${f.patient}`) },
        { name: 'comment', valueString: MARKER },
      ),
    state: () => slotState(),
  },
  {
    name: 'Appointment/[id]/$cancel',
    url: () => `/fhir/Appointment/${f.appointmentCancel}/$cancel`,
    base: () => params({ name: 'reason', valueString: MARKER }),
    state: () => versionOf('Appointment', f.appointmentCancel),
  },
  {
    name: 'Appointment/[id]/$noshow',
    url: () => `/fhir/Appointment/${f.appointmentNoshow}/$noshow`,
    base: () => params({ name: 'reason', valueString: MARKER }),
    state: () => versionOf('Appointment', f.appointmentNoshow),
  },
  {
    name: 'Appointment/$accept-offer',
    url: () => '/fhir/Appointment/$accept-offer',
    base: () => params({ name: 'offer', valueReference: ref(`Communication/${f.communication}`) }),
    state: () => versionOf('Communication', f.communication),
  },
  {
    name: 'Patient/[id]/$set-preferences',
    url: () => `/fhir/Patient/${f.patient}/$set-preferences`,
    base: () => params({ name: 'weekday', valueCode: 'tue' }, { name: 'timeOfDay', valueCode: 'afternoon' }),
    state: () => versionOf('Patient', f.patient),
  },
  // ---- triage ----
  ...(['accept', 'reject', 'start', 'complete'] as const).map((action): Target => ({
    name: `Task/[id]/$${action}`,
    url: () => `/fhir/Task/${f.task}/$${action}`,
    base: () => params({ name: 'reason', valueString: MARKER }),
    state: () => versionOf('Task', f.task),
  })),
  {
    name: 'PUT /fhir/Task/[id] (triage)',
    method: 'PUT',
    url: () => `/fhir/Task/${f.task}`,
    base: () => ({ ...f.taskBody, status: 'accepted', statusReason: { text: MARKER } }),
    state: () => versionOf('Task', f.task),
  },
  {
    name: 'PATCH /fhir/Task/[id] (triage)',
    method: 'PATCH',
    contentType: 'application/json-patch+json',
    fhir: false,
    url: () => `/fhir/Task/${f.task}`,
    base: () => [
      { op: 'replace', path: '/status', value: 'accepted' },
      { op: 'add', path: '/statusReason', value: { text: MARKER } },
    ],
    state: () => versionOf('Task', f.task),
  },
  // ---- engagement ----
  {
    name: 'POST /fhir/Communication',
    url: () => '/fhir/Communication',
    base: () => ({
      resourceType: 'Communication',
      identifier: [{ system: FUZZ, value: MARKER }],
      subject: ref(`Patient/${f.patient}`),
      recipient: [ref(`Patient/${f.patient}`)],
      payload: [{ contentString: 'Please rest it for a week.' }],
    }),
    written: (m) => byIdentifier('Communication', FUZZ, m),
  },
  {
    name: 'POST /fhir/QuestionnaireResponse',
    url: () => '/fhir/QuestionnaireResponse',
    base: () => ({
      resourceType: 'QuestionnaireResponse',
      identifier: { system: FUZZ, value: MARKER },
      questionnaire: `${canonical.journeyStageCodeSystem.replace('/CodeSystem/journey-stage', '')}/Questionnaire/patient-experience|0.1.0`,
      status: 'completed',
      subject: ref(`Patient/${f.patient}`),
      item: [
        { linkId: 'overall', answer: [{ valueInteger: 4 }] },
        { linkId: 'recommend', answer: [{ valueBoolean: true }] },
      ],
    }),
    written: (m) => byIdentifier('QuestionnaireResponse', FUZZ, m),
  },
  {
    name: 'POST /engagement/replies (signed)',
    url: () => '/engagement/replies',
    contentType: 'application/json',
    fhir: false,
    // A sender no patient has: the reply is matched to nothing, so a valid one writes nothing either.
    base: () => ({ from: '+10000000000', text: `C ${MARKER}`, messageId: MARKER, channel: 'sms' }),
    headers: (payload) => {
      const ts = String(Date.now());
      const sig = `v1=${createHmac('sha256', SECRET).update(`${ts}.${payload}`).digest('hex')}`;
      return { 'x-careway-timestamp': ts, 'x-careway-signature': sig };
    },
  },
  // ---- facade writes ----
  {
    name: 'POST /fhir/Observation (facade create)',
    url: () => '/fhir/Observation',
    base: () => observation(),
    written: observationWritten,
  },
  {
    name: 'PUT /fhir/Observation/[id] (facade update)',
    method: 'PUT',
    url: () => `/fhir/Observation/${f.observation}`,
    base: () => observation(f.observation),
    written: observationWritten,
    state: () => versionOf('Observation', f.observation),
  },
  {
    name: 'PUT /fhir/Observation?identifier (conditional update)',
    method: 'PUT',
    url: (m) => `/fhir/Observation?identifier=${encodeURIComponent(`${FUZZ}|${m}`)}`,
    base: () => observation(),
    written: observationWritten,
  },
  {
    name: 'PATCH /fhir/Observation/[id] (JSON Patch)',
    method: 'PATCH',
    contentType: 'application/json-patch+json',
    fhir: false,
    url: () => `/fhir/Observation/${f.observation}`,
    base: () => [
      { op: 'replace', path: '/status', value: 'amended' },
      { op: 'add', path: '/note', value: [{ text: MARKER }] },
    ],
    state: () => versionOf('Observation', f.observation),
  },
  {
    name: 'POST /fhir batch',
    url: () => '/fhir',
    base: () => ({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: observation(), request: { method: 'POST', url: 'Observation' } },
        { request: { method: 'GET', url: `Patient/${f.patient}` } },
      ],
    }),
    // A batch writes entries on their own: a valid entry next to a refused one may be written (a 200).
    written: observationWritten,
  },
  {
    name: 'POST /fhir transaction (general)',
    url: () => '/fhir',
    base: () => ({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: 'urn:uuid:55555555-5555-4555-8555-555555555555',
          resource: observation(),
          request: { method: 'POST', url: 'Observation', ifNoneExist: `identifier=${FUZZ}|${MARKER}` },
        },
      ],
    }),
    written: observationWritten,
  },
];

function dateAhead(days: number): string {
  return new Date(Date.now() + days * 86400_000).toISOString().slice(0, 10);
}
async function slotState(): Promise<string> {
  const slots = await Promise.all(
    f.slots.slice(0, 2).map((id) => h.fhir.read<Slot>('Slot', id, { noCache: true })),
  );
  const appts = await search<Appointment>('Appointment', {
    patient: `Patient/${f.patient}`,
    _summary: 'count',
  });
  return JSON.stringify([slots.map((s) => `${s.status}@${s.meta?.versionId}`), appts.length]);
}

beforeAll(async () => {
  h = await startHarness({
    SMS_WEBHOOK_URL: 'http://127.0.0.1:9/sms',
    SMS_WEBHOOK_SECRET: SECRET,
    REFERRAL_REPLY_ALLOWLIST: 'http://127.0.0.1:9',
    QUIET_HOURS: '00:00-00:00',
  });
  token = await h.token({ scope: 'user/*.cruds', sub: 'fuzz-staff' });
  const post = async <T>(url: string, body: unknown): Promise<T> => {
    const res = await inject('POST', url, JSON.stringify(body), 'application/fhir+json');
    expect(res.statusCode, res.body).toBeLessThan(300);
    return res.json<T>();
  };
  f.patient = (
    await h.fhir.create<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: FUZZ, value: `p-${run}` }],
      name: [{ family: 'Fuzz' }],
    })
  ).resource.id!;
  const journey = async (n: string) =>
    (
      await post<EpisodeOfCare>(
        '/fhir/EpisodeOfCare/$start-journey',
        params(
          { name: 'patient', valueReference: ref(`Patient/${f.patient}`) },
          { name: 'identifier', valueIdentifier: { system: FUZZ, value: `j-${n}-${run}` } },
        ),
      )
    ).id!;
  f.journeyAdvance = await journey('advance');
  f.journeyClose = await journey('close');
  const practitioner = (await h.fhir.create<Resource>({ resourceType: 'Practitioner' })).resource.id!;
  f.practitioner = practitioner;
  f.schedule = (
    await h.fhir.create<Schedule>({
      resourceType: 'Schedule',
      active: true,
      serviceType: [{ coding: [{ system: FUZZ, code: `svc-${run}` }] }],
      actor: [ref(`Practitioner/${practitioner}`)],
    })
  ).resource.id!;
  const monday = new Date(Date.now() + 14 * 86400_000);
  monday.setUTCDate(monday.getUTCDate() + ((8 - monday.getUTCDay()) % 7));
  const day = monday.toISOString().slice(0, 10);
  await post('/fhir/Schedule/' + f.schedule + '/$generate-slots', {
    ...params(
      { name: 'start', valueDate: day },
      { name: 'end', valueDate: day },
      { name: 'slot-minutes', valuePositiveInt: 30 },
      {
        name: 'availableTime',
        part: [
          { name: 'daysOfWeek', valueCode: 'mon' },
          { name: 'availableStartTime', valueTime: '08:00:00' },
          { name: 'availableEndTime', valueTime: '12:00:00' },
        ],
      },
    ),
  });
  const slots = await search<Slot>('Slot', { schedule: `Schedule/${f.schedule}`, _sort: 'start' });
  f.slots = slots.map((s) => s.id!);
  const booked = async (slot: string) =>
    (
      await post<Appointment>(
        '/fhir/Appointment/$book',
        params(
          { name: 'slot', valueReference: ref(`Slot/${slot}`) },
          { name: 'patient', valueReference: ref(`Patient/${f.patient}`) },
        ),
      )
    ).id!;
  f.appointmentCancel = await booked(f.slots[4]!);
  f.appointmentNoshow = await booked(f.slots[5]!);
  f.communication = (
    await h.fhir.create<Communication>({
      resourceType: 'Communication',
      status: 'completed',
      subject: ref(`Patient/${f.patient}`),
    })
  ).resource.id!;
  const referral = referralTransaction();
  const text = JSON.stringify(referral).replaceAll(MARKER, `fixture-${run}`);
  const intake = await inject('POST', '/fhir', text, 'application/fhir+json');
  expect(intake.statusCode, intake.body).toBe(200);
  const location = intake
    .json<Bundle>()
    .entry?.map((e) => /Task\/([A-Za-z0-9\-.]+)/.exec(e.response?.location ?? '')?.[1])
    .find(Boolean);
  f.task = location!;
  f.taskBody = await h.fhir.read<Task>('Task', f.task, { noCache: true });
  delete f.taskBody.meta;
  f.observation = (
    await h.fhir.create<Resource>(
      JSON.parse(JSON.stringify(observation()).replaceAll(MARKER, `fixture-${run}`)) as Resource,
    )
  ).resource.id!;
}, 300_000);
afterAll(async () => {
  await h?.close();
});

describe('bad input never gives 5xx (generated)', () => {
  targets.forEach((t, index) => {
    it(`when ${t.name} gets mutated payloads then every answer is a 4xx OperationOutcome with nothing written, or a valid 2xx`, async () => {
      await fc.assert(
        fc.asyncProperty(mutatedJson(t.base()), async ({ text, mutations }) => {
          const marker = `fz-${uniq()}`;
          const payload = text.replaceAll(MARKER, marker);
          const before = await t.state?.();
          const res = await h.app.inject({
            method: t.method ?? 'POST',
            url: t.url(marker),
            headers: {
              authorization: `Bearer ${token}`,
              'content-type': t.contentType ?? 'application/fhir+json',
              ...t.headers?.(payload),
            },
            payload,
          });
          const what = `${t.name} [${describeMutations(mutations)}] → ${res.statusCode} ${res.body.slice(0, 400)}`;
          expect(res.statusCode, what).toBeLessThan(500);
          if (res.statusCode >= 400) {
            const oo = res.json<OperationOutcome>();
            expect(oo.resourceType, what).toBe('OperationOutcome');
            expect(oo.issue[0]?.diagnostics ?? oo.issue[0]?.details?.text, what).toBeTruthy();
            if (t.written) expect(await t.written(marker), `written: ${what}`).toBe(false);
            if (t.state) expect(await t.state(), `changed: ${what}`).toBe(before);
          } else if (t.fhir !== false) {
            expect(structureProblems(JSON.parse(payload)), `accepted: ${what}`).toEqual([]);
          }
        }),
        { seed: FUZZ_SEED + index, numRuns: FUZZ_RUNS },
      );
    });
  });

  it('when POST /hl7 gets mutated messages then no answer is a 5xx', async () => {
    const base = `MSH|^~\\&|FUZZ|MAINHOSP|CAREWAY|CW|20240115083015-0500||ADT^A04|${MARKER}|P|2.5\rEVN|A04|20240115083015-0500\rPID|1||MRN-${MARKER}^^^MAINHOSP^MR||Zedekiah^Quill||19700101|F\rPV1|1|O\r`;
    await fc.assert(
      fc.asyncProperty(mutatedHl7(base), async (text) => {
        const marker = `fz${uniq()}`.slice(0, 19);
        const res = await h.app.inject({
          method: 'POST',
          url: '/hl7',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'x-application/hl7-v2+er7' },
          payload: text.replaceAll(MARKER, marker),
        });
        expect(
          res.statusCode,
          `${JSON.stringify(text.slice(0, 300))} → ${res.statusCode} ${res.body.slice(0, 300)}`,
        ).toBeLessThan(500);
      }),
      { seed: FUZZ_SEED + targets.length, numRuns: FUZZ_RUNS },
    );
  });

  it('when DELETE /fhir/{type}/{id} gets generated ids then no answer is a 5xx', async () => {
    // A lone surrogate cannot be percent-encoded as UTF-8; a client can still send its bytes (ED A0 80).
    const encode = (s: string): string => {
      try {
        return encodeURIComponent(s);
      } catch {
        return '%ED%A0%80';
      }
    };
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 80, unit: 'binary' }),
          fc.constantFrom('\uD800', '..', '%00', 'a'.repeat(65), `${f.observation}x`),
        ),
        async (id) => {
          const res = await h.app.inject({
            method: 'DELETE',
            url: `/fhir/Observation/${encode(id || 'x')}-fuzz-missing`,
            headers: { authorization: `Bearer ${token}` },
          });
          expect(
            res.statusCode,
            `${JSON.stringify(id)} → ${res.statusCode} ${res.body.slice(0, 300)}`,
          ).toBeLessThan(500);
        },
      ),
      { seed: FUZZ_SEED + targets.length + 1, numRuns: FUZZ_RUNS },
    );
  });
});

describe('the 500s reported in issue #17 (regressions)', () => {
  const send = (body: unknown) => inject('POST', '/fhir', JSON.stringify(body), 'application/fhir+json');
  const withSr = (change: (sr: Record<string, unknown>) => void) => {
    const b = JSON.parse(JSON.stringify(referralTransaction()).replaceAll(MARKER, `reg-${uniq()}`)) as Bundle;
    change(b.entry![2]!.resource as unknown as Record<string, unknown>);
    return b;
  };
  const expectStructure400 = async (body: Bundle, expression: string) => {
    const res = await send(body);
    expect(res.statusCode, res.body).toBe(400);
    const oo = res.json<OperationOutcome>();
    expect(oo.issue.map((i) => i.expression?.[0])).toContain(expression);
    expect(oo.issue[0]?.code).toBe('structure');
    const marker = (body.entry![2]!.resource as { identifier?: { value?: string }[] }).identifier;
    if (Array.isArray(marker) && marker[0]?.value)
      expect(await byIdentifier('ServiceRequest', REFERRER, marker[0].value)).toBe(false);
  };

  it('when the referral ServiceRequest has no subject then 400 names ServiceRequest.subject', async () => {
    await expectStructure400(
      withSr((sr) => delete sr['subject']),
      'Bundle.entry[2].resource.subject',
    );
  });

  it('when the referral identifier is not an array then 400 names it', async () => {
    await expectStructure400(
      withSr((sr) => (sr['identifier'] = { system: REFERRER, value: `reg-${uniq()}` })),
      'Bundle.entry[2].resource.identifier',
    );
  });

  it('when the referral identifier holds null then 400 names it', async () => {
    await expectStructure400(
      withSr((sr) => (sr['identifier'] = [null])),
      'Bundle.entry[2].resource.identifier[0]',
    );
  });

  it('when a string holds a lone surrogate then 400 before the FHIR server sees it', async () => {
    await expectStructure400(
      withSr((sr) => (sr['code'] = { text: 'a\uD800b' })),
      'Bundle.entry[2].resource.code.text',
    );
  });
});
