/**
 * The fault runs of issue #17 §4, one code path for `npm run chaos` (full size) and the CI test (reduced by
 * parameters):
 *
 * - R1: a replay of an HL7 feed over MLLP while Careway is killed with SIGKILL every CHAOS_KILL_EVERY_S and
 *   started again, Redis is restarted once (AOF everysec, as production needs) and the FHIR server is
 *   unavailable for CHAOS_FHIR_DOWN_S; then the FHIR server's history is checked (check.ts).
 * - R7: the FHIR server down for CHAOS_R7_DOWN_S while HL7 arrives at CHAOS_R7_RATE msg/s: ACK latency before
 *   and during the outage (intake must not wait for FHIR), and the rate the backlog drains at once it is back.
 */
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { mkdtempSync } from 'node:fs';
import { percentile } from '../lib.js';
import { checkRun, type CheckResult } from './check.js';
import { makeFeed } from './feed.js';
import { CarewayProcess, inboundCounts, RestartableRedis } from './procs.js';
import { FhirProxy, type Outage } from './proxy.js';
import { sendFeed, type SendResult } from './sender.js';

const num = (env: NodeJS.ProcessEnv, name: string, fallback: number): number => {
  const v = env[name];
  return v === undefined || v === '' ? fallback : Number(v);
};

export interface R1Params {
  readonly messages: number;
  readonly patients: number;
  readonly resendShare: number;
  readonly connections: number;
  readonly killEveryS: number;
  /** Stop killing after this many (0: no limit, kills go on until the backlog has drained). */
  readonly maxKills: number;
  readonly redisRestartAtS: number;
  readonly fhirDownAtS: number;
  readonly fhirDownS: number;
  readonly outage: Outage;
  readonly ackTimeoutMs: number;
  readonly partitions: number;
  readonly drainTimeoutS: number;
  readonly seed: number;
  /** Intake pace in msg/s; 0: as fast as the ACKs come (a replay). A paced feed spreads intake over the faults. */
  readonly rate: number;
}

/** R1's parameters: the issue's figures by default, each overridable by environment. */
export function r1Params(env: NodeJS.ProcessEnv, defaults: Partial<R1Params> = {}): R1Params {
  const d: R1Params = {
    messages: 20_000,
    patients: 2_000,
    resendShare: 0.02,
    connections: 4,
    killEveryS: 60,
    maxKills: 0,
    redisRestartAtS: 90,
    fhirDownAtS: 30,
    fhirDownS: 300,
    outage: 'refuse',
    ackTimeoutMs: 10_000,
    partitions: 4,
    drainTimeoutS: 3600,
    seed: 17,
    rate: 0,
    ...defaults,
  };
  return {
    messages: num(env, 'CHAOS_MESSAGES', d.messages),
    patients: num(env, 'CHAOS_PATIENTS', d.patients),
    resendShare: num(env, 'CHAOS_RESEND_SHARE', d.resendShare),
    connections: num(env, 'CHAOS_CONNECTIONS', d.connections),
    killEveryS: num(env, 'CHAOS_KILL_EVERY_S', d.killEveryS),
    maxKills: num(env, 'CHAOS_MAX_KILLS', d.maxKills),
    redisRestartAtS: num(env, 'CHAOS_REDIS_RESTART_AT_S', d.redisRestartAtS),
    fhirDownAtS: num(env, 'CHAOS_FHIR_DOWN_AT_S', d.fhirDownAtS),
    fhirDownS: num(env, 'CHAOS_FHIR_DOWN_S', d.fhirDownS),
    outage: (env['CHAOS_FHIR_OUTAGE'] as Outage | undefined) ?? d.outage,
    ackTimeoutMs: num(env, 'CHAOS_ACK_TIMEOUT_MS', d.ackTimeoutMs),
    partitions: num(env, 'HL7_PARTITIONS', d.partitions),
    drainTimeoutS: num(env, 'CHAOS_DRAIN_TIMEOUT_S', d.drainTimeoutS),
    seed: num(env, 'CHAOS_SEED', d.seed),
    rate: num(env, 'CHAOS_RATE', d.rate),
  };
}

