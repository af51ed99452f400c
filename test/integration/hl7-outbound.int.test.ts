/**
 * Outbound HL7 to the EHR, end to end: Careway (real HAPI FHIR, real Redis) books, reschedules, cancels and marks
 * no-shows through its operations, and a real MLLP receiver (HAPI HL7v2's server, test/hl7-receiver/) gets the
 * SIU for each, parsed by HAPI into the SIU_S12 structure. Also: what came from the EHR over SIU is not echoed
 * back; an AE goes to the dead-letter queue with the EHR's ERR text; a receiver that is down is retried in place
 * until it comes up; an unanswered message is retried, then dead-lettered; a replayed change is sent once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Appointment, Location, Parameters, Patient, Practitioner, Schedule, Slot } from 'fhir/r4.js';
import { startHarness, uniq, until, type Harness } from '../support/harness.js';
import { startReceiver, type Hl7Receiver, type ReceivedMessage } from '../support/hl7-receiver.js';
import { freePort } from '../../src/devstack/processes.js';
import { canonical } from '../../src/fhir/canonical.js';
import type { OutboundListing } from '../../src/hl7/module.js';

const run = uniq();
const SERVICE = {
  coding: [{ system: 'urn:careway:test:service', code: `OUT-${run}`, display: 'Cardiology' }],
};
const MRN_SYSTEM = 'urn:careway:test:mrn';
const NPI = `NPI${run}`;

let h: Harness;
let receiver: Hl7Receiver;
let staff: string;
/** Each harness trusts its own signing key: a token per harness. */
const tokens = new Map<Harness, string>();
let slots: Slot[] = [];
let nextSlot = 0;
const stops: (() => Promise<void>)[] = [];

function params(...p: NonNullable<Parameters['parameter']>): Parameters {
  return { resourceType: 'Parameters', parameter: p };
}
async function post(app: Harness, url: string, body: unknown) {
  return app.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${tokens.get(app)}`, 'content-type': 'application/fhir+json' },
    payload: JSON.stringify(body),
  });
}
async function book(app: Harness, patientId: string, extra: NonNullable<Parameters['parameter']> = []) {
  const slot = slots[nextSlot++]!;
  const res = await post(
    app,
    '/fhir/Appointment/$book',
    params(
      { name: 'slot', valueReference: { reference: `Slot/${slot.id}` } },
      { name: 'patient', valueReference: { reference: `Patient/${patientId}` } },
      ...extra,
    ),
  );
  expect(res.statusCode, res.body).toBe(201);
  return { appointment: res.json<Appointment>(), slot };
}
async function patient(mrn: string, family = 'Müller'): Promise<string> {
  const p = await h.fhir.create<Patient>({
    resourceType: 'Patient',
    identifier: [{ system: MRN_SYSTEM, value: mrn, type: { coding: [{ code: 'MR' }] } }],
    name: [{ family, given: ['Ana'] }],
    birthDate: '1980-04-02',
    gender: 'female',
  });
  return p.resource.id!;
}
/** What the receiver got for one patient (PID-3.1), in arrival order. */
const sentFor = (r: Hl7Receiver, mrn: string): ReceivedMessage[] =>
  r.messages.filter((m) => m.msg.segment('PID')?.get(3) === mrn);
const waitFor = (r: Hl7Receiver, mrn: string, n: number, what: string) =>
  until(what, () => (sentFor(r, mrn).length >= n ? sentFor(r, mrn) : undefined), 60_000, 100);
async function outboundLog(app: Harness): Promise<OutboundListing[]> {
  const res = await app.app.inject({
    method: 'GET',
    url: '/hl7/outbound?limit=500',
    headers: { authorization: `Bearer ${tokens.get(app)}` },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ messages: OutboundListing[] }>().messages;
}
async function metrics(app: Harness): Promise<string> {
  const res = await app.app.inject({
    method: 'GET',
    url: '/metrics',
    headers: { authorization: `Bearer ${await app.token({ scope: 'system/*.r' })}` },
  });
  expect(res.statusCode).toBe(200);
  return res.body;
}
const hl7Start = (iso: string): string => {
  // FHIR instant → the HL7 DTM Careway writes (offset as stored).
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(iso)!;
  return `${m[1]}${m[2]}${m[3]}${m[4]}${m[5]}${m[6]}${m[7] === 'Z' ? '+0000' : m[7]!.replace(':', '')}`;
};

/** A harness sending to `port`, with quick retries. */
async function harnessTo(port: number, extra: Record<string, string> = {}): Promise<Harness> {
  const app = await startHarness({
    HL7_OUTBOUND_URL: `mllp://127.0.0.1:${port}`,
    HL7_OUTBOUND_RECEIVING_APPLICATION: 'TESTEHR',
    HL7_OUTBOUND_BACKOFF_MS: '200',
    HL7_OUTBOUND_ATTEMPTS: '30',
    HL7_OUTBOUND_ACK_TIMEOUT_MS: '5000',
    ...extra,
  });
  stops.push(() => app.close());
  tokens.set(app, await app.token({ scope: 'user/*.cruds', sub: 'scheduler-out' }));
  return app;
}

