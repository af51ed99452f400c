/**
 * Referral intake against the real HAPI and Redis, in its three shapes: a good referral starts a journey, a
 * replay changes nothing, a modified referral updates, every bad input gets its 4xx with nothing written,
 * triage moves the journey, and the referrer's endpoint gets every status change, once each, even when it
 * was down for a while.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Bundle,
  BundleEntry,
  EpisodeOfCare,
  MessageHeader,
  OperationOutcome,
  Patient,
  Practitioner,
  Provenance,
  ServiceRequest,
  Task,
} from 'fhir/r4.js';
import { startHarness, uniq, type Harness } from '../support/harness.js';
import { freePort } from '../../src/devstack/processes.js';
import { canonical, versioned } from '../../src/fhir/canonical.js';
import { readState } from '../../src/journey/episode.js';

let h: Harness;
let token: string;
let receiverPort: number;
let refusingPort: number;
let refusing: Server;
const refused: string[] = [];
const CONFIGURED = 'urn:example:configured-referrer';
const REFERRER = 'urn:oid:2.16.840.1.113883.19.5.1';
const MRN = 'urn:oid:2.16.840.1.113883.19.5.99';

beforeAll(async () => {
  receiverPort = await freePort();
  // A referrer endpoint that refuses every update: its jobs must end in the dead-letter queue.
  refusing = createServer((req, res) => {
    refused.push(req.url ?? '');
    req.resume();
    res.writeHead(400).end();
  });
  await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', () => resolve()));
  const addr = refusing.address();
  refusingPort = typeof addr === 'object' && addr ? addr.port : 0;
  h = await startHarness({
    REFERRAL_ENDPOINTS: `${CONFIGURED}=http://127.0.0.1:${refusingPort}/fhir`,
    QUEUE_PREFIX: `t${uniq()}`,
    REFERRAL_REPLY_ALLOWLIST: `http://127.0.0.1:${receiverPort}`,
    REFERRAL_CALLBACK_BACKOFF_MS: '200',
    REFERRAL_CALLBACK_ATTEMPTS: '30',
    REFERRAL_MAX_ENTRIES: '12',
    REFERRAL_MAX_BYTES: '40000',
  });
  token = await h.token({
    scope: 'system/ServiceRequest.cruds system/Patient.cruds system/Task.cruds system/EpisodeOfCare.rs',
    sub: 'gp-system',
  });
});
afterAll(async () => {
  await h.close();
  await new Promise((r) => refusing.close(r));
});

interface Referral {
  refId: string;
  mrn: string;
}

function transaction(
  r: Referral,
  overrides: { sr?: Partial<ServiceRequest>; patient?: Partial<Patient>; extra?: BundleEntry[] } = {},
): Bundle {
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: 'urn:uuid:11111111-1111-4111-8111-111111111111',
        resource: {
          resourceType: 'Patient',
          identifier: [{ system: MRN, value: r.mrn }],
          name: [{ family: 'Referred' }],
          gender: 'female',
          ...overrides.patient,
        },
        request: { method: 'POST', url: 'Patient' },
      },
      {
        fullUrl: 'urn:uuid:22222222-2222-4222-8222-222222222222',
        resource: {
          resourceType: 'Practitioner' as const,
          identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.6', value: `npi-${r.refId}` }],
          name: [{ family: 'Gp' }],
        } as Practitioner,
        request: { method: 'POST', url: 'Practitioner' },
      },
      {
        fullUrl: 'urn:uuid:33333333-3333-4333-8333-333333333333',
        resource: {
          resourceType: 'ServiceRequest',
          identifier: [{ system: REFERRER, value: r.refId }],
          status: 'active',
          intent: 'order',
          priority: 'routine',
          code: { text: 'Cardiology consultation' },
          subject: { reference: 'urn:uuid:11111111-1111-4111-8111-111111111111' },
          requester: { reference: 'urn:uuid:22222222-2222-4222-8222-222222222222' },
          authoredOn: '2026-11-20T10:00:00Z',
          ...overrides.sr,
        },
        request: { method: 'POST', url: 'ServiceRequest' },
      },
      ...(overrides.extra ?? []),
    ],
  };
}

function message(r: Referral, endpoint: string, event = 'bser-referral-request'): Bundle {
  const tx = transaction(r);
  const header: MessageHeader = {
    resourceType: 'MessageHeader',
    id: `msg-${r.refId}`,
    eventCoding: { system: 'http://hl7.org/fhir/us/bser/CodeSystem/bser-messageheader-event', code: event },
    source: { name: 'GP system', endpoint },
    focus: [{ reference: 'urn:uuid:44444444-4444-4444-8444-444444444444' }],
  };
  return {
    resourceType: 'Bundle',
    type: 'message',
    entry: [
      { fullUrl: 'urn:uuid:00000000-0000-4000-8000-000000000000', resource: header },
      {
        fullUrl: 'urn:uuid:44444444-4444-4444-8444-444444444444',
        resource: {
          resourceType: 'Task',
          status: 'requested',
          intent: 'order',
          focus: { reference: 'urn:uuid:33333333-3333-4333-8333-333333333333' },
        } as Task,
      },
      ...(tx.entry ?? []).map((e) => ({ fullUrl: e.fullUrl, resource: e.resource })),
    ],
  };
}

const fresh = (): Referral => ({ refId: `ref-${uniq()}`, mrn: `mrn-${uniq()}` });

async function post(url: string, body: unknown, contentType = 'application/fhir+json', t = token) {
  return h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${t}`, 'content-type': contentType },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function stored(r: Referral) {
  const [srs, tasks, eocs, patients] = await Promise.all([
    h.fhir.searchAll<ServiceRequest>(
      'ServiceRequest',
      { identifier: `${REFERRER}|${r.refId}` },
      { noCache: true },
    ),
    h.fhir.searchAll<Task>(
      'Task',
      { identifier: `${canonical.triageTaskSystem}|${REFERRER}|${r.refId}` },
      { noCache: true },
    ),
    h.fhir.searchAll<EpisodeOfCare>(
      'EpisodeOfCare',
      { identifier: `${canonical.journeyForReferralSystem}|${REFERRER}|${r.refId}` },
      { noCache: true },
    ),
    h.fhir.searchAll<Patient>('Patient', { identifier: `${MRN}|${r.mrn}` }, { noCache: true }),
  ]);
  return { srs, tasks, eocs, patients };
}

describe('transaction Bundle intake', () => {
  it('when a good referral arrives then one transaction stores it, a triage Task and a journey at access; a replay writes nothing; a change updates', async () => {
    const r = fresh();
    const res = await post('/fhir', transaction(r));
    expect(res.statusCode, res.body).toBe(200);
    const tr = res.json<Bundle>();
    expect(tr.type).toBe('transaction-response');
    expect(tr.entry?.every((e) => e.response?.status.startsWith('201'))).toBe(true);
    const journey = tr.entry?.find((e) => e.resource?.resourceType === 'EpisodeOfCare')
      ?.resource as EpisodeOfCare;
    expect(readState(journey).stage).toBe('access');

    const s = await stored(r);
    expect([s.srs.length, s.tasks.length, s.eocs.length, s.patients.length]).toEqual([1, 1, 1, 1]);
    const [sr, task, eoc, patient] = [s.srs[0]!, s.tasks[0]!, s.eocs[0]!, s.patients[0]!];
    expect(sr.subject.reference).toBe(`Patient/${patient.id}`);
    expect(eoc.referralRequest?.[0]?.reference).toBe(`ServiceRequest/${sr.id}`);
    expect(eoc.id).toBe(journey.id);
    expect(task).toMatchObject({
      status: 'requested',
      focus: { reference: `ServiceRequest/${sr.id}` },
      for: { reference: `Patient/${patient.id}` },
    });
    const oo1 = await h.fhir.validate(sr, versioned(canonical.referralProfile));
    expect(oo1.issue.filter((i) => i.severity === 'error')).toEqual([]);
    const oo2 = await h.fhir.validate(eoc, versioned(canonical.journeyEpisodeOfCare));
    expect(oo2.issue.filter((i) => i.severity === 'error')).toEqual([]);
    const provs = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `ServiceRequest/${sr.id}` },
      { noCache: true },
    );
    expect(provs).toHaveLength(1);

    const replay = await post('/fhir', transaction(r));
    expect(replay.statusCode).toBe(200);
    expect(replay.json<Bundle>().entry?.every((e) => e.response?.status.startsWith('200'))).toBe(true);
    const after = await stored(r);
    expect([after.srs[0]?.meta?.versionId, after.tasks[0]?.id, after.eocs[0]?.id]).toEqual([
      '1',
      task.id,
      eoc.id,
    ]);
    expect([after.srs.length, after.tasks.length, after.eocs.length, after.patients.length]).toEqual([
      1, 1, 1, 1,
    ]);

    const changed = await post('/fhir', transaction(r, { sr: { priority: 'urgent' } }));
    expect(changed.statusCode).toBe(200);
    const updated = await stored(r);
    expect(updated.srs[0]).toMatchObject({ priority: 'urgent', meta: { versionId: '2' } });
    expect(updated.srs[0]?.subject.reference).toBe(`Patient/${patient.id}`);
    expect(
      await h.fhir.searchAll('Provenance', { target: `ServiceRequest/${sr.id}` }, { noCache: true }),
    ).toHaveLength(2);
  });

  it('when the referrer revokes the referral then the journey is cancelled', async () => {
    const r = fresh();
    await post('/fhir', transaction(r));
    const res = await post('/fhir', transaction(r, { sr: { status: 'revoked' } }));
    expect(res.statusCode).toBe(200);
    const s = await stored(r);
    expect(s.eocs[0]?.status).toBe('cancelled');
  });

  const bad: [string, (r: Referral) => unknown, string, number, RegExp][] = [
    ['a body that is not JSON', () => 'MSH|^~\\&|', 'text/plain', 415, /fhir\+json/],
    ['malformed JSON', () => '{"resourceType": "Bundle",', 'application/fhir+json', 400, /not valid JSON/],
    [
      'a resource that is not a Bundle',
      () => ({ resourceType: 'Patient' }),
      'application/fhir+json',
      400,
      /batch or transaction Bundle/,
    ],
    [
      'a batch Bundle',
      (r) => ({ ...transaction(r), type: 'batch' }),
      'application/fhir+json',
      400,
      /Bundle.type "transaction"/,
    ],
    [
      'a Patient without identifier',
      (r) => transaction(r, { patient: { identifier: [] } }),
      'application/fhir+json',
      422,
      /usable identifier/,
    ],
    [
      'a ServiceRequest without requester',
      (r) => transaction(r, { sr: { requester: undefined } }),
      'application/fhir+json',
      422,
      /requester|minimum required/i,
    ],
    [
      'a ServiceRequest without code or reason',
      (r) => transaction(r, { sr: { code: undefined } }),
      'application/fhir+json',
      422,
      /cw-ref-1|code or reasonCode/,
    ],
    [
      'a reference that resolves nowhere in the bundle',
      (r) =>
        transaction(r, {
          sr: { performer: [{ reference: 'urn:uuid:99999999-9999-4999-8999-999999999999' }] },
        }),
      'application/fhir+json',
      422,
      /does not resolve inside the bundle/,
    ],
    [
      'a reference to a missing server resource',
      (r) => transaction(r, { sr: { performer: [{ reference: 'Organization/does-not-exist' }] } }),
      'application/fhir+json',
      422,
      /does not exist on the server/,
    ],
    [
      'a resource type a referral may not carry',
      (r) =>
        transaction(r, {
          extra: [
            { resource: { resourceType: 'Medication' }, request: { method: 'POST', url: 'Medication' } },
          ],
        }),
      'application/fhir+json',
      422,
      /may not carry Medication/,
    ],
    [
      'too many entries',
      (r) =>
        transaction(r, {
          extra: Array.from({ length: 12 }, () => ({
            resource: {
              resourceType: 'Condition',
              subject: { reference: 'urn:uuid:11111111-1111-4111-8111-111111111111' },
            },
            request: { method: 'POST' as const, url: 'Condition' },
          })),
        }),
      'application/fhir+json',
      422,
      /at most 12/,
    ],
    [
      'a body over the size limit',
      (r) => transaction(r, { sr: { note: [{ text: 'x'.repeat(50_000) }] } }),
      'application/fhir+json',
      413,
      /too large/,
    ],
  ];
  it.each(bad)(
    'when given %s then %#: a 4xx OperationOutcome and nothing written',
    async (_l, mk, ct, status, text) => {
      const r = fresh();
      const res = await post('/fhir', mk(r), ct);
      expect(res.statusCode, res.body).toBe(status);
      const oo = res.json<OperationOutcome>();
      expect(oo.resourceType).toBe('OperationOutcome');
      expect(oo.issue.map((i) => i.diagnostics).join(' | ')).toMatch(text);
      if (status === 422) expect(oo.issue.every((i) => (i.expression ?? []).length > 0)).toBe(true);
      const s = await stored(r);
      expect([s.srs.length, s.tasks.length, s.eocs.length, s.patients.length]).toEqual([0, 0, 0, 0]);
    },
  );

  it('when the token lacks the scopes, or is a patient token, then 403 and nothing is written', async () => {
    const r = fresh();
    const weak = await h.token({ scope: 'system/Observation.cruds' });
    expect((await post('/fhir', transaction(r), 'application/fhir+json', weak)).statusCode).toBe(403);
    const noPatient = await h.token({ scope: 'system/ServiceRequest.c' });
    expect((await post('/fhir', transaction(r), 'application/fhir+json', noPatient)).statusCode).toBe(403);
    const patient = await h.token({ scope: 'patient/*.cruds', patient: 'x' });
    expect((await post('/fhir', transaction(r), 'application/fhir+json', patient)).statusCode).toBe(403);
    expect((await stored(r)).srs).toHaveLength(0);
  });
});

describe('message Bundle and single ServiceRequest intake', () => {
  it('when a referral message arrives then the message response focuses the referral, task and journey; a replay returns the same', async () => {
    const r = fresh();
    const res = await post('/fhir/$process-message', message(r, 'https://not-allowed.example/fhir'));
    expect(res.statusCode, res.body).toBe(200);
    const b = res.json<Bundle>();
    expect(b.type).toBe('message');
    const header = b.entry?.[0]?.resource as MessageHeader;
    expect(header.response).toEqual({ identifier: `msg-${r.refId}`, code: 'ok' });
    const again = await post('/fhir/$process-message', message(r, 'https://not-allowed.example/fhir'));
    expect((again.json<Bundle>().entry?.[0]?.resource as MessageHeader).focus).toEqual(header.focus);
    const s = await stored(r);
    expect([s.srs.length, s.tasks.length, s.eocs.length]).toEqual([1, 1, 1]);
    // A reply address outside REFERRAL_REPLY_ALLOWLIST is not kept (Careway will not call arbitrary URLs).
    expect(s.tasks[0]?.extension?.some((e) => e.url === canonical.replyToExtension)).toBe(false);
  });

  it('when a referral message is sent again with changed content then the referral is updated', async () => {
    const r = fresh();
    const first = message(r, 'x');
    expect((await post('/fhir/$process-message', first)).statusCode).toBe(200);
    const changed = structuredClone(first);
    const sr = changed.entry?.find((e) => e.resource?.resourceType === 'ServiceRequest')
      ?.resource as ServiceRequest;
    sr.priority = 'asap';
    expect((await post('/fhir/$process-message', changed)).statusCode).toBe(200);
    const s2 = await stored(r);
    expect(s2.srs[0]).toMatchObject({ priority: 'asap', meta: { versionId: '2' } });
    expect([s2.tasks.length, s2.eocs.length]).toEqual([1, 1]);
  });

  const badMessages: [string, (r: Referral) => unknown, number, RegExp][] = [
    ['a transaction sent as a message', (r) => transaction(r), 400, /Bundle.type "message"/],
    [
      'a message without its MessageHeader first',
      (r) => ({ ...message(r, 'x'), entry: message(r, 'x').entry?.slice(1) }),
      400,
      /starts with its MessageHeader/,
    ],
    [
      'a message whose Task focuses elsewhere',
      (r) => {
        const m = message(r, 'x');
        (m.entry![1]!.resource as Task).focus = {
          reference: 'urn:uuid:11111111-1111-4111-8111-111111111111',
        };
        return m;
      },
      422,
      /must focus on the ServiceRequest/,
    ],
  ];
  it.each(badMessages)('when given %s then a 4xx and nothing is written', async (_l, mk, status, text) => {
    const r = fresh();
    const res = await post('/fhir/$process-message', mk(r));
    expect(res.statusCode, res.body).toBe(status);
    expect(
      res
        .json<OperationOutcome>()
        .issue.map((i) => i.diagnostics)
        .join(' '),
    ).toMatch(text);
    expect((await stored(r)).srs).toHaveLength(0);
  });

  it('when the message event is not a referral then 422 and nothing is written', async () => {
    const r = fresh();
    const res = await post('/fhir/$process-message', message(r, 'x', 'lab-result'));
    expect(res.statusCode).toBe(422);
    expect((await stored(r)).srs).toHaveLength(0);
  });

  it('when a single ServiceRequest for an existing patient arrives then 201 and a journey; a replay 200', async () => {
    const p = await h.fhir.create<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: MRN, value: uniq() }],
    });
    const pr = await h.fhir.create<Practitioner>({ resourceType: 'Practitioner', name: [{ family: 'Gp' }] });
    const refId = `ref-${uniq()}`;
    const sr: ServiceRequest = {
      resourceType: 'ServiceRequest',
      identifier: [{ system: REFERRER, value: refId }],
      status: 'active',
      intent: 'order',
      reasonCode: [{ text: 'chest pain' }],
      subject: { reference: `Patient/${p.resource.id}` },
      requester: { reference: `Practitioner/${pr.resource.id}` },
    };
    const res = await post('/fhir/ServiceRequest', sr);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.headers['location']).toMatch(/ServiceRequest\/[^/]+\/_history\/1$/);
    expect(res.headers['x-careway-journey']).toMatch(/^EpisodeOfCare\//);
    const replay = await post('/fhir/ServiceRequest', sr);
    expect(replay.statusCode).toBe(200);
    expect(replay.json<ServiceRequest>().id).toBe(res.json<ServiceRequest>().id);
    const changed = await post('/fhir/ServiceRequest', { ...sr, priority: 'urgent' });
    expect(changed.statusCode).toBe(200);
    expect(changed.json<ServiceRequest>()).toMatchObject({ priority: 'urgent', meta: { versionId: '2' } });
    const noIdent = await post('/fhir/ServiceRequest', { ...sr, identifier: undefined });
    expect(noIdent.statusCode).toBe(422);
    expect(noIdent.json<OperationOutcome>().issue[0]?.expression).toEqual(['ServiceRequest.identifier']);
    expect((await post('/fhir/ServiceRequest', { resourceType: 'Patient' })).statusCode).toBe(400);
    const missing = await post('/fhir/ServiceRequest', {
      ...sr,
      identifier: [{ system: REFERRER, value: uniq() }],
      subject: { reference: 'Patient/nobody-here' },
    });
    expect(missing.statusCode).toBe(422);
  });
});

describe('triage and the closed loop', () => {
  let server: Server | undefined;
  const received: { url: string; status: string; version: string }[] = [];

  afterAll(async () => {
    if (server) await new Promise((r) => server!.close(r));
  });

  it('when triage happens while the referrer is down then every change arrives once it is back, once each', async () => {
    const r = fresh();
    const res = await post('/fhir/$process-message', message(r, `http://127.0.0.1:${receiverPort}/fhir`));
    expect(res.statusCode, res.body).toBe(200);
    const task =
      (res.json<Bundle>().entry?.find((e) => e.resource?.resourceType === 'Task')?.resource as Task) ??
      ({} as Task);
    expect(task.extension?.find((e) => e.url === canonical.replyToExtension)?.valueUrl).toBe(
      `http://127.0.0.1:${receiverPort}/fhir`,
    );

    const accept = await post(`/fhir/Task/${task.id}/$accept`, { resourceType: 'Parameters' });
    expect(accept.statusCode, accept.body).toBe(200);
    expect(accept.json<Task>().status).toBe('accepted');
    const done = await post(`/fhir/Task/${task.id}/$complete`, { resourceType: 'Parameters' });
    expect(done.json<Task>().status).toBe('completed');
    // The journey followed: accepted keeps it at access (it started there); completed means the patient was
    // seen, so it moved on to care.
    const eoc = (await stored(r)).eocs[0]!;
    expect([readState(eoc).stage, eoc.status]).toEqual(['care', 'active']);
    expect(readState(eoc).stageHistory.map((x) => x.stage)).toEqual(['access', 'care']);

    await new Promise((resolve) => setTimeout(resolve, 1500)); // the referrer is down; updates are retrying
    server = createServer((req, resp) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const t = JSON.parse(body) as Task;
        received.push({ url: req.url ?? '', status: t.status, version: t.meta?.versionId ?? '' });
        resp.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => server!.listen(receiverPort, '127.0.0.1', () => resolve()));
    const deadline = Date.now() + 30_000;
    while (received.length < 2 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 200));
    await new Promise((resolve) => setTimeout(resolve, 1500)); // anything extra would arrive now
    expect(received).toHaveLength(2);
    expect(received.every((x) => x.url === `/fhir/Task/${task.id}`)).toBe(true);
    // Each delivery carries the Task as it is now: completed.
    expect(received.map((x) => x.status)).toEqual(['completed', 'completed']);
    const jobs = await h.app.referralStatus.queue.getJobs(['completed']);
    const mine = jobs
      .filter((j) => j.data.taskId === task.id)
      .map((j) => j.id)
      .sort();
    expect(mine).toEqual([`task-${task.id}-v2`, `task-${task.id}-v3`]);
    expect(JSON.stringify(jobs.map((j) => j.data))).not.toMatch(/Referred|mrn-/);
  });

  it('when a referral is rejected then a reason is required and the journey is cancelled', async () => {
    const r = fresh();
    const res = await post('/fhir', transaction(r));
    expect(res.statusCode).toBe(200);
    const task = (await stored(r)).tasks[0]!;
    const noReason = await post(`/fhir/Task/${task.id}/$reject`, { resourceType: 'Parameters' });
    expect(noReason.statusCode).toBe(400);
    const rejected = await post(`/fhir/Task/${task.id}/$reject`, {
      resourceType: 'Parameters',
      parameter: [{ name: 'reason', valueString: 'not our specialty' }],
    });
    expect(rejected.statusCode, rejected.body).toBe(200);
    expect(rejected.json<Task>()).toMatchObject({
      status: 'rejected',
      statusReason: { text: 'not our specialty' },
    });
    const eoc = (await stored(r)).eocs[0]!;
    expect(eoc.status).toBe('cancelled');
    const again = await post(`/fhir/Task/${task.id}/$accept`, { resourceType: 'Parameters' });
    expect(again.statusCode).toBe(422);
    expect(again.json<OperationOutcome>().issue[0]?.details?.coding?.[0]?.code).toBe('triage-transition');
    const byFocus = await h.app.inject({
      method: 'GET',
      url: `/fhir/Task?focus=ServiceRequest/${(await stored(r)).srs[0]?.id}`,
      headers: { authorization: `Bearer ${await h.token({ scope: 'user/Task.rs' })}` },
    });
    expect(byFocus.json<Bundle<Task>>().entry?.[0]?.resource?.status).toBe('rejected');
  });

  it('when a triage jump is not allowed then 422 names the rule', async () => {
    const r = fresh();
    await post('/fhir', transaction(r));
    const task = (await stored(r)).tasks[0]!;
    const res = await post(`/fhir/Task/${task.id}/$complete`, { resourceType: 'Parameters' });
    expect(res.statusCode).toBe(422);
    expect(res.json<OperationOutcome>().issue[0]?.diagnostics).toMatch(
      /requested referral cannot become completed/,
    );
  });

  it('when triage comes as a PUT or a JSON Patch of the Task then it moves the same way; other fields cannot change', async () => {
    const r = fresh();
    await post('/fhir', transaction(r));
    const task = (await stored(r)).tasks[0]!;
    const auth = { authorization: `Bearer ${token}` };
    const put = (body: unknown, headers: Record<string, string> = {}) =>
      h.app.inject({
        method: 'PUT',
        url: `/fhir/Task/${task.id}`,
        headers: { ...auth, 'content-type': 'application/fhir+json', ...headers },
        payload: JSON.stringify(body),
      });
    const sneaky = await put({ ...task, status: 'accepted', priority: 'stat' });
    expect(sneaky.statusCode).toBe(422);
    expect(sneaky.json<OperationOutcome>().issue[0]?.details?.coding?.[0]?.code).toBe('triage-fields');
    expect((await put({ ...task, status: 'accepted' }, { 'if-match': 'W/"99"' })).statusCode).toBe(409);
    const ok = await put({ ...task, status: 'accepted' }, { 'if-match': `W/"${task.meta?.versionId}"` });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json<Task>().status).toBe('accepted');
    const patch = (ops: unknown) =>
      h.app.inject({
        method: 'PATCH',
        url: `/fhir/Task/${task.id}`,
        headers: { ...auth, 'content-type': 'application/json-patch+json' },
        payload: JSON.stringify(ops),
      });
    expect(
      (await patch([{ op: 'replace', path: '/owner', value: { reference: 'Organization/x' } }])).statusCode,
    ).toBe(422);
    const started = await patch([{ op: 'replace', path: '/status', value: 'in-progress' }]);
    expect(started.statusCode, started.body).toBe(200);
    expect(started.json<Task>().status).toBe('in-progress');
  });

  it('when the configured referrer endpoint refuses updates then the job goes to the dead-letter queue with the reason', async () => {
    const r = fresh();
    const tx = transaction(r);
    const srEntry = tx.entry?.find((e) => e.resource?.resourceType === 'ServiceRequest');
    (srEntry!.resource as ServiceRequest).identifier = [{ system: CONFIGURED, value: r.refId }];
    expect((await post('/fhir', tx)).statusCode).toBe(200);
    const [task] = await h.fhir.searchAll<Task>(
      'Task',
      { identifier: `${canonical.triageTaskSystem}|${CONFIGURED}|${r.refId}` },
      { noCache: true },
    );
    expect(task?.extension?.find((e) => e.url === canonical.replyToExtension)?.valueUrl).toBe(
      `http://127.0.0.1:${refusingPort}/fhir`,
    );
    expect((await post(`/fhir/Task/${task?.id}/$accept`, { resourceType: 'Parameters' })).statusCode).toBe(
      200,
    );
    const deadline = Date.now() + 15_000;
    let dead: { taskId: string; reason: string }[] = [];
    while (Date.now() < deadline) {
      dead = (
        await h.app.referralStatus.dead.getJobs(['waiting', 'delayed', 'completed', 'failed', 'active'])
      ).map((j) => j.data);
      if (dead.some((d) => d.taskId === task?.id)) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const mine = dead.filter((d) => d.taskId === task?.id);
    expect(mine).toHaveLength(1);
    expect(mine[0]?.reason).toMatch(/refused the update with 400/);
    expect(refused.filter((u) => u === `/fhir/Task/${task?.id}`)).toHaveLength(1);
  });
});
