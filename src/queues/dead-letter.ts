/**
 * BullMQ has no dead-letter queue: a job that failed its last attempt (or threw UnrecoverableError, which
 * skips the remaining attempts) is copied to a dead-letter queue here, with ids and the reason only.
 * The dead job id is derived from the original, so a failure reported twice is recorded once.
 */
import { UnrecoverableError, type Job, type Queue, type Worker } from 'bullmq';

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
