/**
 * Every Redis connection Careway opens is made and closed here (ioredis 5 + BullMQ 6), for the three ways to
 * reach Redis (config.ts, RedisTarget): one server (REDIS_URL), a Redis Cluster (REDIS_CLUSTER_NODES, an ioredis
 * `Cluster`) or Sentinel (REDIS_SENTINELS, an ioredis client that asks the sentinels for the master and follows
 * a failover). Nothing else in Careway calls `new Redis` or `new Cluster`.
 *
 * Two kinds, because BullMQ needs them to behave differently:
 * - producers (queue `add`, readiness pings, locks) fail fast: `enableOfflineQueue: false`, so an HL7 ACK or an
 *   HTTP reply is never held waiting on a Redis that is down (on a cluster, see `connect`: the callers' own
 *   bounds do it);
 * - workers block on Redis commands: `maxRetriesPerRequest: null` (BullMQ 6 refuses anything else; on a cluster
 *   it reads it from `redisOptions`, the options of each node's connection).
 *
 * Queue keys are named by queues/keys.ts, so that on a cluster each queue is in one slot of its own.
 * `closeAll` quits every connection it handed out, in reverse order of creation.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { Queue, Worker, type Processor, type WorkerOptions, type QueueOptions } from 'bullmq';
import type { RedisTarget } from '../config/config.js';
import { withTimeout } from '../shared/timeout.js';
import { queueKeyPrefix } from './keys.js';

export type ConnectionRole = 'producer' | 'worker';

/** A connection to Redis, whichever the mode: the commands Careway uses are the same on both. */
export type RedisClient = Redis | Cluster;

export interface RedisConnections {
  /** The shared producer connection (queues, readiness, locks, hooks). */
  readonly producer: RedisClient;
  /**
   * The HL7 intake's own producer connection, opened on first use (a process without the `mllp` role or
   * `POST /hl7` traffic never opens it). Auto-pipelined: the commands of all the messages being accepted in one
   * tick leave in one write, and they never wait behind the workers' locks and hooks on the shared producer.
   */
  readonly intake: RedisClient;
  /** Whether Redis is a cluster (keys of one command or script must then share a slot). */
  readonly cluster: boolean;
  /** A new dedicated connection of the given role (workers need their own). */
  create(role: ConnectionRole, name: string): RedisClient;
  /** A queue on the shared producer connection, or on the intake's (`via: 'intake'`). */
  queue<T = unknown>(
    name: string,
    options?: Omit<QueueOptions, 'connection'>,
    via?: 'producer' | 'intake',
  ): Queue<T>;
  worker<T = unknown>(
    name: string,
    processor: Processor<T>,
    options?: Omit<WorkerOptions, 'connection'>,
  ): Worker<T>;
  /** Round-trip check used by readiness. */
  ping(timeoutMs?: number): Promise<boolean>;
  /** Closes workers first (they drain), then queues, then raw connections. Safe to call twice. */
  closeAll(): Promise<void>;
}

/** Reconnect with capped backoff; never give up while the process lives. */
const retry = (times: number): number => Math.min(times * 200, 5000);

/** What one connection to one server needs for its role (the node connections of a cluster take the same). */
function roleOptions(role: ConnectionRole, name: string): RedisOptions {
  const base: RedisOptions = { connectionName: `careway:${name}` };
  return role === 'worker'
    ? { ...base, maxRetriesPerRequest: null, enableReadyCheck: false }
    : { ...base, maxRetriesPerRequest: 1 };
}

/**
 * Opens one connection to the target, for the role. `autoPipeline`: commands issued in the same tick leave in
 * one write (ioredis `enableAutoPipelining`), for a connection many concurrent callers share.
 */
