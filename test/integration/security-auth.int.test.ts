/**
 * The security suite's auth matrix (issue #17), through the real app (real HAPI behind it, real Redis):
 * authentication failures, scope escalation, another patient's data by every route that could reach it,
 * per-type scopes inside composite answers, paging links, token revocation and rate limits. Each case is
 * listed in README.md, "Auth matrix". What jose alone refuses (hand-made alg none / HS256 / kid confusion
 * against a JWKS) and the verified-token cache are in test/unit/security-verifier.test.ts.
 *
 * Every request here comes from its own client address unless a test names one, so the auth-failure rate
 * limit (set low for the rate-limit cases) only counts what a test means it to.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import type {
  AllergyIntolerance,
  Bundle,
  CarePlan,
  EpisodeOfCare,
  OperationOutcome,
  Patient,
  Schedule,
} from 'fhir/r4.js';
import { AUDIENCE, ISSUER, startHarness, uniq, type Harness } from '../support/harness.js';
import { journeyLink } from '../../src/journey/episode.js';

let h: Harness;
const MRN = 'urn:careway:test:security-mrn';
const run = uniq();
let patientA: string;
let patientB: string;
const nameB = `Secbee${run}`;
const mrnB = `SEC-B-${run}`;
let journeyA: string;
let journeyB: string;
const allergyText = `Peanutsec${run}`;
const activityText = `Physiosec${run}`;
let carePlanA: string;
let allergyB: string;
let staff: string;

let ipCounter = 0;
/** A fresh client address per request (10.77.x.y), so unrelated 401s never add up to a rate limit. */
const freshIp = (): string => `10.77.${Math.floor(++ipCounter / 250)}.${(ipCounter % 250) + 1}`;

interface Res {
  statusCode: number;
  body: string;
  headers: Record<string, unknown>;
  json: <T>() => T;
}

