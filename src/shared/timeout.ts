/**
 * A bound on a promise that has none of its own: BullMQ waits for Redis to come back rather than failing, which
 * is right for workers and wrong for a caller that must answer now (an ACK, an audited read).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what = 'redis'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timeout`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