export function connect(
  target: RedisTarget,
  role: ConnectionRole,
  name: string,
  autoPipeline = false,
): RedisClient {
  const perRole: RedisOptions = {
    ...roleOptions(role, name),
    ...(autoPipeline ? { enableAutoPipelining: true } : {}),
  };
  const offline = role === 'producer' ? { enableOfflineQueue: false } : {};
  switch (target.mode) {
    case 'standalone':
      return new Redis(target.url.toString(), {
        ...perRole,
        ...offline,
        lazyConnect: false,
        retryStrategy: retry,
        ...(target.url.protocol === 'rediss:' ? { tls: {} } : {}),
      });
    case 'sentinel':
      return new Redis({
        ...perRole,
        ...offline,
        sentinels: target.sentinels.map((n) => ({ host: n.host, port: n.port })),
        name: target.name,
        role: 'master',
        ...credentials(target.auth),
        ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
        ...(target.auth.tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
        retryStrategy: retry,
        sentinelRetryStrategy: retry,
        // After a failover the old master answers READONLY until it is told; reconnect to the new one.
        reconnectOnError: (err) => err.message.startsWith('READONLY'),
      });
    case 'cluster': {
      const options: ClusterOptions = {
        ...(autoPipeline ? { enableAutoPipelining: true } : {}),
        // Not `enableOfflineQueue: false` on a cluster, even for producers: ioredis then refuses every command
        // sent to a node whose connection is still opening (each node connects on its first command, so a
        // fresh cluster client fails its first burst), and BullMQ initialises a queue while the cluster is
        // between `connect` and `ready` and keeps that failure. Commands wait for the cluster instead; the
        // callers that answer someone bound their wait (HL7 intake, audit, readiness, locks, revocation).
        enableOfflineQueue: true,
        // Ready only once the cluster says `cluster_state:ok` and the slots are known.
        enableReadyCheck: true,
        clusterRetryStrategy: retry,
        // Slots move during a resharding or failover: follow MOVED/ASK and retry while the cluster settles.
        maxRedirections: 16,
        retryDelayOnFailover: 200,
        retryDelayOnClusterDown: 300,
        retryDelayOnTryAgain: 100,
        redisOptions: {
          ...perRole,
          ...credentials(target.auth),
          ...(target.auth.tls ? { tls: {} } : {}),
        },
        // Managed clusters with TLS announce node names that certificates are issued for: connect by name.
        ...(target.auth.tls ? { dnsLookup: (address, cb) => cb(null, address) } : {}),
      };
      const cluster = new Cluster(
        target.nodes.map((n) => ({ host: n.host, port: n.port })),
        options,
      );
      return role === 'producer' ? boundCommands(cluster, PRODUCER_COMMAND_TIMEOUT_MS) : cluster;
    }
  }
}

/**
 * How long a producer command may wait for a Redis Cluster. On one server or Sentinel a producer fails at once
 * while disconnected (no offline queue); a cluster client keeps its offline queue (see `connect`), so without a
 * bound a request that counts a rate limit or queues a job would hang for as long as the cluster is away, and so
 * would one sent to a node that accepts connections but does not answer. The callers that answer someone have
 * shorter bounds of their own; this one catches every other (rate limits, queue adds from routes, dashboards).
 */
export const PRODUCER_COMMAND_TIMEOUT_MS = 5000;

/**
 * Gives every command sent through the cluster client a deadline (ioredis `Command#setTimeout`: the command
 * rejects with "Command timed out" wherever it waits, in the cluster's offline queue or on a node). A timed-out
 * write may still reach Redis later; a producer's writes are safe to repeat (job ids, counters, keyed sets).
 */
function boundCommands(cluster: Cluster, ms: number): Cluster {
  const send = cluster.sendCommand.bind(cluster);
  cluster.sendCommand = (command, stream, node) => {
    command.setTimeout(ms);
    return send(command, stream, node);
  };
  return cluster;
}

function credentials(auth: { username?: string; password?: string }): RedisOptions {
  return {
    ...(auth.username ? { username: auth.username } : {}),
    ...(auth.password ? { password: auth.password } : {}),
  };
}

/**
 * Producers fail fast when Redis is not connected; give a (re)connecting client a moment first. A cluster is
 * ready once its slots are known, a little after start.
 */
export async function whenReady(redis: RedisClient, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function done(): void {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    }
    redis.once('ready', done);
  });
}

/**
 * Closes a worker, letting its job in hand finish (up to 10 s); one that cannot close cleanly (Redis gone) is
 * closed without waiting, and its job is taken over elsewhere once its lock lapses.
 */
