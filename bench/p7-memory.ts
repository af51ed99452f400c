/**
 * P7 (first half): the service's resident memory with 1,000 idle MLLP connections open and HL7 arriving at
 * 1,000 msg/s, and whether the intake keeps that rate (every message ACKed, ACK p99 ≤ 25 ms) while the workers
 * write the backlog to HAPI. The workers cannot write 1,000 msg/s into a 2-core HAPI, so the backlog grows in
 * Redis, which is where it belongs: the RSS shows the service does not hold it in memory.
 *
 * Each variant is a fresh deployment on the same HAPI and Redis (its own QUEUE_PREFIX, so each starts with an
 * empty queue), measured in the same run:
 * - `one process`: one Careway with every role (api, mllp, workers), as `npm start` runs it;
 * - `split`: an `api,mllp` process and a `workers` process (CAREWAY_ROLES), as the Helm chart runs them;
 * - `one process, before`: with BENCH_P7_BEFORE, the same from a built checkout of an earlier commit (the
 *   comparator for a change to the intake).
 * For each: the intake process's event-loop delay (its /metrics, sampled every second), the CPU the Careway
 * processes and the whole machine used, and how many messages the workers wrote meanwhile.
 * Targets (benchmarks.md): RSS ≤ 200 MB; 1,000 msg/s kept with ACK p99 ≤ 25 ms. The second half of P7 (heap
 * growth over 1M parses) is reported by P1.
 */
import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { frame, MllpDecoder } from '../src/hl7/mllp/framing.js';
import { percentile, rssMiB, startCareway, writeResult, type Stack } from './lib.js';
import { SERVICE_NODE_OPTIONS } from '../src/shared/runtime.js';
import { PartitionedQueue } from '../src/queues/partitioned.js';
import { HL7_INBOUND_QUEUE } from '../src/hl7/intake.js';
import type { LocalService } from '../src/devstack/processes.js';

const SYS = 'urn:oid:2.16.840.1.113883.19.5';
const TARGET_RSS_MIB = 200e6 / 2 ** 20; // 200 MB
const TARGET_P99_MS = 25;
const IDLE_CONNECTIONS = 1000;
const PARTITIONS = 4;

const message = (run: string, n: number): string =>
  [
    `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||ADT^A04^ADT_A01|${run}-${n}|P|2.5`,
    'EVN|A04|20240115083015',
    `PID|1||${run}-M${n}^^^H&${SYS}&ISO^MR||Doe^Jane||19700101|F`,
    'PV1|1|O',
    '',
  ].join('\r');

interface Feed {
  sent: number;
  acked: number;
  notAa: number;
  latency: number[];
}

/**
 * One connection sending `rate` messages a second for `seconds`, paced on a schedule (not "as fast as ACKs come
 * back"), with up to 32 frames awaiting their ACK, like a sender that pipelines. A slow ACK path therefore
 * shows as a lower achieved rate as well as a higher latency.
 */
async function feed(
  port: number,
  run: string,
  first: number,
  rate: number,
  seconds: number,
  out: Feed,
): Promise<void> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const decoder = new MllpDecoder(1 << 20);
  const pending: number[] = [];
  let drained: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    for (const e of decoder.push(d)) {
      if (e.kind !== 'frame') continue;
      const t0 = pending.shift();
      if (t0 !== undefined) out.latency.push(performance.now() - t0);
      out.acked++;
      if (!/\rMSA\|AA\|/.test(e.payload.toString('latin1'))) out.notAa++;
      drained?.();
    }
  });
  const total = rate * seconds;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    while (pending.length >= 32) await new Promise<void>((r) => (drained = r));
    pending.push(performance.now());
    socket.write(frame(message(run, first + i)));
    out.sent++;
  }
  while (pending.length) await new Promise<void>((r) => (drained = r));
  socket.end();
}

/** Opens `n` MLLP connections that send nothing (senders connected between bursts). */
async function idleConnections(port: number, n: number): Promise<Socket[]> {
  const out: Socket[] = [];
  for (let i = 0; i < n; i += 50)
    out.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(50, n - i) }, async () => {
          const s = connect(port, '127.0.0.1');
          s.on('error', () => undefined);
          await new Promise<void>((r, j) => {
            s.once('connect', () => r());
            s.once('error', j);
          });
          return s;
        }),
      )),
    );
  return out;
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineBusySeconds(): number {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return (f.reduce((a, b) => a + b, 0) - idle) / 100;
}

