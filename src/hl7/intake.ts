/**
 * HL7 intake, shared by MLLP and `POST /hl7`: bytes in, one ACK per message out.
 *
 * The ACK is positive only **after** the message is durably in Redis (a BullMQ job). Order per message:
 * charset (MSH-18) → parse → MSH-9/MSH-10 present → a message map takes the type → the message maps (a dry
 * run of the maps) → deduplicate on sender (MSH-3^MSH-4) + MSH-10 → enqueue → AA.
 * - What cannot be read or is not taken (no MSH-10, an unknown type) gets AR with an ERR segment.
 * - What can be read but not mapped (no PID, an impossible date, a code outside its table, no identifier)
 *   gets AE with an ERR segment naming the segment and field, before any AA: the sender's interface engine
 *   shows the error at once, instead of an AA for a message that a dead-letter queue finds later. Only FHIR
 *   server failures stay asynchronous (retries, then the dead letters). `HL7_INTAKE_CHECK=none` restores the
 *   commit-only ACK for sites that want it.
 * - A Redis failure gets AE (never AA), so the sender resends.
 *
 * The job carries the sender, type and control id (not PHI) and the raw message sealed with AES-GCM.
 * The job id is a hash of sender + MSH-10: a resend after a lost ACK finds the job and is answered AA without
 * a second enqueue.
 *
 * Acknowledgment modes: with MSH-15 empty, original mode (AA/AE/AR). With MSH-15 set, enhanced mode (CA/CE/CR),
 * honouring AL (always), NE (never), ER (only on error) and SU (only on success).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { buildAck, type AckCode, type AckError } from './ack.js';
import { splitBatch } from './batch.js';
import { decodeMessage, UnsupportedCharsetError, type Charset } from './charset.js';
import { Hl7Message, Hl7ParseError } from './message.js';
import type { ErrorLocation } from './mapping/engine.js';
import { seal, type Sealed } from '../shared/seal.js';
import { mrnHashes, mrnIndexKey } from './mrn-index.js';
import { withTimeout } from '../shared/timeout.js';
import { PartitionedQueue } from '../queues/partitioned.js';
import { QUEUES } from '../queues/specs.js';

export const HL7_INBOUND_QUEUE = QUEUES.hl7Inbound;

export interface InboundJob {
  readonly sender: string;
  readonly controlId: string;
  readonly type: string;
  readonly receivedAt: string;
  readonly charset: Charset;
  readonly raw: Sealed;
  /** Keyed hashes of the PID-3 identifiers (message-log.ts): the log is searchable by MRN, never holding it. */
  readonly mrn?: readonly string[];
  /** The ACK code the sender got (AA, or CA in enhanced mode). */
  readonly ack?: AckCode;
}

export interface IntakeOptions {
  /** One queue, or the partitioned inbound queue (messages are partitioned by patient, see partitionKey). */
  readonly queue: Queue<InboundJob> | PartitionedQueue<InboundJob>;
  /** 32-byte AES key for sealing raw messages. */
  readonly key: Buffer;
  readonly defaultCharset?: Charset;
  /**
   * Whether a message type is taken: the message maps' `triggers` (Mapper.supports), so a site's own map is
   * accepted with no list to keep in step.
   */
  readonly supports: (code: string, trigger: string, structure: string) => boolean;
  /**
   * The dry run: why a readable message cannot be written, or the patient's resolved business key (the same
   * key the worker locks on), which the message is then partitioned by.
   */
  readonly check?: (msg: Hl7Message) => CheckResult;
  readonly clock?: () => Date;
  /** Longest wait for Redis before answering AE (a resend later is deduplicated, so this is safe). */
  readonly storeTimeoutMs?: number;
}

export interface IntakeResult {
  /** The ACK text to send, or undefined when MSH-15 says not to answer. */
  readonly ack: string | undefined;
  readonly code: AckCode;
  readonly duplicate: boolean;
  readonly jobId?: string;
  /** AE/CE for content that cannot be mapped (resending it will not help), as opposed to "not stored". */
  readonly invalid?: boolean;
}

export type CheckResult = { readonly problem: MessageProblem } | { readonly patientKey: string | undefined };

/** A message that can be read but not written: HL7 table 0357 code, text, and where. */
export interface MessageProblem {
  readonly code: string;
  readonly text: string;
  readonly location?: ErrorLocation;
}

