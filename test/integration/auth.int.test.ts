/**
 * The authentication and authorisation matrix, through the real app (real HAPI behind it, real Redis).
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EpisodeOfCare, OperationOutcome, Patient } from 'fhir/r4.js';
import { AUDIENCE, startHarness, uniq, type Harness } from '../support/harness.js';

let h: Harness;
let patientA: string;
let patientB: string;

beforeAll(async () => {
  h = await startHarness();
  const mk = async (): Promise<string> =>
    (
      await h.fhir.create<Patient>({
        resourceType: 'Patient',
        identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
      })
    ).resource.id ?? '';
  [patientA, patientB] = [await mk(), await mk()];
});
afterAll(async () => {
  await h.close();
});

function b64url(s: string): string {
  return Buffer.from(s).toString('base64url');
}

async function get(url: string, token?: string) {
  return h.app.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} });
}

function expectOutcome(
  res: { statusCode: number; json: <T>() => T; headers: Record<string, unknown> },
  status: number,
  text: RegExp,
) {
  expect(res.statusCode).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
  const oo = res.json<OperationOutcome>();
  expect(oo.resourceType).toBe('OperationOutcome');
  expect(oo.issue[0]?.diagnostics).toMatch(text);
}

describe('authentication', () => {
  it('when no token is sent then 401 with an OperationOutcome and WWW-Authenticate', async () => {
    const res = await get(`/fhir/Patient/${patientA}`);
    expectOutcome(res, 401, /bearer token is required/);
    expect(res.headers['www-authenticate']).toBe('Bearer');
  });

  it('when the Authorization header is not Bearer then 401', async () => {
    const res = await h.app.inject({
      method: 'GET',
      url: '/fhir/Patient',
      headers: { authorization: 'Basic dXNlcjpwYXNz' },
    });
    expectOutcome(res, 401, /must be "Bearer <token>"/);
  });

  it('when the signature is from another key then 401', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const res = await get('/fhir/Patient', await h.token({ scope: 'user/*.rs', key: other }));
    expectOutcome(res, 401, /signature is invalid/);
  });

  it('when the token has expired then 401', async () => {
    const res = await get('/fhir/Patient', await h.token({ scope: 'user/*.rs', expiresIn: -120 }));
    expectOutcome(res, 401, /expired/);
    expect(String(res.headers['www-authenticate'])).toContain('invalid_token');
  });

  it('when the audience is wrong then 401', async () => {
    const res = await get('/fhir/Patient', await h.token({ scope: 'user/*.rs', aud: `${AUDIENCE}-other` }));
    expectOutcome(res, 401, /claim "aud"/);
  });

  it('when the issuer is wrong then 401', async () => {
    const res = await get(
      '/fhir/Patient',
      await h.token({ scope: 'user/*.rs', iss: 'https://evil.example' }),
    );
    expectOutcome(res, 401, /claim "iss"/);
  });

  it('when the token uses alg "none" then 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    const unsigned = `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(
      JSON.stringify({
        iss: 'https://auth.test.careway',
        aud: AUDIENCE,
        sub: 'x',
        exp: now + 600,
        scope: 'system/*.cruds',
      }),
    )}.`;
    const res = await get('/fhir/Patient', unsigned);
    expect(res.statusCode).toBe(401);
  });

  it('when the token is an HMAC token signed with the public key as secret then 401 (algorithm confusion)', async () => {
    const { SignJWT } = await import('jose');
    const forged = await new SignJWT({ scope: 'system/*.cruds' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('https://auth.test.careway')
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(h.keys.publicPem));
    const res = await get('/fhir/Patient', forged);
    expectOutcome(res, 401, /algorithm is not accepted/);
  });

  it('when the token is garbage then 401', async () => {
    expectOutcome(await get('/fhir/Patient', 'abc.def.ghi'), 401, /malformed/);
  });

  it('when public routes are called without a token then they answer', async () => {
    for (const url of ['/health', '/ready', '/fhir/metadata', '/docs/json']) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(200);
    }
    const docs = await get('/docs/');
    expect(docs.statusCode).toBe(200);
  });

  it('when an unknown route is called without a token then 401, not a route map', async () => {
    expect((await get('/no/such/route')).statusCode).toBe(401);
  });
});

describe('authorisation (SMART v2 scopes)', () => {
  it('when the scope lacks the resource type then 403', async () => {
    const res = await get(`/fhir/Patient/${patientA}`, await h.token({ scope: 'user/Observation.rs' }));
    expectOutcome(res, 403, /no scope grants "r" on Patient/);
    expect(String(res.headers['www-authenticate'])).toContain('insufficient_scope');
  });

  it('when the scope has s but not r then a read is refused and a search allowed', async () => {
    const t = await h.token({ scope: 'user/Patient.s' });
    expect((await get(`/fhir/Patient/${patientA}`, t)).statusCode).toBe(403);
    expect((await get(`/fhir/Patient?_id=${patientA}`, t)).statusCode).toBe(200);
  });

  it('when a patient token reads its own record then 200', async () => {
    const t = await h.token({ scope: 'patient/Patient.rs', patient: patientA });
    const res = await get(`/fhir/Patient/${patientA}`, t);
    expect(res.statusCode).toBe(200);
    expect(res.json<Patient>().id).toBe(patientA);
  });

  it('when a patient token reads another patient then 403', async () => {
    const t = await h.token({ scope: 'patient/Patient.rs', patient: patientA });
    expectOutcome(await get(`/fhir/Patient/${patientB}`, t), 403, /only read its own patient/);
  });

  it('when a patient token searches Patient then only its own patient comes back', async () => {
    const t = await h.token({ scope: 'patient/Patient.rs', patient: patientA });
    const res = await get(`/fhir/Patient?_id=${patientA},${patientB}`, t);
    expect(res.statusCode).toBe(200);
    const ids = (res.json<{ entry?: { resource: Patient }[] }>().entry ?? []).map((e) => e.resource.id);
    expect(ids).toEqual([patientA]);
  });

  it("when a patient token reads another patient's journey then 403, and its own 200", async () => {
    const mine = await h.fhir.create<EpisodeOfCare>({
      resourceType: 'EpisodeOfCare',
      status: 'active',
      patient: { reference: `Patient/${patientA}` },
    });
    const theirs = await h.fhir.create<EpisodeOfCare>({
      resourceType: 'EpisodeOfCare',
      status: 'active',
      patient: { reference: `Patient/${patientB}` },
    });
    const t = await h.token({ scope: 'patient/EpisodeOfCare.rs', patient: patientA });
    expect((await get(`/fhir/EpisodeOfCare/${mine.resource.id}`, t)).statusCode).toBe(200);
    expectOutcome(
      await get(`/fhir/EpisodeOfCare/${theirs.resource.id}`, t),
      403,
      /outside the token's patient compartment/,
    );
    const search = await get('/fhir/EpisodeOfCare', t);
    const refs = (
      search.json<{ entry?: { resource: { patient: { reference: string } } }[] }>().entry ?? []
    ).map((e) => e.resource.patient.reference);
    expect(refs.length).toBeGreaterThan(0);
    expect(new Set(refs)).toEqual(new Set([`Patient/${patientA}`]));
  });

  it('when a patient token asks for _revinclude then 403 (it would reach outside the compartment)', async () => {
    const t = await h.token({ scope: 'patient/*.rs', patient: patientA });
    expectOutcome(await get('/fhir/Patient?_revinclude=EpisodeOfCare:patient', t), 403, /_revinclude/);
  });

  it('when a patient scope has no patient claim then 403', async () => {
    const t = await h.token({ scope: 'patient/Patient.rs' });
    expectOutcome(await get(`/fhir/Patient/${patientA}`, t), 403, /"patient" claim/);
  });

  it('when included resources are of a type the token cannot read then they are dropped with a warning', async () => {
    const eoc = await h.fhir.create<EpisodeOfCare>({
      resourceType: 'EpisodeOfCare',
      status: 'active',
      patient: { reference: `Patient/${patientA}` },
    });
    const t = await h.token({ scope: 'user/EpisodeOfCare.rs' });
    const res = await get(`/fhir/EpisodeOfCare?_id=${eoc.resource.id}&_include=EpisodeOfCare:patient`, t);
    const entries = res.json<{ entry: { resource: { resourceType: string }; search?: { mode: string } }[] }>()
      .entry;
    expect(entries.map((e) => e.resource.resourceType)).toEqual(['EpisodeOfCare', 'OperationOutcome']);
    const t2 = await h.token({ scope: 'user/EpisodeOfCare.rs user/Patient.r' });
    const res2 = await get(`/fhir/EpisodeOfCare?_id=${eoc.resource.id}&_include=EpisodeOfCare:patient`, t2);
    expect(
      res2
        .json<{ entry: { resource: { resourceType: string } }[] }>()
        .entry.map((e) => e.resource.resourceType),
    ).toEqual(['EpisodeOfCare', 'Patient']);
  });

  it('when /metrics is called with a patient token then 403, with a user token 200', async () => {
    expect(
      (await get('/metrics', await h.token({ scope: 'patient/*.rs', patient: patientA }))).statusCode,
    ).toBe(403);
    const ok = await get('/metrics', await h.token({ scope: 'system/*.rs' }));
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain('careway_http_request_duration_seconds');
  });
});
