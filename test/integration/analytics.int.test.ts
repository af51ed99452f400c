/**
 * `$evaluate-measure` end to end against the real HAPI and Redis: a small known population is written straight
 * to the FHIR server (as the EHR and Careway's own paths would leave it) in a period of its own, far in the
 * past, so nothing else on the shared server falls in it. Every figure of every measure, and of each stratum
 * checked, is compared with a count made here from the written data, and the no-show counts also with direct
 * `_summary=count` searches on HAPI. Then the listing, the cache, the scopes and bad input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  AuditEvent,
  Bundle,
  BundleEntry,
  EpisodeOfCare,
  MeasureReport,
  MeasureReportGroup,
  OperationOutcome,
  Resource,
} from 'fhir/r4.js';
import { startHarness, uniq, until, type Harness } from '../support/harness.js';
import { canonical } from '../../src/fhir/canonical.js';
import { newJourneyEpisode } from '../../src/journey/episode.js';
import { JOURNEY_STAGES, type JourneyStage } from '../../src/journey/stages.js';
import { MEASURE_IDS, PATIENT_EXPERIENCE } from '../../src/analytics/measures.js';

let h: Harness;
let staff: string;
const run = uniq();
const SERVICE_SYSTEM = 'urn:careway:test:service';
const svcA = `svc-a-${run}`;
const svcB = `svc-b-${run}`;

// A month of its own, far from now: year 1700-1849, month 1-12 (asserted empty before writing). (Earlier runs
// left journeys without an end in 1850-1999, which every later month counts as open.)
let year = 0;
let month = 0;
const pad = (n: number): string => String(n).padStart(2, '0');
/** An instant in the test month (day may be 0 or negative for the month before, > 28 for after). */
const at = (day: number, hour = 10): string => new Date(Date.UTC(year, month - 1, day, hour)).toISOString();
const periodStart = (): string => `${year}-${pad(month)}-01`;
const periodEnd = (): string => `${year}-${pad(month)}-28`;
const startMs = (): number => Date.UTC(year, month - 1, 1);
const endMs = (): number => Date.UTC(year, month - 1, 29);

interface Stay {
  stage: JourneyStage;
  start: string;
  end?: string;
}
interface J {
  key: string;
  service?: string;
  stays: Stay[];
  /** Journeys outside the period are written but must not count. */
  inPeriod: boolean;
}

async function evaluate(
  id: string,
  query: Record<string, string>,
  token = staff,
): Promise<{ status: number; body: MeasureReport; outcome: OperationOutcome; cache?: string }> {
  const q = new URLSearchParams(query).toString();
  const res = await h.app.inject({
    method: 'GET',
    url: `/fhir/Measure/${id}/$evaluate-measure${q ? `?${q}` : ''}`,
    headers: { authorization: `Bearer ${token}` },
  });
  return {
    status: res.statusCode,
    body: res.json(),
    outcome: res.json(),
    cache: res.headers['x-careway-cache'] as string | undefined,
  };
}

const period = (): Record<string, string> => ({ periodStart: periodStart(), periodEnd: periodEnd() });

function pops(g: {
  population?: { code?: { coding?: { code?: string }[] }; count?: number }[];
}): Record<string, number> {
  return Object.fromEntries((g.population ?? []).map((p) => [p.code?.coding?.[0]?.code ?? '', p.count ?? 0]));
}
function groupOf(r: MeasureReport, code: string): MeasureReportGroup {
  const g = r.group?.find((x) => x.code?.coding?.[0]?.code === code);
  if (!g) throw new Error(`no group ${code}`);
  return g;
}
function stratum(g: MeasureReportGroup, stratifier: 'stage' | 'service', value: string) {
  const s = g.stratifier?.find((x) => x.code?.[0]?.coding?.[0]?.code === stratifier);
  return s?.stratum?.find((x) => x.value?.coding?.[0]?.code === value || x.value?.text === value);
}

// Independent arithmetic (deliberately not the module's).
const med = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const p90 = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const r = 0.9 * (s.length - 1);
  return s[Math.floor(r)]! + (r - Math.floor(r)) * (s[Math.ceil(r)]! - s[Math.floor(r)]!);
};
const days = (a: string, b: string): number => (Date.parse(b) - Date.parse(a)) / 86_400_000;
const hours = (a: string, b: string): number => (Date.parse(b) - Date.parse(a)) / 3_600_000;

