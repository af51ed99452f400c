/**
 * The FHIR side of sending, coalesced across the reminders a worker sends at the same time (bench P4).
 *
 * Each send needs its Appointment and Patient re-read and a Communication written back (and its
 * CommunicationRequest completed). One request per reminder for each makes the FHIR server the bottleneck
 * long before Redis or the SMS provider: at 100,000 reminders in 10 minutes that is ~170 sends a second. So the
 * re-reads of concurrent sends become one search for the Appointments with their Patients (ReadBatch, on the
 * send path; other reads, rarer, one batch of reads per type), and write-backs
 * one transaction (WriteBackBatch, off the send path: writeback-worker.ts), through DataLoader. A batch leaves at
 * once when the way is clear (a lone send waits for nothing); while earlier ones of its kind are in flight it
 * keeps gathering (`Lane`), so under load the batches grow instead of the number of requests.
 *
 * Reads are never cached (a re-read must be fresh: the reminder may have been cancelled a moment ago). A batch
 * write-back that the server refuses is retried one reminder at a time, so one bad write-back cannot fail the
 * others; the one that fails again rejects, and its job retries.
 */
import DataLoader from 'dataloader';
import type {
  Appointment,
  Bundle,
  BundleEntry,
  Communication,
  CommunicationRequest,
  Patient,
  Resource,
} from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { readIfExists } from '../fhir/reads.js';
import { canonical } from '../fhir/canonical.js';

/** One reminder's write-back: its Communication (a completed one also completes the reminder's request). */
export interface WriteBack {
  readonly key: string;
  readonly communication: Communication;
}

/** Reads per batch Bundle. */
const MAX_READ_BATCH = 50;
/** Identifiers per search: keeps the URL well under the server's header limit (8 KiB on Jetty). */
const MAX_IDS_PER_SEARCH = 50;

/**
 * DataLoader's scheduler for one kind of request: at most `width` batches in flight; a batch scheduled while
 * they are busy is dispatched when one of them ends, having gathered every load that came meanwhile.
 */
class Lane {
  private inFlight = 0;
  private readonly queued: (() => void)[] = [];

  constructor(private readonly width: number) {}

  readonly schedule = (dispatch: () => void): void => {
    if (this.inFlight < this.width) {
      // Still let the loads of this tick join before leaving.
      setImmediate(dispatch);
      this.inFlight++;
    } else this.queued.push(dispatch);
  };

  /** Runs a dispatched batch, then lets the next waiting one go. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } finally {
      const next = this.queued.shift();
      if (next) setImmediate(next);
      else this.inFlight--;
    }
  }
}

/** An Appointment as it is now, with its patient (either undefined when gone). */
export interface AppointmentNow {
  readonly appointment: Appointment | undefined;
  readonly patient: Patient | undefined;
}

/**
 * Re-reads for concurrent sends: one search per batch of Appointments (with their Patients), one batch of plain
 * reads per type for the rest (a Location); a few batches in flight.
 */
export class ReadBatch {
  private readonly loaders = new Map<string, DataLoader<string, Resource | undefined>>();
  private readonly appointments: DataLoader<string, AppointmentNow>;
  private readonly lane = new Lane(4);
  private pending = 0;

  constructor(private readonly fhir: FhirPort) {
    this.appointments = new DataLoader((ids) => this.lane.run(() => this.appointmentBatch(ids)), {
      cache: false,
      maxBatchSize: MAX_IDS_PER_SEARCH,
      batchScheduleFn: this.lane.schedule,
    });
  }

  /**
   * An Appointment and its patient, re-read together: one `_id` search with `_include` per batch, answered
   * without a search record (`storeless`). Half the requests of reading each, and a handful of queries for the
   * whole batch where a batch of reads costs several per resource (bench P4 on HAPI/PostgreSQL: p99 318 → 189 ms
   * at 167 sends a second). The trade-off: HAPI resolves the `_id` list with one OR query, an index lookup on
   * PostgreSQL but a table scan on H2, so on an H2-backed server a batch of reads would be cheaper.
   */
  appointment(id: string): Promise<AppointmentNow> {
    this.pending++;
    return this.appointments.load(id).finally(() => this.pending--);
  }

