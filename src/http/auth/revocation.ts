/**
 * Token revocation: a deny-list of token ids (`jti`) in Redis, one key per revoked token,
 * `${QUEUE_PREFIX}:revoked-jti:<jti>`, that expires when the token would have. Every instance of a
 * deployment shares it, so a revocation takes effect on the next request everywhere.
 *
 * The auth plugin checks it on every authenticated request (one EXISTS), after the signature is verified
 * and whether or not the verified token came from the verifier's cache. A token without a `jti` cannot be
 * revoked; it lapses at its `exp`.
 */
import type { Cluster, Redis } from 'ioredis';
import { withTimeout } from '../../shared/timeout.js';

/** The longest a jti stays on the list: tokens living longer than this are not expected from a SMART server. */
const MAX_TTL_SECONDS = 366 * 86400;
/** A jti Careway stores: printable ASCII, bounded, so it is safe as part of a Redis key and in a log line. */
export const JTI_RE = /^[\x21-\x7e]{1,256}$/;

export function revokedKey(prefix: string, jti: string): string {
  return `${prefix}:revoked-jti:${jti}`;
}

/** Whether `jti` is on the deny-list. Throws when Redis cannot answer (the caller decides: fail closed). */
export async function isRevoked(redis: Redis | Cluster, prefix: string, jti: string): Promise<boolean> {
  // Bounded: a cluster client queues commands while it reconnects, and a request must not wait on that.
  return (await withTimeout(redis.exists(revokedKey(prefix, jti)), 2000)) === 1;
}

/**
 * Puts `jti` on the deny-list until `exp` (seconds since the epoch, the token's own `exp`). Answers the
 * seconds it is kept, or 0 when the token has already expired (nothing to store: it is refused anyway).
 */
export async function revoke(
  redis: Redis | Cluster,
  prefix: string,
  jti: string,
  exp: number,
  nowMs = Date.now(),
): Promise<number> {
  const ttl = Math.min(Math.ceil(exp - nowMs / 1000), MAX_TTL_SECONDS);
  if (!(ttl > 0)) return 0;
  await redis.set(revokedKey(prefix, jti), '1', 'EX', ttl);
  return ttl;
}
