/**
 * The `hl7-outbound` queue: each Appointment change Careway made (a booking, a reschedule, a cancellation, a
 * no-show) goes to the EHR as the SIU the outbound maps make (mappings/outbound/), over MLLP, and is done when the
 * EHR acknowledges it.
 *
 * Invariants:
 * - **Ids only in Redis.** A job is the Appointment id, the version the change wrote, the patient id (the
 *   partition key), the change and its trigger event. The message is built at send time from the Appointment as
 *   it is then (view.ts), so nothing about the patient waits in Redis.
 * - **Never sent twice for one change.** The job id is the Appointment id + version + trigger: the same change
 *   reported twice is one job, and completed jobs are kept a month. MSH-10 is derived from the job id, so a retry
 *   after a lost ACK carries the same control id and the EHR can drop the resend.
 * - **One patient's changes in order.** The queue is partitioned by patient (queues/partitioned.ts): a booking's
 *   S12 reaches the EHR before its S15.
 * - **The ACK decides.** AA/CA → done. AE/AR (CE/CR) → the EHR refused it, and resending the same message will not
 *   help: UnrecoverableError with the ERR text, and the job goes to `hl7-outbound-dead`.
 * - **No answer is retried in place.** No connection, a closed connection or no ACK in time → the same message
 *   again after an exponential backoff, *inside* the job, up to HL7_OUTBOUND_ATTEMPTS, then the dead-letter
 *   queue. A BullMQ retry would move the job behind the partition's next one, and a patient's S15 could then
 *   reach the EHR before its S12; waiting in place holds the partition instead, as an interface engine's queue
 *   does while its receiver is down (every other message would fail the same way meanwhile). Each try is
 *   recorded as the job's progress, for the outbound log. A shutdown (the worker's abort signal once
 *   SHUTDOWN_GRACE_MS has passed, or `close`) cuts the wait short and puts the job back at the head of its
 *   partition, for whichever replica takes the partition next; a BullMQ retry would park it behind the next one.
 */
