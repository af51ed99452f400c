/**
 * The integration console's API on the real HAPI and Redis: the HL7 message log searched by MRN (through keyed
 * hashes: the MRN is never in Redis in clear), control id, type, sender and status; one message with what it
 * wrote and, for the raw scope only, its text; and dead letters moved back to their queue, once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from 'fhir/r4.js';
import { startHarness, uniq, until, type Harness } from '../support/harness.js';

let h: Harness;
let reader: string;
let sender: string;
const msg = (id: string, mrn: string, type = 'ADT^A04') =>
  `MSH|^~\\&|CONSOLE|C${id}|CAREWAY|CW|20240115083015-0500||${type}|${id}|P|2.5\rPID|1||${mrn}^^^MAINHOSP^MR~ALT-${mrn}^^^OTHER^PI||Ysolde^Quarry||19700101|F\r`;

beforeAll(async () => {
  // The dry run is off so that a message the maps refuse reaches the dead letters (the replay tests need one).
  h = await startHarness({ HL7_INTAKE_CHECK: 'none' });
  reader = await h.token({ scope: 'user/MessageHeader.r', sub: `console-${uniq()}` });
  sender = await h.token({ scope: 'system/MessageHeader.c', sub: 'feed' });
});
afterAll(async () => {
  await h?.close();
});

const get = (url: string, token: string) =>
  h.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
const send = (body: string) =>
  h.app.inject({
    method: 'POST',
    url: '/hl7',
    headers: { authorization: `Bearer ${sender}`, 'content-type': 'x-application/hl7-v2+er7' },
    payload: body,
  });
interface Row {
  id: string;
  controlId: string;
  type: string;
  sender: string;
  status: string;
}
const rows = async (query: string): Promise<Row[]> => {
  const res = await get(`/hl7/messages?${query}`, reader);
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ messages: Row[] }>().messages;
};
const settled = (controlId: string, state: string) =>
  until(`message ${controlId} ${state}`, async () => {
    const j = (await h.app.hl7.queue.getJobs([state as 'completed'])).find(
      (x) => x.data.controlId === controlId,
    );
    return j ?? undefined;
  });

describe('the HL7 message log', () => {
  const id = uniq();
  const mrn = `MRN-${id}`;
  const other = uniq();

  beforeAll(async () => {
    expect((await send(msg(id, mrn))).statusCode).toBe(200);
    expect((await send(msg(other, `MRN-${other}`, 'ADT^A08'))).statusCode).toBe(200);
    await settled(id, 'completed');
    await settled(other, 'completed');
  });

  it('when searched by MRN (any PID-3 identifier), control id, type, sender or status then only the matching messages come back', async () => {
    expect((await rows(`mrn=${mrn}`)).map((r) => r.controlId)).toEqual([id]);
    expect((await rows(`mrn=ALT-${mrn}`)).map((r) => r.controlId)).toEqual([id]);
    expect(await rows(`mrn=${mrn}X`)).toEqual([]);
    expect((await rows(`controlId=${id}`)).map((r) => r.controlId)).toEqual([id]);
    expect(
      (await rows(`controlId=${id}&sender=${encodeURIComponent(`CONSOLE^C${id}`)}`)).map((r) => r.id),
    ).toHaveLength(1);
    expect((await rows(`sender=${encodeURIComponent(`CONSOLE^C${other}`)}`)).map((r) => r.controlId)).toEqual(
      [other],
    );
    expect((await rows('type=ADT^A08')).map((r) => r.controlId)).toContain(other);
    expect((await rows('type=ADT^A08')).map((r) => r.controlId)).not.toContain(id);
    expect((await rows('type=ADT')).map((r) => r.controlId)).toEqual(expect.arrayContaining([id, other]));
    expect((await rows('status=completed')).map((r) => r.controlId)).toContain(id);
    expect((await rows('status=failed')).map((r) => r.controlId)).not.toContain(id);
  });

  it('when a message is stored then Redis holds a keyed hash of its MRN, never the MRN', async () => {
    const job = await settled(id, 'completed');
    const stored = JSON.stringify(job.data);
    expect(stored).not.toContain(mrn);
    expect(job.data.mrn).toHaveLength(2);
    const keys = await h.app.redis.producer.keys(`${h.config.queuePrefix}:hl7-inbound-p*:${job.id}`);
    for (const k of keys) expect(JSON.stringify(await h.app.redis.producer.hgetall(k))).not.toContain(mrn);
  });

  it('when one message is read then it names its ACK and the resources it wrote; the raw text only with careway.hl7.raw, audited', async () => {
    const [row] = await rows(`controlId=${id}`);
    const plain = await get(`/hl7/messages/${row!.id}`, reader);
    expect(plain.statusCode).toBe(200);
    const detail = plain.json<{ ack: string; resources: string[]; raw?: string; status: string }>();
    expect(detail).toMatchObject({ ack: 'AA', status: 'completed', type: 'ADT^A04', controlId: id });
    expect(detail.resources.some((r) => r.startsWith('Patient/'))).toBe(true);
    expect(detail).not.toHaveProperty('raw');
    expect(plain.body).not.toContain('Ysolde');
    const sub = `raw-${uniq()}`;
    const rawToken = await h.token({ scope: 'user/MessageHeader.r user/careway.hl7.raw', sub });
    const withRaw = await get(`/hl7/messages/${row!.id}`, rawToken);
    expect(withRaw.json<{ raw: string }>().raw).toContain(`PID|1||${mrn}`);
    const patient = detail.resources.find((r) => r.startsWith('Patient/'));
    const events = await until('the raw read AuditEvent', async () => {
      const found = await h.fhir.searchAll<AuditEvent>('AuditEvent', { altid: sub }, { noCache: true });
      return found.length ? found : undefined;
    });
    expect(events).toHaveLength(1);
    expect(JSON.stringify(events[0])).toContain('HL7 v2 raw message read');
    expect((events[0]!.entity ?? []).map((e) => e.what?.reference)).toContain(patient);
    // A patient-context form of the raw scope grants nothing.
    const patientRaw = await h.token({ scope: 'user/MessageHeader.r patient/careway.hl7.raw', patient: 'x' });
    expect((await get(`/hl7/messages/${row!.id}`, patientRaw)).json()).not.toHaveProperty('raw');
  });

  it('when the input is bad or the scope missing then 400, 404 or 403 with an OperationOutcome', async () => {
    for (const q of ['status=dead', 'type=adt', 'limit=0', 'mrn=', 'colour=red']) {
      const res = await get(`/hl7/messages?${q}`, reader);
      expect(res.statusCode, q).toBe(400);
      expect(res.json<{ resourceType: string }>().resourceType).toBe('OperationOutcome');
    }
    expect((await get('/hl7/messages/no-such-message', reader)).statusCode).toBe(404);
    const patient = await h.token({ scope: 'patient/MessageHeader.r', patient: 'x' });
    expect((await get('/hl7/messages', patient)).statusCode).toBe(403);
    expect((await get(`/hl7/messages/whatever`, await h.token({ scope: 'user/Patient.r' }))).statusCode).toBe(
      403,
    );
  });
});

describe('the OpenAPI document', () => {
  it('when /docs/json is read then the care-team routes are in it', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/docs/json' });
    const paths = Object.keys(res.json<{ paths: Record<string, unknown> }>().paths);
    for (const p of [
      '/journeys/board',
      '/tasks/worklist',
      '/fhir/Task/{id}/$claim',
      '/fhir/Task/{id}/$complete',
      '/hl7/messages',
      '/hl7/messages/{id}',
      '/engagement/dead-letters/{queue}/{jobId}/$replay',
    ])
      expect(paths, p).toContain(p);
  });
});

describe('dead-letter replay', () => {
  const admin = () => h.token({ scope: 'user/careway.admin user/Communication.r', sub: `admin-${uniq()}` });
  const replay = async (queue: string, jobId: string, token: string) =>
    h.app.inject({
      method: 'POST',
      url: `/engagement/dead-letters/${queue}/${jobId}/$replay`,
      headers: { authorization: `Bearer ${token}` },
    });

  it('when a dead letter is replayed twice at once then its job is queued once and the letter is gone', async () => {
    // PID-8 holds a code outside table 0001: the message fails mapping and is dead-lettered at once.
    const id = uniq();
    await send(msg(id, `MRN-${id}`).replace('|19700101|F', '|19700101|Q'));
    const failed = await settled(id, 'failed');
    const token = await admin();
    const letters = await until('the dead letter listed', async () => {
      const res = await get('/engagement/dead-letters', token);
      const found = res
        .json<{ deadLetters: { queue: string; id: string }[] }>()
        .deadLetters.find((d) => d.id === `${failed.id}-dead`);
      return found;
    });
    expect(letters.queue).toBe('hl7-dead');
    const [a, b] = await Promise.all([
      replay(letters.queue, letters.id, token),
      replay(letters.queue, letters.id, token),
    ]);
    expect([a.statusCode, b.statusCode], a.body + b.body).toEqual([202, 202]);
    expect([a.json<{ status: string }>().status, b.json<{ status: string }>().status].sort()).toEqual([
      'already-replayed',
      'queued',
    ]);
    const after = await h.app.hl7.queue.getJob(failed.id!);
    // Run again once: one more attempt (it fails again, the map still refuses it).
    await until('the replayed job to fail again', async () =>
      (await after?.getState()) === 'failed' ? true : undefined,
    );
    expect(h.logs.some((l) => l['msg'] === 'admin action' && l['queue'] === 'hl7-dead')).toBe(true);
  });

  it('when the caller is no admin, or the queue or letter is unknown then 403 or 404', async () => {
    const staff = await h.token({ scope: 'user/Communication.r' });
    expect((await replay('hl7-dead', 'x-dead', staff)).statusCode).toBe(403);
    const token = await admin();
    expect((await replay('no-such-queue', 'x-dead', token)).statusCode).toBe(404);
    expect((await replay('hl7-dead', 'no-such-job-dead', token)).statusCode).toBe(404);
    expect((await replay('hl7-dead', 'bad id!', token)).statusCode).toBe(400);
  });
});