/** The intake process's event-loop delay over the last second (prom-client resets it at each scrape). */
async function loopDelay(url: string, token: string): Promise<{ p99: number; max: number } | undefined> {
  try {
    const res = await fetch(`${url}/metrics`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(2000),
    });
    const text = await res.text();
    const read = (name: string): number =>
      Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    return {
      p99: read('nodejs_eventloop_lag_p99_seconds') * 1000,
      max: read('nodejs_eventloop_lag_max_seconds') * 1000,
    };
  } catch {
    return undefined;
  }
}

interface Variant {
  readonly name: string;
  /** Another checkout's build to run (the `before` comparator). */
  readonly root?: string;
  /** Its name in BENCH_P7_VARIANTS. */
  readonly key: string;
  /** One environment per process; the first takes MLLP. */
  readonly processes: readonly Record<string, string>[];
}

async function runVariant(
  stack: Stack,
  v: Variant,
  prefix: string,
  perSecond: number,
  seconds: number,
): Promise<Record<string, unknown>> {
  const started: { careway: string; mllpPort: number; service: LocalService }[] = [];
  const redis = new Redis(stack.redis, { maxRetriesPerRequest: null });
  const queues = Array.from(
    { length: PARTITIONS },
    (_, i) => new Queue(PartitionedQueue.nameOf(HL7_INBOUND_QUEUE, i), { connection: redis, prefix }),
  );
  const completed = async (): Promise<number> =>
    (await Promise.all(queues.map((q) => q.getCompletedCount()))).reduce((a, b) => a + b, 0);
  let idle: Socket[] = [];
  try {
    // The processes of one deployment share the sealing key (each startCareway would draw its own).
    const key = randomBytes(32).toString('base64');
    for (const env of v.processes)
      started.push(
        await startCareway(
          stack.hapi,
          stack.redis,
          {
            QUEUE_PREFIX: prefix,
            HL7_PARTITIONS: String(PARTITIONS),
            MLLP_MAX_CONNECTIONS: String(IDLE_CONNECTIONS + 100),
            HL7_ENCRYPTION_KEY: key,
            ...env,
          },
          ...(v.root ? [v.root] : []),
        ),
      );
    const intake = started[0]!;
    const pids = started.map((s) => s.service.pid);
    const rss = (): number[] => pids.map((p) => rssMiB(p) ?? 0);
    const rssIdle = rss();
    idle = await idleConnections(intake.mllpPort, IDLE_CONNECTIONS);
    await new Promise((r) => setTimeout(r, 2000));
    const rssIdleConnections = rss();

    const run = `${prefix}${Date.now().toString(36)}`;
    const out: Feed = { sent: 0, acked: 0, notAa: 0, latency: [] };
    const max = rssIdleConnections.slice();
    const loop: { p99: number; max: number }[] = [];
    const token = await stack.token('system/*.read');
    await loopDelay(intake.careway, token); // resets the histogram: what follows is the run's alone
    const sampler = setInterval(() => {
      rss().forEach((m, i) => (max[i] = Math.max(max[i] ?? 0, m)));
      void loopDelay(intake.careway, token).then((d) => d && loop.push(d));
    }, 1000);
    const writtenBefore = await completed();
    const cpu0 = pids.map(cpuSeconds);
    const busy0 = machineBusySeconds();
    const t0 = performance.now();
    const connections = 4;
    try {
      await Promise.all(
        Array.from({ length: connections }, (_, c) =>
          feed(intake.mllpPort, run, c * 10_000_000, perSecond / connections, seconds, out),
        ),
      );
    } finally {
      clearInterval(sampler);
    }
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = pids.map((p, i) => (cpuSeconds(p) - (cpu0[i] ?? 0)) / elapsed);
    const machineCores = (machineBusySeconds() - busy0) / elapsed;
    const written = (await completed()) - writtenBefore;
    const failed = (await Promise.all(queues.map((q) => q.getFailedCount()))).reduce((a, b) => a + b, 0);
    const after = rss();
    return {
      variant: v.name,
      ...(v.root ? { build: v.root } : {}),
      roles: v.processes.map((e) => e['CAREWAY_ROLES'] ?? 'api,mllp,workers'),
      env: v.processes,
      achievedPerSecond: out.acked / elapsed,
      acked: out.acked,
      notAa: out.notAa,
      ackP50Ms: percentile(out.latency, 50),
      ackP99Ms: percentile(out.latency, 99),
      ackMaxMs: percentile(out.latency, 100),
      loopDelayP99Ms: percentile(
        loop.map((d) => d.p99),
        50,
      ),
      loopDelayWorstP99Ms: Math.max(0, ...loop.map((d) => d.p99)),
      loopDelayMaxMs: Math.max(0, ...loop.map((d) => d.max)),
      writtenPerSecond: written / elapsed,
      workerFailures: failed,
      cpuCores: cpu,
      machineCores,
      rssMiB: {
        idle: rssIdle,
        idleConnections: rssIdleConnections,
        max,
        after,
        maxTotal: max.reduce((a, b) => a + b, 0),
      },
    };
  } finally {
    for (const s of idle) s.destroy();
    await Promise.allSettled(started.reverse().map((s) => s.service.stop()));
    await Promise.allSettled(queues.map((q) => q.close()));
    // The backlog left behind is this variant's alone: remove it, so a shared Redis is not left holding it.
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.unlink(...keys);
    } while (cursor !== '0');
    redis.disconnect();
  }
}

