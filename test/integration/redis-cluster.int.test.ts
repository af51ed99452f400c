/**
 * Careway on a real 3-master Redis Cluster (src/devstack/redis-topologies.ts): queues with hash-tagged keys,
 * one slot per queue and queues spread over the masters, jobs enqueued and processed, the lock and the send
 * ledger, and the persistence check asking every master. Uses the run's cluster under
 * CAREWAY_TEST_REDIS_CLUSTER=1, or starts one of its own.
 */
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { loadConfig, type RedisTarget } from '../../src/config/config.js';
import { createConnections, whenReady, type RedisConnections } from '../../src/queues/connections.js';
import { redisLock } from '../../src/queues/locks.js';
import { redisPersistence } from '../../src/queues/durability.js';
import { PartitionedQueue } from '../../src/queues/partitioned.js';
import { redisLedger } from '../../src/reminders/ledger.js';
import { startRedisCluster, type RedisTopology } from '../../src/devstack/redis-topologies.js';
import { makeKeys, testEnv, uniq, until } from '../support/harness.js';

let own: RedisTopology | undefined;
let target: RedisTarget;
let ports: number[];
const opened: RedisConnections[] = [];

/** Connections on the cluster, once it is ready (producers fail fast before: connections.ts). */
async function conns(prefix: string): Promise<RedisConnections> {
  const c = createConnections(target, prefix);
  opened.push(c);
  await whenReady(c.producer, 10_000);
  return c;
}

/** Every key under `match` on every master, with its slot and the master holding it. */
async function keysByMaster(match: string): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  for (const port of ports) {
    const r = new Redis(port, '127.0.0.1', { lazyConnect: true });
    await r.connect();
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await r.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    r.disconnect();
    if (keys.length) out.set(port, keys);
  }
  return out;
}

beforeAll(async () => {
  let nodes = inject('redisClusterNodes');
  if (!nodes) {
    own = await startRedisCluster();
    nodes = own.nodes;
  }
  ports = nodes.split(',').map((n) => Number(n.split(':')[1]));
  // Through the configuration, as a deployment would give it.
  target = loadConfig(testEnv(makeKeys(), { REDIS_CLUSTER_NODES: nodes })).redis;
});

afterAll(async () => {
  await Promise.allSettled(opened.map((c) => c.closeAll()));
  await own?.stop();
});

