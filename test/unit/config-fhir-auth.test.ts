import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type Config } from '../../src/config/config.js';
import { createFhirAuth, createFhirClient, createReferrerHttp } from '../../src/config/fhir-client.js';

const base = {
  FHIR_BASE_URL: 'https://fhir.hospital.test/fhir',
  REDIS_URL: 'redis://127.0.0.1:6379',
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

const dir = mkdtempSync(join(tmpdir(), 'careway-config-fhir-auth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const rsaPem = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const smart = (key: string): Record<string, string> => ({
  FHIR_AUTH: 'smart-backend',
  FHIR_CLIENT_ID: 'careway',
  FHIR_CLIENT_KEY: key,
  FHIR_SCOPE: 'system/*.rs',
});

describe('FHIR_AUTH configuration', () => {
  it('when nothing is set then Careway calls the FHIR server without credentials or TLS options', () => {
    const c = loadConfig(base);
    expect(c.fhirAuth).toEqual({ mode: 'none' });
    expect(c.fhirTls).toBeUndefined();
    expect(createFhirAuth(c)).toBeUndefined();
  });

  it('when FHIR_AUTH is unknown then the problem lists the allowed modes', () => {
    expect(problems({ FHIR_AUTH: 'oauth' })).toEqual([
      'FHIR_AUTH: must be one of none, bearer, client-credentials, smart-backend (got "oauth")',
    ]);
  });

  it('when FHIR_AUTH=bearer has no token, or a token with a line break, then each is named', () => {
    expect(problems({ FHIR_AUTH: 'bearer' })).toEqual([
      'FHIR_BEARER_TOKEN: is required with FHIR_AUTH=bearer (the token sent as Authorization: Bearer)',
    ]);
    expect(problems({ FHIR_AUTH: 'bearer', FHIR_BEARER_TOKEN: 'abc\r\nX-Evil: 1' })).toEqual([
      'FHIR_BEARER_TOKEN: must be one printable ASCII word (no spaces or line breaks)',
    ]);
  });

  it('when client-credentials misses its keys then every missing key is listed at once', () => {
    const p = problems({ FHIR_AUTH: 'client-credentials' });
    expect(p.map((x) => x.split(':')[0])).toEqual(['FHIR_TOKEN_URL', 'FHIR_CLIENT_ID', 'FHIR_CLIENT_SECRET']);
  });

  it('when client-credentials is complete then the secret method defaults to client_secret_basic', () => {
    const c = loadConfig({
      ...base,
      FHIR_AUTH: 'client-credentials',
      FHIR_TOKEN_URL: 'https://auth.hospital.test/token',
      FHIR_CLIENT_ID: 'careway',
      FHIR_CLIENT_SECRET: 's3cret',
      FHIR_SCOPE: 'system/*.rs',
    });
    expect(c.fhirAuth).toEqual({
      mode: 'client-credentials',
      tokenUrl: new URL('https://auth.hospital.test/token'),
      clientId: 'careway',
      clientSecret: 's3cret',
      secretMethod: 'client_secret_basic',
      scope: 'system/*.rs',
    });
    expect(
      problems({
        FHIR_AUTH: 'client-credentials',
        FHIR_TOKEN_URL: 'ftp://auth/token',
        FHIR_CLIENT_ID: 'careway',
        FHIR_CLIENT_SECRET: 's3cret',
        FHIR_CLIENT_AUTH_METHOD: 'private_key_jwt',
      }),
    ).toEqual([
      'FHIR_TOKEN_URL: must use http: or https: (got "ftp:")',
      'FHIR_CLIENT_AUTH_METHOD: must be client_secret_basic or client_secret_post (got "private_key_jwt")',
    ]);
  });

  it('when a credential belongs to another mode then it is named (a leftover is a mistake, not a no-op)', () => {
    expect(problems({ FHIR_BEARER_TOKEN: 'abc', FHIR_CLIENT_KEY: 'x' })).toEqual([
      'FHIR_BEARER_TOKEN: is only used with FHIR_AUTH=bearer (FHIR_AUTH is none)',
      'FHIR_CLIENT_KEY: is only used with FHIR_AUTH=smart-backend (FHIR_AUTH is none)',
    ]);
    expect(problems({ ...smart(rsaPem), FHIR_CLIENT_SECRET: 'abc' })).toEqual([
      'FHIR_CLIENT_SECRET: is only used with FHIR_AUTH=client-credentials (FHIR_AUTH is smart-backend)',
    ]);
  });

  it('when smart-backend gets an RSA PEM (inline with \\n, or as a file) then it signs RS384 with the thumbprint as kid', async () => {
    const inline = loadConfig({ ...base, ...smart(rsaPem.replace(/\n/g, '\\n')) });
    const fromFile = loadConfig({ ...base, ...smart(file('rsa.pem', rsaPem)) });
    const thumbprint = await calculateJwkThumbprint(rsa.publicKey.export({ format: 'jwk' }));
    for (const c of [inline, fromFile]) {
      expect(c.fhirAuth).toMatchObject({
        mode: 'smart-backend',
        alg: 'RS384',
        kid: thumbprint,
        scope: 'system/*.rs',
      });
      expect('tokenUrl' in c.fhirAuth).toBe(false); // discovery
    }
    expect(loadConfig({ ...base, ...smart(rsaPem), FHIR_CLIENT_KEY_ID: 'k-2026' }).fhirAuth).toMatchObject({
      kid: 'k-2026',
    });
  });

  it('when smart-backend gets a P-384 JWK then it signs ES384 with the JWK kid', () => {
    const jwk = { ...p384.privateKey.export({ format: 'jwk' }), kid: 'ec-1' };
    const c = loadConfig({ ...base, ...smart(JSON.stringify(jwk)) });
    expect(c.fhirAuth).toMatchObject({ mode: 'smart-backend', alg: 'ES384', kid: 'ec-1' });
  });

  it('when the key is unusable then the problem says why, and never quotes the key', () => {
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    const ed = generateKeyPairSync('ed25519').privateKey;
    const cases: [string, string][] = [
      [join(dir, 'nope.pem'), 'is neither a PEM or JWK key nor a readable file'],
      [rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(), 'is not a PEM or JWK private key'],
      [
        '-----BEGIN PRIVATE KEY-----\\ngarbage\\n-----END PRIVATE KEY-----',
        'is not a PEM or JWK private key',
      ],
      [JSON.stringify(p256.export({ format: 'jwk' })), 'not an EC key on prime256v1'],
      [small.export({ type: 'pkcs8', format: 'pem' }).toString(), 'at least 2048 bits'],
      [ed.export({ type: 'pkcs8', format: 'pem' }).toString(), 'not a key of type ed25519'],
      [
        JSON.stringify({ ...rsa.privateKey.export({ format: 'jwk' }), alg: 'RS256' }),
        'the JWK says alg "RS256"',
      ],
      [
        JSON.stringify({ keys: [p384.privateKey.export({ format: 'jwk' })] }),
        'must be one JWK, not a JWK Set',
      ],
    ];
    for (const [key, why] of cases) {
      const p = problems(smart(key));
      expect(p, why).toHaveLength(1);
      expect(p[0]).toMatch(/^FHIR_CLIENT_KEY: /);
      expect(p[0]).toContain(why);
      expect(p[0]).not.toContain('BEGIN');
    }
  });

  it('when smart-backend misses its keys then each is named', () => {
    const p = problems({ FHIR_AUTH: 'smart-backend' });
    expect(p.map((x) => x.split(':')[0])).toEqual(['FHIR_CLIENT_ID', 'FHIR_SCOPE', 'FHIR_CLIENT_KEY']);
  });
});

describe('FHIR_TLS configuration', () => {
  it('when a certificate is given without its key, or files are unreadable or not PEM, then each is named', () => {
    expect(problems({ FHIR_TLS_CERT: file('cert.pem', 'not a cert') })).toEqual([
      'FHIR_TLS_CERT and FHIR_TLS_KEY: set both to present a client certificate',
      'FHIR_TLS_CERT: is not a PEM certificate',
    ]);
    expect(problems({ FHIR_TLS_CA: join(dir, 'absent.pem') })).toEqual([
      `FHIR_TLS_CA: cannot read "${join(dir, 'absent.pem')}"`,
    ]);
    expect(
      problems({ FHIR_TLS_KEY: file('key.pem', 'nope'), FHIR_TLS_CERT: file('c2.pem', 'nope') }),
    ).toEqual(['FHIR_TLS_CERT: is not a PEM certificate', 'FHIR_TLS_KEY: is not a PEM private key']);
  });
});

describe('createFhirClient', () => {
  const withEndpoints = (extra: Record<string, string>): Config =>
    loadConfig({
      ...base,
      REFERRAL_ENDPOINTS: 'urn:referrer:a=https://referrer.test/fhir',
      ...extra,
    });

  it('when FHIR_AUTH=bearer then the client and the referrer callback share one header source', async () => {
    const c = withEndpoints({ FHIR_AUTH: 'bearer', FHIR_BEARER_TOKEN: 'tok-123' });
    const fhir = createFhirClient(c);
    expect(await fhir.auth?.header()).toBe('Bearer tok-123');
    const referrer = createReferrerHttp(c, fhir);
    expect(referrer.auth).toBe(fhir.auth);
    expect(referrer.dispatcher).toBe(fhir.dispatcher);
    expect(referrer.endpoints).toEqual(['https://referrer.test/fhir']);
    await fhir.close();
  });

  it('when FHIR_AUTH=none then the client sends no Authorization', async () => {
    const fhir = createFhirClient(withEndpoints({}));
    expect(fhir.auth).toBeUndefined();
    await fhir.close();
  });
});
