/**
 * Per-key mutual exclusion across Careway instances, on Redis: `SET key token NX PX ttl` to take, a
 * compare-and-delete script to release (only the holder's token frees the key, so a lock that expired
 * and was taken by another holder is never released by the first).
 *
 * Used to serialise writes for one patient: HAPI's conditional create is not race-safe, and two journey
 * changes computed from the same version would otherwise make one of them retry.
 * The TTL bounds how long a crashed holder blocks others. A living holder renews it every third of the TTL
 * while its work runs (compare-and-pexpire, so a lock taken over by another holder is never extended): a write
 * slowed past the TTL by a loaded FHIR server must not let another change for the patient in between.
 * The contract (KeyedLock) and the in-process lock live in shared/lock.ts: the journey domain depends on them.
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { CarewayError } from '../shared/errors.js';
import type { KeyedLock } from '../shared/lock.js';
import { whenReady } from './connections.js';
import { withTimeout } from '../shared/timeout.js';

// One key per command and per script: on a Redis Cluster the lock lives in its key's slot, whatever the key.
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

export interface RedisLockOptions {
  /** Lock lifetime; the holder must finish before it. */
  ttlMs?: number;
  /** How long to wait for a busy lock before giving up with 409. */
  waitMs?: number;
  prefix?: string;
}

export function redisLock(redis: Redis | Cluster, options: RedisLockOptions = {}): KeyedLock {
  const ttl = options.ttlMs ?? 30_000;
  const wait = options.waitMs ?? 15_000;
  const prefix = options.prefix ?? 'careway:lock:';
  return {
    async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
      const k = prefix + key;
      const token = randomUUID();
      const deadline = Date.now() + wait;
      for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
        let ok: string | null;
        try {
          await whenReady(redis, 1000);
          // Bounded: a cluster client queues commands while it reconnects (connections.ts).
          ok = await withTimeout(redis.set(k, token, 'PX', ttl, 'NX'), 5000);
        } catch (cause) {
          // No lock means no serialised write: refuse the change rather than risk a duplicate.
          throw new CarewayError('upstream-unavailable', 'Redis is unavailable; the change was not applied', {
            cause,
          });
        }
        if (ok === 'OK') break;
        if (Date.now() > deadline) {
          throw new CarewayError(
            'concurrent-update',
            'another change for this patient is in progress; retry shortly',
          );
        }
        await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
      }
      // A failed renewal is not retried sooner: the next one comes a third of the TTL later, inside the TTL.
      const renewal = setInterval(
        () => void redis.eval(RENEW, 1, k, token, String(ttl)).catch(() => undefined),
        Math.max(100, Math.floor(ttl / 3)),
      );
      renewal.unref();
      try {
        return await fn();
      } finally {
        clearInterval(renewal);
        await redis.eval(RELEASE, 1, k, token).catch(() => undefined);
      }
    },
  };
}