beforeAll(async () => {
  receiver = await startReceiver(await freePort());
  stops.push(() => receiver.stop());
  h = await harnessTo(receiver.port);
  staff = tokens.get(h)!;
  const practitioner = await h.fhir.create<Practitioner>({
    resourceType: 'Practitioner',
    identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: NPI }],
    name: [{ family: 'House', given: ['Greg'] }],
  });
  const location = await h.fhir.create<Location>({ resourceType: 'Location', name: `Clinic ${run}` });
  const schedule = await h.fhir.create<Schedule>({
    resourceType: 'Schedule',
    active: true,
    extension: [{ url: canonical.timezoneExtension, valueCode: 'Europe/Berlin' }],
    serviceType: [SERVICE],
    actor: [
      { reference: `Practitioner/${practitioner.resource.id}` },
      { reference: `Location/${location.resource.id}` },
    ],
  });
  const day = new Date(Date.now() + 10 * 86400_000).toISOString().slice(0, 10);
  const res = await post(
    h,
    `/fhir/Schedule/${schedule.resource.id}/$generate-slots`,
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
          { name: 'availableStartTime', valueTime: '08:00:00' },
          { name: 'availableEndTime', valueTime: '18:00:00' },
        ],
      },
    ),
  );
  expect(res.statusCode, res.body).toBe(201);
  slots = await h.fhir.searchAll<Slot>(
    'Slot',
    { schedule: `Schedule/${schedule.resource.id}`, _count: 100, _sort: 'start' },
    { noCache: true },
  );
  expect(slots.length).toBeGreaterThanOrEqual(16);
}, 240_000);

afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
});