type Mode = { enhanced: false } | { enhanced: true; when: 'AL' | 'NE' | 'ER' | 'SU' };

function modeOf(msg: Hl7Message | undefined): Mode {
  const v = msg?.msh.get(15).toUpperCase() ?? '';
  if (v === 'AL' || v === 'NE' || v === 'ER' || v === 'SU') return { enhanced: true, when: v };
  return { enhanced: false };
}

/**
 * The key a message is partitioned on when the intake does not map it (HL7_INTAKE_CHECK=none): the patient's
 * PID-3 medical record number (the MR repetition, else the first) with its authority as written, so one
 * patient's messages keep their arrival order; messages without a PID go by sender. With the dry run on,
 * the partition is the patient's resolved business key, the one the worker locks on.
 */
export function partitionKey(msg: Hl7Message, sender: string): string {
  const reps = (msg.segment('PID')?.raw(3) ?? '').split(msg.delimiters.repetition);
  const c = msg.delimiters.component;
  const pid3 = reps.find((r) => r.split(c)[4] === 'MR') ?? reps[0] ?? '';
  const [id = '', , , authority = ''] = pid3.split(c);
  return id ? `${id}|${authority}` : sender;
}

export function jobIdFor(sender: string, controlId: string): string {
  return createHash('sha256').update(`${sender}\u0000${controlId}`).digest('hex').slice(0, 40);
}

/** A message read, checked and sealed, waiting to be stored. */
class Prepared {
  constructor(
    readonly msg: Hl7Message,
    readonly queue: Queue<InboundJob>,
    readonly jobId: string,
    readonly type: string,
    readonly data: InboundJob,
  ) {}
}

export class Hl7Intake {
  private readonly o: IntakeOptions;
  private readonly supports: (code: string, trigger: string, structure: string) => boolean;
  private readonly clock: () => Date;

  private readonly indexKey: Buffer;

  constructor(options: IntakeOptions) {
    if (options.key.length !== 32) throw new Error('the HL7 sealing key must be 32 bytes');
    this.o = options;
    this.indexKey = mrnIndexKey(options.key);
    this.supports = options.supports;
    this.clock = options.clock ?? (() => new Date());
  }

  /** A frame or an HTTP body: one message or a batch. One result per message. */
  async receive(bytes: Buffer): Promise<IntakeResult[]> {
    return (await this.receiveMany([bytes]))[0]!;
  }

  /**
   * Several frames of one connection, in the order they came: one result list per frame. The messages are
   * read, checked and sealed first; then each partition's messages are stored together, in their order: one
   * lookup (resends) and one pipelined add per partition, instead of two round trips per message. The
   * MLLP listener hands over whatever a connection sent while its previous frames were being stored, so
   * a sender that pipelines is not held to one Redis round trip per message, and its order is kept (the next
   * frames are stored only after these are).
   */
  async receiveMany(frames: readonly Buffer[]): Promise<IntakeResult[][]> {
    const slots: (IntakeResult | Prepared)[][] = frames.map((bytes) => this.prepareFrame(bytes));
    const groups = new Map<Queue<InboundJob>, Prepared[]>();
    for (const p of slots.flat())
      if (p instanceof Prepared) groups.set(p.queue, [...(groups.get(p.queue) ?? []), p]);
    const stored = new Map<Prepared, IntakeResult>();
    await Promise.all(
      [...groups].map(async ([queue, group]) => {
        const results = await this.store(queue, group);
        group.forEach((p, i) => stored.set(p, results[i]!));
      }),
    );
    return slots.map((list) => list.map((x) => (x instanceof Prepared ? stored.get(x)! : x)));
  }

  private prepareFrame(bytes: Buffer): (IntakeResult | Prepared)[] {
    let text: string;
    let charset: Charset;
    try {
      ({ text, charset } = decodeMessage(bytes, this.o.defaultCharset ?? 'utf-8'));
    } catch (e) {
      const msg = e instanceof UnsupportedCharsetError ? e.message : 'the message could not be decoded';
      return [this.answer(undefined, 'reject', { code: '102', text: msg })];
    }
    const messages = splitBatch(text);
    if (messages.length === 0)
      return [this.answer(undefined, 'reject', { code: '100', text: 'empty message' })];
    // Messages in a batch keep their order: they are stored in it, within their partition.
    return messages.map((m) => this.prepare(m, charset));
  }

