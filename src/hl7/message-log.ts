/**
 * The inbound message log, as the integration console reads it: the `hl7-inbound` jobs themselves (kept as
 * long as the queue's retention keeps them: a week once written, a month once failed), searchable by MRN,
 * control id, type, sender and status, and one message with what it wrote and, for the raw scope, its text.
 *
 * The MRN is PHI: the log is searched through the keyed hashes of mrn-index.ts, never the MRN itself.
 */
import type { Job, JobType } from 'bullmq';
import type { PartitionedQueue } from '../queues/partitioned.js';
import { unseal } from '../shared/seal.js';
import { jobIdFor, type InboundJob } from './intake.js';
import { mrnHash, mrnIndexKey } from './mrn-index.js';

/** The most recent messages a filtered search looks through (per partition and state asked for). */
export const MESSAGE_SCAN = 2000;
export const MESSAGE_STATES = ['waiting', 'active', 'delayed', 'completed', 'failed'] as const;
export type MessageState = (typeof MESSAGE_STATES)[number];

export interface MessageFilter {
  readonly mrn?: string;
  readonly controlId?: string;
  readonly type?: string;
  readonly sender?: string;
  readonly status?: MessageState;
}

export interface MessageRow {
  readonly id: string;
  readonly type: string;
  readonly sender: string;
  readonly controlId: string;
  readonly receivedAt: string;
  readonly status: string;
  readonly error?: string;
}

export interface MessageDetail {
  readonly id: string;
  readonly controlId: string;
  readonly type: string;
  readonly sender: string;
  readonly status: string;
  readonly receivedAt: string;
  readonly ack: string;
  readonly resources: string[];
  readonly error?: string;
  readonly raw?: string;
}

/** What the inbound worker returns for a message; kept by BullMQ with the completed job. */
interface WrittenReturn {
  readonly resources?: readonly string[];
}

export class MessageLog {
  private readonly indexKey: Buffer;

  constructor(
    private readonly queue: PartitionedQueue<InboundJob>,
    private readonly sealingKey: Buffer,
  ) {
    this.indexKey = mrnIndexKey(sealingKey);
  }

  /**
   * Newest first, at most `limit`. Without a content filter only the newest `limit` jobs are read; with one,
   * the newest MESSAGE_SCAN of the states asked for are looked through.
   */
  async list(f: MessageFilter, limit: number): Promise<MessageRow[]> {
    let jobs: Job<InboundJob>[];
    const direct = !!(f.controlId && f.sender);
    if (f.controlId && f.sender) {
      // Sender + control id is the job id: one lookup, whatever the log's size.
      const job = await this.queue.getJob(jobIdFor(f.sender, f.controlId));
      jobs = job ? [job] : [];
    } else {
      const states: JobType[] = f.status ? [f.status] : [...MESSAGE_STATES];
      const filtered = !!(f.mrn || f.controlId || f.type || f.sender);
      jobs = await this.queue.getJobs(states, 0, (filtered ? MESSAGE_SCAN : limit) - 1, false);
    }
    const hash = f.mrn ? mrnHash(this.indexKey, f.mrn) : undefined;
    const matching = jobs
      .filter(
        (j) =>
          (!f.controlId || j.data.controlId === f.controlId) &&
          (!f.sender || j.data.sender === f.sender) &&
          (!f.type || j.data.type === f.type || j.data.type.startsWith(`${f.type}^`)) &&
          (!hash || (j.data.mrn ?? []).includes(hash)),
      )
      .sort((a, b) => b.data.receivedAt.localeCompare(a.data.receivedAt));
    // A job's state costs a Redis call: asked only for the rows answered (a status search already knows it).
    const rows: MessageRow[] = [];
    for (const j of matching) {
      if (rows.length >= limit) break;
      const state = f.status && !direct ? f.status : await j.getState();
      if (f.status && state !== f.status) continue;
      rows.push({
        id: j.id ?? '',
        type: j.data.type,
        sender: j.data.sender,
        controlId: j.data.controlId,
        receivedAt: j.data.receivedAt,
        status: state,
        ...(j.failedReason ? { error: j.failedReason.slice(0, 200) } : {}),
      });
    }
    return rows;
  }

  /** One message; `raw` (the unsealed ER7) only when asked. Undefined when no such message is kept. */
  async detail(id: string, withRaw: boolean): Promise<MessageDetail | undefined> {
    const job = await this.queue.getJob(id);
    if (!job) return undefined;
    const written = job.returnvalue as WrittenReturn | null | undefined;
    let raw: string | undefined;
    if (withRaw) {
      try {
        raw = unseal(job.data.raw, this.sealingKey).toString('utf8');
      } catch {
        // Sealed under another key (rotated): the log still answers, without the text.
        raw = undefined;
      }
    }
    return {
      id: job.id ?? id,
      controlId: job.data.controlId,
      type: job.data.type,
      sender: job.data.sender,
      status: await job.getState(),
      receivedAt: job.data.receivedAt,
      // Only accepted messages become jobs: AA, or CA in enhanced mode.
      ack: job.data.ack ?? 'AA',
      resources: [...(written?.resources ?? [])],
      ...(job.failedReason ? { error: job.failedReason.slice(0, 500) } : {}),
      ...(raw !== undefined ? { raw } : {}),
    };
  }
}