describe('Careway’s own changes reach the EHR', () => {
  it('when a slot is booked then the EHR gets an SIU^S12 with SCH, TQ1, PID, PV1, RGS, AIS, AIL and AIP', async () => {
    const mrn = `M1-${run}`;
    const pid = await patient(mrn);
    const { appointment, slot } = await book(h, pid);
    const [m] = await waitFor(receiver, mrn, 1, 'the S12');
    expect(m!.structure).toBe('SIU_S12'); // HAPI parsed it into the SIU_S12 structure
    expect(m!.type).toBe('SIU^S12');
    expect(m!.ack).toBe('AA');
    // Each value where HAPI's structure puts it: a segment out of its group would be missing here.
    expect(m!.paths).toMatchObject({
      '/MSH-12-1': '2.5.1',
      '/SCH-1-1': appointment.id,
      '/SCH-25-1': 'Booked',
      '/TQ1-7-1': hl7Start(slot.start),
      '/TQ1-8-1': hl7Start(slot.end),
      '/PATIENT/PID-3-1': mrn,
      '/PATIENT/PID-5-1': 'Müller', // UTF-8 end to end (MSH-18)
      '/PATIENT/PV1-2': 'O',
      '/RESOURCES/RGS-1': '1',
      '/RESOURCES/SERVICE/AIS-3-1': `OUT-${run}`,
      '/RESOURCES/LOCATION_RESOURCE/AIL-3-1': `Clinic ${run}`,
      '/RESOURCES/PERSONNEL_RESOURCE/AIP-3-1': NPI,
    });
    const msg = m!.msg;
    expect(msg.msh.get(3)).toBe('CAREWAY'); // MSH-3
    expect(msg.msh.get(5)).toBe('TESTEHR'); // MSH-5
    expect(msg.controlId).toMatch(/^CW[0-9A-F]{18}$/); // MSH-10, derived from the job id
    expect(msg.segment('PID')!.get(3, 4, 2)).toBe(MRN_SYSTEM); // CX.4.2 the system as universal id
    expect(msg.segment('PID')!.get(3, 5)).toBe('MR');
    expect(msg.segment('PID')!.get(7)).toBe('19800402');
    expect(msg.segment('PID')!.get(8)).toBe('F');
    expect(msg.segment('AIP')!.get(3, 2)).toBe('House');
    expect(msg.segment('SCH')!.get(9)).toBe('30');

    // The outbound log, the metric, and no PHI in the job or the log lines.
    const row = await until('the delivered job in the log', async () =>
      (await outboundLog(h)).find((r) => r.appointment === `Appointment/${appointment.id}` && r.ack),
    );
    expect(row).toMatchObject({ change: 'booked', trigger: 'S12', status: 'completed', ack: 'AA' });
    expect(row.controlId).toBe(msg.controlId);
    const job = await h.app.hl7.outbound!.queue.getJob(row.id);
    expect(Object.keys(job!.data).sort()).toEqual([
      'appointmentId',
      'change',
      'patientId',
      'queuedAt',
      'trigger',
      'versionId',
    ]);
    expect(await metrics(h)).toMatch(
      /careway_hl7_outbound_messages_total\{trigger="S12",code="AA"[^}]*\} [1-9]/,
    );
    expect(h.rawLogs.join('\n')).not.toContain(mrn);
    expect(h.rawLogs.join('\n')).not.toContain('Müller');
  });

  it('when a booking is replayed, rescheduled, reported twice, cancelled twice and a second one is a no-show then the EHR gets S12, S14, S15, S12, S26 once each', async () => {
    const mrn = `M2-${run}`;
    const pid = await patient(mrn);
    const { appointment: first, slot } = await book(h, pid);
    // A replay of the same $book books nothing and sends nothing.
    const replay = await post(
      h,
      '/fhir/Appointment/$book',
      params(
        { name: 'slot', valueReference: { reference: `Slot/${slot.id}` } },
        { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
      ),
    );
    expect(replay.statusCode).toBe(200);
    const { appointment: moved } = await book(h, pid, [
      { name: 'replaces', valueReference: { reference: `Appointment/${first.id}` } },
    ]);
    // The same change reported again (a retried hook) is the same job: nothing twice.
    await h.app.hl7.sendAppointmentChange({
      appointmentId: moved.id!,
      versionId: moved.meta!.versionId!,
      patientId: pid,
      change: 'rescheduled',
    });
    const cancel = () =>
      post(
        h,
        `/fhir/Appointment/${moved.id}/$cancel`,
        params({ name: 'reason', valueString: 'Patient asked' }),
      );
    expect((await cancel()).statusCode).toBe(200);
    expect((await cancel()).statusCode).toBe(200); // already cancelled: no change
    const { appointment: second } = await book(h, pid);
    expect((await post(h, `/fhir/Appointment/${second.id}/$noshow`, params())).statusCode).toBe(200);

    const got = await waitFor(receiver, mrn, 5, 'five messages');
    // Give a duplicate, if one were queued, the time to arrive behind the last one: the next change for this
    // patient is sent after anything queued before it (per-patient order), so one more change closes the list.
    const { appointment: third } = await book(h, pid);
    await waitFor(receiver, mrn, 6, 'the closing S12');
    const all = sentFor(receiver, mrn);
    expect(all.map((m) => m.type)).toEqual([
      'SIU^S12',
      'SIU^S14',
      'SIU^S15',
      'SIU^S12',
      'SIU^S26',
      'SIU^S12',
    ]);
    expect(got.every((m) => m.ack === 'AA')).toBe(true);
    // The reschedule and its cancel name the appointment the EHR knows: the first booking's id.
    expect(all.slice(0, 3).map((m) => m.paths['/SCH-1-1'])).toEqual([first.id, first.id, first.id]);
    expect(all[1]!.msg.segment('SCH')!.get(25)).toBe('Booked');
    expect(all[2]!.msg.segment('SCH')!.get(25)).toBe('Cancelled');
    expect(all[2]!.msg.segment('SCH')!.get(6, 2)).toBe('Patient asked');
    expect(all[3]!.paths['/SCH-1-1']).toBe(second.id);
    expect(all[4]!.msg.segment('SCH')!.get(25)).toBe('Noshow');
    expect(all[5]!.paths['/SCH-1-1']).toBe(third.id);
    expect(new Set(all.map((m) => m.controlId)).size).toBe(6);
  });
});

