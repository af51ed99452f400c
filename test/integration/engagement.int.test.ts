/**
 * Engagement end to end (real HAPI, Redis, an HTTP SMS provider on loopback): secure messaging threads with
 * notifications that carry no content, the survey after a fulfilled visit and its score in the timeline, a
 * recurring check-up from a CarePlan's timing that stops with the plan, education on stage entry sent once,
 * and the queue dashboard and dead letters behind staff auth.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Appointment,
  CarePlan,
  Communication,
  EpisodeOfCare,
  OperationOutcome,
  Patient,
  Practitioner,
  QuestionnaireResponse,
  Subscription,
} from 'fhir/r4.js';
import { bookedOnFhir, startHarness, uniq, type Harness, until } from '../support/harness.js';
import { smsSink } from '../support/sinks.js';
import { canonical } from '../../src/fhir/canonical.js';
import { freePort } from '../../src/devstack/processes.js';
import { seal } from '../../src/shared/seal.js';
import { randomBytes } from 'node:crypto';

const SECRET = 'engagement-secret-0123456789';
let h: Harness;
let sms: Awaited<ReturnType<typeof smsSink>>;
let staff: string;

beforeAll(async () => {
  sms = await smsSink();
  h = await startHarness({
    SMS_WEBHOOK_URL: sms.url,
    SMS_WEBHOOK_SECRET: SECRET,
    SURVEY_DELAY: 'PT1S',
    PORTAL_URL: 'https://portal.example.test',
    QUIET_HOURS: '00:00-00:00',
  });
  staff = await h.token({ scope: 'user/*.cruds', sub: 'nurse-1' });
});
afterAll(async () => {
  await h.close();
  await sms.close();
});

const phone = () => `+4917${String(Date.now()).slice(-8)}${Math.floor(Math.random() * 10)}`;
async function patient(): Promise<{ id: string; phone: string }> {
  const p = phone();
  const r = await h.fhir.create<Patient>({
    resourceType: 'Patient',
    identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
    name: [{ given: ['Grace'], family: 'Hopper' }],
    telecom: [{ system: 'phone', use: 'mobile', value: p }],
  });
  return { id: r.resource.id!, phone: p };
}
async function post(url: string, body: unknown, token = staff) {
  return h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
    payload: JSON.stringify(body),
  });
}
const textsTo = (to: string) => sms.requests.filter((r) => r.json.to === to);

describe('secure messaging', () => {
  it('when a patient writes to the care team and staff answer then the thread holds, and each recipient is notified without the content', async () => {
    const p = await patient();
    const dr = (
      await h.fhir.create<Practitioner>({
        resourceType: 'Practitioner',
        telecom: [{ system: 'sms', value: phone() }],
      })
    ).resource;
    const drPhone = dr.telecom![0]!.value!;
    const patientToken = await h.token({ scope: 'patient/Communication.crs', patient: p.id });
    const first = await post(
      '/fhir/Communication',
      {
        resourceType: 'Communication',
        identifier: [{ system: 'urn:portal:msg', value: uniq() }],
        subject: { reference: `Patient/${p.id}` },
        recipient: [{ reference: `Practitioner/${dr.id}` }],
        payload: [{ contentString: 'My knee still hurts after the exercises.' }],
      },
      patientToken,
    );
    expect(first.statusCode, first.body).toBe(201);
    const m1 = first.json<Communication>();
    expect(m1.sender?.reference).toBe(`Patient/${p.id}`);
    const note = await until('the practitioner notification', () => textsTo(drPhone)[0]);
    expect(note.json.text).not.toMatch(/knee/);
    expect(note.json.text).toMatch(/new message/);

    const answerBody = {
      resourceType: 'Communication',
      identifier: [{ system: 'urn:portal:msg', value: uniq() }],
      subject: { reference: `Patient/${p.id}` },
      recipient: [{ reference: `Patient/${p.id}` }],
      inResponseTo: [{ reference: `Communication/${m1.id}` }],
      payload: [{ contentString: 'Please rest it for a week and call us if it gets worse.' }],
    };
    const answer = await post('/fhir/Communication', answerBody);
    expect(answer.statusCode, answer.body).toBe(201);
    const again = await post('/fhir/Communication', answerBody);
    expect(again.statusCode).toBe(200);
    expect(again.json<Communication>().id).toBe(answer.json<Communication>().id);
    const patientNote = await until('the patient notification', () => textsTo(p.phone)[0]);
    expect(patientNote.json.text).not.toMatch(/rest it/);

    // The patient reads the thread; another patient cannot, and cannot post into it.
    const thread = await h.app.inject({
      method: 'GET',
      url: `/fhir/Communication?subject=Patient/${p.id}`,
      headers: { authorization: `Bearer ${patientToken}` },
    });
    expect(thread.statusCode).toBe(200);
    const other = await patient();
    const otherToken = await h.token({ scope: 'patient/Communication.crs', patient: other.id });
    const peek = await h.app.inject({
      method: 'GET',
      url: `/fhir/Communication/${m1.id}`,
      headers: { authorization: `Bearer ${otherToken}` },
    });
    expect(peek.statusCode).toBe(403);
    const intrude = await post(
      '/fhir/Communication',
      {
        ...answerBody,
        identifier: [{ system: 'urn:portal:msg', value: uniq() }],
        subject: { reference: `Patient/${other.id}` },
        recipient: [{ reference: `Practitioner/${dr.id}` }],
      },
      otherToken,
    );
    expect(intrude.statusCode).toBe(422);
    const noId = await post('/fhir/Communication', { ...answerBody, identifier: undefined });
    expect(noId.statusCode).toBe(400);
    expect(noId.json<OperationOutcome>().issue[0]!.diagnostics).toMatch(/identifier/);
  });
});

describe('survey and timeline', () => {
  it('when a visit is fulfilled then the survey link goes out, and the answer is linked to the journey with its score', async () => {
    const p = await patient();
    const start = await post('/fhir/EpisodeOfCare/$start-journey', {
      resourceType: 'Parameters',
      parameter: [
        { name: 'patient', valueReference: { reference: `Patient/${p.id}` } },
        { name: 'identifier', valueIdentifier: { system: 'urn:careway:test:journey', value: uniq() } },
      ],
    });
    const journey = start.json<EpisodeOfCare>();
    const visit = await h.fhir.create<Appointment>({
      resourceType: 'Appointment',
      status: 'fulfilled',
      start: new Date(Date.now() - 3600_000).toISOString(),
      end: new Date(Date.now() - 1800_000).toISOString(),
      participant: [{ actor: { reference: `Patient/${p.id}` }, status: 'accepted' }],
    });
    await h.app.reminders.enqueuePlan(visit.resource.id!);
    const survey = await until('the survey SMS', () =>
      textsTo(p.phone).find((t) => t.json.text.includes('survey')),
    );
    expect(survey.json.text).toContain(
      `https://portal.example.test/survey/patient-experience?appointment=${visit.resource.id}`,
    );

    const token = await h.token({ scope: 'patient/QuestionnaireResponse.c', patient: p.id });
    const answer = {
      resourceType: 'QuestionnaireResponse',
      identifier: { system: 'urn:portal:survey', value: uniq() },
      questionnaire: `${canonical.journeyStageCodeSystem.replace('/CodeSystem/journey-stage', '')}/Questionnaire/patient-experience|0.1.0`,
      status: 'completed',
      subject: { reference: `Patient/${p.id}` },
      item: [
        { linkId: 'overall', answer: [{ valueInteger: 4 }] },
        { linkId: 'recommend', answer: [{ valueBoolean: true }] },
      ],
    };
    const res = await post('/fhir/QuestionnaireResponse', answer, token);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json<QuestionnaireResponse>().extension?.[0]?.valueReference?.reference).toBe(
      `EpisodeOfCare/${journey.id}`,
    );
    expect((await post('/fhir/QuestionnaireResponse', answer, token)).statusCode).toBe(200);
    const bad = await post(
      '/fhir/QuestionnaireResponse',
      {
        ...answer,
        identifier: { system: 'urn:portal:survey', value: uniq() },
        item: [{ linkId: 'overall', answer: [{ valueInteger: 9 }] }],
      },
      token,
    );
    expect(bad.statusCode).toBe(400);
    const offScale = await post(
      '/fhir/QuestionnaireResponse',
      {
        ...answer,
        identifier: { system: 'urn:portal:survey', value: uniq() },
        item: [
          { linkId: 'overall', answer: [{ valueInteger: 4 }] },
          { linkId: 'recommend-score', answer: [{ valueInteger: 11 }] },
        ],
      },
      token,
    );
    expect(offScale.statusCode).toBe(400);
    expect(offScale.body).toContain('recommend-score');
    const timeline = await h.app.inject({
      method: 'GET',
      url: `/journeys/${journey.id}/timeline`,
      headers: { authorization: `Bearer ${staff}` },
    });
    const points = timeline.json<{ touchpoints: { kind: string; summary: string }[] }>().touchpoints;
    expect(points.find((t) => t.kind === 'questionnaire-response')?.summary).toBe(
      'Questionnaire answered (score 4/5)',
    );
  });
});

describe('continuous care and education', () => {
  it('when a CarePlan activity repeats then check-ups recur until the plan ends', async () => {
    const p = await patient();
    const plan = await h.fhir.create<CarePlan>({
      resourceType: 'CarePlan',
      status: 'active',
      intent: 'plan',
      subject: { reference: `Patient/${p.id}` },
      activity: [
        {
          detail: {
            status: 'scheduled',
            description: 'check-up',
            scheduledTiming: { repeat: { frequency: 1, period: 2, periodUnit: 's' } },
          },
        },
      ],
    });
    await h.app.reminders.service.syncCarePlan(plan.resource.id!);
    await until('two check-ups', () =>
      textsTo(p.phone).filter((t) => t.json.text.includes('check-up')).length >= 2 ? true : undefined,
    );
    await h.fhir.update({
      ...(plan.resource as object),
      id: plan.resource.id!,
      resourceType: 'CarePlan',
      status: 'completed',
    } as never);
    await h.app.reminders.service.syncCarePlan(plan.resource.id!);
    const count = textsTo(p.phone).length;
    await new Promise((r) => setTimeout(r, 4500));
    expect(textsTo(p.phone).length).toBeLessThanOrEqual(count + 1); // at most one run already in flight
    expect(
      await h.app.reminders.queue.queue.getJobScheduler(`checkup-${plan.resource.id}-0`),
    ).toBeUndefined();
  });

  it('when a journey enters a stage then the education for that stage goes out once', async () => {
    const p = await patient();
    const docCode = uniq();
    await h.fhir.create({
      resourceType: 'DocumentReference',
      status: 'current',
      type: { text: docCode },
      category: [{ coding: [{ system: canonical.journeyStageCodeSystem, code: 'care' }] }],
      content: [
        { attachment: { url: 'https://hospital.example/education/knee.pdf', title: 'Your knee operation' } },
      ],
    });
    const start = await post('/fhir/EpisodeOfCare/$start-journey', {
      resourceType: 'Parameters',
      parameter: [
        { name: 'patient', valueReference: { reference: `Patient/${p.id}` } },
        { name: 'identifier', valueIdentifier: { system: 'urn:careway:test:journey', value: uniq() } },
      ],
    });
    const j = start.json<EpisodeOfCare>();
    const advance = (stage: string, reason?: string) =>
      post(`/fhir/EpisodeOfCare/${j.id}/$advance-stage`, {
        resourceType: 'Parameters',
        parameter: [
          { name: 'stage', valueCode: stage },
          ...(reason ? [{ name: 'reason', valueString: reason }] : []),
        ],
      });
    expect((await advance('care')).statusCode).toBe(200);
    await until('the education SMS', () =>
      textsTo(p.phone).find((t) => t.json.text.includes('portal.example.test/DocumentReference/')),
    );
    expect((await advance('access', 'booked the wrong stage')).statusCode).toBe(200);
    expect((await advance('care')).statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, 1500));
    const education = textsTo(p.phone).filter((t) => t.json.text.includes('/DocumentReference/'));
    // Every document for the stage once, however often the journey enters it.
    expect(new Set(education.map((t) => t.json.text)).size).toBe(education.length);
  });
});

describe('operations', () => {
  it('when the queue dashboard or the dead letters are asked for then staff see them and others do not', async () => {
    expect((await h.app.inject({ method: 'GET', url: '/admin/queues' })).statusCode).toBe(401);
    const patientToken = await h.token({ scope: 'patient/*.rs', patient: 'x' });
    expect(
      (
        await h.app.inject({
          method: 'GET',
          url: '/admin/queues/api/queues',
          headers: { authorization: `Bearer ${patientToken}` },
        })
      ).statusCode,
    ).toBe(403);
    const board = await h.app.inject({
      method: 'GET',
      url: '/admin/queues/api/queues',
      headers: { authorization: `Bearer ${staff}` },
    });
    expect(board.statusCode).toBe(200);
    // Every queue of the registry, dead-letter queues and HL7 partitions included.
    const shown = board.json<{ queues: { name: string }[] }>().queues.map((q) => q.name);
    expect(shown.sort()).toEqual(
      h.app.areas.queues
        .bullQueues()
        .map((q) => q.name)
        .sort(),
    );
    expect(shown).toEqual(
      expect.arrayContaining(['hl7-dead', 'referral-status', 'slot-holds-dead', 'reminder-sweep']),
    );
    const dead = await h.app.inject({
      method: 'GET',
      url: '/engagement/dead-letters',
      headers: { authorization: `Bearer ${staff}` },
    });
    expect(dead.statusCode).toBe(200);
    expect(dead.json()).toHaveProperty('deadLetters');
  });

  it('when a write-back was sealed under another key then it is dead-lettered at once, listed with ids only', async () => {
    const key = `dead-${uniq()}|PT1H|0`;
    await h.app.reminders.writeBacks.queue.add('write-back', {
      key,
      status: 'completed',
      communication: seal(Buffer.from('{"resourceType":"Communication"}'), randomBytes(32)),
    });
    const listed = await until('the dead letter', async () => {
      const res = await h.app.inject({
        method: 'GET',
        url: '/engagement/dead-letters',
        headers: { authorization: `Bearer ${staff}` },
      });
      const rows = res.json<{ deadLetters: { queue: string; data: Record<string, unknown> }[] }>()
        .deadLetters;
      return rows.find((r) => r.data['key'] === key);
    });
    expect(listed.queue).toBe('reminder-writebacks-dead');
    expect(listed.data).toMatchObject({ key, status: 'completed', attempts: 1 });
    expect(String(listed.data['reason'])).toContain('could not be unsealed');
    expect(listed.data).not.toHaveProperty('communication');
  });
});

describe('direct edits on the FHIR server', () => {
  it(
    'when an Appointment is written straight to HAPI then its REST-hook subscription re-plans the reminders',
    { timeout: 120_000 },
    async () => {
      const port = await freePort();
      const secret = 'hook-secret-0123456789abcdef';
      const hooked = await startHarness({
        PORT: String(port),
        PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
        FHIR_WEBHOOK_SECRET: secret,
        // Its own queues: the other instance in this file plans with other offsets.
        QUEUE_PREFIX: `hook${uniq()}`,
        REMINDER_OFFSETS: 'PT1H',
        QUIET_HOURS: '00:00-00:00',
      });
      try {
        await hooked.app.listen({ port, host: '127.0.0.1' });
        const subs = await hooked.fhir.searchAll<Subscription>(
          'Subscription',
          { url: `http://127.0.0.1:${port}/engagement/fhir-hook` },
          { noCache: true },
        );
        // One per watched type, same endpoint and secret (the CarePlan and Encounter ones feed journey events).
        expect(subs.map((s) => s.criteria).sort()).toEqual(['Appointment?', 'CarePlan?', 'Encounter?']);
        // HAPI activates a new subscription asynchronously (about a second); edits before that reach the sweep
        // only. (Waiting for all three also keeps the clean-up below sound: HAPI's activation would bring back
        // one deleted before it.)
        await until('the subscriptions to be active', async () => {
          const now = await Promise.all(
            subs.map((s) => hooked.fhir.read<Subscription>('Subscription', s.id!, { noCache: true })),
          );
          return now.every((s) => s.status === 'active') ? true : undefined;
        });
        const unauthorised = await hooked.app.inject({
          method: 'PUT',
          url: '/engagement/fhir-hook/Appointment/1',
          headers: { 'content-type': 'application/fhir+json' },
          payload: '{"resourceType":"Appointment","id":"1"}',
        });
        expect(unauthorised.statusCode).toBe(401);
        const p = await patient();
        const startMs = Date.now() + 3 * 3600_000;
        const a = await bookedOnFhir(hooked.fhir, p.id, startMs, 30);
        const jobId = `rem-${a.id}-PT1H-${Date.parse(a.start!)}`;
        await until(
          'the hook to plan the reminder',
          async () => ((await hooked.app.reminders.queue.queue.getJob(jobId)) ? true : undefined),
          20_000,
        );
      } finally {
        // A subscription left behind would keep HAPI delivering to a closed port on a shared server.
        const left = await hooked.fhir.searchAll<Subscription>(
          'Subscription',
          { url: `http://127.0.0.1:${port}/engagement/fhir-hook` },
          { noCache: true },
        );
        for (const sub of left) await hooked.fhir.request('DELETE', `Subscription/${sub.id}`);
        await hooked.close();
      }
    },
  );
});
