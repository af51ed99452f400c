/**
 * The HL7 v2 area: the message maps, the intake (MLLP listener on MLLP_PORT, bound to HOST, and `POST /hl7`
 * behind the same code), the partitioned `hl7-inbound` queue and its workers. Messages become sealed jobs before
 * any positive ACK; the worker writes them to FHIR and hands what it wrote to the `written` hook.
 *
 * With HL7_OUTBOUND_URL, the area also sends Careway's own Appointment changes to the EHR
 * (`sendAppointmentChange`, the partitioned `hl7-outbound` queue, maps in mappings/outbound/); without it that
 * call does nothing.
 *
 * The listener starts in `start` (in a process with the `mllp` role) and stops, after its connections, in
 * `stopIntake` (the first step of a graceful shutdown) or `close`.
 */
import { join } from 'node:path';
import { Counter, Gauge } from 'prom-client';
import type { Resource } from 'fhir/r4.js';
import type { AreaContext } from '../area-context.js';
import type { JourneyService } from '../journey/service.js';
import type { PartitionedQueue } from '../queues/partitioned.js';
import { projectRoot } from '../shared/paths.js';
import { withTimeout } from '../shared/timeout.js';
import { redisPersistence } from '../queues/durability.js';
import {
  HL7_INBOUND_QUEUE,
  Hl7Intake,
  type CheckResult,
  type InboundJob,
  type IntakeResult,
} from './intake.js';
import { MllpServer } from './mllp/server.js';
import { MessageLog } from './message-log.js';
import { loadMappings, Mapper, MappingError } from './mapping/engine.js';
import {
  init as initInbound,
  prepareMessage,
  type InboundQueue,
  type MappingObservations,
  type WrittenMessage,
} from './inbound-worker.js';
import type { Hl7Message } from './message.js';
import { journeyEffects } from './journey-effects.js';
import { loadOutboundMaps, OutboundMapper, type AppointmentChangeKind } from './outbound/engine.js';
import {
  controlIdOf,
  init as initOutbound,
  type OutboundJob,
  type OutboundProgress,
  type OutboundQueue,
  type OutboundResult,
} from './outbound-worker.js';

export interface DefaultedAuthority {
  readonly namespace: string;
  readonly system: string;
  readonly messages: number;
  readonly lastSeen: string;
}

export interface Hl7Hooks {
  /** A message was committed: the resources it wrote, with their server ids, and the message's ids. */
  written(resources: readonly Resource[], message: WrittenMessage): Promise<void>;
  /** The EHR answered an outbound message. */
  sent?(message: { appointmentId: string; patientId: string; trigger: string; code: string }): Promise<void>;
}

/** An Appointment change Careway made, to tell the EHR about (ids only). */
export interface AppointmentChange {
  readonly appointmentId: string;
  /** The version the change wrote: with the trigger, it names the change (one message per change). */
  readonly versionId: string;
  readonly patientId: string;
  readonly change: AppointmentChangeKind;
}

/** One row of the outbound message log (`GET /hl7/outbound`): ids, state and the EHR's answer; no PHI. */
export interface OutboundListing {
  readonly id: string;
  readonly appointment: string;
  readonly change: string;
  readonly trigger: string;
  readonly controlId: string;
  readonly queuedAt: string;
  readonly status: string;
  readonly attempts: number;
  readonly ack?: string;
  readonly error?: string;
}

