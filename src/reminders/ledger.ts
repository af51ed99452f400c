/**
 * The send ledger: each reminder (appointment, offset, start) is sent at most once through retries, duplicate
 * jobs and worker crashes, and none is lost.
 *
 * A send first claims its key (`SET NX` with a lease). A second worker finds the claim and waits; the holder
 * records `sent` the moment the provider accepts the message, before writing the Communication. A worker killed
 * mid-send leaves a claim whose lease lapses; the next attempt sends (the message never went out) or, finding
 * `sent` or the Communication, only finishes the write-back. The one window left is a kill between the
 * provider's acceptance reaching Careway and the Redis write just after it (well under a millisecond); the
 * provider then gets the same message id again, so one that deduplicates on it still delivers once.
 */
import type { Redis } from 'ioredis';

export type ClaimResult = 'claimed' | 'sent' | 'busy';

export interface Ledger {
  claim(key: string, owner: string): Promise<ClaimResult>;
  markSent(key: string): Promise<void>;
  /** Gives the claim back (the send failed before reaching the provider). */
  release(key: string, owner: string): Promise<void>;
}

/** A claim's lease: longer than any one send, short enough that a crashed sender's work is picked up soon. */
export const LEASE_MS = 20_000;

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

/** Another worker holds the send's claim: wait for it (or for its lease to lapse if that worker died). */
export class LedgerBusyError extends Error {
  constructor() {
    super('another worker is sending this message');
    this.name = 'LedgerBusyError';
  }
}

export function redisLedger(redis: Redis, prefix: string, leaseMs = LEASE_MS): Ledger {
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
