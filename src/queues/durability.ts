/**
 * Does Redis keep what it acknowledged? An HL7 AA (and an audited answer) means "durably enqueued", which holds
 * across a Redis restart only with an append-only file; RDB snapshots alone lose the last minutes. Read from
 * `INFO persistence` (allowed on managed Redis services, unlike CONFIG), with CONFIG GET save as a hint for RDB.
 */
import type { Redis } from 'ioredis';
import { withTimeout } from '../shared/timeout.js';

export type Persistence = 'aof' | 'rdb' | 'none' | 'unknown';

export async function redisPersistence(redis: Redis): Promise<Persistence> {
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
