/**
 * The queue registry: every BullMQ queue Careway uses is declared here, with its job options, its worker options
 * and whether it has a dead-letter queue. A queue that is not in this table does not exist: `open` refuses a
 * name it does not know, and a queue opened with or without dead letters against its declaration. The dashboard (/admin/queues), the dead letters (/engagement/dead-letters), the queue
 * metrics and shutdown all read the registry, so none of them keeps a list of its own.
 *
 * Dead letters are written one way: a job that failed its last attempt (or threw UnrecoverableError, which skips
 * the remaining attempts) is copied to `<name>-dead` (or the spec's `dead` name) with ids and the reason only.
 * BullMQ has no dead-letter queue of its own; the dead job id is derived from the original, so a failure
 * reported twice is recorded once.
 *
 * Workers are made paused and run from `start`, and only in a process with the `workers` role. A partitioned
 * queue's partitions get a queue-level (global) concurrency of 1 first: one job per partition at a time across
 * every replica of the deployment, not only within one process, so one patient's messages keep their order
 * however many replicas run.
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
import { Gauge, type Registry } from 'prom-client';
import type { RedisConnections } from './connections.js';
import { PartitionedQueue } from './partitioned.js';
import { withTimeout } from '../shared/timeout.js';

export interface RegistryOptions {
  /** Run the workers in this process (the `workers` role); false: queues only, other processes work them. */
  readonly runWorkers?: boolean;
  /** Told when a partition's global concurrency could not be set yet (Redis down at start); retried. */
  readonly onRetry?: (err: unknown) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

export interface QueueSpec {
  /** What the queue is for, shown beside it in docs and the README's picture. */
  readonly purpose: string;
  readonly job: DefaultJobOptions;
  readonly worker: Omit<WorkerOptions, 'connection'>;
  /** The dead-letter queue's name; absent for queues whose jobs are re-created anyway (sweeps). */
  readonly dead?: string;
  /** Split into this many partitions, each drained by one worker (see partitioned.ts). */
  readonly partitions?: number;
}

/** What a dead-letter replay did. */
export type ReplayOutcome =
  | { readonly outcome: 'replayed' | 'already-replayed'; readonly queue: string; readonly id: string }
  /** The dead letter is there, but its job is past the queue's retention: there is nothing to run again. */
  | { readonly outcome: 'gone'; readonly queue: string; readonly id: string }
  | { readonly outcome: 'unknown-queue' | 'not-found' };

/** What the worker's jobs keep when they go to the dead-letter queue (default: all of the job's data). */
export type DeadData<T> = (job: Job<T>, err: Error) => object;

export interface RegisteredQueue {
  readonly name: string;
  readonly spec: QueueSpec;
  /** The queue itself, or its partitions. */
  readonly queues: readonly Queue[];
  readonly dead?: Queue;
  readonly workers: readonly Worker[];
}

export interface Opened<T> {
  readonly queue: Queue<T>;
  readonly worker: Worker<T>;
}

export interface OpenedWithDeadLetters<T> extends Opened<T> {
  readonly dead: Queue;
}

export interface OpenedPartitioned<T> {
  readonly queue: PartitionedQueue<T>;
  readonly dead: Queue;
  readonly workers: readonly Worker<T>[];
}

const defaultDeadData = <T>(job: Job<T>, err: Error): object => ({
  ...(job.data as object),
  reason: err.message.slice(0, 1000),
  attempts: job.attemptsMade,
});

export class QueueRegistry {
  private readonly opened = new Map<string, RegisteredQueue>();
  private closing = false;
  private drained?: Promise<void>;

  constructor(
    private readonly conns: RedisConnections,
    readonly specs: Readonly<Record<string, QueueSpec>>,
    private readonly options: RegistryOptions = {},
  ) {}

  /** Every worker is made paused (`autorun: false`); `start` runs them, in order, in a `workers` process. */
  private worker<T>(name: string, processor: Processor<T>, spec: QueueSpec): Worker<T> {
    return this.conns.worker<T>(name, processor, { ...spec.worker, autorun: false });
  }

  /**
   * Runs the workers (in a process with the `workers` role). A partitioned queue's workers run only once each of
   * its partitions has a global concurrency of 1 in Redis; while Redis is away that is retried in the background
   * and the other queues' workers run meanwhile.
   */
  async start(): Promise<void> {
    if (this.options.runWorkers === false) return;
    const all = this.all();
    for (const r of all)
      if (!r.spec.partitions) for (const w of r.workers) void w.run().catch(() => undefined);
    const ordered = all.filter((r) => r.spec.partitions);
    if (ordered.length === 0) return;
    // Bounded: with Redis away the commands wait for it (BullMQ's connections never fail fast), and an unbounded
    // wait here held the app's onReady past Fastify's deadline, so Careway could not even start to say so.
    const setLimits = (): Promise<unknown> =>
      withTimeout(Promise.all(ordered.flatMap((r) => r.queues.map((q) => q.setGlobalConcurrency(1)))), 2000);
    const runOrdered = (): void => {
      if (this.closing) return;
      for (const r of ordered) for (const w of r.workers) void w.run().catch(() => undefined);
    };
    try {
      await setLimits();
      runOrdered();
    } catch (err) {
      this.options.onRetry?.(err);
      void (async () => {
        while (!this.closing) {
          await sleep(1000);
          try {
            await setLimits();
            runOrdered();
            return;
          } catch {
            // Still away: try again.
          }
        }
      })();
    }
  }

