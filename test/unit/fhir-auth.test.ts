import { describe, expect, it } from 'vitest';
import { TokenError, staticBearer, type AuthProvider } from '../../src/fhir/auth.js';
import { FhirClient } from '../../src/fhir/client.js';
import { FhirError } from '../../src/fhir/errors.js';
import { isConfiguredEndpoint } from '../../src/referrals/referrer-http.js';

/** A scripted fetch: each call takes the next status. Records each call's Authorization header. */
function scripted(statuses: number[]) {
  const seen: (string | undefined)[] = [];
  const fn = (async (_url: string | URL | Request, init?: RequestInit) => {
    seen.push((init?.headers as Record<string, string>)['Authorization']);
    const status = statuses.shift();
    if (status === undefined) throw new Error('no more scripted responses');
    return new Response(JSON.stringify({ resourceType: 'Patient', id: 'a' }), { status });
  }) as typeof fetch;
  return { fn, seen };
}

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

describe('FhirClient with credentials', () => {
  it('when the server answers 401 then the token is dropped and the request retried once with a new one', async () => {
    const f = scripted([401, 201]);
    const auth = rotating();
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: f.fn, auth, retries: 0 });
    // A plain create, which is never retried on a network error, is retried on 401: the server did nothing.
    await c.create({ resourceType: 'Patient' });
    expect(f.seen).toEqual(['Bearer t1', 'Bearer t2']);
    expect(auth.invalidated).toEqual(['Bearer t1']);
  });

  it('when the new token is refused too then the 401 surfaces after two attempts', async () => {
    const f = scripted([401, 401, 200]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: f.fn, auth: rotating() });
    await expect(c.read('Patient', 'a')).rejects.toMatchObject({ kind: 'http', status: 401 });
    expect(f.seen).toEqual(['Bearer t1', 'Bearer t2']);
  });

  it('when the header cannot change (a static bearer) then a 401 is not sent again', async () => {
    const f = scripted([401, 200]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: f.fn, auth: staticBearer('abc') });
    await expect(c.read('Patient', 'a')).rejects.toMatchObject({ status: 401 });
    expect(f.seen).toEqual(['Bearer abc']);
  });

  it('when the retry after a 401 meets a 503 then the usual transient retries still apply', async () => {
    const f = scripted([401, 503, 200]);
    const c = new FhirClient({
      baseUrl: 'http://fhir.test/fhir',
      fetch: f.fn,
      auth: rotating(),
      backoffMs: 1,
      retries: 1,
    });
    await c.read('Patient', 'a');
    expect(f.seen).toEqual(['Bearer t1', 'Bearer t2', 'Bearer t2']);
  });

  it('when no token can be had then a FhirError of kind auth; transient ones are retried, refusals are not', async () => {
    const f = scripted([200]);
    let calls = 0;
    const failing = (status: number): AuthProvider => ({
      header: async () => {
        calls++;
        throw new TokenError(`token endpoint refused (${status})`, status, 'invalid_client');
      },
      invalidate: () => undefined,
    });
    const c = new FhirClient({
      baseUrl: 'http://fhir.test/fhir',
      fetch: f.fn,
      auth: failing(401),
      backoffMs: 1,
    });
    const e = (await c.read('Patient', 'a').catch((x: unknown) => x)) as FhirError;
    expect(e).toBeInstanceOf(FhirError);
    expect(e).toMatchObject({ kind: 'auth', status: 401, isTransient: false, path: 'Patient/a' });
    expect(e.message).toBe(
      'No access token for the FHIR server for GET Patient/a: token endpoint refused (401)',
    );
    expect(calls).toBe(1);

    calls = 0;
    const t = new FhirClient({
      baseUrl: 'http://fhir.test/fhir',
      fetch: f.fn,
      auth: failing(503),
      backoffMs: 1,
      retries: 2,
    });
    await expect(t.read('Patient', 'a')).rejects.toMatchObject({ kind: 'auth', isTransient: true });
    expect(calls).toBe(3);
    expect(f.seen).toEqual([]); // nothing reached the FHIR server without a token
  });
});

describe('referrer endpoints', () => {
  it('when matching endpoints then only the base itself or paths under it count', () => {
    const eps = ['https://ref.test/fhir/'];
    expect(isConfiguredEndpoint('https://ref.test/fhir', eps)).toBe(true);
    expect(isConfiguredEndpoint('https://ref.test/fhir/r4', eps)).toBe(true);
    expect(isConfiguredEndpoint('https://ref.test/fhir-evil', eps)).toBe(false);
    expect(isConfiguredEndpoint('https://ref.test.evil/fhir', eps)).toBe(false);
  });
});
