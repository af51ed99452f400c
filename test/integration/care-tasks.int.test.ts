/**
 * The two Task kinds other areas raise for the care team, on the real HAPI and Redis:
 * - `care-plan-activity`: the care-plan sweep raises one Task per overdue, not-done activity of an active plan
 *   (owned by the journey's care manager, due when the activity was), never twice (a second sweep, two sweeps
 *   at once), closes it when the activity is done, cancelled, moved or the plan ends, and leaves alone a Task
 *   staff completed with `$complete`;
 * - `waitlist-offer`: an offer to a patient Careway cannot tell on their own channel gets a Task (in the offer's
 *   transaction), which closes as `cancelled` when the offer expires and `completed` when it is accepted; a
 *   reachable patient's offer gets none.
 *
 * Every plan, patient and owner is made for this run; assertions look only at those.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Appointment,
  CarePlan,
  Communication,
  EpisodeOfCare,
  Parameters,
  Patient,
  Practitioner,
  Provenance,
  Schedule,
  Slot,
  Task,
} from 'fhir/r4.js';
import { startHarness, uniq, until, type Harness } from '../support/harness.js';
import { canonical } from '../../src/fhir/canonical.js';
import { newJourneyEpisode } from '../../src/journey/episode.js';
import type { WorklistItem } from '../../src/journey/tasks.js';

let h: Harness;
let staff: string;
let manager: string;
const run = uniq();
const day = 86400_000;
const iso = (ms: number): string => new Date(ms).toISOString();
const SYSTEM = 'urn:careway:test:service';

const post = (url: string, token: string, body: unknown) =>
  h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
    payload: JSON.stringify(body),
  });
const params = (...p: NonNullable<Parameters['parameter']>): Parameters => ({
  resourceType: 'Parameters',
  parameter: p,
});

async function patient(extra: Partial<Patient> = {}): Promise<string> {
  const p = await h.fhir.create<Patient>({
    resourceType: 'Patient',
    identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
    name: [{ given: ['Tess'], family: `Caretask${run}` }],
    ...extra,
  });
  return p.resource.id!;
}

async function journeyFor(patientId: string): Promise<string> {
  const since = iso(Date.now() - 30 * day);
  const eoc = newJourneyEpisode({
    identifier: { system: 'urn:careway:test:journey', value: uniq() },
    patient: { reference: `Patient/${patientId}` },
    state: {
      stage: 'continuous-care',
      status: 'active',
      stageHistory: [{ stage: 'continuous-care', start: since }],
      statusHistory: [{ status: 'active', start: since }],
    },
    type: { coding: [{ system: SYSTEM, code: `chronic-${run}` }] },
    careManager: { reference: manager },
  });
  return (await h.fhir.create<EpisodeOfCare>(eoc)).resource.id!;
}

type Activity = NonNullable<CarePlan['activity']>[number];
const activity = (text: string, status: string, due: string): Activity => ({
  detail: {
    status: status as NonNullable<Activity['detail']>['status'],
    code: { text },
    scheduledPeriod: { start: iso(Date.parse(due) - day), end: due },
  },
});

const tasksOfPlans = (planIds: string[]) =>
  h.fhir.searchAll<Task>(
    'Task',
    {
      code: `${canonical.taskCode}|care-plan-activity`,
      focus: planIds.map((id) => `CarePlan/${id}`).join(','),
      _count: 100,
    },
    { noCache: true },
  );
const keyOf = (t: Task): string =>
  t.identifier?.find((i) => i.system === canonical.carePlanActivityTaskSystem)?.value ?? '';
const sweep = () => h.app.areas.reminders.carePlanSweep.run();

beforeAll(async () => {
  // E-mail configured (nothing listens there: sends fail, which is not what these tests look at), so a patient
  // with an e-mail address is reachable and one without is not.
  h = await startHarness({
    SLOT_HOLD_TTL: 'PT2S',
    WAITLIST_OFFER_TTL: 'PT6S',
    SMTP_URL: 'smtp://127.0.0.1:9',
    SMTP_FROM: 'careway@example.org',
  });
  manager = `Practitioner/${
    (
      await h.fhir.create<Practitioner>({
        resourceType: 'Practitioner',
        name: [{ family: `Manager${run}` }],
      })
    ).resource.id
  }`;
  staff = await h.token({ scope: 'user/*.cruds', sub: `staff-${run}`, fhirUser: manager });
});
afterAll(async () => {
  await h?.close();
});

describe('overdue care-plan activities', () => {
  let pid: string;
  let journey: string;
  let plan: CarePlan;
  let draft: CarePlan;

  beforeAll(async () => {
    pid = await patient();
    journey = await journeyFor(pid);
    const now = Date.now();
    plan = (
      await h.fhir.create<CarePlan>({
        resourceType: 'CarePlan',
        status: 'active',
        intent: 'plan',
        subject: { reference: `Patient/${pid}` },
        extension: [
          {
            url: canonical.journeyReferenceExtension,
            valueReference: { reference: `EpisodeOfCare/${journey}` },
          },
        ],
        activity: [
          activity('HbA1c check', 'scheduled', iso(now - 3 * day)), // 0: overdue
          activity('Foot exam', 'completed', iso(now - 5 * day)), // 1: done: nothing
          activity('Eye exam', 'scheduled', iso(now + 10 * day)), // 2: not due yet: nothing
          activity('Diet review', 'not-started', iso(now - 2 * day)), // 3: overdue
          activity('Nurse call', 'scheduled', iso(now - day)), // 4: overdue
          { detail: { status: 'scheduled', code: { text: 'Some time' }, scheduledString: 'next spring' } }, // 5
        ],
      })
    ).resource;
    // A draft plan is not the agreed plan yet: its overdue activity raises nothing.
    draft = (
      await h.fhir.create<CarePlan>({
        resourceType: 'CarePlan',
        status: 'draft',
        intent: 'plan',
        subject: { reference: `Patient/${pid}` },
        activity: [activity('Draft thing', 'scheduled', iso(now - 3 * day))],
      })
    ).resource;
  });

  it('when the sweep runs then each overdue, not-done activity of an active plan has one Task for the care manager, due when the activity was', async () => {
    await sweep();
    const tasks = await tasksOfPlans([plan.id!, draft.id!]);
    expect(tasks.map((t) => Number(keyOf(t).split('/')[1])).sort()).toEqual([0, 3, 4]);
    const t0 = tasks.find((t) => keyOf(t).split('/')[1] === '0')!;
    expect(t0).toMatchObject({
      status: 'requested',
      for: { reference: `Patient/${pid}` },
      owner: { reference: manager },
      focus: { reference: `CarePlan/${plan.id}` },
      restriction: { period: { end: plan.activity![0]!.detail!.scheduledPeriod!.end } },
      extension: [{ valueReference: { reference: `EpisodeOfCare/${journey}` } }],
    });
    expect(t0.description).toContain('HbA1c check');

    const res = await h.app.inject({
      method: 'GET',
      url: `/tasks/worklist?kind=care-plan-activity&owner=${manager}&overdue=true`,
      headers: { authorization: `Bearer ${staff}` },
    });
    expect(res.statusCode, res.body).toBe(200);
    const items = res.json<{ tasks: WorklistItem[] }>().tasks.filter((i) => i.patientId === pid);
    expect(items).toHaveLength(3);
    expect(items.every((i) => i.kind === 'care-plan-activity' && i.overdue && i.episodeId === journey)).toBe(
      true,
    );
  });

  it('when the sweep runs again, twice at once, then nothing more is created', async () => {
    const before = await tasksOfPlans([plan.id!]);
    const results = await Promise.all([sweep(), sweep()]);
    const after = await tasksOfPlans([plan.id!]);
    expect(after.map((t) => t.id).sort()).toEqual(before.map((t) => t.id).sort());
    expect(after.every((t) => t.meta?.versionId === before.find((b) => b.id === t.id)?.meta?.versionId)).toBe(
      true,
    );
    // Other runs' plans on the shared server may be raised; none of ours.
    expect(results).toHaveLength(2);
  });

  it('when staff complete a Task with $complete then it is completed with a Provenance, and the next sweep neither reopens nor raises it again', async () => {
    const t4 = (await tasksOfPlans([plan.id!])).find((t) => keyOf(t).split('/')[1] === '4')!;
    const res = await post(
      `/fhir/Task/${t4.id}/$complete`,
      staff,
      params({ name: 'note', valueString: 'Called' }),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<Task>().status).toBe('completed');
    const prov = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `Task/${t4.id}` },
      { noCache: true },
    );
    expect(prov).toHaveLength(1);
    expect(prov[0]?.agent[0]?.who?.reference).toBe(manager);
    await sweep();
    const tasks = await tasksOfPlans([plan.id!]);
    expect(tasks.filter((t) => keyOf(t).split('/')[1] === '4').map((t) => t.status)).toEqual(['completed']);
    expect(tasks).toHaveLength(3);
  });

  it('when an activity is done, another moved to later, then the sweep closes their Tasks (completed, cancelled) with a Provenance; moved overdue again it is a new Task', async () => {
    const current = await h.fhir.read<CarePlan>('CarePlan', plan.id!, { noCache: true });
    const acts = structuredClone(current.activity!);
    acts[0]!.detail!.status = 'completed';
    const later = iso(Date.now() + 5 * day);
    acts[3]!.detail!.scheduledPeriod = { start: iso(Date.now() + 4 * day), end: later };
    await h.fhir.update<CarePlan>({ ...current, id: plan.id!, activity: acts });
    await sweep();
    const tasks = await tasksOfPlans([plan.id!]);
    const byIndex = (i: string) => tasks.filter((t) => keyOf(t).split('/')[1] === i);
    expect(byIndex('0').map((t) => t.status)).toEqual(['completed']);
    expect(byIndex('3').map((t) => [t.status, t.statusReason?.text])).toEqual([
      ['cancelled', 'the activity was rescheduled'],
    ]);
    for (const t of [...byIndex('0'), ...byIndex('3')]) {
      const prov = await h.fhir.searchAll<Provenance>(
        'Provenance',
        { target: `Task/${t.id}` },
        { noCache: true },
      );
      expect(prov).toHaveLength(1);
    }
    // A sweep a week later: the moved activity is overdue again, a new occurrence with its own Task.
    await h.app.areas.reminders.carePlanSweep.run(new Date(Date.now() + 7 * day));
    const again = (await tasksOfPlans([plan.id!])).filter((t) => keyOf(t).split('/')[1] === '3');
    expect(again.map((t) => t.status).sort()).toEqual(['cancelled', 'requested']);
  });

  it('when the plan is revoked then its open Tasks are cancelled, and a replayed sweep changes nothing', async () => {
    const current = await h.fhir.read<CarePlan>('CarePlan', plan.id!, { noCache: true });
    await h.fhir.update<CarePlan>({ ...current, id: plan.id!, status: 'revoked' });
    await sweep();
    const tasks = await tasksOfPlans([plan.id!]);
    const open = tasks.filter((t) => !['completed', 'cancelled'].includes(t.status));
    expect(open).toEqual([]);
    const versions = tasks.map((t) => `${t.id}@${t.meta?.versionId}`).sort();
    await sweep();
    expect((await tasksOfPlans([plan.id!])).map((t) => `${t.id}@${t.meta?.versionId}`).sort()).toEqual(
      versions,
    );
  });
});

describe('waitlist offers that need staff', () => {
  let schedule: string;

  async function freeSlot(code: string): Promise<Slot> {
    const start = Date.now() + 3 * day + Math.floor(Math.random() * 1000) * 3600_000;
    return (
      await h.fhir.create<Slot>({
        resourceType: 'Slot',
        schedule: { reference: `Schedule/${schedule}` },
        status: 'busy',
        serviceType: [{ coding: [{ system: SYSTEM, code }] }],
        start: iso(start),
        end: iso(start + 1800_000),
      })
    ).resource;
  }
  async function wait(pid: string, priority: number, code: string): Promise<string> {
    return (
      await h.fhir.create<Appointment>({
        resourceType: 'Appointment',
        status: 'waitlist',
        priority,
        serviceType: [{ coding: [{ system: SYSTEM, code }] }],
        created: new Date().toISOString(),
        participant: [{ actor: { reference: `Patient/${pid}` }, status: 'needs-action' }],
      })
    ).resource.id!;
  }
  /** The Slot freed as an EHR would: written free through the facade, which hands it to the waitlist. */
  async function free(slot: Slot): Promise<void> {
    const res = await h.app.inject({
      method: 'PUT',
      url: `/fhir/Slot/${slot.id}`,
      headers: { authorization: `Bearer ${staff}`, 'content-type': 'application/fhir+json' },
      payload: JSON.stringify({ ...slot, status: 'free' }),
    });
    expect(res.statusCode, res.body).toBe(200);
  }
  const offerTo = (pid: string) =>
    until(`an offer to ${pid}`, async () => {
      const [c] = await h.fhir.searchAll<Communication>(
        'Communication',
        { category: `${canonical.communicationCategory}|waitlist-offer`, recipient: `Patient/${pid}` },
        { noCache: true },
      );
      return c;
    });
  const offerTasks = (offerId: string) =>
    h.fhir.searchAll<Task>(
      'Task',
      { code: `${canonical.taskCode}|waitlist-offer`, focus: `Communication/${offerId}` },
      { noCache: true },
    );

  beforeAll(async () => {
    schedule = (
      await h.fhir.create<Schedule>({
        resourceType: 'Schedule',
        active: true,
        serviceType: [{ coding: [{ system: SYSTEM, code: `wl-${run}` }] }],
        actor: [{ reference: manager }],
      })
    ).resource.id!;
  });

  it('when the offer goes to a patient with no channel but the portal then a Task is raised with it; when it expires the Task is cancelled and the next (reachable) patient gets no Task', async () => {
    const unreachable = await patient(); // no telecom
    const reachable = await patient({ telecom: [{ system: 'email', value: `p${run}@example.org` }] });
    const journey = await journeyFor(unreachable);
    const code = `wl1-${run}`;
    const entry = await wait(unreachable, 1, code);
    // The waitlist entry on its journey: the Task goes to that journey's care manager.
    const e = await h.fhir.read<Appointment>('Appointment', entry, { noCache: true });
    await h.fhir.update<Appointment>({
      ...e,
      id: entry,
      extension: [
        {
          url: canonical.journeyReferenceExtension,
          valueReference: { reference: `EpisodeOfCare/${journey}` },
        },
      ],
    });
    await wait(reachable, 2, code);
    const slot = await freeSlot(code);
    await free(slot);

    const offer = await offerTo(unreachable);
    const [task, ...more] = await offerTasks(offer.id!);
    expect(more).toEqual([]);
    const held = await h.fhir.read<Slot>('Slot', slot.id!, { noCache: true });
    const expires = held.extension
      ?.find((x) => x.url === canonical.slotHoldExtension)
      ?.extension?.find((x) => x.url === 'expires')?.valueInstant;
    expect(task).toMatchObject({
      status: 'requested',
      priority: 'urgent',
      for: { reference: `Patient/${unreachable}` },
      owner: { reference: manager },
      basedOn: [{ reference: `Appointment/${entry}` }],
      restriction: { period: { end: expires } },
    });
    const round = task!.identifier?.[0]?.value?.split('/Patient/')[0];
    expect(task!.identifier?.[0]).toEqual({
      system: canonical.waitlistOfferTaskSystem,
      value: `${round}/Patient/${unreachable}`,
    });

    // Nobody answers: the hold expires, the Slot moves on, the Task is cancelled with a Provenance.
    const next = await offerTo(reachable);
    const [closed] = await offerTasks(offer.id!);
    expect(closed).toMatchObject({
      status: 'cancelled',
      statusReason: { text: expect.stringContaining('expired') },
    });
    const prov = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `Task/${task!.id}` },
      { noCache: true },
    );
    // One for the offer that raised it, one for the expiry that closed it.
    expect(prov.map((p) => p.activity?.coding?.[0]?.code).sort()).toEqual(['CREATE', 'UPDATE']);
    expect(await offerTasks(next.id!)).toEqual([]);
    // A closed Task cannot be completed.
    const late = await post(`/fhir/Task/${task!.id}/$complete`, staff, params());
    expect(late.statusCode).toBe(422);
  });

  it('when staff accept the offer for the patient then the Task is completed in the same transaction; a replayed accept changes nothing', async () => {
    const unreachable = await patient({
      // Opted out of everything: the e-mail address does not make them reachable.
      telecom: [{ system: 'email', value: `q${run}@example.org` }],
      extension: [{ url: canonical.engagementOptOutExtension, valueCode: 'all' }],
    });
    const code = `wl2-${run}`;
    await wait(unreachable, 1, code);
    const slot = await freeSlot(code);
    await free(slot);
    const offer = await offerTo(unreachable);
    const [task] = await offerTasks(offer.id!);
    expect(task?.status).toBe('requested');
    const accept = () =>
      post(
        '/fhir/Appointment/$accept-offer',
        staff,
        params({ name: 'offer', valueReference: { reference: `Communication/${offer.id}` } }),
      );
    const res = await accept();
    expect(res.statusCode, res.body).toBe(200);
    const [done] = await offerTasks(offer.id!);
    expect(done).toMatchObject({ status: 'completed', statusReason: { text: 'Waitlist offer accepted' } });
    const version = done!.meta?.versionId;
    expect((await accept()).statusCode).toBe(200);
    const [still] = await offerTasks(offer.id!);
    expect(still!.meta?.versionId).toBe(version);
    const prov = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `Task/${task!.id}` },
      { noCache: true },
    );
    // The offer's and the acceptance's, each naming the Slot too; the replay added none.
    expect(prov).toHaveLength(2);
    expect(prov.every((p) => p.target.some((r) => r.reference === `Slot/${slot.id}`))).toBe(true);
  });
});