export interface R1Result {
  readonly params: R1Params;
  readonly run: string;
  readonly seconds: number;
  readonly sent: Omit<SendResult, 'accepted' | 'rejected' | 'latencies'> & {
    readonly accepted: number;
    readonly rejected: number;
    readonly rejectedExamples: readonly string[];
  };
  readonly faults: {
    readonly kills: number;
    /** Starts that failed and were tried again (as a supervisor would). */
    readonly failedStarts: number;
    readonly redisRestarts: number;
    readonly fhirDownSeconds: number;
    readonly events: readonly string[];
  };
  readonly queue: Record<string, number>;
  readonly check: CheckResult;
}

export type Log = (msg: string) => void;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until hl7-inbound has nothing waiting, active or delayed (Redis may be restarting meanwhile). */
async function drained(
  redisUrl: string,
  partitions: number,
  deadline: number,
  ready: () => boolean,
  log: Log,
): Promise<Record<string, number>> {
  let lastLog = 0;
  let quiet = 0;
  for (;;) {
    const c = await inboundCounts(redisUrl, partitions).catch(() => undefined);
    const left = c ? (c['waiting'] ?? 0) + (c['active'] ?? 0) + (c['delayed'] ?? 0) : -1;
    // Twice in a row, a second apart: a job between `wait` and `active` is in neither list for an instant.
    quiet = c && left === 0 && ready() ? quiet + 1 : 0;
    if (quiet >= 2 && c) return c;
    if (Date.now() > deadline) throw new Error(`hl7-inbound did not drain in time: ${JSON.stringify(c)}`);
    if (Date.now() - lastLog > 15_000) {
      lastLog = Date.now();
      log(`draining: ${JSON.stringify(c)}`);
    }
    await sleep(1000);
  }
}

