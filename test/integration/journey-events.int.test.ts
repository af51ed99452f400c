/**
 * Journeys that move by themselves, end to end against the real HAPI and Redis: resources written straight to
 * the FHIR server (as an EHR would) reach Careway through the REST-hook or the reconciliation sweep, and move
 * their journeys: an active CarePlan to care, with recurring check-ups on to continuous-care; a completed one
 * to recovery; a fulfilled Appointment or a finished outpatient Encounter to care. Each change has a
 * Provenance naming its trigger; replays write nothing; job data and logs hold ids only.
 *
 * The HAPI and Redis may be shared with other test runs, so nothing here moves journeys it did not make: the
 * Subscriptions Careway creates at start point at a closed port and are removed at once, HAPI's own delivery
 * is tested with a Subscription scoped to this file's patient, and the sweep is given a hook that queues only
 * this file's resources.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Appointment,
  CarePlan,
  Encounter,
  EpisodeOfCare,
  Patient,
  Provenance,
  Resource,
  Subscription,
} from 'fhir/r4.js';
import { bookedOnFhir, startHarness, uniq, until, type Harness } from '../support/harness.js';
import { freePort } from '../../src/devstack/processes.js';
import { canonical } from '../../src/fhir/canonical.js';
import { readState } from '../../src/journey/episode.js';
import type { JourneyStage } from '../../src/journey/stages.js';
import { sweep } from '../../src/reminders/sweep-worker.js';
import { ensureSubscriptions, HOOK_PATH } from '../../src/reminders/subscription.js';
import { exec } from '../../src/reminders/journey-event-worker.js';
import type { EventResourceType } from '../../src/journey/resource-events.js';

const SECRET = 'journey-hook-secret-0123456789';
const CANARY = `Zyxcanary${uniq()}`;
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const ACTOR = { subject: 'journey-events-test' };
let h: Harness;
let startupEndpoint: string;
let startupSubscriptions: Subscription[] = [];

const subscriptionsAt = (endpoint: string) =>
  h.fhir.searchAll<Subscription>('Subscription', { url: endpoint }, { noCache: true });
/**
 * Removes the Subscriptions at an endpoint. HAPI activates a new one by updating it (requested → active), and
 * that update brings back one deleted before it: wait for activation, delete, and check they stay gone.
 */
async function unsubscribe(endpoint: string): Promise<void> {
  await until('the subscriptions to be activated before removal', async () =>
    (await subscriptionsAt(endpoint)).every((s) => s.status !== 'requested') ? true : undefined,
  );
  for (const s of await subscriptionsAt(endpoint)) await h.fhir.request('DELETE', `Subscription/${s.id}`);
  await until('the subscriptions to be gone', async () =>
    (await subscriptionsAt(endpoint)).length === 0 ? true : undefined,
  );
}

beforeAll(async () => {
  // A public URL nobody listens on: the app subscribes at start, and HAPI's deliveries of other runs' changes
  // go nowhere. Read and removed at once; the first test checks what was there.
  const closed = await freePort();
  startupEndpoint = `http://127.0.0.1:${closed}${HOOK_PATH}`;
  h = await startHarness({ PUBLIC_BASE_URL: `http://127.0.0.1:${closed}`, FHIR_WEBHOOK_SECRET: SECRET });
  startupSubscriptions = await subscriptionsAt(startupEndpoint);
  await unsubscribe(startupEndpoint);
});
afterAll(async () => {
  await unsubscribe(startupEndpoint);
  await h.close();
});

async function patient(): Promise<string> {
  return (
    await h.fhir.create<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
      name: [{ given: ['Ada'], family: CANARY }],
    })
  ).resource.id!;
}
async function journey(patientId: string, stage: JourneyStage): Promise<string> {
  const r = await h.app.journeys.startJourney(
    { patientId, identifier: { system: 'urn:careway:test:journey', value: uniq() }, stage },
    ACTOR,
  );
  return r.episode.id!;
}
const episode = (id: string) => h.fhir.read<EpisodeOfCare>('EpisodeOfCare', id, { noCache: true });
const stageOf = async (id: string) => readState(await episode(id)).stage;
const provenances = (id: string) =>
  h.fhir.searchAll<Provenance>('Provenance', { target: `EpisodeOfCare/${id}` }, { noCache: true });
