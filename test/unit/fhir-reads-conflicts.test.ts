import { describe, expect, it } from 'vitest';
import { FhirClient } from '../../src/fhir/client.js';
import { FhirError } from '../../src/fhir/errors.js';
import { mustRead, readIfExists } from '../../src/fhir/reads.js';
import { retryOnConflict } from '../../src/fhir/conflicts.js';
import { CarewayError } from '../../src/shared/errors.js';
import { localLock, withLocks } from '../../src/shared/lock.js';

/** A FhirClient whose every call answers `status` (with a Patient on 200), recording the request headers. */
function answering(...statuses: number[]) {
  const headers: Record<string, string>[] = [];
  const fetch = (async (_url: string | URL | Request, init?: RequestInit) => {
    headers.push({ ...(init?.headers as Record<string, string>) });
    const status = statuses.shift() ?? 500;
    const body = status === 200 ? { resourceType: 'Patient', id: 'a' } : { resourceType: 'OperationOutcome' };
    return new Response(JSON.stringify(body), {
      status,
      headers: { 'content-type': 'application/fhir+json' },
    });
  }) as typeof globalThis.fetch;
  return { fhir: new FhirClient({ baseUrl: 'http://fhir.test/fhir', fetch, retries: 0 }), headers };
}

const conflict = (status = 409) => new FhirError({ kind: 'http', status, method: 'POST', path: '' });

describe('readIfExists', () => {
  it('when the resource exists then it is returned, read fresh (no-cache)', async () => {
    const { fhir, headers } = answering(200);
    expect(await readIfExists(fhir, 'Patient', 'a')).toMatchObject({ id: 'a' });
    expect(headers[0]?.['Cache-Control']).toBe('no-cache');
  });

  it.each([404, 410])('when the server answers %i then it is undefined', async (status) => {
    const { fhir } = answering(status);
    expect(await readIfExists(fhir, 'Patient', 'a')).toBeUndefined();
  });

  it('when the server fails (503) then the failure is thrown, not taken for "missing"', async () => {
    const { fhir } = answering(503);
    await expect(readIfExists(fhir, 'Patient', 'a')).rejects.toMatchObject({ status: 503 });
  });
});

describe('mustRead', () => {
  it('when the resource is missing then the request is refused naming it, 422 by default, 404 for the URL', async () => {
    await expect(mustRead(answering(404).fhir, 'Patient', 'a')).rejects.toMatchObject({
      code: 'unknown-reference',
      status: 422,
      message: 'Patient/a does not exist',
    });
    await expect(mustRead(answering(410).fhir, 'Patient', 'a', 'not-found')).rejects.toMatchObject({
      code: 'not-found',
      status: 404,
    });
  });
});

describe('retryOnConflict', () => {
  it('when an attempt conflicts then the next one runs, with its number, until one succeeds', async () => {
    const seen: number[] = [];
    const result = await retryOnConflict(async (n) => {
      seen.push(n);
      if (n < 3) throw conflict(n === 1 ? 409 : 412);
      return 'done';
    });
    expect(result).toBe('done');
    expect(seen).toEqual([1, 2, 3]);
  });

  it('when every attempt conflicts then the last conflict is thrown as it came', async () => {
    let calls = 0;
    const err = await retryOnConflict(
      async () => {
        calls++;
        throw conflict();
      },
      { attempts: 3 },
    ).catch((e: unknown) => e);
    expect(calls).toBe(3);
    expect(err).toBeInstanceOf(FhirError);
  });

  it('when the attempts run out and a message is given then it is a 409 concurrent-update with the conflict as cause', async () => {
    const e = conflict();
    const err = await retryOnConflict(
      async () => {
        throw e;
      },
      { attempts: 1, exhausted: 'it kept changing' },
    ).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(CarewayError);
    expect(err).toMatchObject({
      code: 'concurrent-update',
      status: 409,
      message: 'it kept changing',
      cause: e,
    });
  });

  it('when an attempt fails otherwise then it is thrown at once, without another attempt', async () => {
    let calls = 0;
    const failure = new FhirError({ kind: 'http', status: 500, method: 'GET', path: '' });
    await expect(
      retryOnConflict(async () => {
        calls++;
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(calls).toBe(1);
  });
});

describe('withLocks', () => {
  it('when keys are given in any order, or twice, then each is taken once, in sorted order', async () => {
    const taken: string[] = [];
    const lock = localLock();
    const recording = {
      withLock: <T>(key: string, fn: () => Promise<T>) => {
        taken.push(key);
        return lock.withLock(key, fn);
      },
    };
    expect(await withLocks(recording, ['slot:b', 'slot:a', 'slot:b'], async () => 'ran')).toBe('ran');
    expect(taken).toEqual(['slot:a', 'slot:b']);
  });

  it('when two callers want the same key then the second runs after the first has finished', async () => {
    const lock = localLock();
    const order: string[] = [];
    let release!: () => void;
    const first = lock.withLock('k', async () => {
      order.push('first start');
      await new Promise<void>((r) => (release = r));
      order.push('first end');
    });
    const second = lock.withLock('k', async () => {
      order.push('second');
    });
    await new Promise((r) => setTimeout(r, 10));
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['first start', 'first end', 'second']);
  });
});