export async function runR1(hapiBase: string, p: R1Params, log: Log): Promise<R1Result> {
  const run = `c${Date.now().toString(36)}`;
  const since = new Date(Date.now() - 2000).toISOString();
  const logDir = mkdtempSync(join(tmpdir(), 'careway-chaos-'));
  const redis = await RestartableRedis.start('everysec');
  const proxy = await FhirProxy.start(hapiBase);
  const careway = await CarewayProcess.create(
    {
      FHIR_BASE_URL: proxy.baseFor(hapiBase),
      REDIS_URL: redis.url,
      HL7_PARTITIONS: String(p.partitions),
    },
    join(logDir, 'careway.log'),
  );
  const events: string[] = [];
  const t0 = Date.now();
  const at = (): string => `${((Date.now() - t0) / 1000).toFixed(0)}s`;
  const event = (e: string): void => {
    events.push(`${at()} ${e}`);
    log(e);
  };
  let stopFaults = false;
  let fhirDownFor = 0;
  let faultsDone = false;
  try {
    await careway.start();
    const feed = makeFeed(run, p.messages, p.patients, p.seed);
    log(
      `R1 ${run}: ${feed.messages.length} messages for ${p.patients} patients; Careway log ${careway.logFile}`,
    );

    // The faults, on their own clock. Each happens once its time has come and the one before it is over.
    const faults = (async () => {
      let nextKill = t0 + p.killEveryS * 1000;
      // A negative time (or no outage) leaves that fault out: a clean run of the same feed.
      let redisDone = p.redisRestartAtS < 0;
      let fhirState: 'before' | 'down' | 'after' = p.fhirDownS > 0 ? 'before' : 'after';
      let downAt = 0;
      while (!stopFaults) {
        const now = Date.now();
        if (fhirState === 'before' && now >= t0 + p.fhirDownAtS * 1000) {
          await proxy.down(p.outage);
          downAt = Date.now();
          fhirState = 'down';
          event(`FHIR server unavailable (${p.outage})`);
        } else if (fhirState === 'down' && now >= downAt + p.fhirDownS * 1000) {
          await proxy.up();
          fhirDownFor = (Date.now() - downAt) / 1000;
          fhirState = 'after';
          event('FHIR server back');
        }
        if (!redisDone && now >= t0 + p.redisRestartAtS * 1000) {
          event('Redis restarting (SIGTERM, AOF kept)');
          await redis.restart(2000);
          redisDone = true;
          event('Redis back');
        }
        const killsLeft = p.maxKills <= 0 || careway.kills < p.maxKills;
        if (p.killEveryS > 0 && killsLeft && now >= nextKill) {
          await careway.kill();
          event(`Careway killed (SIGKILL #${careway.kills})`);
          await careway.start();
          event('Careway started');
          nextKill = Date.now() + p.killEveryS * 1000;
        }
        faultsDone = redisDone && fhirState === 'after';
        await sleep(200);
      }
    })();

    const progress = setInterval(() => {
      void inboundCounts(redis.url, p.partitions)
        .then((c) => log(`${at()} queue ${JSON.stringify(c)}`))
        .catch(() => undefined);
    }, 30_000);
    let sent: SendResult;
    try {
      sent = await sendFeed(feed.messages, {
        port: careway.mllpPort,
        connections: p.connections,
        resendShare: p.resendShare,
        ackTimeoutMs: p.ackTimeoutMs,
        seed: p.seed,
        ...(p.rate > 0 ? { rate: p.rate } : {}),
      });
      event(`feed sent: ${sent.accepted.size} accepted, ${sent.rejected.size} rejected`);
      // Kills go on while the backlog drains: a worker killed mid-write is part of what is tested.
      const queue = await drained(
        redis.url,
        p.partitions,
        Date.now() + p.drainTimeoutS * 1000,
        () => faultsDone,
        log,
      );
      stopFaults = true;
      await faults;
      // Careway stops cleanly; anything it still had to do after the queue was empty (journey events, audit)
      // is not what R1 checks.
      await careway.stop();
      event('drained; checking the FHIR server history');
      const check = await checkRun(hapiBase, run, since, feed.messages, sent.accepted);
      const { accepted, rejected, latencies: _l, ...rest } = sent;
      return {
        params: p,
        run,
        seconds: (Date.now() - t0) / 1000,
        sent: {
          ...rest,
          accepted: accepted.size,
          rejected: rejected.size,
          rejectedExamples: [...rejected.values()].slice(0, 5),
        },
        faults: {
          kills: careway.kills,
          failedStarts: careway.failedStarts,
          redisRestarts: redis.restarts,
          fhirDownSeconds: fhirDownFor,
          events,
        },
        queue,
        check,
      };
    } finally {
      clearInterval(progress);
      stopFaults = true;
      await faults.catch(() => undefined);
    }
  } finally {
    await careway.stop().catch(() => undefined);
    await proxy.close();
    await redis.stop();
  }
}

export interface R7Params {
  readonly rate: number;
  readonly beforeS: number;
  readonly downS: number;
  readonly patients: number;
  readonly connections: number;
  readonly partitions: number;
  readonly outage: Outage;
  readonly drainMaxS: number;
}

export function r7Params(env: NodeJS.ProcessEnv, defaults: Partial<R7Params> = {}): R7Params {
  const d: R7Params = {
    rate: 100,
    beforeS: 60,
    downS: 600,
    patients: 2000,
    connections: 4,
    partitions: 4,
    outage: 'refuse',
    drainMaxS: 1800,
    ...defaults,
  };
  return {
    rate: num(env, 'CHAOS_R7_RATE', d.rate),
    beforeS: num(env, 'CHAOS_R7_BEFORE_S', d.beforeS),
    downS: num(env, 'CHAOS_R7_DOWN_S', d.downS),
    patients: num(env, 'CHAOS_R7_PATIENTS', d.patients),
    connections: num(env, 'CHAOS_CONNECTIONS', d.connections),
    partitions: num(env, 'HL7_PARTITIONS', d.partitions),
    outage: (env['CHAOS_FHIR_OUTAGE'] as Outage | undefined) ?? d.outage,
    drainMaxS: num(env, 'CHAOS_R7_DRAIN_MAX_S', d.drainMaxS),
  };
}

