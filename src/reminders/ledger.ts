/**
 * The send ledger: each reminder (appointment, offset, start) is sent at most once through retries, duplicate
 * jobs and worker crashes, and none is lost.
 *
 * A send first claims its key (with a lease). A second worker finds the claim and waits; the holder
 * records `sent` the moment the provider accepts the message, before writing the Communication. A worker killed
 * mid-send leaves a claim whose lease lapses; the next attempt sends (the message never went out) or, finding
 * `sent` or the Communication, only finishes the write-back. The one window left is a kill between the
 * provider's acceptance reaching Careway and the Redis write just after it (well under a millisecond); the
 * provider then gets the same message id again, so one that deduplicates on it still delivers once.
 */
import type { Cluster, Redis } from 'ioredis';

/**
 * `claimed`: the first attempt ever at this send. `reclaimed`: claimed again after an earlier attempt (a retry,
 * or a worker that died mid-send), so the send may already have happened and the caller must check its
 * write-back first. `sent`: recorded as sent. `busy`: another worker holds the claim.
 */
export type ClaimResult = 'claimed' | 'reclaimed' | 'sent' | 'busy';

export interface Ledger {
  claim(key: string, owner: string): Promise<ClaimResult>;
  markSent(key: string): Promise<void>;
  /** Gives the claim back (the send failed before reaching the provider). */
  release(key: string, owner: string): Promise<void>;
}

/** A claim's lease: longer than any one send, short enough that a crashed sender's work is picked up soon. */
export const LEASE_MS = 20_000;

/**
 * The entry of a send lives for REMEMBER_S from its first claim: `claim:<owner>:<lease end, ms>` while a worker
 * holds it, `tried` once given back, `sent` once the provider took it. Keeping it after a claim lapses is what
 * tells a first attempt (nothing can have gone out: no need to look for a Communication) from a later one.
 * The lease is checked against Redis's clock, so workers' clocks do not matter.
 */
const CLAIM = `
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('get', KEYS[1])
if v == 'sent' then return 'sent' end
if v then
  local holder, lease = string.match(v, '^claim:(.*):(%d+)$')
  if holder and holder ~= ARGV[1] and tonumber(lease) > now then return 'busy' end
end
redis.call('set', KEYS[1], 'claim:' .. ARGV[1] .. ':' .. (now + tonumber(ARGV[2])), 'EX', ARGV[3])
if v then return 'reclaimed' end
return 'claimed'`;

/** Gives a claim back (only the holder's), keeping the entry: the next attempt is then a `reclaimed` one. */
const RELEASE = `
local v = redis.call('get', KEYS[1])
local mine = 'claim:' .. ARGV[1] .. ':'
if v and string.sub(v, 1, string.len(mine)) == mine then
  redis.call('set', KEYS[1], 'tried', 'KEEPTTL')
  return 1
end
return 0`;

/** How long the ledger remembers a send: long after the appointment, so a very late duplicate job finds it. */
const REMEMBER_S = 180 * 86400;

/** Another worker holds the send's claim: wait for it (or for its lease to lapse if that worker died). */
export class LedgerBusyError extends Error {
  constructor() {
    super('another worker is sending this message');
    this.name = 'LedgerBusyError';
  }
}

export function redisLedger(redis: Redis | Cluster, prefix: string, leaseMs = LEASE_MS): Ledger {
  const k = (key: string): string => `${prefix}:reminder-ledger:${key}`;
  return {
    async claim(key, owner): Promise<ClaimResult> {
      return (await redis.eval(CLAIM, 1, k(key), owner, leaseMs, REMEMBER_S)) as ClaimResult;
    },
    async markSent(key): Promise<void> {
      await redis.set(k(key), 'sent', 'EX', REMEMBER_S);
    },
    async release(key, owner): Promise<void> {
      await redis.eval(RELEASE, 1, k(key), owner);
    },
  };
}