  /** Everything up to the store, without waiting on anything: an answer already, or the job to store. */
  private prepare(text: string, charset: Charset): IntakeResult | Prepared {
    let msg: Hl7Message;
    try {
      msg = Hl7Message.parse(text);
    } catch (e) {
      const err = e instanceof Hl7ParseError ? e : new Hl7ParseError('unparseable message');
      return this.answer(undefined, 'reject', { code: err.hl7Code, text: err.message });
    }
    const { code, trigger } = msg.type;
    if (!code || !trigger)
      return this.answer(msg, 'reject', {
        code: '101',
        text: 'MSH-9 (message type and trigger event) is required',
      });
    if (!msg.controlId)
      return this.answer(msg, 'reject', { code: '101', text: 'MSH-10 (message control id) is required' });
    const type = `${code}^${trigger}`;
    if (!this.supports(code, trigger, msg.type.structure))
      return this.answer(msg, 'reject', { code: '200', text: `message type ${type} is not supported` });
    const checked = this.o.check?.(msg);
    if (checked && 'problem' in checked)
      return { ...this.answer(msg, 'error', checked.problem), invalid: true };
    const patientKey = checked && 'patientKey' in checked ? checked.patientKey : undefined;

    const sender = `${msg.sender.application}^${msg.sender.facility}`;
    const jobId = jobIdFor(sender, msg.controlId);
    const queue =
      this.o.queue instanceof PartitionedQueue
        ? this.o.queue.for(patientKey ?? partitionKey(msg, sender))
        : this.o.queue;
    return new Prepared(msg, queue, jobId, type, {
      sender,
      controlId: msg.controlId,
      type,
      receivedAt: this.clock().toISOString(),
      charset,
      raw: seal(Buffer.from(text, 'utf8'), this.o.key),
      mrn: mrnHashes(this.indexKey, msg),
      ack: modeOf(msg).enhanced ? 'CA' : 'AA',
    });
  }

  /**
   * Stores one partition's messages, in order. A message whose job id is already there (a resend after a lost
   * ACK) is answered AA without a second job; BullMQ's add of an existing job id changes nothing, so the one
   * pipelined add can carry it along. The lookup is answered before the add is sent, so it sees only earlier
   * messages. Any Redis failure answers the whole group AE: nothing of it was acknowledged.
   */
  private async store(queue: Queue<InboundJob>, group: readonly Prepared[]): Promise<IntakeResult[]> {
    let existing: number[];
    try {
      existing = await withTimeout(
        (async () => {
          const client = await queue.getBackend().client;
          const found = await Promise.all(group.map((p) => client.hexists(queue.toKey(p.jobId), 'data')));
          await queue.addBulk(group.map((p) => ({ name: p.type, data: p.data, opts: { jobId: p.jobId } })));
          return found;
        })(),
        this.o.storeTimeoutMs ?? 2000,
      );
    } catch {
      // Not stored: the sender must resend. Never AA here.
      return group.map((p) =>
        this.answer(p.msg, 'error', { code: '207', text: 'the message could not be stored; resend it' }),
      );
    }
    return group.map((p, i) => ({
      ...this.answer(p.msg, 'accept'),
      ...(existing[i]! > 0 ? { duplicate: true } : {}),
      jobId: p.jobId,
    }));
  }

  private answer(
    msg: Hl7Message | undefined,
    outcome: 'accept' | 'error' | 'reject',
    error?: AckError,
  ): IntakeResult {
    const mode = modeOf(msg);
    const code: AckCode = mode.enhanced
      ? outcome === 'accept'
        ? 'CA'
        : outcome === 'error'
          ? 'CE'
          : 'CR'
      : outcome === 'accept'
        ? 'AA'
        : outcome === 'error'
          ? 'AE'
          : 'AR';
    const send =
      !mode.enhanced ||
      mode.when === 'AL' ||
      (mode.when === 'ER' && outcome !== 'accept') ||
      (mode.when === 'SU' && outcome === 'accept');
    const ack = send
      ? buildAck(msg, code, {
          controlId: randomUUID().replace(/-/g, '').slice(0, 20),
          now: this.clock(),
          ...(error ? { error } : {}),
        })
      : undefined;
    return { ack, code, duplicate: false };
  }
}
