/**
 * Careway as a client of a secured FHIR server (#15): every FHIR_AUTH mode against real parts.
 *
 * - The FHIR server is the real HAPI launcher started here on its own port with HAPI_REQUIRE_JWKS_URL: it
 *   refuses any request but /metadata without a bearer JWT that verifies against the authorization server's
 *   JWKS (issuer, audience and expiry checked, no clock leeway), and serves .well-known/smart-configuration.
 * - The authorization server is oidc-provider (test/support/auth-server.ts): client_credentials with
 *   client_secret_basic, client_secret_post and private_key_jwt (RS384, ES384) checked by its own code.
 * - Careway's side is built as the service builds it: loadConfig(env) → createFhirClient(config), and a real
 *   Careway app (buildApp) on top for the end-to-end and log checks.
 *
 * - mTLS: a TLS terminator on loopback that demands a client certificate signed by a test CA, in front of the
 *   same HAPI (HAPI itself speaks plain HTTP here).
 *
 * Expiry is real (a 5 s token lifetime, then waiting until the token's own `exp` has passed); nothing asserts
 * on how long anything took.
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { generate } from 'selfsigned';
import type { FastifyInstance } from 'fastify';
import type { Patient, Task } from 'fhir/r4.js';
import { UnrecoverableError } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { createFhirClient, createReferrerHttp } from '../../src/config/fhir-client.js';
import { startHapi, freePort, type LocalService } from '../../src/devstack/processes.js';
import { canonical } from '../../src/fhir/canonical.js';
import { type FhirClient } from '../../src/fhir/client.js';
import { FhirError } from '../../src/fhir/errors.js';
import { exec as sendStatus } from '../../src/referrals/status-worker.js';
import { createLogger } from '../../src/shared/logger.js';
import { startAuthServer, type AuthServer } from '../support/auth-server.js';
import { makeKeys, signToken, testEnv, uniq, until, type Keys } from '../support/harness.js';

const BASIC_SECRET = `basic-${randomBytes(24).toString('hex')}`;
const POST_SECRET = `post-${randomBytes(24).toString('hex')}`;
const SCOPE = 'system/*.cruds';

let hapi: LocalService;
let auth: AuthServer;
let userKeys: Keys;
let rsaKeyFile: string;
let ecJwk: string;
let keyDir: string;

/** A client key pair and the public JWK to register for it (kid = RFC 7638 thumbprint, as Careway derives). */
async function clientKey(
  kind: 'rsa' | 'ec',
  alg: 'RS384' | 'ES384',
): Promise<{ privateKey: KeyObject; publicJwk: JWK }> {
  const { privateKey, publicKey } =
    kind === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const jwk = publicKey.export({ format: 'jwk' }) as JWK;
  return { privateKey, publicJwk: { ...jwk, kid: await calculateJwkThumbprint(jwk), alg, use: 'sig' } };
}

beforeAll(async () => {
  userKeys = makeKeys();
  const rsa = await clientKey('rsa', 'RS384');
  const ec = await clientKey('ec', 'ES384');
  keyDir = mkdtempSync(join(tmpdir(), 'careway-fhir-auth-'));
  // RS384 as a PEM file (FHIR_CLIENT_KEY as a path); ES384 as an inline JWK (FHIR_CLIENT_KEY as a value).
  rsaKeyFile = join(keyDir, 'careway-rs384.pem');
  writeFileSync(rsaKeyFile, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  ecJwk = JSON.stringify({ ...ec.privateKey.export({ format: 'jwk' }), kid: ec.publicJwk.kid });

  const port = await freePort();
  const audience = `http://127.0.0.1:${port}/fhir`;
  const common = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };
  auth = await startAuthServer({
    audience,
    clients: [
      {
        ...common,
        client_id: 'careway-basic',
        client_secret: BASIC_SECRET,
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        ...common,
        client_id: 'careway-post',
        client_secret: POST_SECRET,
        token_endpoint_auth_method: 'client_secret_post',
      },
      {
        ...common,
        client_id: 'careway-rs384',
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'RS384',
        jwks: { keys: [rsa.publicJwk] },
      },
      {
        ...common,
        client_id: 'careway-es384',
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES384',
        jwks: { keys: [ec.publicJwk] },
      },
    ],
  });
  hapi = await startHapi({
    port,
    timeoutMs: 300_000,
    env: {
      HAPI_REQUIRE_JWKS_URL: auth.jwksUrl,
      HAPI_REQUIRE_ISSUER: auth.issuer,
      HAPI_REQUIRE_AUDIENCE: audience,
      HAPI_SMART_TOKEN_URL: auth.tokenUrl,
      HAPI_SMART_JWKS_URL: auth.jwksUrl,
    },
  });
});

