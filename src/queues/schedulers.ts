/**
 * A BullMQ job scheduler that comes back after Redis forgets it.
 *
 * A scheduler (the reminder sweep, the no-show sweep) lives only in Redis. A Redis restarted without
 * persistence, a failover to an empty replica or a flush loses it, and before this nothing registered it again
 * until Careway itself restarted: the sweeps silently stopped. So the scheduler is checked, and registered when
 * missing, whenever the Redis connection becomes ready again (a restart is always a reconnect) and every
 * `checkMs` (a flush is not). The check is one read; an existing scheduler is never touched, so its timing is
 * kept. Several instances may register the same id at once: the upsert is idempotent.
 *
 * The watch stops by itself once the queue is closed; its timer never keeps the process alive.
 */
import type { EventEmitter } from 'node:events';
import type { Queue } from 'bullmq';

export interface SchedulerLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface KeptScheduler {
  /** Registers the scheduler when it is missing; true when it had to. */
  ensure(): Promise<boolean>;
  stop(): void;
}

export interface KeepOptions {
  readonly every: number;
  /** The name of the jobs the scheduler makes. */
  readonly jobName: string;
  /** How often to look for it besides reconnects; default: the interval, at most a minute. */
  readonly checkMs?: number;
  readonly log?: SchedulerLog;
}

/**
 * Registers the scheduler now (a failure is thrown, as before: Redis may be down at start) and keeps it
 * registered from then on.
 */
export async function keepScheduler(queue: Queue, id: string, o: KeepOptions): Promise<KeptScheduler> {
  const ensure = async (): Promise<boolean> => {
    if (await queue.getJobScheduler(id)) return false;
    await queue.upsertJobScheduler(id, { every: o.every }, { name: o.jobName });
    return true;
  };
  let stopped = false;
  let busy = false;
  const check = (why: 'reconnect' | 'check'): void => {
    if (stopped) return;
    if (queue.closing) {
      kept.stop();
      return;
    }
    if (busy) return;
    busy = true;
    ensure()
      .then((again) => {
        if (again) o.log?.info({ queue: queue.name, scheduler: id, why }, 'job scheduler registered again');
      })
      // Redis still down: the next reconnect or check tries again.
      .catch(() => undefined)
      .finally(() => {
        busy = false;
      });
  };
  // The queue's own ioredis connection (connections.ts hands queues the shared producer), which emits `ready`
  // on every successful (re)connect. Read from the options: awaiting `queue.client` would wait on Redis.
  const conn = queue.opts.connection as Partial<EventEmitter> | undefined;
  const client = typeof conn?.on === 'function' ? (conn as EventEmitter) : undefined;
  const onReady = (): void => check('reconnect');
  client?.on('ready', onReady);
  const timer = setInterval(() => check('check'), o.checkMs ?? Math.min(o.every, 60_000));
  timer.unref();
  const kept: KeptScheduler = {
    ensure,
    stop(): void {
      stopped = true;
      clearInterval(timer);
      client?.off('ready', onReady);
    },
  };
  await ensure();
  return kept;
}
