/**
 * PHI canaries (issue #17): a unique name, phone number and MRN go in through every PHI door Careway has
 * (an HL7 ADT^A04 on `POST /hl7`, one that cannot be mapped, a referral transaction, a secure message, an
 * inbound SMS reply) and the queues are drained. Then every place outside the FHIR server is searched for
 * them in plain text: the captured log lines, every Redis key and value under the app's QUEUE_PREFIX read
 * raw (strings, hashes, lists, sets, sorted sets, streams; sealed ciphertext is the point), the `/metrics`
 * text, the no-PHI listings, and the error bodies another user gets for the same resources. Expected: 0 hits.
 * The FHIR server itself must hold them (the control that they went in at all).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bundle, BundleEntry, Communication, FhirResource, Patient, Practitioner } from 'fhir/r4.js';
import { startHarness, uniq, until, type Harness } from '../support/harness.js';
import { smsSink } from '../support/sinks.js';
import { sign } from '../../src/reminders/channels/sms-webhook.js';

const SECRET = 'canary-sms-secret-0123456789';
const run = uniq();
const digits = String(Date.now()).slice(-7);
/** The canaries: letters only for the name (HL7-safe), a phone in E.164, an MRN. */
const NAME = `Canaryname${run.replace(/[^a-z]/g, '')}Zq`;
const PHONE = `+1555${digits}`;
const PHONE_DIGITS = `555${digits}`;
const MRN = `CANMRN${run}`;
const CANARIES = [NAME, PHONE, PHONE_DIGITS, MRN];

let h: Harness;
let sms: Awaited<ReturnType<typeof smsSink>>;
let hl7Patient: string;
let messageId: string;
let referralPatient: string;

/** Every canary found in `text`, with where. */
function hits(where: string, text: string): string[] {
  const lower = text.toLowerCase();
  return CANARIES.filter((c) => lower.includes(c.toLowerCase())).map((c) => `${where}: ${c}`);
}

const inject = (
  method: 'GET' | 'POST',
  url: string,
  token: string | undefined,
  payload?: string,
  contentType = 'application/fhir+json',
  extra: Record<string, string> = {},
) =>
  h.app.inject({
    method,
    url,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(payload !== undefined ? { 'content-type': contentType } : {}),
      ...extra,
    },
    ...(payload !== undefined ? { payload } : {}),
  });

/** Every key under the prefix with its value read raw (buffers, as stored), as latin1 and utf8 text. */
async function redisDump(prefix: string): Promise<{ key: string; text: string }[]> {
  const redis = h.app.redis.producer;
  const out: { key: string; text: string }[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scanBuffer(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = String(next);
    for (const keyBuf of keys) {
      const key = keyBuf.toString('latin1');
      const type = await redis.type(keyBuf);
      let parts: Buffer[] = [];
      switch (type) {
        case 'string':
          parts = [(await redis.getBuffer(keyBuf)) ?? Buffer.alloc(0)];
          break;
        case 'hash': {
          const hv = await redis.hgetallBuffer(keyBuf);
          parts = Object.entries(hv).flatMap(([f, v]) => [Buffer.from(f, 'latin1'), v]);
          break;
        }
        case 'list':
          parts = await redis.lrangeBuffer(keyBuf, 0, -1);
          break;
        case 'set':
          parts = await redis.smembersBuffer(keyBuf);
          break;
        case 'zset':
          parts = await redis.zrangeBuffer(keyBuf, 0, -1);
          break;
        case 'stream': {
          const entries = await redis.xrangeBuffer(keyBuf, '-', '+');
          parts = entries.flatMap(([id, fields]) => [id, ...fields]);
          break;
        }
        default:
          parts = [];
      }
      const raw = Buffer.concat([keyBuf, Buffer.from('\n'), ...parts.flatMap((p) => [p, Buffer.from('\n')])]);
      out.push({ key, text: `${raw.toString('latin1')}\n${raw.toString('utf8')}` });
    }
  } while (cursor !== '0');
  return out;
}

/**
 * Waiting, active, prioritized and paused jobs of every queue under the prefix, except the dead-letter queues
 * (`<name>-dead`: storage, with no worker).
 */
async function pendingJobs(prefix: string): Promise<number> {
  const redis = h.app.redis.producer;
  let n = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    for (const k of keys) {
      if (/-dead:/.test(k)) continue;
      if (/:(wait|active|paused)$/.test(k) && (await redis.type(k)) === 'list') n += await redis.llen(k);
      if (/:prioritized$/.test(k) && (await redis.type(k)) === 'zset') n += await redis.zcard(k);
    }
  } while (cursor !== '0');
  return n;
}