let journeys: J[] = [];
const ids = new Map<string, string>();
const stageAtEnd = (j: J): JourneyStage => {
  const t = endMs() - 1;
  const open = j.stays.find((s) => Date.parse(s.start) <= t && (!s.end || Date.parse(s.end) > t));
  return open!.stage;
};

/** The population, one transaction: journeys, appointments, referrals, triage, reminders, surveys. */
async function writePopulation(): Promise<void> {
  journeys = [
    {
      key: 'J1',
      service: svcA,
      inPeriod: true,
      stays: [
        { stage: 'access', start: at(1), end: at(3) },
        { stage: 'care', start: at(3), end: at(10, 16) },
        { stage: 'recovery', start: at(10, 16) },
      ],
    },
    {
      key: 'J2',
      service: svcA,
      inPeriod: true,
      stays: [
        { stage: 'access', start: at(2), end: at(8, 13) },
        { stage: 'care', start: at(8, 13) },
      ],
    },
    {
      key: 'J3',
      service: svcB,
      inPeriod: true,
      stays: [
        { stage: 'awareness', start: at(1), end: at(2) },
        { stage: 'consideration', start: at(2), end: at(5, 7) },
        { stage: 'access', start: at(5, 7) },
      ],
    },
    // A walk-in straight to care, no service.
    {
      key: 'J4',
      inPeriod: true,
      stays: [
        { stage: 'care', start: at(4), end: at(6) },
        { stage: 'continuous-care', start: at(6) },
      ],
    },
    // Begun the month before: its access stay ends in the period.
    {
      key: 'J5',
      service: svcB,
      inPeriod: true,
      stays: [
        { stage: 'access', start: at(-10), end: at(2) },
        { stage: 'care', start: at(2) },
      ],
    },
    // Begun after the period: not counted anywhere.
    {
      key: 'J6',
      service: svcB,
      inPeriod: false,
      stays: [
        { stage: 'access', start: at(35), end: at(36) },
        { stage: 'care', start: at(36) },
      ],
    },
  ];
  const entry: BundleEntry[] = [];
  const urn = (k: string): string =>
    `urn:uuid:${ids.get(k) ?? (ids.set(k, crypto.randomUUID()), ids.get(k))}`;
  const add = (k: string, resource: Resource): void => {
    entry.push({ fullUrl: urn(k), resource, request: { method: 'POST', url: resource.resourceType } });
  };
  const jext = (j: string) => [
    { url: canonical.journeyReferenceExtension, valueReference: { reference: urn(j) } },
  ];
  const pat = (j: string) => ({ reference: urn(`P-${j}`) });
  for (const k of ['J1', 'J2', 'J3', 'J4', 'J5', 'J6', 'X'])
    add(`P-${k}`, {
      resourceType: 'Patient',
      identifier: [{ system: 'urn:careway:test:mrn', value: `${run}-${k}` }],
    } as Resource);
  add('PR', { resourceType: 'Practitioner', name: [{ family: 'Test' }] } as Resource);

  // Referrals: SR1-3 and SR5 start journeys in the period; SR4 is an order (no journey); J5's is from before.
  const referrals: Record<string, { day: number; journey?: string }> = {
    SR1: { day: 1, journey: 'J1' },
    SR2: { day: 2, journey: 'J2' },
    SR3: { day: 5, journey: 'J3' },
    SR4: { day: 6 },
    SR5: { day: 7, journey: 'J4' },
    SR6: { day: -10, journey: 'J5' },
  };
  for (const [k, r] of Object.entries(referrals))
    add(k, {
      resourceType: 'ServiceRequest',
      status: 'active',
      intent: 'order',
      subject: pat(r.journey ?? 'X'),
      authoredOn: at(r.day, 9),
    } as Resource);
  for (const j of journeys) {
    const referral = Object.entries(referrals).find(([, r]) => r.journey === j.key)?.[0];
    const eoc: EpisodeOfCare = newJourneyEpisode({
      identifier: { system: 'urn:careway:test:journey', value: `${run}-${j.key}` },
      patient: pat(j.key),
      ...(referral ? { referral: { reference: urn(referral) } } : {}),
      ...(j.service ? { type: { coding: [{ system: SERVICE_SYSTEM, code: j.service }] } } : {}),
      // Finished a while after the month: an open journey would be open in every later month, and later runs
      // of this test (in other months) would count it.
      state: {
        stage: j.stays.at(-1)!.stage,
        status: 'finished',
        stageHistory: j.stays.map((s) => ({ ...s, ...(s.end ? { end: s.end } : {}) })),
        statusHistory: [
          { status: 'active', start: j.stays[0]!.start, end: at(45) },
          { status: 'finished', start: at(45) },
        ],
      },
    });
    add(j.key, eoc);
  }

  // Appointments.
  const appt = (k: string, j: string | undefined, status: string, day: number, extra: object = {}): void =>
    add(k, {
      resourceType: 'Appointment',
      status,
      start: at(day, 9),
      end: at(day, 10),
      participant: [{ actor: pat(j ?? 'X'), status: 'accepted' }],
      ...(j ? { extension: jext(j) } : {}),
      ...extra,
    } as Resource);
  appt('A1', 'J1', 'fulfilled', 3);
  appt('A2', 'J1', 'noshow', 5);
  appt('A3', 'J2', 'noshow', 9);
  appt('A4', 'J3', 'fulfilled', 12);
  appt('A5', 'J3', 'cancelled', 6, { basedOn: [{ reference: urn('SR3') }] });
  appt('A6', undefined, 'fulfilled', 14);
  appt('A7', 'J2', 'booked', 20, { basedOn: [{ reference: urn('SR2') }] });
  appt('A8', 'J2', 'fulfilled', 31);

  // Triage Tasks and the Provenance of their decisions.
  const task = (
    k: string,
    j: string,
    status: string,
    day: number,
    lastModified: string,
    system: string = canonical.triageTaskSystem,
  ): void =>
    add(k, {
      resourceType: 'Task',
      identifier: [{ system, value: `${run}|${k}` }],
      status,
      intent: 'order',
      for: pat(j),
      authoredOn: at(day),
      lastModified,
      extension: jext(j),
    } as Resource);
  task('T1', 'J1', 'accepted', 1, at(2));
  task('T2', 'J2', 'completed', 2, at(9));
  task('T3', 'J3', 'rejected', 5, at(5, 13));
  task('T4', 'J4', 'requested', 7, at(7));
  task('T5', 'J5', 'accepted', 8, at(8, 11), 'urn:careway:test:other-task');
  const prov = (k: string, target: string, recorded: string, text: string): void =>
    add(k, {
      resourceType: 'Provenance',
      target: [{ reference: urn(target) }],
      recorded,
      activity: { text },
      agent: [{ who: { display: 'test' } }],
    } as Resource);
  prov('V1', 'T1', at(1, 16), 'triage:requested->accepted');
  prov('V2', 'T2', at(3, 10), 'triage:requested->accepted');
  prov('V3', 'T2', at(9), 'triage:accepted->completed');
  prov('V4', 'T1', at(1, 9), 'referral:transaction');

  // Reminders: one Communication per attempt, keyed on the reminder.
  const rem = (
    k: string,
    key: string,
    status: 'completed' | 'not-done',
    appointment: string,
    j: string | undefined,
    day: number,
    hour = 8,
  ): void =>
    add(k, {
      resourceType: 'Communication',
      identifier: [
        {
          system: canonical.reminderSystem,
          value: status === 'completed' ? `${run}|${key}` : `${run}|${key}|not-done`,
        },
      ],
      status,
      category: [{ coding: [{ system: canonical.communicationCategory, code: 'reminder' }] }],
      basedOn: [{ identifier: { system: canonical.reminderSystem, value: `${run}|${key}` } }],
      about: [{ reference: urn(appointment) }],
      subject: pat(j ?? 'X'),
      sent: at(day, hour),
      ...(j ? { extension: jext(j) } : {}),
    } as Resource);
  rem('C1', 'k1', 'completed', 'A1', 'J1', 2);
  rem('C2a', 'k2', 'not-done', 'A2', 'J1', 4, 7);
  rem('C2b', 'k2', 'completed', 'A2', 'J1', 4, 8);
  rem('C3', 'k3', 'not-done', 'A3', 'J2', 8);
  rem('C4', 'k4', 'completed', 'A4', 'J3', 11);
  rem('C5', 'k5', 'completed', 'A4', 'J3', 12, 7);
  rem('C6', 'k6', 'completed', 'A6', undefined, 13);
  const response = (k: string, appointment: string, actor: string, status: string): void =>
    add(k, {
      resourceType: 'AppointmentResponse',
      appointment: { reference: urn(appointment) },
      actor: { reference: urn(actor) },
      participantStatus: status,
    } as Resource);
  response('R1', 'A1', 'P-J1', 'accepted');
  response('R2', 'A4', 'P-J3', 'accepted');
  response('R3', 'A2', 'P-J1', 'declined');
  response('R4', 'A6', 'PR', 'accepted');

  // Surveys.
  const survey = (
    k: string,
    j: string | undefined,
    day: number,
    nps: number | undefined,
    overall: number,
    opts: { q?: string; status?: string } = {},
  ): void =>
    add(k, {
      resourceType: 'QuestionnaireResponse',
      status: opts.status ?? 'completed',
      questionnaire: opts.q ?? (day % 2 ? `${PATIENT_EXPERIENCE}|0.2.0` : PATIENT_EXPERIENCE),
      subject: pat(j ?? 'X'),
      authored: at(day, 15),
      item: [
        { linkId: 'overall', answer: [{ valueInteger: overall }] },
        ...(nps === undefined ? [] : [{ linkId: 'recommend-score', answer: [{ valueInteger: nps }] }]),
      ],
      ...(j ? { extension: jext(j) } : {}),
    } as Resource);
  survey('Q1', 'J1', 4, 10, 5);
  survey('Q2', 'J1', 6, 9, 4);
  survey('Q3', 'J2', 10, 7, 3);
  survey('Q4', 'J3', 13, 3, 2);
  survey('Q5', 'J3', 14, undefined, 4);
  survey('Q6', undefined, 15, 0, 1);
  survey('Q7', 'J2', 16, 10, 5, { q: 'https://example.org/Questionnaire/other' });
  survey('Q8', 'J2', 17, 0, 1, { status: 'in-progress' });

  // A shared HAPI under load can take a while over ~80 entries: allow it.
  await h.fhir.transaction({ resourceType: 'Bundle', type: 'transaction', entry }, { timeoutMs: 180_000 });
}

