/**
 * Every Redis connection Careway opens is made and closed here (ioredis 5 + BullMQ 6).
 *
 * Two kinds, because BullMQ needs them to behave differently:
 * - producers (queue `add`, readiness pings) fail fast: `enableOfflineQueue: false`, so an HL7 ACK or an
 *   HTTP reply is never held waiting on a Redis that is down;
 * - workers block on Redis commands: `maxRetriesPerRequest: null` (BullMQ 6 refuses anything else).
 *
 * `closeAll` quits every connection it handed out, in reverse order of creation.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { Queue, Worker, type Processor, type WorkerOptions, type QueueOptions } from 'bullmq';
import { withTimeout } from '../shared/timeout.js';

export type ConnectionRole = 'producer' | 'worker';

export interface RedisConnections {
  /** The shared producer connection (queues, readiness). */
  readonly producer: Redis;
  /** A new dedicated connection of the given role (workers need their own). */
  create(role: ConnectionRole, name: string): Redis;
  queue<T = unknown>(name: string, options?: Omit<QueueOptions, 'connection'>): Queue<T>;
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

function options(url: URL, role: ConnectionRole, name: string): RedisOptions {
  const base: RedisOptions = {
    connectionName: `careway:${name}`,
    lazyConnect: false,
    // Reconnect with capped backoff; never give up while the process lives.
    retryStrategy: (times) => Math.min(times * 200, 5000),
  };
  if (url.protocol === 'rediss:') base.tls = {};
  return role === 'worker'
    ? { ...base, maxRetriesPerRequest: null, enableReadyCheck: false }
    : { ...base, maxRetriesPerRequest: 1, enableOfflineQueue: false };
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
  redisUrl: URL,
  prefix = 'careway',
  /** false: queues only, no workers here (an API-only instance; workers run in other processes). */
  runWorkers = true,
): RedisConnections {
  const raw: Redis[] = [];
  const queues: Queue[] = [];
  const workers: Worker[] = [];
  let closed: Promise<void> | undefined;

  const create = (role: ConnectionRole, name: string): Redis => {
    const conn = new Redis(redisUrl.toString(), options(redisUrl, role, name));
    // ioredis emits 'error' on every failed reconnect; unhandled it would crash the process.
    conn.on('error', () => undefined);
    raw.push(conn);
    return conn;
  };

  const producer = create('producer', 'producer');

  return {
    producer,
    create,
    queue<T>(name: string, opts?: Omit<QueueOptions, 'connection'>): Queue<T> {
      const q = new Queue<T>(name, { prefix, ...opts, connection: producer });
      q.on('error', () => undefined);
      queues.push(q as Queue);
      return q;
    },
    worker<T>(name: string, processor: Processor<T>, opts?: Omit<WorkerOptions, 'connection'>): Worker<T> {
      const w = new Worker<T>(name, processor, {
        prefix,
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
