/**
 * The one lock contract: per-key mutual exclusion. The journey domain, scheduling, referrals, reminders and
 * HL7 intake depend on this interface only; the process picks the implementation (Redis across instances,
 * `redisLock` in queues/locks.ts, or the in-process one below for single-process tools and unit tests).
 *
 * Keys name what is serialised: `patient:{id}` for a patient's writes (HAPI's conditional create is not
 * race-safe), `slot:{id}` for a Slot, `reminders:{appointmentId}` for a reminder plan.
 */

/** Serialises work per key. `fn` runs only while the key is held; the key is freed when it settles. */
export interface KeyedLock {
  withLock<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

/** In-process lock with the same contract, for single-process tools and unit tests. */
export function localLock(): KeyedLock {
  const tails = new Map<string, Promise<unknown>>();
  return {
    async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
      const prev = tails.get(key) ?? Promise.resolve();
      const run = prev.then(fn, fn);
      const tail = run.catch(() => undefined);
      tails.set(key, tail);
      try {
        return await run;
      } finally {
        if (tails.get(key) === tail) tails.delete(key);
      }
    },
  };
}

/** Holds several keys, taken in a fixed (sorted) order so two callers wanting overlapping sets never deadlock. */
export async function withLocks<T>(
  lock: KeyedLock,
  keys: readonly string[],
  fn: () => Promise<T>,
): Promise<T> {
  const sorted = [...new Set(keys)].sort();
  const run = (i: number): Promise<T> =>
    i === sorted.length ? fn() : lock.withLock(sorted[i]!, () => run(i + 1));
  return run(0);
}
