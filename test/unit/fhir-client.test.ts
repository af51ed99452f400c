import { describe, expect, it } from 'vitest';
import { FhirClient, toQuery, versionFromEtag } from '../../src/fhir/client.js';
import { FhirError } from '../../src/fhir/errors.js';

/** A scripted fetch: each call takes the next response (or throws the next error). Records requests. */
function scripted(responses: (Response | Error)[]) {
  const calls: { url: string; init: RequestInit }[] = [];
  const fn = (async (url: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: url instanceof Request ? url.url : url.toString(), init: init ?? {} });
    const next = responses.shift();
    if (!next) throw new Error('no more scripted responses');
    if (next instanceof Error) throw next;
    return next;
  }) as typeof fetch;
  return { fn, calls };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/fhir+json', ...headers },
  });
const oo = {
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code: 'processing', diagnostics: 'HAPI-0989' }],
};

describe('FhirClient', () => {
  it('when a GET meets a 503 then it retries and returns the later success', async () => {
    const f = scripted([json(503, oo), json(200, { resourceType: 'Patient', id: 'a' })]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: f.fn, backoffMs: 1 });
    const p = await c.read('Patient', 'a');
    expect(p.id).toBe('a');
    expect(f.calls).toHaveLength(2);
  });

  it('when a plain POST create meets a network error then it is not retried (no duplicate)', async () => {
    const f = scripted([new TypeError('fetch failed'), json(201, { resourceType: 'Patient', id: 'x' })]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: f.fn, backoffMs: 1 });
    await expect(c.create({ resourceType: 'Patient' })).rejects.toMatchObject({ kind: 'network', status: 0 });
    expect(f.calls).toHaveLength(1);
  });

  it('when a conditional create meets a network error then it is retried with If-None-Exist', async () => {
    const f = scripted([
      new TypeError('fetch failed'),
      json(200, { resourceType: 'Patient', id: 'x' }, { etag: 'W/"1"' }),
    ]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: f.fn, backoffMs: 1 });
    const r = await c.create({ resourceType: 'Patient' }, { ifNoneExist: { identifier: 'urn:mrn|1' } });
    expect(r).toMatchObject({ outcome: 'existing', versionId: '1' });
    expect(f.calls).toHaveLength(2);
    expect((f.calls[1]?.init.headers as Record<string, string>)['If-None-Exist']).toBe(
      'identifier=urn%3Amrn%7C1',
    );
  });

  it('when the server answers 4xx then a FhirError carries the status and OperationOutcome, without retry', async () => {
    const f = scripted([json(409, oo)]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: f.fn, backoffMs: 1 });
    const err = await c
      .update({ resourceType: 'Patient', id: 'a' }, { ifMatch: '1' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FhirError);
    expect(err).toMatchObject({ status: 409, isConflict: true, outcome: oo, path: 'Patient/a' });
    expect((f.calls[0]?.init.headers as Record<string, string>)['If-Match']).toBe('W/"1"');
  });

  it('when a search fails then the error message carries no query string (PHI)', async () => {
    const f = scripted([json(400, oo)]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: f.fn });
    const err = (await c
      .search('Patient', { name: 'Jane Doe', birthdate: '1970-01-01' })
      .catch((e: unknown) => e)) as FhirError;
    expect(err.message).toBe('FHIR server answered 400 for GET Patient');
    expect(err.message).not.toMatch(/Jane|1970/);
  });

  it('when retries run out then the last transient error surfaces', async () => {
    const f = scripted([json(502, oo), json(502, oo), json(502, oo)]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: f.fn, backoffMs: 1, retries: 2 });
    await expect(c.read('Patient', 'a')).rejects.toMatchObject({ status: 502, isTransient: true });
    expect(f.calls).toHaveLength(3);
  });

  it('when the server is slower than the timeout then a timeout FhirError is raised', async () => {
    const slow = (async (_u: string | URL | Request, init?: RequestInit) =>
      new Promise<Response>((_, reject) => {
        init?.signal?.addEventListener('abort', () => reject(init.signal?.reason as Error));
      })) as typeof fetch;
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: slow, timeoutMs: 20, retries: 0 });
    await expect(c.read('Patient', 'a')).rejects.toMatchObject({ kind: 'timeout' });
  });

  it('when asked for freshness then Cache-Control: no-cache is sent', async () => {
    const f = scripted([json(200, { resourceType: 'Bundle', type: 'searchset' })]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir/', fetch: f.fn });
    await c.search('Patient', { identifier: 'a|b' }, { noCache: true });
    expect(f.calls[0]?.url).toBe('http://fhir.test/fhir/Patient?identifier=a%7Cb');
    expect((f.calls[0]?.init.headers as Record<string, string>)['Cache-Control']).toBe('no-cache');
  });

  it('when asked for a storeless search then Cache-Control: no-store with max-results is sent', async () => {
    const f = scripted([json(200, { resourceType: 'Bundle', type: 'searchset' })]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir/', fetch: f.fn });
    await c.search('Patient', { identifier: 'a|b' }, { storeless: 100, noCache: true });
    expect((f.calls[0]?.init.headers as Record<string, string>)['Cache-Control']).toBe(
      'no-store, max-results=100',
    );
  });

  it('when a paging link points at another origin then it is not followed', async () => {
    const f = scripted([]);
    const c = new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch: f.fn });
    const pages = c.pages({
      resourceType: 'Bundle',
      type: 'searchset',
      link: [{ relation: 'next', url: 'http://evil.test/x' }],
    });
    await pages.next();
    await expect(pages.next()).rejects.toBeInstanceOf(FhirError);
    expect(f.calls).toHaveLength(0);
  });
});

describe('helpers', () => {
  it('when params repeat then each value is sent', () => {
    expect(toQuery({ _include: ['A:b', 'C:d'], _count: 5, missing: undefined })).toBe(
      '?_include=A%3Ab&_include=C%3Ad&_count=5',
    );
  });
  it('when an ETag is weak or strong then the version is read', () => {
    expect(versionFromEtag('W/"3"')).toBe('3');
    expect(versionFromEtag('"7"')).toBe('7');
    expect(versionFromEtag(null)).toBeUndefined();
  });
});
