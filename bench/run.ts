/**
 * `npm run bench`: runs Careway's benchmarks, prints a table and writes bench/results/<id>-<time>.json.
 *
 * Every figure is a ratio to a comparator measured in the same run on the same machine (benchmarks.md),
 * because shared 2-core machines are too noisy for absolute numbers. Rounds alternate comparator and
 * subject, and medians are reported.
 *
 * Benchmarks so far:
 *   P5  FHIR facade `GET /fhir/Patient/{id}` at 200 concurrent, auth on, vs the same GET straight to HAPI.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import autocannon from 'autocannon';
import type { Patient } from 'fhir/r4.js';
import { startHapi, startRedis, freePort, type LocalService } from '../src/devstack/processes.js';
import { projectRoot } from '../src/shared/paths.js';
import { FhirClient } from '../src/fhir/client.js';
import { mintDevToken } from '../src/cli/dev-key-token.js';
import { DEV_AUDIENCE, DEV_ISSUER, loadOrCreateDevKey } from '../src/cli/dev-key.js';

interface Sample {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};

async function load(
  url: string,
  headers: Record<string, string>,
  seconds: number,
  connections: number,
): Promise<Sample> {
  const r = await autocannon({ url, connections, duration: seconds, headers, pipelining: 1 });
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
  };
}

async function main(): Promise<void> {
  const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);
  const seconds = Number(process.env['BENCH_SECONDS'] ?? 10);
  const connections = 200;
  const started: LocalService[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(started.reverse().map((s) => s.stop()));
  };
  process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    const [redis, hapi] = await Promise.all([
      process.env['REDIS_URL'] ?? startRedis().then((r) => (started.push(r), r.url)),
      process.env['FHIR_BASE_URL'] ??
        startHapi({ onProgress: (m) => process.stderr.write(`${m}\n`) }).then(
          (h) => (started.push(h), h.url),
        ),
    ]);
    const fhir = new FhirClient({ baseUrl: hapi });
    const { resource: patient } = await fhir.create<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: 'urn:careway:bench', value: crypto.randomUUID() }],
      gender: 'unknown',
    });

    const port = await freePort();
    const key = loadOrCreateDevKey();
    const careway = spawn(process.execPath, [join(projectRoot(), 'dist', 'src', 'main.js')], {
      env: {
        ...process.env,
        FHIR_BASE_URL: hapi,
        REDIS_URL: redis,
        AUTH_PUBLIC_KEY: key.publicPem,
        AUTH_ISSUER: DEV_ISSUER,
        AUTH_AUDIENCE: DEV_AUDIENCE,
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    started.push({
      url: '',
      pid: careway.pid,
      logFile: '',
      stop: async () => {
        careway.kill('SIGTERM');
        await new Promise((r) => careway.once('exit', r));
      },
    });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const ok = await fetch(`http://127.0.0.1:${port}/ready`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    const token = await mintDevToken({ scope: 'user/Patient.rs' });
    const direct = `${hapi}/Patient/${patient.id}`;
    const viaCareway = `http://127.0.0.1:${port}/fhir/Patient/${patient.id}`;
    const accept = { accept: 'application/fhir+json' };

    // Warm-up both paths (JIT, connection pools, HAPI caches).
    await load(direct, accept, 3, connections);
    await load(viaCareway, { ...accept, authorization: `Bearer ${token}` }, 3, connections);

    const d: Sample[] = [];
    const c: Sample[] = [];
    for (let i = 0; i < rounds; i++) {
      d.push(await load(direct, accept, seconds, connections));
      c.push(await load(viaCareway, { ...accept, authorization: `Bearer ${token}` }, seconds, connections));
      process.stderr.write(`round ${i + 1}/${rounds} done\n`);
    }
    const result = {
      id: 'P5',
      what: 'FHIR facade GET /fhir/Patient/{id}, 200 concurrent, auth on, vs direct to HAPI',
      machine: {
        cpus: cpus().length,
        cpu: cpus()[0]?.model,
        memGiB: Math.round(totalmem() / 2 ** 30),
        node: process.version,
      },
      rounds,
      secondsPerRound: seconds,
      direct: {
        rps: median(d.map((x) => x.rps)),
        p50: median(d.map((x) => x.p50)),
        p99: median(d.map((x) => x.p99)),
      },
      careway: {
        rps: median(c.map((x) => x.rps)),
        p50: median(c.map((x) => x.p50)),
        p99: median(c.map((x) => x.p99)),
      },
      errors: {
        direct: d.reduce((a, x) => a + x.errors + x.non2xx, 0),
        careway: c.reduce((a, x) => a + x.errors + x.non2xx, 0),
      },
      targets: { addedP99Ms: 2, throughputRatio: 0.9 },
    };
    const addedP99 = result.careway.p99 - result.direct.p99;
    const ratio = result.careway.rps / result.direct.rps;
    const out = { ...result, addedP99Ms: addedP99, throughputRatio: ratio, at: new Date().toISOString() };
    const dir = join(projectRoot(), 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `P5-${out.at.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);

    const row = (name: string, s: { rps: number; p50: number; p99: number }): string =>
      `| ${name.padEnd(22)} | ${s.rps.toFixed(0).padStart(8)} | ${s.p50.toFixed(1).padStart(7)} | ${s.p99.toFixed(1).padStart(7)} |`;
    process.stdout.write(
      [
        '',
        `P5 facade read, ${connections} concurrent, ${rounds}×${seconds}s rounds (medians)`,
        '| path                   |    req/s | p50 ms  | p99 ms  |',
        '|------------------------|----------|---------|---------|',
        row('direct to HAPI', result.direct),
        row('through Careway (auth)', result.careway),
        '',
        `throughput ratio ${ratio.toFixed(3)} (target >= 0.90), added p99 ${addedP99.toFixed(1)} ms (target <= 2 ms), errors ${JSON.stringify(result.errors)}`,
        `written to ${file}`,
        '',
      ].join('\n'),
    );
  } finally {
    await stopAll();
  }
}

await main();
