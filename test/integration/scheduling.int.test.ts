/**
 * Scheduling end to end through the app against the real HAPI and Redis: idempotent slot generation,
 * ranked $find, holds that expire, 50 concurrent bookings of one Slot, multi-actor all-or-nothing,
 * reschedule and cancel, waitlist offers that expire and move on and book when accepted, no-shows, and
 * bad input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Appointment,
  Bundle,
  Communication,
  Encounter,
  Location,
  OperationOutcome,
  Parameters,
  Patient,
  Practitioner,
  Schedule,
  Slot,
  Task,
} from 'fhir/r4.js';
import { startHarness, uniq, type Harness, until } from '../support/harness.js';
import { canonical } from '../../src/fhir/canonical.js';

let h: Harness;
let staff: string;
const run = uniq();
const SYSTEM = 'urn:careway:test:service';
const service = (code: string) => ({ coding: [{ system: SYSTEM, code: `${code}-${run}` }] });

function params(...p: NonNullable<Parameters['parameter']>): Parameters {
  return { resourceType: 'Parameters', parameter: p };
}
async function post(url: string, body: unknown, token = staff) {
  return h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
const outcome = (res: { json(): unknown }) => res.json() as OperationOutcome;

/** A Monday at least a week ahead (UTC date), and days after it. */
function monday(): Date {
  const d = new Date();
  d.setUTCHours(0, 0, 0, 0);
  d.setUTCDate(d.getUTCDate() + 7 + ((8 - d.getUTCDay()) % 7));
  return d;
}
const dateOf = (base: Date, plusDays: number): string =>
  new Date(base.getTime() + plusDays * 86400_000).toISOString().slice(0, 10);

async function patient(extra: Partial<Patient> = {}): Promise<string> {
  const p = await h.fhir.create<Patient>({
    resourceType: 'Patient',
    identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
    ...extra,
  });
  return p.resource.id!;
}
async function practitioner(languages: string[] = []): Promise<string> {
  const p = await h.fhir.create<Practitioner>({
    resourceType: 'Practitioner',
    ...(languages.length
      ? { communication: languages.map((l) => ({ coding: [{ system: 'urn:ietf:bcp:47', code: l }] })) }
      : {}),
  });
  return p.resource.id!;
}
async function schedule(actors: string[], code: string): Promise<string> {
  const s = await h.fhir.create<Schedule>({
    resourceType: 'Schedule',
    active: true,
    extension: [{ url: canonical.timezoneExtension, valueCode: 'Europe/Berlin' }],
    serviceType: [service(code)],
    actor: actors.map((reference) => ({ reference })),
  });
  return s.resource.id!;
}
function window(days: string[], start: string, end: string) {
  return {
    name: 'availableTime',
    part: [
      ...days.map((d) => ({ name: 'daysOfWeek', valueCode: d })),
      { name: 'availableStartTime', valueTime: `${start}:00` },
      { name: 'availableEndTime', valueTime: `${end}:00` },
    ],
  };
}
async function generate(
  scheduleId: string,
  from: string,
  to: string,
  ...rest: NonNullable<Parameters['parameter']>
) {
  return post(
    `/fhir/Schedule/${scheduleId}/$generate-slots`,
    params(
      { name: 'start', valueDate: from },
      { name: 'end', valueDate: to },
      { name: 'slot-minutes', valuePositiveInt: 30 },
      ...rest,
    ),
  );
}
async function slotsOf(scheduleId: string): Promise<Slot[]> {
  return h.fhir.searchAll<Slot>(
    'Slot',
    { schedule: `Schedule/${scheduleId}`, _count: 200, _sort: 'start' },
    { noCache: true },
  );
}
async function readSlot(id: string): Promise<Slot> {
  return h.fhir.read<Slot>('Slot', id, { noCache: true });
}
function book(
  slotIds: string[],
  patientId: string,
  extra: NonNullable<Parameters['parameter']> = [],
  token = staff,
) {
  return post(
    '/fhir/Appointment/$book',
    params(
      ...slotIds.map((id) => ({ name: 'slot', valueReference: { reference: `Slot/${id}` } })),
      { name: 'patient', valueReference: { reference: `Patient/${patientId}` } },
      ...extra,
    ),
    token,
  );
}

