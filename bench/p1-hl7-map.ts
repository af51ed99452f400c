/**
 * P1: HL7 parse + map to a transaction Bundle on one core, against parsing alone in the same run, on a
 * realistic corpus: the feed variations of test/fixtures/hl7/feeds (namespace-only and OID authorities, v2.3 to
 * v2.8, repeated ORU groups and SIU resources, Z-segments, escapes, batches split into their messages) plus a
 * few synthetic ADT and SIU messages.
 * Targets (benchmarks.md): parse + map ≥ 15,000 msg/s; parse alone ≥ 100,000 msg/s with p99 ≤ 35 µs.
 * Comparator in the same run: the LinuxForHealth converter (bench/lf4h, a Java harness built with Maven) on the
 * messages of the feed corpus it converts, against Careway on those same messages: keep ≥ 40×.
 * BENCH_P1_COMPARATOR=off skips it (it needs Java and Maven, and about a minute).
 * Also P7's second half: heap growth over 1M parse iterations.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { splitBatch } from '../src/hl7/batch.js';
import { decodeMessage } from '../src/hl7/charset.js';
import { Hl7Message } from '../src/hl7/message.js';
import { loadMappings, Mapper } from '../src/hl7/mapping/engine.js';
import { buildTransaction } from '../src/hl7/mapping/transaction.js';
import { projectRoot } from '../src/shared/paths.js';
import { percentile, writeResult } from './lib.js';

const SYS = 'urn:oid:2.16.840.1.113883.19.5';

/** The feed corpus, as the intake sees it: decoded by MSH-18, batches split, the good messages only. */
function feeds(): string[] {
  const dir = join(projectRoot(), 'test', 'fixtures', 'hl7', 'feeds');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.hl7') && !/^\d+-bad-/.test(f))
    .sort()
    .flatMap((f) => {
      const bytes = Buffer.from(
        readFileSync(join(dir, f)).toString('latin1').replaceAll('{{RUN}}', 'B1'),
        'latin1',
      );
      return splitBatch(decodeMessage(bytes, 'utf-8').text);
    });
}

function corpus(): string[] {
  const pv1 = Array.from({ length: 46 }, () => '');
  pv1[0] = 'PV1';
  pv1[2] = 'I';
  pv1[19] = `V1^^^H&${SYS}.2&ISO^VN`;
  pv1[44] = '20240115080000';
  const sch = Array.from({ length: 26 }, () => '');
  sch[0] = 'SCH';
  sch[1] = `A1^EPIC^${SYS}.3`;
  sch[8] = 'FOLLOWUP^Follow-up^LOCAL';
  sch[11] = '^^^202402010900^202402010930';
  sch[25] = 'Booked';
  const pid = `PID|1||MRN1^^^H&${SYS}&ISO^MR~99-88^^^SSA&http://hl7.org/fhir/sid/us-ssn&URI^SS||Doe^Jane^Q^^Dr||19700101|F|||1 Main St^^Springfield^IL^62701||555-0100`;
  return [
    ...feeds(),
    ...['A01', 'A03', 'A04', 'A08'].map(
      (t) =>
        `MSH|^~\\&|EPIC|H|CW|CW|20240115083015-0500||ADT^${t}^ADT_A01|1|P|2.5\rEVN|${t}|20240115\r${pid}\r${pv1.join('|')}\r`,
    ),
    ...['S12', 'S13', 'S15', 'S26'].map(
      (t) =>
        `MSH|^~\\&|EPIC|H|CW|CW|20240115083015-0500||SIU^${t}^SIU_S12|2|P|2.5\r${sch.join('|')}\r${pid}\r`,
    ),
  ];
}

interface Lf4hResult {
  readonly converted: readonly string[];
  readonly refused: readonly string[];
  readonly perSecond?: number;
}

