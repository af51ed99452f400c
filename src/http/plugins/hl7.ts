/**
 * HL7 v2 intake: the MLLP listener on MLLP_PORT (bound to HOST) and the shared intake behind it and behind
 * `POST /hl7`. Messages become sealed jobs on the `hl7-inbound` queue before any positive ACK.
 * The listener starts when the app is ready and stops, after its connections, when the app closes.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import {
  Hl7Intake,
  HL7_INBOUND_QUEUE,
  type InboundJob,
  type IntakeResult,
  type CheckResult,
} from '../../hl7/intake.js';
import { MllpServer } from '../../hl7/mllp/server.js';
import { loadMappings, Mapper, MappingError } from '../../hl7/mapping/engine.js';
import {
  init as initInbound,
  prepareMessage,
  type InboundQueue,
  type MappingObservations,
} from '../../hl7/inbound-worker.js';
import type { Hl7Message } from '../../hl7/message.js';
import { redisLock } from '../../queues/locks.js';
import { PartitionedQueue } from '../../queues/partitioned.js';
import { journeyEffects } from '../../hl7/journey-effects.js';
import { projectRoot } from '../../shared/paths.js';
import { join } from 'node:path';

export interface DefaultedAuthority {
  readonly namespace: string;
  readonly system: string;
  readonly messages: number;
  readonly lastSeen: string;
}

/** Metric labels come from the feed: only short plain names, and a bounded number of them. */
function boundedLabel(seen: Set<string>, value: string): string {
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(value)) return 'other';
  if (seen.has(value)) return value;
  if (seen.size >= 200) return 'other';
  seen.add(value);
  return value;
}

declare module 'fastify' {
  interface FastifyInstance {
    hl7: {
      intake: Hl7Intake;
      queue: PartitionedQueue<InboundJob>;
      inbound: InboundQueue;
      mapper: Mapper;
      receive(bytes: Buffer, via: 'mllp' | 'http'): Promise<IntakeResult[]>;
      mllpPort(): number | undefined;
      /** Namespaces that fell back to the default authority rule, with counts (GET /hl7/authorities). */
      defaultedAuthorities(): Promise<DefaultedAuthority[]>;
    };
  }
}

