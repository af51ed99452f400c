/**
 * Writes through the /fhir facade against the real HAPI: create (plain and conditional), update with If-Match,
 * JSON Patch, delete, batch and transaction Bundles; SMART scopes per interaction; patient tokens confined to
 * their compartment (nothing written when refused); bad input answered 4xx with an OperationOutcome; and what is
 * written feeds Careway at once (reminder re-plans, waitlist offers).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Bundle,
  Observation,
  OperationOutcome,
  Patient,
  Practitioner,
  Schedule,
  Slot,
} from 'fhir/r4.js';
import { startHarness, uniq, until, type Harness } from '../support/harness.js';

let h: Harness;
let system: string;
const MRN = 'urn:careway:test:facade-writes';

beforeAll(async () => {
  h = await startHarness();
  system = await h.token({ scope: 'system/*.cruds', sub: 'integration-engine' });
});
afterAll(async () => {
  await h?.close();
});

type Method = 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'GET';
async function call(
  method: Method,
  url: string,
  token: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  return h.app.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined
        ? {}
        : { 'content-type': method === 'PATCH' ? 'application/json-patch+json' : 'application/fhir+json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}
const patientBody = (mrn: string, family = 'Okafor'): Patient => ({
  resourceType: 'Patient',
  identifier: [{ system: MRN, value: mrn }],
  name: [{ family, given: ['Chidi'] }],
});
const count = async (type: string, params: Record<string, string>) =>
  (await h.fhir.search(type, { ...params, _summary: 'count' }, { noCache: true })).total ?? 0;
const issue = (res: { json(): unknown }) => (res.json() as OperationOutcome).issue[0];

describe('create, update, patch, delete', () => {
  it('when a system token creates a Patient then 201 with Location on Careway; a conditional replay creates nothing', async () => {
    const mrn = uniq();
    const created = await call('POST', '/fhir/Patient', system, patientBody(mrn), {
      'if-none-exist': `identifier=${MRN}|${mrn}`,
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.headers['location']).toMatch(
      /^http:\/\/localhost(:\d+)?\/fhir\/Patient\/[^/]+\/_history\/1$/,
    );
    expect(created.headers['etag']).toBe('W/"1"');
    const again = await call('POST', '/fhir/Patient', system, patientBody(mrn), {
      'if-none-exist': `identifier=${MRN}|${mrn}`,
    });
    expect(again.statusCode).toBe(200);
    expect(await count('Patient', { identifier: `${MRN}|${mrn}` })).toBe(1);
  });

  it('when a Practitioner and a Schedule are created through the facade then they are on the server', async () => {
    const pr = await call('POST', '/fhir/Practitioner', system, {
      resourceType: 'Practitioner',
      name: [{ family: 'Adeyemi' }],
    });
    expect(pr.statusCode).toBe(201);
    const id = pr.json<{ id: string }>().id;
    const sc = await call('POST', '/fhir/Schedule', system, {
      resourceType: 'Schedule',
      active: true,
      actor: [{ reference: `Practitioner/${id}` }],
    } satisfies Schedule);
    expect(sc.statusCode).toBe(201);
    expect(
      (await h.fhir.read<Schedule>('Schedule', sc.json<{ id: string }>().id, { noCache: true })).actor,
    ).toEqual([{ reference: `Practitioner/${id}` }]);
  });

  it('when an update carries a stale If-Match then the server’s conflict comes back; a current one updates; a patch and a delete follow', async () => {
    const created = (await call('POST', '/fhir/Patient', system, patientBody(uniq()))).json<Patient>();
    const id = created.id!;
    const stale = await call(
      'PUT',
      `/fhir/Patient/${id}`,
      system,
      { ...created, gender: 'male' },
      { 'if-match': 'W/"9"' },
    );
    // HAPI answers a version mismatch with 409; it comes back as the server gave it.
    expect([409, 412]).toContain(stale.statusCode);
    expect(stale.json<OperationOutcome>().resourceType).toBe('OperationOutcome');
    const updated = await call(
      'PUT',
      `/fhir/Patient/${id}`,
      system,
      { ...created, gender: 'male' },
      { 'if-match': 'W/"1"' },
    );
    expect(updated.statusCode).toBe(200);
    expect(updated.headers['etag']).toBe('W/"2"');
    const patched = await call('PATCH', `/fhir/Patient/${id}`, system, [
      { op: 'replace', path: '/name/0/family', value: 'Eze' },
    ]);
    expect(patched.statusCode, patched.body).toBe(200);
    expect((await h.fhir.read<Patient>('Patient', id, { noCache: true })).name?.[0]?.family).toBe('Eze');
    // (An audited Patient is referenced by its AuditEvents, which a strict server will not let go: a Location.)
    const place = (
      await call('POST', '/fhir/Location', system, { resourceType: 'Location', name: 'Ward 7' })
    ).json<{
      id: string;
    }>();
    const deleted = await call('DELETE', `/fhir/Location/${place.id}`, system);
    expect(deleted.statusCode, deleted.body).toBeLessThan(300);
    expect((await call('GET', `/fhir/Location/${place.id}`, system)).statusCode).toBe(410);
  });

  it('when the input is bad then 4xx with an OperationOutcome, and nothing is written', async () => {
    const mrn = uniq();
    const wrongType = await call('POST', '/fhir/Patient', system, {
      resourceType: 'Observation',
      status: 'final',
    });
    expect(wrongType.statusCode).toBe(400);
    expect(issue(wrongType)?.diagnostics).toMatch(/URL names Patient/);
    const notJson = await call('POST', '/fhir/Patient', system, '{"resourceType": "Patient", ');
    expect(notJson.statusCode).toBe(400);
    const invalid = await call('POST', '/fhir/Patient', system, { ...patientBody(mrn), gender: 'robot' });
    expect(invalid.statusCode).toBeGreaterThanOrEqual(400);
    expect(invalid.statusCode).toBeLessThan(500);
    expect(invalid.json<OperationOutcome>().resourceType).toBe('OperationOutcome');
    const unknownType = await call('POST', '/fhir/Spaceship', system, { resourceType: 'Spaceship' });
    expect(unknownType.statusCode).toBe(400);
    const idMismatch = await call('PUT', '/fhir/Patient/abc', system, { ...patientBody(mrn), id: 'xyz' });
    expect(idMismatch.statusCode).toBe(400);
    const badPatch = await call('PATCH', '/fhir/Patient/does-not-exist-x', system, [
      { op: 'replace', path: '/gender', value: 'male' },
    ]);
    expect(badPatch.statusCode).toBe(404);
    expect(await count('Patient', { identifier: `${MRN}|${mrn}` })).toBe(0);
  });
});

describe('scopes', () => {
  it('when a token lacks the interaction’s permission then 403: read-only cannot create, update-only cannot create by PUT', async () => {
    const reader = await h.token({ scope: 'user/Patient.rs' });
    const mrn = uniq();
    expect((await call('POST', '/fhir/Patient', reader, patientBody(mrn))).statusCode).toBe(403);
    const updater = await h.token({ scope: 'user/Patient.ru' });
    const put = await call('PUT', `/fhir/Patient/new-${mrn}`, updater, {
      ...patientBody(mrn),
      id: `new-${mrn}`,
    });
    expect(put.statusCode).toBe(403);
    expect(issue(put)?.diagnostics).toMatch(/Patient\.c/);
    expect(await count('Patient', { identifier: `${MRN}|${mrn}` })).toBe(0);
    const noDelete = await call('DELETE', '/fhir/Patient/anything', updater);
    expect(noDelete.statusCode).toBe(403);
  });
});

describe('patient tokens', () => {
  let me: string;
  let other: string;
  let token: string;
  beforeAll(async () => {
    me = (await h.fhir.create<Patient>(patientBody(uniq(), 'Me'))).resource.id!;
    other = (await h.fhir.create<Patient>(patientBody(uniq(), 'Other'))).resource.id!;
    token = await h.token({ scope: 'patient/Observation.cruds patient/Patient.ru', patient: me });
  });
  const obs = (patient: string, code: string): Observation => ({
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }], text: code },
    subject: { reference: `Patient/${patient}` },
    valueQuantity: { value: 72, unit: '/min' },
  });

  it('when a patient writes its own Observation then it is created; for another patient it is refused and nothing is written', async () => {
    const tag = uniq();
    expect((await call('POST', '/fhir/Observation', token, obs(me, tag))).statusCode).toBe(201);
    const refused = await call('POST', '/fhir/Observation', token, obs(other, tag));
    expect(refused.statusCode).toBe(403);
    expect(await count('Observation', { subject: `Patient/${other}`, 'code:text': tag })).toBe(0);
  });

  it('when a patient updates, patches or deletes another patient’s Observation then 403 and it is unchanged', async () => {
    const theirs = (await h.fhir.create<Observation>(obs(other, uniq()))).resource;
    const mine = (await h.fhir.create<Observation>(obs(me, uniq()))).resource;
    expect(
      (
        await call('PUT', `/fhir/Observation/${theirs.id}`, token, {
          ...theirs,
          subject: { reference: `Patient/${me}` },
        })
      ).statusCode,
    ).toBe(403);
    expect((await call('DELETE', `/fhir/Observation/${theirs.id}`, token)).statusCode).toBe(403);
    // A patch that would move my Observation to another patient is refused too.
    const moved = await call('PATCH', `/fhir/Observation/${mine.id}`, token, [
      { op: 'replace', path: '/subject/reference', value: `Patient/${other}` },
    ]);
    expect(moved.statusCode).toBe(403);
    expect(
      (await h.fhir.read<Observation>('Observation', mine.id!, { noCache: true })).subject?.reference,
    ).toBe(`Patient/${me}`);
    expect(
      (await h.fhir.read<Observation>('Observation', theirs.id!, { noCache: true })).meta?.versionId,
    ).toBe('1');
    // Its own record, yes; another's, no.
    const self = await h.fhir.read<Patient>('Patient', me, { noCache: true });
    expect((await call('PUT', `/fhir/Patient/${me}`, token, { ...self, gender: 'female' })).statusCode).toBe(
      200,
    );
    const them = await h.fhir.read<Patient>('Patient', other, { noCache: true });
    expect(
      (await call('PUT', `/fhir/Patient/${other}`, token, { ...them, gender: 'female' })).statusCode,
    ).toBe(403);
  });

  it('when a patient sends a transaction with one entry outside its compartment then the whole Bundle is refused', async () => {
    const tag = uniq();
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: obs(me, tag), request: { method: 'POST', url: 'Observation' } },
        { resource: obs(other, tag), request: { method: 'POST', url: 'Observation' } },
      ],
    };
    const res = await call('POST', '/fhir', token, bundle);
    expect(res.statusCode).toBe(403);
    expect(issue(res)?.diagnostics).toMatch(/entry 1/);
    expect(await count('Observation', { 'code:text': tag })).toBe(0);
  });
});

describe('batch and transaction', () => {
  it('when a system token sends a transaction with urn:uuid references then both are written, linked, with locations on Careway', async () => {
    const mrn = uniq();
    const res = await call('POST', '/fhir', system, {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: 'urn:uuid:6d1c0f1e-2b1a-4c55-9d3e-0f4a1b2c3d4e',
          resource: patientBody(mrn),
          request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${MRN}|${mrn}` },
        },
        {
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { text: mrn },
            subject: { reference: 'urn:uuid:6d1c0f1e-2b1a-4c55-9d3e-0f4a1b2c3d4e' },
          } as Observation,
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    } satisfies Bundle);
    expect(res.statusCode, res.body).toBe(200);
    const answer = res.json<Bundle>();
    expect(answer.type).toBe('transaction-response');
    expect(answer.entry?.map((e) => e.response?.status.slice(0, 3))).toEqual(['201', '201']);
    const [p] = await h.fhir.searchAll<Patient>(
      'Patient',
      { identifier: `${MRN}|${mrn}` },
      { noCache: true },
    );
    expect(await count('Observation', { subject: `Patient/${p!.id}` })).toBe(1);
  });

  it('when a batch mixes a good and a bad entry then each answers on its own; malformed entries are 400 naming the entry', async () => {
    const res = await call('POST', '/fhir', system, {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: patientBody(uniq()), request: { method: 'POST', url: 'Patient' } },
        { request: { method: 'GET', url: 'Patient/does-not-exist-zz' } },
      ],
    });
    expect(res.statusCode, res.body).toBe(200);
    const statuses = res.json<Bundle>().entry?.map((e) => e.response?.status.slice(0, 1));
    expect(statuses).toEqual(['2', '4']);
    const malformed = await call('POST', '/fhir', system, {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        {
          resource: patientBody(uniq()),
          request: { method: 'POST', url: 'https://elsewhere.example/Patient' },
        },
      ],
    });
    expect(malformed.statusCode).toBe(400);
    expect(issue(malformed)?.diagnostics).toMatch(/entry 0/);
    const wrongKind = await call('POST', '/fhir', system, {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [],
    });
    expect(wrongKind.statusCode).toBe(400);
  });
});

describe('writes feed Careway at once', () => {
  it('when an Appointment is created through the facade then its reminders are planned without waiting for the sweep', async () => {
    const p = (await h.fhir.create<Patient>(patientBody(uniq()))).resource.id!;
    const start = new Date(Date.now() + 5 * 86400_000);
    const res = await call('POST', '/fhir/Appointment', system, {
      resourceType: 'Appointment',
      status: 'booked',
      start: start.toISOString(),
      end: new Date(start.getTime() + 1800_000).toISOString(),
      participant: [{ actor: { reference: `Patient/${p}` }, status: 'accepted' }],
    });
    expect(res.statusCode).toBe(201);
    const id = res.json<{ id: string }>().id;
    await until('a re-plan job for the Appointment', async () => {
      const jobs = await h.app.reminders.plans.queue.getJobs(
        ['waiting', 'active', 'completed', 'delayed'],
        0,
        -1,
      );
      return jobs.some((j) => j.data.appointmentId === id) ? true : undefined;
    });
  });

  it('when a free Slot is created through the facade then it is offered to the waitlist', async () => {
    const dr = (await h.fhir.create<Practitioner>({ resourceType: 'Practitioner' })).resource.id!;
    const sched = (
      await h.fhir.create<Schedule>({
        resourceType: 'Schedule',
        active: true,
        actor: [{ reference: `Practitioner/${dr}` }],
      })
    ).resource.id!;
    const start = new Date(Date.now() + 9 * 86400_000);
    const res = await call('POST', '/fhir/Slot', system, {
      resourceType: 'Slot',
      schedule: { reference: `Schedule/${sched}` },
      status: 'free',
      start: start.toISOString(),
      end: new Date(start.getTime() + 1800_000).toISOString(),
    } satisfies Slot);
    expect(res.statusCode).toBe(201);
    const id = res.json<{ id: string }>().id;
    console.log(h.rawLogs.filter((l) => l.includes('handed on')).join('\n'));
    await until('a waitlist offer job for the Slot', async () => {
      const jobs = await h.app.schedulingQueues.waitlist.queue.getJobs(
        ['waiting', 'active', 'completed', 'delayed', 'failed'],
        0,
        -1,
      );
      return jobs.some((j) => j.data.slotId === id) ? true : undefined;
    });
  });

  it('when the CapabilityStatement is read then it states the writes and the batch and transaction interactions', async () => {
    const cs = (await h.app.inject({ method: 'GET', url: '/fhir/metadata' })).json<{
      rest: {
        interaction?: { code: string }[];
        resource: { type: string; interaction: { code: string }[] }[];
      }[];
    }>();
    expect(cs.rest[0]?.interaction?.map((i) => i.code)).toEqual(['transaction', 'batch']);
    const patient = cs.rest[0]?.resource.find((r) => r.type === 'Patient');
    expect(patient?.interaction.map((i) => i.code)).toEqual(
      expect.arrayContaining(['read', 'create', 'update', 'patch', 'delete']),
    );
  });
});
