/**
 * The care-team app's backend on the real HAPI and Redis: the journey board (counts, cards, filters, what each
 * scope may see, one audit event), and the worklist with `$claim` / `$complete` on every Careway Task kind
 * (versioned, replay-safe, a Provenance naming the agent, wrong states and bad input refused).
 *
 * Every journey and Task here belongs to a care manager or owner made for this run, so other people's data on
 * the shared server never reaches the assertions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  AllergyIntolerance,
  Appointment,
  AuditEvent,
  Communication,
  EpisodeOfCare,
  OperationOutcome,
  Patient,
  Practitioner,
  Provenance,
  Task,
} from 'fhir/r4.js';
import { startHarness, uniq, until, type Harness } from '../support/harness.js';
import { canonical } from '../../src/fhir/canonical.js';
import { newJourneyEpisode } from '../../src/journey/episode.js';
import type { JourneyState } from '../../src/journey/rules.js';
import type { JourneyStage } from '../../src/journey/stages.js';
import { JourneyBoard, type Board, type BoardCard, type BoardVisibility } from '../../src/journey/board.js';
import { FhirClient } from '../../src/fhir/client.js';
import type { WorklistItem } from '../../src/journey/tasks.js';

let h: Harness;
const day = 86400_000;
const ago = (ms: number): string => new Date(Date.now() - ms).toISOString();
const run = uniq();
const SERVICE = { system: 'urn:careway:test:service', code: `cardio-${run}` };

const get = (url: string, token?: string) =>
  h.app.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} });
const post = (url: string, token: string, body: unknown, headers: Record<string, string> = {}) =>
  h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', ...headers },
    payload: JSON.stringify(body),
  });

async function practitioner(family: string): Promise<string> {
  const p = await h.fhir.create<Practitioner>({
    resourceType: 'Practitioner',
    name: [{ family, given: ['Dr'] }],
  });
  return `Practitioner/${p.resource.id}`;
}

async function patient(given: string): Promise<string> {
  const p = await h.fhir.create<Patient>({
    resourceType: 'Patient',
    identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
    name: [{ given: [given], family: 'Boardtest' }],
  });
  return p.resource.id!;
}

/** A journey written straight to the server, in `stage` since `sinceMs` ago. */
async function journey(
  patientId: string,
  stage: JourneyStage,
  sinceMs: number,
  careManager: string,
): Promise<string> {
  const since = ago(sinceMs);
  const state: JourneyState = {
    stage,
    status: 'active',
    stageHistory: [{ stage, start: since }],
    statusHistory: [{ status: 'active', start: since }],
  };
  const eoc = newJourneyEpisode({
    identifier: { system: 'urn:careway:test:journey', value: uniq() },
    patient: { reference: `Patient/${patientId}` },
    state,
    type: { coding: [{ ...SERVICE, display: 'Cardiology' }] },
    careManager: { reference: careManager },
  });
  return (await h.fhir.create<EpisodeOfCare>(eoc)).resource.id!;
}

const link = (episodeId: string) => [
  { url: canonical.journeyReferenceExtension, valueReference: { reference: `EpisodeOfCare/${episodeId}` } },
];

let manager: string;
let otherManager: string;
let full: string;
let narrow: string;
let mineToken: string;
let jOver: string;
let jFresh: string;
let jCare: string;
let pOver: string;
let appointmentId: string;