const triggeredBy = async (journeyId: string, ref: string) =>
  (await provenances(journeyId)).filter((p) => p.entity?.some((e) => e.what.reference === ref));
const journeyLink = (id: string) => [
  { url: canonical.journeyReferenceExtension, valueReference: { reference: `EpisodeOfCare/${id}` } },
];

/** Delivers a resource to the hook as HAPI does: PUT `<endpoint>/<type>/<id>` with the bearer secret. */
const deliver = (r: Resource, secret = SECRET) =>
  h.app.inject({
    method: 'PUT',
    url: `${HOOK_PATH}/${r.resourceType}/${r.id}`,
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/fhir+json' },
    payload: JSON.stringify(r),
  });

/** The journey-event jobs queued for a resource id, in any state. */
async function jobsFor(id: string) {
  const all = await h.app.reminders.journeyEvents.queue.getJobs(
    ['waiting', 'active', 'delayed', 'completed', 'failed'],
    0,
    -1,
  );
  return all.filter((j) => j.data.id === id);
}
/** Waits until `n` journey-event jobs for the id have completed (failing at once on a failed one). */
async function completed(id: string, n: number): Promise<void> {
  await until(`${n} journey-event job(s) for ${id}`, async () => {
    const jobs = await jobsFor(id);
    const failed = jobs.find((j) => j.failedReason);
    if (failed) throw new Error(`journey-event job failed: ${failed.failedReason}`);
    return (await Promise.all(jobs.map((j) => j.isCompleted()))).filter(Boolean).length >= n
      ? true
      : undefined;
  });
}

/**
 * Runs the real sweep over the last two minutes; its journey hook queues only `mine` (what other runs changed
 * on a shared server is not this file's to move). Returns what the sweep found among `mine`.
 */
async function sweepMine(mine: readonly string[]): Promise<string[]> {
  const key = `${h.config.queuePrefix}:journey-events-test:last`;
  await h.app.redis.producer.set(key, String(Date.now() - 60_000));
  const found: string[] = [];
  await sweep(h.fhir, h.app.redis.producer, key, async () => undefined, Date.now(), {
    journeyEvent: async (type: EventResourceType, id: string) => {
      if (!mine.includes(`${type}/${id}`)) return;
      found.push(`${type}/${id}`);
      await h.app.reminders.journeyEvents.add({ resourceType: type, id, source: 'sweep' });
    },
  });
  return found.sort();
}

/** Versions and Provenance counts of journeys, to show that a replay wrote nothing. */
const snapshot = async (ids: readonly string[]) =>
  Promise.all(ids.map(async (id) => [(await episode(id)).meta?.versionId, (await provenances(id)).length]));

describe('subscriptions', () => {
  it('when Careway starts with a public URL then it subscribes to Appointment, CarePlan and Encounter changes at one endpoint, once', async () => {
    expect(startupSubscriptions.map((s) => s.criteria).sort()).toEqual([
      'Appointment?',
      'CarePlan?',
      'Encounter?',
    ]);
    for (const s of startupSubscriptions) {
      expect(s.channel.type).toBe('rest-hook');
      expect(s.channel.header).toEqual([`Authorization: Bearer ${SECRET}`]);
    }
    // Created again on every start and by every replica: each type once.
    const base = new URL(`http://127.0.0.1:9/ensure-${uniq()}`);
    const endpoint = `${base.toString()}${HOOK_PATH}`;
    try {
      expect(await ensureSubscriptions(h.fhir, base, SECRET)).toEqual({
        Appointment: 'created',
        CarePlan: 'created',
        Encounter: 'created',
      });
      expect(await ensureSubscriptions(h.fhir, base, SECRET)).toEqual({
        Appointment: 'existing',
        CarePlan: 'existing',
        Encounter: 'existing',
      });
      expect(await subscriptionsAt(endpoint)).toHaveLength(3);
    } finally {
      await unsubscribe(endpoint);
    }
  });
});