describe('changes that came from elsewhere', () => {
  const siu = (trigger: string, appt: string, mrn: string, start: string, status: string): string =>
    [
      `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||SIU^${trigger}^SIU_S12|${uniq()}|P|2.5`,
      `SCH|${appt}^EPIC||||||||||^^^${start}^${start.slice(0, 10)}30||||||||||||||${status}`,
      `PID|1||${mrn}^^^STMARYS^MR||Nakamura^Ren||19750505|M`,
      `AIP|1||${NPI}^House^Greg^^^^^^&http://hl7.org/fhir/sid/us-npi&URI`,
      '',
    ].join('\r');

  it('when the EHR books and reports a no-show over SIU then nothing is echoed; a cancel Careway makes later is sent with the EHR’s id', async () => {
    const mrn = `M3-${run}`;
    const [x, y] = [`X${uniq()}`, `Y${uniq()}`];
    const hl7Token = await h.token({ scope: 'user/MessageHeader.c', sub: 'ehr' });
    const send = async (body: string) => {
      const res = await h.app.inject({
        method: 'POST',
        url: '/hl7',
        headers: { authorization: `Bearer ${hl7Token}`, 'content-type': 'x-application/hl7-v2+er7' },
        payload: body,
      });
      expect(res.statusCode, res.body).toBe(200);
    };
    await send(siu('S12', x, mrn, '203001150900', 'Booked'));
    await send(siu('S12', y, mrn, '203001161000', 'Booked'));
    await send(siu('S26', x, mrn, '203001150900', 'Noshow'));
    const find = (id: string) =>
      h.fhir.searchAll<Appointment>('Appointment', { identifier: `urn:id:EPIC|${id}` }, { noCache: true });
    await until('the S26 applied', async () => {
      const counts = await h.app.hl7.queue.getJobCounts('waiting', 'active', 'delayed');
      const [a] = await find(x);
      return a?.status === 'noshow' && counts['waiting']! + counts['active']! + counts['delayed']! === 0
        ? a
        : undefined;
    });
    const [fromEhr] = await find(y);
    expect(fromEhr?.status).toBe('booked');
    // Careway cancels the EHR's appointment: that change is Careway's, and goes out with the EHR's id.
    const res = await post(
      h,
      `/fhir/Appointment/${fromEhr!.id}/$cancel`,
      params({ name: 'reason', valueString: 'Clinic closed' }),
    );
    expect(res.statusCode, res.body).toBe(200);
    await waitFor(receiver, mrn, 1, 'the S15');
    // Per-patient order: an echo of the S12s or the S26 would have been queued, and arrived, before this.
    const all = sentFor(receiver, mrn);
    expect(all.map((m) => m.type)).toEqual(['SIU^S15']);
    const sch = all[0]!.msg.segment('SCH')!;
    expect(sch.get(1)).toBe(fromEhr!.id); // SCH-1: Careway's id
    expect(sch.get(2, 1)).toBe(y); // SCH-2.1: the EHR's own id
    expect(sch.get(2, 2)).toBe('EPIC'); // SCH-2.2: its namespace, from urn:id:EPIC
    expect(all[0]!.msg.segment('PID')!.get(3, 4)).toBe('STMARYS'); // the namespace the EHR sent
  });
});

