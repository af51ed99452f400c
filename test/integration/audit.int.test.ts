/**
 * The audit trail on the real HAPI and Redis: reads, searches, writes, refusals and HL7 messages become BALP
 * AuditEvents on the FHIR server; a privacy officer lists who read a patient's record; a patient sees who read
 * its own record and nothing about other patients; and an access that cannot be audited is not answered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent, Bundle, Observation, Patient } from 'fhir/r4.js';
import { startHarness, uniq, until, type Harness } from '../support/harness.js';

let h: Harness;
const MRN = 'urn:careway:test:audit';

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const patient = async (family: string): Promise<string> =>
  (
    await h.fhir.create<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: MRN, value: uniq() }],
      name: [{ family }],
    })
  ).resource.id!;

/** The AuditEvents a token subject caused, once the worker has written them (`altid` is the subject). */
async function eventsBy(subject: string, atLeast: number): Promise<AuditEvent[]> {
  return until(`${atLeast} AuditEvents by ${subject}`, async () => {
    const found = await h.fhir.searchAll<AuditEvent>(
      'AuditEvent',
      { altid: subject, _count: 200 },
      { noCache: true },
    );
    return found.length >= atLeast ? found : undefined;
  });
}

const get = (url: string, token: string) =>
  h.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
const patientsIn = (e: AuditEvent) =>
  (e.entity ?? []).filter((x) => x.role?.code === '1').map((x) => x.what?.reference);

describe('what is audited', () => {
  it('when a clinician reads, searches and is refused then each is an AuditEvent with the user, the patient, the query and the outcome', async () => {
    const sub = `clinician-${uniq()}`;
    const token = await h.token({ scope: 'user/Patient.rs user/Observation.rs', sub });
    const pid = await patient('Audited');
    expect((await get(`/fhir/Patient/${pid}`, token)).statusCode).toBe(200);
    expect((await get(`/fhir/Observation?subject=Patient/${pid}`, token)).statusCode).toBe(200);
    expect((await get(`/fhir/Condition?subject=Patient/${pid}`, token)).statusCode).toBe(403);
    const events = await eventsBy(sub, 3);
    const read = events.find((e) => e.subtype?.[0]?.code === 'read');
    expect(read).toMatchObject({
      type: { code: 'rest' },
      action: 'R',
      outcome: '0',
      agent: expect.arrayContaining([expect.objectContaining({ altId: sub, requestor: true })]),
    });
    expect(patientsIn(read!)).toEqual([`Patient/${pid}`]);
    const searches = events.filter((e) => e.subtype?.[0]?.code === 'search-type');
    const search = searches.find((e) => e.outcome === '0');
    expect(search?.action).toBe('E');
    const query = search?.entity?.find((x) => x.query)?.query;
    expect(Buffer.from(query ?? '', 'base64').toString('utf8')).toBe(`subject=Patient/${pid}`);
    expect(patientsIn(search!)).toEqual([`Patient/${pid}`]);
    const refused = searches.find((e) => e.outcome === '4');
    expect(refused?.outcomeDesc).toMatch(/^403/);
    // The request id ties an event to its log line.
    expect(read?.entity?.some((x) => x.type?.code === 'XrequestId' && x.what?.identifier?.value)).toBe(true);
  });

  it('when a search answers for several patients then there is one event per patient, each naming only its own', async () => {
    const sub = `clinician-${uniq()}`;
    const token = await h.token({ scope: 'user/Observation.rs', sub });
    const tag = uniq();
    const [a, b] = [await patient('One'), await patient('Two')];
    for (const p of [a, b])
      await h.fhir.create<Observation>({
        resourceType: 'Observation',
        status: 'final',
        code: { text: tag },
        subject: { reference: `Patient/${p}` },
      });
    expect((await get(`/fhir/Observation?code:text=${tag}`, token)).statusCode).toBe(200);
    const events = await eventsBy(sub, 2);
    expect(events.map((e) => patientsIn(e)).sort()).toEqual([[`Patient/${a}`], [`Patient/${b}`]].sort());
  });

  it('when a patient is written through the facade and an HL7 message comes in then both are audited (C)', async () => {
    const sub = `engine-${uniq()}`;
    const token = await h.token({ scope: 'system/*.cruds system/MessageHeader.c', sub });
    const created = await h.app.inject({
      method: 'POST',
      url: '/fhir/Patient',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
      payload: { resourceType: 'Patient', name: [{ family: 'Written' }] },
    });
    expect(created.statusCode).toBe(201);
    const [write] = await eventsBy(sub, 1);
    expect(write).toMatchObject({ action: 'C', subtype: [{ code: 'create' }] });
    expect(patientsIn(write!)).toEqual([`Patient/${created.json<Patient>().id}`]);

    const sender = `LAB${uniq()}`.slice(0, 20).toUpperCase();
    const mrn = uniq();
    const msg = [
      `MSH|^~\\&|EPIC|${sender}|CAREWAY|CW|20240115083015||ADT^A04^ADT_A01|${uniq()}|P|2.5`,
      'EVN|A04|20240115083015',
      `PID|1||${mrn}^^^${sender}&urn:oid:2.16.840.1.113883.19.5&ISO^MR||Audit^Hl7||19800202|F`,
      'PV1|1|O',
      '',
    ].join('\r');
    const res = await h.app.inject({
      method: 'POST',
      url: '/hl7',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'x-application/hl7-v2+er7' },
      payload: msg,
    });
    expect(res.body).toMatch(/MSA\|AA/);
    const [hl7] = await eventsBy(`EPIC^${sender}`, 1);
    expect(hl7).toMatchObject({
      type: { code: '110100' },
      action: 'C',
      subtype: [{ code: 'A04', display: 'ADT^A04' }],
    });
    const [p] = await h.fhir.searchAll<Patient>(
      'Patient',
      { identifier: `urn:oid:2.16.840.1.113883.19.5|${mrn}` },
      { noCache: true },
    );
    expect(patientsIn(hl7!)).toEqual([`Patient/${p!.id}`]);
  });
});