async function call(
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  url: string,
  token?: string,
  body?: unknown,
  opts: { ip?: string; contentType?: string } = {},
): Promise<Res> {
  return h.app.inject({
    method,
    url,
    remoteAddress: opts.ip ?? freshIp(),
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': opts.contentType ?? 'application/fhir+json' } : {}),
    },
    ...(body !== undefined ? { payload: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
}

const get = (url: string, token?: string, ip?: string) =>
  call('GET', url, token, undefined, ip ? { ip } : {});

function expectOutcome(res: Res, status: number, text?: RegExp): void {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
  const oo = res.json<OperationOutcome>();
  expect(oo.resourceType).toBe('OperationOutcome');
  if (text) expect(oo.issue[0]?.diagnostics).toMatch(text);
}

/** A token with any claims and header, signed with the harness key (jti and nbf included when given). */
async function mint(claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: 'matrix-user', iat: now, exp: now + 600, ...claims })
    .setProtectedHeader({ alg: 'ES256', ...header })
    .sign(h.keys.privateKey);
}

const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const entriesOf = (res: Res) => res.json<Bundle>().entry ?? [];
const idsOf = (res: Res, type: string) =>
  entriesOf(res)
    .filter((e) => e.resource?.resourceType === type)
    .map((e) => e.resource?.id);

beforeAll(async () => {
  h = await startHarness({
    RATE_LIMIT_AUTH_FAILURES: '3',
    RATE_LIMIT_REPLIES: '2',
    RATE_LIMIT_BOOKINGS: '2',
  });
  staff = await h.token({ scope: 'user/*.cruds', sub: 'matrix-staff' });
  const mk = async (family: string, mrn: string): Promise<string> =>
    (
      await h.fhir.create<Patient>({
        resourceType: 'Patient',
        identifier: [{ system: MRN, value: mrn }],
        name: [{ family, given: ['Secure'] }],
      })
    ).resource.id!;
  patientA = await mk(`Secay${run}`, `SEC-A-${run}`);
  patientB = await mk(nameB, mrnB);
  const start = async (pid: string): Promise<string> => {
    const res = await call('POST', '/fhir/EpisodeOfCare/$start-journey', staff, {
      resourceType: 'Parameters',
      parameter: [
        { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
        {
          name: 'identifier',
          valueIdentifier: { system: 'urn:careway:test:security-journey', value: uniq() },
        },
      ],
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json<EpisodeOfCare>().id!;
  };
  journeyA = await start(patientA);
  journeyB = await start(patientB);
  const allergy = (pid: string): AllergyIntolerance => ({
    resourceType: 'AllergyIntolerance',
    clinicalStatus: {
      coding: [
        { system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' },
      ],
    },
    criticality: 'high',
    code: { text: allergyText },
    patient: { reference: `Patient/${pid}` },
  });
  await h.fhir.create<AllergyIntolerance>(allergy(patientA));
  allergyB = (await h.fhir.create<AllergyIntolerance>(allergy(patientB))).resource.id!;
  carePlanA = (
    await h.fhir.create<CarePlan>({
      resourceType: 'CarePlan',
      status: 'active',
      intent: 'plan',
      subject: { reference: `Patient/${patientA}` },
      period: { start: new Date(Date.now() - 20 * 86400_000).toISOString() },
      extension: [journeyLink(journeyA)],
      activity: [
        {
          detail: {
            status: 'scheduled',
            code: { text: activityText },
            scheduledPeriod: { end: new Date(Date.now() - 5 * 86400_000).toISOString() },
          },
        },
      ],
    })
  ).resource.id!;
});
afterAll(async () => {
  await h?.close();
});

describe('auth matrix: authentication', () => {
  const ok = 'user/*.rs';

  it('when no token is sent then 401 with WWW-Authenticate', async () => {
    const res = await get(`/fhir/Patient/${patientA}`);
    expectOutcome(res, 401, /bearer token is required/);
    expect(res.headers['www-authenticate']).toBe('Bearer');
  });

  it('when the token is garbage (not a JWT, or three junk parts) then 401', async () => {
    expectOutcome(await get('/fhir/Patient', 'garbage'), 401, /malformed/);
    expectOutcome(await get('/fhir/Patient', 'abc.def.ghi'), 401, /malformed/);
    expectOutcome(await get('/fhir/Patient', `${b64url({ alg: 'ES256' })}.e30.`), 401);
  });

  it('when the token has expired then 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    expectOutcome(await get('/fhir/Patient', await mint({ scope: ok, exp: now - 120 })), 401, /expired/);
  });

  it('when the token is not yet valid (nbf ahead) then 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    expectOutcome(await get('/fhir/Patient', await mint({ scope: ok, nbf: now + 300 })), 401, /claim "nbf"/);
  });

  it('when the token has no exp then 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ scope: ok, iss: ISSUER, aud: AUDIENCE, sub: 'x', iat: now })
      .setProtectedHeader({ alg: 'ES256' })
      .sign(h.keys.privateKey);
    expectOutcome(await get('/fhir/Patient', token), 401, /claim "exp"/);
  });

  it('when the issuer or the audience is wrong then 401', async () => {
    expectOutcome(
      await get('/fhir/Patient', await mint({ scope: ok, iss: 'https://evil.example' })),
      401,
      /"iss"/,
    );
    expectOutcome(await get('/fhir/Patient', await mint({ scope: ok, aud: 'someone-else' })), 401, /"aud"/);
  });

  it('when the token is alg "none" with no signature then 401 (algorithm refused)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({
      iss: ISSUER,
      aud: AUDIENCE,
      sub: 'x',
      exp: now + 600,
      scope: 'system/*.cruds',
    })}.`;
    expectOutcome(await get('/fhir/Patient', token), 401, /algorithm is not accepted/);
  });

  it('when the token is HS256 signed with the PEM public key as the secret then 401 (algorithm confusion)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const input = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({
      iss: ISSUER,
      aud: AUDIENCE,
      sub: 'x',
      exp: now + 600,
      scope: 'system/*.cruds',
    })}`;
    const sig = createHmac('sha256', h.keys.publicPem).update(input).digest('base64url');
    expectOutcome(await get('/fhir/Patient', `${input}.${sig}`), 401, /algorithm is not accepted/);
  });

  it('when the token names an arbitrary kid, or its claims are edited after signing, then the configured key still decides', async () => {
    // Signed by the right key under a made-up kid: the kid does not select anything here (PEM config).
    expect((await get('/fhir/Patient?_count=1', await mint({ scope: ok }, { kid: 'nope' }))).statusCode).toBe(
      200,
    );
    // Claims changed after signing, whatever the header says: the signature no longer verifies.
    const good = await mint({ scope: 'user/Patient.rs' }, { kid: 'k1' });
    const [head, , sig] = good.split('.');
    const escalated = `${head}.${b64url({
      iss: ISSUER,
      aud: AUDIENCE,
      sub: 'x',
      exp: Math.floor(Date.now() / 1000) + 600,
      scope: 'system/*.cruds system/careway.admin',
    })}.${sig}`;
    expectOutcome(await get('/fhir/Patient', escalated), 401, /signature is invalid/);
  });

  it('when the Authorization header is not a bearer token then 401', async () => {
    const res = await h.app.inject({
      method: 'GET',
      url: '/fhir/Patient',
      remoteAddress: freshIp(),
      headers: { authorization: 'Basic dXNlcjpwYXNz' },
    });
    expectOutcome(res, 401, /must be "Bearer <token>"/);
  });
});