afterAll(async () => {
  await hapi?.stop();
  await auth?.close();
  if (keyDir) rmSync(keyDir, { recursive: true, force: true });
});

/** Careway's configuration for the secured server, from env as in production. */
function config(extra: Record<string, string>): Config {
  return loadConfig(testEnv(userKeys, { FHIR_BASE_URL: hapi.url, ...extra }));
}

const basicEnv = (): Record<string, string> => ({
  FHIR_AUTH: 'client-credentials',
  FHIR_TOKEN_URL: auth.tokenUrl,
  FHIR_CLIENT_ID: 'careway-basic',
  FHIR_CLIENT_SECRET: BASIC_SECRET,
  FHIR_SCOPE: SCOPE,
});

/** A token straight from the authorization server, as an operator would paste into FHIR_BEARER_TOKEN. */
async function tokenFromServer(): Promise<string> {
  const res = await fetch(auth.tokenUrl, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`careway-basic:${BASIC_SECRET}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: SCOPE }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

/** Create, then read back: a write and a read that both need the server's consent. */
async function roundTrip(fhir: FhirClient): Promise<void> {
  const family = `Secured${uniq()}`;
  const created = await fhir.create<Patient>({ resourceType: 'Patient', name: [{ family }] });
  const read = await fhir.read<Patient>('Patient', created.resource.id!);
  expect(read.name?.[0]?.family).toBe(family);
}

async function refusal(p: Promise<unknown>): Promise<FhirError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(FhirError);
  return e as FhirError;
}

describe('the secured HAPI server', () => {
  it('when a request carries no token then it is refused with 401, an OperationOutcome and WWW-Authenticate: Bearer', async () => {
    const res = await fetch(`${hapi.url}/Patient`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
    expect(((await res.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
    // /metadata stays public, as SMART expects.
    expect((await fetch(`${hapi.url}/metadata`)).status).toBe(200);

    const open = createFhirClient(config({}));
    const e = await refusal(open.search('Patient'));
    expect(e).toMatchObject({ kind: 'http', status: 401 });
    await open.close();
  });

  it('when the same request carries a valid token from the authorization server then it is served', async () => {
    // The control for every test below: the difference is the token alone.
    const token = await tokenFromServer();
    const raw = await fetch(`${hapi.url}/Patient?_count=1`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(raw.status).toBe(200);
  });
});

describe('FHIR_AUTH=bearer', () => {
  it('when the token is valid then reads and writes work', async () => {
    const fhir = createFhirClient(
      config({ FHIR_AUTH: 'bearer', FHIR_BEARER_TOKEN: await tokenFromServer() }),
    );
    await roundTrip(fhir);
    await fhir.close();
  });

  it('when the token is refused then the 401 surfaces once, without a pointless retry of the same token', async () => {
    const fhir = createFhirClient(config({ FHIR_AUTH: 'bearer', FHIR_BEARER_TOKEN: 'not-a-jwt' }));
    const invalidate = vi.spyOn(fhir.auth!, 'invalidate');
    const e = await refusal(fhir.read('Patient', 'x'));
    expect(e).toMatchObject({ kind: 'http', status: 401 });
    expect(invalidate).toHaveBeenCalledTimes(1);
    await fhir.close();
  });
});

describe('FHIR_AUTH=client-credentials', () => {
  it('when the secret goes as HTTP Basic then a token is fetched once and serves many requests', async () => {
    const before = auth.tokenRequests;
    const fhir = createFhirClient(config(basicEnv()));
    await roundTrip(fhir);
    await Promise.all([fhir.search('Patient', { _count: 1 }), fhir.search('Patient', { _count: 1 })]);
    expect(auth.tokenRequests - before).toBe(1);
    expect(auth.issued.at(-1)?.clientId).toBe('careway-basic');
    await fhir.close();
  });

  it('when the secret goes in the form (client_secret_post) then it works too', async () => {
    const fhir = createFhirClient(
      config({
        ...basicEnv(),
        FHIR_CLIENT_ID: 'careway-post',
        FHIR_CLIENT_SECRET: POST_SECRET,
        FHIR_CLIENT_AUTH_METHOD: 'client_secret_post',
      }),
    );
    await roundTrip(fhir);
    expect(auth.issued.at(-1)?.clientId).toBe('careway-post');
    await fhir.close();
  });

  it('when the secret is wrong then the call fails at once with a clear error naming the refusal, not the secret', async () => {
    const before = auth.tokenRequests;
    const wrong = 'wrong-secret-wrong-secret-wrong';
    const fhir = createFhirClient(config({ ...basicEnv(), FHIR_CLIENT_SECRET: wrong }));
    const e = await refusal(fhir.read('Patient', 'x'));
    expect(e.kind).toBe('auth');
    expect(e.status).toBe(401);
    expect(e.isTransient).toBe(false);
    expect(e.message).toMatch(
      /No access token for the FHIR server for GET Patient\/x: token endpoint .* refused/,
    );
    expect(e.message).toContain('invalid_client');
    expect(e.message).not.toContain(wrong);
    // A refusal is final: one token request, no retries.
    expect(auth.tokenRequests - before).toBe(1);
    await fhir.close();
  });

  it('when the token expires then the next request fetches a new one first, and the server refuses the old one', async () => {
    // 5 s tokens, renewed 1.25 s before expiry: ample room for one search on a busy machine, so the only
    // renewal is the one after expiry.
    auth.ttlSeconds = 5;
    try {
      const fhir = createFhirClient(config(basicEnv()));
      const before = auth.tokenRequests;
      await fhir.search('Patient', { _count: 1 });
      expect(auth.tokenRequests - before).toBe(1);
      const first = auth.accessTokens.at(-1)!;
      const exp = auth.issued.at(-1)!.exp;
      await until(
        'the first token to expire',
        () => (Date.now() / 1000 > exp + 0.2 ? true : undefined),
        10_000,
        100,
      );

      const invalidate = vi.spyOn(fhir.auth!, 'invalidate');
      await fhir.search('Patient', { _count: 1 });
      expect(auth.tokenRequests - before).toBe(2);
      // Renewed ahead of use, not after a refusal.
      expect(invalidate).not.toHaveBeenCalled();

      // The server really checks expiry: the old token is refused.
      const stale = createFhirClient(config({ FHIR_AUTH: 'bearer', FHIR_BEARER_TOKEN: first }));
      expect(await refusal(stale.read('Patient', 'x'))).toMatchObject({ kind: 'http', status: 401 });
      await Promise.all([fhir.close(), stale.close()]);
    } finally {
      auth.ttlSeconds = 300;
    }
  });

  it('when the signing key is rotated then the refused token is dropped, one new token fetched and the request retried', async () => {
    const fhir = createFhirClient(config(basicEnv()));
    await fhir.search('Patient', { _count: 1 });
    const before = auth.tokenRequests;
    const kid = auth.kid;
    await auth.rotateKeys();
    expect(auth.kid).not.toBe(kid);

    const invalidate = vi.spyOn(fhir.auth!, 'invalidate');
    // A non-idempotent create too: a 401 means the server did nothing, so one retry is safe.
    await roundTrip(fhir);
    expect(invalidate).toHaveBeenCalledTimes(1);
    expect(auth.tokenRequests - before).toBe(1);
    await fhir.close();
  });
});

describe('FHIR_AUTH=smart-backend (private_key_jwt)', () => {
  it('when an RS384 PEM key file and FHIR_TOKEN_URL are given then the client assertion is accepted and requests work', async () => {
    const before = auth.tokensIssued;
    const fhir = createFhirClient(
      config({
        FHIR_AUTH: 'smart-backend',
        FHIR_TOKEN_URL: auth.tokenUrl,
        FHIR_CLIENT_ID: 'careway-rs384',
        FHIR_CLIENT_KEY: rsaKeyFile,
        FHIR_SCOPE: SCOPE,
      }),
    );
    await roundTrip(fhir);
    expect(auth.tokensIssued - before).toBe(1);
    expect(auth.issued.at(-1)?.clientId).toBe('careway-rs384');
    await fhir.close();
  });

  it("when an ES384 JWK is given and no token URL then the endpoint comes from the server's smart-configuration", async () => {
    const res = await fetch(`${hapi.url}/.well-known/smart-configuration`);
    expect(((await res.json()) as { token_endpoint: string }).token_endpoint).toBe(auth.tokenUrl);

    const c = config({
      FHIR_AUTH: 'smart-backend',
      FHIR_CLIENT_ID: 'careway-es384',
      FHIR_CLIENT_KEY: ecJwk,
      FHIR_SCOPE: SCOPE,
    });
    expect(c.fhirAuth).toMatchObject({ mode: 'smart-backend', alg: 'ES384' });
    expect('tokenUrl' in c.fhirAuth).toBe(false);
    const fhir = createFhirClient(c);
    await roundTrip(fhir);
    expect(auth.issued.at(-1)?.clientId).toBe('careway-es384');
    await fhir.close();
  });

  it('when the assertion is signed with a key the server does not know then the error is clear and final', async () => {
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    const fhir = createFhirClient(
      config({
        FHIR_AUTH: 'smart-backend',
        FHIR_TOKEN_URL: auth.tokenUrl,
        FHIR_CLIENT_ID: 'careway-es384',
        FHIR_CLIENT_KEY: JSON.stringify(stranger.export({ format: 'jwk' })),
        FHIR_SCOPE: SCOPE,
      }),
    );
    const e = await refusal(fhir.search('Patient'));
    expect(e).toMatchObject({ kind: 'auth', status: 401 });
    expect(e.message).toContain('invalid_client');
    await fhir.close();
  });
});

describe('the referral status callback to a configured referrer endpoint', () => {
  it('when the referrer is secured like the FHIR server then the PUT carries the same credentials', async () => {
    // The secured HAPI plays the referrer: its Task endpoint refuses anything without a valid token.
    const system = `urn:careway:test:referrer:${uniq()}`;
    const c = config({ ...basicEnv(), REFERRAL_ENDPOINTS: `${system}=${hapi.url}` });
    const fhir = createFhirClient(c);
    const task = await fhir.create<Task>({
      resourceType: 'Task',
      status: 'requested',
      intent: 'order',
      extension: [{ url: canonical.replyToExtension, valueUrl: hapi.url }],
    });
    const job = { data: { taskId: task.resource.id!, version: task.versionId ?? '1' } };

    // Before #15 the PUT went out bare: the secured referrer refuses it, and the job gives up.
    const bare = await sendStatus(job, { fhir }).catch((e: unknown) => e);
    expect(bare).toBeInstanceOf(UnrecoverableError);
    expect((bare as Error).message).toContain('401');

    expect(await sendStatus(job, { fhir, referrer: createReferrerHttp(c, fhir) })).toBe('sent');
    await fhir.close();
  });
});

describe('FHIR_TLS_* (mutual TLS)', () => {
  let proxy: ReturnType<typeof createHttpsServer> | undefined;
  let tlsBase = '';
  let files: { cert: string; key: string; ca: string };

  beforeAll(async () => {
    // A hospital CA signs Careway's client certificate; the server has its own (trusted via FHIR_TLS_CA).
    const ca = await generate([{ name: 'commonName', value: 'Hospital test CA' }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      ],
    });
    const client = await generate([{ name: 'commonName', value: 'careway' }], {
      keySize: 2048,
      algorithm: 'sha256',
      ca: { key: ca.private, cert: ca.cert },
      extensions: [{ name: 'extKeyUsage', clientAuth: true }],
    });
    const server = await generate([{ name: 'commonName', value: 'localhost' }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    });
    files = {
      cert: join(keyDir, 'client.crt'),
      key: join(keyDir, 'client.key'),
      ca: join(keyDir, 'server-ca.crt'),
    };
    writeFileSync(files.cert, client.cert);
    writeFileSync(files.key, client.private, { mode: 0o600 });
    writeFileSync(files.ca, server.cert);
    const upstream = new URL(hapi.url);
    proxy = createHttpsServer(
      { cert: server.cert, key: server.private, ca: ca.cert, requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        const up = httpRequest(
          {
            host: upstream.hostname,
            port: upstream.port,
            path: req.url,
            method: req.method,
            headers: req.headers,
          },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        up.once('error', () => res.writeHead(502).end());
        req.pipe(up);
      },
    );
    await new Promise<void>((r) => proxy!.listen(0, '127.0.0.1', r));
    tlsBase = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}/fhir`;
  });

  afterAll(async () => {
    proxy?.closeAllConnections();
    await new Promise<void>((r) => (proxy ? proxy.close(() => r()) : r()));
  });

  it('when the client certificate is configured then requests get through, with their token', async () => {
    const fhir = createFhirClient(
      config({
        ...basicEnv(),
        FHIR_BASE_URL: tlsBase,
        FHIR_TLS_CERT: files.cert,
        FHIR_TLS_KEY: files.key,
        FHIR_TLS_CA: files.ca,
      }),
    );
    await roundTrip(fhir);
    await fhir.close();
  });

  it('when no client certificate is presented, or the server is not trusted, then the connection is refused', async () => {
    const noCert = createFhirClient(config({ ...basicEnv(), FHIR_BASE_URL: tlsBase, FHIR_TLS_CA: files.ca }));
    expect(await refusal(noCert.read('Patient', 'x'))).toMatchObject({ kind: 'network' });
    const untrusted = createFhirClient(
      config({ ...basicEnv(), FHIR_BASE_URL: tlsBase, FHIR_TLS_CERT: files.cert, FHIR_TLS_KEY: files.key }),
    );
    expect(await refusal(untrusted.read('Patient', 'x'))).toMatchObject({ kind: 'network' });
    await Promise.all([noCert.close(), untrusted.close()]);
  });
});