beforeAll(async () => {
  h = await startHarness();
  staff = await h.token({ scope: 'user/MeasureReport.r user/Measure.rs', sub: 'analyst-1' });
  // A month nobody else writes in: chosen at random, and checked to be empty before the population goes in.
  for (let attempt = 0; ; attempt++) {
    year = 1700 + Math.floor(Math.random() * 150);
    month = 1 + Math.floor(Math.random() * 12);
    // Asked with explicit offsets: a cache key of its own, so these empty reports answer nothing later.
    const probe = {
      periodStart: `${periodStart()}T00:00:00+00:00`,
      periodEnd: new Date(endMs()).toISOString().replace('.000Z', '+00:00'),
    };
    const probes = await Promise.all(MEASURE_IDS.map((id) => evaluate(id, probe)));
    const empty = probes.every(
      (p) => p.status === 200 && (p.body.group ?? []).every((g) => pops(g)['initial-population'] === 0),
    );
    if (empty) break;
    if (attempt > 5) throw new Error('no empty test month found');
  }
  await writePopulation();
}, 300_000);
afterAll(async () => {
  await h.close();
});

/**
 * The report over the test month, computed after the population was written. Asked with the end as an instant
 * (a dateTime end is exclusive, so the next midnight): its own cache key, apart from the date form that the
 * cache and POST tests use.
 */