describe('the EHR’s answers', () => {
  it('when the EHR answers AE then the change goes to the dead-letter queue with the ERR text, once', async () => {
    const mrn = `NACK-AE-${run}`;
    const pid = await patient(mrn);
    const { appointment } = await book(h, pid);
    const dead = await until('the dead letter', async () =>
      (await h.app.hl7.outbound!.dead.getJobs(['waiting'])).find(
        (j) => (j.data as { appointmentId?: string }).appointmentId === appointment.id,
      ),
    );
    expect((dead.data as { reason: string }).reason).toBe('AE: the test EHR refuses this message (NACK-AE)');
    expect(sentFor(receiver, mrn).map((m) => m.ack)).toEqual(['AE']); // not retried
    const row = (await outboundLog(h)).find((r) => r.appointment === `Appointment/${appointment.id}`);
    expect(row).toMatchObject({ status: 'failed', trigger: 'S12' });
    expect(row!.error).toContain('NACK-AE');
    const letters = await h.app.inject({
      method: 'GET',
      url: '/engagement/dead-letters',
      headers: { authorization: `Bearer ${staff}` },
    });
    expect(letters.body).toContain('hl7-outbound-dead');
    expect(await metrics(h)).toMatch(
      /careway_hl7_outbound_messages_total\{trigger="S12",code="AE"[^}]*\} 1\n/,
    );
  });

  it('when the EHR answers AR then the change is dead-lettered too', async () => {
    const mrn = `NACK-AR-${run}`;
    const { appointment } = await book(h, await patient(mrn));
    const dead = await until('the dead letter', async () =>
      (await h.app.hl7.outbound!.dead.getJobs(['waiting'])).find(
        (j) => (j.data as { appointmentId?: string }).appointmentId === appointment.id,
      ),
    );
    expect((dead.data as { reason: string }).reason).toMatch(/^AR: .*NACK-AR/);
  });

  it('when the EHR is down then the change is retried until it comes up, then delivered once', async () => {
    const port = await freePort();
    const down = await harnessTo(port);
    const mrn = `M4-${run}`;
    const { appointment } = await book(down, await patient(mrn));
    const waiting = await until('two failed tries in the log', async () =>
      (await outboundLog(down)).find(
        (r) => r.appointment === `Appointment/${appointment.id}` && r.attempts >= 2,
      ),
    );
    expect(waiting.status).toBe('active'); // held in place: the patient's later changes wait behind it
    expect(waiting.error).toMatch(/cannot connect/);
    const late = await startReceiver(port);
    stops.push(() => late.stop());
    const [m] = await waitFor(late, mrn, 1, 'the delivery once the EHR is up');
    expect(m!.type).toBe('SIU^S12');
    const row = await until('the delivered row', async () =>
      (await outboundLog(down)).find((r) => r.appointment === `Appointment/${appointment.id}` && r.ack),
    );
    expect(row).toMatchObject({ status: 'completed', ack: 'AA' });
    expect(row.attempts).toBeGreaterThanOrEqual(3);
    expect(await metrics(down)).toMatch(
      /careway_hl7_outbound_messages_total\{trigger="S12",code="unreachable"[^}]*\} [1-9]/,
    );
    expect(sentFor(late, mrn)).toHaveLength(1);
  });

  it('when the EHR never answers then the message is retried with the same control id, then dead-lettered', async () => {
    const silent = await harnessTo(receiver.port, {
      HL7_OUTBOUND_ACK_TIMEOUT_MS: '1500',
      HL7_OUTBOUND_ATTEMPTS: '2',
    });
    const mrn = `SILENT-${run}`;
    const { appointment } = await book(silent, await patient(mrn));
    const dead = await until('the dead letter', async () =>
      (await silent.app.hl7.outbound!.dead.getJobs(['waiting'])).find(
        (j) => (j.data as { appointmentId?: string }).appointmentId === appointment.id,
      ),
    );
    expect((dead.data as { reason: string }).reason).toBe('no ACK after 2 attempts: no ACK within 1500 ms');
    const tries = sentFor(receiver, mrn);
    expect(tries).toHaveLength(2);
    expect(tries[0]!.controlId).toBe(tries[1]!.controlId); // the EHR can drop the resend
  });
});