beforeAll(async () => {
  sms = await smsSink();
  h = await startHarness({
    SMS_WEBHOOK_URL: sms.url,
    SMS_WEBHOOK_SECRET: SECRET,
    QUIET_HOURS: '00:00-00:00',
    LOG_LEVEL: 'debug',
    // ACK on the durable enqueue alone: the unmappable message then fails in the worker and is dead-lettered,
    // so its failure reason (and any PHI in it) would land in Redis and the logs.
    HL7_INTAKE_CHECK: 'none',
  });
  const hl7Token = await h.token({ scope: 'system/MessageHeader.cr', sub: 'interface-engine' });

  // 1. HL7: an ADT^A04 registering the canary patient, and an A04 that cannot be written (AE), both with PHI.
  const adt =
    `MSH|^~\\&|EPIC|CANARYHOSP|CAREWAY|CW|20240115083015-0500||ADT^A04^ADT_A01|CAN${run}|P|2.5\r` +
    `EVN|A04|20240115083015\r` +
    `PID|1||${MRN}^^^CANARYHOSP^MR||${NAME}^Canary||19700101|F|||1 ${NAME} Street^^Town^^12345||${PHONE}\r` +
    `PV1|1|O\r`;
  const ack = await inject('POST', '/hl7', hl7Token, adt, 'x-application/hl7-v2+er7');
  expect(ack.statusCode, ack.body).toBe(200);
  expect(ack.body).toContain('MSA|AA');
  const bad =
    `MSH|^~\\&|EPIC|CANARYHOSP|CAREWAY|CW|20240115083015-0500||ADT^A04^ADT_A01|CANBAD${run}|P|2.5\r` +
    `PID|1||${MRN}^^^CANARYHOSP^MR||${NAME}^Canary||NOTADATE${PHONE}|F\r`;
  expect((await inject('POST', '/hl7', hl7Token, bad, 'x-application/hl7-v2+er7')).statusCode).toBe(200);

  // 2. A referral transaction for a second canary patient (same MRN value under the referrer's system).
  const referralToken = await h.token({
    scope: 'system/ServiceRequest.cruds system/Patient.cruds system/Task.cruds system/EpisodeOfCare.rs',
    sub: 'canary-gp',
  });
  const entry: BundleEntry<FhirResource>[] = [
    {
      fullUrl: 'urn:uuid:11111111-1111-4111-8111-111111111111',
      resource: {
        resourceType: 'Patient',
        identifier: [{ system: 'urn:oid:2.16.840.1.113883.19.5.99', value: MRN }],
        name: [{ family: NAME, given: ['Referred'] }],
        telecom: [{ system: 'phone', value: PHONE }],
        gender: 'female',
      },
      request: { method: 'POST', url: 'Patient' },
    },
    {
      fullUrl: 'urn:uuid:22222222-2222-4222-8222-222222222222',
      resource: {
        resourceType: 'Practitioner',
        identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.6', value: `npi-${run}` }],
        name: [{ family: 'Gp' }],
      },
      request: { method: 'POST', url: 'Practitioner' },
    },
    {
      fullUrl: 'urn:uuid:33333333-3333-4333-8333-333333333333',
      resource: {
        resourceType: 'ServiceRequest',
        identifier: [{ system: 'urn:oid:2.16.840.1.113883.19.5.1', value: `CANREF${run}` }],
        status: 'active',
        intent: 'order',
        priority: 'routine',
        code: { text: 'Cardiology consultation' },
        note: [{ text: `Please call ${NAME} on ${PHONE} (MRN ${MRN})` }],
        subject: { reference: 'urn:uuid:11111111-1111-4111-8111-111111111111' },
        requester: { reference: 'urn:uuid:22222222-2222-4222-8222-222222222222' },
        authoredOn: '2026-11-20T10:00:00Z',
      },
      request: { method: 'POST', url: 'ServiceRequest' },
    },
  ];
  const tx: Bundle = { resourceType: 'Bundle', type: 'transaction', entry };
  const ref = await inject('POST', '/fhir', referralToken, JSON.stringify(tx));
  expect(ref.statusCode, ref.body).toBe(200);
  referralPatient = (
    ref.json<Bundle>().entry?.find((e) => e.response?.location?.startsWith('Patient/'))?.response?.location ??
    ''
  ).split('/')[1]!;

  // 3. A secure message from the HL7 patient to a practitioner, with the canaries in its text.
  hl7Patient = await until('the HL7 patient on the FHIR server', async () => {
    const found = await h.fhir.search<Patient>(
      'Patient',
      new URLSearchParams({ identifier: MRN, family: NAME }),
      {
        noCache: true,
      },
    );
    return (found.entry ?? []).map((e) => e.resource?.id).find((id) => id && id !== referralPatient);
  });
  const dr = (
    await h.fhir.create<Practitioner>({
      resourceType: 'Practitioner',
      telecom: [{ system: 'sms', value: `+1666${digits}` }],
    })
  ).resource;
  const patientToken = await h.token({ scope: 'patient/Communication.crs', patient: hl7Patient });
  const msg = await inject(
    'POST',
    '/fhir/Communication',
    patientToken,
    JSON.stringify({
      resourceType: 'Communication',
      identifier: [{ system: 'urn:portal:msg', value: `CANMSG${run}` }],
      subject: { reference: `Patient/${hl7Patient}` },
      recipient: [{ reference: `Practitioner/${dr.id}` }],
      payload: [{ contentString: `This is ${NAME}, call me on ${PHONE}, my MRN is ${MRN}` }],
    }),
  );
  expect(msg.statusCode, msg.body).toBe(201);
  messageId = msg.json<Communication>().id!;
  await until('the unmappable message to fail in the worker', async () => {
    const res = await inject('GET', '/hl7/messages', hl7Token);
    const row = res
      .json<{ messages: { controlId: string; status: string }[] }>()
      .messages.find((m) => m.controlId === `CANBAD${run}`);
    return row?.status === 'failed' ? true : undefined;
  });
  await until('the practitioner notification', () =>
    sms.requests.find((r) => r.json.to === `+1666${digits}`),
  );

  // 4. An inbound SMS reply from the canary phone, with the canaries in its text.
  const body = JSON.stringify({ from: PHONE, text: `${NAME} here, MRN ${MRN}`, messageId: `CANSMS${run}` });
  const ts = String(Date.now());
  const reply = await inject('POST', '/engagement/replies', undefined, body, 'application/json', {
    'x-careway-timestamp': ts,
    'x-careway-signature': sign(SECRET, ts, body),
  });
  expect(reply.statusCode, reply.body).toBe(200);

  // Drain: no job waiting, active or prioritized in any queue, three polls in a row.
  let quiet = 0;
  await until(
    'the queues to drain',
    async () => {
      quiet = (await pendingJobs(h.config.queuePrefix)) === 0 ? quiet + 1 : 0;
      return quiet >= 3 ? true : undefined;
    },
    60_000,
    300,
  );
}, 180_000);