describe('auth matrix: scope escalation', () => {
  it('when a .r token writes (create, update, patch, delete, transaction) then 403 and nothing is written', async () => {
    const t = await h.token({ scope: 'user/Patient.rs user/Observation.rs', sub: 'reader' });
    const patient = { resourceType: 'Patient', name: [{ family: `Nowrite${run}` }] };
    expectOutcome(await call('POST', '/fhir/Patient', t, patient), 403, /"c" on Patient/);
    expectOutcome(
      await call('PUT', `/fhir/Patient/${patientA}`, t, { ...patient, id: patientA }),
      403,
      /"u" on Patient/,
    );
    expectOutcome(
      await call('PATCH', `/fhir/Patient/${patientA}`, t, [{ op: 'add', path: '/active', value: false }], {
        contentType: 'application/json-patch+json',
      }),
      403,
    );
    expectOutcome(await call('DELETE', `/fhir/Patient/${patientA}`, t), 403, /"d" on Patient/);
    expectOutcome(
      await call('POST', '/fhir', t, {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: patient, request: { method: 'POST', url: 'Patient' } }],
      }),
      403,
    );
    const found = await h.fhir.search('Patient', new URLSearchParams({ family: `Nowrite${run}` }), {
      noCache: true,
    });
    expect(found.entry ?? []).toHaveLength(0);
  });

  it('when an .s token reads by id, or a granular scope is all it has, then 403', async () => {
    expectOutcome(await get(`/fhir/Patient/${patientA}`, await h.token({ scope: 'user/Patient.s' })), 403);
    expectOutcome(
      await get(
        `/fhir/AllergyIntolerance?patient=${patientA}`,
        await h.token({ scope: 'user/AllergyIntolerance.rs?clinical-status=active' }),
      ),
      403,
    );
  });

  it('when a patient/ token calls staff and system routes then each answers 403', async () => {
    const t = await h.token({ scope: 'patient/*.cruds patient/careway.admin', patient: patientA });
    const hl7 = `MSH|^~\\&|EHR|HOSP|CAREWAY|CW|20240101000000||ADT^A04|SEC${run}|P|2.5\rPID|1||X^^^HOSP^MR||Doe^J\r`;
    const refused: [string, Promise<Res>][] = [
      ['metrics', get('/metrics', t)],
      ['hl7 messages', get('/hl7/messages', t)],
      ['hl7 outbound', get('/hl7/outbound', t)],
      ['hl7 intake', call('POST', '/hl7', t, hl7, { contentType: 'x-application/hl7-v2+er7' })],
      ['dead letters', get('/engagement/dead-letters', t)],
      ['queue dashboard', get('/admin/queues/api/queues', t)],
      ['revoke', call('POST', '/admin/revoke', t, { jti: 'x', exp: 1 }, { contentType: 'application/json' })],
      [
        'advance-stage',
        call('POST', `/fhir/EpisodeOfCare/${journeyA}/$advance-stage`, t, {
          resourceType: 'Parameters',
          parameter: [{ name: 'stage', valueCode: 'care' }],
        }),
      ],
      ['waitlist', get('/fhir/Appointment/$waitlist?service-type=x', t)],
      [
        'generate-slots',
        call('POST', '/fhir/Schedule/x/$generate-slots', t, { resourceType: 'Parameters', parameter: [] }),
      ],
      [
        'noshow',
        call('POST', '/fhir/Appointment/x/$noshow', t, { resourceType: 'Parameters', parameter: [] }),
      ],
    ];
    for (const [what, p] of refused) expect((await p).statusCode, what).toBe(403);
  });

  it('when a staff token without the admin scope revokes a token or acts on a queue then 403', async () => {
    expectOutcome(
      await call('POST', '/admin/revoke', staff, { jti: 'x', exp: 1 }, { contentType: 'application/json' }),
      403,
      /admin scope/,
    );
    expect(
      (await call('PUT', '/admin/queues/api/queues/pause', staff, {}, { contentType: 'application/json' }))
        .statusCode,
    ).toBe(403);
  });
});