async function fresh(id: string, extra: Record<string, string> = {}): Promise<MeasureReport> {
  const end = new Date(endMs()).toISOString().replace('.000Z', 'Z');
  const r = await evaluate(id, { periodStart: periodStart(), periodEnd: end, ...extra });
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ resourceType: 'MeasureReport', status: 'complete', type: 'summary' });
  expect(r.body.measure).toBe(`${canonical.measureBase}/${id}|0.1.0`);
  return r.body;
}

describe('$evaluate-measure figures against counts of the written data', () => {
  it('when the stage funnel is evaluated then each stage counts the journeys that reached it or a later one', async () => {
    const r = await fresh('careway-stage-funnel');
    const inPeriod = journeys.filter((j) => j.inPeriod);
    for (const stage of JOURNEY_STAGES) {
      const reached = inPeriod.filter((j) =>
        j.stays.some((s) => JOURNEY_STAGES.indexOf(s.stage) >= JOURNEY_STAGES.indexOf(stage)),
      );
      const g = groupOf(r, stage);
      expect(pops(g), stage).toEqual({
        'initial-population': inPeriod.length,
        denominator: inPeriod.length,
        numerator: reached.length,
      });
      expect(g.measureScore?.value).toBeCloseTo(reached.length / inPeriod.length, 12);
      // By service: svc A's journeys.
      const a = inPeriod.filter((j) => j.service === svcA);
      expect(pops(stratum(g, 'service', svcA)!)['numerator']).toBe(
        reached.filter((j) => a.includes(j)).length,
      );
    }
    // By stage at the end of the period.
    const care = groupOf(r, 'care');
    for (const s of new Set(inPeriod.map(stageAtEnd)))
      expect(pops(stratum(care, 'stage', s)!)['initial-population']).toBe(
        inPeriod.filter((j) => stageAtEnd(j) === s).length,
      );
  });

  it('when time in stage is evaluated then median and p90 are of the stays that ended in the period, per stage too', async () => {
    const r = await fresh('careway-time-in-stage');
    const stays = journeys
      .filter((j) => j.inPeriod)
      .flatMap((j) => j.stays)
      .filter((s) => s.end && Date.parse(s.end) >= startMs() && Date.parse(s.end) < endMs());
    const values = stays.map((s) => days(s.start, s.end!));
    expect(values.length).toBe(7);
    const median = groupOf(r, 'median');
    expect(pops(median)).toEqual({
      'initial-population': 7,
      'measure-population': 7,
      'measure-observation': 7,
    });
    expect(median.measureScore?.value).toBeCloseTo(med(values), 9);
    expect(median.measureScore?.code).toBe('d');
    expect(groupOf(r, 'p90').measureScore?.value).toBeCloseTo(p90(values), 9);
    const access = stays.filter((s) => s.stage === 'access').map((s) => days(s.start, s.end!));
    expect(stratum(median, 'stage', 'access')!.measureScore?.value).toBeCloseTo(med(access), 9);
    expect(stratum(groupOf(r, 'p90'), 'stage', 'access')!.measureScore?.value).toBeCloseTo(p90(access), 9);
  });

  it('when the no-show rate is evaluated then it is noshow / (fulfilled + noshow), matching direct counts on HAPI', async () => {
    const r = await fresh('careway-no-show-rate');
    const count = async (status: string): Promise<number> =>
      (
        await h.fhir.search(
          'Appointment',
          {
            date: [`ge${periodStart()}`, `lt${new Date(endMs()).toISOString()}`],
            status,
            _summary: 'count',
          },
          { noCache: true },
        )
      ).total ?? -1;
    const [noshow, fulfilled] = await Promise.all([count('noshow'), count('fulfilled')]);
    expect([noshow, fulfilled]).toEqual([2, 3]);
    const g = groupOf(r, 'no-show');
    expect(pops(g)).toEqual({ 'initial-population': 5, denominator: noshow + fulfilled, numerator: noshow });
    expect(g.measureScore?.value).toBeCloseTo(noshow / (noshow + fulfilled), 12);
    // J1 (recovery at the end): A1 fulfilled, A2 noshow; A6 has no journey.
    expect(pops(stratum(g, 'stage', 'recovery')!)).toMatchObject({ denominator: 2, numerator: 1 });
    expect(pops(stratum(g, 'service', 'unknown')!)).toMatchObject({ denominator: 1, numerator: 0 });
    expect(pops(stratum(g, 'service', svcA)!)).toMatchObject({ denominator: 3, numerator: 2 });
  });

  it('when the wait to first appointment is evaluated then it runs from the referral to the first held booking', async () => {
    const r = await fresh('careway-referral-to-first-appointment');
    const waits = [days(at(1, 9), at(3, 9)), days(at(2, 9), at(9, 9)), days(at(5, 9), at(12, 9))];
    const g = groupOf(r, 'median');
    expect(pops(g)).toEqual({ 'initial-population': 4, 'measure-population': 3, 'measure-observation': 3 });
    expect(g.measureScore?.value).toBeCloseTo(med(waits), 9);
    expect(stratum(g, 'service', svcA)!.measureScore?.value).toBeCloseTo(med(waits.slice(0, 2)), 9);
  });

  it('when referral turnaround is evaluated then it is received to triage decision, in hours', async () => {
    const r = await fresh('careway-referral-turnaround');
    const hrs = [hours(at(1), at(1, 16)), hours(at(2), at(3, 10)), hours(at(5), at(5, 13))];
    const g = groupOf(r, 'median');
    expect(pops(g)).toEqual({ 'initial-population': 4, 'measure-population': 3, 'measure-observation': 3 });
    expect(g.measureScore?.value).toBeCloseTo(med(hrs), 9);
    expect(g.measureScore?.code).toBe('h');
    expect(stratum(g, 'service', 'unknown')!.population?.[0]?.count).toBe(1);
  });

  it('when reminder delivery is evaluated then each reminder counts once, delivered if any attempt was', async () => {
    const r = await fresh('careway-reminder-delivery');
    const g = groupOf(r, 'delivered');
    expect(pops(g)).toEqual({ 'initial-population': 6, denominator: 6, numerator: 5 });
    expect(g.measureScore?.value).toBeCloseTo(5 / 6, 12);
    expect(pops(stratum(g, 'stage', 'care')!)).toMatchObject({ denominator: 1, numerator: 0 });
  });

  it('when reminder confirmation is evaluated then it counts reminded appointments the patient accepted', async () => {
    const r = await fresh('careway-reminder-confirmation');
    const g = groupOf(r, 'confirmed');
    // Delivered reminders about A1, A2, A4, A6; the patient accepted A1 and A4 (A2 declined, A6 by staff).
    expect(pops(g)).toEqual({ 'initial-population': 4, denominator: 4, numerator: 2 });
    expect(g.measureScore?.value).toBe(0.5);
    expect(pops(stratum(g, 'service', svcB)!)).toMatchObject({ denominator: 1, numerator: 1 });
  });

  it('when patient experience is evaluated then NPS is % 9-10 minus % 0-6 and the overall rating is the mean', async () => {
    const r = await fresh('careway-patient-experience-nps');
    const answers = [10, 9, 7, 3, 0];
    const promoters = answers.filter((a) => a >= 9).length;
    const detractors = answers.filter((a) => a <= 6).length;
    const nps = groupOf(r, 'nps');
    expect(pops(nps)).toEqual({
      'initial-population': 6,
      denominator: answers.length,
      numerator: promoters,
      'numerator-exclusion': detractors,
    });
    expect(nps.measureScore?.value).toBeCloseTo(((promoters - detractors) * 100) / answers.length, 9);
    expect(groupOf(r, 'promoters').measureScore?.value).toBeCloseTo(promoters / answers.length, 12);
    expect(groupOf(r, 'detractors').measureScore?.value).toBeCloseTo(detractors / answers.length, 12);
    expect(groupOf(r, 'overall').measureScore?.value).toBeCloseTo((5 + 4 + 3 + 2 + 4 + 1) / 6, 9);
    // J1's two responses (10 and 9): NPS 100 in its service.
    expect(stratum(nps, 'stage', 'recovery')!.measureScore?.value).toBe(100);
  });

  it('when a subject is given then only that patient counts', async () => {
    const patient = (
      await h.fhir.search<EpisodeOfCare>('EpisodeOfCare', {
        identifier: `urn:careway:test:journey|${run}-J1`,
      })
    ).entry![0]!.resource!.patient.reference!;
    const r = await fresh('careway-no-show-rate', { subject: patient });
    expect(r.subject?.reference).toBe(patient);
    expect(pops(groupOf(r, 'no-show'))).toEqual({ 'initial-population': 2, denominator: 2, numerator: 1 });
    // The same through a patient token of that patient; audited like every operation, naming the patient.
    const sub = `patient-${uniq()}`;
    const own = await h.token({ scope: 'patient/MeasureReport.r', patient: patient.split('/')[1]!, sub });
    expect((await evaluate('careway-no-show-rate', { ...period(), subject: patient }, own)).status).toBe(200);
    const [event] = await until('the AuditEvent of $evaluate-measure', async () => {
      const found = await h.fhir.searchAll<AuditEvent>('AuditEvent', { altid: sub }, { noCache: true });
      return found.length ? found : undefined;
    });
    expect(event!.subtype?.[0]?.display).toBe('$evaluate-measure');
    expect(event!.entity?.some((x) => x.what?.display === 'Measure/careway-no-show-rate')).toBe(true);
    expect(
      event!.entity?.some((x) => x.role?.code === '1' && (x.what?.reference ?? x.what?.display) === patient),
    ).toBe(true);
  });
});