describe('a Careway app on the secured server', () => {
  let app: FastifyInstance | undefined;
  const rawLogs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      rawLogs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });

  afterAll(async () => {
    await app?.close();
  });

  it('when it runs with client credentials then it uploads its profiles and serves /fhir reads through the secured server', async () => {
    const c = config({ ...basicEnv(), LOG_LEVEL: 'debug' });
    const fhir = createFhirClient(c);
    app = await buildApp({ config: c, logger: createLogger({ level: 'debug', destination: sink }), fhir });
    await app.ready();
    await app.profiles.whenUploaded();
    expect(app.profiles.uploaded).toBe(true);

    const created = await fhir.create<Patient>({ resourceType: 'Patient', active: true });
    const token = await signToken(userKeys, { scope: 'user/*.rs' });
    const res = await app.inject({
      method: 'GET',
      url: `/fhir/Patient/${created.resource.id!}`,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json<Patient>().id).toBe(created.resource.id);
  });

  it('when its credentials are refused then /fhir answers 502 and the log names the refusal', async () => {
    const wrong = `wrong-${randomBytes(16).toString('hex')}`;
    const c = config({
      ...basicEnv(),
      FHIR_CLIENT_SECRET: wrong,
      CAREWAY_UPLOAD_PROFILES: 'false',
      RUN_WORKERS: 'false',
    });
    const bad = await buildApp({
      config: c,
      logger: createLogger({ level: 'debug', destination: sink }),
      fhir: createFhirClient(c),
    });
    try {
      await bad.ready();
      const token = await signToken(userKeys, { scope: 'user/*.rs' });
      const res = await bad.inject({
        method: 'GET',
        url: '/fhir/Patient/x',
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.statusCode).toBe(502);
      expect(rawLogs.some((l) => l.includes('invalid_client'))).toBe(true);
      expect(rawLogs.join('\n')).not.toContain(wrong);
    } finally {
      await bad.close();
    }
  });

  it('then no access token or client secret appears in any log line', () => {
    expect(rawLogs.length).toBeGreaterThan(0);
    expect(auth.accessTokens.length).toBeGreaterThan(0);
    const all = rawLogs.join('\n');
    for (const t of auth.accessTokens) expect(all).not.toContain(t);
    expect(all).not.toContain(BASIC_SECRET);
  });
});