/** Builds (when stale) and runs the LinuxForHealth harness on the messages, one file each. */
function runLinuxForHealth(messages: readonly string[]): {
  result?: Lf4hResult;
  files: string[];
  why?: string;
} {
  const dir = join(projectRoot(), 'bench', 'lf4h');
  const files = messages.map((_, i) => `${String(i).padStart(3, '0')}.hl7`);
  const stamp = join(dir, 'target', '.build-stamp');
  const newest = (d: string): number =>
    readdirSync(d, { withFileTypes: true }).reduce(
      (t, e) => Math.max(t, e.isDirectory() ? newest(join(d, e.name)) : statSync(join(d, e.name)).mtimeMs),
      0,
    );
  const stale =
    !existsSync(stamp) ||
    statSync(stamp).mtimeMs < Math.max(statSync(join(dir, 'pom.xml')).mtimeMs, newest(join(dir, 'src')));
  if (stale) {
    const built = spawnSync('mvn', ['-q', '-B', '-DskipTests', 'package'], {
      cwd: dir,
      stdio: ['ignore', 2, 2],
    });
    if (built.status !== 0) return { files, why: 'the LinuxForHealth harness did not build (Maven)' };
    writeFileSync(stamp, '');
  }
  const work = mkdtempSync(join(tmpdir(), 'careway-p1-'));
  try {
    messages.forEach((m, i) => writeFileSync(join(work, files[i] ?? ''), m, 'utf8'));
    const perRound = Number(process.env['BENCH_P1_LF4H_MESSAGES'] ?? 1000);
    const run = spawnSync(
      'java',
      [
        '-cp',
        `${join(dir, 'target', 'classes')}:${join(dir, 'target', 'lib', '*')}`,
        'org.careway.bench.Lf4hBench',
        work,
        String(perRound),
        '3',
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 20 },
    );
    const line = run.stdout.trim().split('\n').at(-1) ?? '';
    if (run.status !== 0 || !line.startsWith('{')) return { files, why: 'the LinuxForHealth harness failed' };
    return { result: JSON.parse(line) as Lf4hResult, files };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export async function runP1(iterations: number): Promise<string[]> {
  const root = join(projectRoot(), 'mappings');
  const mapper = new Mapper(await loadMappings([root], join(root, 'schema.json')));
  const msgs = corpus();
  const facts = {
    jobId: 'j',
    sender: 'EPIC^H',
    controlId: '1',
    type: 'x',
    receivedAt: '2024-01-01T00:00:00Z',
  };
  const fullRun = (m: string): void => {
    const msg = Hl7Message.parse(m);
    buildTransaction(
      mapper.message(msg, { zone: 'America/Chicago', delimiters: msg.delimiters, sender: msg.sender }),
      facts,
    );
  };
  const parseOnly = (m: string): void => {
    const msg = Hl7Message.parse(m);
    for (const s of msg.segments) s.get(3);
  };
  // Warm-up (JIT), then alternate measured blocks; per-message latency from a sampled subset.
  for (let i = 0; i < 20_000; i++) {
    fullRun(msgs[i % msgs.length] ?? '');
    parseOnly(msgs[i % msgs.length] ?? '');
  }
  const rate = (fn: (m: string) => void, n: number): number => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn(msgs[i % msgs.length] ?? '');
    return n / ((performance.now() - t0) / 1000);
  };
  const lat = (fn: (m: string) => void, n: number): number[] => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      fn(msgs[i % msgs.length] ?? '');
      out.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    return out;
  };
  const mapRates: number[] = [];
  const parseRates: number[] = [];
  for (let r = 0; r < 5; r++) {
    parseRates.push(rate(parseOnly, iterations));
    mapRates.push(rate(fullRun, iterations));
  }
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const med = (xs: number[]) => sorted(xs)[Math.floor(xs.length / 2)] ?? 0;
  const parseLat = lat(parseOnly, 50_000);
  const mapLat = lat(fullRun, 20_000);

  // The comparator: LinuxForHealth on the feed messages it converts, and Careway on exactly those.
  const feedMessages = feeds();
  let comparator:
    { lf4hPerSecond: number; carewayPerSecond: number; messages: number; refused: number } | undefined;
  let comparatorNote = 'LinuxForHealth comparator skipped (BENCH_P1_COMPARATOR=off)';
  if (process.env['BENCH_P1_COMPARATOR'] !== 'off') {
    const lf = runLinuxForHealth(feedMessages);
    if (lf.result?.perSecond) {
      const subset = feedMessages.filter((_, i) => lf.result?.converted.includes(lf.files[i] ?? ''));
      const subsetRate = (n: number): number => {
        const t0 = performance.now();
        for (let i = 0; i < n; i++) fullRun(subset[i % subset.length] ?? '');
        return n / ((performance.now() - t0) / 1000);
      };
      const rates = Array.from({ length: 5 }, () => subsetRate(iterations));
      comparator = {
        lf4hPerSecond: lf.result.perSecond,
        carewayPerSecond: med(rates),
        messages: subset.length,
        refused: lf.result.refused.length,
      };
      comparatorNote = `LinuxForHealth 1.0.19 on the ${subset.length} feed messages it converts (it refuses ${comparator.refused}: REF, and messages it cannot parse): ${comparator.lf4hPerSecond.toFixed(0)} msg/s; Careway on the same: ${comparator.carewayPerSecond.toFixed(0)} msg/s, ${(comparator.carewayPerSecond / comparator.lf4hPerSecond).toFixed(0)}× (target >= 40×)`;
    } else comparatorNote = `LinuxForHealth comparator not run: ${lf.why ?? 'no message converted'}`;
  }

  // P7 (second half): heap after 1M parses, against the heap before.
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  for (let i = 0; i < 1_000_000; i++) parseOnly(msgs[i % msgs.length] ?? '');
  global.gc?.();
  const heapAfter = process.memoryUsage().heapUsed;

  const result = {
    what: 'HL7 parse + map to a transaction Bundle (the feed corpus of real variations + synthetic ADT/SIU), one core; comparator: parse alone',
    corpusMessages: msgs.length,
    iterationsPerRound: iterations,
    mapPerSecond: med(mapRates),
    parsePerSecond: med(parseRates),
    parseP99Us: percentile(parseLat, 99),
    mapP99Us: percentile(mapLat, 99),
    mapToParseRatio: med(mapRates) / med(parseRates),
    heapGrowthMiBOver1MParses: (heapAfter - heapBefore) / 2 ** 20,
    ...(comparator
      ? { linuxForHealth: { ...comparator, ratio: comparator.carewayPerSecond / comparator.lf4hPerSecond } }
      : {}),
    gcExposed: typeof global.gc === 'function',
    targets: { mapPerSecond: 15_000, parsePerSecond: 100_000, parseP99Us: 35, linuxForHealthRatio: 40 },
  };
  const file = writeResult('P1', result);
  return [
    `P1 HL7 parse + map (one core, medians of 5 rounds, ${msgs.length} messages: the feed corpus + synthetic)`,
    '| step            |   msg/s | p99 µs |',
    '|-----------------|---------|--------|',
    `| parse alone     | ${result.parsePerSecond.toFixed(0).padStart(7)} | ${result.parseP99Us.toFixed(1).padStart(6)} |`,
    `| parse + map + tx| ${result.mapPerSecond.toFixed(0).padStart(7)} | ${result.mapP99Us.toFixed(1).padStart(6)} |`,
    `targets: map >= 15,000 msg/s, parse >= 100,000 msg/s with p99 <= 35 µs; heap growth over 1M parses ${result.heapGrowthMiBOver1MParses.toFixed(2)} MiB${result.gcExposed ? '' : ' (run with --expose-gc for an exact figure)'}`,
    comparatorNote,
    `written to ${file}`,
  ];
}