describe('listing, cache, scopes and bad input', () => {
  it('when Measures are listed through the facade then all eight are there under their ids', async () => {
    const res = await h.app.inject({
      method: 'GET',
      url: `/fhir/Measure?url:below=${encodeURIComponent(canonical.measureBase)}&_count=50`,
      headers: { authorization: `Bearer ${staff}` },
    });
    expect(res.statusCode).toBe(200);
    const listed = (res.json<Bundle>().entry ?? []).map((e) => e.resource?.id);
    for (const id of MEASURE_IDS) expect(listed).toContain(id);
  });

  it('when a report is asked again within MEASURE_CACHE_SECONDS then the cached one answers, even after a change', async () => {
    const first = await evaluate('careway-no-show-rate', period());
    expect(first.cache).toBe('miss');
    expect(pops(groupOf(first.body, 'no-show'))).toMatchObject({ denominator: 5, numerator: 2 });
    // One more no-show in the period: within the TTL the report does not see it (the documented freshness).
    await h.fhir.create({
      resourceType: 'Appointment',
      status: 'noshow',
      start: at(21, 9),
      end: at(21, 10),
      participant: [{ actor: { display: 'walk-in' }, status: 'accepted' }],
    } as Resource);
    const second = await evaluate('careway-no-show-rate', period());
    expect(second.cache).toBe('hit');
    expect(second.body.date).toBe(first.body.date);
    expect(pops(groupOf(second.body, 'no-show'))).toMatchObject({ denominator: 5, numerator: 2 });
  });

  it('when the operation is POSTed with Parameters then it answers the same report', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/fhir/Measure/careway-reminder-delivery/$evaluate-measure',
      headers: { authorization: `Bearer ${staff}`, 'content-type': 'application/fhir+json' },
      payload: {
        resourceType: 'Parameters',
        parameter: [
          { name: 'periodStart', valueDate: periodStart() },
          { name: 'periodEnd', valueDate: periodEnd() },
        ],
      },
    });
    expect(res.statusCode).toBe(200);
    expect(pops(groupOf(res.json(), 'delivered'))).toMatchObject({ denominator: 6, numerator: 5 });
  });

  it.each([
    [{ periodEnd: '2031-01-31' }, 400, /periodStart is required/],
    [{ periodStart: '2031-01-01', periodEnd: 'soon' }, 400, /periodEnd must be a date/],
    [{ periodStart: '2031-02-01', periodEnd: '2031-01-01' }, 400, /must not be before/],
    [
      { periodStart: '2031-01-01', periodEnd: '2031-01-31', measure: 'x' },
      400,
      /unknown parameter "measure"/,
    ],
    [
      { periodStart: '2031-01-01', periodEnd: '2031-01-31', subject: 'Patient/../x' },
      400,
      /subject must be Patient/,
    ],
  ])(
    'when asked with %j then %i with an OperationOutcome naming the problem',
    async (query, status, message) => {
      const r = await evaluate('careway-no-show-rate', query);
      expect(r.status).toBe(status);
      expect(r.outcome.resourceType).toBe('OperationOutcome');
      expect(r.outcome.issue[0]?.diagnostics).toMatch(message);
    },
  );

  it('when the measure is unknown then 404', async () => {
    const r = await evaluate('careway-nothing', period());
    expect(r.status).toBe(404);
    expect(r.outcome.issue[0]?.code).toBe('not-found');
  });

  it('when the token lacks the scope, or a patient token asks about everyone or someone else, then 403', async () => {
    const none = await h.token({ scope: 'user/Patient.r' });
    expect((await evaluate('careway-no-show-rate', period(), none)).status).toBe(403);
    const patient = await h.token({ scope: 'patient/MeasureReport.r', patient: 'p-own' });
    expect((await evaluate('careway-no-show-rate', period(), patient)).status).toBe(403);
    expect(
      (await evaluate('careway-no-show-rate', { ...period(), subject: 'Patient/p-other' }, patient)).status,
    ).toBe(403);
    const anon = await h.app.inject({
      method: 'GET',
      url: `/fhir/Measure/careway-no-show-rate/$evaluate-measure`,
    });
    expect(anon.statusCode).toBe(401);
  });
});
