/**
 * Connecting Careway to a hospital (#15, "Done when"), end to end with real parts only:
 *
 * - the hospital's FHIR server is the real HAPI launcher started here with HAPI_REQUIRE_JWKS_URL: it refuses
 *   every request but /metadata without a bearer JWT from the hospital's authorization server;
 * - that authorization server is oidc-provider (test/support/auth-server.ts), with Careway registered as a
 *   client_credentials client (client_secret_basic);
 * - the EHR's MLLP port is the HAPI HL7v2 receiver (test/hl7-receiver/), which parses what it gets;
 * - Careway is the real app (buildApp through the harness) configured only from env, as a hospital would:
 *   FHIR_AUTH=client-credentials, HL7_OUTBOUND_URL, CORS_ORIGINS;
 * - the browser app is a page on an allowed origin loaded in headless Chromium.
 *
 * The flow: with a Careway system token, a Patient, Practitioner, Location and Schedule are created through
 * /fhir, Slots generated, one booked through $book (the EHR receives the SIU^S12) and cancelled through $cancel
 * (the EHR receives the S15); then a browser page reads the Patient through Careway.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import type {
  Appointment,
  Bundle,
  Location,
  Parameters,
  Patient,
  Practitioner,
  Schedule,
  Slot,
} from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startHapi, type LocalService } from '../../src/devstack/processes.js';
import { canonical } from '../../src/fhir/canonical.js';
import { startAuthServer, type AuthServer } from '../support/auth-server.js';
import { startHarness, uniq, until, type Harness } from '../support/harness.js';
import { startReceiver, type Hl7Receiver, type ReceivedMessage } from '../support/hl7-receiver.js';

const CLIENT_ID = 'careway-hospital';
const CLIENT_SECRET = `secret-${randomBytes(24).toString('hex')}`;
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const run = uniq();
const MRN_SYSTEM = 'urn:careway:test:hospital-mrn';
const MRN = `H-${run}`;
const NPI = `NPI${run}`;
const SERVICE = {
  coding: [{ system: 'urn:careway:test:service', code: `HOSP-${run}`, display: 'Cardiology' }],
};

let auth: AuthServer | undefined;
let hapi: LocalService | undefined;
let receiver: Hl7Receiver | undefined;
let h: Harness | undefined;
let system = '';
let allowedPort = 0;
let otherPort = 0;
const pages: Server[] = [];

/** What the flow made, for the steps after it. */
const made: { patient?: string; schedule?: string; slot?: string; appointment?: Appointment } = {};

function app(): Harness {
  if (!h) throw new Error('Careway did not start');
  return h;
}
function params(...p: NonNullable<Parameters['parameter']>): Parameters {
  return { resourceType: 'Parameters', parameter: p };
}
async function call(method: 'GET' | 'POST', url: string, body?: unknown) {
  return app().app.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${system}`,
      ...(body === undefined ? {} : { 'content-type': 'application/fhir+json' }),
    },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}
async function create<T extends { resourceType: string; id?: string }>(resource: T): Promise<string> {
  const res = await call('POST', `/fhir/${resource.resourceType}`, resource);
  expect(res.statusCode, res.body).toBe(201);
  const id = res.json<T>().id;
  expect(id).toBeTruthy();
  return id!;
}
/** What the EHR recorded for the test patient (PID-3.1), in arrival order. */
const received = (): ReceivedMessage[] =>
  (receiver?.messages ?? []).filter((m) => m.msg.segment('PID')?.get(3) === MRN);
const receivedOf = (type: string, what: string) =>
  until(what, () => received().find((m) => m.type === type), 60_000, 100);

beforeAll(async () => {
  const port = await freePort();
  const audience = `http://127.0.0.1:${port}/fhir`;
  auth = await startAuthServer({
    audience,
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
  });
  const [secured, ehr] = await Promise.allSettled([
    startHapi({
      port,
      timeoutMs: 300_000,
      env: {
        HAPI_REQUIRE_JWKS_URL: auth.jwksUrl,
        HAPI_REQUIRE_ISSUER: auth.issuer,
        HAPI_REQUIRE_AUDIENCE: audience,
        HAPI_SMART_TOKEN_URL: auth.tokenUrl,
        HAPI_SMART_JWKS_URL: auth.jwksUrl,
      },
    }),
    freePort().then((p) => startReceiver(p)),
  ]);
  if (secured.status === 'fulfilled') hapi = secured.value;
  if (ehr.status === 'fulfilled') receiver = ehr.value;
  if (secured.status === 'rejected') throw secured.reason;
  if (ehr.status === 'rejected') throw ehr.reason;

  [allowedPort, otherPort] = [await freePort(), await freePort()];
  h = await startHarness({
    FHIR_BASE_URL: hapi!.url,
    FHIR_AUTH: 'client-credentials',
    FHIR_TOKEN_URL: auth.tokenUrl,
    FHIR_CLIENT_ID: CLIENT_ID,
    FHIR_CLIENT_SECRET: CLIENT_SECRET,
    FHIR_SCOPE: 'system/*.cruds',
    HL7_OUTBOUND_URL: `mllp://127.0.0.1:${receiver!.port}`,
    HL7_OUTBOUND_RECEIVING_APPLICATION: 'HOSPEHR',
    HL7_OUTBOUND_BACKOFF_MS: '200',
    HL7_OUTBOUND_ACK_TIMEOUT_MS: '5000',
    CORS_ORIGINS: `http://127.0.0.1:${allowedPort}`,
  });
  system = await h.token({ scope: 'system/*.cruds', sub: 'hospital-integration-engine' });
}, 300_000);

