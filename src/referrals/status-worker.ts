/**
 * Queue `referral-status`: tells the referrer each time its referral's triage Task changes.
 *
 * - Job data is ids only (Task id and version), never PHI. The job id is `task-<id>-v<version>`, so one
 *   status change is queued once however often it is reported.
 * - `exec` re-reads the Task and sends its current state with `PUT {reply-to}/Task/{id}`: a late or
 *   repeated delivery never moves the referrer backwards past what Careway holds now.
 * - Retries with exponential backoff while the referrer is down; a referrer that answers 4xx (other than
 *   408/429) cannot be helped by retrying, and the job goes straight to the dead-letter queue, as does a job
 *   that used its last attempt. Dead letters keep the ids and the reason for an operator to replay.
 * - The reply address is only ever one the Task carries, which intake only stores when it is on
 *   REFERRAL_REPLY_ALLOWLIST.
 */
import { UnrecoverableError, type Job, type Queue, type Worker } from 'bullmq';
import type { Task } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { FhirError } from '../fhir/errors.js';
import { canonical } from '../fhir/canonical.js';
import { putToReferrer, type ReferrerHttp } from './referrer-http.js';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';

export const REFERRAL_STATUS_QUEUE = QUEUES.referralStatus;

export interface ReferralStatusJob {
  readonly taskId: string;
  readonly version: string;
}

export interface DeadLetter extends ReferralStatusJob {
  readonly reason: string;
  readonly attempts: number;
}

export interface StatusDeps {
  readonly fhir: FhirPort;
  /** The FHIR server's client options (FHIR_AUTH, FHIR_TLS_*) for REFERRAL_ENDPOINTS; others get none. */
  readonly referrer?: ReferrerHttp;
  readonly timeoutMs?: number;
}

export interface StatusQueue {
  readonly queue: Queue<ReferralStatusJob>;
  readonly dead: Queue<DeadLetter>;
  readonly worker: Worker<ReferralStatusJob>;
  add(data: ReferralStatusJob): Promise<void>;
}

/** Sends the Task's current state to its reply address. Throws to retry, UnrecoverableError to give up. */
export async function exec(
  job: Pick<Job<ReferralStatusJob>, 'data'>,
  deps: StatusDeps,
): Promise<'sent' | 'no-reply-address'> {
  let task: Task;
  try {
    task = await deps.fhir.read<Task>('Task', job.data.taskId, { noCache: true });
  } catch (e) {
    if (e instanceof FhirError && e.isNotFound)
      throw new UnrecoverableError(`Task/${job.data.taskId} no longer exists`);
    throw e;
  }
  const endpoint = task.extension?.find((x) => x.url === canonical.replyToExtension)?.valueUrl;
  if (!endpoint) return 'no-reply-address';
  const url = `${endpoint.replace(/\/+$/, '')}/Task/${encodeURIComponent(task.id ?? '')}`;
  let status: number;
  try {
    status = await putToReferrer(
      endpoint,
      url,
      JSON.stringify(task),
      deps.referrer,
      deps.timeoutMs ?? 10_000,
    );
  } catch (e) {
    throw new Error(`referrer unreachable: ${e instanceof Error ? e.message : 'error'}`);
  }
  if (status >= 200 && status < 300) return 'sent';
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
    throw new UnrecoverableError(`referrer refused the update with ${status}`);
  }
  throw new Error(`referrer answered ${status}`);
}

export function init(queues: QueueRegistry, deps: StatusDeps): StatusQueue {
  const { queue, dead, worker } = queues.openWithDeadLetters<ReferralStatusJob>(
    REFERRAL_STATUS_QUEUE,
    (job) => exec(job, deps),
    (job, err): DeadLetter => ({
      ...job.data,
      reason: err.message.slice(0, 1000),
      attempts: job.attemptsMade,
    }),
  );
  return {
    queue,
    dead: dead as Queue<DeadLetter>,
    worker,
    async add(data: ReferralStatusJob): Promise<void> {
      await queue.add('status', data, { jobId: `task-${data.taskId}-v${data.version}` });
    },
  };
}