export default fp(
  async function hl7(app: FastifyInstance) {
    const cfg = app.config.hl7;
    // Partitioned by patient: one patient's messages in arrival order, different patients in parallel.
    const queue = new PartitionedQueue<InboundJob>(app.redis, HL7_INBOUND_QUEUE, cfg.partitions, {
      // Completed jobs are kept a week: they are the dedupe record for resends and the replay source.
      defaultJobOptions: {
        removeOnComplete: { age: 7 * 86400 },
        removeOnFail: { age: 30 * 86400 },
        attempts: 8,
        backoff: { type: 'exponential', delay: 1000 },
      },
    });
    // Maps are validated now: a broken map stops start-up with every problem listed.
    const roots = [join(projectRoot(), 'mappings'), ...(cfg.mappingsDir ? [cfg.mappingsDir] : [])];
    const mapper = new Mapper(await loadMappings(roots, join(projectRoot(), 'mappings', 'schema.json')));
    const zones = app.config.hl7Timezones;
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
        app.log.error(
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
      queue,
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
      registers: [app.metrics],
    });
    const receive = async (bytes: Buffer, via: 'mllp' | 'http'): Promise<IntakeResult[]> => {
      const results = await intake.receive(bytes);
      for (const r of results) received.inc({ via, code: r.code });
      return results;
    };
    const defaultsMetric = new Counter({
      name: 'careway_hl7_authority_defaults_total',
      help: 'Messages with an assigning authority that no registry entry names (system from the default rule), by namespace',
      labelNames: ['namespace'] as const,
      registers: [app.metrics],
    });
    const ignoredMetric = new Counter({
      name: 'careway_hl7_ignored_segments_total',
      help: 'Segments no map reads (Z-segments, unknown ones), ignored, by segment name',
      labelNames: ['segment'] as const,
      registers: [app.metrics],
    });
    const nsLabels = new Set<string>();
    const segLabels = new Set<string>();
    const redis = app.redis.producer;
    const defaultsKey = `${app.config.queuePrefix}:hl7:authority-defaults`;
    const observe = async (o: MappingObservations): Promise<void> => {
      for (const s of o.ignoredSegments) ignoredMetric.inc({ segment: boundedLabel(segLabels, s) });
      if (o.defaultedAuthorities.size === 0) return;
      const tx = redis.multi();
      const now = new Date().toISOString();
      for (const [ns, system] of o.defaultedAuthorities) {
        defaultsMetric.inc({ namespace: boundedLabel(nsLabels, ns) });
        // Namespaces are codes such as STMARYS (no PHI); capped in length all the same.
        const field = ns.slice(0, 64);
        tx.hincrby(`${defaultsKey}:count`, field, 1).hset(`${defaultsKey}:seen`, field, `${now} ${system}`);
      }
      await tx.exec();
    };
    const defaultedAuthorities = async (): Promise<DefaultedAuthority[]> => {
      const [counts, seen] = await Promise.all([
        redis.hgetall(`${defaultsKey}:count`),
        redis.hgetall(`${defaultsKey}:seen`),
      ]);
      return Object.entries(counts)
        .map(([namespace, n]) => {
          const [lastSeen = '', system = ''] = (seen[namespace] ?? '').split(' ');
          return { namespace, system, messages: Number(n), lastSeen };
        })
        .sort((a, b) => b.messages - a.messages);
    };
    const inbound = initInbound(app.redis, queue, {
      fhir: app.fhir,
      mapper,
      key: cfg.encryptionKey,
      lock: redisLock(app.redis.producer),
      zones,
      journeys: journeyEffects(app.journeys),
      onMapped: observe,
      // Scheduling reacts (a cancellation frees Slots for the waitlist, a no-show opens a follow-up Task) and
      // calls the reminder re-planning hook.
      onAppointmentChanged: (key) => app.scheduling.appointmentWrittenByHl7(key),
    });
    // Queue depth and lag are read when Prometheus scrapes, so they are never stale and cost nothing otherwise.
    new Gauge({
      name: 'careway_hl7_inbound_jobs',
      help: 'Inbound HL7 messages by queue state (waiting, active, delayed, failed = dead-lettered)',
      labelNames: ['state'] as const,
      registers: [app.metrics],
      async collect() {
        const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed');
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'careway_hl7_inbound_lag_seconds',
      help: 'Age of the oldest message still waiting to be written to FHIR',
      registers: [app.metrics],
      async collect() {
        const [oldest] = await queue.getJobs(['waiting'], 0, 0, true);
        this.set(oldest ? Math.max(0, (Date.now() - oldest.timestamp) / 1000) : 0);
      },
    });
    let port: number | undefined;
    const server = new MllpServer({
      host: app.config.host,
      port: app.config.mllpPort,
      maxFrameBytes: cfg.maxFrameBytes,
      idleTimeoutMs: cfg.idleTimeoutMs,
      ...(cfg.tls ? { tls: cfg.tls } : {}),
      handle: async (payload) => (await receive(payload, 'mllp')).map((r) => r.ack),
      log: app.log,
    });
    app.decorate('hl7', {
      intake,
      queue,
      inbound,
      mapper,
      receive,
      mllpPort: () => port,
      defaultedAuthorities,
    });
    app.addHook('onReady', async () => {
      port = await server.listen();
      app.log.info({ port }, 'MLLP listener ready');
    });
    app.addHook('onClose', async () => {
      await server.close();
    });
  },
  {
    name: 'careway-hl7',
    dependencies: ['careway-infrastructure', 'careway-metrics', 'careway-journeys', 'careway-scheduling'],
  },
);