export async function runP7(stack: Stack, perSecond: number, seconds: number): Promise<string[]> {
  // BENCH_P7_BEFORE: a checkout of an earlier commit, built (`npm run build` there), run as a third variant.
  const before = process.env['BENCH_P7_BEFORE'];
  const only = (process.env['BENCH_P7_VARIANTS'] ?? 'before,one,split').split(',');
  const variants = (
    [
      ...(before ? [{ name: 'one process, before', key: 'before', processes: [{}], root: before }] : []),
      { name: 'one process', key: 'one', processes: [{}] },
      {
        name: 'split (api,mllp | workers)',
        key: 'split',
        processes: [{ CAREWAY_ROLES: 'api,mllp' }, { CAREWAY_ROLES: 'workers' }],
      },
    ] satisfies Variant[]
  ).filter((v) => only.includes(v.key));
  const results: Record<string, unknown>[] = [];
  const tag = Date.now().toString(36);
  for (const [i, v] of variants.entries())
    results.push(await runVariant(stack, v, `p7${tag}${i}`, perSecond, seconds));
  const file = writeResult('P7', {
    what: `Careway with ${IDLE_CONNECTIONS} idle MLLP connections open and HL7 (ADT A04, distinct patients) arriving at ${perSecond} msg/s over 4 more for ${seconds} s, while its workers write to HAPI (${PARTITIONS} partitions)`,
    offeredPerSecond: perSecond,
    seconds,
    idleConnections: IDLE_CONNECTIONS,
    variants: results,
    nodeOptions: SERVICE_NODE_OPTIONS,
    targets: { rssMB: 200, ackP99Ms: TARGET_P99_MS, perSecond },
  });
  const f = (x: number, d = 0): string => x.toFixed(d);
  const lines = [
    `P7 at ${perSecond} msg/s offered for ${seconds} s over 4 MLLP connections, ${IDLE_CONNECTIONS} idle ones open, workers writing to HAPI`,
    `targets: ${perSecond} msg/s kept, ACK p99 <= ${TARGET_P99_MS} ms, RSS <= 200 MB (${f(TARGET_RSS_MIB)} MiB)`,
  ];
  for (const r of results) {
    const rss = r['rssMiB'] as Record<string, number[] | number>;
    const list = (xs: number[] | number): string =>
      Array.isArray(xs) ? xs.map((x) => f(x)).join(' + ') : f(xs);
    const n = (k: string): number => r[k] as number;
    lines.push(
      `- ${String(r['variant'])}: ${f(n('achievedPerSecond'))} msg/s (${n('notAa')} not AA), ACK p50 ${f(n('ackP50Ms'), 1)} ms, p99 ${f(n('ackP99Ms'), 1)} ms, max ${f(n('ackMaxMs'))} ms; ` +
        `intake loop delay p99 ${f(n('loopDelayP99Ms'), 1)} ms (worst second ${f(n('loopDelayWorstP99Ms'), 1)}, max ${f(n('loopDelayMaxMs'))}); ` +
        `workers wrote ${f(n('writtenPerSecond'), 1)} msg/s (${n('workerFailures')} failed); CPU Careway ${(r['cpuCores'] as number[]).map((x) => f(x, 2)).join(' + ')} cores of machine ${f(n('machineCores'), 2)}; ` +
        `RSS MiB idle ${list(rss['idle']!)}, ${IDLE_CONNECTIONS} idle conns ${list(rss['idleConnections']!)}, max ${list(rss['max']!)}`,
    );
  }
  lines.push(`written to ${file}`);
  return lines;
}
