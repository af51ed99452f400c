/**
 * Many replicas, one truth (issue #18): what each role serves, paging links that work on every replica sharing
 * PAGING_SECRET (and on no other), and sweeps that run once per cluster however many worker processes keep them.
 * The three-process HL7 order test is replicas.int.test.ts; SIGTERM's order is shutdown.int.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bundle, OperationOutcome, Patient } from 'fhir/r4.js';
import { startHarness, testEnv, makeKeys, uniq, until, type Harness } from '../support/harness.js';
import { loadConfig } from '../../src/config/config.js';
import { createConnections, type RedisConnections } from '../../src/queues/connections.js';
import { QueueRegistry } from '../../src/queues/registry.js';
import { queueSpecs } from '../../src/queues/specs.js';
import { init as initSweep } from '../../src/reminders/sweep-worker.js';
import { FhirClient } from '../../src/fhir/client.js';

const secret = `paging-${uniq()}-0123456789abcdefghijklmnop`;
const family = `Paging${uniq()}`;
let a: Harness;
let b: Harness;
let other: Harness;

beforeAll(async () => {
  // Three replicas of one deployment would share QUEUE_PREFIX too; paging does not depend on it.
  [a, b, other] = await Promise.all([
    startHarness({ PAGING_SECRET: secret }),
    startHarness({ PAGING_SECRET: secret }),
    startHarness({ PAGING_SECRET: `${secret}-rotated` }),
  ]);
  for (let i = 0; i < 3; i++)
    await a.fhir.create<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
      name: [{ family }],
    });
}, 120_000);
afterAll(async () => {
  await Promise.all([a?.close(), b?.close(), other?.close()]);
});

/** A GET on one replica as the same caller (each replica trusts its own test key; the subject is the same). */
async function get(h: Harness, url: string) {
  const token = await h.token({ scope: 'user/Patient.rs', sub: 'dr-paging' });
  return h.app.inject({
    method: 'GET',
    url,
    headers: { authorization: `Bearer ${token}`, host: 'careway.test' },
  });
}

describe('paging links across replicas', () => {
  it('when a page link made by one replica is followed on another with the same PAGING_SECRET then it works, and with another secret then 403', async () => {
    const first = await get(a, `/fhir/Patient?family=${family}&_count=1&_sort=_id`);
    expect(first.statusCode).toBe(200);
    const next = first.json<Bundle>().link?.find((l) => l.relation === 'next')?.url ?? '';
    expect(next).toMatch(/_getpages=.*_cwsig=/);
    const path = next.replace('http://careway.test', '');

    const onB = await get(b, path);
    expect(onB.statusCode).toBe(200);
    const page = onB.json<Bundle>();
    expect(page.entry).toHaveLength(1);
    expect((page.entry?.[0]?.resource as Patient).name?.[0]?.family).toBe(family);
    // b signs the links it hands on with the same key: its own next link works back on a.
    const then = page.link?.find((l) => l.relation === 'next')?.url ?? '';
    expect((await get(a, then.replace('http://careway.test', ''))).statusCode).toBe(200);

    const refused = await get(other, path);
    expect(refused.statusCode).toBe(403);
    const oo = refused.json<OperationOutcome>();
    expect(oo.resourceType).toBe('OperationOutcome');
    expect(oo.issue[0]?.diagnostics).toMatch(/paging link/);
  });
});

