/**
 * Reminders end to end with real HAPI, Redis, a real SMTP server and an HTTP SMS provider on loopback, with time
 * compressed through config (offsets of seconds): reminders arrive at their offsets, move with the appointment,
 * never go out for a cancelled one, write a Communication per send, confirm and cancel by signed reply, re-plan
 * after a direct edit through the sweep, keep quiet hours in the patient's zone, and keep PHI out of jobs (write-backs sealed) and logs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Appointment,
  AppointmentResponse,
  Communication,
  CommunicationRequest,
  OperationOutcome,
  Patient,
  Schedule,
  Slot,
} from 'fhir/r4.js';
import { bookedOnFhir, startHarness, uniq, type Harness, until } from '../support/harness.js';
import { smsSink, smtpSink } from '../support/sinks.js';
import { canonical } from '../../src/fhir/canonical.js';
import { sign, verify } from '../../src/reminders/channels/sms-webhook.js';
import { sweep } from '../../src/reminders/sweep-worker.js';
import { reminderJobId } from '../../src/reminders/service.js';
import { unseal } from '../../src/shared/seal.js';

const SECRET = 'test-sms-secret-0123456789';
const FILE_STARTED = new Date().toISOString();
const CANARY = `Zyxcanary${uniq()}`;
let h: Harness;
let smtp: Awaited<ReturnType<typeof smtpSink>>;
let sms: Awaited<ReturnType<typeof smsSink>>;
let staff: string;
let schedule: string;

beforeAll(async () => {
  [smtp, sms] = await Promise.all([smtpSink(), smsSink()]);
  // Quiet hours far from now (UTC), so the compressed reminders are never moved by them.
  const h0 = (new Date().getUTCHours() + 8) % 24;
  const pad = (n: number) => String(n).padStart(2, '0');
  h = await startHarness({
    SMTP_URL: smtp.url,
    SMTP_FROM: 'Careway <reminders@careway.test>',
    SMS_WEBHOOK_URL: sms.url,
    SMS_WEBHOOK_SECRET: SECRET,
    REMINDER_OFFSETS: 'PT6S,PT3S',
    QUIET_HOURS: `${pad(h0)}:00-${pad((h0 + 1) % 24)}:00`,
    DEFAULT_TIMEZONE: 'UTC',
  });
  staff = await h.token({ scope: 'user/*.cruds', sub: 'scheduler-9' });
  schedule = (
    await h.fhir.create<Schedule>({
      resourceType: 'Schedule',
      active: true,
      actor: [{ display: 'Clinic A' }],
    })
  ).resource.id!;
});
afterAll(async () => {
  await h.close();
  await Promise.all([smtp.close(), sms.close()]);
});

async function patient(telecom: Patient['telecom'], extra: Partial<Patient> = {}): Promise<string> {
  return (
    await h.fhir.create<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
      name: [{ given: ['Ada'], family: CANARY }],
      telecom,
      ...extra,
    })
  ).resource.id!;
}
async function slotIn(seconds: number): Promise<string> {
  const start = Date.now() + seconds * 1000;
  return (
    await h.fhir.create<Slot>({
      resourceType: 'Slot',
      schedule: { reference: `Schedule/${schedule}` },
      status: 'free',
      start: new Date(start).toISOString(),
      end: new Date(start + 15 * 60_000).toISOString(),
    })
  ).resource.id!;
}
async function post(url: string, body: unknown, token = staff) {
  return h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
    payload: JSON.stringify(body),
  });
}
async function book(slot: string, pid: string, replaces?: string): Promise<Appointment> {
  const res = await post('/fhir/Appointment/$book', {
    resourceType: 'Parameters',
    parameter: [
      { name: 'slot', valueReference: { reference: `Slot/${slot}` } },
      { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
      ...(replaces ? [{ name: 'replaces', valueReference: { reference: `Appointment/${replaces}` } }] : []),
    ],
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<Appointment>();
}
const communicationsFor = (id: string) =>
  h.fhir
    .searchAll<Communication>(
      'Communication',
      // Only this run's reminders (a shared server may hold many more), oldest first.
      {
        category: `${canonical.communicationCategory}|reminder`,
        _lastUpdated: `ge${FILE_STARTED}`,
        _count: 200,
        _sort: 'sent',
      },
      { noCache: true },
    )
    .then((all) => all.filter((c) => c.about?.some((r) => r.reference === `Appointment/${id}`)));
const smsFor = (id: string) => sms.requests.filter((r) => r.json.messageId.includes(`-${id}-`));
const mailsFor = (id: string) => smtp.mails.filter((m) => m.raw.includes(`reminder-${id}-`));
async function reply(from: string, text: string, opts: { secret?: string; ts?: string } = {}) {
  const body = JSON.stringify({ from, text, messageId: uniq() });
  const ts = opts.ts ?? String(Date.now());
  return h.app.inject({
    method: 'POST',
    url: '/engagement/replies',
    headers: {
      'content-type': 'application/json',
      'x-careway-timestamp': ts,
      'x-careway-signature': sign(opts.secret ?? SECRET, ts, body),
    },
    payload: body,
  });
}

describe('reminders', () => {
  it('when an appointment is booked then its reminders arrive at their offsets by SMS and e-mail, each with a Communication', async () => {
    const bySms = await patient([{ system: 'phone', use: 'mobile', value: `+4917${Date.now() % 1e8}` }]);
    const byMail = await patient([{ system: 'email', value: `ada.${uniq()}@example.test` }]);
    const a1 = await book(await slotIn(10), bySms);
    const a2 = await book(await slotIn(10), byMail);
    const requests = await until('the plan', async () => {
      const crs = await h.fhir.searchAll<CommunicationRequest>(
        'CommunicationRequest',
        { 'based-on': `Appointment/${a1.id}` },
        { noCache: true },
      );
      return crs.length === 2 ? crs : undefined;
    });
    expect(requests.map((c) => c.status)).toEqual(['active', 'active']);
    const texts = await until('two SMS', () => (smsFor(a1.id!).length >= 2 ? smsFor(a1.id!) : undefined));
    expect(texts).toHaveLength(2);
    for (const t of texts) {
      expect(
        verify(
          SECRET,
          t.headers['x-careway-timestamp'] as string,
          t.headers['x-careway-signature'] as string,
          t.body,
        ),
      ).toBe(true);
      expect(t.json.text).toMatch(/^Hello Ada, a reminder of your appointment on /);
      expect(t.json.text).not.toContain(CANARY);
    }
    const mails = await until('two e-mails', () =>
      mailsFor(a2.id!).length >= 2 ? mailsFor(a2.id!) : undefined,
    );
    expect(mails[0]!.raw).toMatch(/Subject: Appointment reminder/);
    const comms = await until('two Communications', async () => {
      const c = await communicationsFor(a1.id!);
      return c.length >= 2 ? c : undefined;
    });
    expect(comms.map((c) => c.status)).toEqual(['completed', 'completed']);
    expect(comms[0]!.medium?.[0]?.coding?.[0]?.code).toBe('SMSWRIT');
    const done = await h.fhir.searchAll<CommunicationRequest>(
      'CommunicationRequest',
      { 'based-on': `Appointment/${a1.id}` },
      { noCache: true },
    );
    expect(done.map((c) => c.status)).toEqual(['completed', 'completed']);
    // Nothing is sent twice: the ledger holds even when the same job is queued again.
    await h.app.reminders.queue.queue.add('remind', {
      appointmentId: a1.id!,
      offset: 'PT3S',
      startMs: Date.parse(a1.start!),
      dueAt: Date.now(),
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect(smsFor(a1.id!)).toHaveLength(2);
  });

  it('when an appointment moves then its reminders move, and a cancelled one sends none', async () => {
    const pid = await patient([{ system: 'phone', use: 'mobile', value: `+4916${Date.now() % 1e8}` }]);
    const first = await book(await slotIn(30), pid);
    const moved = await book(await slotIn(12), pid, first.id);
    await until('the moved reminders', () => (smsFor(moved.id!).length >= 2 ? true : undefined));
    const cancelledOne = await book(await slotIn(8), pid);
    const res = await post(`/fhir/Appointment/${cancelledOne.id}/$cancel`, {
      resourceType: 'Parameters',
      parameter: [{ name: 'reason', valueString: 'ill' }],
    });
    expect(res.statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, 9000));
    expect(smsFor(first.id!)).toHaveLength(0);
    expect(smsFor(cancelledOne.id!)).toHaveLength(0);
    const revoked = await h.fhir.searchAll<CommunicationRequest>(
      'CommunicationRequest',
      { 'based-on': `Appointment/${first.id}` },
      { noCache: true },
    );
    expect(revoked.map((c) => c.status)).toEqual(['revoked', 'revoked']);
  });

  it('when the patient replies C the appointment is confirmed, N cancels it, other text goes to the care team; bad signatures get 401', async () => {
    const phone = `+4915${Date.now() % 1e8}`;
    const pid = await patient([{ system: 'phone', use: 'mobile', value: phone }]);
    const a = await book(await slotIn(7), pid);
    await until('a reminder', () => (smsFor(a.id!).length >= 1 ? true : undefined));
    await until('its Communication', async () =>
      (await communicationsFor(a.id!)).length >= 1 ? true : undefined,
    );

    expect((await reply(phone, 'C', { secret: 'wrong-secret-0000000000' })).statusCode).toBe(401);
    const stale = await reply(phone, 'C', { ts: String(Date.now() - 3600_000) });
    expect(stale.statusCode).toBe(401);
    expect(stale.json<OperationOutcome>().resourceType).toBe('OperationOutcome');
    const unsigned = await h.app.inject({
      method: 'POST',
      url: '/engagement/replies',
      headers: { 'content-type': 'application/json' },
      payload: '{"from":"x","text":"C","messageId":"1"}',
    });
    expect(unsigned.statusCode).toBe(401);

    const ok = await reply(phone, 'c ');
    expect(ok.json()).toEqual({ outcome: 'confirmed' });
    const confirmed = await h.fhir.read<Appointment>('Appointment', a.id!, { noCache: true });
    expect(confirmed.participant.find((p) => p.actor?.reference === `Patient/${pid}`)?.status).toBe(
      'accepted',
    );
    const responses = await h.fhir.searchAll<AppointmentResponse>(
      'AppointmentResponse',
      { appointment: `Appointment/${a.id}` },
      { noCache: true },
    );
    expect(responses.map((r) => r.participantStatus)).toEqual(['accepted']);

    expect((await reply(phone, 'What should I bring?')).json()).toEqual({
      outcome: 'forwarded-to-care-team',
    });
    expect((await reply(phone, 'N')).json()).toEqual({ outcome: 'cancelled' });
    expect((await h.fhir.read<Appointment>('Appointment', a.id!, { noCache: true })).status).toBe(
      'cancelled',
    );
    expect((await reply('+0000000000', 'C')).json()).toEqual({ outcome: 'unknown-sender' });
  });

  it('when a freed Slot is offered to a waiting patient by SMS then a YES reply books it', async () => {
    const code = `wl-${uniq()}`;
    const serviceType = [{ coding: [{ system: 'urn:careway:test:service', code }] }];
    const start = Date.now() + 3 * 86400_000;
    const slot = (
      await h.fhir.create<Slot>({
        resourceType: 'Slot',
        schedule: { reference: `Schedule/${schedule}` },
        serviceType,
        status: 'free',
        start: new Date(start).toISOString(),
        end: new Date(start + 900_000).toISOString(),
      })
    ).resource.id!;
    const waitingPhone = `+4914${Date.now() % 1e8}`;
    const waiting = await patient([{ system: 'phone', use: 'mobile', value: waitingPhone }]);
    const entry = await h.fhir.create<Appointment>({
      resourceType: 'Appointment',
      status: 'waitlist',
      priority: 1,
      serviceType,
      created: new Date().toISOString(),
      participant: [{ actor: { reference: `Patient/${waiting}` }, status: 'needs-action' }],
    });
    const other = await patient([{ system: 'email', value: `o.${uniq()}@example.test` }]);
    const booked = await book(slot, other);
    const cancelled = await post(`/fhir/Appointment/${booked.id}/$cancel`, {
      resourceType: 'Parameters',
      parameter: [{ name: 'reason', valueString: 'no longer needed' }],
    });
    expect(cancelled.statusCode).toBe(200);
    const offer = await until('the offer SMS', () =>
      sms.requests.find((r) => r.json.to === waitingPhone && r.json.text.includes('earlier appointment')),
    );
    expect(offer.json.text).not.toContain(CANARY);
    expect((await reply(waitingPhone, 'YES')).json()).toEqual({ outcome: 'offer-accepted' });
    const now = await h.fhir.read<Appointment>('Appointment', entry.resource.id!, { noCache: true });
    expect(now.status).toBe('booked');
    expect(now.slot?.[0]?.reference).toBe(`Slot/${slot}`);
  });

  it('when an appointment is edited directly on the FHIR server then the sweep re-plans it', async () => {
    const pid = await patient([{ system: 'email', value: `edit.${uniq()}@example.test` }]);
    const a = await book(await slotIn(600), pid);
    const startMs = Date.parse(a.start!);
    await until('the first plan', async () =>
      (await h.app.reminders.queue.queue.getJob(
        reminderJobId({ appointmentId: a.id!, offset: 'PT6S', startMs }),
      ))
        ? true
        : undefined,
    );
    const current = await h.fhir.read<Appointment>('Appointment', a.id!, { noCache: true });
    const newStart = startMs + 3600_000;
    await h.fhir.update({
      ...current,
      id: a.id!,
      start: new Date(newStart).toISOString(),
      end: new Date(newStart + 900_000).toISOString(),
    });
    const key = `${h.config.queuePrefix}:reminder-sweep:last`;
    await h.app.redis.producer.set(key, String(Date.now() - 60_000));
    const n = await sweep(h.fhir, h.app.redis.producer, key, (id) => h.app.reminders.enqueuePlan(id));
    expect(n).toBeGreaterThanOrEqual(1);
    await until('the re-plan', async () => {
      const planned = await h.app.reminders.queue.queue.getJob(
        reminderJobId({ appointmentId: a.id!, offset: 'PT6S', startMs: newStart }),
      );
      const old = await h.app.reminders.queue.queue.getJob(
        reminderJobId({ appointmentId: a.id!, offset: 'PT6S', startMs }),
      );
      return planned && !old ? true : undefined;
    });
  });

  it('when REMINDER_SWEEP_INTERVAL is set then the scheduled sweep re-plans direct edits by itself', async () => {
    // Its own instance and prefix, the sweep every 2 s; its last sweep set to now, so it looks only at what
    // changes from here on (not every appointment the other tests wrote today).
    const prefix = `sweep${uniq()}`;
    await h.app.redis.producer.set(`${prefix}:reminder-sweep:last`, String(Date.now()));
    const other = await startHarness({
      QUEUE_PREFIX: prefix,
      REMINDER_SWEEP_INTERVAL: 'PT2S',
      REMINDER_OFFSETS: 'PT1H',
      QUIET_HOURS: '00:00-00:00',
    });
    try {
      const pid = await patient([{ system: 'email', value: `sched.${uniq()}@example.test` }]);
      const startMs = Date.now() + 6 * 3600_000;
      // Written straight to HAPI: nothing in Careway hears of it but the sweep.
      const appt = await bookedOnFhir(h.fhir, pid, startMs, 15);
      const id = appt.id!;
      const job = (start: number) =>
        other.app.reminders.queue.queue.getJob(
          reminderJobId({ appointmentId: id, offset: 'PT1H', startMs: start }),
        );
      await until('the sweep plans it', async () => ((await job(startMs)) ? true : undefined), 30_000);
      const moved = startMs + 3600_000;
      await h.fhir.update({
        ...appt,
        id,
        start: new Date(moved).toISOString(),
        end: new Date(moved + 900_000).toISOString(),
      });
      await until(
        'the sweep moves it',
        async () => ((await job(moved)) && !(await job(startMs)) ? true : undefined),
        30_000,
      );
      // The scheduler is one BullMQ job scheduler, whatever the number of instances and restarts.
      expect((await other.app.reminders.sweep.queue.getJobSchedulers()).map((j) => j.key)).toEqual([
        'reminder-sweep',
      ]);
    } finally {
      await other.close();
    }
  });

  it('when the patient lives in another zone then quiet hours are theirs, across a daylight-saving change', async () => {
    // A second instance with the shipped defaults (quiet 21:00-08:00, P1D and PT2H) on the same HAPI and Redis.
    const other = await startHarness({
      REMINDER_OFFSETS: 'P1D,PT2H',
      QUIET_HOURS: '21:00-08:00',
      DEFAULT_TIMEZONE: 'UTC',
    });
    try {
      const pid = await patient([{ system: 'email', value: `tz.${uniq()}@example.test` }], {
        extension: [{ url: canonical.timezoneExtension, valueCode: 'Europe/Berlin' }],
      });
      // 28 March 2027 is the spring-forward day in Berlin (02:00 → 03:00); the appointment is at 07:30 local.
      const appt = await h.fhir.create<Appointment>({
        resourceType: 'Appointment',
        status: 'booked',
        start: '2027-03-28T07:30:00+02:00',
        end: '2027-03-28T08:00:00+02:00',
        participant: [{ actor: { reference: `Patient/${pid}` }, status: 'accepted' }],
      });
      const id = appt.resource.id!;
      await other.app.reminders.service.replan(id);
      const startMs = Date.parse('2027-03-28T07:30:00+02:00');
      const due = async (offset: string) =>
        (await other.app.reminders.queue.queue.getJob(reminderJobId({ appointmentId: id, offset, startMs })))
          ?.data.dueAt;
      // P1D: 24 h before is 06:30 winter time on the 27th, in quiet hours → their end, 08:00 local (07:00Z).
      expect(new Date((await due('P1D'))!).toISOString()).toBe('2027-03-27T07:00:00.000Z');
      // PT2H: 05:30 summer time on the 28th, quiet; 08:00 would be after the start → the minute before quiet
      // hours began, 20:59 winter time on the 27th (19:59Z).
      expect(new Date((await due('PT2H'))!).toISOString()).toBe('2027-03-27T19:59:00.000Z');
      // Cancelled: the plan is emptied.
      await h.fhir.update({ ...appt.resource, id, status: 'cancelled' });
      await other.app.reminders.service.replan(id);
      expect(await due('P1D')).toBeUndefined();
    } finally {
      await other.close();
    }
  });

  it('when a service type has its own offsets then its appointments are planned with them, others with the default', async () => {
    const other = await startHarness({
      REMINDER_OFFSETS: 'P1D',
      REMINDER_SERVICE_OFFSETS: 'CARDIO=P3D,PT4H http://snomed.info/sct|394579002=P5D',
      QUIET_HOURS: '00:00-00:00',
      DEFAULT_TIMEZONE: 'UTC',
    });
    try {
      const pid = await patient([{ system: 'email', value: `svc.${uniq()}@example.test` }]);
      const startMs = Date.now() + 10 * 86_400_000;
      const book = async (serviceType?: Appointment['serviceType']): Promise<string> =>
        (await bookedOnFhir(h.fhir, pid, startMs, 30, serviceType ? { serviceType } : {})).id!;
      const byCode = await book([{ coding: [{ system: 'urn:local:services', code: 'CARDIO' }] }]);
      const bySystemAndCode = await book([
        { coding: [{ system: 'http://snomed.info/sct', code: '394579002' }] },
      ]);
      const plain = await book();
      const planned = async (id: string): Promise<string[]> =>
        (await other.app.reminders.service.replan(id))
          .map((j) => j.replace(`rem-${id}-`, '').split('-')[0]!)
          .sort();
      expect(await planned(byCode)).toEqual(['P3D', 'PT4H']);
      expect(await planned(bySystemAndCode)).toEqual(['P5D']);
      expect(await planned(plain)).toEqual(['P1D']);
      // Staff see the same plan as CommunicationRequests.
      const requests = await h.fhir.searchAll<CommunicationRequest>(
        'CommunicationRequest',
        { 'based-on': `Appointment/${byCode}` },
        { noCache: true },
      );
      expect(requests.map((c) => c.identifier?.[0]?.value?.split('|')[1]).sort()).toEqual(['P3D', 'PT4H']);
    } finally {
      await other.close();
    }
  });

  it('when reminders are planned and sent then no PHI is in job data or logs', async () => {
    const all = await h.app.reminders.queue.queue.getJobs(
      ['completed', 'delayed', 'waiting', 'failed'],
      0,
      500,
    );
    expect(all.length).toBeGreaterThan(0);
    for (const j of all) {
      const data = JSON.stringify(j.data);
      expect(data).not.toContain(CANARY);
      expect(data).not.toMatch(/\+49|@example/);
    }
    // Write-backs wait in Redis with the message text (the first name): sealed, never in clear.
    const writeBacks = await h.app.reminders.writeBacks.queue.getJobs(
      ['completed', 'waiting', 'failed'],
      0,
      500,
    );
    expect(writeBacks.length).toBeGreaterThan(0);
    for (const j of writeBacks) {
      expect(Object.keys(j.data).sort()).toEqual(['communication', 'key', 'status']);
      // The sealed Communication is base64 ciphertext, which may spell "+49" by chance (about one run in 200):
      // check it is ciphertext only, and look for PHI in everything else.
      expect(Object.keys(j.data.communication).sort()).toEqual(['data', 'iv', 'tag']);
      expect(j.data.communication.data).toMatch(/^[A-Za-z0-9+/]+=*$/);
      const data = JSON.stringify({ ...j.data, communication: { ...j.data.communication, data: '' } });
      expect(data).not.toMatch(/contentString|\+49|@example/);
      expect(JSON.stringify(j.data)).not.toContain(CANARY);
      const opened = unseal(j.data.communication, h.app.config.hl7.encryptionKey).toString('utf8');
      expect(JSON.parse(opened)).toMatchObject({ resourceType: 'Communication' });
    }
    const sealedText = writeBacks
      .map((j) => unseal(j.data.communication, h.app.config.hl7.encryptionKey).toString('utf8'))
      .join('\n');
    expect(sealedText).toContain('Ada');
    const logs = h.rawLogs.join('\n');
    expect(logs).not.toContain(CANARY);
    expect(logs).not.toMatch(/\+491[5-7]\d{6}/);
  });
});