describe('Redis Cluster', () => {
  it('when REDIS_CLUSTER_NODES is set then the connections are a cluster and readiness pings it', async () => {
    const c = await conns(`t${uniq()}`);
    expect(c.cluster).toBe(true);
    expect(c.producer).toBeInstanceOf(Cluster);
    expect(await c.ping(5000)).toBe(true);
  });

  it('when jobs go through queues then each queue keeps its keys in one slot and the queues spread over the masters', async () => {
    const prefix = `t${uniq()}`;
    const c = await conns(prefix);
    const names = Array.from({ length: 12 }, (_, i) => `q${i}`);
    const done: string[] = [];
    for (const name of names) {
      const q = c.queue<{ n: string }>(name);
      c.worker<{ n: string }>(name, async (job) => {
        done.push(job.data.n);
        return { ok: true };
      });
      await q.add('job', { n: name }, { jobId: `${name}-1`, removeOnComplete: false });
    }
    await until('every job processed', () => (done.length === names.length ? true : undefined), 30_000);
    expect(done.sort()).toEqual([...names].sort());

    const byMaster = await keysByMaster(`${prefix}:*`);
    const all = [...byMaster.values()].flat();
    for (const name of names) {
      const own = all.filter((k) => k.startsWith(`${prefix}:{${name}}:${name}:`));
      // The job hash, the completed set, the id counter, the meta…: all found, all behind the queue's tag.
      expect(own.length, name).toBeGreaterThanOrEqual(3);
      const hosts = [...byMaster.entries()].filter(([, keys]) => keys.some((k) => own.includes(k)));
      expect(hosts, `${name} lives on one master`).toHaveLength(1);
    }
    // No key of a queue without its tag (one would be cross-slot from its queue's scripts).
    expect(all.filter((k) => !/^[^:]+:\{[^}]+\}:/.test(k))).toEqual([]);
    // Twelve tags over three masters: more than one master holds queues.
    expect(byMaster.size).toBeGreaterThan(1);
  });

  it('when a queue is partitioned then each partition is a queue of its own slot, and reads look across them', async () => {
    const prefix = `t${uniq()}`;
    const c = await conns(prefix);
    const pq = new PartitionedQueue<{ k: string }>(c, 'parts', 4);
    const seen: string[] = [];
    for (const q of pq.queues)
      c.worker<{ k: string }>(q.name, async (job) => {
        seen.push(job.data.k);
      });
    const keys = Array.from({ length: 20 }, (_, i) => `patient-${i}`);
    for (const k of keys) await pq.add(k, 'msg', { k }, { jobId: `${k}-m1`, removeOnComplete: false });
    await until('partitions drained', () => (seen.length === keys.length ? true : undefined), 30_000);
    expect((await pq.getJob('patient-7-m1'))?.data.k).toBe('patient-7');
    expect((await pq.getJobCounts('completed'))['completed']).toBe(keys.length);
    const slots = new Set<number>();
    const probe = c.producer as Cluster;
    for (const q of pq.queues)
      slots.add(Number(await probe.cluster('KEYSLOT', `${prefix}:{${q.name}}:${q.name}:meta`)));
    expect(slots.size).toBe(4);
  });

  it('when the prefix holds a hash tag then every queue is in that one slot', async () => {
    const tag = `t${uniq()}`;
    const c = await conns(`{${tag}}`);
    for (const name of ['a', 'b', 'c']) await c.queue(name).add('job', {}, { jobId: `${name}-1` });
    const byMaster = await keysByMaster(`{${tag}}:*`);
    expect(byMaster.size).toBe(1);
    expect([...byMaster.values()][0]!.length).toBeGreaterThanOrEqual(6);
  });

  it('when two holders want one lock on the cluster then they run one after the other', async () => {
    const prefix = `t${uniq()}`;
    const c = await conns(prefix);
    const lock = redisLock(c.producer, { prefix: `${prefix}:lock:`, ttlMs: 5000 });
    const order: string[] = [];
    const hold = (who: string) =>
      lock.withLock('patient:1', async () => {
        order.push(`${who}+`);
        await new Promise((r) => setTimeout(r, 100));
        order.push(`${who}-`);
      });
    await Promise.all([hold('a'), hold('b')]);
    expect(['a+ a- b+ b-', 'b+ b- a+ a-']).toContain(order.join(' '));
    expect(await c.producer.exists(`${prefix}:lock:patient:1`)).toBe(0);
  });

  it('when the send ledger runs its scripts on the cluster then claims, sends and refusals hold', async () => {
    const prefix = `t${uniq()}`;
    const c = await conns(prefix);
    const ledger = redisLedger(c.producer, prefix);
    expect(await ledger.claim('appt-1', 'w1')).toBe('claimed');
    expect(await ledger.claim('appt-1', 'w2')).toBe('busy');
    await ledger.release('appt-1', 'w1');
    expect(await ledger.claim('appt-1', 'w2')).toBe('reclaimed');
    await ledger.markSent('appt-1');
    expect(await ledger.claim('appt-1', 'w3')).toBe('sent');
  });

  it('when one master stops keeping an append-only file then the persistence check says so', async () => {
    // Asked at once, as the HL7 listener does at start: the check waits for the cluster's slot map.
    const c = createConnections(target, `t${uniq()}`);
    opened.push(c);
    expect(await redisPersistence(c.producer)).toBe('aof');
    if (!own) return; // The run's shared cluster is not reconfigured; a cluster of this file's own is.
    const node = new Redis(own.dataPorts[1]!, '127.0.0.1');
    try {
      await node.config('SET', 'appendonly', 'no');
      expect(await redisPersistence(c.producer)).toBe('none');
    } finally {
      await node.config('SET', 'appendonly', 'yes');
      node.disconnect();
    }
  });
});

describe('Redis Cluster away', () => {
  // A cluster of its own: this one is paused and then stopped, which the run's shared cluster must never be.
  let away: RedisTopology;
  let c: RedisConnections;
  beforeAll(async () => {
    away = await startRedisCluster();
    c = createConnections(
      loadConfig(testEnv(makeKeys(), { REDIS_CLUSTER_NODES: away.nodes })).redis,
      `t${uniq()}`,
    );
    await whenReady(c.producer, 10_000);
  });
  afterAll(async () => {
    away.signalData('SIGCONT');
    await c.closeAll();
    await away.stop();
  });

  it('when the masters take connections but do not answer, or are gone, then producer commands fail instead of waiting', async () => {
    const queue = c.queue('bounded');
    await queue.add('j', { n: 1 }, { jobId: 'before' });
    await c.producer.set('cw-bounded', '1');
    // Paused: connections stay open, nothing answers (a hung node, a network partition).
    away.signalData('SIGSTOP');
    try {
      await expect(c.producer.get('cw-bounded')).rejects.toThrow(/timed out/);
      await expect(queue.add('j', { n: 2 }, { jobId: 'paused' })).rejects.toThrow(/timed out/);
    } finally {
      away.signalData('SIGCONT');
    }
    // Back: the same client answers again, without a restart.
    await until(
      'the cluster to answer again',
      async () => ((await c.producer.get('cw-bounded').catch(() => null)) === '1' ? true : undefined),
      20_000,
    );
    // Gone: the cluster client queues commands while it reconnects; they fail at the bound all the same.
    await away.stop();
    await expect(c.producer.get('cw-bounded')).rejects.toThrow(/timed out|Connection is closed|closed/i);
  }, 60_000);
});
