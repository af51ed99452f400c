/**
 * Queue `hl7-inbound`: turns each accepted HL7 message into one idempotent FHIR transaction.
 *
 * - `exec` unseals the raw message, maps it with the declarative maps, and posts the transaction under a lock
 *   on the patient's business identifier, so two messages for one patient never write at the same time.
 * - The worker runs one job at a time: jobs leave the queue in arrival order, so an A03 is never applied
 *   before its A01. (Per-patient parallelism needs grouped queues; see the issue note.)
 * - A mapping or data error cannot be fixed by retrying: UnrecoverableError, and the job goes to `hl7-dead`
 *   at once with the reason. FHIR 5xx, timeouts and HAPI's conditional-create race (409) are retried with backoff.
 * - Job data holds ids and the sealed message only; logs name job ids, never content.
 */
import { UnrecoverableError, type Job, type Queue, type Worker } from 'bullmq';
import type { Hl7Timezones } from '../config/config.js';
import type { FhirPort } from '../fhir/client.js';
import { FhirError } from '../fhir/errors.js';
import type { RedisConnections } from '../queues/connections.js';
import type { KeyedLock } from '../queues/locks.js';
import { HL7_INBOUND_QUEUE, type InboundJob } from './intake.js';
import { Hl7Message, Hl7ParseError } from './message.js';
import { MappingError, type Mapper } from './mapping/engine.js';
import { buildTransaction } from './mapping/transaction.js';
import { unseal } from './seal.js';

export const HL7_DEAD_QUEUE = 'hl7-dead';

export interface DeadMessage {
  readonly jobId: string;
  readonly sender: string;
  readonly controlId: string;
  readonly type: string;
  readonly reason: string;
}

export interface InboundDeps {
  readonly fhir: FhirPort;
  readonly mapper: Mapper;
  readonly key: Buffer;
  readonly lock: KeyedLock;
  readonly zones: Hl7Timezones;
}

export interface InboundResult {
  readonly written: number;
  readonly skipped: readonly string[];
}

function zoneFor(zones: Hl7Timezones, msg: Hl7Message): string {
  const { application, facility } = msg.sender;
  return (
    zones.bySender[`${application}^${facility}`] ??
    zones.bySender[facility] ??
    zones.bySender[application] ??
    zones.defaultZone
  );
}

export async function exec(
  job: Pick<Job<InboundJob>, 'id' | 'data'>,
  deps: InboundDeps,
): Promise<InboundResult> {
  let msg: Hl7Message;
  try {
    msg = Hl7Message.parse(unseal(job.data.raw, deps.key).toString('utf8'));
  } catch (e) {
    throw new UnrecoverableError(
      e instanceof Hl7ParseError ? e.message : 'the stored message could not be unsealed',
    );
  }
  let built: ReturnType<typeof buildTransaction>;
  try {
    const mapped = deps.mapper.message(msg, { zone: zoneFor(deps.zones, msg), delimiters: msg.delimiters });
    built = buildTransaction(mapped, {
      jobId: job.id ?? '',
      sender: job.data.sender,
      controlId: job.data.controlId,
      type: job.data.type,
      receivedAt: job.data.receivedAt,
    });
  } catch (e) {
    if (e instanceof MappingError) throw new UnrecoverableError(`mapping: ${e.message}`);
    throw e;
  }
  const lockKey = `hl7-patient:${built.keys['patient'] ?? `${job.data.sender}|${job.data.controlId}`}`;
  try {
    await deps.lock.withLock(lockKey, () => deps.fhir.transaction(built.bundle, { idempotent: true }));
  } catch (e) {
    if (
      e instanceof FhirError &&
      e.kind === 'http' &&
      e.status >= 400 &&
      e.status < 500 &&
      e.status !== 409 &&
      e.status !== 429
    ) {
      const why =
        e.outcome?.issue
          .map((i) => i.diagnostics)
          .filter(Boolean)
          .join('; ') ?? '';
      throw new UnrecoverableError(`FHIR server refused the transaction (${e.status}): ${why.slice(0, 500)}`);
    }
    throw e;
  }
  return { written: built.bundle.entry?.length ?? 0, skipped: built.skipped };
}

export interface InboundQueue {
  readonly worker: Worker<InboundJob>;
  readonly dead: Queue<DeadMessage>;
}

export function init(conns: RedisConnections, deps: InboundDeps): InboundQueue {
  const dead = conns.queue<DeadMessage>(HL7_DEAD_QUEUE);
  const worker = conns.worker<InboundJob>(HL7_INBOUND_QUEUE, (job) => exec(job, deps), { concurrency: 1 });
  worker.on('failed', (job, err) => {
    if (!job) return;
    const final = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    if (!final) return;
    void dead
      .add(
        'dead',
        {
          jobId: job.id ?? '',
          sender: job.data.sender,
          controlId: job.data.controlId,
          type: job.data.type,
          reason: err.message.slice(0, 1000),
        },
        { jobId: `${job.id ?? 'job'}-dead` },
      )
      .catch(() => undefined);
  });
  return { worker, dead };
}
