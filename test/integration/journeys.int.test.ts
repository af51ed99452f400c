/**
 * Journeys end to end through the app against the real HAPI and Redis: start, advance through all six
 * stages, the rules refusing bad changes, concurrency, $journey, $journeys, the timeline's pain points,
 * compartment confinement, bad input, and that what Careway writes validates against its profiles.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Bundle,
  EpisodeOfCare,
  Flag,
  OperationOutcome,
  Parameters,
  Patient,
  Provenance,
  Resource,
  ServiceRequest,
} from 'fhir/r4.js';
import { startHarness, uniq, type Harness } from '../support/harness.js';
import { canonical, versioned } from '../../src/fhir/canonical.js';
import { readState } from '../../src/journey/episode.js';
import { JourneyService } from '../../src/journey/service.js';
import { localLock } from '../../src/shared/lock.js';
import type { JourneyStage } from '../../src/journey/stages.js';

let h: Harness;
let clinician: string;
const day = 86400_000;
const ago = (ms: number): string => new Date(Date.now() - ms).toISOString();
const journeyExt = (id: string) => [
  { url: canonical.journeyReferenceExtension, valueReference: { reference: `EpisodeOfCare/${id}` } },
];

beforeAll(async () => {
  h = await startHarness();
  clinician = await h.token({ scope: 'user/*.cruds', sub: 'clinician-7' });
});
afterAll(async () => {
  await h.close();
});

async function newPatient(): Promise<string> {
  const p = await h.fhir.create<Patient>({
    resourceType: 'Patient',
    identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
  });
  return p.resource.id ?? '';
}

async function newReferral(patientId: string, authoredAgoMs = 0): Promise<string> {
  const r = await h.fhir.create<ServiceRequest>({
    resourceType: 'ServiceRequest',
    status: 'active',
    intent: 'order',
    subject: { reference: `Patient/${patientId}` },
    authoredOn: ago(authoredAgoMs),
  });
  return r.resource.id ?? '';
}

function params(...p: Parameters['parameter'] & object): Parameters {
  return { resourceType: 'Parameters', parameter: p };
}

async function post(url: string, body: unknown, token = clinician) {
  return h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function get(url: string, token = clinician) {
  return h.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
}

async function start(
  patientId: string,
  extra: NonNullable<Parameters['parameter']> = [],
): Promise<EpisodeOfCare> {
  const res = await post(
    '/fhir/EpisodeOfCare/$start-journey',
    params({ name: 'patient', valueReference: { reference: `Patient/${patientId}` } }, ...extra),
  );
  expect(res.statusCode, res.body).toBe(201);
  return res.json<EpisodeOfCare>();
}

const advance = (id: string, stage: string, reason?: string, token = clinician) =>
  post(
    `/fhir/EpisodeOfCare/${id}/$advance-stage`,
    params({ name: 'stage', valueCode: stage }, ...(reason ? [{ name: 'reason', valueString: reason }] : [])),
    token,
  );

async function errorsOnValidate(r: Resource, profile?: string): Promise<string[]> {
  const oo = await h.fhir.validate(r, profile);
  return oo.issue
    .filter((i) => i.severity === 'error' || i.severity === 'fatal')
    .map((i) => i.diagnostics ?? '');
}

describe('starting a journey', () => {
  it('when started from a referral then it is at access, linked to the referral, valid, with a Provenance; a replay returns it unchanged', async () => {
    const pid = await newPatient();
    const rid = await newReferral(pid);
    const body = params(
      { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
      { name: 'referral', valueReference: { reference: `ServiceRequest/${rid}` } },
    );
    const first = await post('/fhir/EpisodeOfCare/$start-journey', body);
    expect(first.statusCode, first.body).toBe(201);
    expect(first.headers['location']).toMatch(/\/fhir\/EpisodeOfCare\/[^/]+\/_history\/1$/);
    const eoc = first.json<EpisodeOfCare>();
    expect(readState(eoc).stage).toBe('access');
    expect(eoc.referralRequest).toEqual([{ reference: `ServiceRequest/${rid}` }]);
    expect(eoc.identifier?.[0]).toEqual({
      system: canonical.journeyForReferralSystem,
      value: `ServiceRequest/${rid}`,
    });
    expect(await errorsOnValidate(eoc, versioned(canonical.journeyEpisodeOfCare))).toEqual([]);

    const replay = await post('/fhir/EpisodeOfCare/$start-journey', body);
    expect(replay.statusCode).toBe(200);
    expect(replay.json<EpisodeOfCare>().id).toBe(eoc.id);
    expect(replay.json<EpisodeOfCare>().meta?.versionId).toBe('1');
    const provs = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `EpisodeOfCare/${eoc.id}` },
      { noCache: true },
    );
    expect(provs).toHaveLength(1);
    expect(provs[0]?.agent[0]?.who.identifier?.value).toBe('clinician-7');
    expect(provs[0]?.entity?.[0]?.what.reference).toBe(`ServiceRequest/${rid}`);
    expect(await errorsOnValidate(provs[0]!)).toEqual([]);
  });

  it.each([
    [
      'an unknown stage',
      (pid: string) =>
        params(
          { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
          { name: 'identifier', valueIdentifier: { system: 'urn:x', value: uniq() } },
          { name: 'stage', valueCode: 'limbo' },
        ),
      400,
      /"stage" must be one of/,
    ],
    [
      'no patient',
      () => params({ name: 'identifier', valueIdentifier: { system: 'urn:x', value: uniq() } }),
      400,
      /"patient" is required/,
    ],
    [
      'a patient of the wrong type',
      () =>
        params(
          { name: 'patient', valueReference: { reference: 'Practitioner/x' } },
          { name: 'identifier', valueIdentifier: { system: 'urn:x', value: '1' } },
        ),
      400,
      /must reference Patient/,
    ],
    [
      'a missing patient',
      () =>
        params(
          { name: 'patient', valueReference: { reference: `Patient/nobody-${uniq()}` } },
          { name: 'identifier', valueIdentifier: { system: 'urn:x', value: uniq() } },
        ),
      422,
      /does not exist/,
    ],
    [
      'neither identifier nor referral',
      (pid: string) => params({ name: 'patient', valueReference: { reference: `Patient/${pid}` } }),
      400,
      /"identifier".*or "referral" is required/,
    ],
    [
      'a value of the wrong type',
      (pid: string) => params({ name: 'patient', valueString: `Patient/${pid}` }),
      400,
      /must be given as valueReference \(got valueString\)/,
    ],
    [
      'an unknown parameter',
      (pid: string) =>
        params(
          { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
          { name: 'colour', valueString: 'blue' },
        ),
      400,
      /unknown parameter "colour"/,
    ],
    [
      'a body that is not Parameters',
      () => ({ resourceType: 'Patient' }),
      400,
      /expects a FHIR Parameters resource/,
    ],
    ['malformed JSON', () => '{"resourceType": "Parameters", ', 400, /not valid JSON/],
  ])('when given %s then a 4xx OperationOutcome names the problem', async (_label, body, status, text) => {
    const pid = await newPatient();
    const res = await post('/fhir/EpisodeOfCare/$start-journey', body(pid));
    expect(res.statusCode, res.body).toBe(status);
    expect(res.json<OperationOutcome>().issue[0]?.diagnostics).toMatch(text);
  });

  it('when the referral is for another patient then 422 names the rule', async () => {
    const [a, b] = [await newPatient(), await newPatient()];
    const rid = await newReferral(b);
    const res = await post(
      '/fhir/EpisodeOfCare/$start-journey',
      params(
        { name: 'patient', valueReference: { reference: `Patient/${a}` } },
        { name: 'referral', valueReference: { reference: `ServiceRequest/${rid}` } },
      ),
    );
    expect(res.statusCode).toBe(422);
    expect(res.json<OperationOutcome>().issue[0]?.details?.coding?.[0]?.code).toBe(
      'referral-patient-mismatch',
    );
  });
});

describe('advancing a journey', () => {
  it('when advanced through all six stages then each change is in the stage history with a Provenance, and it validates', async () => {
    const pid = await newPatient();
    const eoc = await start(pid, [
      { name: 'identifier', valueIdentifier: { system: 'urn:careway:test:journey', value: uniq() } },
    ]);
    expect(readState(eoc).stage).toBe('awareness');
    const path: JourneyStage[] = ['consideration', 'access', 'care', 'recovery', 'continuous-care'];
    let last: EpisodeOfCare = eoc;
    for (const stage of path) {
      const res = await advance(eoc.id ?? '', stage);
      expect(res.statusCode, res.body).toBe(200);
      last = res.json<EpisodeOfCare>();
      expect(readState(last).stage).toBe(stage);
    }
    const state = readState(last);
    expect(state.stageHistory.map((p) => p.stage)).toEqual(['awareness', ...path]);
    expect(state.stageHistory.slice(0, -1).every((p) => p.end)).toBe(true);
    expect(state.stageHistory.at(-1)?.end).toBeUndefined();
    expect(await errorsOnValidate(last, versioned(canonical.journeyEpisodeOfCare))).toEqual([]);
    const provs = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `EpisodeOfCare/${eoc.id}` },
      { noCache: true },
    );
    expect(provs.map((p) => p.activity?.text).sort()).toEqual(
      [
        'stage:->awareness',
        'stage:awareness->consideration',
        'stage:consideration->access',
        'stage:access->care',
        'stage:care->recovery',
        'stage:recovery->continuous-care',
      ].sort(),
    );

    // Replaying the last advance changes nothing.
    const replay = await advance(eoc.id ?? '', 'continuous-care');
    expect(replay.statusCode).toBe(200);
    expect(replay.json<EpisodeOfCare>().meta?.versionId).toBe(last.meta?.versionId);
  });

  it('when a jump is illegal or a move back has no reason then 422 names the rule, and nothing is written', async () => {
    const eoc = await start(await newPatient(), [
      { name: 'identifier', valueIdentifier: { system: 'urn:careway:test:journey', value: uniq() } },
    ]);
    const jump = await advance(eoc.id ?? '', 'recovery');
    expect(jump.statusCode).toBe(422);
    const oo = jump.json<OperationOutcome>();
    expect(oo.issue[0]?.code).toBe('business-rule');
    expect(oo.issue[0]?.details?.coding?.[0]?.code).toBe('transition-not-allowed');
    expect(oo.issue[0]?.diagnostics).toMatch(/cannot move from awareness to recovery/);
    await advance(eoc.id ?? '', 'care');
    const back = await advance(eoc.id ?? '', 'access');
    expect(back.statusCode).toBe(422);
    expect(back.json<OperationOutcome>().issue[0]?.details?.coding?.[0]?.code).toBe('reason-required');
    const ok = await advance(eoc.id ?? '', 'access', 'waiting for a second opinion');
    expect(ok.statusCode).toBe(200);
    expect(readState(ok.json<EpisodeOfCare>()).stageHistory.at(-1)?.reason).toBe(
      'waiting for a second opinion',
    );
    const current = await h.fhir.read<EpisodeOfCare>('EpisodeOfCare', eoc.id ?? '', { noCache: true });
    expect(current.meta?.versionId).toBe('3');
  });

  it.each([
    [
      'an unknown stage',
      (id: string) => [
        `/fhir/EpisodeOfCare/${id}/$advance-stage`,
        params({ name: 'stage', valueCode: 'limbo' }),
      ],
      400,
    ],
    [
      'no stage',
      (id: string) => [
        `/fhir/EpisodeOfCare/${id}/$advance-stage`,
        params({ name: 'reason', valueString: 'x' }),
      ],
      400,
    ],
    [
      'a missing journey',
      () => ['/fhir/EpisodeOfCare/nope-404/$advance-stage', params({ name: 'stage', valueCode: 'care' })],
      404,
    ],
  ] as const)('when given %s then a 4xx OperationOutcome', async (_l, mk, status) => {
    const eoc = await start(await newPatient(), [
      { name: 'identifier', valueIdentifier: { system: 'urn:careway:test:journey', value: uniq() } },
    ]);
    const [url, body] = mk(eoc.id ?? '');
    const res = await post(url as string, body);
    expect(res.statusCode, res.body).toBe(status);
    expect(res.json<OperationOutcome>().resourceType).toBe('OperationOutcome');
  });

  it('when the EpisodeOfCare is not a Careway journey then 422', async () => {
    const pid = await newPatient();
    const plain = await h.fhir.create<EpisodeOfCare>({
      resourceType: 'EpisodeOfCare',
      status: 'active',
      patient: { reference: `Patient/${pid}` },
    });
    const res = await advance(plain.resource.id ?? '', 'care');
    expect(res.statusCode).toBe(422);
    expect(res.json<OperationOutcome>().issue[0]?.details?.coding?.[0]?.code).toBe('not-a-journey');
  });

  it('when two advances arrive at once then both are recorded, or one is refused; none is lost', async () => {
    const eoc = await start(await newPatient(), [
      { name: 'identifier', valueIdentifier: { system: 'urn:careway:test:journey', value: uniq() } },
      { name: 'stage', valueCode: 'access' },
    ]);
    const [a, b] = await Promise.all([advance(eoc.id ?? '', 'care'), advance(eoc.id ?? '', 'recovery')]);
    const final = readState(
      await h.fhir.read<EpisodeOfCare>('EpisodeOfCare', eoc.id ?? '', { noCache: true }),
    );
    const recorded = final.stageHistory.map((p) => p.stage);
    if (a.statusCode === 200) expect(recorded).toContain('care');
    if (b.statusCode === 200) expect(recorded).toContain('recovery');
    expect([a.statusCode, b.statusCode].every((s) => s === 200 || s === 422)).toBe(true);
    expect(a.statusCode).toBe(200);
    // Every 200 is in the history, in the order applied.
    expect(recorded[0]).toBe('access');
  });

  it('when two Careway instances (no shared lock) change one journey at once then If-Match retries lose no update', async () => {
    for (let round = 0; round < 3; round++) {
      const eoc = await start(await newPatient(), [
        { name: 'identifier', valueIdentifier: { system: 'urn:careway:test:journey', value: uniq() } },
      ]);
      const one = new JourneyService({ fhir: h.fhir, lock: localLock() });
      const two = new JourneyService({ fhir: h.fhir, lock: localLock() });
      const actor = { subject: 'test' };
      const results = await Promise.allSettled([
        one.advanceStage(eoc.id ?? '', 'care', undefined, actor),
        two.applyEvent(eoc.id ?? '', 'referral-accepted', actor),
      ]);
      const current = await h.fhir.read<EpisodeOfCare>('EpisodeOfCare', eoc.id ?? '', { noCache: true });
      const final = readState(current);
      const changed = results.filter((r) => r.status === 'fulfilled' && r.value.changed).length;
      // Every successful change is one version and one history entry: nothing was overwritten.
      expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
      expect(current.meta?.versionId).toBe(String(1 + changed));
      expect(final.stageHistory).toHaveLength(1 + changed);
      expect(final.stage).toBe('care');
    }
  });
});

describe('closing a journey', () => {
  it('when finished then the status and period end are recorded; further stage changes are refused with journey-closed', async () => {
    const eoc = await start(await newPatient(), [
      { name: 'identifier', valueIdentifier: { system: 'urn:careway:test:journey', value: uniq() } },
    ]);
    const noReason = await post(
      `/fhir/EpisodeOfCare/${eoc.id}/$close-journey`,
      params({ name: 'status', valueCode: 'cancelled' }),
    );
    expect(noReason.statusCode).toBe(422);
    expect(noReason.json<OperationOutcome>().issue[0]?.details?.coding?.[0]?.code).toBe('reason-required');
    const res = await post(
      `/fhir/EpisodeOfCare/${eoc.id}/$close-journey`,
      params({ name: 'status', valueCode: 'finished' }, { name: 'reason', valueString: 'care completed' }),
    );
    expect(res.statusCode, res.body).toBe(200);
    const closedEoc = res.json<EpisodeOfCare>();
    expect(closedEoc.status).toBe('finished');
    expect(closedEoc.period?.end).toBeTruthy();
    expect(closedEoc.statusHistory?.map((s) => s.status)).toEqual(['active', 'finished']);
    expect(await errorsOnValidate(closedEoc, versioned(canonical.journeyEpisodeOfCare))).toEqual([]);
    const again = await advance(eoc.id ?? '', 'consideration');
    expect(again.statusCode).toBe(409);
    expect(again.json<OperationOutcome>().issue[0]?.details?.coding?.[0]?.code).toBe('journey-closed');
    const bad = await post(
      `/fhir/EpisodeOfCare/${eoc.id}/$close-journey`,
      params({ name: 'status', valueCode: 'active' }),
    );
    expect(bad.statusCode).toBe(400);
  });
});

describe('reading journeys', () => {
  let pid: string;
  let eoc: EpisodeOfCare;
  const linkedTypes = [
    'Appointment',
    'CarePlan',
    'Communication',
    'CommunicationRequest',
    'QuestionnaireResponse',
    'Condition',
    'AllergyIntolerance',
    'Task',
    'DiagnosticReport',
    'Observation',
  ];

  beforeAll(async () => {
    pid = await newPatient();
    const rid = await newReferral(pid, 40 * day);
    eoc = await start(pid, [{ name: 'referral', valueReference: { reference: `ServiceRequest/${rid}` } }]);
    const id = eoc.id ?? '';
    const subject = { reference: `Patient/${pid}` };
    const rs: Resource[] = [
      // First appointment 25 days after the referral, and the patient did not come: a long wait and a no-show.
      {
        resourceType: 'Appointment',
        extension: journeyExt(id),
        status: 'noshow',
        start: ago(15 * day),
        end: ago(15 * day - 1800_000),
        participant: [{ actor: subject, status: 'accepted' }],
      } as Resource,
      {
        resourceType: 'CarePlan',
        extension: journeyExt(id),
        status: 'active',
        intent: 'plan',
        subject,
      } as Resource,
      // A message from the patient, three days old, never answered.
      {
        resourceType: 'Communication',
        extension: journeyExt(id),
        status: 'completed',
        subject,
        sender: subject,
        sent: ago(3 * day),
      } as Resource,
      {
        resourceType: 'CommunicationRequest',
        extension: journeyExt(id),
        status: 'active',
        subject,
      } as Resource,
      {
        resourceType: 'QuestionnaireResponse',
        extension: journeyExt(id),
        status: 'completed',
        subject,
      } as Resource,
      {
        resourceType: 'Condition',
        extension: journeyExt(id),
        subject,
        code: { text: 'test condition' },
      } as Resource,
      {
        resourceType: 'AllergyIntolerance',
        extension: journeyExt(id),
        patient: subject,
        code: { text: 'Penicillin' },
        criticality: 'high',
        clinicalStatus: {
          coding: [
            { system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' },
          ],
        },
      } as Resource,
      {
        resourceType: 'Task',
        extension: journeyExt(id),
        status: 'requested',
        intent: 'order',
        for: subject,
      } as Resource,
      {
        resourceType: 'DiagnosticReport',
        extension: journeyExt(id),
        status: 'final',
        code: { text: 'panel' },
        subject,
      } as Resource,
      {
        resourceType: 'Observation',
        extension: journeyExt(id),
        status: 'final',
        code: { text: 'obs' },
        subject,
      } as Resource,
      {
        resourceType: 'Encounter',
        status: 'finished',
        class: { code: 'AMB' },
        subject,
        episodeOfCare: [{ reference: `EpisodeOfCare/${id}` }],
      } as Resource,
      // An allergy recorded outside the journey still alerts.
      {
        resourceType: 'AllergyIntolerance',
        patient: subject,
        code: { text: 'Latex' },
        clinicalStatus: {
          coding: [
            { system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' },
          ],
        },
      } as Resource,
    ];
    for (const r of rs) await h.fhir.create(r);
    // A second journey for the same patient, and someone else's journey.
    await start(pid, [
      { name: 'identifier', valueIdentifier: { system: 'urn:careway:test:journey', value: uniq() } },
    ]);
  });

  it('when $journey is asked then every linked resource type comes back in one Bundle, with allergy alerts', async () => {
    const res = await get(`/fhir/EpisodeOfCare/${eoc.id}/$journey`);
    expect(res.statusCode, res.body).toBe(200);
    const b = res.json<Bundle>();
    const types = new Set(b.entry?.map((e) => e.resource?.resourceType));
    for (const t of [...linkedTypes, 'EpisodeOfCare', 'Patient', 'ServiceRequest', 'Encounter', 'Flag'])
      expect(types, t).toContain(t);
    expect(b.entry?.[0]?.resource?.id).toBe(eoc.id);
    const flags = b.entry
      ?.filter((e) => e.resource?.resourceType === 'Flag')
      .map((e) => (e.resource as Flag).code.text);
    expect(flags?.sort()).toEqual(['Allergy: Latex', 'Allergy: Penicillin']);
  });

  it('when allergy alerts are asked for the patient then active ones come back, high criticality first', async () => {
    const alerts = await h.app.journeys.allergyAlertsFor(pid);
    expect(alerts.map((a) => a.summary)).toEqual(['Allergy: Penicillin', 'Allergy: Latex']);
  });

  it('when $journeys is asked then both journeys of the patient come back with stage and status', async () => {
    const res = await get(`/fhir/Patient/${pid}/$journeys`);
    expect(res.statusCode).toBe(200);
    const list = res.json<Bundle<EpisodeOfCare>>().entry?.map((e) => e.resource!) ?? [];
    expect(list).toHaveLength(2);
    expect(list.map((e) => readState(e).stage).sort()).toEqual(['access', 'awareness']);
    expect(list.every((e) => e.status === 'active')).toBe(true);
  });

  it('when the timeline is asked then the long wait, the no-show and the unanswered message are pain points, allergies on top', async () => {
    const res = await get(`/journeys/${eoc.id}/timeline`);
    expect(res.statusCode, res.body).toBe(200);
    const t = res.json<{
      painPoints: { kind: string }[];
      alerts: { summary: string }[];
      touchpoints: { kind: string; time: string }[];
    }>();
    const kinds = t.painPoints.map((p) => p.kind);
    expect(kinds).toEqual(expect.arrayContaining(['referral-wait', 'no-show', 'message-unanswered']));
    expect(t.alerts[0]?.summary).toBe('Allergy: Penicillin');
    const times = t.touchpoints.map((x) => Date.parse(x.time));
    expect(times).toEqual([...times].sort((x, y) => x - y));
    const kinds2 = new Set(t.touchpoints.map((x) => x.kind));
    for (const k of ['stage', 'referral', 'appointment', 'communication', 'encounter', 'care-plan'])
      expect(kinds2, k).toContain(k);
  });

  it('when journeys are searched by stage through the facade then the stage SearchParameter works', async () => {
    const res = await get(`/fhir/EpisodeOfCare?patient=Patient/${pid}&stage=access`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<Bundle>().entry?.map((e) => e.resource?.id)).toEqual([eoc.id]);
  });

  it("when a patient token asks for another patient's journey then 403; its own is readable", async () => {
    const other = await newPatient();
    const theirs = await start(other, [
      { name: 'identifier', valueIdentifier: { system: 'urn:careway:test:journey', value: uniq() } },
    ]);
    const mine = await h.token({ scope: 'patient/*.rs', patient: pid });
    expect((await get(`/fhir/EpisodeOfCare/${theirs.id}/$journey`, mine)).statusCode).toBe(403);
    expect((await get(`/journeys/${theirs.id}/timeline`, mine)).statusCode).toBe(403);
    expect((await get(`/fhir/Patient/${other}/$journeys`, mine)).statusCode).toBe(403);
    expect((await get(`/fhir/EpisodeOfCare/${theirs.id}`, mine)).statusCode).toBe(403);
    expect((await get(`/fhir/EpisodeOfCare/${eoc.id}/$journey`, mine)).statusCode).toBe(200);
    expect((await get(`/fhir/Patient/${pid}/$journeys`, mine)).statusCode).toBe(200);
    const search = await get('/fhir/EpisodeOfCare?stage=awareness', mine);
    const owners = new Set(
      search.json<Bundle<EpisodeOfCare>>().entry?.map((e) => e.resource?.patient.reference),
    );
    expect(owners).toEqual(new Set([`Patient/${pid}`]));
    expect((await advance(eoc.id ?? '', 'care', undefined, mine)).statusCode).toBe(403);
  });

  it('when the CapabilityStatement is read then the journey operations are listed', async () => {
    const cs = (await h.app.inject({ method: 'GET', url: '/fhir/metadata' })).json<{
      rest: { resource: { type: string; operation?: { name: string }[] }[] }[];
    }>();
    const eocOps = cs.rest[0]?.resource
      .find((r) => r.type === 'EpisodeOfCare')
      ?.operation?.map((o) => o.name);
    expect(eocOps).toEqual(['start-journey', 'advance-stage', 'close-journey', 'journey', 'set-preferences']);
    expect(cs.rest[0]?.resource.find((r) => r.type === 'Patient')?.operation?.map((o) => o.name)).toEqual([
      'journeys',
      'set-preferences',
    ]);
    expect(cs.rest[0]?.resource.find((r) => r.type === 'Appointment')?.operation?.map((o) => o.name)).toEqual(
      ['find', 'hold', 'book', 'cancel', 'noshow', 'accept-offer', 'waitlist'],
    );
    expect(cs.rest[0]?.resource.find((r) => r.type === 'Schedule')?.operation?.map((o) => o.name)).toEqual([
      'generate-slots',
    ]);
  });
});
