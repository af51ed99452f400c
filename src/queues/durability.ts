/**
 * Does Redis keep what it acknowledged? An HL7 AA (and an audited answer) means "durably enqueued", which holds
 * across a Redis restart only with an append-only file; RDB snapshots alone lose the last minutes. Read from
 * `INFO persistence` (allowed on managed Redis services, unlike CONFIG), with CONFIG GET save as a hint for RDB.
 *
 * On a Redis Cluster each master holds its own slots, so each master is asked, and the answer is the weakest:
 * one master without AOF is enough to lose an acknowledged message. With Sentinel the connection is to the
 * current master, which is the one asked.
 */
import { Cluster, type Redis } from 'ioredis';
import { withTimeout } from '../shared/timeout.js';
import { whenReady, type RedisClient } from './connections.js';

export type Persistence = 'aof' | 'rdb' | 'none' | 'unknown';

/** Weakest first: the deployment is as durable as its least durable master. */
const ORDER: readonly Persistence[] = ['unknown', 'none', 'rdb', 'aof'];

export async function redisPersistence(redis: RedisClient): Promise<Persistence> {
  // Asked at start, when the connection (a cluster's slot map) may still be coming up.
  await whenReady(redis, 5000);
  if (!(redis instanceof Cluster)) return serverPersistence(redis);
  const masters = redis.nodes('master');
  if (masters.length === 0) return 'unknown';
  const each = await Promise.all(masters.map((node) => serverPersistence(node)));
  return each.reduce((weakest, p) => (ORDER.indexOf(p) < ORDER.indexOf(weakest) ? p : weakest), 'aof');
}

async function serverPersistence(redis: Redis): Promise<Persistence> {
  try {
    const info = await withTimeout(redis.info('persistence'), 2000);
    if (/^aof_enabled:1\s*$/m.test(info)) return 'aof';
    try {
      const save = (await withTimeout(redis.config('GET', 'save'), 2000)) as string[];
      return save[1] ? 'rdb' : 'none';
    } catch {
      // CONFIG renamed or refused (managed services): no AOF is all that is known.
      return 'none';
    }
  } catch {
    return 'unknown';
  }
}
