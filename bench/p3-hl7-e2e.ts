/**
 * P3: end to end, HL7 in over MLLP → committed on HAPI (through the queue, the maps, the per-patient lock and
 * the journey effects), against a direct replay of the transaction bundles Careway's worker builds for the same
 * messages (data, new journey, links, Provenance) into the same HAPI, replayed one at a time and in parallel (the faster
 * of N and 2N in flight, N = Careway's partitions). Targets: ≥ 90 % of
 * the direct replay, never below 40 msg/s.
 */
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue, type JobType } from 'bullmq';
import { PartitionedQueue } from '../src/queues/partitioned.js';
import { Redis } from 'ioredis';
import { frame, MllpDecoder } from '../src/hl7/mllp/framing.js';
import { Hl7Message } from '../src/hl7/message.js';
import { loadMappings, Mapper } from '../src/hl7/mapping/engine.js';
import { buildTransaction } from '../src/hl7/mapping/transaction.js';
import { HL7_INBOUND_QUEUE } from '../src/hl7/intake.js';
import { messageTransaction } from '../src/hl7/inbound-worker.js';
import { projectRoot } from '../src/shared/paths.js';
import { cpuSeconds, pidListeningOn, rssMiB, writeResult, type Stack } from './lib.js';

// As real feeds send it: namespace-only assigning authorities (keyed urn:id:STMARYS), two identifiers in PID-3.
export function adt(run: string, n: number): string {
  const pv1 = Array.from({ length: 46 }, () => '');
  pv1[0] = 'PV1';
  pv1[2] = 'O';
  pv1[3] = 'CLINIC^^^STMARYS';
  pv1[19] = `${run}-V${n}^^^STMARYS^VN`;
  pv1[44] = '20240115080000';
  return [
    `MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|20240115083015||ADT^A04^ADT_A01|${run}-${n}|P|2.5.1`,
    'EVN|A04|20240115083015',
    `PID|1||${run}-M${n}^^^STMARYS^MR~${run}-E${n}^^^EPI^PI||Doe^Jane||19700101|F|||1 Main St^^Albany^NY^12207`,
    pv1.join('|'),
    '',
  ].join('\r');
}

/** The machine's busy CPU seconds so far, all processes (Linux /proc/stat: user, nice, system, irq, softirq, steal). */
function machineBusySeconds(): number | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / 100;
  } catch {
    return undefined;
  }
}

/**
 * CPU spent by each process of the stack over a phase, in ms per message: HAPI's JVM, Careway, Redis, this
 * bench process, and the rest of the machine (other work on a shared machine). What each path costs HAPI per
 * message, and what Careway adds on the same cores, is what decides the ratio on a machine HAPI saturates.
 */
function cpuMeter(stack: Stack): () => (count: number) => Record<string, number | undefined> {
  const pids = {
    hapi: pidListeningOn(Number(new URL(stack.hapi).port)),
    careway: stack.carewayPid,
    redis: pidListeningOn(Number(new URL(stack.redis).port)),
  };
  const read = () => ({
    hapi: cpuSeconds(pids.hapi),
    careway: cpuSeconds(pids.careway),
    redis: cpuSeconds(pids.redis),
    bench: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    machine: machineBusySeconds(),
  });
  return () => {
    const a = read();
    return (count) => {
      const b = read();
      const per = (k: keyof typeof a): number | undefined => {
        const x = a[k];
        const y = b[k];
        return x === undefined || y === undefined ? undefined : ((y - x) * 1000) / count;
      };
      const out: Record<string, number | undefined> = {
        hapi: per('hapi'),
        careway: per('careway'),
        redis: per('redis'),
        bench: per('bench'),
      };
      const machine = per('machine');
      out['others'] =
        machine === undefined
          ? undefined
          : machine - ['hapi', 'careway', 'redis', 'bench'].reduce((s, k) => s + (out[k] ?? 0), 0);
      return out;
    };
  };
}

