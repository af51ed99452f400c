/**
 * Browser apps: SMART discovery (public, under / and /fhir), CORS for the configured origins only (preflight
 * answered without a token; the real request still authenticated) and the security headers. The cross-origin
 * behaviour is also checked in a real browser (headless Chromium), when one is installed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { freePort } from '../../src/devstack/processes.js';
import { startHarness, type Harness } from '../support/harness.js';

const APP = 'https://care-team.example.org';
let h: Harness;
let staff: string;
/** Two pages a browser loads: one on an allowed origin, one on an origin not in CORS_ORIGINS. */
let allowedPort: number;
let otherPort: number;

beforeAll(async () => {
  [allowedPort, otherPort] = [await freePort(), await freePort()];
  h = await startHarness({
    CORS_ORIGINS: `${APP} http://127.0.0.1:${allowedPort}`,
    AUTH_AUTHORIZE_URL: 'https://login.example.org/oauth2/authorize',
    AUTH_TOKEN_URL: 'https://login.example.org/oauth2/token',
  });
  staff = await h.token({ scope: 'user/*.rs' });
});
afterAll(async () => {
  await h?.close();
});

describe('SMART discovery', () => {
  it('when a SMART app asks for the configuration at / or /fhir then it gets the endpoints and capabilities, without a token', async () => {
    for (const url of ['/.well-known/smart-configuration', '/fhir/.well-known/smart-configuration']) {
      const res = await h.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(200);
      const body = res.json<Record<string, unknown>>();
      expect(body).toMatchObject({
        issuer: h.config.auth.issuer,
        authorization_endpoint: 'https://login.example.org/oauth2/authorize',
        token_endpoint: 'https://login.example.org/oauth2/token',
        code_challenge_methods_supported: ['S256'],
      });
      expect(body['grant_types_supported']).toEqual(['authorization_code', 'client_credentials']);
      expect(body['capabilities']).toEqual(
        expect.arrayContaining([
          'launch-standalone',
          'permission-v2',
          'permission-patient',
          'client-confidential-asymmetric',
        ]),
      );
    }
  });
});

describe('CORS', () => {
  it('when an allowed origin sends a preflight then it is answered without a token, with the FHIR headers allowed', async () => {
    const res = await h.app.inject({
      method: 'OPTIONS',
      url: '/fhir/Patient',
      headers: {
        origin: APP,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type, if-none-exist',
      },
    });
    expect(res.statusCode).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe(APP);
    expect(String(res.headers['access-control-allow-methods'])).toContain('POST');
    expect(String(res.headers['access-control-allow-headers'])).toContain('if-none-exist');
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
  });

  it('when another origin asks then it gets no CORS headers, so the browser refuses it', async () => {
    const pre = await h.app.inject({
      method: 'OPTIONS',
      url: '/fhir/Patient',
      headers: { origin: 'https://evil.example.net', 'access-control-request-method': 'GET' },
    });
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    const get = await h.app.inject({
      method: 'GET',
      url: '/fhir/metadata',
      headers: { origin: 'https://evil.example.net' },
    });
    expect(get.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('when an allowed origin calls then the answer carries its origin and exposes ETag; without a token it is still 401', async () => {
    const ok = await h.app.inject({
      method: 'GET',
      url: '/fhir/Patient?_count=1',
      headers: { origin: APP, authorization: `Bearer ${staff}` },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe(APP);
    expect(String(ok.headers['access-control-expose-headers'])).toContain('etag');
    const anonymous = await h.app.inject({ method: 'GET', url: '/fhir/Patient', headers: { origin: APP } });
    expect(anonymous.statusCode).toBe(401);
    // The browser app can read why (CORS headers on the error too).
    expect(anonymous.headers['access-control-allow-origin']).toBe(APP);
  });
});

describe('security headers', () => {
  it('when anything is served then framing, sniffing and referrers are shut off; the docs UI still loads', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/health' });
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(String(res.headers['content-security-policy'])).toContain("frame-ancestors 'none'");
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
    const docs = await h.app.inject({ method: 'GET', url: '/docs/' });
    expect(docs.statusCode).toBe(200);
    expect(docs.body).toContain('swagger');
  });
});

describe('the care-team app without the demo', () => {
  it('when DEMO_SIGN_IN is off then the app is served but there is no demo sign-in route, with or without a token', async () => {
    const page = await h.app.inject({ method: 'GET', url: '/app' });
    expect(page.statusCode).toBe(200);
    const config = await h.app.inject({ method: 'GET', url: '/app/config.json' });
    expect(config.json()).toMatchObject({ demoSignIn: false });
    const anonymous = await h.app.inject({ method: 'POST', url: '/app/demo/sign-in' });
    expect(anonymous.statusCode).toBe(401);
    const withToken = await h.app.inject({
      method: 'POST',
      url: '/app/demo/sign-in',
      headers: { authorization: `Bearer ${staff}` },
    });
    expect(withToken.statusCode).toBe(404);
  });
});

describe('in a real browser', () => {
  const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
  const pages: Server[] = [];
  afterAll(async () => {
    await Promise.all(pages.map((p) => new Promise((r) => p.close(r))));
  });

  /** Serves one page whose script calls Careway with a token and writes what happened into the document. */
  async function page(port: number, careway: string, token: string): Promise<void> {
    const html = `<!doctype html><html><body><pre id="out">pending</pre><script>
      fetch(${JSON.stringify(`${careway}/fhir/Patient?_count=1`)}, {
        headers: { authorization: ${JSON.stringify(`Bearer ${token}`)} },
      })
        .then(async (r) => { document.getElementById('out').textContent = 'status=' + r.status + ' type=' + (await r.json()).resourceType; })
        .catch((e) => { document.getElementById('out').textContent = 'blocked=' + e.name; });
    </script></body></html>`;
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(html));
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    pages.push(server);
  }

  const dump = (url: string): Promise<string> =>
    new Promise((resolve, reject) =>
      execFile(
        CHROMIUM!,
        ['--headless=new', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=15000', '--dump-dom', url],
        { timeout: 60_000 },
        (err, stdout) =>
          err
            ? reject(new Error(err.message))
            : resolve(/<pre id="out">([^<]*)<\/pre>/.exec(stdout)?.[1] ?? stdout),
      ),
    );

  it('when a page on an allowed origin calls Careway then the browser lets it read the answer; another origin is blocked', async () => {
    expect(CHROMIUM, 'Chromium is needed for this test (.ci/run installs it)').toBeDefined();
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    const address = h.app.server.address();
    const careway = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    await page(allowedPort, careway, staff);
    await page(otherPort, careway, staff);
    expect(await dump(`http://127.0.0.1:${allowedPort}/`)).toBe('status=200 type=Bundle');
    expect(await dump(`http://127.0.0.1:${otherPort}/`)).toBe('blocked=TypeError');
  });
});