describe('roles', () => {
  it('when a process has only the workers role then it serves health, ready and metrics and no API route, and a draining process is not ready', async () => {
    const w = await startHarness({ CAREWAY_ROLES: 'workers' });
    try {
      expect((await w.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
      // Ready as soon as its checks pass (a loaded shared HAPI may miss one 2 s deadline).
      await until(
        'ready',
        async () => {
          const r = await w.app.inject({ method: 'GET', url: '/ready' });
          return r.statusCode === 200 ? true : undefined;
        },
        90_000,
      );
      const token = await w.token({ scope: 'system/*.rs' });
      const auth = { authorization: `Bearer ${token}` };
      expect((await w.app.inject({ method: 'GET', url: '/metrics', headers: auth })).statusCode).toBe(200);
      for (const url of ['/fhir/Patient', '/fhir/metadata', '/hl7/messages'])
        expect((await w.app.inject({ method: 'GET', url, headers: auth })).statusCode).toBe(404);
      expect(w.app.hl7.mllpPort()).toBeUndefined();
      const running = w.app.areas.queues.all().flatMap((r) => r.workers.map((x) => x.isRunning()));
      expect(running.length).toBeGreaterThan(0);
      expect(running.every(Boolean)).toBe(true);

      w.app.lifecycle.draining = true;
      const ready = await w.app.inject({ method: 'GET', url: '/ready' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json<{ status: string }>().status).toBe('draining');
      expect((await w.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    } finally {
      await w.close();
    }
  });

  it('when a process has the api and mllp roles only then it listens and serves routes, and runs no worker', async () => {
    const api = await startHarness({ CAREWAY_ROLES: 'api,mllp' });
    try {
      expect(api.app.hl7.mllpPort()).toBeGreaterThan(0);
      expect((await api.app.inject({ method: 'GET', url: '/fhir/metadata' })).statusCode).toBe(200);
      const running = api.app.areas.queues.all().flatMap((r) => r.workers.map((x) => x.isRunning()));
      expect(running.some(Boolean)).toBe(false);
    } finally {
      await api.close();
    }
  });
});

describe('sweeps across worker processes', () => {
  const instances: { conns: RedisConnections; queues: QueueRegistry }[] = [];
  let fhir: FhirClient;
  afterAll(async () => {
    for (const i of instances) {
      await i.queues.close();
      await i.conns.closeAll();
    }
    await fhir?.close();
  });

  it(
    'when three worker processes keep the reminder sweep then each tick runs once in the cluster, not once per process',
    { timeout: 120_000 },
    async () => {
      const config = loadConfig(testEnv(makeKeys(), { QUEUE_PREFIX: `sw${uniq()}` }));
      fhir = new FhirClient({ baseUrl: config.fhirBaseUrl });
      const runs: { instance: number; jobId: string }[] = [];
      for (let n = 0; n < 3; n++) {
        // Each its own connections and registry, as separate processes have.
        const conns = createConnections(config.redis, config.queuePrefix, true);
        const queues = new QueueRegistry(conns, queueSpecs(config), { runWorkers: true });
        const ignore = async (): Promise<void> => undefined;
        const sweep = initSweep(queues, conns.producer, {
          fhir,
          prefix: config.queuePrefix,
          replan: ignore,
          syncCarePlan: ignore,
          journeyEvent: ignore,
        });
        sweep.worker.on('completed', (job) => runs.push({ instance: n, jobId: job.id ?? '' }));
        instances.push({ conns, queues });
        expect(await conns.ping(5000)).toBe(true);
        // Start the look-back now, not a day ago: the sweep reads only what changed on the shared server lately.
        await conns.producer.set(`${config.queuePrefix}:reminder-sweep:last`, String(Date.now()));
        await queues.start();
        await sweep.start(1000);
      }
      await until('six sweeps', () => (runs.length >= 6 ? true : undefined), 90_000, 100);
      const ids = runs.map((r) => r.jobId);
      // Every run is its own tick of the one scheduler (ids repeat:<scheduler>:<tick>), and no tick ran twice.
      expect(new Set(ids).size).toBe(ids.length);
      const ticks = ids.map((id) => {
        const m = /^repeat:.*:(\d+)$/.exec(id);
        expect(m, id).toBeTruthy();
        return Number(m![1]);
      });
      ticks.sort((x, y) => x - y);
      for (let i = 1; i < ticks.length; i++) expect(ticks[i]! - ticks[i - 1]!).toBeGreaterThanOrEqual(1000);
      expect(await instances[0]!.queues.all()[0]!.queues[0]!.getJobSchedulersCount()).toBe(1);
    },
  );
});
