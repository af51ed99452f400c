import { describe, expect, it } from 'vitest';
import type { Appointment, Bundle, Communication, Resource } from 'fhir/r4.js';
import type { FhirPort } from '../../src/fhir/client.js';
import { FhirError } from '../../src/fhir/errors.js';
import { ReadBatch, WriteBackBatch } from '../../src/reminders/send-batch.js';
import { canonical } from '../../src/fhir/canonical.js';

/** A scripted FHIR port: records calls; the transaction handler decides what the "server" answers. */
function port(onTransaction: (b: Bundle) => void) {
  const calls: { op: string; type?: string; params?: unknown; bundle?: Bundle }[] = [];
  const store: Resource[] = [
    { resourceType: 'Appointment', id: 'a1' },
    { resourceType: 'Appointment', id: 'a2' },
    {
      resourceType: 'Appointment',
      id: 'a3',
      status: 'booked',
      participant: [{ actor: { reference: 'Location/l1' } }, { actor: { reference: 'Patient/p3' } }],
    } as Appointment,
    {
      resourceType: 'Appointment',
      id: 'a4',
      status: 'booked',
      participant: [{ actor: { reference: 'Patient/p4' } }],
    } as Appointment,
    { resourceType: 'Patient', id: 'p3' },
  ];
  const fhir = {
    batch: (bundle: Bundle) => {
      calls.push({ op: 'batch', bundle });
      return Promise.resolve({
        resourceType: 'Bundle',
        type: 'batch-response',
        entry: (bundle.entry ?? []).map((e) => {
          const resource = store.find((r) => `${r.resourceType}/${r.id}` === e.request?.url);
          return resource
            ? { resource, response: { status: '200 OK' } }
            : { response: { status: '404 Not Found' } };
        }),
      });
    },
    search: (type: string, params: Record<string, string>, options: unknown) => {
      calls.push({ op: 'search', type, params: { ...params, options } });
      // As a server answers `Appointment?_id=…&_include=Appointment:patient`: matches, then the includes.
      const ids = params._id!.split(',');
      const matches = store.filter((r) => r.resourceType === type && ids.includes(r.id!)) as Appointment[];
      const refs = matches.flatMap((a) => a.participant?.map((p) => p.actor?.reference) ?? []);
      const included = store.filter((r) => refs.includes(`${r.resourceType}/${r.id}`));
      return Promise.resolve({
        resourceType: 'Bundle',
        type: 'searchset',
        entry: [
          ...matches.map((resource) => ({ resource, search: { mode: 'match' } })),
          ...included.map((resource) => ({ resource, search: { mode: 'include' } })),
        ],
      });
    },
    searchAll: (type: string, params: unknown) => {
      calls.push({ op: 'searchAll', type, params });
      return Promise.resolve([]);
    },
    transaction: (bundle: Bundle) => {
      calls.push({ op: 'transaction', bundle });
      onTransaction(bundle);
      return Promise.resolve({ resourceType: 'Bundle', type: 'transaction-response' });
    },
  } as unknown as FhirPort;
  return { fhir, calls };
}

const comm = (key: string): Communication => ({
  resourceType: 'Communication',
  status: 'completed',
  identifier: [{ system: canonical.reminderSystem, value: key }],
});