export interface Hl7Module {
  readonly intake: Hl7Intake;
  readonly queue: PartitionedQueue<InboundJob>;
  readonly inbound: InboundQueue;
  readonly mapper: Mapper;
  receive(bytes: Buffer, via: 'mllp' | 'http'): Promise<IntakeResult[]>;
  /** The MLLP port, once listening (MLLP_PORT=0 picks a free one). */
  mllpPort(): number | undefined;
  /** The inbound message log: search (MRN, control id, type, sender, status) and one message in detail. */
  readonly log: MessageLog;
  /** Namespaces that fell back to the default authority rule, with counts (GET /hl7/authorities). */
  defaultedAuthorities(): Promise<DefaultedAuthority[]>;
  /** The outbound queue, when HL7_OUTBOUND_URL is set. */
  readonly outbound?: OutboundQueue;
  /** Queues a change Careway made for the EHR; nothing when outbound HL7 is off. */
  sendAppointmentChange(change: AppointmentChange): Promise<void>;
  /** The latest outbound messages, newest first (empty when outbound HL7 is off). */
  outboundMessages(limit: number): Promise<OutboundListing[]>;
  start(): Promise<void>;
  /** Stops accepting MLLP connections and ends the open ones (after the ACKs being written); idempotent. */
  stopIntake(): Promise<void>;
  close(): Promise<void>;
}

/** Metric labels come from the feed: only short plain names, and a bounded number of them. */
function boundedLabel(seen: Set<string>, value: string): string {
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(value)) return 'other';
  if (seen.has(value)) return value;
  if (seen.size >= 200) return 'other';
  seen.add(value);
  return value;
}

/**
 * What the maps observed, counted: ignored segments (a metric) and namespaces that fell back to the default
 * authority rule (a metric, and a Redis hash that `GET /hl7/authorities` lists).
 *
 * The Redis counts are added up in the process and written at most once a second (bench P3: four Redis
 * round trips per message on a namespace-only feed, for a listing an operator reads now and then). A crash
 * loses at most that second's counts; a listing from this process includes what is not written yet, one
 * from another process sees it a second later.
 */
function observations(ctx: AreaContext): {
  observe(o: MappingObservations): void;
  defaultedAuthorities(): Promise<DefaultedAuthority[]>;
  flush(): Promise<void>;
} {
  const defaultsMetric = new Counter({
    name: 'careway_hl7_authority_defaults_total',
    help: 'Messages with an assigning authority that no registry entry names (system from the default rule), by namespace',
    labelNames: ['namespace'] as const,
    registers: [ctx.metrics],
  });
  const ignoredMetric = new Counter({
    name: 'careway_hl7_ignored_segments_total',
    help: 'Segments no map reads (Z-segments, unknown ones), ignored, by segment name',
    labelNames: ['segment'] as const,
    registers: [ctx.metrics],
  });
  const nsLabels = new Set<string>();
  const segLabels = new Set<string>();
  const redis = ctx.redis.producer;
  const defaultsKey = `${ctx.config.queuePrefix}:hl7:authority-defaults`;
  /** Counts not yet in Redis, by namespace field, with the latest `<time> <system>`. */
  let pending = new Map<string, { messages: number; seen: string }>();
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();
  const flush = (): Promise<void> => {
    clearTimeout(timer);
    timer = undefined;
    const batch = pending;
    if (batch.size === 0) return writing;
    pending = new Map();
    writing = writing.then(async () => {
      const writes: Promise<unknown>[] = [];
      // One command per key, not a MULTI over both: on a Redis Cluster the two keys are in different slots
      // (CROSSSLOT), and a count and a last-seen time need not change atomically together.
      for (const [field, p] of batch)
        writes.push(
          redis.hincrby(`${defaultsKey}:count`, field, p.messages),
          redis.hset(`${defaultsKey}:seen`, field, p.seen),
        );
      const failed = (await Promise.allSettled(writes)).some((r) => r.status === 'rejected');
      if (!failed) return;
      // Redis away: the counts wait for the next write (a failed hset only repeats a last-seen time).
      for (const [field, p] of batch) {
        const now = pending.get(field);
        pending.set(field, { messages: p.messages + (now?.messages ?? 0), seen: now?.seen ?? p.seen });
      }
      timer ??= setTimeout(() => void flush(), 1000).unref();
    });
    return writing;
  };
  return {
    observe(o): void {
      for (const s of o.ignoredSegments) ignoredMetric.inc({ segment: boundedLabel(segLabels, s) });
      if (o.defaultedAuthorities.size === 0) return;
      const now = new Date().toISOString();
      for (const [ns, system] of o.defaultedAuthorities) {
        defaultsMetric.inc({ namespace: boundedLabel(nsLabels, ns) });
        // Namespaces are codes such as STMARYS (no PHI); capped in length all the same.
        const field = ns.slice(0, 64);
        pending.set(field, { messages: (pending.get(field)?.messages ?? 0) + 1, seen: `${now} ${system}` });
      }
      timer ??= setTimeout(() => void flush(), 1000).unref();
    },
    async defaultedAuthorities(): Promise<DefaultedAuthority[]> {
      const [counts, seen] = await Promise.all([
        redis.hgetall(`${defaultsKey}:count`),
        redis.hgetall(`${defaultsKey}:seen`),
      ]);
      for (const [field, p] of pending) {
        counts[field] = String(Number(counts[field] ?? 0) + p.messages);
        seen[field] = p.seen;
      }
      return Object.entries(counts)
        .map(([namespace, n]) => {
          const [lastSeen = '', system = ''] = (seen[namespace] ?? '').split(' ');
          return { namespace, system, messages: Number(n), lastSeen };
        })
        .sort((a, b) => b.messages - a.messages);
    },
    flush,
  };
}

