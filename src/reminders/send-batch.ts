/**
 * The FHIR side of sending, coalesced across the reminders a worker sends at the same time (bench P4).
 *
 * Each send needs its Appointment and Patient re-read and a Communication written back (and its
 * CommunicationRequest completed). One request per reminder for each makes the FHIR server the bottleneck
 * long before Redis or the SMS provider: at 100,000 reminders in 10 minutes that is ~170 sends a second. So the
 * reads of concurrent sends become one batch of reads per type, and their write-backs one transaction, through
 * DataLoader. A batch leaves at once when the way is clear (a lone send waits for nothing); while earlier ones
 * of its kind are in flight it keeps gathering (`Lane`), so under load the batches grow instead of the number
 * of requests.
 *
 * Reads are never cached (a re-read must be fresh: the reminder may have been cancelled a moment ago). A batch
 * write-back that the server refuses is retried one reminder at a time, so one bad write-back cannot fail the
 * others; the one that fails again rejects, and its job retries.
 */
import DataLoader from 'dataloader';
import type { Bundle, BundleEntry, Communication, CommunicationRequest, Resource } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { FhirError } from '../fhir/errors.js';
import { canonical } from '../fhir/canonical.js';

/** One reminder's write-back: its Communication, and whether its CommunicationRequest is now completed. */
export interface WriteBack {
  readonly key: string;
  readonly communication: Communication;
}

/** Fewer ids than this keep the `identifier` search URL short and a transaction a sensible size. */
const MAX_BATCH = 50;

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

export class SendBatch {
  private readonly loaders = new Map<string, DataLoader<string, Resource | undefined>>();
  private readonly writes: DataLoader<WriteBack, void>;
  private readonly readLane = new Lane(4);
  private readonly writeLane = new Lane(2);

  constructor(private readonly fhir: FhirPort) {
    this.writes = new DataLoader((items) => this.writeLane.run(() => this.writeBatch(items)), {
      cache: false,
      maxBatchSize: MAX_BATCH,
      batchScheduleFn: this.writeLane.schedule,
    });
  }

  /** The current version of a resource, or undefined when it is gone. */
  read<T extends Resource>(type: T['resourceType'], id: string): Promise<T | undefined> {
    let loader = this.loaders.get(type);
    if (!loader) {
      loader = new DataLoader((ids) => this.readLane.run(() => this.readBatch(type, ids)), {
        cache: false,
        maxBatchSize: MAX_BATCH,
        batchScheduleFn: this.readLane.schedule,
      });
      this.loaders.set(type, loader);
    }
    return loader.load(id) as Promise<T | undefined>;
  }

  /** Writes the Communication and completes the reminder's active CommunicationRequest. */
  writeBack(item: WriteBack): Promise<void> {
    return this.writes.load(item);
  }

  /**
   * One batch Bundle of plain reads. Not an `_id` search: HAPI resolves a long `_id` list with a scan on H2,
   * which made the server, not the queue, the bottleneck; a read by id is an index lookup each. A read that
   * failed for any reason other than "gone" fails that one load (its job retries), not the others.
   */
  private async readBatch(type: string, ids: readonly string[]): Promise<(Resource | Error | undefined)[]> {
    if (ids.length === 1) {
      try {
        return [await this.fhir.read(type, ids[0]!, { noCache: true })];
      } catch (e) {
        return [e instanceof FhirError && e.isNotFound ? undefined : (e as Error)];
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

  private async writeBatch(items: readonly WriteBack[]): Promise<(void | Error)[]> {
    const completed = items.filter((i) => i.communication.status === 'completed').map((i) => i.key);
    const requests = completed.length
      ? await this.fhir.searchAll<CommunicationRequest>(
          'CommunicationRequest',
          {
            // Identifier only, the status checked here: on HAPI/H2 a `status` clause matching thousands of
            // planned requests turned this indexed lookup into a scan under load.
            identifier: completed.map((k) => `${canonical.reminderSystem}|${k}`).join(','),
            _count: 2 * completed.length,
          },
          { noCache: true, maxPages: 2 },
        )
      : [];
    const active = requests.filter((c) => c.status === 'active');
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
        await this.fhir.transaction(transaction(items.flatMap(entriesFor)));
        return items.map(() => undefined);
      } catch {
        // One refused entry (a CommunicationRequest changed meanwhile, say) fails the whole batch: go one by one.
      }
    }
    return Promise.all(
      items.map(async (item) => {
        try {
          await this.fhir.transaction(transaction(entriesFor(item)));
          return undefined;
        } catch (e) {
          return e instanceof Error ? e : new Error(String(e));
        }
      }),
    );
  }
}

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
