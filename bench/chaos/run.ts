/**
 * `npm run chaos [-- R1 R7 DURABILITY]`: the fault runs of issue #17 §4 on real processes (all by default).
 * Starts its own HAPI on a free port (CHAOS_FHIR_BASE_URL reuses a running one; CHAOS_POSTGRES=on puts HAPI on
 * a throwaway PostgreSQL, as bench P4 does at scale), and for each run its own redis-server (AOF everysec) and
 * Careway process. Prints a table and writes bench/results/CHAOS-<time>.json.
 *
 * Sizes by environment (defaults: the figures): CHAOS_MESSAGES, CHAOS_PATIENTS, CHAOS_RESEND_SHARE,
 * CHAOS_CONNECTIONS, CHAOS_KILL_EVERY_S, CHAOS_MAX_KILLS, CHAOS_REDIS_RESTART_AT_S, CHAOS_FHIR_DOWN_AT_S, CHAOS_FHIR_DOWN_S,
 * CHAOS_FHIR_OUTAGE (refuse | blackhole), CHAOS_ACK_TIMEOUT_MS, CHAOS_DRAIN_TIMEOUT_S, CHAOS_SEED, CHAOS_RATE;
 * CHAOS_R7_RATE, CHAOS_R7_BEFORE_S, CHAOS_R7_DOWN_S, CHAOS_R7_PATIENTS, CHAOS_R7_DRAIN_MAX_S;
 * CHAOS_DURABILITY_MESSAGES.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startHapi, type LocalService } from '../../src/devstack/processes.js';
import { projectRoot } from '../../src/shared/paths.js';
import { writeResult } from '../lib.js';
import { runDurability, type DurabilityResult } from './durability.js';
import { r1Params, r7Params, runR1, runR7, type R1Result, type R7Result } from './runs.js';
import { stopEverything, stopOnInterrupt } from './procs.js';

const wanted = new Set(process.argv.slice(2).map((a) => a.toUpperCase()));
const pick = (id: string): boolean => wanted.size === 0 || wanted.has(id);
const t0 = Date.now();
const log = (m: string): void => {
  process.stderr.write(`[chaos ${((Date.now() - t0) / 1000).toFixed(0)}s] ${m}\n`);
};

async function fhirServer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const given = process.env['CHAOS_FHIR_BASE_URL'];
  if (given) return { url: given, stop: async () => undefined };
  const env: Record<string, string> = {};
  let pgStop: (() => void) | undefined;
  if (process.env['CHAOS_POSTGRES'] === 'on') {
    // Its own temp dir: postgres.sh keeps its cluster under $TMPDIR, which other runs may share.
    const dir = mkdtempSync(join(tmpdir(), 'careway-chaos-pg-'));
    // The `postgres` user writes its init log next to the cluster (postgres.sh runs it as that user as root).
    chmodSync(dir, 0o777);
    const script = join(projectRoot(), 'test', 'fhir-server', 'postgres.sh');
    const port = await freePort();
    const r = spawnSync('bash', [script, 'start', String(port)], {
      env: { ...process.env, TMPDIR: dir },
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`postgres.sh start failed: ${r.stderr}`);
    env['HAPI_JDBC_URL'] = r.stdout.trim().split('\n').at(-1) ?? '';
    pgStop = () => spawnSync('bash', [script, 'stop'], { env: { ...process.env, TMPDIR: dir } });
  }
  let hapi: LocalService;
  try {
    // Schema creation on an empty PostgreSQL takes minutes on a busy 2-core machine.
    hapi = await startHapi({ tuning: 'throughput', env, onProgress: log, timeoutMs: 900_000 });
  } catch (e) {
    pgStop?.();
    throw e;
  }
  return {
    url: hapi.url,
    stop: async () => {
      await hapi.stop();
      pgStop?.();
    },
  };
}

for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    log(`${signal}: stopping what this run started`);
    void stopEverything().finally(() => process.exit(130));
  });
const fhir = await fhirServer();
stopOnInterrupt(() => fhir.stop());
log(`FHIR server ${fhir.url}`);
const results: { R1?: R1Result; R7?: R7Result; DURABILITY?: DurabilityResult } = {};
const lines: string[] = [];
try {
  if (pick('DURABILITY')) {
    const d = await runDurability(fhir.url, Number(process.env['CHAOS_DURABILITY_MESSAGES'] ?? 3000), log);
    results.DURABILITY = d;
  }
  if (pick('R1')) results.R1 = await runR1(fhir.url, r1Params(process.env), log);
  if (pick('R7')) results.R7 = await runR7(fhir.url, r7Params(process.env), log);
} finally {
  await fhir.stop();
}

const row = (k: string, v: string | number): string => `| ${k.padEnd(52)} | ${String(v).padStart(12)} |`;
const head = [
  '| figure'.padEnd(54) + ' | ' + 'value'.padStart(12) + ' |',
  `|${'-'.repeat(54)}|${'-'.repeat(14)}|`,
];
if (results.R1) {
  const r = results.R1;
  lines.push(
    '',
    `R1: HL7 replay under faults (${r.seconds.toFixed(0)} s)`,
    ...head,
    row('messages in the feed', r.params.messages),
    row('patients', r.params.patients),
    row('accepted (AA)', r.sent.accepted),
    row('rejected (AR)', r.sent.rejected),
    row('deliberate resends after AA', r.sent.deliberateResends),
    row('resends for a missing ACK, a lost connection or AE', r.sent.retrySends),
    row('AE answers', r.sent.aeAcks),
    row('Careway SIGKILLs', r.faults.kills),
    row('Careway starts that failed and were retried', r.faults.failedStarts),
    row('Redis restarts', r.faults.redisRestarts),
    row('FHIR server unavailable (s)', r.faults.fhirDownSeconds.toFixed(0)),
    row('lost messages', r.check.lostMessages),
    row('missing resources', r.check.missingResources),
    row('duplicate resources', r.check.duplicateResources),
    row('duplicate journeys', r.check.duplicateJourneys),
    row('extra versions', r.check.extraVersions),
    row('order violations', r.check.orderViolations),
    row('dead-lettered messages', r.queue['dead'] ?? 0),
    row('versions checked', r.check.versions),
    ...r.check.examples.slice(0, 10).map((e) => `  ${e}`),
  );
}
if (results.R7) {
  const r = results.R7;
  const a = (ph: string, k: 'p50' | 'p99'): string => (r.ack[ph]?.[k] ?? NaN).toFixed(1);
  lines.push(
    '',
    `R7: FHIR server down ${r.params.downS} s at ${r.params.rate} msg/s`,
    ...head,
    row('messages', r.messages),
    row('accepted (AA)', r.accepted),
    row('ACK p50 before / during (ms)', `${a('before', 'p50')} / ${a('during', 'p50')}`),
    row('ACK p99 before / during (ms)', `${a('before', 'p99')} / ${a('during', 'p99')}`),
    row('written per second before the outage', r.processedBeforePerSecond.toFixed(1)),
    row('backlog when the FHIR server came back', r.backlogAtRecovery),
    row(`drain (s)${r.drained ? '' : ', stopped before the end'}`, r.drainSeconds.toFixed(0)),
    row('drain rate (msg/s)', r.drainPerSecond.toFixed(1)),
    row('drain rate / intake rate (target >= 3)', r.drainRatio.toFixed(2)),
    row('dead-lettered messages', r.queue['dead'] ?? 0),
  );
}
if (results.DURABILITY) {
  const d = results.DURABILITY;
  lines.push(
    '',
    `Redis durability: HL7 accept path, ${d.messages} messages over MLLP, ${d.connections} connections`,
    ...head,
    row('appendfsync everysec: msg/s', d.everysec.perSecond.toFixed(0)),
    row('appendfsync always: msg/s', d.always.perSecond.toFixed(0)),
    row('ACK p50 everysec / always (ms)', `${d.everysec.p50.toFixed(2)} / ${d.always.p50.toFixed(2)}`),
    row('ACK p99 everysec / always (ms)', `${d.everysec.p99.toFixed(2)} / ${d.always.p99.toFixed(2)}`),
    row('always / everysec throughput', d.ratio.toFixed(3)),
  );
}
const file = writeResult('CHAOS', { ...results });
lines.push('', `written to ${file}`);
process.stdout.write(`${lines.join('\n')}\n`);
const bad = results.R1
  ? results.R1.check.lostMessages +
    results.R1.check.duplicateResources +
    results.R1.check.duplicateJourneys +
    results.R1.check.extraVersions +
    results.R1.check.orderViolations
  : 0;
process.exit(bad === 0 ? 0 : 1);
