/**
 * The audit area: records who accessed which patient's data, as BALP AuditEvents (balp.ts), durably: `record`
 * resolves once the events are in the `audit-events` queue, and the worker writes them to the audit server, the
 * FHIR server itself or AUDIT_FHIR_BASE_URL when a site keeps audit apart. AUDIT_EVENTS=off turns it off (for a
 * site whose gateway audits, or to measure the cost); nothing is kept in memory only.
 */
import type { AreaContext } from '../area-context.js';
import type { FhirPort } from '../fhir/client.js';
import { auditEvents, type AccessRecord, type AuditSource } from './balp.js';
import { init as initAuditQueue, type AuditQueue } from './audit-worker.js';

export interface AuditModule {
  readonly enabled: boolean;
  readonly queue: AuditQueue | undefined;
  /** Builds the events for one access (one per patient) and enqueues them; resolves once they are durable. */
  record(access: Omit<AccessRecord, 'patient'>, patients: readonly string[]): Promise<void>;
}

export function auditModule(ctx: AreaContext, auditFhir: FhirPort): AuditModule {
  if (!ctx.config.audit.enabled) return { enabled: false, queue: undefined, record: async () => undefined };
  const source: AuditSource = { site: ctx.config.audit.site, observer: 'Careway' };
  // Half a second of events per write: HAPI's cost is mostly per request (bench P3, 2026-12-01: an HL7 feed of
  // ten messages a second wrote one AuditEvent per request at 50 ms, and that request cost HAPI about as much
  // CPU as the message's own transaction). The events are durable in the queue meanwhile.
  const queue = initAuditQueue(ctx.queues, auditFhir, ctx.config.hl7.encryptionKey, {
    maxBatch: 250,
    lingerMs: 500,
  });
  return {
    enabled: true,
    queue,
    record: (access, patients) => queue.add(auditEvents(access, patients, source)),
  };
}