describe("auth matrix: another patient's data", () => {
  let tA: string;
  beforeAll(async () => {
    tA = await h.token({ scope: 'patient/*.rs patient/Slot.rs', patient: patientA, sub: 'patient-a' });
  });

  it('when read by id then 403, and the answer names nothing of the other patient', async () => {
    for (const url of [
      `/fhir/Patient/${patientB}`,
      `/fhir/EpisodeOfCare/${journeyB}`,
      `/fhir/AllergyIntolerance/${allergyB}`,
      `/fhir/Patient/${patientB}/_history/1`,
    ]) {
      const res = await get(url, tA);
      expectOutcome(res, 403);
      expect(res.body).not.toContain(nameB);
      expect(res.body).not.toContain(mrnB);
      expect(res.body).not.toContain(allergyText);
    }
  });

  it("when searched for by id, patient or identifier then only the token's own compartment comes back", async () => {
    expect(idsOf(await get(`/fhir/Patient?_id=${patientB}`, tA), 'Patient')).toEqual([]);
    expect(idsOf(await get(`/fhir/Patient?identifier=${MRN}|${mrnB}`, tA), 'Patient')).toEqual([]);
    expect(
      idsOf(await get(`/fhir/AllergyIntolerance?patient=Patient/${patientB}`, tA), 'AllergyIntolerance'),
    ).toEqual([]);
    expect(idsOf(await get(`/fhir/EpisodeOfCare?patient=${patientB}`, tA), 'EpisodeOfCare')).toEqual([]);
  });

  it('when reached with _include, _revinclude, _include:iterate or _has then 403', async () => {
    for (const q of [
      'EpisodeOfCare?_include=EpisodeOfCare:patient',
      'Patient?_revinclude=AllergyIntolerance:patient',
      'EpisodeOfCare?_include:iterate=EpisodeOfCare:patient',
      `Patient?_has:AllergyIntolerance:patient:code:text=${allergyText}`,
    ]) {
      expectOutcome(await get(`/fhir/${q}`, tA), 403, /not available to patient-context tokens/);
    }
  });

  it("when reached by chained parameters then the search stays in the token's compartment", async () => {
    for (const q of [
      `AllergyIntolerance?patient:Patient.name=${nameB}`,
      `AllergyIntolerance?patient:Patient.identifier=${MRN}|${mrnB}`,
      `EpisodeOfCare?patient.name=${nameB}`,
    ]) {
      const res = await get(`/fhir/${q}`, tA);
      expect(res.statusCode, q).toBe(200);
      expect(
        entriesOf(res).filter((e) => e.resource?.resourceType !== 'OperationOutcome'),
        q,
      ).toEqual([]);
      expect(res.body).not.toContain(allergyB);
    }
  });

  it('when reached through $journey, the timeline, $journeys or $find then 403', async () => {
    for (const [what, res] of [
      ['$journey', await get(`/fhir/EpisodeOfCare/${journeyB}/$journey`, tA)],
      ['timeline', await get(`/journeys/${journeyB}/timeline`, tA)],
      ['$journeys', await get(`/fhir/Patient/${patientB}/$journeys`, tA)],
      [
        '$find',
        await call('POST', '/fhir/Appointment/$find', tA, {
          resourceType: 'Parameters',
          parameter: [
            { name: 'service-type', valueCodeableConcept: { coding: [{ system: 'urn:x', code: 'x' }] } },
            { name: 'patient', valueReference: { reference: `Patient/${patientB}` } },
          ],
        }),
      ],
    ] as const) {
      expectOutcome(res, 403);
      expect(res.body, what).not.toContain(allergyText);
      expect(res.body, what).not.toContain(nameB);
    }
  });

  it('when a staff token chains or reverse-chains into a type its scopes do not show then 403', async () => {
    const eoc = await h.token({ scope: 'user/EpisodeOfCare.rs' });
    expectOutcome(
      await get(`/fhir/EpisodeOfCare?patient:Patient.name=${nameB}`, eoc),
      403,
      /reaches Patient/,
    );
    expectOutcome(await get(`/fhir/EpisodeOfCare?patient.name=${nameB}`, eoc), 403, /unnamed type/);
    const pat = await h.token({ scope: 'user/Patient.rs' });
    expectOutcome(
      await get(`/fhir/Patient?_has:AllergyIntolerance:patient:code:text=${allergyText}`, pat),
      403,
      /reaches AllergyIntolerance/,
    );
    // With the scopes, the same questions are answered.
    const both = await h.token({ scope: 'user/Patient.rs user/AllergyIntolerance.s user/EpisodeOfCare.rs' });
    expect(
      idsOf(
        await get(`/fhir/EpisodeOfCare?patient:Patient.identifier=${MRN}|${mrnB}`, both),
        'EpisodeOfCare',
      ),
    ).toEqual([journeyB]);
    expect(
      idsOf(
        await get(
          `/fhir/Patient?_id=${patientA},${patientB}&_has:AllergyIntolerance:patient:criticality=high`,
          both,
        ),
        'Patient',
      ).sort(),
    ).toEqual([patientA, patientB].sort());
  });
});