  private spec(name: string, dead: boolean): QueueSpec {
    const spec = this.specs[name];
    if (!spec) throw new Error(`queue ${name} is not in the queue registry`);
    if (this.opened.has(name)) throw new Error(`queue ${name} is opened twice`);
    if (!!spec.dead !== dead)
      throw new Error(`queue ${name} is declared ${spec.dead ? 'with' : 'without'} a dead-letter queue`);
    return spec;
  }

  private record(
    name: string,
    spec: QueueSpec,
    queues: readonly Queue[],
    workers: readonly Worker[],
    dead?: Queue,
  ): void {
    this.opened.set(name, { name, spec, queues, workers, ...(dead ? { dead } : {}) });
  }

  /** A queue whose jobs are re-made anyway (a sweep's schedule): no dead letters. */
  open<T>(name: string, processor: Processor<T>): Opened<T> {
    const spec = this.spec(name, false);
    const queue = this.conns.queue<T>(name, { defaultJobOptions: spec.job });
    const worker = this.worker<T>(name, processor, spec);
    this.record(name, spec, [queue as Queue], [worker as Worker]);
    return { queue, worker };
  }

  /** The queue, its worker and its dead-letter queue, with the options the registry holds for it. */
  openWithDeadLetters<T>(
    name: string,
    processor: Processor<T>,
    deadData?: DeadData<T>,
  ): OpenedWithDeadLetters<T> {
    const spec = this.spec(name, true);
    const queue = this.conns.queue<T>(name, { defaultJobOptions: spec.job });
    const dead = this.conns.queue(spec.dead!);
    const worker = this.worker<T>(name, processor, spec);
    forwardFinalFailures(worker, dead, deadData ?? defaultDeadData);
    this.record(name, spec, [queue as Queue], [worker as Worker], dead);
    return { queue, dead, worker };
  }

  /** A partitioned queue (per-key order), one worker per partition, one dead-letter queue for all. */
  openPartitioned<T>(name: string, processor: Processor<T>, deadData?: DeadData<T>): OpenedPartitioned<T> {
    const spec = this.spec(name, true);
    const queue = new PartitionedQueue<T>(this.conns, name, spec.partitions ?? 1, {
      defaultJobOptions: spec.job,
    });
    const dead = this.conns.queue(spec.dead!);
    const workers = queue.queues.map((q) => {
      const worker = this.worker<T>(q.name, processor, spec);
      forwardFinalFailures(worker, dead, deadData ?? defaultDeadData);
      return worker;
    });
    this.record(name, spec, queue.queues as readonly Queue[], workers as readonly Worker[], dead);
    return { queue, dead, workers };
  }

  /**
   * A second handle on a partitioned queue, for producing only, on the HL7 intake's own connection
   * (connections.ts): the same partitions and job options as `openPartitioned`'s, no workers.
   */
  intakeHandle<T>(name: string): PartitionedQueue<T> {
    const spec = this.opened.get(name)?.spec;
    if (!spec?.partitions) throw new Error(`queue ${name} is not an opened partitioned queue`);
    return new PartitionedQueue<T>(
      this.conns,
      name,
      spec.partitions ?? 1,
      { defaultJobOptions: spec.job },
      'intake',
    );
  }

  /** Every opened queue, in the order they were opened. */
  all(): RegisteredQueue[] {
    return [...this.opened.values()];
  }

  /** Every queue and dead-letter queue (partitions listed one by one), as the dashboard shows them. */
  bullQueues(): Queue[] {
    return this.all().flatMap((r) => [...r.queues, ...(r.dead ? [r.dead] : [])]);
  }

  deadLetterQueues(): Queue[] {
    return this.all().flatMap((r) => (r.dead ? [r.dead] : []));
  }