export async function runP3(stack: Stack, count: number): Promise<string[]> {
  const run = Date.now().toString(36);
  // Comparator first: the transactions Careway's maps would build, posted straight to HAPI one at a time.
  const root = join(projectRoot(), 'mappings');
  const mapper = new Mapper(await loadMappings([root], join(root, 'schema.json')));
  const bundlesFor = (prefix: string) =>
    Array.from({ length: count }, (_, n) => {
      const msg = Hl7Message.parse(adt(`${prefix}${run}`, n));
      const mapped = mapper.message(msg, { zone: 'UTC', delimiters: msg.delimiters, sender: msg.sender });
      const facts = {
        jobId: `${prefix}${run}-${n}`,
        sender: 'EPIC^STMARYS',
        controlId: msg.controlId,
        type: 'ADT^A04',
        receivedAt: new Date().toISOString(),
      };
      // Exactly what Careway's worker posts for a first contact: the data, a new journey, the links, Provenance.
      const patientKey = buildTransaction(mapped, facts).keys['patient'] ?? '';
      return messageTransaction(mapped, facts, { opening: { sender: facts.sender, patientKey } });
    });
  const partitions = Number(process.env['HL7_PARTITIONS'] ?? 4);
  // Two comparators: a plain replay, one transaction after another, and a parallel replay (what a replay tool
  // that knows the patients are distinct could do).
  const bundles = bundlesFor('d');
  const meter = cpuMeter(stack);
  let t0 = performance.now();
  for (const b of bundles) await stack.fhir.transaction(b);
  const directRate = count / ((performance.now() - t0) / 1000);
  // The parallel comparator is the replay at its best: the faster of as many in flight as Careway has
  // partitions and twice that (on 2 cores HAPI saturates the CPU either way, and more in flight can be slower).
  const inFlightRate = async (
    prefix: string,
    inFlight: number,
  ): Promise<{
    inFlight: number;
    perSecond: number;
    cpuMsPerMessage: Record<string, number | undefined>;
  }> => {
    const replay = bundlesFor(prefix);
    const cpu = meter();
    const start = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < replay.length) await stack.fhir.transaction(replay[next++]!);
      }),
    );
    const perSecond = count / ((performance.now() - start) / 1000);
    return { inFlight, perSecond, cpuMsPerMessage: cpu(count) };
  };
  const parallel = [await inFlightRate('q', partitions), await inFlightRate('r', partitions * 2)];
  const best = parallel.reduce((x, y) => (y.perSecond > x.perSecond ? y : x));
  const parallelRate = best.perSecond;

  // Careway: MLLP in, wait for every ACK, then for the queue to drain.
  const redis = new Redis(stack.redis, { maxRetriesPerRequest: null });
  const queues = Array.from(
    { length: partitions },
    (_, i) =>
      new Queue(PartitionedQueue.nameOf(HL7_INBOUND_QUEUE, i), { connection: redis, prefix: 'careway' }),
  );
  const queue = {
    async getJobCounts(...types: JobType[]): Promise<Record<string, number>> {
      const out: Record<string, number> = {};
      for (const q of queues)
        for (const [k, v] of Object.entries(await q.getJobCounts(...types))) out[k] = (out[k] ?? 0) + v;
      return out;
    },
    close: () => Promise.all(queues.map((q) => q.close())),
  };
  // Baselines: a stack reused across runs (REDIS_URL) keeps the jobs of earlier ones.
  const at0 = await queue.getJobCounts('completed', 'failed');
  const before = at0['completed'] ?? 0;
  const failedBefore = at0['failed'] ?? 0;
  const socket = connect(stack.mllpPort, '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const decoder = new MllpDecoder(1 << 20);
  let waiting: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    for (const e of decoder.push(d)) if (e.kind === 'frame') waiting?.();
  });
  const carewayCpu = meter();
  t0 = performance.now();
  for (let n = 0; n < count; n++) {
    await new Promise<void>((resolve) => {
      waiting = resolve;
      socket.write(frame(adt(`c${run}`, n)));
    });
  }
  socket.end();
  const deadline = Date.now() + 600_000;
  for (;;) {
    const c = await queue.getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed');
    if (
      (c['completed'] ?? 0) - before + (c['failed'] ?? 0) - failedBefore >= count &&
      (c['waiting'] ?? 0) + (c['active'] ?? 0) === 0
    )
      break;
    if (Date.now() > deadline) throw new Error('P3: the inbound queue did not drain in time');
    await new Promise((r) => setTimeout(r, 50));
  }
  const carewayRate = count / ((performance.now() - t0) / 1000);
  const carewayCpuMs = carewayCpu(count);
  const carewayRss = rssMiB(stack.carewayPid);
  const failed = ((await queue.getJobCounts('failed'))['failed'] ?? 0) - failedBefore;
  await queue.close();
  await redis.quit();

  const result = {
    what: 'ADT A04 over MLLP → committed on HAPI (maps, lock, journey effects) vs direct replay of the same transaction bundles (with the new journey)',
    messages: count,
    partitions,
    direct: { perSecond: directRate },
    directParallel: parallel,
    directBest: best,
    careway: { perSecond: carewayRate, failed, rssMiB: carewayRss, cpuMsPerMessage: carewayCpuMs },
    ratio: carewayRate / directRate,
    ratioToParallel: carewayRate / parallelRate,
    targets: { ratio: 0.9, minPerSecond: 40 },
  };
  const file = writeResult('P3', result);
  return [
    `P3 HL7 end to end, ${count} ADT A04 messages (distinct patients), Careway with ${partitions} partitions`,
    '| path                                             |  msg/s |',
    '|--------------------------------------------------|--------|',
    `| direct replay of the transactions, one at a time | ${directRate.toFixed(1).padStart(6)} |`,
    ...parallel.map(
      (p) =>
        `| direct replay, ${String(p.inFlight).padStart(2)} in flight                       | ${p.perSecond.toFixed(1).padStart(6)} |`,
    ),
    `| Careway: MLLP → queue → maps → HAPI              | ${carewayRate.toFixed(1).padStart(6)} |`,
    `ratio ${result.ratio.toFixed(3)} to the plain replay, ${result.ratioToParallel.toFixed(3)} to the best parallel one (${best.inFlight} in flight) (target >= 0.90, and >= 40 msg/s); failed jobs ${failed}; Careway RSS after the run ${carewayRss?.toFixed(0) ?? '?'} MiB (P7 target <= 300 MB)`,
    'CPU ms per message (HAPI / Careway / Redis / bench / rest of the machine):',
    ...[
      ...parallel.map((p) => [`direct, ${p.inFlight} in flight`, p.cpuMsPerMessage] as const),
      ['Careway', carewayCpuMs] as const,
    ].map(
      ([what, c]) =>
        `  ${what.padEnd(20)} ${['hapi', 'careway', 'redis', 'bench', 'others'].map((k) => (c[k]?.toFixed(1) ?? '?').padStart(6)).join(' ')}`,
    ),
    `written to ${file}`,
  ];
}