const mon = monday();
/** Schedule A's template: mornings Mon-Fri, a break at 10:30, and a holiday on Wednesday. */
const generateA = () =>
  generate(
    schedA,
    dateOf(mon, 0),
    dateOf(mon, 4),
    window(['mon', 'tue', 'wed', 'thu', 'fri'], '09:00', '12:00'),
    {
      name: 'break',
      part: [
        { name: 'availableStartTime', valueTime: '10:30:00' },
        { name: 'availableEndTime', valueTime: '11:00:00' },
      ],
    },
    { name: 'holiday', valueDate: dateOf(mon, 2) },
  );
let drA: string;
let drB: string;
let room: string;
let schedA: string;
let schedB: string;
let schedRoom: string;

beforeAll(async () => {
  h = await startHarness({ SLOT_HOLD_TTL: 'PT2S', WAITLIST_OFFER_TTL: 'PT3S' });
  staff = await h.token({ scope: 'user/*.cruds', sub: 'scheduler-1' });
  drA = await practitioner(['de']);
  drB = await practitioner(['en']);
  room = (await h.fhir.create<Location>({ resourceType: 'Location', name: 'Room 1', status: 'active' }))
    .resource.id!;
  schedA = await schedule([`Practitioner/${drA}`], 'cardio');
  schedB = await schedule([`Practitioner/${drB}`], 'cardio');
  schedRoom = await schedule([`Location/${room}`], 'room');
  // A: mornings Mon-Fri with a break and a holiday on Wednesday; B: Tuesday and Thursday afternoons.
  const a = await generateA();
  expect(a.statusCode, a.body).toBe(201);
  const b = await generate(schedB, dateOf(mon, 0), dateOf(mon, 4), window(['tue', 'thu'], '13:00', '15:00'));
  expect(b.statusCode, b.body).toBe(201);
  const r = await generate(schedRoom, dateOf(mon, 0), dateOf(mon, 4), window([], '09:00', '12:00'));
  expect(r.statusCode, r.body).toBe(201);
});
afterAll(async () => {
  await h.close();
});

describe('slot generation', () => {
  it('when the template is generated twice then the slots exist once, in the schedule zone, without the break or the holiday', async () => {
    const slots = await slotsOf(schedA);
    // 4 days (Wednesday is a holiday) × 09:00, 09:30, 10:00, 11:00, 11:30.
    expect(slots).toHaveLength(20);
    expect(slots[0]!.start).toBe(
      `${dateOf(mon, 0)}T09:00:00+01:00`.replace('+01:00', slots[0]!.start.slice(19)),
    );
    expect(slots.map((s) => s.start.slice(11, 16))).not.toContain('10:30');
    expect(slots.some((s) => s.start.startsWith(dateOf(mon, 2)))).toBe(false);
    expect(new Set(slots.map((s) => s.identifier?.[0]?.value)).size).toBe(20);

    const again = await generateA();
    expect(again.statusCode).toBe(200);
    expect(again.json<Parameters>().parameter).toEqual([
      { name: 'created', valueInteger: 0 },
      { name: 'existing', valueInteger: 20 },
    ]);
    expect(await slotsOf(schedA)).toHaveLength(20);
  });

  it('when the template is bad then 400 names each problem, and an unknown schedule is 404', async () => {
    const bad = await generate(schedA, dateOf(mon, 4), dateOf(mon, 0), window(['funday'], '12:00', '09:00'));
    expect(bad.statusCode).toBe(400);
    expect(outcome(bad).issue[0]!.diagnostics).toMatch(/funday/);
    const worse = await generate(schedA, dateOf(mon, 4), dateOf(mon, 0), window(['mon'], '12:00', '09:00'));
    expect(worse.statusCode).toBe(400);
    expect(outcome(worse).issue[0]!.diagnostics).toMatch(/end must be after start/);
    expect(outcome(worse).issue[0]!.diagnostics).toMatch(/end must not be before start/);
    const missing = await generate(
      'does-not-exist',
      dateOf(mon, 0),
      dateOf(mon, 1),
      window([], '09:00', '10:00'),
    );
    expect(missing.statusCode).toBe(404);
    const malformed = await post(`/fhir/Schedule/${schedA}/$generate-slots`, { resourceType: 'Patient' });
    expect(malformed.statusCode).toBe(400);
    expect(outcome(malformed).resourceType).toBe('OperationOutcome');
    const patientToken = await h.token({ scope: 'patient/*.cruds', patient: 'x' });
    expect((await post(`/fhir/Schedule/${schedA}/$generate-slots`, params(), patientToken)).statusCode).toBe(
      403,
    );
  });
});