  /**
   * Moves a dead-lettered job back to its queue: the failed job itself is retried (same id, same data, so what
   * it writes is what the first run would have), and its dead letter is removed first, atomically, so two
   * replays racing enqueue it once. `queue` is the queue's registry name or its dead-letter queue's name (as the
   * dead-letter listing shows it); `jobId` is the dead letter's id (`<job id>-dead`) or the job's own.
   */
  async replayDeadLetter(queue: string, jobId: string): Promise<ReplayOutcome> {
    const r = this.all().find((x) => x.name === queue || x.dead?.name === queue);
    if (!r?.dead) return { outcome: 'unknown-queue' };
    const originalId = jobId.endsWith('-dead') ? jobId.slice(0, -'-dead'.length) : jobId;
    const deadId = `${originalId}-dead`;
    let original: Job | undefined;
    for (const q of r.queues) {
      original = (await q.getJob(originalId)) as Job | undefined;
      if (original) break;
    }
    const letter = (await r.dead.getJob(deadId)) as Job | undefined;
    const state = original ? await original.getState() : undefined;
    if (!letter) {
      // Replayed already (the letter went then): the same answer again, nothing enqueued.
      if (original && state !== 'failed')
        return { outcome: 'already-replayed', queue: r.name, id: originalId };
      return { outcome: 'not-found' };
    }
    if (!original) return { outcome: 'gone', queue: r.name, id: originalId };
    // One replay per dead letter: a claim keyed on the letter (its id and when it was written, so a later
    // failure's new letter can be replayed again) that only the first of racing callers gets. BullMQ's
    // `remove` answers 1 for a job that is already gone, so it cannot be the claim.
    const claim = r.dead.toKey(`replay:${deadId}:${letter.timestamp}`);
    const first = await this.conns.producer.set(claim, '1', 'EX', 3600, 'NX');
    if (first !== 'OK') return { outcome: 'already-replayed', queue: r.name, id: originalId };
    await r.dead.remove(deadId);
    if (state !== 'failed') return { outcome: 'already-replayed', queue: r.name, id: originalId };
    try {
      await original.retry('failed');
    } catch {
      // Moved meanwhile (a retry from the dashboard): it is running again either way.
      return { outcome: 'already-replayed', queue: r.name, id: originalId };
    }
    return { outcome: 'replayed', queue: r.name, id: originalId };
  }

  /**
   * `careway_queue_jobs{queue,state}`: every registered queue's depth by state, read when Prometheus scrapes (a
   * partitioned queue summed over its partitions; dead-letter queues count their `waiting` letters).
   */
  registerMetrics(metrics: Registry): void {
    const all = (): RegisteredQueue[] => this.all();
    new Gauge({
      name: 'careway_queue_jobs',
      help: 'Jobs per queue and state (waiting, active, delayed, failed); dead-letter queues by their own name',
      labelNames: ['queue', 'state'] as const,
      registers: [metrics],
      async collect() {
        for (const r of all()) {
          const totals: Record<string, number> = {};
          for (const q of r.queues)
            for (const [state, n] of Object.entries(
              await q.getJobCounts('waiting', 'active', 'delayed', 'failed'),
            ))
              totals[state] = (totals[state] ?? 0) + n;
          for (const [state, n] of Object.entries(totals)) this.set({ queue: r.name, state }, n);
          if (r.dead) this.set({ queue: r.dead.name, state: 'waiting' }, await r.dead.getWaitingCount());
        }
      },
    });
  }

  /**
   * Stops taking jobs and lets the jobs in hand finish, for at most `graceMs` (BullMQ's `close()` has no bound of
   * its own). Past it, the jobs still running are told to stop (their processor's abort signal): the ordered
   * queues' processors put their job back at the head of its partition, for another replica to take. A processor
   * that still does not return is left behind (force close): its job is taken over once its lock lapses.
   */
  drainWorkers(graceMs = 10_000): Promise<void> {
    this.closing = true;
    this.drained ??= (async () => {
      const graceOver = sleep(graceMs).then(() => false);
      const drain = async (w: Worker): Promise<void> => {
        // pause() stops fetching and resolves once the jobs in hand are done; close() would too, but a close
        // under way cannot be forced any more, so close comes last, forced only when jobs are still running.
        const idle = w.pause().then(
          () => true,
          () => true,
        );
        let done = await Promise.race([idle, graceOver]);
        if (!done) {
          w.cancelAllJobs('shutting down');
          done = await Promise.race([idle, sleep(2000).then(() => false)]);
        }
        await withTimeout(w.close(!done), 2000).catch(() => undefined);
      };
      await Promise.allSettled(this.all().flatMap((r) => r.workers.map(drain)));
    })();
    return this.drained;
  }

  /** Workers first (drained, see drainWorkers), then the queues; the connections close after. */
  async close(): Promise<void> {
    await this.drainWorkers();
    await Promise.allSettled(
      this.all().flatMap((r) =>
        [...r.queues, ...(r.dead ? [r.dead] : [])].map((q) => withTimeout(q.close(), 2000)),
      ),
    );
  }
}

/** Copies a job that failed for good to the dead-letter queue (its id derived from the job's, so once). */
export function forwardFinalFailures<T>(worker: Worker<T>, dead: Queue, toDead: DeadData<T>): void {
  worker.on('failed', (job, err) => {
    if (!job) return;
    const final = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    if (!final) return;
    void dead.add('dead', toDead(job, err), { jobId: `${job.id ?? 'job'}-dead` }).catch(() => undefined);
  });
}
