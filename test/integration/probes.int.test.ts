/**
 * Fixes for what probing Careway from outside found (issue #17, part 5), end to end against the real HAPI and
 * Redis: the queue dashboard's actions need an admin scope and are logged; bodies are bounded per route; an HL7
 * field repeated 10,000 times is refused with an ERR naming it; state Redis forgets comes back (job schedulers
 * after a Redis restart, slot holds whose release job was lost); `/ready` answers 503 quickly while the FHIR
 * server hangs.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import type { Parameters, Patient, Practitioner, Schedule, Slot } from 'fhir/r4.js';
import { makeKeys, startHarness, testEnv, uniq, until, type Harness } from '../support/harness.js';
import { startRedis, type LocalService } from '../../src/devstack/processes.js';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { canonical } from '../../src/fhir/canonical.js';

const params = (...p: NonNullable<Parameters['parameter']>): Parameters => ({
  resourceType: 'Parameters',
  parameter: p,
});

describe('on the shared Redis', () => {
  let h: Harness;
  let reader: string;
  let admin: string;
  beforeAll(async () => {
    h = await startHarness();
    reader = await h.token({ scope: 'user/Communication.r', sub: 'reader-1' });
    admin = await h.token({ scope: 'user/Communication.r user/careway.admin', sub: 'admin-1' });
  });
  afterAll(async () => {
    await h?.close();
  });

  describe('queue dashboard', () => {
    const put = (url: string, token: string) =>
      h.app.inject({ method: 'PUT', url, headers: { authorization: `Bearer ${token}` } });

    it('when a staff reader pauses, empties or obliterates a queue then it is refused and nothing changes', async () => {
      const reminders = h.app.reminders.queue.queue;
      for (const url of [
        '/admin/queues/api/queues/reminders/pause',
        '/admin/queues/api/queues/pause',
        '/admin/queues/api/queues/slot-holds/empty',
        '/admin/queues/api/queues/slot-holds/obliterate',
      ]) {
        const res = await put(url, reader);
        expect(res.statusCode, url).toBe(403);
        expect(res.json<{ issue: { diagnostics: string }[] }>().issue[0]!.diagnostics).toMatch(
          /careway\.admin/,
        );
      }
      const add = await h.app.inject({
        method: 'POST',
        url: '/admin/queues/api/queues/reminders/add',
        headers: { authorization: `Bearer ${reader}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ name: 'x', data: {} }),
      });
      expect(add.statusCode).toBe(403);
      expect(await reminders.isPaused()).toBe(false);
      expect(h.logs.filter((l) => l['msg'] === 'admin action refused').length).toBeGreaterThanOrEqual(4);
    });

    it('when a staff reader opens the board then every queue is shown read-only', async () => {
      const res = await h.app.inject({
        method: 'GET',
        url: '/admin/queues/api/queues',
        headers: { authorization: `Bearer ${reader}` },
      });
      expect(res.statusCode).toBe(200);
      const queues = res.json<{ queues: { readOnlyMode: boolean; allowRetries: boolean }[] }>().queues;
      expect(queues.length).toBeGreaterThan(0);
      expect(queues.every((q) => q.readOnlyMode && !q.allowRetries)).toBe(true);
      const forAdmin = await h.app.inject({
        method: 'GET',
        url: '/admin/queues/api/queues',
        headers: { authorization: `Bearer ${admin}` },
      });
      expect(forAdmin.json<{ queues: { readOnlyMode: boolean }[] }>().queues[0]!.readOnlyMode).toBe(false);
    });

    it('when an admin pauses and resumes a queue then it happens, and each action is logged with who, the route and the queue', async () => {
      const reminders = h.app.reminders.queue.queue;
      expect((await put('/admin/queues/api/queues/reminders/pause', admin)).statusCode).toBe(200);
      expect(await reminders.isPaused()).toBe(true);
      expect((await put('/admin/queues/api/queues/reminders/resume', admin)).statusCode).toBe(200);
      expect(await reminders.isPaused()).toBe(false);
      const actions = h.logs.filter((l) => l['msg'] === 'admin action');
      expect(actions.map((l) => [l['subject'], l['route'], l['queue'], l['status']])).toEqual([
        ['admin-1', '/admin/queues/api/queues/:queueName/pause', 'reminders', 200],
        ['admin-1', '/admin/queues/api/queues/:queueName/resume', 'reminders', 200],
      ]);
    });
  });

  describe('body limits', () => {
    const big = (bytes: number) => 'x'.repeat(bytes);

    it('when a 2 MiB QuestionnaireResponse is posted then it is refused with 413 before anything is stored', async () => {
      const token = await h.token({ scope: 'user/QuestionnaireResponse.c' });
      const res = await h.app.inject({
        method: 'POST',
        url: '/fhir/QuestionnaireResponse',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
        payload: JSON.stringify({
          resourceType: 'QuestionnaireResponse',
          status: 'completed',
          item: [{ linkId: '1', answer: [{ valueString: big(2 * 1024 * 1024) }] }],
        }),
      });
      expect(res.statusCode).toBe(413);
    });

    it('when a 2 MiB Bundle is posted then it is not refused for its size (bundles take REFERRAL_MAX_BYTES)', async () => {
      const token = await h.token({ scope: 'system/*.cruds' });
      const res = await h.app.inject({
        method: 'POST',
        url: '/fhir',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
        payload: JSON.stringify({
          resourceType: 'Bundle',
          type: 'batch',
          entry: [{ request: { method: 'GET', url: `Patient?_id=${uniq()}` } }],
          meta: { tag: [{ system: 'urn:careway:test:pad', code: big(2 * 1024 * 1024) }] },
        }),
      });
      expect(res.statusCode).not.toBe(413);
    });
  });

  describe('HL7 field repetitions', () => {
    it('when one message repeats PID-3 10,000 times then it is refused with AE and an ERR naming PID-3, and no Patient is written', async () => {
      const token = await h.token({ scope: 'system/MessageHeader.c' });
      const mrn = `REP${uniq()}`;
      const msg = [
        `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||ADT^A04^ADT_A01|${mrn}|P|2.5`,
        'EVN|A04|20240115083015',
        `PID|1||${Array.from({ length: 10_000 }, () => `${mrn}^^^MAINHOSP^MR`).join('~')}||Doe^Jane||19700101|F`,
        'PV1|1|O',
      ].join('\r');
      const res = await h.app.inject({
        method: 'POST',
        url: '/hl7',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'x-application/hl7-v2+er7' },
        payload: msg,
      });
      expect(res.statusCode).toBe(422);
      expect(res.body).toMatch(/MSA\|AE\|/);
      expect(res.body).toMatch(/ERR\|\|PID\^1\^3/);
      expect(res.body).toMatch(/10000 repetitions/);
      const found = await h.fhir.searchAll<Patient>('Patient', { identifier: mrn }, { noCache: true });
      expect(found).toEqual([]);
    });
  });
});

describe('when Redis restarts without persistence', () => {
  let redis: LocalService;
  let h: Harness;
  let staff: string;
  beforeAll(async () => {
    redis = await startRedis({ persistent: false });
    // No workers: the sweeps must not run against the shared FHIR server, and a lost release job is the point.
    h = await startHarness({
      REDIS_URL: redis.url,
      RUN_WORKERS: 'false',
      NOSHOW_SWEEP_INTERVAL: 'PT1H',
      REMINDER_SWEEP_INTERVAL: 'PT1H',
      SLOT_HOLD_TTL: 'PT2S',
    });
    staff = await h.token({ scope: 'user/*.cruds', sub: 'nurse-1' });
  });
  afterAll(async () => {
    await h?.close();
    await redis?.stop();
  });

  const restartRedis = async (): Promise<void> => {
    const port = Number(new URL(redis.url).port);
    await redis.stop();
    redis = await startRedis({ port, strictPort: true, persistent: false });
  };
  const post = (url: string, body: unknown) =>
    h.app.inject({
      method: 'POST',
      url,
      headers: { authorization: `Bearer ${staff}`, 'content-type': 'application/fhir+json' },
      payload: JSON.stringify(body),
    });
  const patient = async () =>
    (
      await h.fhir.create<Patient>({
        resourceType: 'Patient',
        identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
      })
    ).resource.id!;
  const freeSlots = async (n: number): Promise<string[]> => {
    const dr = (await h.fhir.create<Practitioner>({ resourceType: 'Practitioner' })).resource.id!;
    const schedule = (
      await h.fhir.create<Schedule>({
        resourceType: 'Schedule',
        active: true,
        extension: [{ url: canonical.timezoneExtension, valueCode: 'UTC' }],
        actor: [{ reference: `Practitioner/${dr}` }],
      })
    ).resource.id!;
    const base = Date.now() + 3 * 86400_000;
    const ids: string[] = [];
    for (let i = 0; i < n; i++)
      ids.push(
        (
          await h.fhir.create<Slot>({
            resourceType: 'Slot',
            schedule: { reference: `Schedule/${schedule}` },
            status: 'free',
            start: new Date(base + i * 1800_000).toISOString(),
            end: new Date(base + (i + 1) * 1800_000).toISOString(),
          })
        ).resource.id!,
      );
    return ids;
  };
  const hold = (slot: string, patientId: string) =>
    post(
      '/fhir/Appointment/$hold',
      params(
        { name: 'slot', valueReference: { reference: `Slot/${slot}` } },
        { name: 'patient', valueReference: { reference: `Patient/${patientId}` } },
      ),
    );
  const book = (slot: string, patientId: string) =>
    post(
      '/fhir/Appointment/$book',
      params(
        { name: 'slot', valueReference: { reference: `Slot/${slot}` } },
        { name: 'patient', valueReference: { reference: `Patient/${patientId}` } },
      ),
    );
  const schedulerIds = async (): Promise<string[]> =>
    [
      (await h.app.reminders.sweep.queue.getJobScheduler('reminder-sweep'))?.key,
      (await noShowQueue().getJobScheduler('no-show-sweep'))?.key,
    ].filter((k): k is string => !!k);
  const noShowQueue = () => h.app.areas.queues.bullQueues().find((q) => q.name === 'no-show-sweep')!;

  it('when Redis comes back empty then the reminder and no-show sweep schedulers are registered again', async () => {
    expect((await schedulerIds()).sort()).toEqual(['no-show-sweep', 'reminder-sweep']);
    await restartRedis();
    const back = await until(
      'the schedulers registered again',
      async () => {
        const ids = await schedulerIds().catch(() => []);
        return ids.length === 2 ? ids : undefined;
      },
      20_000,
      250,
    );
    expect(back.sort()).toEqual(['no-show-sweep', 'reminder-sweep']);
    expect(h.logs.some((l) => l['msg'] === 'job scheduler registered again')).toBe(true);
  });

  it('when a hold expired and its release job was lost then another patient books the Slot, and a new hold takes it', async () => {
    const [first, second] = await freeSlots(2);
    const a = await patient();
    const b = await patient();
    expect((await hold(first!, a)).statusCode).toBeLessThan(300);
    expect((await hold(second!, a)).statusCode).toBeLessThan(300);
    await restartRedis();
    await until('Redis reconnected', async () => ((await h.app.redis.ping(500)) ? true : undefined));
    // The holds expire (SLOT_HOLD_TTL=PT2S); nothing releases them (the release jobs went with Redis).
    await new Promise((r) => setTimeout(r, 2500));
    expect((await h.fhir.read<Slot>('Slot', first!, { noCache: true })).status).toBe('busy-tentative');
    const booked = await book(first!, b);
    expect(booked.statusCode, booked.body).toBe(201);
    const held = await hold(second!, b);
    expect(held.statusCode, held.body).toBeLessThan(300);
  });

  it('when a hold expired and its release job was lost then the sweep frees the Slot', async () => {
    const [slot] = await freeSlots(1);
    const a = await patient();
    expect((await hold(slot!, a)).statusCode).toBeLessThan(300);
    await restartRedis();
    await new Promise((r) => setTimeout(r, 2500));
    const freed = await h.app.scheduling.sweepExpiredHolds();
    expect(freed).toContain(slot);
    const after = await h.fhir.read<Slot>('Slot', slot!, { noCache: true });
    expect(after.status).toBe('free');
    expect(after.extension?.some((x) => x.url === canonical.slotHoldExtension) ?? false).toBe(false);
  });
});

describe('/ready while the FHIR server hangs', () => {
  let hung: Server;
  let app: FastifyInstance;
  const sockets = new Set<Socket>();
  beforeAll(async () => {
    // Accepts connections and never answers, as a stopped (SIGSTOP) or wedged server does.
    hung = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', () => r()));
    const address = hung.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const config = loadConfig(
      testEnv(makeKeys(), {
        FHIR_BASE_URL: `http://127.0.0.1:${port}/fhir`,
        CAREWAY_UPLOAD_PROFILES: 'false',
      }),
    );
    app = await buildApp({ config, logger: createLogger({ level: 'silent' }) });
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => hung.close(r));
  });

  it(
    'when the FHIR server accepts connections and never answers then /ready answers 503 naming the FHIR check',
    async () => {
      const res = await app.inject({ method: 'GET', url: '/ready' });
      expect(res.statusCode).toBe(503);
      const body = res.json<{ checks: Record<string, { status: string; detail?: string }> }>();
      expect(body.checks['fhir']).toMatchObject({ status: 'down' });
      expect(body.checks['redis']).toMatchObject({ status: 'up' });
    },
    // The answer must come within this (before the fix it took over 6 s: three attempts of 2 s each).
    4000,
  );
});