describe('$find', () => {
  const find = (...p: NonNullable<Parameters['parameter']>) =>
    post(
      '/fhir/Appointment/$find',
      params({ name: 'service-type', valueCodeableConcept: service('cardio') }, ...p),
    );

  it('when the patient prefers Tuesday afternoons then those come first, each with its score and reasons', async () => {
    const pid = await patient();
    const prefs = await post(
      `/fhir/Patient/${pid}/$set-preferences`,
      params({ name: 'weekday', valueCode: 'tue' }, { name: 'timeOfDay', valueCode: 'afternoon' }),
    );
    expect(prefs.statusCode, prefs.body).toBe(200);
    const res = await find(
      { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
      { name: 'start', valueDateTime: `${dateOf(mon, 0)}T00:00:00Z` },
      { name: 'end', valueDateTime: `${dateOf(mon, 5)}T00:00:00Z` },
      { name: '_count', valuePositiveInt: 50 },
    );
    expect(res.statusCode, res.body).toBe(200);
    const bundle = res.json<Bundle>();
    const proposals = bundle.entry!.filter((e) => e.resource?.resourceType === 'Appointment');
    expect(proposals.length).toBe(28); // A's 20 plus B's 8 Tuesday and Thursday afternoon slots
    const scores = proposals.map((e) => e.search!.score!);
    expect([...scores].sort((x, y) => y - x)).toEqual(scores);
    const top = proposals[0]!.resource as Appointment;
    expect(top.status).toBe('proposed');
    expect(top.start?.startsWith(dateOf(mon, 1))).toBe(true);
    expect(top.participant.map((p) => p.actor?.reference)).toContain(`Practitioner/${drB}`);
    expect(top.comment).toMatch(/preferred weekday \(tue\); preferred time of day \(afternoon\)/);
    expect(top.extension?.find((x) => x.url === canonical.appointmentScoreExtension)?.valueDecimal).toBe(
      scores[0],
    );
  });

  it('when the patient saw a practitioner before then continuity ranks that practitioner first', async () => {
    const pid = await patient();
    await h.fhir.create<Appointment>({
      resourceType: 'Appointment',
      status: 'fulfilled',
      start: new Date(Date.now() - 30 * 86400_000).toISOString(),
      end: new Date(Date.now() - 30 * 86400_000 + 1800_000).toISOString(),
      participant: [
        { actor: { reference: `Patient/${pid}` }, status: 'accepted' },
        { actor: { reference: `Practitioner/${drB}` }, status: 'accepted' },
      ],
    });
    const res = await find(
      { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
      { name: 'start', valueDateTime: `${dateOf(mon, 0)}T00:00:00Z` },
      { name: 'end', valueDateTime: `${dateOf(mon, 5)}T00:00:00Z` },
    );
    const top = res.json<Bundle>().entry![0]!.resource as Appointment;
    expect(top.participant.map((p) => p.actor?.reference)).toContain(`Practitioner/${drB}`);
    expect(top.comment).toMatch(/same practitioner as an earlier visit/);
  });

  it('when the patient has an active allergy then it comes back as a Flag alongside', async () => {
    const pid = await patient();
    await h.fhir.create({
      resourceType: 'AllergyIntolerance',
      patient: { reference: `Patient/${pid}` },
      code: { text: 'Latex' },
      clinicalStatus: {
        coding: [
          { system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' },
        ],
      },
    });
    const res = await find(
      { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
      { name: 'end', valueDateTime: `${dateOf(mon, 5)}T00:00:00Z` },
    );
    const flags = res.json<Bundle>().entry!.filter((e) => e.resource?.resourceType === 'Flag');
    expect(flags).toHaveLength(1);
    expect(flags[0]!.search?.mode).toBe('include');
  });

  it('when the service is unknown, the window is past, or the Parameters are malformed then 4xx OperationOutcome', async () => {
    const unknown = await post(
      '/fhir/Appointment/$find',
      params({ name: 'service-type', valueCodeableConcept: service('nothing') }),
    );
    expect(unknown.statusCode).toBe(422);
    expect(outcome(unknown).issue[0]!.details?.coding?.[0]?.code).toBe('unknown-service');
    const past = await find(
      { name: 'start', valueDateTime: '2020-01-01T00:00:00Z' },
      { name: 'end', valueDateTime: '2020-01-02T00:00:00Z' },
    );
    expect(past.statusCode).toBe(400);
    expect(outcome(past).issue[0]!.diagnostics).toMatch(/window is in the past/);
    const noService = await post('/fhir/Appointment/$find', params());
    expect(noService.statusCode).toBe(400);
    const malformed = await post(
      '/fhir/Appointment/$find',
      '{"resourceType":"Parameters","parameter":[{"name":"start","valueString":"soon"}]}',
    );
    expect(malformed.statusCode).toBe(400);
    expect(outcome(malformed).issue[0]!.diagnostics).toMatch(/valueDateTime/);
  });
});

describe('$hold and $book', () => {
  it('when a hold is not confirmed then it expires and its Slots (practitioner and room) are free again', async () => {
    const pid = await patient();
    const slot = (await slotsOf(schedA))[19]!;
    const room = (await slotsOf(schedRoom)).find((s) => s.start === slot.start)!;
    const res = await post(
      '/fhir/Appointment/$hold',
      params(
        { name: 'slot', valueReference: { reference: `Slot/${slot.id}` } },
        { name: 'slot', valueReference: { reference: `Slot/${room.id}` } },
        { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
      ),
    );
    expect(res.statusCode, res.body).toBe(201);
    expect((await readSlot(slot.id!)).status).toBe('busy-tentative');
    expect((await readSlot(room.id!)).status).toBe('busy-tentative');
    const other = await patient();
    const taken = await book([slot.id!], other);
    expect(taken.statusCode).toBe(409);
    expect(outcome(taken).issue[0]!.details?.coding?.[0]?.code).toBe('slot-held');
    await until('the hold to expire', async () =>
      (await readSlot(slot.id!)).status === 'free' && (await readSlot(room.id!)).status === 'free'
        ? true
        : undefined,
    );
    expect((await readSlot(slot.id!)).extension).toBeUndefined();
    expect((await readSlot(room.id!)).extension).toBeUndefined();
  });

  it('when 50 patients book one Slot at once then exactly one Appointment is booked', async () => {
    const slot = (await slotsOf(schedA))[18]!;
    const created = await h.fhir.transaction({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: Array.from({ length: 50 }, () => ({
        resource: {
          resourceType: 'Patient',
          identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
        } satisfies Patient,
        request: { method: 'POST' as const, url: 'Patient' },
      })),
    });
    const ids = created.entry!.map((e) => /Patient\/([^/]+)/.exec(e.response!.location!)![1]!);
    const results = await Promise.all(ids.map((id) => book([slot.id!], id)));
    const codes = results.map((r) => r.statusCode).sort();
    expect(codes.filter((c) => c === 201)).toHaveLength(1);
    expect(codes.filter((c) => c === 409)).toHaveLength(49);
    const appointments = await h.fhir.searchAll<Appointment>(
      'Appointment',
      { slot: `Slot/${slot.id}` },
      { noCache: true },
    );
    expect(appointments).toHaveLength(1);
    expect(appointments[0]!.status).toBe('booked');
    expect((await readSlot(slot.id!)).status).toBe('busy');
  });

  it('when the same booking is replayed then the same Appointment comes back and nothing new is written', async () => {
    const pid = await patient();
    const slot = (await slotsOf(schedA))[17]!;
    const first = await book([slot.id!], pid);
    expect(first.statusCode, first.body).toBe(201);
    const again = await book([slot.id!], pid);
    expect(again.statusCode).toBe(200);
    expect(again.json<Appointment>().id).toBe(first.json<Appointment>().id);
    expect(again.json<Appointment>().meta?.versionId).toBe('1');
  });

  it('when a practitioner and a room are booked together then it is all or nothing', async () => {
    const pid = await patient();
    const drSlot = (await slotsOf(schedA))[10]!;
    const roomSlot = (await slotsOf(schedRoom)).find((s) => s.start === drSlot.start)!;
    expect(roomSlot).toBeDefined();
    // Someone else takes the room first: the pair fails, and the practitioner's Slot stays free.
    const other = await patient();
    expect((await book([roomSlot.id!], other)).statusCode).toBe(201);
    const res = await book([drSlot.id!, roomSlot.id!], pid);
    expect(res.statusCode).toBe(409);
    expect((await readSlot(drSlot.id!)).status).toBe('free');
    expect((await readSlot(drSlot.id!)).meta?.versionId).toBe(drSlot.meta?.versionId);
    // With both free, both are taken by one Appointment with both actors.
    const drSlot2 = (await slotsOf(schedA))[11]!;
    const roomSlot2 = (await slotsOf(schedRoom)).find((s) => s.start === drSlot2.start)!;
    const ok = await book([drSlot2.id!, roomSlot2.id!], pid);
    expect(ok.statusCode, ok.body).toBe(201);
    const a = ok.json<Appointment>();
    expect(a.participant.map((p) => p.actor?.reference).sort()).toEqual(
      [`Location/${room}`, `Patient/${pid}`, `Practitioner/${drA}`].sort(),
    );
    expect((await readSlot(drSlot2.id!)).status).toBe('busy');
    expect((await readSlot(roomSlot2.id!)).status).toBe('busy');
  });

  it('when an appointment is rescheduled then the old one is cancelled and its Slot freed; a cancel frees its Slot', async () => {
    const pid = await patient();
    const [s1, s2] = (await slotsOf(schedA)).slice(5, 7);
    const first = (await book([s1!.id!], pid)).json<Appointment>();
    const moved = await book([s2!.id!], pid, [
      { name: 'replaces', valueReference: { reference: `Appointment/${first.id}` } },
    ]);
    expect(moved.statusCode, moved.body).toBe(201);
    const m = moved.json<Appointment>();
    expect(
      m.extension?.find((x) => x.url === canonical.appointmentReplacesExtension)?.valueReference?.reference,
    ).toBe(`Appointment/${first.id}`);
    expect((await h.fhir.read<Appointment>('Appointment', first.id!, { noCache: true })).status).toBe(
      'cancelled',
    );
    expect((await readSlot(s1!.id!)).status).toBe('free');
    expect((await readSlot(s2!.id!)).status).toBe('busy');

    const cancelled = await post(
      `/fhir/Appointment/${m.id}/$cancel`,
      params({ name: 'reason', valueString: 'Patient is travelling' }),
    );
    expect(cancelled.statusCode, cancelled.body).toBe(200);
    expect(cancelled.json<Appointment>().status).toBe('cancelled');
    expect(cancelled.json<Appointment>().cancelationReason?.text).toBe('Patient is travelling');
    expect((await readSlot(s2!.id!)).status).toBe('free');
    const noReason = await post(`/fhir/Appointment/${m.id}/$cancel`, params());
    expect(noReason.statusCode).toBe(400);
  });

  it('when a patient token books then only for its own patient', async () => {
    const pid = await patient();
    const token = await h.token({ scope: 'patient/Appointment.cru patient/Slot.rs', patient: pid });
    const slot = (await slotsOf(schedA))[8]!;
    const other = await patient();
    expect((await book([slot.id!], other, [], token)).statusCode).toBe(403);
    expect((await book([slot.id!], pid, [], token)).statusCode).toBe(201);
  });

  it('when the input is bad then 4xx names it', async () => {
    const pid = await patient();
    const missing = await book(['no-such-slot'], pid);
    expect(missing.statusCode).toBe(422);
    const wrongRef = await post(
      '/fhir/Appointment/$book',
      params(
        { name: 'slot', valueReference: { reference: 'Patient/1' } },
        { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
      ),
    );
    expect(wrongRef.statusCode).toBe(400);
    expect(outcome(wrongRef).issue[0]!.diagnostics).toMatch(/"slot" must reference Slot/);
    const notParams = await post('/fhir/Appointment/$book', '{"resourceType":"Bundle"}');
    expect(notParams.statusCode).toBe(400);
    const garbage = await post('/fhir/Appointment/$book', '{not json');
    expect(garbage.statusCode).toBe(400);
  });
});

describe('waitlist backfill', () => {
  it('when a booked Slot is cancelled then the best waiting patient is offered it, the offer expires and moves on, and acceptance books', async () => {
    const schedW = await schedule([`Practitioner/${drA}`], 'wl');
    await generate(schedW, dateOf(mon, 7), dateOf(mon, 7), window([], '09:00', '09:30'));
    const [slot] = await slotsOf(schedW);
    const p1 = await patient();
    const p2 = await patient();
    const p3 = await patient();
    const waiting = async (pid: string, priority: number): Promise<string> =>
      (
        await h.fhir.create<Appointment>({
          resourceType: 'Appointment',
          status: 'waitlist',
          priority,
          serviceType: [service('wl')],
          requestedPeriod: [{ start: `${dateOf(mon, 0)}T00:00:00Z`, end: `${dateOf(mon, 14)}T00:00:00Z` }],
          created: new Date().toISOString(),
          participant: [{ actor: { reference: `Patient/${pid}` }, status: 'needs-action' }],
        })
      ).resource.id!;
    await waiting(p2, 2);
    await waiting(p1, 1);
    const booked = (await book([slot!.id!], p3)).json<Appointment>();
    const cancel = await post(
      `/fhir/Appointment/${booked.id}/$cancel`,
      params({ name: 'reason', valueString: 'No longer needed' }),
    );
    expect(cancel.statusCode).toBe(200);

    const offers = () =>
      h.fhir.searchAll<Communication>(
        'Communication',
        {
          category: `${canonical.communicationCategory}|waitlist-offer`,
          recipient: [`Patient/${p1}`, `Patient/${p2}`].join(','),
          _sort: '_lastUpdated',
        },
        { noCache: true },
      );
    const first = await until('the first offer', async () =>
      (await offers()).length >= 1 ? (await offers())[0] : undefined,
    );
    expect(first.recipient?.[0]?.reference).toBe(`Patient/${p1}`);
    const held = await readSlot(slot!.id!);
    expect(held.status).toBe('busy-tentative');

    // p1 does not answer: after WAITLIST_OFFER_TTL the offer moves to p2.
    const second = await until('the second offer', async () => {
      const all = await offers();
      return all.find((c) => c.recipient?.[0]?.reference === `Patient/${p2}`);
    });
    expect(second.id).not.toBe(first.id);
    const late = await post(
      '/fhir/Appointment/$accept-offer',
      params({ name: 'offer', valueReference: { reference: `Communication/${first.id}` } }),
    );
    expect(late.statusCode).toBe(409);
    expect(outcome(late).issue[0]!.details?.coding?.[0]?.code).toBe('offer-expired');

    // p2 accepts with their own patient token.
    const p2Token = await h.token({ scope: 'patient/Appointment.u', patient: p2 });
    const p1Token = await h.token({ scope: 'patient/Appointment.u', patient: p1 });
    expect(
      (
        await post(
          '/fhir/Appointment/$accept-offer',
          params({ name: 'offer', valueReference: { reference: `Communication/${second.id}` } }),
          p1Token,
        )
      ).statusCode,
    ).toBe(403);
    const accepted = await post(
      '/fhir/Appointment/$accept-offer',
      params({ name: 'offer', valueReference: { reference: `Communication/${second.id}` } }),
      p2Token,
    );
    expect(accepted.statusCode, accepted.body).toBe(200);
    const a = accepted.json<Appointment>();
    expect(a.status).toBe('booked');
    expect(a.slot?.[0]?.reference).toBe(`Slot/${slot!.id}`);
    expect(a.participant.map((p) => p.actor?.reference)).toContain(`Patient/${p2}`);
    expect((await readSlot(slot!.id!)).status).toBe('busy');

    const metrics = await h.app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { authorization: `Bearer ${await h.token({ scope: 'system/*.rs' })}` },
    });
    expect(metrics.body).toMatch(
      /careway_waitlist_offers_total\{outcome="offered",service="careway"\} [2-9]/,
    );
    expect(metrics.body).toMatch(
      /careway_waitlist_offers_total\{outcome="expired",service="careway"\} [1-9]/,
    );
    expect(metrics.body).toMatch(
      /careway_waitlist_offers_total\{outcome="accepted",service="careway"\} [1-9]/,
    );
    const provenance = await h.fhir.searchAll(
      'Provenance',
      { target: `Slot/${slot!.id}` },
      { noCache: true },
    );
    expect(provenance.length).toBeGreaterThanOrEqual(5); // booked, cancelled, offered, expired, offered, accepted
  });
});

describe('no-shows', () => {
  async function pastBooking(pid: string, hoursAgo: number): Promise<Appointment> {
    return (
      await h.fhir.create<Appointment>({
        resourceType: 'Appointment',
        status: 'booked',
        start: new Date(Date.now() - hoursAgo * 3600_000).toISOString(),
        end: new Date(Date.now() - hoursAgo * 3600_000 + 1800_000).toISOString(),
        participant: [
          { actor: { reference: `Patient/${pid}` }, status: 'accepted' },
          { actor: { reference: `Practitioner/${drA}` }, status: 'accepted' },
        ],
      })
    ).resource;
  }
  const tasksFor = (id: string) =>
    h.fhir.searchAll<Task>('Task', { identifier: `${canonical.noShowTaskSystem}|${id}` }, { noCache: true });

  it('when a booked appointment ended with no arrival then the sweep marks it a no-show with a follow-up Task; one with an encounter stays', async () => {
    const pid = await patient();
    const missed = await pastBooking(pid, 3);
    const attended = await pastBooking(pid, 4);
    await h.fhir.create<Encounter>({
      resourceType: 'Encounter',
      status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
      subject: { reference: `Patient/${pid}` },
      appointment: [{ reference: `Appointment/${attended.id}` }],
    });
    const marked = await h.app.scheduling.sweepNoShows();
    expect(marked).toContain(missed.id);
    expect(marked).not.toContain(attended.id);
    expect((await h.fhir.read<Appointment>('Appointment', missed.id!, { noCache: true })).status).toBe(
      'noshow',
    );
    expect((await h.fhir.read<Appointment>('Appointment', attended.id!, { noCache: true })).status).toBe(
      'booked',
    );
    const tasks = await tasksFor(missed.id!);
    expect(tasks).toHaveLength(1);
    expect(tasks[0]!.owner?.reference).toBe(`Practitioner/${drA}`);
    expect(await h.app.scheduling.sweepNoShows()).not.toContain(missed.id);
    expect(await tasksFor(missed.id!)).toHaveLength(1);
  });

  it('when staff mark a no-show then the same happens once, and a patient token may not', async () => {
    const pid = await patient();
    const a = await pastBooking(pid, 1);
    const patientToken = await h.token({ scope: 'patient/Appointment.cru', patient: pid });
    expect((await post(`/fhir/Appointment/${a.id}/$noshow`, params(), patientToken)).statusCode).toBe(403);
    const res = await post(`/fhir/Appointment/${a.id}/$noshow`, params());
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<Appointment>().status).toBe('noshow');
    const again = await post(`/fhir/Appointment/${a.id}/$noshow`, params());
    expect(again.json<Appointment>().meta?.versionId).toBe(res.json<Appointment>().meta?.versionId);
    expect(await tasksFor(a.id!)).toHaveLength(1);
    const cancelled = await post(
      `/fhir/Appointment/${a.id}/$cancel`,
      params({ name: 'reason', valueString: 'late' }),
    );
    expect(cancelled.statusCode).toBe(422);
  });
});

describe('appointments booked elsewhere (HL7 SIU)', () => {
  const OID = 'urn:oid:2.16.840.1.113883.19.5.9';
  const hl7Time = (iso: string): string => {
    // 2026-12-07T09:00:00+01:00 → 20261207090000+0100
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})([+-]\d{2}):(\d{2})$/.exec(iso)!;
    return `${m[1]}${m[2]}${m[3]}${m[4]}${m[5]}${m[6]}${m[7]}${m[8]}`;
  };
  const siu = (
    trigger: string,
    control: string,
    appt: string,
    dr: string,
    start: string,
    end: string,
    mrn: string,
  ) =>
    [
      `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20261129083015||SIU^${trigger}^SIU_S12|${control}|P|2.5`,
      `SCH|${appt}^EPIC^urn:oid:2.16.840.1.113883.19.5.3||||||CONSULT^Consultation^LOCAL||||^^^${hl7Time(start)}^${hl7Time(end)}||||||||||||||${trigger === 'S15' ? 'Cancelled' : 'Booked'}`,
      `PID|1||${mrn}^^^MAINHOSP&urn:oid:2.16.840.1.113883.19.5&ISO^MR||Roe^Richard||19800202|M`,
      'RGS|1',
      `AIP|1||${dr}^House^Gregory^^^^^^MAINHOSP&${OID}&ISO|ATT^Attending^HL70443`,
    ].join('\r') + '\r';

  it("when the EHR books, moves and cancels through SIU then the practitioner's Slots follow and a freed Slot goes to the waitlist", async () => {
    const drId = `DR-${uniq()}`;
    const dr = (
      await h.fhir.create<Practitioner>({
        resourceType: 'Practitioner',
        identifier: [{ system: OID, value: drId }],
      })
    ).resource.id!;
    const sched = await schedule([`Practitioner/${dr}`], 'ehr');
    await generate(sched, dateOf(mon, 8), dateOf(mon, 8), window([], '09:00', '10:00'));
    const [first, second] = await slotsOf(sched);
    const hl7Token = await h.token({ scope: 'system/MessageHeader.cr', sub: 'interface-engine' });
    const send = async (body: string) => {
      const res = await h.app.inject({
        method: 'POST',
        url: '/hl7',
        headers: { authorization: `Bearer ${hl7Token}`, 'content-type': 'x-application/hl7-v2+er7' },
        payload: body,
      });
      expect(res.body).toMatch(/MSA\|AA\|/);
    };
    const appt = `EHR-${uniq()}`;
    const mrn = `MRN-${uniq()}`;
    const status = async (id: string) => (await readSlot(id)).status;

    await send(siu('S12', `c1-${appt}`, appt, drId, first!.start, first!.end, mrn));
    await until('the EHR booking to take the first Slot', async () =>
      (await status(first!.id!)) === 'busy' ? true : undefined,
    );
    expect(await status(second!.id!)).toBe('free');
    const taken = await find1(sched);
    expect(taken.map((a) => a.slot?.[0]?.reference)).not.toContain(`Slot/${first!.id}`);

    await send(siu('S13', `c2-${appt}`, appt, drId, second!.start, second!.end, mrn));
    await until('the move to the second Slot', async () =>
      (await status(second!.id!)) === 'busy' && (await status(first!.id!)) === 'free' ? true : undefined,
    );

    await send(siu('S15', `c3-${appt}`, appt, drId, second!.start, second!.end, mrn));
    await until('the cancellation to free the Slot', async () =>
      (await status(second!.id!)) === 'free' ? true : undefined,
    );
    expect((await readSlot(second!.id!)).extension).toBeUndefined();
  });

  async function find1(sched: string): Promise<Appointment[]> {
    const res = await post(
      '/fhir/Appointment/$find',
      params(
        { name: 'service-type', valueCodeableConcept: service('ehr') },
        { name: 'start', valueDateTime: `${dateOf(mon, 8)}T00:00:00Z` },
        { name: 'end', valueDateTime: `${dateOf(mon, 9)}T00:00:00Z` },
      ),
    );
    expect(res.statusCode, res.body).toBe(200);
    void sched;
    return (res.json<Bundle>().entry ?? []).map((e) => e.resource as Appointment);
  }
});

describe('what scheduling writes', () => {
  it('when validated on HAPI then Slots, Appointments, offers and follow-up Tasks have no errors', async () => {
    const pid = await patient();
    const [free, held] = (await slotsOf(schedB)).slice(-2);
    const booked = await book([free!.id!], pid);
    expect(booked.statusCode, booked.body).toBe(201);
    await post(
      '/fhir/Appointment/$hold',
      params(
        { name: 'slot', valueReference: { reference: `Slot/${held!.id}` } },
        { name: 'patient', valueReference: { reference: `Patient/${pid}` } },
      ),
    );
    const samples = [
      booked.json<Appointment>(),
      await readSlot(free!.id!),
      await readSlot(held!.id!),
      ...(await h.fhir.searchAll<Communication>(
        'Communication',
        { category: `${canonical.communicationCategory}|waitlist-offer`, _count: 1 },
        { noCache: true, maxPages: 1 },
      )),
      ...(await h.fhir.searchAll<Task>(
        'Task',
        { code: `${canonical.taskCode}|no-show-follow-up`, _count: 1 },
        { noCache: true, maxPages: 1 },
      )),
    ];
    expect(samples.map((r) => r.resourceType).sort()).toEqual([
      'Appointment',
      'Communication',
      'Slot',
      'Slot',
      'Task',
    ]);
    for (const r of samples) {
      const out = await h.fhir.validate(r);
      const errors = out.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal');
      expect(errors, `${r.resourceType}: ${JSON.stringify(errors)}`).toEqual([]);
    }
  });
});
