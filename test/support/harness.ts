/**
 * Test harness: builds the real app (real HAPI, real Redis) with a throwaway signing key, mints tokens, and
 * captures log lines so tests can assert that no PHI reached them.
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { Writable } from 'node:stream';
import { SignJWT } from 'jose';
import { inject } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { FhirClient, type FhirPort } from '../../src/fhir/client.js';
import type { Appointment } from 'fhir/r4.js';
import { join } from 'node:path';
import { loadMappings, Mapper } from '../../src/hl7/mapping/engine.js';
import { projectRoot } from '../../src/shared/paths.js';

export const ISSUER = 'https://auth.test.careway';
export const AUDIENCE = 'careway-test';

export interface Keys {
  privateKey: KeyObject;
  publicPem: string;
}

export function makeKeys(): Keys {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

export interface TokenOptions {
  scope: string;
  patient?: string;
  /** SMART `fhirUser` claim, e.g. `Practitioner/123`. */
  fhirUser?: string;
  sub?: string;
  iss?: string;
  aud?: string;
  /** Seconds from now; negative for an expired token. */
  expiresIn?: number;
  key?: KeyObject;
}

export async function signToken(keys: Keys, o: TokenOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    scope: o.scope,
    ...(o.patient ? { patient: o.patient } : {}),
    ...(o.fhirUser ? { fhirUser: o.fhirUser } : {}),
  })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer(o.iss ?? ISSUER)
    .setAudience(o.aud ?? AUDIENCE)
    .setSubject(o.sub ?? 'test-user')
    .setIssuedAt(now - 60)
    .setExpirationTime(now + (o.expiresIn ?? 600))
    .sign(o.key ?? keys.privateKey);
}

export function testEnv(keys: Keys, extra: Record<string, string> = {}): Record<string, string> {
  // On the Redis Cluster when the run asks for it (global-setup.ts), unless the test names its own Redis.
  const cluster = inject('redisClusterNodes');
  const own = ['REDIS_URL', 'REDIS_CLUSTER_NODES', 'REDIS_SENTINELS'].some((k) => extra[k]);
  const redis: Record<string, string> = own
    ? {}
    : cluster
      ? { REDIS_CLUSTER_NODES: cluster }
      : { REDIS_URL: inject('redisUrl') };
  return {
    FHIR_BASE_URL: inject('fhirBaseUrl'),
    ...redis,
    AUTH_PUBLIC_KEY: keys.publicPem,
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    LOG_LEVEL: 'info',
    MLLP_PORT: '0',
    HOST: '127.0.0.1',
    HL7_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    // The sweep would mark other tests' past appointments as no-shows; the scheduling tests call it directly.
    NOSHOW_SWEEP_INTERVAL: 'off',
    REMINDER_SWEEP_INTERVAL: 'off',
    CAREPLAN_SWEEP_INTERVAL: 'off',
    // Each instance its own queues: two instances with different settings must not take each other's jobs.
    QUEUE_PREFIX: `t${uniq()}`,
    ...extra,
  };
}

export interface Harness {
  app: FastifyInstance;
  config: Config;
  keys: Keys;
  logs: Record<string, unknown>[];
  rawLogs: string[];
  fhir: FhirClient;
  token(o: TokenOptions): Promise<string>;
  close(): Promise<void>;
}

export async function startHarness(
  extraEnv: Record<string, string> = {},
  options: { keys?: Keys } = {},
): Promise<Harness> {
  // A test that signs tokens itself outside the harness (e.g. the app's demo sign-in) passes its own keys.
  const keys = options.keys ?? makeKeys();
  const config = loadConfig(testEnv(keys, extraEnv));
  const rawLogs: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        rawLogs.push(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  const fhir = new FhirClient({ baseUrl: config.fhirBaseUrl });
  const app = await buildApp({ config, logger: createLogger({ level: 'debug', destination: sink }) });
  await app.ready();
  await app.profiles.whenUploaded();
  return {
    app,
    config,
    keys,
    logs,
    rawLogs,
    fhir,
    token: (o) => signToken(keys, o),
    close: async () => {
      await app.close();
      await fhir.close();
    },
  };
}

/**
 * A booked Appointment for the patient written straight to the FHIR server, as an EHR would: Careway hears of
 * it only through its subscription, its sweep or an explicit re-plan.
 */
export async function bookedOnFhir(
  fhir: FhirPort,
  patientId: string,
  startMs: number,
  minutes: number,
  extra: Partial<Appointment> = {},
): Promise<Appointment> {
  const created = await fhir.create<Appointment>({
    resourceType: 'Appointment',
    status: 'booked',
    ...extra,
    start: new Date(startMs).toISOString(),
    end: new Date(startMs + minutes * 60_000).toISOString(),
    participant: [{ actor: { reference: `Patient/${patientId}` }, status: 'accepted' }],
  });
  return created.resource;
}

/** A short unique suffix so each test's identifiers never collide with another's. */
export function uniq(): string {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}

/** Polls `fn` until it returns a value (not undefined), or fails naming `what` after `timeoutMs`. */
export async function until<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 30_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The message types Careway's own maps take, as the app's intake asks (for tests that build an intake alone). */
export async function mapSupports(): Promise<(code: string, trigger: string, structure: string) => boolean> {
  const root = join(projectRoot(), 'mappings');
  const mapper = new Mapper(await loadMappings([root], join(root, 'schema.json')));
  return (code, trigger, structure) => mapper.supports(code, trigger, structure);
}
