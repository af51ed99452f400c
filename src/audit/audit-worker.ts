/**
 * Queue `audit-events`: every AuditEvent Careway records, sealed (a search's query and the patient ids are PHI),
 * one job per event with the event's id as job id. The edge enqueues before it answers, so an access that was
 * answered has its event in Redis; this worker writes them to the audit server in batches.
 *
 * Many jobs are in flight per process (the registry's concurrency) and wait together for one Bundle of
 * `PUT AuditEvent/{id}` entries: up to `maxBatch` events, or what arrived within `lingerMs`. A PUT with the
 * event's own id makes a retried write store each event once. The Bundle goes as a **transaction**: HAPI
 * resolves and stores a transaction's client-assigned ids together, where a batch pays for each entry alone
 * (measured for bench P3: 25 ms of HAPI CPU per event in a batch, 9 ms in a transaction, whatever the size).
 * When the server refuses the transaction (4xx: one bad entry fails them all), the same entries go again as a
 * batch, so an entry the server refused fails that job alone (it retries, then goes to `audit-events-dead` with
 * ids only). One write is in flight per process at a time, so audit writes never crowd the reads out of the FHIR
 * connection pool; a backlog waits durably in the queue.
 */
import type { Queue, Worker } from 'bullmq';
import type { AuditEvent } from 'fhir/r4.js';
import { UnrecoverableError } from 'bullmq';
import type { FhirPort } from '../fhir/client.js';
import { FhirError } from '../fhir/errors.js';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import { seal, unseal, type Sealed } from '../shared/seal.js';
import { withTimeout } from '../shared/timeout.js';

export const AUDIT_QUEUE = QUEUES.auditEvents;

export interface AuditJob {
  readonly event: Sealed;
}

export interface AuditQueue {
  readonly queue: Queue<AuditJob>;
  readonly dead: Queue;
  readonly worker: Worker<AuditJob>;
  /** Enqueues the events (durably, before the caller answers). */
  add(events: readonly (AuditEvent & { id: string })[]): Promise<void>;
}

interface Pending {
  readonly event: AuditEvent & { id: string };
  resolve(): void;
  reject(e: Error): void;
}

/** Collects events from concurrent jobs into one Bundle (see the header). */
export class AuditBatch {
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** One batch in flight per process: audit writes take one FHIR connection, never the reads' pool. */
  private inFlight = false;

  constructor(
    private readonly fhir: FhirPort,
    private readonly maxBatch: number,
    private readonly lingerMs: number,
  ) {}

  write(event: AuditEvent & { id: string }): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ event, resolve, reject });
      if (this.pending.length >= this.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.lingerMs);
    });
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    // The next batch goes when this one is answered (below): what arrives meanwhile waits in the batch.
    if (this.inFlight) return;
    const batch = this.pending.splice(0, this.maxBatch);
    if (this.pending.length > 0) this.timer = setTimeout(() => this.flush(), this.lingerMs);
    if (batch.length === 0) return;
    const entry = batch.map((p) => ({
      resource: p.event,
      request: { method: 'PUT' as const, url: `AuditEvent/${p.event.id}` },
    }));
    // PUTs by id: either Bundle is safe to retry as a whole.
    this.inFlight = true;
    this.fhir
      .transaction({ resourceType: 'Bundle', type: 'transaction', entry }, { idempotent: true })
      .catch((e: unknown) => {
        // Refused as a whole (an entry the server will not take): each entry alone, so only that one fails.
        if (
          e instanceof FhirError &&
          e.kind === 'http' &&
          e.status >= 400 &&
          e.status < 500 &&
          e.status !== 429
        )
          return this.fhir.batch({ resourceType: 'Bundle', type: 'batch', entry }, { idempotent: true });
        throw e;
      })
      .finally(() => {
        this.inFlight = false;
        if (this.pending.length > 0) this.timer ??= setTimeout(() => this.flush(), 0);
      })
      .then(
        (res) =>
          batch.forEach((p, i) => {
            const status = res.entry?.[i]?.response?.status ?? '';
            if (/^2/.test(status)) p.resolve();
            else
              p.reject(
                new Error(
                  `the audit server refused AuditEvent ${p.event.id} (${status.slice(0, 40) || 'no status'})`,
                ),
              );
          }),
        (e: unknown) => batch.forEach((p) => p.reject(e instanceof Error ? e : new Error(String(e)))),
      );
  }
}

export function init(
  queues: QueueRegistry,
  fhir: FhirPort,
  key: Buffer,
  options: { maxBatch: number; lingerMs: number },
): AuditQueue {
  const batch = new AuditBatch(fhir, options.maxBatch, options.lingerMs);
  const { queue, dead, worker } = queues.openWithDeadLetters<AuditJob>(
    AUDIT_QUEUE,
    async (job) => {
      let event: AuditEvent & { id: string };
      try {
        event = JSON.parse(unseal(job.data.event, key).toString('utf8')) as AuditEvent & { id: string };
      } catch {
        throw new UnrecoverableError('the audit event could not be unsealed (HL7_ENCRYPTION_KEY changed?)');
      }
      await batch.write(event);
      return { written: event.id };
    },
    // Ids only: the sealed event stays with the failed job.
    (job, err) => ({ jobId: job.id ?? '', reason: err.message.slice(0, 500), attempts: job.attemptsMade }),
  );
  return {
    queue,
    dead,
    worker,
    async add(events): Promise<void> {
      if (events.length === 0) return;
      // Bounded: an access waits for its audit record, and must not wait on a Redis that is gone.
      await withTimeout(
        queue.addBulk(
          events.map((e) => ({
            name: 'audit',
            data: { event: seal(Buffer.from(JSON.stringify(e), 'utf8'), key) },
            opts: { jobId: e.id },
          })),
        ),
        2000,
      );
    },
  };
}
