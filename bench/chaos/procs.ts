/**
 * The processes the chaos suite breaks: Careway as its own child process (built from dist/, as it runs in
 * production), killed with SIGKILL and started again on the same ports with the same sealing key (every
 * instance of one deployment shares it, or a successor could not open what its predecessor queued); and a
 * redis-server with its append-only file, restarted on the same port and directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { freePort, startRedis, type LocalService } from '../../src/devstack/processes.js';
import { projectRoot } from '../../src/shared/paths.js';
import { serviceEnv } from '../../src/shared/runtime.js';

/**
 * The service's entry: the one built next to this file when the suite itself runs from a build (so a long
 * `npm run chaos` can run from a copy of dist/ while dist/ is rebuilt), else dist/ (under vitest).
 */
function carewayMain(): string {
  const here = fileURLToPath(import.meta.url);
  return here.endsWith('.js')
    ? join(dirname(here), '..', '..', 'src', 'main.js')
    : join(projectRoot(), 'dist', 'src', 'main.js');
}

/**
 * What a run has started and must stop if the runner itself is interrupted (SIGINT, SIGTERM): without it an
 * interrupted run leaves its Careway, redis-server, HAPI and PostgreSQL running. Normal ends stop them in their
 * own `finally`; stopping twice is harmless.
 */
const started = new Set<() => Promise<void>>();
export function stopOnInterrupt(stop: () => Promise<void>): void {
  started.add(stop);
}
export async function stopEverything(): Promise<void> {
  await Promise.allSettled([...started].reverse().map((stop) => stop()));
}

export class CarewayProcess {
  private child: ChildProcess | undefined;
  private readonly sealingKey = randomBytes(32).toString('base64');
  private readonly publicKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
    type: 'spki',
    format: 'pem',
  }) as string;
  kills = 0;
  starts = 0;
  failedStarts = 0;

  private constructor(
    readonly port: number,
    readonly mllpPort: number,
    private readonly env: Record<string, string>,
    readonly logFile: string,
  ) {}

  static async create(env: Record<string, string>, logFile: string): Promise<CarewayProcess> {
    const p = new CarewayProcess(await freePort(), await freePort(), env, logFile);
    stopOnInterrupt(() => p.stop());
    return p;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts it and waits until its MLLP listener takes connections (not /ready: the FHIR server may be down). */
  /**
   * Starts it as a supervisor (systemd, Kubernetes) would: a start that fails (on a loaded 2-core machine a
   * plugin can miss Fastify's start-up deadline while Redis or the FHIR server is away) is tried again.
   */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startOnce();
        return;
      } catch (e) {
        if (attempt >= 5) throw e;
        this.failedStarts++;
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  private async startOnce(): Promise<void> {
    const fd = openSync(this.logFile, 'a');
    const child = spawn(process.execPath, [carewayMain()], {
      env: serviceEnv({
        PATH: process.env['PATH'] ?? '',
        AUTH_PUBLIC_KEY: this.publicKey,
        AUTH_ISSUER: 'https://chaos.careway.test',
        AUTH_AUDIENCE: 'careway',
        HL7_ENCRYPTION_KEY: this.sealingKey,
        PORT: String(this.port),
        HOST: '127.0.0.1',
        MLLP_PORT: String(this.mllpPort),
        LOG_LEVEL: 'warn',
        // No sweeps: they would add FHIR load the feed does not imply.
        REMINDER_SWEEP_INTERVAL: 'off',
        NOSHOW_SWEEP_INTERVAL: 'off',
        // An HL7 AA means "durably enqueued" only on a Redis that persists: refuse to listen otherwise.
        HL7_REQUIRE_DURABLE: 'true',
        ...this.env,
      }),
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    this.child = child;
    this.starts++;
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (child.exitCode !== null)
        throw new Error(`Careway exited with ${child.exitCode}; see ${this.logFile}`);
      const ok = await new Promise<boolean>((resolve) => {
        const sock = connect(this.mllpPort, '127.0.0.1');
        sock.once('connect', () => {
          sock.destroy();
          resolve(true);
        });
        sock.once('error', () => resolve(false));
      });
      if (ok) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`Careway's MLLP listener did not open; see ${this.logFile}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** SIGKILL: no shutdown hook runs, whatever was in hand is cut off. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    this.kills++;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(t);
  }
}

/** A redis-server with AOF that can be restarted keeping its data. */
export class RestartableRedis {
  private service: LocalService | undefined;
  restarts = 0;
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly appendfsync: 'everysec' | 'always',
  ) {}

  static async start(appendfsync: 'everysec' | 'always' = 'everysec'): Promise<RestartableRedis> {
    const r = new RestartableRedis(
      await freePort(),
      mkdtempSync(join(tmpdir(), 'careway-chaos-redis-')),
      appendfsync,
    );
    stopOnInterrupt(() => r.stop());
    await r.up();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private async up(): Promise<void> {
    this.service = await startRedis({
      port: this.port,
      strictPort: true,
      dir: this.dir,
      appendfsync: this.appendfsync,
    });
  }

  /**
   * A restart as an operator or a host reboot does it: SIGTERM (Redis writes what it has and exits), then a
   * new server on the same directory, which reloads the append-only file. `downMs` is how long it stays away.
   */
  async restart(downMs = 2000): Promise<void> {
    await this.service?.stop();
    await new Promise((r) => setTimeout(r, downMs));
    await this.up();
    this.restarts++;
  }

  async stop(): Promise<void> {
    await this.service?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** hl7-inbound's jobs by state, summed over its partitions (as bench P3 reads them). */
export async function inboundCounts(
  redisUrl: string,
  partitions: number,
  prefix = 'careway',
): Promise<Record<string, number>> {
  const redis = new Redis(redisUrl, {
    maxRetriesPerRequest: 1,
    lazyConnect: true,
    retryStrategy: () => null,
  });
  // Redis may be restarting (R1 restarts it): the caller tries again.
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const out: Record<string, number> = {};
    for (let i = 0; i < partitions; i++) {
      const q = `${prefix}:hl7-inbound-p${i}`;
      const [wait, active, delayed, failed, completed, prioritized] = await Promise.all([
        redis.llen(`${q}:wait`),
        redis.llen(`${q}:active`),
        redis.zcard(`${q}:delayed`),
        redis.zcard(`${q}:failed`),
        redis.zcard(`${q}:completed`),
        redis.zcard(`${q}:prioritized`),
      ]);
      out['waiting'] = (out['waiting'] ?? 0) + wait + prioritized;
      out['active'] = (out['active'] ?? 0) + active;
      out['delayed'] = (out['delayed'] ?? 0) + delayed;
      out['failed'] = (out['failed'] ?? 0) + failed;
      out['completed'] = (out['completed'] ?? 0) + completed;
    }
    out['dead'] = await redis.llen(`${prefix}:hl7-dead:wait`);
    return out;
  } finally {
    redis.disconnect();
  }
}
