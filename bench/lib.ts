/**
 * Shared parts of the benchmarks: the stack (HAPI, Redis and a Careway process, all real and local), a dev
 * token, medians, and writing results. Each benchmark measures its comparator in the same run.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { startHapi, startRedis, freePort, type LocalService } from '../src/devstack/processes.js';
import { projectRoot } from '../src/shared/paths.js';
import { serviceEnv } from '../src/shared/runtime.js';
import { FhirClient } from '../src/fhir/client.js';
import { mintDevToken } from '../src/cli/dev-key-token.js';
import { DEV_AUDIENCE, DEV_ISSUER, loadOrCreateDevKey } from '../src/cli/dev-key.js';

export interface Stack {
  readonly hapi: string;
  readonly redis: string;
  readonly careway: string;
  readonly mllpPort: number;
  /** The Careway process, for memory readings. */
  readonly carewayPid: number | undefined;
  readonly fhir: FhirClient;
  token(scope: string): Promise<string>;
  stop(): Promise<void>;
}

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};

export const percentile = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};

export function machine(): Record<string, unknown> {
  return {
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
}

/** A Careway process on the given HAPI and Redis (the benches' own, or a second one with other settings). */
export async function startCareway(
  hapi: string,
  redis: string,
  extraEnv: Record<string, string> = {},
  /** The checkout whose build runs (a comparator may run an earlier commit's build, e.g. P7's `before`). */
  root: string = projectRoot(),
): Promise<{ careway: string; mllpPort: number; service: LocalService }> {
  const port = await freePort();
  const mllpPort = await freePort();
  const key = loadOrCreateDevKey();
  const child = spawn(process.execPath, [join(root, 'dist', 'src', 'main.js')], {
    env: serviceEnv({
      ...process.env,
      FHIR_BASE_URL: hapi,
      REDIS_URL: redis,
      AUTH_PUBLIC_KEY: key.publicPem,
      AUTH_ISSUER: DEV_ISSUER,
      AUTH_AUDIENCE: DEV_AUDIENCE,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      MLLP_PORT: String(mllpPort),
      HL7_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      // No sweeps in a benchmark's service: the reminder sweep would re-plan every appointment a bench set
      // up (reads, CommunicationRequests revoked and created on HAPI), load the benches never asked for.
      REMINDER_SWEEP_INTERVAL: 'off',
      NOSHOW_SWEEP_INTERVAL: 'off',
      ...extraEnv,
    }),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const service: LocalService = {
    url: '',
    pid: child.pid,
    logFile: '',
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
  const careway = `http://127.0.0.1:${port}`;
  // 180 s: on the shared 2-core machine under load (load average 26) a Careway took 70 s to be ready.
  const deadline = Date.now() + 180_000;
  for (;;) {
    const ok = await fetch(`${careway}/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      await service.stop();
      throw new Error('Careway did not become ready');
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  return { careway, mllpPort, service };
}

/** Starts HAPI and Redis (unless FHIR_BASE_URL / REDIS_URL are given) and a Careway process on them. */
export async function startStack(): Promise<Stack> {
  const started: LocalService[] = [];
  const stop = async (): Promise<void> => {
    await Promise.allSettled(started.reverse().map((s) => s.stop()));
  };
  try {
    const [redis, hapi] = await Promise.all([
      process.env['REDIS_URL'] ?? startRedis().then((r) => (started.push(r), r.url)),
      process.env['FHIR_BASE_URL'] ??
        // Measured against HAPI tuned as a hospital would run it, not the fast-starting test server.
        startHapi({ tuning: 'throughput', onProgress: (m) => process.stderr.write(`${m}\n`) }).then(
          (h) => (started.push(h), h.url),
        ),
    ]);
    const first = await startCareway(hapi, redis);
    started.push(first.service);
    const { careway, mllpPort } = first;
    const child = { pid: first.service.pid };
    const fhir = new FhirClient({ baseUrl: hapi });
    return {
      hapi,
      redis,
      careway,
      mllpPort,
      carewayPid: child.pid,
      fhir,
      token: (scope) => mintDevToken({ scope }),
      stop: async () => {
        await fhir.close();
        await stop();
      },
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

export function writeResult(id: string, result: Record<string, unknown>): string {
  const at = new Date().toISOString();
  const dir = join(projectRoot(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${id}-${at.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ id, at, machine: machine(), ...result }, null, 2)}\n`);
  return file;
}

/** Resident set size of a process in MiB (Linux /proc), or undefined when it cannot be read. */
export function rssMiB(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The process listening on a local TCP port (Linux /proc), e.g. HAPI's JVM behind its launcher script. */
export function pidListeningOn(port: number): number | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (cols.length > 9 && cols[1]?.endsWith(`:${hexPort}`) && cols[3] === '0A') inodes.add(cols[9]!);
      }
    } catch {
      // no such table (no IPv6, not Linux)
    }
  }
  if (inodes.size === 0) return undefined;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) return Number(pid);
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined;
}

/** CPU seconds (user + system) a process has used so far (Linux /proc; clock ticks of 1/100 s). */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    // The command name (field 2) may hold spaces: the fields after it start past its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return undefined;
  }
}