export interface R7Result {
  readonly params: R7Params;
  readonly messages: number;
  readonly accepted: number;
  readonly ack: Record<string, { n: number; p50: number; p99: number; max: number }>;
  /** Messages written per second while the FHIR server was up, before the outage (intake running). */
  readonly processedBeforePerSecond: number;
  readonly backlogAtRecovery: number;
  readonly drainSeconds: number;
  readonly drained: boolean;
  readonly drainPerSecond: number;
  readonly drainRatio: number;
  readonly queue: Record<string, number>;
}

export async function runR7(hapiBase: string, p: R7Params, log: Log): Promise<R7Result> {
  const run = `s${Date.now().toString(36)}`;
  const logDir = mkdtempSync(join(tmpdir(), 'careway-chaos-'));
  const redis = await RestartableRedis.start('everysec');
  const proxy = await FhirProxy.start(hapiBase);
  const careway = await CarewayProcess.create(
    { FHIR_BASE_URL: proxy.baseFor(hapiBase), REDIS_URL: redis.url, HL7_PARTITIONS: String(p.partitions) },
    join(logDir, 'careway.log'),
  );
  try {
    await careway.start();
    const total = Math.round(p.rate * (p.beforeS + p.downS));
    const feed = makeFeed(run, total, p.patients, 71);
    log(`R7 ${run}: ${total} messages at ${p.rate}/s; FHIR down after ${p.beforeS}s for ${p.downS}s`);
    const t0 = Date.now();
    const phase = (): string => {
      const s = (Date.now() - t0) / 1000;
      return s < p.beforeS ? 'before' : s < p.beforeS + p.downS ? 'during' : 'after';
    };
    const completed = async (): Promise<number> =>
      (await inboundCounts(redis.url, p.partitions))['completed'] ?? 0;
    let processedBefore = 0;
    let upAt = 0;
    let completedAtUp = 0;
    let backlog = 0;
    const faults = (async () => {
      await sleep(p.beforeS * 1000);
      processedBefore = await completed();
      await proxy.down(p.outage);
      log('R7: FHIR server unavailable');
      await sleep(p.downS * 1000);
      await proxy.up();
      upAt = Date.now();
      const c = await inboundCounts(redis.url, p.partitions);
      completedAtUp = c['completed'] ?? 0;
      backlog = (c['waiting'] ?? 0) + (c['active'] ?? 0) + (c['delayed'] ?? 0);
      log(`R7: FHIR server back, backlog ${backlog}`);
    })();
    const progress = setInterval(() => {
      void inboundCounts(redis.url, p.partitions)
        .then((c) => log(`R7 ${phase()} ${JSON.stringify(c)}`))
        .catch(() => undefined);
    }, 30_000);
    let sent: SendResult;
    try {
      sent = await sendFeed(feed.messages, {
        port: careway.mllpPort,
        connections: p.connections,
        resendShare: 0,
        rate: p.rate,
        ackTimeoutMs: 10_000,
        phase,
      });
      await faults;
    } finally {
      clearInterval(progress);
    }
    // Intake has stopped; the backlog drains with the FHIR server back.
    let drainedOk = true;
    let queue: Record<string, number>;
    try {
      queue = await drained(redis.url, p.partitions, upAt + p.drainMaxS * 1000, () => true, log);
    } catch {
      drainedOk = false;
      queue = await inboundCounts(redis.url, p.partitions);
    }
    const drainSeconds = (Date.now() - upAt) / 1000;
    const drainPerSecond = ((queue['completed'] ?? 0) - completedAtUp) / drainSeconds;
    const ack: R7Result['ack'] = {};
    for (const [ph, xs] of sent.latencies)
      ack[ph] = { n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99), max: Math.max(...xs) };
    return {
      params: p,
      messages: total,
      accepted: sent.accepted.size,
      ack,
      processedBeforePerSecond: processedBefore / p.beforeS,
      backlogAtRecovery: backlog,
      drainSeconds,
      drained: drainedOk,
      drainPerSecond,
      drainRatio: drainPerSecond / p.rate,
      queue,
    };
  } finally {
    await careway.stop().catch(() => undefined);
    await proxy.close();
    await redis.stop();
  }
}
