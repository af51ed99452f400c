/**
 * P4: reminders due over a window, sent by two Careway worker processes, against raw BullMQ delayed no-op jobs
 * with the same due times on two workers, in the same run. Lateness is measured where it matters: for Careway
 * when the SMS provider (a local HTTP sink) receives the message, for the comparator when the no-op runs.
 * Every Careway send takes the whole path: re-read the Appointment and the Patient, the ledger, the signed
 * webhook, and the write-back queued; the bench then waits until every Communication is on HAPI and the planned
 * CommunicationRequest completed (the setup creates one per reminder, as planning does) and reports when. Careway runs with its default settings (REMINDER_CONCURRENCY). Also reports duplicates and Redis memory per scheduled reminder.
 *
 * BENCH_P4_REMINDERS (default 1,000) and BENCH_P4_WINDOW_S (default 60) size it; the target's 100,000 in
 * 10 minutes is a matter of setting them. For the raised target (1,000,000 due within an hour across three
 * worker processes on a Redis Cluster):
 * - BENCH_P4_WORKERS (default 2) worker processes, for Careway and for the comparator alike;
 * - BENCH_P4_REDIS=cluster starts a real 3-master Redis Cluster (devstack/redis-topologies.ts) for both paths;
 * - BENCH_P4_PER_APPOINTMENT (default 1) reminders per appointment (offsets PT60M, PT61M, …), so a million
 *   reminders need a tenth of the Patients and Appointments on HAPI; each still has its own CommunicationRequest,
 *   ledger key and job, and the sends of one appointment are spread over the window;
 * - BENCH_P4_RAW_WINDOW_S (default the window) runs the comparator at the same rate over a shorter window, so an
 *   hour-long Careway run does not need an hour-long comparator before it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import type { Appointment, Bundle, BundleEntry, Patient } from 'fhir/r4.js';
import { freePort } from '../src/devstack/processes.js';
import { projectRoot } from '../src/shared/paths.js';
import { reminderDelay, reminderJobId, reminderKey, type ReminderJob } from '../src/reminders/jobs.js';
import { canonical } from '../src/fhir/canonical.js';
import { loadOrCreateDevKey, DEV_AUDIENCE, DEV_ISSUER } from '../src/cli/dev-key.js';
import { median, percentile, writeResult, type Stack } from './lib.js';
import { serviceEnv } from '../src/shared/runtime.js';
import { connect, type RedisClient } from '../src/queues/connections.js';
import { queueKeyPrefix } from '../src/queues/keys.js';
import { QUEUES } from '../src/queues/specs.js';
import { startRedisCluster, type RedisTopology } from '../src/devstack/redis-topologies.js';
import type { RedisTarget } from '../src/config/config.js';

const SECRET = 'bench-sms-secret-0123456789';

/** Bytes used by Redis: summed over the masters on a cluster. */
async function usedMemory(redis: RedisClient): Promise<number> {
  const servers = 'nodes' in redis ? redis.nodes('master') : [redis];
  let total = 0;
  for (const server of servers)
    total += Number(/used_memory:(\d+)/.exec(await server.info('memory'))?.[1] ?? 0);
  return total;
}

/** Largest value without spreading a million arguments onto the stack. */
const maxOf = (xs: Iterable<number>): number => {
  let m = -Infinity;
  for (const x of xs) if (x > m) m = x;
  return m;
};

function progress(line: string): void {
  process.stderr.write(`P4 ${new Date().toISOString()} ${line}\n`);
}

/**
 * Runs fn(0), fn(size), fn(2 * size), … up to count, SETUP_IN_FLIGHT at a time (default 3): the set-up of a
 * million reminders is 1.2 million resources, and one transaction at a time leaves HAPI on PostgreSQL waiting
 * on each commit. Only the set-up runs in parallel; what is measured is unchanged.
 */