  /** Whether reads for sends are waiting or in flight (write-backs give way: WriteBackBatch's `yieldTo`). */
  busy(): boolean {
    return this.pending > 0;
  }

  /** The current version of a resource, or undefined when it is gone. */
  read<T extends Resource>(type: T['resourceType'], id: string): Promise<T | undefined> {
    this.pending++;
    return this.load<T>(type, id).finally(() => this.pending--);
  }

  private async appointmentBatch(ids: readonly string[]): Promise<AppointmentNow[]> {
    const res = await this.fhir.search(
      'Appointment',
      { _id: ids.join(','), _include: 'Appointment:patient', _count: 2 * ids.length },
      { storeless: 2 * ids.length },
    );
    const found = new Map<string, Resource>();
    for (const e of res.entry ?? [])
      if (e.resource?.id) found.set(`${e.resource.resourceType}/${e.resource.id}`, e.resource);
    return ids.map((id) => {
      const appointment = found.get(`Appointment/${id}`) as Appointment | undefined;
      const ref = appointment?.participant.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor
        ?.reference;
      return { appointment, patient: ref ? (found.get(ref) as Patient | undefined) : undefined };
    });
  }

  private load<T extends Resource>(type: T['resourceType'], id: string): Promise<T | undefined> {
    let loader = this.loaders.get(type);
    if (!loader) {
      loader = new DataLoader((ids) => this.lane.run(() => this.readBatch(type, ids)), {
        cache: false,
        maxBatchSize: MAX_READ_BATCH,
        batchScheduleFn: this.lane.schedule,
      });
      this.loaders.set(type, loader);
    }
    return loader.load(id) as Promise<T | undefined>;
  }

  /**
   * One batch Bundle of plain reads (a read by id is an index lookup on any database). A read that failed for
   * any reason other than "gone" fails that one load (its job retries), not the others.
   */
  private async readBatch(type: string, ids: readonly string[]): Promise<(Resource | Error | undefined)[]> {
    if (ids.length === 1) {
      try {
        return [await readIfExists(this.fhir, type, ids[0]!)];
      } catch (e) {
        return [e as Error];
      }
    }
    const res = await this.fhir.batch({
      resourceType: 'Bundle',
      type: 'batch',
      entry: ids.map((id) => ({ request: { method: 'GET', url: `${type}/${encodeURIComponent(id)}` } })),
    });
    return ids.map((id, i) => {
      const e = res.entry?.[i];
      const status = Number.parseInt(e?.response?.status ?? '', 10);
      if (e?.resource?.resourceType === type && e.resource.id === id) return e.resource;
      if (status === 404 || status === 410) return undefined;
      return new Error(
        `reading ${type} in a batch failed (${Number.isFinite(status) ? status : 'no answer'})`,
      );
    });
  }
}

/**
 * Write-backs: many reminders' Communications (and their completed CommunicationRequests) in one transaction.
 * Used by the write-back queue's worker (writeback-worker.ts), which runs them off the send path.
 */
export class WriteBackBatch {
  private readonly writes: DataLoader<WriteBack, void>;

  constructor(
    private readonly fhir: FhirPort,
    private readonly options: {
      readonly maxBatch?: number;
      readonly lanes?: number;
      /**
       * While this says so (sends are reading), a batch waits, up to `maxYieldMs`, gathering meanwhile. A send is
       * due at its minute; its write-back can follow a few seconds later. On a FHIR server without headroom,
       * write-backs competing with the sends' re-reads made the sends late (bench P4 on HAPI/PostgreSQL).
       */
      readonly yieldTo?: () => boolean;
      readonly maxYieldMs?: number;
    } = {},
  ) {
    const lane = new Lane(options.lanes ?? 1);
    this.writes = new DataLoader(
      (items) => lane.run(() => this.giveWay().then(() => this.writeBatch(items))),
      {
        cache: false,
        maxBatchSize: options.maxBatch ?? 200,
        batchScheduleFn: lane.schedule,
      },
    );
  }

  /** Writes the Communication and completes the reminder's active CommunicationRequest. */
  writeBack(item: WriteBack): Promise<void> {
    return this.writes.load(item);
  }