describe('who read my record', () => {
  it('when a privacy officer asks for a patient then every access is listed; the patient sees its own, never another patient', async () => {
    const [me, other] = [await patient('Private'), await patient('Other')];
    const reader = `nurse-${uniq()}`;
    const nurse = await h.token({ scope: 'user/Patient.rs', sub: reader });
    await get(`/fhir/Patient/${me}`, nurse);
    await get(`/fhir/Patient/${other}`, nurse);
    await eventsBy(reader, 2);

    const officer = await h.token({ scope: 'user/AuditEvent.rs', sub: `privacy-${uniq()}` });
    const listed = await get(`/fhir/AuditEvent?patient=Patient/${me}`, officer);
    expect(listed.statusCode).toBe(200);
    const events = (listed.json<Bundle>().entry ?? []).map((e) => e.resource as AuditEvent);
    expect(events.some((e) => e.agent.some((a) => a.altId === reader))).toBe(true);

    const mine = await h.token({ scope: 'patient/AuditEvent.rs', patient: me });
    const own = await get('/fhir/AuditEvent', mine);
    expect(own.statusCode).toBe(200);
    const body = own.body;
    expect(body).toContain(reader);
    expect(body).not.toContain(`Patient/${other}`);
    expect((await get(`/fhir/AuditEvent?patient=Patient/${other}`, mine)).json<Bundle>().entry ?? []).toEqual(
      [],
    );
  });
});

describe('no answer without its audit record', () => {
  it('when the audit queue cannot be reached then the read is withheld: 503, and nothing of the record is sent', async () => {
    const down = await startHarness({ REDIS_URL: 'redis://127.0.0.1:1', CAREWAY_UPLOAD_PROFILES: 'false' });
    try {
      const pid = await patient('Withheld');
      const t = await down.token({ scope: 'user/Patient.rs' });
      const read = await down.app.inject({
        method: 'GET',
        url: `/fhir/Patient/${pid}`,
        headers: { authorization: `Bearer ${t}` },
      });
      expect(read.statusCode).toBe(503);
      expect(read.json<{ issue: { diagnostics: string }[] }>().issue[0]?.diagnostics).toMatch(
        /could not be audited/,
      );
      expect(read.body).not.toContain('Withheld');
      expect(read.headers['etag']).toBeUndefined();
    } finally {
      await down.close();
    }
  });
});
