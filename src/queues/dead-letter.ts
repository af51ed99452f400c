/**
 * BullMQ has no dead-letter queue: a job that failed its last attempt (or threw UnrecoverableError, which
 * skips the remaining attempts) is copied to a dead-letter queue here, with ids and the reason only.
 * The dead job id is derived from the original, so a failure reported twice is recorded once.
 */
import {
  UnrecoverableError,
  type DefaultJobOptions,
  type Job,
  type Processor,
  type Queue,
  type Worker,
  type WorkerOptions,
} from 'bullmq';
import type { RedisConnections } from './connections.js';

export function forwardFinalFailures<T, D>(
  worker: Worker<T>,
  dead: Queue<D>,
  toDead: (job: Job<T>, err: Error) => D,
): void {
  worker.on('failed', (job, err) => {
    if (!job) return;
    const final = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    if (!final) return;
    void (dead as Queue)
      .add('dead', toDead(job, err), { jobId: `${job.id ?? 'job'}-dead` })
      .catch(() => undefined);
  });
}

/**
 * A queue with its worker and its dead-letter queue (`<name>-dead`), wired the one way Careway does it: a job that
 * failed for good is copied there with its data (ids only) and the reason.
 */
export function withDeadLetters<T>(
  conns: RedisConnections,
  name: string,
  processor: Processor<T>,
  options: {
    readonly job: DefaultJobOptions;
    readonly worker?: Omit<WorkerOptions, 'connection'>;
    /** What of the job's data the dead letter keeps (default: all of it); ids only, whatever the job carries. */
    readonly deadData?: (data: T) => object;
  },
): { queue: Queue<T>; dead: Queue; worker: Worker<T> } {
  const queue = conns.queue<T>(name, { defaultJobOptions: options.job });
  const dead = conns.queue(`${name}-dead`);
  const worker = conns.worker<T>(name, processor, options.worker);
  forwardFinalFailures(worker, dead, (job, err) => ({
    ...(options.deadData ? options.deadData(job.data) : (job.data as object)),
    reason: err.message.slice(0, 1000),
    attempts: job.attemptsMade,
  }));
  return { queue, dead, worker };
}
