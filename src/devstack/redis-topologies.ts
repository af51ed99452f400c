/**
 * Real Redis topologies for the tests and the benches, all on 127.0.0.1 on free ports, each in its own
 * temporary directory:
 * - a 3-master Redis Cluster: three `redis-server --cluster-enabled yes`, joined with
 *   `redis-cli --cluster create … --cluster-replicas 0`, ready once every node reports `cluster_state:ok`;
 * - Sentinel: a master and one sentinel (`redis-server <conf> --sentinel`) watching it, ready once the
 *   sentinel names the master.
 * Each persists with an append-only file, as production must (devstack/processes.ts says why). `stop()` ends
 * the processes this started, and nothing else.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './processes.js';

const run = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface RedisTopology {
  /** `host:port,…` as REDIS_CLUSTER_NODES or REDIS_SENTINELS take it. */
  readonly nodes: string;
  /** The ports of the data-holding servers (cluster masters, or the Sentinel-managed master). */
  readonly dataPorts: readonly number[];
  /** Sends a signal to every data-holding server: SIGSTOP and SIGCONT make a Redis that takes connections and never answers. */
  signalData(signal: NodeJS.Signals): void;
  stop(): Promise<void>;
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
    timeout: 10_000,
  });
  return stdout;
}

/** Polls until `ok` holds, or throws naming `what` after `timeoutMs`. */
async function waitFor(what: string, ok: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await ok().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

interface Server {
  readonly port: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** One redis-server process with `args` (a config file first, when given), up once it answers PING. */
async function server(port: number, dir: string, args: readonly string[]): Promise<Server> {
  const logFile = join(dir, `redis-${port}.log`);
  const child = spawn('redis-server', [...args, '--port', String(port), '--bind', '127.0.0.1'], {
    stdio: 'ignore',
    cwd: dir,
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  child.once('error', () => {
    exited = true;
  });
  await waitFor(`redis-server on ${port} (log: ${logFile})`, async () => {
    if (exited) throw new Error(`redis-server on ${port} exited; see ${logFile}`);
    return (await cli(port, 'ping')).trim() === 'PONG';
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  };
  return { port, child, stop };
}

const PERSIST = ['--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec'];

/** Three masters, no replicas, all 16384 slots covered. */
export async function startRedisCluster(): Promise<RedisTopology> {
  const root = mkdtempSync(join(tmpdir(), 'careway-cluster-'));
  const servers: Server[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const dir = join(root, `n${i}`);
      mkdirSync(dir);
      const [port, bus] = [await freePort(), await freePort()];
      servers.push(
        await server(port, dir, [
          ...PERSIST,
          '--dir',
          dir,
          '--logfile',
          join(dir, 'redis.log'),
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, 'nodes.conf'),
          // The bus port is chosen too: the default (port + 10000) may be taken or out of range.
          '--cluster-port',
          String(bus),
          '--cluster-node-timeout',
          '5000',
        ]),
      );
    }
    const addrs = servers.map((s) => `127.0.0.1:${s.port}`);
    await run('redis-cli', ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: 30_000,
    });
    for (const s of servers)
      await waitFor(`cluster_state:ok on ${s.port}`, async () =>
        /^cluster_state:ok\s*$/m.test(await cli(s.port, 'cluster', 'info')),
      );
    return {
      nodes: addrs.join(','),
      dataPorts: servers.map((s) => s.port),
      signalData: (signal) => servers.forEach((s) => s.child.kill(signal)),
      stop: async () => {
        await Promise.allSettled(servers.map((s) => s.stop()));
        rmSync(root, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await Promise.allSettled(servers.map((s) => s.stop()));
    rmSync(root, { recursive: true, force: true });
    throw e;
  }
}

/** A master and one sentinel watching it under `name` (quorum 1). No replica: a failover is not exercised. */
export async function startRedisSentinel(name = 'careway-test'): Promise<RedisTopology> {
  const root = mkdtempSync(join(tmpdir(), 'careway-sentinel-'));
  const started: Server[] = [];
  try {
    const master = await server(await freePort(), root, [
      ...PERSIST,
      '--dir',
      root,
      '--logfile',
      join(root, 'master.log'),
    ]);
    started.push(master);
    // A sentinel rewrites its config file, so it gets one of its own.
    const conf = join(root, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
        `sentinel down-after-milliseconds ${name} 5000`,
        `logfile ${join(root, 'sentinel.log')}`,
        `dir ${root}`,
        '',
      ].join('\n'),
    );
    const sentinelPort = await freePort();
    const sentinel = await server(sentinelPort, root, [conf, '--sentinel']);
    started.push(sentinel);
    await waitFor(`sentinel ${sentinelPort} to name its master`, async () =>
      (await cli(sentinelPort, 'sentinel', 'get-master-addr-by-name', name)).includes(String(master.port)),
    );
    return {
      nodes: `127.0.0.1:${sentinelPort}`,
      dataPorts: [master.port],
      signalData: (signal) => master.child.kill(signal),
      stop: async () => {
        await Promise.allSettled(started.reverse().map((s) => s.stop()));
        rmSync(root, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await Promise.allSettled(started.map((s) => s.stop()));
    rmSync(root, { recursive: true, force: true });
    throw e;
  }
}