import { createHash } from 'node:crypto';
import { UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import type { FhirPort } from '../fhir/client.js';
import type { PartitionedQueue } from '../queues/partitioned.js';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import type { Hl7Message } from './message.js';
import { MllpClient, MllpDeliveryError, type MllpClientOptions } from './mllp/client.js';
import type { AppointmentChangeKind, OutboundMapper } from './outbound/engine.js';
import { buildView, type OutboundHeader } from './outbound/view.js';

export const HL7_OUTBOUND_QUEUE = QUEUES.hl7Outbound;

/** A change to send. Ids only: no PHI waits in Redis. */
export interface OutboundJob {
  readonly appointmentId: string;
  readonly versionId: string;
  readonly patientId: string;
  readonly change: AppointmentChangeKind;
  /** MSH-9.2, from the message map when the change was queued. */
  readonly trigger: string;
  readonly queuedAt: string;
}

/** What a delivered job returns (kept with the completed job: the outbound log shows it). */
export interface OutboundResult {
  readonly code: string;
  readonly controlId: string;
}

/** Where `careway_hl7_outbound_messages_total{trigger,code}` is counted. */
export type OutboundCode = 'AA' | 'AE' | 'AR' | 'CA' | 'CE' | 'CR' | 'timeout' | 'unreachable' | 'error';

export interface OutboundDeps {
  readonly fhir: FhirPort;
  readonly mapper: OutboundMapper;
  readonly connection: Omit<MllpClientOptions, 'maxFrameBytes'> & { readonly maxFrameBytes?: number };
  readonly names: Pick<
    OutboundHeader,
    'sendingApplication' | 'sendingFacility' | 'receivingApplication' | 'receivingFacility'
  >;
  readonly count: (trigger: string, code: OutboundCode) => void;
  /** The EHR answered a message (accepted or refused): the audit trail records it. */
  readonly answered?: (message: {
    appointmentId: string;
    patientId: string;
    trigger: string;
    code: string;
  }) => Promise<void>;
  readonly log: { warn(o: object, msg: string): void; info(o: object, msg: string): void };
  /** Tries per message before it goes to the dead-letter queue, and the first backoff (doubling, ≤ 5 min). */
  readonly attempts: number;
  readonly backoffMs: number;
  readonly clock?: () => Date;
}

/** What a job's progress says while it waits for the EHR (`GET /hl7/outbound` shows it). */
export interface OutboundProgress {
  readonly tries: number;
  readonly lastError: string;
}

const MAX_BACKOFF_MS = 5 * 60_000;

/** The job id of a change: the same change reported twice is one job. */
export function outboundJobId(appointmentId: string, versionId: string, trigger: string): string {
  return `out-${appointmentId}-v${versionId}-${trigger}`;
}

/** MSH-10 for a job: deterministic (a resend has the same id) and within v2.5's 20 characters. */
export function controlIdOf(jobId: string): string {
  return `CW${createHash('sha256').update(jobId).digest('hex').slice(0, 18).toUpperCase()}`;
}

/**
 * The EHR's reason for refusing a message: ERR-8 (user message), else ERR-3.9 (the original text of the error
 * code, where HAPI-based engines put it), else ERR-3.2 (the code's text), else ERR-1.4.2 (before v2.5), else
 * MSA-3.
 */
export function refusalText(ack: Hl7Message): string {
  const err = ack.segment('ERR');
  const text =
    err?.get(8) ||
    err?.get(3, 9) ||
    err?.get(3, 2) ||
    err?.get(1, 4, 2) ||
    ack.segment('MSA')?.get(3) ||
    'no reason given';
  return text.slice(0, 300);
}

export interface OutboundQueue {
  readonly queue: PartitionedQueue<OutboundJob>;
  readonly workers: readonly Worker<OutboundJob>[];
  readonly dead: Queue;
  /** Queues a change; false when no message map sends that change. */
  add(change: Omit<OutboundJob, 'trigger' | 'queuedAt'>): Promise<boolean>;
  /** Waits for the workers' jobs in hand, then closes the connections to the EHR. */
  close(): Promise<void>;
}

/** Sleeps that a shutdown cuts short (`sleep` resolves false then). */
class Stopper {
  private stopped = false;
  private readonly wakers = new Set<() => void>();

  sleep(ms: number): Promise<boolean> {
    if (this.stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve(!this.stopped);
      };
      const timer = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
  }

  stop(): void {
    this.stopped = true;
    for (const w of [...this.wakers]) w();
  }
}

async function exec(
  job: Job<OutboundJob>,
  deps: OutboundDeps,
  client: MllpClient,
  stop: Stopper,
): Promise<OutboundResult> {
  const { appointmentId, change, trigger } = job.data;
  const controlId = controlIdOf(job.id ?? outboundJobId(appointmentId, job.data.versionId, trigger));
  const view = await buildView(deps.fhir, appointmentId, change, {
    ...deps.names,
    time: (deps.clock ?? (() => new Date()))().toISOString(),
    controlId,
  });
  if (!view) throw new UnrecoverableError(`Appointment/${appointmentId} no longer exists`);
  const built = deps.mapper.build(change, view);
  if (!built) throw new UnrecoverableError(`no outbound message map sends the ${change} change`);
  let ack: Hl7Message | undefined;
  for (let tries = 1; !ack; tries++) {
    try {
      ack = await client.send(built.er7, controlId);
    } catch (e) {
      if (!(e instanceof MllpDeliveryError)) throw e;
      deps.count(built.trigger, e.reason === 'timeout' ? 'timeout' : 'unreachable');
      await job.updateProgress({ tries, lastError: e.message } satisfies OutboundProgress);
      if (tries >= deps.attempts)
        throw new UnrecoverableError(`no ACK after ${tries} attempts: ${e.message}`);
      deps.log.warn({ jobId: job.id, tries, reason: e.reason }, 'HL7 change not delivered; retrying');
      if (!(await stop.sleep(Math.min(MAX_BACKOFF_MS, deps.backoffMs * 2 ** (tries - 1)))))
        throw Worker.RateLimitError();
    }
  }
  const code = ack.segment('MSA')?.get(1) ?? '';
  const known = ['AA', 'AE', 'AR', 'CA', 'CE', 'CR'].includes(code);
  deps.count(built.trigger, known ? (code as OutboundCode) : 'error');
  await deps.answered?.({ appointmentId, patientId: job.data.patientId, trigger: built.trigger, code });
  if (code === 'AA' || code === 'CA') {
    deps.log.info(
      { jobId: job.id, appointmentId, trigger: built.trigger, controlId },
      'HL7 change delivered',
    );
    return { code, controlId };
  }
  // The EHR read the message and refused it: the same message sent again gets the same answer.
  const reason = `${code || 'no MSA-1'}: ${refusalText(ack)}`;
  deps.log.warn(
    { jobId: job.id, appointmentId, trigger: built.trigger, controlId, code },
    'HL7 change refused',
  );
  throw new UnrecoverableError(reason);
}

export function init(queues: QueueRegistry, deps: OutboundDeps): OutboundQueue {
  // One connection per partition: each partition's worker sends one message at a time, in its patients' order.
  const clients = new Map<string, MllpClient>();
  const clientFor = (name: string): MllpClient => {
    let c = clients.get(name);
    if (!c) {
      c = new MllpClient(deps.connection);
      clients.set(name, c);
    }
    return c;
  };
  const stop = new Stopper();
  const { queue, workers, dead } = queues.openPartitioned<OutboundJob>(
    HL7_OUTBOUND_QUEUE,
    (job, _token, signal) => {
      // Aborted only at shutdown, past its grace (queues/registry.ts): every wait in this process ends.
      signal?.addEventListener('abort', () => stop.stop(), { once: true });
      return exec(job, deps, clientFor(job.queueName), stop);
    },
  );
  return {
    queue,
    workers,
    dead,
    async add(c): Promise<boolean> {
      const found = deps.mapper.messageFor(c.change);
      if (!found) return false;
      const data: OutboundJob = { ...c, trigger: found.trigger, queuedAt: new Date().toISOString() };
      await queue.add(c.patientId, 'send', data, {
        jobId: outboundJobId(c.appointmentId, c.versionId, found.trigger),
      });
      return true;
    },
    async close(): Promise<void> {
      stop.stop();
      await Promise.allSettled(workers.map((w) => w.close()));
      await Promise.allSettled([...clients.values()].map((c) => c.close()));
    },
  };
}