describe('auth matrix: per-type scopes inside composite answers', () => {
  it('when the token lacks AllergyIntolerance.r and CarePlan.r then the timeline shows none of their content', async () => {
    const t = await h.token({ scope: 'user/EpisodeOfCare.r' });
    const res = await get(`/journeys/${journeyA}/timeline`, t);
    expect(res.statusCode, res.body).toBe(200);
    const tl = res.json<{
      alerts: unknown[];
      touchpoints: { kind: string }[];
      painPoints: { resource: string }[];
    }>();
    expect(tl.alerts).toEqual([]);
    expect(tl.touchpoints.map((p) => p.kind)).not.toContain('care-plan');
    expect(res.body).not.toContain(allergyText);
    expect(res.body).not.toContain(activityText);
    expect(res.body).not.toContain(`CarePlan/${carePlanA}`);
    // The control: with both read scopes, the same timeline shows them.
    const all = await get(
      `/journeys/${journeyA}/timeline`,
      await h.token({ scope: 'user/EpisodeOfCare.r user/AllergyIntolerance.r user/CarePlan.r' }),
    );
    expect(all.body).toContain(allergyText);
    expect(all.body).toContain(activityText);
    expect(all.body).toContain(`CarePlan/${carePlanA}`);
  });

  it('when the token lacks AllergyIntolerance.r and CarePlan.r then $journey holds no allergy, no alert Flag and no care plan', async () => {
    const t = await h.token({ scope: 'user/EpisodeOfCare.r' });
    const res = await get(`/fhir/EpisodeOfCare/${journeyA}/$journey`, t);
    expect(res.statusCode, res.body).toBe(200);
    const types = entriesOf(res).map((e) => e.resource?.resourceType);
    expect(types).not.toContain('AllergyIntolerance');
    expect(types).not.toContain('Flag');
    expect(types).not.toContain('CarePlan');
    expect(types).not.toContain('Patient');
    expect(res.body).not.toContain(allergyText);
    expect(res.body).not.toContain(activityText);
    const all = await get(`/fhir/EpisodeOfCare/${journeyA}/$journey`, await h.token({ scope: 'user/*.r' }));
    const allTypes = entriesOf(all).map((e) => e.resource?.resourceType);
    expect(allTypes).toEqual(expect.arrayContaining(['AllergyIntolerance', 'Flag', 'CarePlan', 'Patient']));
  });

  it('when the token lacks AllergyIntolerance.r then $find returns no allergy Flags', async () => {
    const code = `SECSVC${run}`;
    await h.fhir.create<Schedule>({
      resourceType: 'Schedule',
      active: true,
      serviceType: [{ coding: [{ system: 'urn:careway:test:security-service', code }] }],
      actor: [{ display: 'Clinic' }],
    });
    const find = (token: string) =>
      call('POST', '/fhir/Appointment/$find', token, {
        resourceType: 'Parameters',
        parameter: [
          {
            name: 'service-type',
            valueCodeableConcept: { coding: [{ system: 'urn:careway:test:security-service', code }] },
          },
          { name: 'patient', valueReference: { reference: `Patient/${patientA}` } },
        ],
      });
    const without = await find(await h.token({ scope: 'user/Slot.s' }));
    expect(without.statusCode, without.body).toBe(200);
    expect(entriesOf(without).map((e) => e.resource?.resourceType)).not.toContain('Flag');
    expect(without.body).not.toContain(allergyText);
    const withScope = await find(await h.token({ scope: 'user/Slot.s user/AllergyIntolerance.r' }));
    expect(withScope.body).toContain(allergyText);
  });
});

