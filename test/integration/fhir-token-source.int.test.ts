/**
 * The token source and the referrer PUT over real sockets on loopback: against oidc-provider (a real
 * authorization server), and against small loopback endpoints where a test must see exactly what was sent
 * (the client assertion's claims, discovery) or script what a broken endpoint does (silence, a wrong token
 * type). No FHIR server is involved; fhir-secured.int.test.ts runs the whole chain against HAPI.
 */
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OAuthTokenSource, TokenError, type AuthProvider } from '../../src/fhir/auth.js';
import { putToReferrer } from '../../src/referrals/referrer-http.js';
import { startAuthServer, type AuthServer } from '../support/auth-server.js';

const SECRET = 'unit-secret-unit-secret-unit-secret';

/** A loopback HTTP server whose handler a test sets; records each request's headers and body. */
async function listen(
  handler: (req: IncomingMessage, body: string, res: ServerResponse) => void,
): Promise<{ url: string; seen: { headers: IncomingMessage['headers']; body: string }[]; server: Server }> {
  const seen: { headers: IncomingMessage['headers']; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ headers: req.headers, body });
      handler(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server };
}

const close = (s: Server): Promise<void> =>
  new Promise((r) => {
    s.closeAllConnections();
    s.close(() => r());
  });

describe('OAuthTokenSource against oidc-provider', () => {
  let auth: AuthServer;
  beforeAll(async () => {
    auth = await startAuthServer({
      audience: 'https://fhir.test/fhir',
      clients: [
        {
          client_id: 'unit',
          client_secret: SECRET,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'client_secret_basic',
        },
      ],
    });
  });
  afterAll(() => auth.close());

  it('when many callers ask at once then one token request serves them all', async () => {
    const src = new OAuthTokenSource({
      tokenUrl: auth.tokenUrl,
      clientId: 'unit',
      client: { method: 'client_secret_basic', secret: SECRET },
      scope: 'system/*.rs',
    });
    const before = auth.tokenRequests;
    const headers = await Promise.all(Array.from({ length: 10 }, () => src.header()));
    expect(new Set(headers).size).toBe(1);
    expect(headers[0]).toMatch(/^Bearer ey/);
    expect(auth.tokenRequests - before).toBe(1);
  });

  it('when the clock nears expiry then the token is renewed, not before', async () => {
    let now = Date.now();
    const src = new OAuthTokenSource({
      tokenUrl: auth.tokenUrl,
      clientId: 'unit',
      client: { method: 'client_secret_basic', secret: SECRET },
      now: () => now,
    });
    const start = now;
    const before = auth.tokenRequests;
    const first = await src.header();
    // 300 s tokens, renewed 30 s before expiry.
    now = start + 269_000;
    expect(await src.header()).toBe(first);
    expect(auth.tokenRequests - before).toBe(1);
    now = start + 271_000;
    expect(await src.header()).not.toBe(first);
    expect(auth.tokenRequests - before).toBe(2);
  });

  it('when a refused token is reported then only that token is dropped', async () => {
    const src = new OAuthTokenSource({
      tokenUrl: auth.tokenUrl,
      clientId: 'unit',
      client: { method: 'client_secret_basic', secret: SECRET },
    });
    const first = await src.header();
    src.invalidate('Bearer some-older-token');
    expect(await src.header()).toBe(first);
    src.invalidate(first);
    const second = await src.header();
    expect(second).not.toBe(first);
    // A late report about the first token does not throw away the second.
    src.invalidate(first);
    expect(await src.header()).toBe(second);
  });

  it('when the secret is wrong then a TokenError names the refusal and is final', async () => {
    const src = new OAuthTokenSource({
      tokenUrl: auth.tokenUrl,
      clientId: 'unit',
      client: { method: 'client_secret_basic', secret: 'not-the-secret' },
    });
    const e = (await src.header().catch((x: unknown) => x)) as TokenError;
    expect(e).toBeInstanceOf(TokenError);
    expect(e).toMatchObject({ status: 401, error: 'invalid_client', isTransient: false });
    expect(e.message).not.toContain('not-the-secret');
  });
});

