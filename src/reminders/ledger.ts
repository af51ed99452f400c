/**
 * The send ledger: each reminder (appointment, offset, start) is sent at most once through retries, duplicate
 * jobs and worker crashes, and none is lost.
 *
 * A send first claims its key (`SET NX` with a lease). A second worker finds the claim and backs off; the
 * holder records `sent` once the Communication is written. A worker killed mid-send leaves a claim that expires:
 * the next attempt looks for the Communication the send writes (keyed on the same identity) and, finding it,
 * only records `sent`. The one window left is a kill between the provider accepting the message and the
 * Communication being written (a few milliseconds); the provider gets the same message id again then, so a
 * provider that deduplicates on it still delivers once.
 */
import type { Redis } from 'ioredis';

export type ClaimResult = 'claimed' | 'sent' | 'busy';

export interface Ledger {
  claim(key: string, owner: string): Promise<ClaimResult>;
  markSent(key: string): Promise<void>;
  /** Gives the claim back (the send failed before reaching the provider). */
  release(key: string, owner: string): Promise<void>;
}

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

export function redisLedger(redis: Redis, prefix: string, leaseMs = 60_000): Ledger {
  const k = (key: string): string => `${prefix}:reminder-ledger:${key}`;
  return {
    async claim(key, owner): Promise<ClaimResult> {
      const ok = await redis.set(k(key), `claim:${owner}`, 'PX', leaseMs, 'NX');
      if (ok === 'OK') return 'claimed';
      const v = await redis.get(k(key));
      if (v === 'sent') return 'sent';
      if (v === null)
        return (await redis.set(k(key), `claim:${owner}`, 'PX', leaseMs, 'NX')) === 'OK' ? 'claimed' : 'busy';
      return v === `claim:${owner}` ? 'claimed' : 'busy';
    },
    async markSent(key): Promise<void> {
      // Kept long after the appointment, so a very late duplicate job still finds it.
      await redis.set(k(key), 'sent', 'EX', 180 * 86400);
    },
    async release(key, owner): Promise<void> {
      await redis.eval(RELEASE, 1, k(key), `claim:${owner}`);
    },
  };
}