describe('auth matrix: paging links', () => {
  async function firstPage(token: string): Promise<string> {
    const res = await get(`/fhir/Patient?_id=${patientA},${patientB}&_count=1`, token);
    expect(res.statusCode, res.body).toBe(200);
    const next = res.json<Bundle>().link?.find((l) => l.relation === 'next')?.url;
    expect(next).toBeDefined();
    const u = new URL(next!);
    return `${u.pathname}${u.search}`;
  }

  it('when the issuing caller follows its next link then 200', async () => {
    const t = await h.token({ scope: 'user/Patient.rs', sub: 'pager' });
    const res = await get(await firstPage(t), t);
    expect(res.statusCode, res.body).toBe(200);
    expect(entriesOf(res)).toHaveLength(1);
  });

  it('when the search id or the signature is tampered with, or the signature is missing, then it is refused', async () => {
    const t = await h.token({ scope: 'user/Patient.rs', sub: 'pager' });
    const link = await firstPage(t);
    const u = new URL(link, 'http://x');
    const id = u.searchParams.get('_getpages')!;
    const sig = u.searchParams.get('_cwsig')!;
    const flip = (s: string) => `${s.slice(0, -1)}${s.endsWith('A') ? 'B' : 'A'}`;
    const tampered = new URL(u);
    tampered.searchParams.set('_getpages', flip(id));
    expectOutcome(await get(`${tampered.pathname}${tampered.search}`, t), 403, /not issued to this caller/);
    const badSig = new URL(u);
    badSig.searchParams.set('_cwsig', flip(sig));
    expectOutcome(await get(`${badSig.pathname}${badSig.search}`, t), 403, /not issued to this caller/);
    const noSig = new URL(u);
    noSig.searchParams.delete('_cwsig');
    expect((await get(`${noSig.pathname}${noSig.search}`, t)).statusCode).toBe(400);
  });

  it('when another caller replays the link (another subject, or the same subject as a patient token) then 403', async () => {
    const t = await h.token({ scope: 'user/Patient.rs', sub: 'pager' });
    const link = await firstPage(t);
    const other = await h.token({ scope: 'user/Patient.rs', sub: 'someone-else' });
    expectOutcome(await get(link, other), 403, /not issued to this caller/);
    const samePatientCtx = await h.token({ scope: 'patient/Patient.rs', sub: 'pager', patient: patientA });
    expectOutcome(await get(link, samePatientCtx), 403, /not issued to this caller/);
  });

  it('when the issuing token is revoked then its paging links die with it', async () => {
    const jti = randomUUID();
    const exp = Math.floor(Date.now() / 1000) + 600;
    const t = await mint({ scope: 'user/Patient.rs', sub: 'pager-r', jti, exp });
    const link = await firstPage(t);
    const admin = await h.token({ scope: 'system/careway.admin', sub: 'security-officer' });
    expect(
      (await call('POST', '/admin/revoke', admin, { jti, exp }, { contentType: 'application/json' }))
        .statusCode,
    ).toBe(200);
    expectOutcome(await get(link, t), 401, /revoked/);
  });
});

