/**
 * "AA after a durable enqueue" holds only if Redis persists. On a Redis without an append-only file Careway warns
 * at start, and with HL7_REQUIRE_DURABLE=true it refuses to listen for HL7 at all; on one with AOF (as the demo's
 * and the tests' redis-server now run) it starts quietly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { startRedis, type LocalService } from '../../src/devstack/processes.js';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { redisPersistence } from '../../src/queues/durability.js';
import { Redis } from 'ioredis';
import { makeKeys, testEnv } from '../support/harness.js';

let forgetful: LocalService;
let durable: LocalService;

beforeAll(async () => {
  [forgetful, durable] = await Promise.all([startRedis({ persistent: false }), startRedis()]);
});
afterAll(async () => {
  await Promise.all([forgetful?.stop(), durable?.stop()]);
});

async function start(redisUrl: string, extra: Record<string, string> = {}) {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const config = loadConfig(
    testEnv(makeKeys(), { REDIS_URL: redisUrl, CAREWAY_UPLOAD_PROFILES: 'false', ...extra }),
  );
  const app = await buildApp({ config, logger: createLogger({ level: 'info', destination: sink }) });
  return { app, lines };
}

describe('Redis durability', () => {
  it('when Redis runs with or without an append-only file then Careway reads which', async () => {
    for (const [service, want] of [
      [forgetful, 'none'],
      [durable, 'aof'],
    ] as const) {
      const r = new Redis(service.url);
      expect(await redisPersistence(r)).toBe(want);
      r.disconnect();
    }
    const gone = new Redis('redis://127.0.0.1:1', {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    });
    gone.on('error', () => undefined);
    expect(await redisPersistence(gone)).toBe('unknown');
    gone.disconnect();
  });

  it('when Redis does not persist then the start warns, and with HL7_REQUIRE_DURABLE=true it refuses', async () => {
    const warned = await start(forgetful.url);
    try {
      await warned.app.ready();
      expect(warned.lines.some((l) => l.includes('Redis has no append-only file'))).toBe(true);
    } finally {
      await warned.app.close();
    }
    const strict = await start(forgetful.url, { HL7_REQUIRE_DURABLE: 'true' });
    try {
      await expect(strict.app.ready()).rejects.toThrow(/HL7_REQUIRE_DURABLE/);
    } finally {
      await strict.app.close().catch(() => undefined);
    }
  });

  it('when Redis keeps an append-only file then Careway starts without a warning, even when it requires it', async () => {
    const ok = await start(durable.url, { HL7_REQUIRE_DURABLE: 'true' });
    try {
      await ok.app.ready();
      expect(ok.lines.some((l) => l.includes('append-only'))).toBe(false);
    } finally {
      await ok.app.close();
    }
  });
});
