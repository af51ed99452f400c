/**
 * Local stand-ups of the real parts for the demo, the tests and the benchmarks: a redis-server and the HAPI
 * FHIR JPA launcher (test/fhir-server/), each bound to 127.0.0.1 on a free port and stopped on exit.
 * Not used by the service itself, which only ever takes FHIR_BASE_URL and REDIS_URL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../shared/paths.js';
import { ownsPort, portFree, PortTakenError } from './ports.js';

export interface LocalService {
  readonly url: string;
  readonly pid: number | undefined;
  readonly logFile: string;
  /** Settles with a one-line reason when the process ends, whenever that is (also after `stop()`). */
  readonly exited?: Promise<string>;
  stop(): Promise<void>;
}

/**
 * The port to start on: `port` when it is free; when it is taken, a free one chosen by the OS, unless `strict`
 * (the user named that port), which fails with a PortTakenError naming `variable`.
 */
export async function choosePort(
  port: number | undefined,
  strict: boolean,
  what: string,
  variable: string,
): Promise<number> {
  if (port === undefined || port === 0) return freePort();
  if (await portFree(port)) return port;
  if (strict) throw new PortTakenError(port, what, variable);
  return freePort();
}

/** Settles with a reason when the child ends; never rejects. */
function exitOf(child: ChildProcess, name: string, logFile: string): Promise<string> {
  return new Promise((resolve) => {
    child.once('exit', (code, signal) =>
      resolve(
        `${name} (pid ${child.pid}) exited (${signal ? `signal ${signal}` : `code ${code}`}); see ${logFile}`,
      ),
    );
    child.once('error', (e) => resolve(`${name} could not run: ${e.message}`));
  });
}

/**
 * After a server answered on `port`: it must be our child answering, not another process that held the port
 * (or took it while ours was starting). Throws a one-line error otherwise.
 */
function checkOwner(child: ChildProcess, port: number, name: string): void {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid)
    throw new Error(`${name} exited while starting; something else answers on port ${port}`);
  if (ownsPort(child.pid, port) === 'no')
    throw new Error(
      `another process answers on port ${port}, not the ${name} this command started (pid ${child.pid}); stop it or choose another port`,
    );
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function stopper(child: ChildProcess, graceMs: number): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), graceMs);
    });
    // Clear the grace timer once the child exits, or it would hold the caller's event loop open.
    const done = await Promise.race([exited.then(() => true), graceOver]);
    clearTimeout(timer);
    if (!done) {
      child.kill('SIGKILL');
      await exited;
    }
  };
}

/**
 * A redis-server on 127.0.0.1. It persists with an append-only file (`appendfsync everysec`), as production must:
 * an HL7 AA means "durably enqueued", which holds only if Redis keeps what it acknowledged across a restart.
 * `persistent: false` gives a forgetful Redis, for tests of what Careway does when Redis loses its state.
 */