  private async giveWay(): Promise<void> {
    const until = Date.now() + (this.options.maxYieldMs ?? 3000);
    while (this.options.yieldTo?.() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  }

  /** The active CommunicationRequests of these reminders, by identifier, a URL-sized chunk per search. */
  private async activeRequests(keys: readonly string[]): Promise<CommunicationRequest[]> {
    const chunks: string[][] = [];
    for (let i = 0; i < keys.length; i += MAX_IDS_PER_SEARCH)
      chunks.push(keys.slice(i, i + MAX_IDS_PER_SEARCH));
    const found = await Promise.all(
      chunks.map((chunk) =>
        this.fhir.searchAll<CommunicationRequest>(
          'CommunicationRequest',
          {
            // Identifier only, the status checked here: on HAPI/H2 a `status` clause matching thousands of
            // planned requests turned this indexed lookup into a scan under load.
            identifier: chunk.map((k) => `${canonical.reminderSystem}|${k}`).join(','),
            _count: 2 * chunk.length,
          },
          // Storeless: a lookup per batch on a busy server should not also write a search record.
          { storeless: 2 * chunk.length, maxPages: 1 },
        ),
      ),
    );
    return found.flat().filter((c) => c.status === 'active');
  }

  private async writeBatch(items: readonly WriteBack[]): Promise<(void | Error)[]> {
    const completed = items.filter((i) => i.communication.status === 'completed').map((i) => i.key);
    const active = completed.length ? await this.activeRequests(completed) : [];
    const entriesFor = (item: WriteBack): BundleEntry[] => [
      communicationEntry(item),
      ...(item.communication.status === 'completed'
        ? active
            .filter((c) =>
              c.identifier?.some((i) => i.system === canonical.reminderSystem && i.value === item.key),
            )
            .map((c) => withStatus(c, 'completed'))
        : []),
    ];
    // Two completed write-backs for one key (a duplicate job) cannot share a transaction: same condition twice.
    const keys = completed.filter((k, i) => completed.indexOf(k) !== i);
    if (items.length > 1 && keys.length === 0) {
      try {
        await this.fhir.transaction(transaction(items.flatMap(entriesFor)), MINIMAL);
        return items.map(() => undefined);
      } catch {
        // One refused entry (a CommunicationRequest changed meanwhile, say) fails the whole batch: go one by one.
      }
    }
    // A few at a time: a refused batch of hundreds must not turn into hundreds of concurrent requests.
    const results: (void | Error)[] = [];
    let next = 0;
    const one = async (): Promise<void> => {
      for (let i = next++; i < items.length; i = next++) {
        try {
          await this.fhir.transaction(transaction(entriesFor(items[i]!)), MINIMAL);
          results[i] = undefined;
        } catch (e) {
          results[i] = e instanceof Error ? e : new Error(String(e));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, items.length) }, one));
    return results;
  }
}

/**
 * Nothing in a write-back's answer is read, so the server need not encode hundreds of resources back
 * (seen in HAPI's stacks under load). A big transaction on a busy server gets longer than the default timeout.
 */
const MINIMAL = { headers: { Prefer: 'return=minimal' }, timeoutMs: 60_000 } as const;

function transaction(entry: BundleEntry[]): Bundle {
  return { resourceType: 'Bundle', type: 'transaction', entry };
}

function communicationEntry(item: WriteBack): BundleEntry {
  return {
    resource: item.communication,
    // Only the delivered message carries the reminder's own identifier (a failed attempt's is `<key>|not-done`,
    // and there may be several), so one identifier, an indexed lookup, makes its create conditional.
    request:
      item.communication.status === 'completed'
        ? {
            method: 'POST',
            url: 'Communication',
            ifNoneExist: new URLSearchParams({
              identifier: `${canonical.reminderSystem}|${item.key}`,
            }).toString(),
          }
        : { method: 'POST', url: 'Communication' },
  };
}

/** A versioned update of a CommunicationRequest's status. */
export function withStatus(c: CommunicationRequest, status: CommunicationRequest['status']): BundleEntry {
  const resource: CommunicationRequest = { ...c, status };
  return {
    resource,
    request: {
      method: 'PUT',
      url: `CommunicationRequest/${c.id}`,
      ifMatch: `W/"${c.meta?.versionId ?? ''}"`,
    },
  };
}