describe('token revocation (jti deny-list)', () => {
  it('when a jti is revoked then that token gets 401 even though it was verified and cached, and others still pass', async () => {
    const jti = randomUUID();
    const exp = Math.floor(Date.now() / 1000) + 600;
    const token = await mint({ scope: 'user/Patient.rs', jti, exp });
    const other = await mint({ scope: 'user/Patient.rs', jti: randomUUID(), exp });
    expect((await get(`/fhir/Patient/${patientA}`, token)).statusCode).toBe(200);
    const admin = await h.token({ scope: 'user/careway.admin', sub: 'security-officer' });
    const res = await call('POST', '/admin/revoke', admin, { jti, exp }, { contentType: 'application/json' });
    expect(res.statusCode, res.body).toBe(200);
    const { revokedForSeconds } = res.json<{ revokedForSeconds: number }>();
    expect(revokedForSeconds).toBeGreaterThan(0);
    expect(revokedForSeconds).toBeLessThanOrEqual(601);
    const key = `${h.config.queuePrefix}:revoked-jti:${jti}`;
    const ttl = await h.app.redis.producer.ttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(601);
    const refused = await get(`/fhir/Patient/${patientA}`, token);
    expectOutcome(refused, 401, /revoked/);
    expect(String(refused.headers['www-authenticate'])).toContain('invalid_token');
    expect((await get(`/fhir/Patient/${patientA}`, other)).statusCode).toBe(200);
    expect(h.logs.some((l) => l['msg'] === 'admin action' && l['route'] === '/admin/revoke')).toBe(true);
  });

  it('when the revoked token has already expired then nothing is stored; a malformed request is 400', async () => {
    const admin = await h.token({ scope: 'system/careway.admin' });
    const jti = randomUUID();
    const res = await call(
      'POST',
      '/admin/revoke',
      admin,
      { jti, exp: Math.floor(Date.now() / 1000) - 10 },
      { contentType: 'application/json' },
    );
    expect(res.json<{ revokedForSeconds: number }>().revokedForSeconds).toBe(0);
    expect(await h.app.redis.producer.exists(`${h.config.queuePrefix}:revoked-jti:${jti}`)).toBe(0);
    for (const body of [
      { jti: 'has space', exp: 1 },
      { jti: 'x' },
      { jti: '', exp: 1 },
      { jti: 'x', exp: 1, more: 1 },
    ])
      expect(
        (await call('POST', '/admin/revoke', admin, body, { contentType: 'application/json' })).statusCode,
      ).toBe(400);
  });
});