export async function startRedis(
  options: {
    port?: number;
    persistent?: boolean;
    strictPort?: boolean;
    /** `always` fsyncs before each acknowledged write (the chaos suite measures what that costs). */
    appendfsync?: 'everysec' | 'always';
    /**
     * A data directory the caller owns and keeps on stop: a Redis restarted on the same port and directory
     * reloads its append-only file (the chaos suite restarts Redis mid-run).
     */
    dir?: string;
  } = {},
): Promise<LocalService> {
  const port = await choosePort(options.port, options.strictPort ?? false, 'redis-server', 'REDIS_PORT');
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'careway-redis-'));
  const logFile = join(dir, 'redis.log');
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      options.persistent === false ? 'no' : 'yes',
      '--appendfsync',
      options.appendfsync ?? 'everysec',
      '--dir',
      dir,
      '--logfile',
      logFile,
    ],
    { stdio: 'ignore' },
  );
  const failed = new Promise<never>((_, reject) => {
    child.once('error', (e) =>
      reject(new Error(`redis-server could not start (is it installed and on PATH?): ${e.message}`)),
    );
    child.once('exit', (code) => reject(new Error(`redis-server exited with code ${code}; see ${logFile}`)));
  });
  failed.catch(() => undefined);
  const exited = exitOf(child, 'redis-server', logFile);
  const stop = stopper(child, 5000);
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ok = await Promise.race([canConnect(port), failed]);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`redis-server did not accept connections on ${port}`);
      await sleep(50);
    }
    checkOwner(child, port, 'redis-server');
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid,
    logFile,
    exited,
    stop: async () => {
      await stop();
      if (!options.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function canConnect(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Starts the HAPI FHIR launcher (building it with Maven first if needed) and waits for `/fhir/metadata`.
 * The log goes to a file, since HAPI is chatty and its log is only needed when start-up fails.
 */
export async function startHapi(
  options: {
    port?: number;
    timeoutMs?: number;
    onProgress?: (msg: string) => void;
    /** hapi.sh's HAPI_TUNING: `test` starts fast (the default), `throughput` runs as a server would. */
    tuning?: 'test' | 'throughput';
    /** Extra environment for the launcher, e.g. HAPI_REQUIRE_JWKS_URL for a secured server. */
    env?: Readonly<Record<string, string>>;
    /** `port` was named by the user (HAPI_PORT): fail when it is taken instead of choosing another. */
    strictPort?: boolean;
  } = {},
): Promise<LocalService> {
  // Checked before the (long) build, so a taken port named by the user fails at once.
  let port = await choosePort(options.port, options.strictPort ?? false, 'HAPI FHIR', 'HAPI_PORT');
  const script = join(projectRoot(), 'test', 'fhir-server', 'hapi.sh');
  const dir = mkdtempSync(join(tmpdir(), 'careway-hapi-'));
  const logFile = join(dir, 'hapi.log');

  options.onProgress?.('building the HAPI FHIR launcher (first run downloads Maven dependencies)…');
  await new Promise<void>((resolve, reject) => {
    const fd = openSync(logFile, 'a');
    const build = spawn('bash', [script, 'build'], { stdio: ['ignore', fd, fd] });
    build.once('error', reject);
    build.once('exit', (code) => {
      closeSync(fd);
      if (code === 0) resolve();
      else reject(new Error(`building the HAPI launcher failed (exit ${code}); see ${logFile}`));
    });
  });

  // The build can take minutes: make sure the port is still free before the launch.
  if (!(await portFree(port))) {
    if (options.strictPort) throw new PortTakenError(port, 'HAPI FHIR', 'HAPI_PORT');
    port = await freePort();
  }
  options.onProgress?.(`starting HAPI FHIR on 127.0.0.1:${port}…`);
  const fd = openSync(logFile, 'a');
  const child = spawn('bash', [script, 'start', String(port)], {
    env: {
      ...process.env,
      HAPI_TUNING: options.tuning ?? process.env['HAPI_TUNING'] ?? 'test',
      ...options.env,
    },
    stdio: ['ignore', fd, fd],
    detached: false,
  });
  closeSync(fd);
  let exited: string | undefined;
  const ended = exitOf(child, 'HAPI FHIR', logFile);
  void ended.then((why) => {
    exited = why;
  });
  const base = `http://127.0.0.1:${port}/fhir`;
  const deadline = Date.now() + (options.timeoutMs ?? 240_000);
  for (;;) {
    if (exited) throw new Error(exited);
    try {
      const res = await fetch(`${base}/metadata`, { signal: AbortSignal.timeout(5000) });
      if (res.ok) {
        await res.arrayBuffer();
        break;
      }
    } catch {
      // not up yet
    }
    if (exited) throw new Error(exited);
    if (Date.now() > deadline) {
      await stopper(child, 5000)();
      throw new Error(`HAPI did not answer ${base}/metadata in time; see ${logFile}`);
    }
    await sleep(500);
  }
  const stop = stopper(child, 15_000);
  try {
    checkOwner(child, port, 'HAPI FHIR');
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: base, pid: child.pid, logFile, exited: ended, stop };
}
