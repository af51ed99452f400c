/**
 * Which Redis Careway talks to (REDIS_URL, REDIS_CLUSTER_NODES, REDIS_SENTINELS): exactly one mode, each checked
 * at start; and the QUEUE_PREFIX rule with its hash tag (queues/keys.ts).
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { hasHashTag, queueKeyPrefix } from '../../src/queues/keys.js';

const base = {
  FHIR_BASE_URL: 'http://127.0.0.1:8090/fhir',
  AUTH_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----',
  AUTH_ISSUER: 'https://auth.example',
  AUTH_AUDIENCE: 'careway',
  HL7_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
};

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...base, ...env });
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  return [];
}

describe('Redis modes', () => {
  it('when REDIS_URL is set then Careway uses one server', () => {
    const c = loadConfig({ ...base, REDIS_URL: 'rediss://u:p@redis.example:6380' });
    expect(c.redis.mode).toBe('standalone');
    expect(c.redis.mode === 'standalone' && c.redis.url.host).toBe('redis.example:6380');
  });

  it('when REDIS_CLUSTER_NODES lists host:port pairs then Careway uses a cluster with its credentials', () => {
    const c = loadConfig({
      ...base,
      REDIS_CLUSTER_NODES: 'r1.example:7000, 10.0.0.2:7001,[::1]:7002',
      REDIS_PASSWORD: 's3cret',
      REDIS_TLS: 'true',
    });
    expect(c.redis).toEqual({
      mode: 'cluster',
      nodes: [
        { host: 'r1.example', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '::1', port: 7002 },
      ],
      auth: { password: 's3cret', tls: true },
    });
  });

  it('when REDIS_SENTINELS and REDIS_SENTINEL_NAME are set then Careway asks the sentinels for the master', () => {
    const c = loadConfig({
      ...base,
      REDIS_SENTINELS: 's1:26379,s2:26379',
      REDIS_SENTINEL_NAME: 'mymaster',
      REDIS_SENTINEL_PASSWORD: 'sp',
    });
    expect(c.redis).toEqual({
      mode: 'sentinel',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
      ],
      name: 'mymaster',
      auth: { tls: false },
      sentinelPassword: 'sp',
    });
  });

  it('when no Redis is given then the error names the three ways', () => {
    expect(problems({})).toEqual([
      'REDIS_URL: is required (or REDIS_CLUSTER_NODES for a Redis Cluster, or REDIS_SENTINELS)',
    ]);
  });

  it('when two modes are given then the configuration is refused, naming both', () => {
    const p = problems({ REDIS_URL: 'redis://a:6379', REDIS_CLUSTER_NODES: 'b:7000' });
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/exactly one of .*got REDIS_URL, REDIS_CLUSTER_NODES/);
    expect(problems({ REDIS_CLUSTER_NODES: 'b:7000', REDIS_SENTINELS: 'c:26379' })[0]).toMatch(
      /exactly one of/,
    );
  });

  it('when a node is not host:port then each bad one is named', () => {
    const p = problems({ REDIS_CLUSTER_NODES: 'a:7000,b,c:99999,redis://d:7000' });
    expect(p).toEqual([
      'REDIS_CLUSTER_NODES: "b" is not host:port',
      'REDIS_CLUSTER_NODES: "c:99999" is not host:port',
      'REDIS_CLUSTER_NODES: "redis://d:7000" is not host:port',
    ]);
  });

  it('when Sentinel is half configured then the missing key is named', () => {
    expect(problems({ REDIS_SENTINELS: 's1:26379' })).toEqual([
      'REDIS_SENTINEL_NAME: is required with REDIS_SENTINELS (the master name, e.g. mymaster)',
    ]);
    expect(problems({ REDIS_SENTINEL_NAME: 'mymaster' })[0]).toMatch(/^REDIS_SENTINELS: is required/);
  });

  it('when credentials are given beside REDIS_URL then they are refused (the URL carries its own)', () => {
    expect(problems({ REDIS_URL: 'redis://a:6379', REDIS_PASSWORD: 'x' })).toEqual([
      'REDIS_PASSWORD: not used with REDIS_URL (put credentials and rediss: in the URL itself)',
    ]);
  });
});

describe('QUEUE_PREFIX and hash tags', () => {
  const prefix = (p: string) => problems({ REDIS_URL: 'redis://a:6379', QUEUE_PREFIX: p });

  it('when the prefix is plain or holds one non-empty hash tag then it is accepted', () => {
    for (const ok of ['careway', 'site_a-1', '{careway}', 'site-{a}', '{a}-x'])
      expect(prefix(ok)).toEqual([]);
  });

  it('when the prefix has an empty tag, two tags, a colon or stray braces then it is refused', () => {
    for (const bad of ['{}', '{a}{b}', 'a:b', '{a', 'a}', '{a:b}', 'x'.repeat(41)])
      expect(prefix(bad), bad).toEqual([expect.stringMatching(/^QUEUE_PREFIX: /)]);
  });

  it('when Redis is a cluster then each queue gets its own tag, unless the prefix has one', () => {
    expect(queueKeyPrefix('careway', 'reminders', true)).toBe('careway:{reminders}');
    expect(queueKeyPrefix('careway', 'hl7-inbound-p3', true)).toBe('careway:{hl7-inbound-p3}');
    expect(queueKeyPrefix('{careway}', 'reminders', true)).toBe('{careway}');
    // One server or Sentinel: the keys stay where earlier versions put them.
    expect(queueKeyPrefix('careway', 'reminders', false)).toBe('careway');
    expect([hasHashTag('a{}b'), hasHashTag('a{b}'), hasHashTag('{'), hasHashTag('}{x}')]).toEqual([
      false,
      true,
      false,
      true,
    ]);
  });
});
