/**
 * P9: bench P3 with 1, 2 and 3 worker processes on the same Redis and HAPI. Each round starts an intake process
 * (CAREWAY_ROLES=api,mllp) and k worker processes (CAREWAY_ROLES=workers) sharing a queue prefix and the HL7
 * sealing key, as the Helm chart runs them; sends the same kind of feed as P3 (ADT A04, distinct patients, one
 * message in flight over MLLP, each ACK awaited) and times it from the first message to the drained queue. The
 * comparator is the single-process round of the same run (benchmarks.md: "near-linear until HAPI saturates; say
 * where it bends").
 *
 * Per-patient order holds across processes because each partition has a queue-level concurrency of 1: at most
 * HL7_PARTITIONS messages are in flight in all processes together, so more processes only help while Careway's
 * own CPU, not the partitions or HAPI, is what limits. BENCH_P9_WORKERS (default `1,2,3`), BENCH_P9_MESSAGES
 * (default 300) and BENCH_P9_PARTITIONS (default 8) size it.
 */
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { frame, MllpDecoder } from '../src/hl7/mllp/framing.js';
import { HL7_INBOUND_QUEUE } from '../src/hl7/intake.js';
import { PartitionedQueue } from '../src/queues/partitioned.js';
import { connect as redisConnect } from '../src/queues/connections.js';
import type { LocalService } from '../src/devstack/processes.js';
import { adt } from './p3-hl7-e2e.js';
import { startCareway, writeResult, type Stack } from './lib.js';

interface Round {
  readonly workers: number;
  readonly perSecond: number;
  readonly failed: number;
}

async function round(stack: Stack, workers: number, count: number, partitions: number): Promise<Round> {
  const run = `p9${Date.now().toString(36)}k${workers}`;
  const shared = {
    QUEUE_PREFIX: run,
    HL7_PARTITIONS: String(partitions),
    // One sealing key for the round: the intake seals what the workers open.
    HL7_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
  };
  const started: LocalService[] = [];
  const redis = redisConnect({ mode: 'standalone', url: new URL(stack.redis) }, 'worker', 'bench-p9');
  const queues = Array.from(
    { length: partitions },
    (_, i) => new Queue(PartitionedQueue.nameOf(HL7_INBOUND_QUEUE, i), { connection: redis, prefix: run }),
  );
  const counts = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    for (const q of queues)
      for (const [k, v] of Object.entries(
        await q.getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed'),
      ))
        out[k] = (out[k] ?? 0) + v;
    return out;
  };
  try {
    const intake = await startCareway(stack.hapi, stack.redis, { ...shared, CAREWAY_ROLES: 'api,mllp' });
    started.push(intake.service);
    for (let w = 0; w < workers; w++)
      started.push(
        (await startCareway(stack.hapi, stack.redis, { ...shared, CAREWAY_ROLES: 'workers' })).service,
      );
    const socket = connect(intake.mllpPort, '127.0.0.1');
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const decoder = new MllpDecoder(1 << 20);
    let waiting: (() => void) | undefined;
    socket.on('data', (d: Buffer) => {
      for (const e of decoder.push(d)) if (e.kind === 'frame') waiting?.();
    });
    const t0 = performance.now();
    for (let n = 0; n < count; n++)
      await new Promise<void>((resolve) => {
        waiting = resolve;
        socket.write(frame(adt(run, n)));
      });
    socket.end();
    const deadline = Date.now() + 900_000;
    let c = await counts();
    while (
      (c['completed'] ?? 0) + (c['failed'] ?? 0) < count ||
      (c['waiting'] ?? 0) + (c['active'] ?? 0) > 0
    ) {
      if (Date.now() > deadline) throw new Error(`P9: ${workers} worker process(es) did not drain in time`);
      await new Promise((r) => setTimeout(r, 50));
      c = await counts();
    }
    return { workers, perSecond: count / ((performance.now() - t0) / 1000), failed: c['failed'] ?? 0 };
  } finally {
    await Promise.allSettled(started.reverse().map((s) => s.stop()));
    for (const q of queues) await q.obliterate({ force: true }).catch(() => undefined);
    await Promise.allSettled(queues.map((q) => q.close()));
    await redis.quit().catch(() => undefined);
  }
}

export async function runP9(stack: Stack, count: number): Promise<string[]> {
  const workerCounts = (process.env['BENCH_P9_WORKERS'] ?? '1,2,3').split(',').map(Number);
  const partitions = Number(process.env['BENCH_P9_PARTITIONS'] ?? 8);
  const rounds: Round[] = [];
  for (const k of workerCounts) {
    process.stderr.write(`P9 ${new Date().toISOString()} ${k} worker process(es), ${count} messages\n`);
    rounds.push(await round(stack, k, count, partitions));
  }
  const single = rounds.find((r) => r.workers === 1)?.perSecond ?? rounds[0]?.perSecond ?? NaN;
  const result = {
    what: `P3 (ADT A04 over MLLP → committed on HAPI) with an intake process and 1..n worker processes, ${partitions} partitions`,
    messages: count,
    partitions,
    rounds: rounds.map((r) => ({ ...r, toSingle: r.perSecond / single })),
  };
  const file = writeResult('P9', result);
  return [
    `P9 HL7 end to end with 1..n worker processes, ${count} ADT A04 each, ${partitions} partitions (intake in its own process)`,
    '| worker processes |  msg/s | to one process | failed |',
    '|------------------|--------|----------------|--------|',
    ...rounds.map(
      (r) =>
        `| ${String(r.workers).padStart(16)} | ${r.perSecond.toFixed(1).padStart(6)} | ${(r.perSecond / single).toFixed(2).padStart(14)} | ${String(r.failed).padStart(6)} |`,
    ),
    `written to ${file}`,
  ];
}
