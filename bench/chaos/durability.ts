/**
 * What `appendfsync always` costs on the HL7 accept path, against `everysec`, in one run (P2-style: MLLP in,
 * AA out, nothing else). `everysec` can lose up to the last second of acknowledged writes when the host crashes
 * (the process dying alone loses nothing: the kernel has the data); `always` fsyncs before Redis answers, so
 * an AA is on disk. The Careway processes run no workers (RUN_WORKERS=false), so only intake is measured; the
 * two Redis servers alternate, two rounds each, and the better round of each counts (less noise from the
 * machine's other load).
 */
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { mkdtempSync } from 'node:fs';
import { percentile } from '../lib.js';
import { makeFeed } from './feed.js';
import { CarewayProcess, RestartableRedis } from './procs.js';
import { sendFeed } from './sender.js';
import type { Log } from './runs.js';

export interface DurabilityRound {
  readonly perSecond: number;
  readonly p50: number;
  readonly p99: number;
}

export interface DurabilityResult {
  readonly messages: number;
  readonly connections: number;
  readonly everysec: DurabilityRound;
  readonly always: DurabilityRound;
  /** always / everysec throughput. */
  readonly ratio: number;
  readonly rounds: Record<string, DurabilityRound[]>;
}

async function round(
  fhirBase: string,
  fsync: 'everysec' | 'always',
  messages: number,
  connections: number,
): Promise<DurabilityRound> {
  const redis = await RestartableRedis.start(fsync);
  const careway = await CarewayProcess.create(
    { FHIR_BASE_URL: fhirBase, REDIS_URL: redis.url, RUN_WORKERS: 'false', AUDIT_EVENTS: 'off' },
    join(mkdtempSync(join(tmpdir(), 'careway-chaos-')), 'careway.log'),
  );
  try {
    await careway.start();
    const feed = makeFeed(`d${Date.now().toString(36)}`, messages, Math.max(1, messages / 10), 5);
    // A short warm-up, so the JIT and the connections are not what is measured.
    await sendFeed(feed.messages.slice(0, 200), {
      port: careway.mllpPort,
      connections,
      resendShare: 0,
      ackTimeoutMs: 10_000,
    });
    const t = performance.now();
    const r = await sendFeed(feed.messages.slice(200), {
      port: careway.mllpPort,
      connections,
      resendShare: 0,
      ackTimeoutMs: 10_000,
    });
    const seconds = (performance.now() - t) / 1000;
    const lat = [...r.latencies.values()].flat();
    return { perSecond: r.accepted.size / seconds, p50: percentile(lat, 50), p99: percentile(lat, 99) };
  } finally {
    await careway.stop();
    await redis.stop();
  }
}

export async function runDurability(fhirBase: string, messages: number, log: Log): Promise<DurabilityResult> {
  const connections = 8;
  const rounds: Record<string, DurabilityRound[]> = { everysec: [], always: [] };
  for (let i = 0; i < 2; i++)
    for (const fsync of ['everysec', 'always'] as const) {
      const r = await round(fhirBase, fsync, messages + 200, connections);
      rounds[fsync]!.push(r);
      log(`durability ${fsync}: ${r.perSecond.toFixed(0)} msg/s, p99 ${r.p99.toFixed(2)} ms`);
    }
  const best = (xs: DurabilityRound[]): DurabilityRound =>
    xs.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
  const everysec = best(rounds['everysec']!);
  const always = best(rounds['always']!);
  return { messages, connections, everysec, always, ratio: always.perSecond / everysec.perSecond, rounds };
}