export async function hl7Module(
  ctx: AreaContext,
  journeys: JourneyService,
  hooks: Hl7Hooks,
): Promise<Hl7Module> {
  const cfg = ctx.config.hl7;
  // Maps are validated now: a broken map stops start-up with every problem listed.
  const roots = [join(projectRoot(), 'mappings'), ...(cfg.mappingsDir ? [cfg.mappingsDir] : [])];
  const mapper = new Mapper(await loadMappings(roots, join(projectRoot(), 'mappings', 'schema.json')));
  const zones = ctx.config.hl7Timezones;
  const observed = observations(ctx);
  const inbound = initInbound(ctx.queues, {
    fhir: ctx.fhir,
    mapper,
    key: cfg.encryptionKey,
    lock: ctx.lock,
    zones,
    journeys: journeyEffects(journeys),
    onMapped: (o) => observed.observe(o),
    onWritten: (resources, message) => hooks.written(resources, message),
    // Ids and the error's kind only: a FHIR server's diagnostics may quote the message.
    onRetry: (jobId, tries, err) =>
      ctx.log.warn({ jobId, tries, errType: err.name }, 'HL7 message not written yet; retrying in place'),
  });
  const queue = inbound.queue;
  // The dry run at the door: map the message as the worker will, and refuse it (AE + ERR) if it cannot be
  // written. FHIR-server failures stay asynchronous (retries, then dead letters).
  const check = (msg: Hl7Message): CheckResult => {
    try {
      return { patientKey: prepareMessage(mapper, zones, msg).keys.keys['patient'] };
    } catch (e) {
      if (e instanceof MappingError)
        return {
          problem: { code: e.code, text: e.message, ...(e.location ? { location: e.location } : {}) },
        };
      // A defect of ours must not take the listener down, nor let the message through unchecked. Its type
      // and stack are logged, not its message, which could quote the message's content.
      ctx.log.error(
        {
          errType: e instanceof Error ? e.name : typeof e,
          stack: e instanceof Error ? e.stack?.split('\n').slice(1, 6).join('\n') : undefined,
        },
        'HL7 intake check failed',
      );
      return { problem: { code: '207', text: 'the message could not be mapped' } };
    }
  };
  const intake = new Hl7Intake({
    // The same partitions on the intake's own connection (connections.ts): an ACK waits on its own commands
    // only, never behind the workers' locks and hooks on the shared producer.
    queue: ctx.queues.intakeHandle<InboundJob>(HL7_INBOUND_QUEUE),
    key: cfg.encryptionKey,
    defaultCharset: cfg.defaultCharset,
    // Every type a message map takes, built-in or a site's own (MAPPINGS_DIR): no list to keep in step.
    supports: (code, trigger, structure) => mapper.supports(code, trigger, structure),
    ...(cfg.intakeCheck === 'map' ? { check } : {}),
  });
  const received = new Counter({
    name: 'careway_hl7_messages_total',
    help: 'HL7 messages received, by channel and acknowledgment code',
    labelNames: ['via', 'code'] as const,
    registers: [ctx.metrics],
  });
  const receive = async (bytes: Buffer, via: 'mllp' | 'http'): Promise<IntakeResult[]> => {
    const results = await intake.receive(bytes);
    for (const r of results) received.inc({ via, code: r.code });
    return results;
  };
  // Queue depth and lag are read when Prometheus scrapes, so they are never stale and cost nothing otherwise.
  new Gauge({
    name: 'careway_hl7_inbound_jobs',
    help: 'Inbound HL7 messages by queue state (waiting, active, delayed, failed = dead-lettered)',
    labelNames: ['state'] as const,
    registers: [ctx.metrics],
    async collect() {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed');
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'careway_hl7_inbound_lag_seconds',
    help: 'Age of the oldest message still waiting to be written to FHIR',
    registers: [ctx.metrics],
    async collect() {
      const [oldest] = await queue.getJobs(['waiting'], 0, 0, true);
      this.set(oldest ? Math.max(0, (Date.now() - oldest.timestamp) / 1000) : 0);
    },
  });
  const outbound = await outboundArea(ctx, mapper, hooks);
  const refused = new Counter({
    name: 'careway_mllp_connections_refused_total',
    help: 'MLLP connections closed on arrival because MLLP_MAX_CONNECTIONS were open',
    registers: [ctx.metrics],
  });
  let port: number | undefined;
  const server = new MllpServer({
    host: ctx.config.host,
    port: ctx.config.mllpPort,
    maxFrameBytes: cfg.maxFrameBytes,
    idleTimeoutMs: cfg.idleTimeoutMs,
    maxConnections: cfg.maxConnections,
    onRefused: () => refused.inc(),
    ...(cfg.tls ? { tls: cfg.tls } : {}),
    handle: async (payload) => (await receive(payload, 'mllp')).map((r) => r.ack),
    handleMany: async (payloads) => {
      const frames = await intake.receiveMany(payloads);
      for (const r of frames.flat()) received.inc({ via: 'mllp', code: r.code });
      return frames.map((rs) => rs.map((r) => r.ack));
    },
    log: ctx.log,
  });
  new Gauge({
    name: 'careway_mllp_connections',
    help: 'MLLP connections open now (at most MLLP_MAX_CONNECTIONS)',
    registers: [ctx.metrics],
    collect() {
      this.set(server.connections);
    },
  });
  return {
    intake,
    queue,
    inbound,
    mapper,
    receive,
    mllpPort: () => port,
    defaultedAuthorities: () => observed.defaultedAuthorities(),
    log: new MessageLog(queue, cfg.encryptionKey),
    ...(outbound ? { outbound } : {}),
    async sendAppointmentChange(change): Promise<void> {
      if (!outbound) return;
      if (!(await outbound.add(change)))
        ctx.log.debug({ change: change.change }, 'no outbound message map sends this change');
    },
    outboundMessages: (limit) => (outbound ? outboundLog(outbound, limit) : Promise.resolve([])),
    async start(): Promise<void> {
      // An AA promises the message is kept: say so loudly when Redis would forget it on a restart, and refuse
      // to listen at all with HL7_REQUIRE_DURABLE=true.
      const persistence = await redisPersistence(ctx.redis.producer);
      if (persistence !== 'aof') {
        if (cfg.requireDurable)
          throw new Error(
            `HL7_REQUIRE_DURABLE: Redis persistence is "${persistence}"; enable appendonly (appendfsync everysec or always) before acknowledging HL7`,
          );
        ctx.log.warn(
          { persistence },
          'Redis has no append-only file: an acknowledged HL7 message can be lost if Redis restarts',
        );
      }
      port = await server.listen();
      ctx.log.info({ port }, 'MLLP listener ready');
    },
    stopIntake: () => server.close(),
    async close(): Promise<void> {
      await server.close();
      await outbound?.close();
      // Bounded: Redis may be the reason for the shutdown.
      await withTimeout(observed.flush(), 2000).catch(() => undefined);
    },
  };
}

/** The outbound maps and queue, when HL7_OUTBOUND_URL is set; the maps are validated now, like the inbound ones. */
async function outboundArea(
  ctx: AreaContext,
  inbound: Mapper,
  hooks: Hl7Hooks,
): Promise<OutboundQueue | undefined> {
  const cfg = ctx.config.hl7Outbound;
  if (!cfg) return undefined;
  const dir = (root: string): string => join(root, 'outbound');
  const roots = [
    dir(join(projectRoot(), 'mappings')),
    ...(ctx.config.hl7.mappingsDir ? [dir(ctx.config.hl7.mappingsDir)] : []),
  ];
  const maps = await loadOutboundMaps(roots, join(projectRoot(), 'mappings', 'outbound', 'schema.json'));
  const sent = new Counter({
    name: 'careway_hl7_outbound_messages_total',
    help: 'HL7 messages sent to the EHR, by trigger event and answer (AA, AE, AR, CA, CE, CR, timeout, unreachable, error)',
    labelNames: ['trigger', 'code'] as const,
    registers: [ctx.metrics],
  });
  ctx.log.info({ host: cfg.host, port: cfg.port, tls: !!cfg.tls }, 'outbound HL7 on');
  return initOutbound(ctx.queues, {
    fhir: ctx.fhir,
    // The inbound registry, reversed: an identifier's system goes out with the namespace the EHR sent it with.
    mapper: new OutboundMapper(maps, inbound.authorities),
    connection: {
      host: cfg.host,
      port: cfg.port,
      ackTimeoutMs: cfg.ackTimeoutMs,
      ...(cfg.tls ? { tls: cfg.tls } : {}),
      maxFrameBytes: ctx.config.hl7.maxFrameBytes,
    },
    names: {
      sendingApplication: cfg.sendingApplication,
      sendingFacility: cfg.sendingFacility,
      receivingApplication: cfg.receivingApplication,
      receivingFacility: cfg.receivingFacility,
    },
    count: (trigger, code) => sent.inc({ trigger, code }),
    ...(hooks.sent ? { answered: (m: Parameters<NonNullable<Hl7Hooks['sent']>>[0]) => hooks.sent!(m) } : {}),
    log: ctx.log,
    attempts: cfg.attempts,
    backoffMs: cfg.backoffMs,
  });
}

async function outboundLog(outbound: OutboundQueue, limit: number): Promise<OutboundListing[]> {
  const jobs = await outbound.queue.getJobs(
    ['waiting', 'delayed', 'active', 'completed', 'failed'],
    0,
    limit - 1,
    false,
  );
  const rows = await Promise.all(
    jobs.map(async (j): Promise<OutboundListing> => {
      const data: OutboundJob = j.data;
      const result = j.returnvalue as OutboundResult | null | undefined;
      const progress = (typeof j.progress === 'object' ? j.progress : {}) as Partial<OutboundProgress>;
      return {
        id: j.id ?? '',
        appointment: `Appointment/${data.appointmentId}`,
        change: data.change,
        trigger: data.trigger,
        controlId: controlIdOf(j.id ?? ''),
        queuedAt: data.queuedAt,
        status: await j.getState(),
        // Tries to reach the EHR (in place, see outbound-worker.ts), plus a delivery after them.
        attempts: Math.max(j.attemptsMade, (progress.tries ?? 0) + (result?.code ? 1 : 0)),
        ...(result?.code ? { ack: result.code } : {}),
        ...(j.failedReason
          ? { error: j.failedReason.slice(0, 300) }
          : progress.lastError && !result
            ? { error: progress.lastError.slice(0, 300) }
            : {}),
      };
    }),
  );
  return rows.sort((a, b) => b.queuedAt.localeCompare(a.queuedAt)).slice(0, limit);
}
