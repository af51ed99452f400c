/**
 * A queue split into partitions by a key, each drained by one worker with concurrency 1: jobs with the same key
 * (one patient) stay in arrival order and never run concurrently, while different keys run in parallel. This is
 * the open-source stand-in for BullMQ Pro's groups; the partition of a key never changes while the partition
 * count stays the same (changing HL7_PARTITIONS should be done with the queues drained).
 *
 * Reads (a job by id, listings, counts) look across all partitions, so callers see one queue.
 */
import { createHash } from 'node:crypto';
import type { Job, JobType, JobsOptions, Queue, QueueOptions } from 'bullmq';
import type { RedisConnections } from './connections.js';

export function partitionOf(key: string, partitions: number): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) % partitions;
}

export class PartitionedQueue<T> {
  readonly queues: readonly Queue<T>[];

  constructor(
    conns: RedisConnections,
    readonly name: string,
    partitions: number,
    options?: Omit<QueueOptions, 'connection'>,
    /** The connection its commands go on (connections.ts: the HL7 intake has its own). */
    via: 'producer' | 'intake' = 'producer',
  ) {
    this.queues = Array.from({ length: partitions }, (_, i) =>
      conns.queue<T>(PartitionedQueue.nameOf(name, i), options, via),
    );
  }

  static nameOf(name: string, partition: number): string {
    return `${name}-p${partition}`;
  }

  /** The partition queue for a key. */
  for(key: string): Queue<T> {
    return this.queues[partitionOf(key, this.queues.length)]!;
  }

  async add(key: string, jobName: string, data: T, options?: JobsOptions): Promise<Job<T>> {
    // BullMQ's generics make `add` awkward to call on a Queue<T> with plain T; the data type is T here.
    return (this.for(key) as unknown as Queue).add(jobName, data, options) as Promise<Job<T>>;
  }

  async getJob(id: string): Promise<Job<T> | undefined> {
    for (const q of this.queues) {
      const job = (await q.getJob(id)) as Job<T> | undefined;
      if (job) return job;
    }
    return undefined;
  }

  /** Newest first across partitions (each partition's `end` window, then merged by timestamp). */
  async getJobs(types: JobType[], start = 0, end = -1, asc = false): Promise<Job<T>[]> {
    const all = (
      await Promise.all(this.queues.map((q) => q.getJobs(types, start, end, asc)))
    ).flat() as Job<T>[];
    all.sort((a, b) => (asc ? a.timestamp - b.timestamp : b.timestamp - a.timestamp));
    return end >= 0 ? all.slice(0, end - start + 1) : all;
  }

  async getJobCounts(...types: JobType[]): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const counts of await Promise.all(this.queues.map((q) => q.getJobCounts(...types))))
      for (const [k, v] of Object.entries(counts)) out[k] = (out[k] ?? 0) + v;
    return out;
  }
}
