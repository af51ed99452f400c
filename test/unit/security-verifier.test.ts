/**
 * The token verifier alone (no app, no Redis): what jose refuses for it (hand-made `alg: none`, HS256 signed
 * with the public key, embedded and remote key headers, kid confusion against a real JWKS served over
 * loopback HTTP), and how long a verified token stays cached (AUTH_CACHE_SECONDS, never past `exp`).
 */
import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { exportJWK, SignJWT } from 'jose';
import type * as Jose from 'jose';
import type { AuthConfig } from '../../src/config/config.js';
import { createVerifier } from '../../src/http/auth/verifier.js';

// jwtVerify is wrapped (same behaviour) so the cache tests can count real verifications.
const verifications = vi.hoisted(() => ({ count: 0 }));
vi.mock('jose', async (importOriginal) => {
  const jose = await importOriginal<typeof Jose>();
  return {
    ...jose,
    jwtVerify: (...args: Parameters<typeof jose.jwtVerify>) => {
      verifications.count++;
      return jose.jwtVerify(...args);
    },
  };
});

const ISSUER = 'https://auth.unit.careway';
const AUDIENCE = 'careway-unit';
const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const ec = (): { privateKey: KeyObject; publicKey: KeyObject } =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' });

const A = ec();
const B = ec();
const publicPem = A.publicKey.export({ type: 'spki', format: 'pem' }).toString();

function pemConfig(cacheSeconds = 60): AuthConfig {
  return { publicKey: publicPem, issuer: ISSUER, audience: AUDIENCE, cacheSeconds };
}

function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { iss: ISSUER, aud: AUDIENCE, sub: 'u1', exp: now + 600, scope: 'system/*.cruds', ...extra };
}

async function sign(
  key: KeyObject,
  header: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(claims(extra)).setProtectedHeader({ alg: 'ES256', ...header }).sign(key);
}

describe('hand-crafted tokens jose must refuse', () => {
  const verify = createVerifier(pemConfig());

  it('when alg is "none" (empty signature) then it is refused as an algorithm not accepted', async () => {
    const token = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims())}.`;
    await expect(verify(token)).rejects.toThrow(/algorithm is not accepted/);
  });

  it('when alg is "none" spelled otherwise (NONE, nOnE) then it is refused too', async () => {
    for (const alg of ['NONE', 'nOnE', 'None']) {
      const token = `${b64url({ alg, typ: 'JWT' })}.${b64url(claims())}.`;
      await expect(verify(token), alg).rejects.toThrow(/algorithm is not accepted/);
    }
  });

  it('when the token is HS256 signed with the PEM public key as the secret then it is refused', async () => {
    const input = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims())}`;
    const sig = createHmac('sha256', publicPem).update(input).digest('base64url');
    await expect(verify(`${input}.${sig}`)).rejects.toThrow(/algorithm is not accepted/);
  });

  it('when the token carries its own key (jwk header) signed by an attacker then the header key is ignored', async () => {
    const jwk = await exportJWK(B.publicKey);
    await expect(verify(await sign(B.privateKey, { jwk }))).rejects.toThrow(/signature is invalid/);
  });

  it('when the token points at an attacker key set (jku, x5u) then the header is ignored', async () => {
    const token = await sign(B.privateKey, { jku: 'http://127.0.0.1:1/jwks', x5u: 'http://127.0.0.1:1/x' });
    await expect(verify(token)).rejects.toThrow(/signature is invalid/);
  });

  it('when the signature is stripped or altered then it is refused', async () => {
    const good = await sign(A.privateKey);
    const [h, p] = good.split('.');
    await expect(verify(`${h}.${p}.`)).rejects.toThrow(/signature is invalid|malformed/);
    await expect(
      verify(`${h}.${b64url(claims({ scope: 'system/careway.admin' }))}.${good.split('.')[2]}`),
    ).rejects.toThrow(/signature is invalid/);
  });

  it('when the token is well signed then it is accepted (the control case)', async () => {
    const p = await verify(await sign(A.privateKey, {}, { jti: 'j-1' }));
    expect(p.subject).toBe('u1');
    expect(p.tokenId).toBe('j-1');
  });
});