describe('journey events from direct edits on the FHIR server', () => {
  it('when an active CarePlan with a recurring check-up is delivered by the REST-hook then the journey reaches care, then continuous-care, a Provenance for each naming the plan; a replayed delivery writes nothing', async () => {
    const pid = await patient();
    const j = await journey(pid, 'access');
    const plan = (
      await h.fhir.create<CarePlan>({
        resourceType: 'CarePlan',
        extension: journeyLink(j),
        status: 'active',
        intent: 'plan',
        subject: { reference: `Patient/${pid}` },
        activity: [
          {
            detail: {
              status: 'scheduled',
              description: `Knee check-up for ${CANARY}`,
              scheduledTiming: { repeat: { frequency: 1, period: 3, periodUnit: 'mo' } },
            },
          },
        ],
      })
    ).resource;
    expect((await deliver(plan, 'not-the-secret-0123456789')).statusCode).toBe(401);
    expect((await deliver(plan)).statusCode).toBe(200);
    await until('continuous-care', async () => ((await stageOf(j)) === 'continuous-care' ? true : undefined));

    const eoc = await episode(j);
    expect(eoc.meta?.versionId).toBe('3');
    const history = readState(eoc).stageHistory;
    expect(history.map((p) => [p.stage, p.reason])).toEqual([
      ['access', undefined],
      ['care', 'event: careplan-active'],
      ['continuous-care', 'event: followup-plan-active'],
    ]);
    const provs = await triggeredBy(j, `CarePlan/${plan.id}`);
    expect(provs.map((p) => p.activity?.text).sort()).toEqual([
      'stage:access->care',
      'stage:care->continuous-care',
    ]);
    for (const p of provs) {
      expect(p.entity?.[0]?.what.display).toBe(`CarePlan/${plan.id} active (rest-hook)`);
      expect(p.agent[0]?.who.identifier?.value).toBe('careway');
    }

    // HAPI delivers again (a retry, a restart): one more job, no new version, no new Provenance.
    await completed(plan.id!, 1);
    const before = await snapshot([j]);
    expect((await deliver(plan)).statusCode).toBe(200);
    await completed(plan.id!, 2);
    expect(await snapshot([j])).toEqual(before);
  });

  it('when a CarePlan is completed on HAPI then the sweep moves its journey to recovery; a second sweep writes nothing', async () => {
    const pid = await patient();
    const j = await journey(pid, 'care');
    const created = await h.fhir.create<CarePlan>({
      resourceType: 'CarePlan',
      extension: journeyLink(j),
      status: 'active',
      intent: 'plan',
      subject: { reference: `Patient/${pid}` },
    });
    const plan = await h.fhir.update<CarePlan>({
      ...created.resource,
      id: created.resource.id!,
      status: 'completed',
    });
    const ref = `CarePlan/${plan.resource.id}`;
    expect(await sweepMine([ref])).toEqual([ref]);
    await until('recovery', async () => ((await stageOf(j)) === 'recovery' ? true : undefined));
    const provs = await triggeredBy(j, ref);
    expect(provs).toHaveLength(1);
    expect(provs[0]?.entity?.[0]?.what.display).toBe(`${ref} completed (sweep)`);
    expect(provs[0]?.reason?.[0]?.text).toBe('event: treatment-completed');

    await completed(plan.resource.id!, 1);
    const before = await snapshot([j]);
    expect(await sweepMine([ref])).toEqual([ref]);
    await completed(plan.resource.id!, 2);
    expect(await snapshot([j])).toEqual(before);
  });

  it("when an Appointment booked on HAPI is later fulfilled then the patient's open journey moves from access to care (the Appointment names no journey); while booked it raised nothing", async () => {
    const pid = await patient();
    const j = await journey(pid, 'access');
    const booked = await bookedOnFhir(h.fhir, pid, Date.now() - 3600_000, 30);
    const ref = `Appointment/${booked.id}`;
    // A booked one: the hook re-plans its reminders but queues no journey event, and the sweep does not list it.
    expect((await deliver(booked)).statusCode).toBe(200);
    expect(await sweepMine([ref])).toEqual([]);
    expect(await jobsFor(booked.id!)).toHaveLength(0);

    const fulfilled = await h.fhir.update<Appointment>({ ...booked, id: booked.id!, status: 'fulfilled' });
    expect(await sweepMine([ref])).toEqual([ref]);
    await until('care', async () => ((await stageOf(j)) === 'care' ? true : undefined));
    const provs = await triggeredBy(j, ref);
    expect(provs.map((p) => [p.reason?.[0]?.text, p.activity?.text])).toEqual([
      ['event: visit-fulfilled', 'stage:access->care'],
    ]);

    // The hook delivers the same change the sweep already saw: nothing more.
    await completed(booked.id!, 1);
    const before = await snapshot([j]);
    expect((await deliver(fulfilled.resource)).statusCode).toBe(200);
    await completed(booked.id!, 2);
    expect(await snapshot([j])).toEqual(before);
  });

  it('when an outpatient Encounter finishes then its journey (Encounter.episodeOfCare) reaches care; an inpatient one finishing (a discharge) is not even queued', async () => {
    const [p1, p2] = [await patient(), await patient()];
    const [j1, j2] = [await journey(p1, 'access'), await journey(p2, 'access')];
    const encounter = async (pid: string, j: string, code: string) =>
      (
        await h.fhir.create<Encounter>({
          resourceType: 'Encounter',
          status: 'finished',
          class: { system: ACT, code },
          subject: { reference: `Patient/${pid}` },
          episodeOfCare: [{ reference: `EpisodeOfCare/${j}` }],
        })
      ).resource.id!;
    const amb = await encounter(p1, j1, 'AMB');
    const imp = await encounter(p2, j2, 'IMP');
    expect(await sweepMine([`Encounter/${amb}`, `Encounter/${imp}`])).toEqual([`Encounter/${amb}`]);
    await until('care', async () => ((await stageOf(j1)) === 'care' ? true : undefined));
    expect(await triggeredBy(j1, `Encounter/${amb}`)).toHaveLength(1);

    // Even asked directly, the inpatient Encounter raises nothing: A03 is the HL7 intake's discharge.
    expect(
      await exec(
        { resourceType: 'Encounter', id: imp, source: 'sweep' },
        { fhir: h.fhir, journeys: h.app.journeys },
      ),
    ).toEqual([]);
    expect(await stageOf(j2)).toBe('access');
    expect((await episode(j2)).meta?.versionId).toBe('1');
  });

  it(
    'when HAPI itself delivers a finished outpatient Encounter (a Subscription scoped to this patient) then the journey moves',
    { timeout: 120_000 },
    async () => {
      const pid = await patient();
      const j = await journey(pid, 'access');
      const port = await freePort();
      await h.app.listen({ port, host: '127.0.0.1' });
      const endpoint = `http://127.0.0.1:${port}${HOOK_PATH}`;
      try {
        const sub = await h.fhir.create<Subscription>({
          resourceType: 'Subscription',
          status: 'requested',
          reason: 'journey-events test',
          criteria: `Encounter?subject=Patient/${pid}`,
          channel: {
            type: 'rest-hook',
            endpoint,
            payload: 'application/fhir+json',
            header: [`Authorization: Bearer ${SECRET}`],
          },
        });
        await until('the subscription to be active', async () =>
          (await h.fhir.read<Subscription>('Subscription', sub.resource.id!, { noCache: true })).status ===
          'active'
            ? true
            : undefined,
        );
        const enc = await h.fhir.create<Encounter>({
          resourceType: 'Encounter',
          status: 'finished',
          class: { system: ACT, code: 'AMB' },
          subject: { reference: `Patient/${pid}` },
          episodeOfCare: [{ reference: `EpisodeOfCare/${j}` }],
        });
        await until(
          "care, through HAPI's delivery",
          async () => ((await stageOf(j)) === 'care' ? true : undefined),
          60_000,
        );
        const provs = await triggeredBy(j, `Encounter/${enc.resource.id}`);
        expect(provs.map((p) => p.entity?.[0]?.what.display)).toEqual([
          `Encounter/${enc.resource.id} finished (rest-hook)`,
        ]);
      } finally {
        await unsubscribe(endpoint);
      }
    },
  );

  it('when journey events are queued and applied then job data holds ids only, and no PHI reaches the logs', async () => {
    const jobs = await h.app.reminders.journeyEvents.queue.getJobs(['completed', 'failed', 'waiting'], 0, -1);
    expect(jobs.length).toBeGreaterThan(0);
    for (const job of jobs) {
      expect(Object.keys(job.data).sort()).toEqual(['id', 'resourceType', 'source']);
      expect(JSON.stringify(job.data)).not.toContain(CANARY);
    }
    expect(h.rawLogs.join('\n')).not.toContain(CANARY);
    expect(await h.app.reminders.journeyEvents.dead.getJobs(['waiting', 'completed'], 0, -1)).toEqual([]);
  });
});