beforeAll(async () => {
  h = await startHarness();
  manager = await practitioner(`Manager${run}`);
  otherManager = await practitioner(`Other${run}`);
  full = await h.token({ scope: 'user/*.cruds', sub: `board-${run}` });
  narrow = await h.token({ scope: 'user/EpisodeOfCare.rs', sub: `narrow-${run}` });
  mineToken = await h.token({ scope: 'user/*.rs', sub: `mine-${run}`, fhirUser: manager });
  pOver = await patient('Olive');
  const pFresh = await patient('Fred');
  const pCare = await patient('Carl');
  jOver = await journey(pOver, 'access', 30 * day, manager);
  jFresh = await journey(pFresh, 'access', 2 * day, manager);
  jCare = await journey(pCare, 'care', 1 * day, manager);
  // Someone else's journey with the same service: never on this manager's board.
  await journey(await patient('Nora'), 'access', 40 * day, otherManager);
  await h.fhir.create<AllergyIntolerance>({
    resourceType: 'AllergyIntolerance',
    patient: { reference: `Patient/${pOver}` },
    code: { text: 'Penicillin' },
    criticality: 'high',
  });
  await h.fhir.create<Task>({
    resourceType: 'Task',
    status: 'requested',
    intent: 'order',
    code: { coding: [{ system: canonical.taskCode, code: 'no-show-follow-up' }] },
    for: { reference: `Patient/${pOver}` },
    authoredOn: ago(5 * day),
    restriction: { period: { end: ago(day) } },
    extension: link(jOver),
  });
  const appt = await h.fhir.create<Appointment>({
    resourceType: 'Appointment',
    status: 'booked',
    description: 'Echo',
    start: new Date(Date.now() + 3 * day).toISOString(),
    end: new Date(Date.now() + 3 * day + 1800_000).toISOString(),
    participant: [{ actor: { reference: `Patient/${pFresh}` }, status: 'accepted' }],
    extension: link(jFresh),
  });
  appointmentId = appt.resource.id!;
  await h.fhir.create<Communication>({
    resourceType: 'Communication',
    status: 'completed',
    category: [{ coding: [{ system: canonical.communicationCategory, code: 'reminder' }] }],
    medium: [
      { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationMode', code: 'SMSWRIT' }] },
    ],
    subject: { reference: `Patient/${pFresh}` },
    about: [{ reference: `Appointment/${appointmentId}` }],
    sent: ago(3600_000),
    extension: link(jFresh),
  });
});
afterAll(async () => {
  await h?.close();
});

const board = async (query: string, token = full): Promise<Board> => {
  const res = await get(`/journeys/board?${query}`, token);
  expect(res.statusCode, res.body).toBe(200);
  return res.json<Board>();
};
const count = (b: Board, stage: string): number => b.stages.find((s) => s.code === stage)?.count ?? -1;
const card = (b: Board, id: string): BoardCard | undefined => b.cards.find((c) => c.episodeId === id);

describe('the journey board', () => {
  it('when a care manager filter is given then each stage counts exactly its journeys and each card carries what the full scope sees', async () => {
    const b = await board(`careManager=${manager}`);
    expect(count(b, 'access')).toBe(2);
    expect(count(b, 'care')).toBe(1);
    expect(count(b, 'awareness')).toBe(0);
    expect(b.stages.find((s) => s.code === 'access')?.targetDays).toBe(21);
    expect(b.stages.find((s) => s.code === 'continuous-care')?.targetDays).toBeNull();
    expect(b.cards.map((c) => c.episodeId).sort()).toEqual([jOver, jFresh, jCare].sort());
    const over = card(b, jOver)!;
    expect(over).toMatchObject({
      patientId: pOver,
      patientName: 'Olive Boardtest',
      stage: 'access',
      targetDays: 21,
      overTarget: true,
      status: 'active',
      service: { code: SERVICE.code, display: 'Cardiology' },
      careManager: { reference: manager, display: `Dr Manager${run}` },
      openTasks: 1,
      overdueTasks: 1,
      allergy: true,
    });
    expect(over.daysInStage).toBeGreaterThanOrEqual(29.9);
    expect(over.painPoints.map((p) => p.code)).toEqual(
      expect.arrayContaining(['time-in-stage', 'follow-up-overdue']),
    );
    const fresh = card(b, jFresh)!;
    expect(fresh.overTarget).toBe(false);
    expect(fresh.allergy).toBe(false);
    expect(fresh.nextAppointment).toMatchObject({ id: appointmentId, status: 'booked', description: 'Echo' });
    expect(fresh.lastReminder?.['sms']).toMatchObject({ outcome: 'confirmed' });
  });

  it('when the token reads only journeys then names, allergies, appointments, tasks and reminders are left out', async () => {
    const b = await board(`careManager=${manager}`, narrow);
    expect(count(b, 'access')).toBe(2);
    const over = card(b, jOver)!;
    for (const k of [
      'patientName',
      'allergy',
      'nextAppointment',
      'openTasks',
      'overdueTasks',
      'lastReminder',
    ])
      expect(over, k).not.toHaveProperty(k);
    expect(JSON.stringify(b)).not.toContain('Olive');
    expect(over.painPoints.map((p) => p.code)).toEqual(['time-in-stage']);
  });

  it('when overdue, mine, service, status and limit filter then counts follow the filter and cards the cap', async () => {
    const overdue = await board(`careManager=${manager}&overdue=true`);
    expect(count(overdue, 'access')).toBe(1);
    expect(count(overdue, 'care')).toBe(0);
    expect(overdue.cards.map((c) => c.episodeId)).toEqual([jOver]);
    const mine = await board('mine=true', mineToken);
    expect(count(mine, 'access')).toBe(2);
    const service = await board(`service=${encodeURIComponent(`${SERVICE.system}|${SERVICE.code}`)}`);
    expect(count(service, 'access')).toBe(3);
    const capped = await board(`careManager=${manager}&limit=1`);
    expect(count(capped, 'access')).toBe(2);
    expect(capped.cards.filter((c) => c.stage === 'access').map((c) => c.episodeId)).toEqual([jOver]);
    const finished = await board(`careManager=${manager}&status=finished`);
    expect(finished.cards).toEqual([]);
  });

  it('when the board is read then it is audited as one search: a search-type event per patient shown (BALP), no read per card', async () => {
    const sub = `board-audit-${uniq()}`;
    const token = await h.token({ scope: 'user/*.rs', sub });
    const b = await board(`careManager=${manager}`, token);
    const shown = [...new Set(b.cards.map((c) => `Patient/${c.patientId}`))].sort();
    expect(shown).toHaveLength(3);
    const events = await until('the board AuditEvents', async () => {
      const found = await h.fhir.searchAll<AuditEvent>('AuditEvent', { altid: sub }, { noCache: true });
      return found.length >= shown.length ? found : undefined;
    });
    // Give a stray extra event (a read per card, say) the time to arrive before counting.
    await new Promise((r) => setTimeout(r, 1500));
    const all = await h.fhir.searchAll<AuditEvent>('AuditEvent', { altid: sub }, { noCache: true });
    expect(all).toHaveLength(events.length);
    expect(all).toHaveLength(shown.length);
    for (const e of all) expect(e).toMatchObject({ subtype: [{ code: 'search-type' }], action: 'E' });
    const patients = all
      .flatMap((e) => (e.entity ?? []).filter((x) => x.role?.code === '1').map((x) => x.what?.reference))
      .sort();
    expect(patients).toEqual(shown);
  });

  it('when the board has more journeys then it makes the same number of FHIR requests: one per stage and one per linked type', async () => {
    const calls: string[] = [];
    const counting = new FhirClient({
      baseUrl: h.config.fhirBaseUrl,
      fetch: (url, init) => {
        calls.push(String(url instanceof Request ? url.url : url));
        return fetch(url, init);
      },
    });
    try {
      const boardOf = new JourneyBoard(counting, h.config.journeyTargets);
      const all: BoardVisibility = {
        patients: true,
        allergies: true,
        appointments: true,
        tasks: true,
        reminders: true,
        carePlans: true,
        referrals: true,
        practitioners: true,
        careTeams: true,
      };
      const many = await practitioner(`Many${run}`);
      for (let i = 0; i < 12; i++)
        await journey(await patient(`P${i}`), i % 2 ? 'care' : 'recovery', (i + 1) * day, many);
      const small = await boardOf.board({ careManager: manager, limit: 50 }, all);
      const smallCalls = calls.length;
      calls.length = 0;
      const large = await boardOf.board({ careManager: many, limit: 50 }, all);
      expect(small.cards).toHaveLength(3);
      expect(large.cards).toHaveLength(12);
      // 6 stage searches + Appointment, Task, Communication, CarePlan, AllergyIntolerance for up to 50 cards.
      expect(smallCalls).toBe(11);
      expect(calls.length).toBe(11);
      console.log(`board: ${smallCalls} FHIR requests for 3 cards, ${calls.length} for 12 cards`);
    } finally {
      await counting.close();
    }
  });

  it('when the caller is a patient, anonymous, or sends bad filters then 403, 401 or 400 with an OperationOutcome', async () => {
    const patientToken = await h.token({ scope: 'patient/*.rs', patient: pOver });
    expect((await get('/journeys/board', patientToken)).statusCode).toBe(403);
    expect((await get('/journeys/board')).statusCode).toBe(401);
    for (const q of ['team=Patient/1', 'status=open', 'mine=maybe', 'limit=0', 'careManager=nobody', 'x=1']) {
      const res = await get(`/journeys/board?${q}`, full);
      expect(res.statusCode, q).toBe(400);
      expect(res.json<OperationOutcome>().resourceType).toBe('OperationOutcome');
    }
    // "mine" without a fhirUser names nobody.
    expect((await get('/journeys/board?mine=true', full)).statusCode).toBe(400);
  });
});

describe('the worklist, $claim and $complete', () => {
  let owner: string;
  let noShow: Task;
  let answer: Task;
  let triage: Task;
  let staff: string;

  const task = async (t: Partial<Task>): Promise<Task> =>
    (
      await h.fhir.create<Task>({
        resourceType: 'Task',
        status: 'requested',
        intent: 'order',
        for: { reference: `Patient/${pOver}` },
        owner: { reference: owner },
        authoredOn: ago(day),
        ...t,
      })
    ).resource;

  beforeAll(async () => {
    owner = await practitioner(`Owner${run}`);
    staff = await h.token({ scope: 'user/*.cruds', sub: `staff-${run}`, fhirUser: owner });
    noShow = await task({
      code: { coding: [{ system: canonical.taskCode, code: 'no-show-follow-up' }] },
      description: 'The patient did not attend',
      restriction: { period: { end: ago(3600_000) } },
      extension: link(jOver),
    });
    answer = await task({ code: { coding: [{ system: canonical.taskCode, code: 'answer-patient' }] } });
    triage = await task({
      identifier: [{ system: canonical.triageTaskSystem, value: `urn:test|${uniq()}` }],
      code: { text: 'Triage referral' },
    });
  });

  const worklist = async (query: string, token = staff): Promise<WorklistItem[]> => {
    const res = await get(`/tasks/worklist?${query}`, token);
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ tasks: WorklistItem[] }>().tasks;
  };

  it('when listed by owner then every Careway kind shows, overdue first, with the patient and the journey', async () => {
    const items = await worklist(`owner=${owner}`);
    expect(items.map((i) => i.id).sort()).toEqual([noShow.id, answer.id, triage.id].sort());
    expect(items[0]).toMatchObject({
      id: noShow.id,
      kind: 'no-show-follow-up',
      overdue: true,
      patientId: pOver,
      patientName: 'Olive Boardtest',
      episodeId: jOver,
      summary: 'The patient did not attend',
      owner: { reference: owner, display: `Dr Owner${run}` },
    });
    expect(items.find((i) => i.id === triage.id)?.kind).toBe('referral-triage');
    expect(items.find((i) => i.id === answer.id)?.kind).toBe('answer-patient');
    expect((await worklist(`owner=${owner}&kind=answer-patient`)).map((i) => i.id)).toEqual([answer.id]);
    expect((await worklist(`owner=${owner}&overdue=true`)).map((i) => i.id)).toEqual([noShow.id]);
    const noNames = await worklist(`owner=${owner}`, await h.token({ scope: 'user/Task.rs' }));
    expect(JSON.stringify(noNames)).not.toContain('Olive');
  });

  it('when a follow-up is claimed then it has the new owner, a new version and a Provenance; a replay writes nothing', async () => {
    const other = await practitioner(`Claimer${run}`);
    const claimer = await h.token({ scope: 'user/Task.u', sub: `claimer-${run}`, fhirUser: other });
    const res = await post(
      `/fhir/Task/${answer.id}/$claim`,
      claimer,
      { resourceType: 'Parameters' },
      {
        'if-match': `W/"${answer.meta?.versionId}"`,
      },
    );
    expect(res.statusCode, res.body).toBe(200);
    const claimed = res.json<Task>();
    expect(claimed.owner?.reference).toBe(other);
    expect(claimed.status).toBe('accepted');
    expect(claimed.meta?.versionId).not.toBe(answer.meta?.versionId);
    const again = await post(`/fhir/Task/${answer.id}/$claim`, claimer, { resourceType: 'Parameters' });
    expect(again.json<Task>().meta?.versionId).toBe(claimed.meta?.versionId);
    const prov = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `Task/${answer.id}` },
      { noCache: true },
    );
    expect(prov).toHaveLength(1);
    expect(prov[0]?.agent[0]?.who?.reference).toBe(other);
    // Someone else's stale version: refused.
    const stale = await post(
      `/fhir/Task/${answer.id}/$claim`,
      staff,
      { resourceType: 'Parameters', parameter: [{ name: 'owner', valueReference: { reference: owner } }] },
      { 'if-match': `W/"${answer.meta?.versionId}"` },
    );
    expect(stale.statusCode).toBe(409);
  });

  it('when a no-show follow-up is completed with a note then it is completed once, with the note and a Provenance', async () => {
    const body = {
      resourceType: 'Parameters',
      parameter: [{ name: 'note', valueString: 'Rebooked by phone' }],
    };
    const res = await post(`/fhir/Task/${noShow.id}/$complete`, staff, body);
    expect(res.statusCode, res.body).toBe(200);
    const done = res.json<Task>();
    expect(done).toMatchObject({
      status: 'completed',
      note: [{ text: 'Rebooked by phone', authorReference: { reference: owner } }],
    });
    const replay = await post(`/fhir/Task/${noShow.id}/$complete`, staff, body, {
      'if-match': `W/"${noShow.meta?.versionId}"`,
    });
    expect(replay.statusCode).toBe(200);
    expect(replay.json<Task>().meta?.versionId).toBe(done.meta?.versionId);
    expect(replay.json<Task>().note).toHaveLength(1);
    const prov = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `Task/${noShow.id}` },
      { noCache: true },
    );
    expect(prov).toHaveLength(1);
    expect(prov[0]).toMatchObject({
      activity: { text: 'task:requested->completed' },
      reason: [{ text: 'Rebooked by phone' }],
    });
    // A closed Task cannot be claimed any more.
    expect(
      (await post(`/fhir/Task/${noShow.id}/$claim`, staff, { resourceType: 'Parameters' })).statusCode,
    ).toBe(422);
  });

  it('when a referral triage Task is completed then triage rules hold: not from requested, yes once accepted', async () => {
    const early = await post(`/fhir/Task/${triage.id}/$complete`, staff, { resourceType: 'Parameters' });
    expect(early.statusCode).toBe(422);
    expect(early.json<OperationOutcome>().issue[0]?.diagnostics).toMatch(/triage-transition/);
    expect(
      (await post(`/fhir/Task/${triage.id}/$accept`, staff, { resourceType: 'Parameters' })).statusCode,
    ).toBe(200);
    const res = await post(`/fhir/Task/${triage.id}/$complete`, staff, { resourceType: 'Parameters' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<Task>().status).toBe('completed');
    const replay = await post(`/fhir/Task/${triage.id}/$complete`, staff, { resourceType: 'Parameters' });
    expect(replay.json<Task>().meta?.versionId).toBe(res.json<Task>().meta?.versionId);
  });

  it('when the Task is unknown, not Careway’s, cancelled, or the caller lacks Task.u then 404, 422, 422 and 403', async () => {
    const params = { resourceType: 'Parameters' };
    expect((await post('/fhir/Task/does-not-exist-xyz/$complete', staff, params)).statusCode).toBe(404);
    const foreign = await task({ code: { text: 'not ours' } });
    expect((await post(`/fhir/Task/${foreign.id}/$claim`, staff, params)).statusCode).toBe(422);
    const cancelled = await task({
      status: 'cancelled',
      code: { coding: [{ system: canonical.taskCode, code: 'answer-patient' }] },
    });
    const refused = await post(`/fhir/Task/${cancelled.id}/$complete`, staff, params);
    expect(refused.statusCode).toBe(422);
    expect(refused.json<OperationOutcome>().issue[0]?.diagnostics).toMatch(/task-closed/);
    const reader = await h.token({ scope: 'user/Task.rs', fhirUser: owner });
    expect((await post(`/fhir/Task/${answer.id}/$claim`, reader, params)).statusCode).toBe(403);
    const patientToken = await h.token({ scope: 'patient/Task.cruds', patient: pOver });
    expect((await post(`/fhir/Task/${answer.id}/$complete`, patientToken, params)).statusCode).toBe(403);
    expect((await get('/tasks/worklist', patientToken)).statusCode).toBe(403);
    expect((await get('/tasks/worklist?kind=nonsense', staff)).statusCode).toBe(400);
    const badParam = await post(`/fhir/Task/${answer.id}/$claim`, staff, {
      resourceType: 'Parameters',
      parameter: [{ name: 'owner', valueString: 'me' }],
    });
    expect(badParam.statusCode).toBe(400);
    // A claim with no owner and a token without fhirUser names nobody.
    const anonymous = await h.token({ scope: 'user/Task.u' });
    expect((await post(`/fhir/Task/${answer.id}/$claim`, anonymous, params)).statusCode).toBe(400);
  });
});