describe('kid confusion against a JWKS (a real jose key set served over loopback HTTP)', () => {
  let server: Server;
  let jwksUrl: URL;
  beforeAll(async () => {
    const keys = [
      { ...(await exportJWK(A.publicKey)), kid: 'key-a', alg: 'ES256', use: 'sig' },
      { ...(await exportJWK(B.publicKey)), kid: 'key-b', alg: 'ES256', use: 'sig' },
    ];
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    jwksUrl = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`);
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  const jwksVerifier = () =>
    createVerifier({ jwksUrl, issuer: ISSUER, audience: AUDIENCE, cacheSeconds: 60 });

  it('when each key signs under its own kid then both are accepted (the control case)', async () => {
    const verify = jwksVerifier();
    await expect(verify(await sign(A.privateKey, { kid: 'key-a' }))).resolves.toMatchObject({
      subject: 'u1',
    });
    await expect(verify(await sign(B.privateKey, { kid: 'key-b' }))).resolves.toMatchObject({
      subject: 'u1',
    });
  });

  it("when a token signed by one key names the other key's kid then it is refused", async () => {
    const verify = jwksVerifier();
    await expect(verify(await sign(B.privateKey, { kid: 'key-a' }))).rejects.toThrow(/signature is invalid/);
  });

  it('when the kid is unknown, a path or an injection then the key is unknown', async () => {
    const verify = jwksVerifier();
    const attacker = ec();
    for (const kid of ['key-c', '../../etc/passwd', "key-a' OR '1'='1", '']) {
      await expect(verify(await sign(attacker.privateKey, { kid })), kid).rejects.toThrow(
        /signing key is unknown|signature is invalid|malformed/,
      );
    }
  });

  it('when the token is HS256 under a listed kid with the public JWK as the secret then it is refused', async () => {
    const verify = jwksVerifier();
    const input = `${b64url({ alg: 'HS256', kid: 'key-a' })}.${b64url(claims())}`;
    const secret = JSON.stringify(await exportJWK(A.publicKey));
    const sig = createHmac('sha256', secret).update(input).digest('base64url');
    await expect(verify(`${input}.${sig}`)).rejects.toThrow(/algorithm is not accepted/);
  });
});

describe('the verified-token cache (AUTH_CACHE_SECONDS)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('when a token is reused within the bound then it is verified once; past the bound it is verified again', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.parse('2030-01-01T00:00:00Z');
    vi.setSystemTime(t0);
    const verify = createVerifier(pemConfig(60));
    const token = await sign(A.privateKey);
    const before = verifications.count;
    await verify(token);
    await verify(token);
    vi.setSystemTime(t0 + 59_000);
    await verify(token);
    expect(verifications.count - before).toBe(1);
    vi.setSystemTime(t0 + 61_000);
    await verify(token);
    expect(verifications.count - before).toBe(2);
  });

  it('when the token expires before the bound then the cache does not outlive it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.parse('2030-01-01T00:00:00Z');
    vi.setSystemTime(t0);
    const verify = createVerifier(pemConfig(3600));
    const token = await sign(A.privateKey, {}, { exp: Math.floor(t0 / 1000) + 30 });
    await verify(token);
    vi.setSystemTime(t0 + 31_000);
    await expect(verify(token)).rejects.toThrow(/expired/);
  });

  it('when AUTH_CACHE_SECONDS is 0 then every request is verified', async () => {
    const verify = createVerifier(pemConfig(0));
    const token = await sign(A.privateKey);
    const before = verifications.count;
    await verify(token);
    await verify(token);
    expect(verifications.count - before).toBe(2);
  });

  it('when a token is not yet valid (nbf ahead) then it is refused and not cached', async () => {
    const verify = createVerifier(pemConfig());
    const token = await sign(A.privateKey, {}, { nbf: Math.floor(Date.now() / 1000) + 300 });
    await expect(verify(token)).rejects.toThrow(/claim "nbf"/);
    await expect(verify(token)).rejects.toThrow(/claim "nbf"/);
  });
});
