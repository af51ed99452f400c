import { describe, expect, it } from 'vitest';
import type { AuditEvent, Bundle } from 'fhir/r4.js';
import type { FhirPort } from '../../src/fhir/client.js';
import { FhirError } from '../../src/fhir/errors.js';
import { AuditBatch } from '../../src/audit/audit-worker.js';

const event = (id: string): AuditEvent & { id: string } => ({
  resourceType: 'AuditEvent',
  id,
  type: { code: 'rest' },
  recorded: '2026-12-01T00:00:00Z',
  agent: [{ requestor: true }],
  source: { observer: { display: 'Careway' } },
});

/** A scripted server: refuses any Bundle that holds the event `bad` (as a transaction: all of it). */
function server() {
  const calls: { op: 'transaction' | 'batch'; ids: string[] }[] = [];
  const ids = (b: Bundle): string[] => (b.entry ?? []).map((e) => e.resource?.id ?? '');
  const fhir = {
    transaction: (b: Bundle) => {
      calls.push({ op: 'transaction', ids: ids(b) });
      if (ids(b).includes('bad'))
        return Promise.reject(new FhirError({ kind: 'http', status: 400, method: 'POST', path: '' }));
      return Promise.resolve({
        resourceType: 'Bundle',
        type: 'transaction-response',
        entry: ids(b).map(() => ({ response: { status: '201 Created' } })),
      } as Bundle);
    },
    batch: (b: Bundle) => {
      calls.push({ op: 'batch', ids: ids(b) });
      return Promise.resolve({
        resourceType: 'Bundle',
        type: 'batch-response',
        entry: ids(b).map((id) => ({
          response: { status: id === 'bad' ? '400 Bad Request' : '201 Created' },
        })),
      } as Bundle);
    },
  } as unknown as FhirPort;
  return { fhir, calls };
}

describe('audit batch', () => {
  it('when events arrive together then they are written in one transaction', async () => {
    const { fhir, calls } = server();
    const batch = new AuditBatch(fhir, 10, 5);
    await Promise.all([batch.write(event('a')), batch.write(event('b')), batch.write(event('c'))]);
    expect(calls).toEqual([{ op: 'transaction', ids: ['a', 'b', 'c'] }]);
  });

  it('when the server refuses one event then the others are written by a batch and only that one fails', async () => {
    const { fhir, calls } = server();
    const batch = new AuditBatch(fhir, 10, 5);
    const results = await Promise.allSettled([
      batch.write(event('a')),
      batch.write(event('bad')),
      batch.write(event('c')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(calls.map((c) => c.op)).toEqual(['transaction', 'batch']);
  });

  it('when the server cannot be reached then every event of the write fails (to be retried)', async () => {
    const calls: string[] = [];
    const down = new FhirError({ kind: 'network', status: 0, method: 'POST', path: '' });
    const fhir = {
      transaction: () => (calls.push('transaction'), Promise.reject(down)),
      batch: () => (calls.push('batch'), Promise.reject(down)),
    } as unknown as FhirPort;
    const batch = new AuditBatch(fhir, 10, 5);
    const results = await Promise.allSettled([batch.write(event('a')), batch.write(event('b'))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(calls).toEqual(['transaction']);
  });
});