describe('reminder send batching', () => {
  it('when sends read at the same time then one batch of reads answers them all, and a missing one is undefined', async () => {
    const { fhir, calls } = port(() => undefined);
    const batch = new ReadBatch(fhir);
    const [a, b, gone] = await Promise.all([
      batch.read('Appointment', 'a1'),
      batch.read('Appointment', 'a2'),
      batch.read('Appointment', 'nope'),
    ]);
    expect([a?.id, b?.id, gone]).toEqual(['a1', 'a2', undefined]);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.bundle?.entry?.map((e) => e.request?.url)).toEqual([
      'Appointment/a1',
      'Appointment/a2',
      'Appointment/nope',
    ]);
  });

  it('when write-backs come together then they are one transaction with one conditional create each', async () => {
    const { fhir, calls } = port(() => undefined);
    const batch = new WriteBackBatch(fhir);
    await Promise.all(['k1', 'k2', 'k3'].map((key) => batch.writeBack({ key, communication: comm(key) })));
    const tx = calls.filter((c) => c.op === 'transaction');
    expect(tx).toHaveLength(1);
    expect(tx[0]?.bundle?.entry?.map((e) => e.request?.ifNoneExist)).toEqual(
      ['k1', 'k2', 'k3'].map((k) =>
        new URLSearchParams({
          identifier: `${canonical.reminderSystem}|${k}`,
        }).toString(),
      ),
    );
  });

  it('when write-backs come while a batch is in flight then they gather into the next batch', async () => {
    const { fhir, calls } = port(() => undefined);
    const slow = fhir.transaction.bind(fhir);
    fhir.transaction = async (b) => {
      await new Promise((r) => setTimeout(r, 30));
      return slow(b);
    };
    const batch = new WriteBackBatch(fhir, { lanes: 2 });
    const wave = (keys: string[]) => keys.map((key) => batch.writeBack({ key, communication: comm(key) }));
    // Two lanes: the first two waves leave at once, the next three gather while those are in flight.
    const first = [...wave(['a'])];
    await new Promise((r) => setImmediate(r));
    first.push(...wave(['b']));
    await new Promise((r) => setTimeout(r, 5));
    // Each in a tick of its own: plain DataLoader would send three more transactions.
    const later: Promise<void>[] = [];
    for (const k of ['c', 'd', 'e']) {
      later.push(...wave([k]));
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all([...first, ...later]);
    expect(calls.filter((c) => c.op === 'transaction').map((c) => c.bundle?.entry?.length)).toEqual([
      1, 1, 3,
    ]);
  });

  it('when the server refuses a batch then each write-back is tried alone and only the bad one fails', async () => {
    const { fhir, calls } = port((b) => {
      const keys = (b.entry ?? []).map((e) => (e.resource as Communication).identifier?.[0]?.value);
      if (keys.includes('bad')) throw new FhirError({ kind: 'http', status: 412, method: 'POST', path: '' });
    });
    const batch = new WriteBackBatch(fhir);
    const results = await Promise.allSettled(
      ['k1', 'bad', 'k3'].map((key) => batch.writeBack({ key, communication: comm(key) })),
    );
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // One refused batch, then three single ones.
    expect(calls.filter((c) => c.op === 'transaction').map((c) => c.bundle?.entry?.length)).toEqual([
      3, 1, 1, 1,
    ]);
  });

  it('when a batch completes many reminders then their requests are looked up in URL-sized searches', async () => {
    const { fhir, calls } = port(() => undefined);
    const batch = new WriteBackBatch(fhir, { maxBatch: 200 });
    const keys = Array.from({ length: 120 }, (_, i) => `k${i}`);
    await Promise.all(keys.map((key) => batch.writeBack({ key, communication: comm(key) })));
    const searches = calls.filter((c) => c.op === 'searchAll');
    const asked = searches.map((c) => String((c.params as { identifier: string }).identifier).split(','));
    expect(asked.map((a) => a.length)).toEqual([50, 50, 20]);
    expect(asked.flat()).toEqual(keys.map((k) => `${canonical.reminderSystem}|${k}`));
    expect(calls.filter((c) => c.op === 'transaction').map((c) => c.bundle?.entry?.length)).toEqual([120]);
  });

  it('when sends are reading then write-backs wait for them, but no longer than maxYieldMs', async () => {
    const { fhir, calls } = port(() => undefined);
    let reading = true;
    const batch = new WriteBackBatch(fhir, { yieldTo: () => reading, maxYieldMs: 10_000 });
    const done = batch.writeBack({ key: 'k1', communication: comm('k1') });
    await new Promise((r) => setTimeout(r, 100));
    expect(calls.filter((c) => c.op === 'transaction')).toHaveLength(0);
    reading = false;
    await done;
    expect(calls.filter((c) => c.op === 'transaction')).toHaveLength(1);

    // Sends that never stop reading hold a write-back back for maxYieldMs at most.
    let asked = 0;
    const bounded = new WriteBackBatch(fhir, {
      yieldTo: () => {
        asked++;
        return true;
      },
      maxYieldMs: 60,
    });
    await bounded.writeBack({ key: 'k2', communication: comm('k2') });
    expect(asked).toBeGreaterThan(1);
    expect(calls.filter((c) => c.op === 'transaction')).toHaveLength(2);
  });

  it('when sends re-read appointments at the same time then one storeless search with their patients answers them all', async () => {
    const { fhir, calls } = port(() => undefined);
    const batch = new ReadBatch(fhir);
    const pending = Promise.all(['a3', 'a4', 'gone'].map((id) => batch.appointment(id)));
    expect(batch.busy()).toBe(true);
    const [a3, a4, gone] = await pending;
    expect([a3?.appointment?.id, a3?.patient?.id]).toEqual(['a3', 'p3']);
    // The patient reference the appointment names, not merely the first resource included.
    expect([a4?.appointment?.id, a4?.patient]).toEqual(['a4', undefined]);
    expect(gone).toEqual({ appointment: undefined, patient: undefined });
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      op: 'search',
      type: 'Appointment',
      params: { _id: 'a3,a4,gone', _include: 'Appointment:patient', options: { storeless: 6 } },
    });
    expect(batch.busy()).toBe(false);
  });

  it('when a read is in flight then the read batch says it is busy, and not once it settled', async () => {
    const { fhir } = port(() => undefined);
    const batch = new ReadBatch(fhir);
    expect(batch.busy()).toBe(false);
    const reads = Promise.all([batch.read('Appointment', 'a1'), batch.read('Appointment', 'a2')]);
    expect(batch.busy()).toBe(true);
    await reads;
    expect(batch.busy()).toBe(false);
  });
});
