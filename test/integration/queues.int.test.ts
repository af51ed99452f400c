/**
 * BullMQ 6 and ioredis 5 against the real redis-server: connections are made and closed in one place, a job
 * added with a deterministic id is processed once, and re-adding the same id creates nothing.
 */
import { describe, expect, inject, it } from 'vitest';
import { createConnections } from '../../src/queues/connections.js';
import { uniq } from '../support/harness.js';

describe('queue connections', () => {
  it('when a job is added twice with the same id then it is processed once, and closeAll closes everything', async () => {
    const conns = createConnections(new URL(inject('redisUrl')));
    const name = `test-${uniq()}`;
    const queue = conns.queue<{ appointmentId: string }>(name);
    const seen: string[] = [];
    const done = new Promise<void>((resolve) => {
      conns.worker<{ appointmentId: string }>(name, async (job) => {
        seen.push(job.data.appointmentId);
        resolve();
      });
    });
    await queue.add('remind', { appointmentId: 'appt-1' }, { jobId: 'appt-1-P1D' });
    await queue.add('remind', { appointmentId: 'appt-1' }, { jobId: 'appt-1-P1D' });
    await done;
    await new Promise((r) => setTimeout(r, 300));
    expect(seen).toEqual(['appt-1']);
    expect(await conns.ping()).toBe(true);
    await conns.closeAll();
    expect(conns.producer.status).toBe('end');
    await conns.closeAll(); // idempotent
  });

  it('when Redis is unreachable then ping answers false instead of hanging', async () => {
    const conns = createConnections(new URL('redis://127.0.0.1:1'));
    expect(await conns.ping(300)).toBe(false);
    await conns.closeAll();
  });
});

describe('redis lock', () => {
  it('when two holders want one key then they run one after the other, and a busy lock times out with 409', async () => {
    const { redisLock } = await import('../../src/queues/locks.js');
    const conns = createConnections(new URL(inject('redisUrl')));
    const lock = redisLock(conns.producer, { ttlMs: 5000, waitMs: 300 });
    const key = `test-${uniq()}`;
    const order: string[] = [];
    await Promise.all([
      lock.withLock(key, async () => {
        order.push('a-in');
        await new Promise((r) => setTimeout(r, 100));
        order.push('a-out');
      }),
      lock.withLock(key, async () => {
        order.push('b-in');
        order.push('b-out');
      }),
    ]);
    expect([order.slice(0, 2), order.slice(2)].map((x) => x[0]?.[0] === x[1]?.[0])).toEqual([true, true]);
    const slow = lock.withLock(key, () => new Promise((r) => setTimeout(r, 1000)));
    await new Promise((r) => setTimeout(r, 20));
    await expect(lock.withLock(key, async () => 'never')).rejects.toMatchObject({
      code: 'concurrent-update',
      status: 409,
    });
    await slow;
    await conns.closeAll();
  });

  it('when the work outlasts the lock time then the holder keeps the lock until it is done', async () => {
    const { redisLock } = await import('../../src/queues/locks.js');
    const conns = createConnections(new URL(inject('redisUrl')));
    const lock = redisLock(conns.producer, { ttlMs: 600, waitMs: 100 });
    const key = `test-${uniq()}`;
    let inside = true;
    const slow = lock.withLock(key, async () => {
      await new Promise((r) => setTimeout(r, 2000));
      inside = false;
    });
    // Well past the TTL, while the first holder still works: the lock is still its own.
    await new Promise((r) => setTimeout(r, 1500));
    expect(inside).toBe(true);
    await expect(lock.withLock(key, async () => 'never')).rejects.toMatchObject({
      code: 'concurrent-update',
    });
    await slow;
    // Released at the end, and not renewed after it.
    expect(await conns.producer.exists(`careway:lock:${key}`)).toBe(0);
    await conns.closeAll();
  });

  it('when Redis is unreachable then taking the lock fails with 502, not a crash', async () => {
    const { redisLock } = await import('../../src/queues/locks.js');
    const conns = createConnections(new URL('redis://127.0.0.1:1'));
    const lock = redisLock(conns.producer, { waitMs: 100 });
    await expect(lock.withLock('x', async () => 'never')).rejects.toMatchObject({
      code: 'upstream-unavailable',
    });
    await conns.closeAll();
  });
});