export async function closeWorker(w: Worker): Promise<void> {
  try {
    await withTimeout(w.close(), 10_000);
  } catch {
    await withTimeout(w.close(true), 2000).catch(() => undefined);
  }
}

export function createConnections(
  /** The configured target; a URL is one server (tests and tools). */
  target: RedisTarget | URL,
  prefix = 'careway',
  /** false: queues only, no workers here (an API-only instance; workers run in other processes). */
  runWorkers = true,
): RedisConnections {
  const to: RedisTarget = target instanceof URL ? { mode: 'standalone', url: target } : target;
  const cluster = to.mode === 'cluster';
  const raw: RedisClient[] = [];
  const queues: Queue[] = [];
  const workers: Worker[] = [];
  let closed: Promise<void> | undefined;

  const create = (role: ConnectionRole, name: string, autoPipeline = false): RedisClient => {
    const conn = connect(to, role, name, autoPipeline);
    // ioredis emits 'error' on every failed reconnect; unhandled it would crash the process.
    conn.on('error', () => undefined);
    raw.push(conn);
    return conn;
  };

  const producer = create('producer', 'producer');
  let intake: RedisClient | undefined;
  const intakeConnection = (): RedisClient => (intake ??= create('producer', 'intake', true));

  return {
    producer,
    get intake(): RedisClient {
      return intakeConnection();
    },
    cluster,
    create: (role, name) => create(role, name),
    queue<T>(name: string, opts?: Omit<QueueOptions, 'connection'>, via = 'producer'): Queue<T> {
      const q = new Queue<T>(name, {
        prefix: queueKeyPrefix(prefix, name, cluster),
        ...opts,
        connection: via === 'intake' ? intakeConnection() : producer,
      });
      q.on('error', () => undefined);
      queues.push(q as Queue);
      return q;
    },
    worker<T>(name: string, processor: Processor<T>, opts?: Omit<WorkerOptions, 'connection'>): Worker<T> {
      const w = new Worker<T>(name, processor, {
        prefix: queueKeyPrefix(prefix, name, cluster),
        ...opts,
        ...(runWorkers ? {} : { autorun: false }),
        connection: create('worker', `worker:${name}`),
      });
      w.on('error', () => undefined);
      workers.push(w as Worker);
      return w;
    },
    async ping(timeoutMs = 1000): Promise<boolean> {
      let timer: NodeJS.Timeout | undefined;
      let onReady: (() => void) | undefined;
      try {
        const pong = await Promise.race([
          // Still connecting (e.g. right after start): wait for 'ready' within the same deadline.
          (producer.status === 'ready'
            ? Promise.resolve()
            : new Promise<void>((resolve) => {
                onReady = resolve;
                producer.once('ready', onReady);
              })
          ).then(() => producer.ping()),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error('redis ping timeout')), timeoutMs);
          }),
        ]);
        return pong === 'PONG';
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
        // A readiness probe every few seconds while Redis is away must not pile up listeners.
        if (onReady) producer.off('ready', onReady);
      }
    },
    closeAll(): Promise<void> {
      closed ??= (async () => {
        // Bounded: a worker or queue that never reached Redis waits for it forever in close().
        await Promise.allSettled(workers.map((w) => closeWorker(w)));
        await Promise.allSettled(queues.map((q) => withTimeout(q.close(), 2000)));
        await Promise.allSettled(
          raw.reverse().map(async (c) => {
            if (c.status === 'end') return;
            const ended = new Promise<void>((resolve) => c.once('end', () => resolve()));
            // A connection that is not up (Redis down or still connecting) would queue QUIT until Redis comes
            // back: drop it instead. One that is up quits politely, within a bound.
            if (c.status !== 'ready') c.disconnect();
            else
              try {
                await withTimeout(c.quit(), 2000);
              } catch {
                c.disconnect();
              }
            // quit() resolves on the server's OK; the socket closes just after. Wait (bounded) for it.
            await Promise.race([ended, new Promise((r) => setTimeout(r, 1000).unref())]);
          }),
        );
      })();
      return closed;
    },
  };
}
