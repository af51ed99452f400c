/**
 * HL7 v2 intake: the MLLP listener on MLLP_PORT (bound to HOST) and the shared intake behind it and behind
 * `POST /hl7`. Messages become sealed jobs on the `hl7-inbound` queue before any positive ACK.
 * The listener starts when the app is ready and stops, after its connections, when the app closes.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import { Hl7Intake, HL7_INBOUND_QUEUE, type InboundJob, type IntakeResult } from '../../hl7/intake.js';
import { MllpServer } from '../../hl7/mllp/server.js';
import { loadMappings, Mapper } from '../../hl7/mapping/engine.js';
import { init as initInbound, type InboundQueue } from '../../hl7/inbound-worker.js';
import { redisLock } from '../../queues/locks.js';
import { PartitionedQueue } from '../../queues/partitioned.js';
import { journeyEffects } from '../../hl7/journey-effects.js';
import { projectRoot } from '../../shared/paths.js';
import { join } from 'node:path';

declare module 'fastify' {
  interface FastifyInstance {
    hl7: {
      intake: Hl7Intake;
      queue: PartitionedQueue<InboundJob>;
      inbound: InboundQueue;
      receive(bytes: Buffer, via: 'mllp' | 'http'): Promise<IntakeResult[]>;
      mllpPort(): number | undefined;
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
    const intake = new Hl7Intake({ queue, key: cfg.encryptionKey, defaultCharset: cfg.defaultCharset });
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
    // Maps are validated now: a broken map stops start-up with every problem listed.
    const roots = [join(projectRoot(), 'mappings'), ...(cfg.mappingsDir ? [cfg.mappingsDir] : [])];
    const mapper = new Mapper(await loadMappings(roots, join(projectRoot(), 'mappings', 'schema.json')));
    const inbound = initInbound(app.redis, queue, {
      fhir: app.fhir,
      mapper,
      key: cfg.encryptionKey,
      lock: redisLock(app.redis.producer),
      zones: app.config.hl7Timezones,
      journeys: journeyEffects(app.journeys),
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
    app.decorate('hl7', { intake, queue, inbound, receive, mllpPort: () => port });
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