describe('rate limits (Redis)', () => {
  it('when one client fails authentication past RATE_LIMIT_AUTH_FAILURES then 429 with Retry-After; valid tokens still pass', async () => {
    const ip = '10.99.0.1';
    for (let i = 0; i < 3; i++) expect((await get('/fhir/Patient', 'garbage', ip)).statusCode).toBe(401);
    const limited = await get('/fhir/Patient', 'garbage', ip);
    expectOutcome(limited, 429, /too many failed authentications/);
    expect(limited.json<OperationOutcome>().issue[0]?.code).toBe('throttled');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect((await get('/fhir/Patient', undefined, ip)).statusCode).toBe(429);
    expect((await get('/fhir/Patient?_count=1', staff, ip)).statusCode).toBe(200);
    expect((await get('/fhir/Patient', 'garbage', '10.99.0.2')).statusCode).toBe(401);
  });

  it('when one client posts replies past RATE_LIMIT_REPLIES then 429, counted before the signature check', async () => {
    const ip = '10.99.0.3';
    const reply = () =>
      call(
        'POST',
        '/engagement/replies',
        undefined,
        { from: '+15550000000', text: 'C', messageId: 'm' },
        {
          ip,
          contentType: 'application/json',
        },
      );
    for (let i = 0; i < 2; i++) expect((await reply()).statusCode).not.toBe(429);
    const limited = await reply();
    expectOutcome(limited, 429, /too many replies/);
    expect(limited.headers['retry-after']).toBeDefined();
  });

  it('when a patient app holds or books past RATE_LIMIT_BOOKINGS then 429 (slot hoarding); another patient and staff are not limited', async () => {
    const hoarder = await h.token({ scope: 'patient/Appointment.c', patient: `hoarder-${run}` });
    const params = {
      resourceType: 'Parameters',
      parameter: [{ name: 'slot', valueReference: { reference: 'Slot/none' } }],
    };
    const hold = (t: string) => call('POST', '/fhir/Appointment/$hold', t, params);
    const book = (t: string) => call('POST', '/fhir/Appointment/$book', t, params);
    expect((await hold(hoarder)).statusCode).not.toBe(429);
    expect((await book(hoarder)).statusCode).not.toBe(429);
    expectOutcome(await hold(hoarder), 429, /holds and bookings/);
    expectOutcome(await book(hoarder), 429, /holds and bookings/);
    const other = await h.token({ scope: 'patient/Appointment.c', patient: `other-${run}` });
    expect((await hold(other)).statusCode).not.toBe(429);
    // A front desk books for many patients: not limited.
    const desk = await h.token({ scope: 'user/Appointment.c', sub: `desk-${run}` });
    for (let i = 0; i < 4; i++) expect((await book(desk)).statusCode).not.toBe(429);
  });

  it('when limits are counted then the Redis keys hold no client address and no subject', async () => {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await h.app.redis.producer.scan(
        cursor,
        'MATCH',
        `${h.config.queuePrefix}:rate-limit:*`,
        'COUNT',
        500,
      );
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) {
      expect(k).not.toMatch(/10\.99\.0\.|hoarder|matrix|127\.0\.0\.1/);
    }
  });
});