describe('OAuthTokenSource requests', () => {
  it('when signing a SMART client assertion then iss = sub = client id, aud = token URL, a fresh jti and exp ≤ 5 min', async () => {
    const srv = await listen((_req, _body, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ access_token: 'abc', token_type: 'bearer', expires_in: 1 }));
    });
    const key = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    const src = new OAuthTokenSource({
      tokenUrl: `${srv.url}/token`,
      clientId: 'careway',
      client: { method: 'private_key_jwt', key, alg: 'ES384', kid: 'k1' },
      scope: 'system/*.rs',
    });
    expect(await src.header()).toBe('Bearer abc');
    src.invalidate('Bearer abc');
    await src.header();
    const forms = srv.seen.map((s) => new URLSearchParams(s.body));
    const assertions = forms.map((f) => f.get('client_assertion')!);
    expect(forms[0]?.get('grant_type')).toBe('client_credentials');
    expect(forms[0]?.get('scope')).toBe('system/*.rs');
    expect(forms[0]?.get('client_assertion_type')).toBe(
      'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    );
    expect(srv.seen[0]?.headers.authorization).toBeUndefined();
    expect(decodeProtectedHeader(assertions[0]!)).toMatchObject({ alg: 'ES384', kid: 'k1', typ: 'JWT' });
    const [a, b] = assertions.map((x) => decodeJwt(x));
    expect(a).toMatchObject({ iss: 'careway', sub: 'careway', aud: `${srv.url}/token` });
    expect(a!.exp! - a!.iat!).toBeLessThanOrEqual(300);
    expect(a!.jti).toBeTruthy();
    expect(a!.jti).not.toBe(b!.jti);
    await close(srv.server);
  });

  it('when no token URL is configured then the SMART configuration names it, once', async () => {
    const srv = await listen((req, _body, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/fhir/.well-known/smart-configuration')
        res.end(JSON.stringify({ token_endpoint: `http://${req.headers.host}/oauth/token` }));
      else res.end(JSON.stringify({ access_token: `t${srv.seen.length}`, token_type: 'Bearer' }));
    });
    const src = new OAuthTokenSource({
      fhirBaseUrl: `${srv.url}/fhir/`,
      clientId: 'c',
      client: { method: 'client_secret_post', secret: 's' },
    });
    await src.header();
    src.invalidate(await src.header());
    await src.header();
    expect(srv.seen).toHaveLength(3); // discovery, token, token
    expect(new URLSearchParams(srv.seen[1]!.body).get('client_secret')).toBe('s');
    await close(srv.server);
  });

  it('when the token endpoint does not answer then the request ends at its deadline as a transient TokenError', async () => {
    const srv = await listen(() => undefined); // never responds
    const src = new OAuthTokenSource({
      tokenUrl: `${srv.url}/token`,
      clientId: 'c',
      client: { method: 'client_secret_basic', secret: 's' },
      timeoutMs: 50,
    });
    const e = (await src.header().catch((x: unknown) => x)) as TokenError;
    expect(e).toBeInstanceOf(TokenError);
    expect(e.message).toMatch(/did not answer in time/);
    expect(e.isTransient).toBe(true);
    await close(srv.server);
  });

  it('when the endpoint sends a non-Bearer token type then it is refused', async () => {
    const srv = await listen((_req, _body, res) => {
      res.end(JSON.stringify({ access_token: 'abc', token_type: 'DPoP' }));
    });
    const src = new OAuthTokenSource({
      tokenUrl: `${srv.url}/token`,
      clientId: 'c',
      client: { method: 'client_secret_basic', secret: 's' },
    });
    await expect(src.header()).rejects.toThrow(/token_type other than Bearer/);
    await close(srv.server);
  });
});

/** Hands out t1, t2, … ; `invalidate` drops the current one. */
function rotating(): AuthProvider & { invalidated: string[] } {
  let n = 1;
  const invalidated: string[] = [];
  return {
    invalidated,
    header: async () => `Bearer t${n}`,
    invalidate: (h) => {
      invalidated.push(h);
      if (h === `Bearer t${n}`) n++;
    },
  };
}

describe('the referrer PUT', () => {
  it('when the endpoint is configured then it carries the credentials and a 401 costs one new token', async () => {
    let refuse = true;
    const srv = await listen((_req, _body, res) => {
      res.statusCode = refuse ? 401 : 200;
      refuse = false;
      res.end();
    });
    const auth = rotating();
    const referrer = { endpoints: [`${srv.url}/fhir/`], auth };
    const status = await putToReferrer(`${srv.url}/fhir`, `${srv.url}/fhir/Task/1`, '{}', referrer, 1000);
    expect(status).toBe(200);
    expect(srv.seen.map((s) => s.headers.authorization)).toEqual(['Bearer t1', 'Bearer t2']);

    // A reply address that is only allow-listed gets nothing of Careway's.
    await putToReferrer(`${srv.url}/other`, `${srv.url}/other/Task/1`, '{}', referrer, 1000);
    expect(srv.seen.at(-1)?.headers.authorization).toBeUndefined();
    await close(srv.server);
  });
});