afterAll(async () => {
  await Promise.allSettled(pages.map((p) => new Promise((r) => p.close(r))));
  await h?.close().catch(() => undefined);
  await receiver?.stop().catch(() => undefined);
  await hapi?.stop().catch(() => undefined);
  await auth?.close().catch(() => undefined);
});

describe('a hospital points Careway at its secured FHIR server and its EHR’s MLLP port', () => {
  it('when anyone calls the hospital’s FHIR server without its authorization server’s token then it is refused', async () => {
    const bare = await fetch(`${hapi!.url}/Patient`);
    await bare.arrayBuffer();
    expect(bare.status).toBe(401);
    // Careway's own tokens are for Careway, not for the hospital's server.
    const wrong = await fetch(`${hapi!.url}/Patient`, { headers: { authorization: `Bearer ${system}` } });
    await wrong.arrayBuffer();
    expect(wrong.status).toBe(401);
    // Careway got going on it: its profiles are on the secured server, with a token of its own.
    expect(app().app.profiles.uploaded).toBe(true);
    expect(auth!.issued.some((t) => t.clientId === CLIENT_ID)).toBe(true);
  });

  it('when a system token creates a Patient, Practitioner, Location and Schedule through /fhir then they are on the secured server', async () => {
    made.patient = await create<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: MRN_SYSTEM, value: MRN, type: { coding: [{ code: 'MR' }] } }],
      name: [{ family: 'Lindqvist', given: ['Maja'] }],
      birthDate: '1979-11-23',
      gender: 'female',
    });
    const practitioner = await create<Practitioner>({
      resourceType: 'Practitioner',
      identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: NPI }],
      name: [{ family: 'Okonkwo', given: ['Ada'] }],
    });
    const location = await create<Location>({ resourceType: 'Location', name: `Heart clinic ${run}` });
    made.schedule = await create<Schedule>({
      resourceType: 'Schedule',
      active: true,
      extension: [{ url: canonical.timezoneExtension, valueCode: 'Europe/Berlin' }],
      serviceType: [SERVICE],
      actor: [{ reference: `Practitioner/${practitioner}` }, { reference: `Location/${location}` }],
    });

    // Read back straight from the secured server with a token of the hospital's authorization server.
    const token = await fetch(auth!.tokenUrl, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/*.cruds' }),
    });
    expect(token.status).toBe(200);
    const { access_token } = (await token.json()) as { access_token: string };
    const direct = await fetch(`${hapi!.url}/Schedule/${made.schedule}`, {
      headers: { authorization: `Bearer ${access_token}` },
    });
    expect(direct.status).toBe(200);
    expect(((await direct.json()) as Schedule).actor).toEqual([
      { reference: `Practitioner/${practitioner}` },
      { reference: `Location/${location}` },
    ]);
  });

  it('when Slots are generated and one is booked through $book then the EHR receives an SIU^S12 for that patient and appointment', async () => {
    expect(made.schedule, 'the Schedule from the step before').toBeDefined();
    const day = new Date(Date.now() + 10 * 86400_000).toISOString().slice(0, 10);
    const generated = await call(
      'POST',
      `/fhir/Schedule/${made.schedule}/$generate-slots`,
      params(
        { name: 'start', valueDate: day },
        { name: 'end', valueDate: day },
        { name: 'slot-minutes', valuePositiveInt: 30 },
        {
          name: 'availableTime',
          part: [
            ...['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((d) => ({
              name: 'daysOfWeek',
              valueCode: d,
            })),
            { name: 'availableStartTime', valueTime: '09:00:00' },
            { name: 'availableEndTime', valueTime: '11:00:00' },
          ],
        },
      ),
    );
    expect(generated.statusCode, generated.body).toBe(201);
    const search = await call('GET', `/fhir/Slot?schedule=Schedule/${made.schedule}&_sort=start&_count=20`);
    expect(search.statusCode, search.body).toBe(200);
    const slots = (search.json<Bundle<Slot>>().entry ?? []).map((e) => e.resource!);
    expect(slots).toHaveLength(4);
    expect(slots.every((s) => s.status === 'free')).toBe(true);
    const slot = slots[0]!;
    made.slot = slot.id;

    const booked = await call(
      'POST',
      '/fhir/Appointment/$book',
      params(
        { name: 'slot', valueReference: { reference: `Slot/${slot.id}` } },
        { name: 'patient', valueReference: { reference: `Patient/${made.patient}` } },
      ),
    );
    expect(booked.statusCode, booked.body).toBe(201);
    const appointment = booked.json<Appointment>();
    made.appointment = appointment;
    expect(appointment.status).toBe('booked');

    const s12 = await receivedOf('SIU^S12', 'the SIU^S12 at the EHR');
    expect(s12.structure).toBe('SIU_S12');
    expect(s12.ack).toBe('AA');
    expect(s12.paths).toMatchObject({
      '/SCH-1-1': appointment.id,
      '/SCH-25-1': 'Booked',
      '/PATIENT/PID-3-1': MRN,
      '/PATIENT/PID-5-1': 'Lindqvist',
      '/RESOURCES/SERVICE/AIS-3-1': `HOSP-${run}`,
      '/RESOURCES/LOCATION_RESOURCE/AIL-3-1': `Heart clinic ${run}`,
      '/RESOURCES/PERSONNEL_RESOURCE/AIP-3-1': NPI,
    });
    expect(s12.msg.msh.get(5)).toBe('HOSPEHR');
  });

  it('when the appointment is cancelled through $cancel then the EHR receives the S15 for the same appointment', async () => {
    const appointment = made.appointment;
    expect(appointment, 'the booking from the step before').toBeDefined();
    const cancelled = await call(
      'POST',
      `/fhir/Appointment/${appointment!.id}/$cancel`,
      params({ name: 'reason', valueString: 'Patient moved away' }),
    );
    expect(cancelled.statusCode, cancelled.body).toBe(200);

    const s15 = await receivedOf('SIU^S15', 'the SIU^S15 at the EHR');
    expect(s15.structure).toBe('SIU_S12');
    expect(s15.ack).toBe('AA');
    expect(s15.paths['/SCH-1-1']).toBe(appointment!.id);
    expect(s15.msg.segment('SCH')!.get(25)).toBe('Cancelled');
    expect(s15.msg.segment('SCH')!.get(6, 2)).toBe('Patient moved away');
    // Exactly the two changes, in order, each once.
    expect(received().map((m) => m.type)).toEqual(['SIU^S12', 'SIU^S15']);
    // And the cancellation is on the secured server: the Appointment cancelled, its Slot free again.
    const read = await call('GET', `/fhir/Appointment/${appointment!.id}`);
    expect(read.statusCode, read.body).toBe(200);
    expect(read.json<Appointment>().status).toBe('cancelled');
    const slot = await call('GET', `/fhir/Slot/${made.slot}`);
    expect(slot.statusCode, slot.body).toBe(200);
    expect(slot.json<Slot>().status).toBe('free');
  });

  it('when a browser app on an allowed origin calls Careway then it reads the Patient; another origin is blocked', async () => {
    expect(CHROMIUM, 'Chromium is needed for this test (.ci/run installs it)').toBeDefined();
    expect(made.patient, 'the Patient from the first step').toBeDefined();
    await app().app.listen({ port: 0, host: '127.0.0.1' });
    const address = app().app.server.address();
    const careway = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const html = `<!doctype html><html><body><pre id="out">pending</pre><script>
      fetch(${JSON.stringify(`${careway}/fhir/Patient/${made.patient}`)}, {
        headers: { authorization: ${JSON.stringify(`Bearer ${system}`)} },
      })
        .then(async (r) => { const b = await r.json(); document.getElementById('out').textContent = 'status=' + r.status + ' ' + b.resourceType + '/' + b.id; })
        .catch((e) => { document.getElementById('out').textContent = 'blocked=' + e.name; });
    </script></body></html>`;
    for (const port of [allowedPort, otherPort]) {
      const server = createServer((_req, res) =>
        res.writeHead(200, { 'content-type': 'text/html' }).end(html),
      );
      await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
      pages.push(server);
    }
    const dump = (url: string): Promise<string> =>
      new Promise((resolve, reject) =>
        execFile(
          CHROMIUM!,
          [
            '--headless=new',
            '--no-sandbox',
            '--disable-gpu',
            '--virtual-time-budget=15000',
            '--dump-dom',
            url,
          ],
          { timeout: 60_000 },
          (err, stdout) =>
            err
              ? reject(new Error(err.message))
              : resolve(/<pre id="out">([^<]*)<\/pre>/.exec(stdout)?.[1] ?? stdout),
        ),
      );
    expect(await dump(`http://127.0.0.1:${allowedPort}/`)).toBe(`status=200 Patient/${made.patient}`);
    expect(await dump(`http://127.0.0.1:${otherPort}/`)).toBe('blocked=TypeError');
  }, 120_000);
});