async function inBatches(count: number, size: number, fn: (start: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const start = next;
      next += size;
      await fn(start);
    }
  };
  await Promise.all(Array.from({ length: SETUP_IN_FLIGHT }, lane));
}
const SETUP_IN_FLIGHT = Math.max(1, Number(process.env['BENCH_P4_SETUP_IN_FLIGHT'] ?? 3));

function stats(lateness: number[]): { p50: number; p99: number; max: number } {
  return { p50: median(lateness), p99: percentile(lateness, 99), max: maxOf(lateness) };
}

export async function runP4(stack: Stack, n: number, windowS: number): Promise<string[]> {
  const run = Date.now().toString(36);
  const workerCount = Math.max(1, Number(process.env['BENCH_P4_WORKERS'] ?? 2));
  const perAppointment = Math.max(1, Number(process.env['BENCH_P4_PER_APPOINTMENT'] ?? 1));
  const rawWindowS = Math.min(windowS, Number(process.env['BENCH_P4_RAW_WINDOW_S'] ?? windowS));
  let topology: RedisTopology | undefined;
  if (process.env['BENCH_P4_REDIS'] === 'cluster') {
    progress('starting a 3-master Redis Cluster');
    topology = await startRedisCluster();
  }
  const onCluster = topology !== undefined;
  const target: RedisTarget = topology
    ? {
        mode: 'cluster',
        nodes: topology.nodes.split(',').map((a) => {
          const [host = '', port = ''] = a.split(':');
          return { host, port: Number(port) };
        }),
        auth: { tls: false },
      }
    : { mode: 'standalone', url: new URL(stack.redis) };
  const redis = connect(target, 'worker', 'bench-p4');
  try {
    return await measure();
  } finally {
    await redis.quit().catch(() => undefined);
    await topology?.stop();
  }

  async function measure(): Promise<string[]> {
    // --- Comparator: raw BullMQ delayed no-op jobs, as many workers, the same rate (over rawWindowS).
    const rawN = Math.max(1, Math.round((n * rawWindowS) / windowS));
    const rawPrefix = queueKeyPrefix(`p4raw${run}`, 'raw', onCluster);
    const rawQueue = new Queue('raw', { connection: redis, prefix: rawPrefix });
    const rawLate: number[] = [];
    let rawDone = 0;
    let rawLast = 0;
    const rawConnections = Array.from({ length: workerCount }, (_, w) =>
      connect(target, 'worker', `bench-raw-${w}`),
    );
    const rawWorkers = rawConnections.map(
      (connection) =>
        new Worker(
          'raw',
          async (job) => {
            rawLate.push(Date.now() - (job.data as { dueAt: number }).dueAt);
            rawDone++;
            rawLast = Date.now();
          },
          { connection, prefix: rawPrefix, concurrency: 8 },
        ),
    );
    let before = await usedMemory(redis);
    // Due times start once every job is queued (up to ~150 ms per 500 here), so none is due before it exists.
    const queueingOf = (count: number): number => Math.ceil(count / 500) * 150;
    const rawStart = Date.now() + 10_000 + queueingOf(rawN);
    const dueOf = (i: number, start: number, count = n, window = windowS): number =>
      start + Math.floor((i / count) * window * 1000);
    for (let i = 0; i < rawN; i += 500)
      await rawQueue.addBulk(
        Array.from({ length: Math.min(500, rawN - i) }, (_, k) => {
          const dueAt = dueOf(i + k, rawStart, rawN, rawWindowS);
          return {
            name: 'noop',
            data: { dueAt },
            opts: { jobId: `raw-${i + k}`, delay: dueAt - Date.now() },
          };
        }),
      );
    const rawBytes = (await usedMemory(redis)) - before;
    progress(
      `raw: ${rawN} jobs queued, ${Math.round((rawStart - Date.now()) / 1000)} s before the first is due`,
    );
    while (rawDone < rawN) await new Promise((r) => setTimeout(r, 200));
    const rawRate = rawN / ((rawLast - rawStart) / 1000 || 1);
    await Promise.all(rawWorkers.map((w) => w.close()));
    await Promise.all(rawConnections.map((c) => c.quit()));
    await rawQueue.obliterate({ force: true });
    await rawQueue.close();

    // --- Careway: patients and booked appointments on HAPI, then the reminder jobs, then two worker processes.
    const received = new Map<string, number>();
    let duplicates = 0;
    const sink = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { messageId: string }).messageId;
        if (received.has(id)) duplicates++;
        else received.set(id, Date.now());
        res.writeHead(200).end('{}');
      });
    });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
    const sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/sms`;
    const startMs = Date.now() + windowS * 1000 + 3 * 3600_000;
    // Reminder r belongs to appointment r mod A with offset PT(60 + r div A)M: one appointment's reminders lie a
    // whole window / perAppointment apart, never bunched.
    const appointmentCount = Math.ceil(n / perAppointment);
    const offsetOf = (r: number): string => `PT${60 + Math.floor(r / appointmentCount)}M`;
    const appointments: string[] = [];
    await inBatches(appointmentCount, 100, async (i) => {
      const entry: BundleEntry[] = [];
      for (let k = 0; k < Math.min(100, appointmentCount - i); k++) {
        const urn = `urn:uuid:${crypto.randomUUID()}`;
        const patient: Patient = {
          resourceType: 'Patient',
          name: [{ given: ['Bench'] }],
          telecom: [{ system: 'phone', use: 'mobile', value: `+4917${String(i + k).padStart(8, '0')}` }],
        };
        const appointment: Appointment = {
          resourceType: 'Appointment',
          status: 'booked',
          start: new Date(startMs).toISOString(),
          end: new Date(startMs + 900_000).toISOString(),
          participant: [{ actor: { reference: urn }, status: 'accepted' }],
        };
        entry.push(
          { fullUrl: urn, resource: patient, request: { method: 'POST', url: 'Patient' } },
          { resource: appointment, request: { method: 'POST', url: 'Appointment' } },
        );
      }
      const res: Bundle = await stack.fhir.transaction({
        resourceType: 'Bundle',
        type: 'transaction',
        entry,
      });
      for (const e of res.entry ?? []) {
        const id = /^Appointment\/([^/]+)/.exec(e.response?.location ?? '')?.[1];
        if (id) appointments.push(id);
      }
      if ((i / 100) % 100 === 99)
        progress(`careway: ${appointments.length}/${appointmentCount} appointments set up`);
    });
    if (appointments.length !== appointmentCount)
      throw new Error(`set-up made ${appointments.length} of ${appointmentCount} appointments`);
    // What planning leaves on the FHIR server: an active CommunicationRequest per reminder, which the send
    // completes (the write-back's second half).
    const reminderOf = (r: number): { appointmentId: string; offset: string } => ({
      appointmentId: appointments[r % appointmentCount] ?? '',
      offset: offsetOf(r),
    });
    await inBatches(n, 500, async (i) => {
      await stack.fhir.transaction({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: Array.from({ length: Math.min(500, n - i) }, (_, k) => {
          const { appointmentId, offset } = reminderOf(i + k);
          return {
            resource: {
              resourceType: 'CommunicationRequest',
              identifier: [
                { system: canonical.reminderSystem, value: reminderKey({ appointmentId, offset, startMs }) },
              ],
              status: 'active',
              basedOn: [{ reference: `Appointment/${appointmentId}` }],
              about: [{ reference: `Appointment/${appointmentId}` }],
            },
            request: { method: 'POST', url: 'CommunicationRequest' },
          };
        }),
      });
      if ((i / 500) % 100 === 99) progress(`careway: ${i + 500}/${n} CommunicationRequests set up`);
    });
    const prefix = `p4${run}`;
    const queue = new Queue<ReminderJob>(QUEUES.reminders, {
      connection: redis,
      prefix: queueKeyPrefix(prefix, QUEUES.reminders, onCluster),
    });
    const careStart = Date.now() + 20_000 + queueingOf(n);
    const dueById = new Map<string, number>();
    before = await usedMemory(redis);
    for (let i = 0; i < n; i += 500) {
      const jobs = Array.from({ length: Math.min(500, n - i) }, (_, k) => {
        const { appointmentId, offset } = reminderOf(i + k);
        const data: ReminderJob = { appointmentId, offset, startMs, dueAt: dueOf(i + k, careStart) };
        dueById.set(`reminder-${appointmentId}-${offset}-${startMs}`, data.dueAt);
        return {
          name: 'remind',
          data,
          opts: {
            jobId: reminderJobId(data),
            // As Careway queues them: a lead ahead, the worker sending on the due instant (jobs.ts).
            delay: reminderDelay(data),
            attempts: 5,
            backoff: { type: 'exponential', delay: 2000 },
            removeOnComplete: { age: 3600 },
          },
        };
      });
      await queue.addBulk(jobs);
    }
    const carewayBytes = (await usedMemory(redis)) - before;
    progress(
      `careway: ${n} jobs queued, ${Math.round((careStart - Date.now()) / 1000)} s before the first is due`,
    );
    const key = loadOrCreateDevKey();
    const workers: ChildProcess[] = [];
    // One key for all, as in any deployment: a write-back queued by one worker may be written by another.
    const sealingKey = randomBytes(32).toString('base64');
    const { REDIS_URL: _unused, ...inherited } = process.env;
    const redisEnv = topology ? { REDIS_CLUSTER_NODES: topology.nodes } : { REDIS_URL: stack.redis };
    for (let w = 0; w < workerCount; w++) {
      workers.push(
        spawn(process.execPath, [join(projectRoot(), 'dist', 'src', 'main.js')], {
          env: serviceEnv({
            ...inherited,
            ...redisEnv,
            FHIR_BASE_URL: stack.hapi,
            AUTH_PUBLIC_KEY: key.publicPem,
            AUTH_ISSUER: DEV_ISSUER,
            AUTH_AUDIENCE: DEV_AUDIENCE,
            PORT: String(await freePort()),
            HOST: '127.0.0.1',
            MLLP_PORT: '0',
            LOG_LEVEL: 'warn',
            HL7_ENCRYPTION_KEY: sealingKey,
            QUEUE_PREFIX: prefix,
            SMS_WEBHOOK_URL: sinkUrl,
            SMS_WEBHOOK_SECRET: SECRET,
            SMS_RATE_PER_SECOND: '100000',
            QUIET_HOURS: '00:00-00:00',
            CAREWAY_UPLOAD_PROFILES: 'false',
            NOSHOW_SWEEP_INTERVAL: 'off',
            REMINDER_SWEEP_INTERVAL: 'off',
          }),
          stdio: ['ignore', 'ignore', 'inherit'],
        }),
      );
    }
    const deadline = careStart + windowS * 1000 + 600_000;
    while (received.size < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
    await new Promise((r) => setTimeout(r, 3000)); // late duplicates would show up here
    // The send figures, taken here and again after the write-back wait (a straggler may still arrive).
    const sends = (): { care: ReturnType<typeof stats>; last: number; perSecond: number } => {
      const last = maxOf(received.values());
      return {
        care: stats([...received].map(([id, at]) => at - (dueById.get(id) ?? at))),
        last,
        perSecond: received.size / ((last - careStart) / 1000 || 1),
      };
    };
    const raw = stats(rawLate);
    {
      // Printed before the (possibly long) write-back wait, so an interrupted run still has them.
      const { care, perSecond } = sends();
      progress(
        `careway: sent ${received.size}/${n}, duplicates ${duplicates}, lateness p50 ${care.p50} ms, p99 ${care.p99} ms, max ${care.max} ms, ${perSecond.toFixed(1)}/s; raw p50 ${raw.p50} p99 ${raw.p99} max ${raw.max} ms, ${rawRate.toFixed(1)}/s`,
      );
    }
    // Write-backs run off the send path (reminder-writebacks): wait until every sent reminder's Communication and
    // completed CommunicationRequest are on HAPI, and report how long after the last send that was.
    const since = new Date(careStart - 60_000).toISOString();
    const count = async (type: string, status: string): Promise<number> =>
      (
        await stack.fhir.search(
          type,
          { _lastUpdated: `ge${since}`, status, _summary: 'count' },
          { noCache: true },
        )
      ).total ?? 0;
    let written = 0;
    // A million write-backs take a while after the last send: the bound grows with the size.
    const writeDeadline = Date.now() + 900_000 + n * 2;
    while (
      (written = await count('Communication', 'completed')) < received.size &&
      Date.now() < writeDeadline
    )
      await new Promise((r) => setTimeout(r, 1000));
    const writtenAt = Date.now();
    progress(`careway: ${received.size} sent, ${written} written back`);
    const requestsCompleted = await count('CommunicationRequest', 'completed');
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(
      workers.map((w) => new Promise((r) => (w.exitCode !== null ? r(null) : w.once('exit', r)))),
    );
    sink.close();
    const { care, last, perSecond: carewayRate } = sends();
    const writeBack = {
      communications: written,
      requestsCompleted,
      // Measured by polling every second: an upper bound.
      doneSecondsAfterLastSend: (writtenAt - last) / 1000,
      perSecond: written / ((writtenAt - careStart) / 1000 || 1),
    };
    await queue.obliterate({ force: true });
    await queue.close();

    const redisKind = onCluster ? 'a 3-master Redis Cluster' : 'one Redis';
    const result = {
      what: `${n} reminders due over ${windowS} s on ${workerCount} Careway worker processes on ${redisKind} (full send path: FHIR re-reads, ledger, signed SMS webhook, Communication write-back) vs raw BullMQ delayed no-op jobs on ${workerCount} workers (${rawN} over ${rawWindowS} s, the same rate)`,
      reminders: n,
      windowS,
      workers: workerCount,
      redis: redisKind,
      remindersPerAppointment: perAppointment,
      raw: { ...raw, jobs: rawN, windowS: rawWindowS, perSecond: rawRate, redisBytesPerJob: rawBytes / rawN },
      careway: {
        ...care,
        perSecond: carewayRate,
        sent: received.size,
        duplicates,
        redisBytesPerReminder: carewayBytes / n,
      },
      writeBack,
      throughputRatio: carewayRate / rawRate,
      targets: { p50: 20, p99: 250, max: 1000, duplicates: 0, throughputRatio: 0.9 },
    };
    const file = writeResult('P4', result);
    const f = (x: number): string => x.toFixed(0).padStart(7);
    return [
      `P4 ${n} reminders due over ${windowS} s, ${workerCount} workers, ${redisKind} (lateness in ms; raw: ${rawN} over ${rawWindowS} s)`,
      '| path                         |     p50 |     p99 |     max |   per s | Redis B/job |',
      '|------------------------------|---------|---------|---------|---------|-------------|',
      `| raw BullMQ delayed no-op     | ${f(raw.p50)} | ${f(raw.p99)} | ${f(raw.max)} | ${rawRate.toFixed(1).padStart(7)} | ${f(rawBytes / rawN).padStart(11)} |`,
      `| Careway reminders (SMS)      | ${f(care.p50)} | ${f(care.p99)} | ${f(care.max)} | ${carewayRate.toFixed(1).padStart(7)} | ${f(carewayBytes / n).padStart(11)} |`,
      `sent ${received.size}/${n}, duplicates ${duplicates}; throughput ratio ${result.throughputRatio.toFixed(3)} (targets: p50 <= 20 ms, p99 <= 250 ms, max <= 1 s, 0 duplicates, ratio >= 0.9)`,
      `write-back (off the send path): ${written} Communications and ${requestsCompleted} CommunicationRequests completed on HAPI, the last <= ${writeBack.doneSecondsAfterLastSend.toFixed(1)} s after the last send (${writeBack.perSecond.toFixed(1)}/s over the run)`,
      `written to ${file}`,
    ];
  }
}