afterAll(async () => {
  await h?.close();
  await sms?.close();
});

describe('PHI canaries', () => {
  it('when the canaries went in then the FHIR server holds them (the control)', async () => {
    const p = await h.fhir.read<Patient>('Patient', hl7Patient);
    expect(JSON.stringify(p)).toContain(NAME);
    const c = await h.fhir.read<Communication>('Communication', messageId);
    expect(JSON.stringify(c)).toContain(PHONE);
  });

  it('when the log lines are searched then none holds a canary', () => {
    expect(h.rawLogs.length).toBeGreaterThan(5);
    const found = h.rawLogs.flatMap((line, i) => hits(`log line ${i}`, line));
    expect(found).toEqual([]);
  });

  it('when every Redis key and value under the prefix is read raw then none holds a canary', async () => {
    const dump = await redisDump(h.config.queuePrefix);
    expect(dump.length).toBeGreaterThan(10);
    const found = dump.flatMap((d) => hits(`redis ${d.key}`, d.text));
    expect(found).toEqual([]);
  });

  it('when a canary is planted in each Redis type then the same scan finds it (the scan works)', async () => {
    const redis = h.app.redis.producer;
    const base = `${h.config.queuePrefix}:canary-control`;
    await redis.set(`${base}:s`, `x${NAME}x`);
    await redis.hset(`${base}:h`, 'f', `x${PHONE}x`);
    await redis.rpush(`${base}:l`, `x${MRN}x`);
    await redis.sadd(`${base}:set`, `x${NAME}x`);
    await redis.zadd(`${base}:z`, 1, `x${MRN}x`);
    await redis.xadd(`${base}:x`, '*', 'f', `x${PHONE}x`);
    try {
      const planted = (await redisDump(h.config.queuePrefix)).filter((d) => d.key.startsWith(base));
      expect(planted).toHaveLength(6);
      for (const d of planted) expect(hits(d.key, d.text).length, d.key).toBeGreaterThan(0);
    } finally {
      await redis.del(`${base}:s`, `${base}:h`, `${base}:l`, `${base}:set`, `${base}:z`, `${base}:x`);
    }
  });

  it('when /metrics and the no-PHI listings are read then none holds a canary', async () => {
    const staff = await h.token({ scope: 'user/*.rs user/MessageHeader.r user/Communication.r' });
    const found: string[] = [];
    for (const url of [
      '/metrics',
      '/hl7/messages',
      '/hl7/outbound',
      '/hl7/authorities',
      '/engagement/dead-letters',
    ]) {
      const res = await inject('GET', url, staff);
      expect(res.statusCode, url).toBe(200);
      found.push(...hits(url, res.body));
    }
    expect(found).toEqual([]);
  });

  it('when another user asks for the canary resources then the error bodies hold no canary', async () => {
    const other = (
      await h.fhir.create<Patient>({ resourceType: 'Patient', name: [{ family: `Other${run}` }] })
    ).resource.id!;
    const otherPatient = await h.token({ scope: 'patient/*.rs patient/Slot.s', patient: other });
    const narrowStaff = await h.token({ scope: 'user/Observation.rs', sub: 'narrow-staff' });
    const found: string[] = [];
    const asks: [string, string, string?][] = [
      [otherPatient, `/fhir/Patient/${hl7Patient}`],
      [otherPatient, `/fhir/Patient/${referralPatient}`],
      [otherPatient, `/fhir/Communication/${messageId}`],
      [otherPatient, `/fhir/Patient/${hl7Patient}/$journeys`],
      [otherPatient, `/fhir/Patient?_revinclude=Communication:subject`],
      [narrowStaff, `/fhir/Patient/${hl7Patient}`],
      [narrowStaff, `/fhir/Communication/${messageId}`],
      [narrowStaff, `/fhir/Communication?subject=Patient/${hl7Patient}`],
      [narrowStaff, `/fhir/Patient/${hl7Patient}/$journeys`],
    ];
    for (const [token, url] of asks) {
      const res = await inject('GET', url, token);
      expect(res.statusCode, url).toBeGreaterThanOrEqual(400);
      found.push(...hits(url, res.body));
    }
    const findRes = await inject(
      'POST',
      '/fhir/Appointment/$find',
      otherPatient,
      JSON.stringify({
        resourceType: 'Parameters',
        parameter: [
          { name: 'service-type', valueCodeableConcept: { coding: [{ system: 'urn:x', code: 'x' }] } },
          { name: 'patient', valueReference: { reference: `Patient/${hl7Patient}` } },
        ],
      }),
    );
    expect(findRes.statusCode).toBe(403);
    found.push(...hits('$find', findRes.body));
    expect(found).toEqual([]);
  });

  it('when the scan is done then the logs still hold no canary (nothing logged by the scan itself)', () => {
    expect(h.rawLogs.flatMap((line, i) => hits(`log line ${i}`, line))).toEqual([]);
  });
});
