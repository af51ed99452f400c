/**
 * The first slice of the /fhir facade against the real HAPI: metadata, read, vread, search, paging, link
 * rewriting, and the bad cases (each a 4xx OperationOutcome, never a 5xx). Also readiness, and that a
 * search with PHI in its query leaves no PHI in the logs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bundle, CapabilityStatement, OperationOutcome, Patient } from 'fhir/r4.js';
import { startHarness, uniq, type Harness } from '../support/harness.js';

let h: Harness;
let userToken: string;
const family = `Zebedee${uniq()}`;
const mrnSystem = 'urn:careway:test:mrn';
const ids: string[] = [];

beforeAll(async () => {
  h = await startHarness();
  userToken = await h.token({ scope: 'user/*.rs', sub: 'clinician-1' });
  for (let i = 0; i < 5; i++) {
    const p = await h.fhir.create<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: mrnSystem, value: uniq() }],
      name: [{ family, given: [`G${i}`] }],
      birthDate: '1961-02-03',
    });
    ids.push(p.resource.id ?? '');
  }
});
afterAll(async () => {
  await h.close();
});

const get = (url: string, token: string | undefined = userToken) =>
  h.app.inject({
    method: 'GET',
    url,
    headers: token ? { authorization: `Bearer ${token}`, host: 'careway.test' } : { host: 'careway.test' },
  });

describe('/fhir facade', () => {
  it('when metadata is read then it is Careway’s statement built from the server’s', async () => {
    const res = await get('/fhir/metadata', undefined);
    expect(res.statusCode).toBe(200);
    const cs = res.json<CapabilityStatement>();
    expect(cs.software?.name).toBe('Careway');
    expect(cs.implementation?.url).toBe('http://careway.test/fhir');
    const patient = cs.rest?.[0]?.resource?.find((r) => r.type === 'Patient');
    expect(patient?.interaction?.map((i) => i.code)).toEqual([
      'read',
      'vread',
      'search-type',
      'create',
      'update',
      'patch',
      'delete',
    ]);
    expect(patient?.conditionalDelete).toBe('not-supported');
    expect(patient?.searchParam?.some((p) => p.name === 'identifier')).toBe(true);
  });

  it('when a resource is read then body, ETag and Last-Modified come through', async () => {
    const res = await get(`/fhir/Patient/${ids[0]}`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/application\/fhir\+json/);
    expect(res.headers['etag']).toBe('W/"1"');
    expect(res.headers['last-modified']).toBeTruthy();
    expect(res.json<Patient>().name?.[0]?.family).toBe(family);
  });

  it('when a version is read then that version comes back', async () => {
    const res = await get(`/fhir/Patient/${ids[0]}/_history/1`);
    expect(res.statusCode).toBe(200);
    expect(res.json<Patient>().meta?.versionId).toBe('1');
  });

  it('when a search pages then links point at Careway, are signed, and the next page works', async () => {
    const res = await get(`/fhir/Patient?family=${family}&_count=2&_sort=_id`);
    expect(res.statusCode).toBe(200);
    const b = res.json<Bundle>();
    expect(b.entry).toHaveLength(2);
    expect(b.entry?.[0]?.fullUrl).toMatch(/^http:\/\/careway\.test\/fhir\/Patient\//);
    const next = b.link?.find((l) => l.relation === 'next')?.url ?? '';
    expect(next).toMatch(/^http:\/\/careway\.test\/fhir\?.*_getpages=.*_cwsig=/);
    const seen = new Set(b.entry?.map((e) => e.resource?.id));
    let url: string | undefined = next;
    while (url) {
      const page = await get(url.replace('http://careway.test', ''));
      expect(page.statusCode).toBe(200);
      const pb = page.json<Bundle>();
      for (const e of pb.entry ?? []) seen.add(e.resource?.id);
      url = pb.link?.find((l) => l.relation === 'next')?.url;
    }
    expect([...seen].sort()).toEqual([...ids].sort());
  });

  it('when a paging link is replayed by another caller or tampered with then 403', async () => {
    const b = (await get(`/fhir/Patient?family=${family}&_count=2`)).json<Bundle>();
    const next = (b.link?.find((l) => l.relation === 'next')?.url ?? '').replace('http://careway.test', '');
    const other = await h.token({ scope: 'user/*.rs', sub: 'someone-else' });
    expect((await get(next, other)).statusCode).toBe(403);
    expect((await get(next.replace(/_cwsig=[^&]+/, '_cwsig=AAAA'))).statusCode).toBe(403);
    expect((await get(next.replace(/&?_cwsig=[^&]+/, ''))).statusCode).toBe(400);
  });

  it('when the resource does not exist then 404 with the server’s OperationOutcome', async () => {
    const res = await get(`/fhir/Patient/does-not-exist-${uniq()}`);
    expect(res.statusCode).toBe(404);
    expect(res.json<OperationOutcome>().resourceType).toBe('OperationOutcome');
  });

  it.each([
    ['/fhir/NotAType/1', 400, /not supported/],
    ['/fhir/Patient/bad$id', 400, /resource id/],
    ['/fhir/Patient?no-such-param=1', 400, /.+/],
    ['/fhir?foo=bar', 400, /_getpages/],
  ])('when %s is asked then %d with an OperationOutcome', async (url, status, text) => {
    const res = await get(url);
    expect(res.statusCode).toBe(status);
    const oo = res.json<OperationOutcome>();
    expect(oo.resourceType).toBe('OperationOutcome');
    expect(oo.issue[0]?.diagnostics).toMatch(text);
  });

  it('when an interaction the facade does not serve is attempted (a conditional delete) then 405 with an OperationOutcome', async () => {
    const res = await h.app.inject({
      method: 'DELETE',
      url: '/fhir/Patient?identifier=x',
      headers: { authorization: `Bearer ${userToken}` },
    });
    expect(res.statusCode).toBe(405);
    expect(res.json<OperationOutcome>().issue[0]?.code).toBe('not-supported');
  });

  it('when the body is malformed JSON then 400, not 500', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/fhir/Patient',
      headers: { authorization: `Bearer ${userToken}`, 'content-type': 'application/fhir+json' },
      payload: '{"resourceType": "Patient",',
    });
    expect(res.statusCode).toBe(400);
    expect(res.json<OperationOutcome>().resourceType).toBe('OperationOutcome');
  });

  it('when a search carries PHI in its query then no log line contains it', async () => {
    h.rawLogs.length = 0;
    await get(`/fhir/Patient?family=${family}&birthdate=1961-02-03`);
    await get(`/fhir/Patient/${ids[1]}`);
    const all = h.rawLogs.join('\n');
    expect(h.rawLogs.some((l) => l.includes('"route":"/fhir/:type"'))).toBe(true);
    expect(all).not.toContain(family);
    expect(all).not.toContain('1961-02-03');
    expect(all).not.toContain(userToken);
  });
});

describe('operations', () => {
  it('when HAPI and Redis answer and the profiles are uploaded then /ready is 200 with each check up', async () => {
    const res = await get('/ready', undefined);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      status: 'ready',
      checks: { fhir: { status: 'up' }, redis: { status: 'up' }, profiles: { status: 'up' } },
    });
  });

  it('when the FHIR server is unreachable then /ready is 503 naming the FHIR check', async () => {
    const down = await startHarness({
      FHIR_BASE_URL: 'http://127.0.0.1:1/fhir',
      CAREWAY_UPLOAD_PROFILES: 'false',
    });
    try {
      const res = await down.app.inject({ method: 'GET', url: '/ready' });
      expect(res.statusCode).toBe(503);
      const body = res.json<{ checks: { fhir: { status: string }; redis: { status: string } } }>();
      expect(body.checks.fhir.status).toBe('down');
      expect(body.checks.redis.status).toBe('up');
      const t = await down.token({ scope: 'user/*.rs' });
      const read = await down.app.inject({
        method: 'GET',
        url: '/fhir/Patient/x',
        headers: { authorization: `Bearer ${t}` },
      });
      expect(read.statusCode).toBe(502);
      expect(read.json<OperationOutcome>().issue[0]?.code).toBe('transient');
    } finally {
      await down.close();
    }
  });
});
