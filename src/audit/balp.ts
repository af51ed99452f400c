/**
 * AuditEvents in the shape of IHE Basic Audit Log Patterns (BALP): one pure builder for every access Careway
 * audits, so a privacy officer reads REST reads, searches, writes, operations and HL7 messages the same way.
 *
 * - `type` is `rest` (DICOM 110100 "Application Activity" for HL7 v2 messages); `subtype` the interaction;
 *   `action` C/R/U/D/E (searches and operations are E, as BALP's query pattern has it).
 * - Agents: the user (requestor; `who` the token's subject, `altId` too so it is searchable, the `fhirUser`,
 *   the client id, and the token id as `policy`), Careway (the server) and the client's network address.
 * - Entities: each patient (role 1), the data touched (`Type/id`), the query of a search (base64, as BALP says),
 *   and the request id (BALP's X-Request-Id entity), so a log line and an event can be matched.
 * - A failure is audited too: `outcome` 4 for a refusal (4xx), 8 for a server failure (5xx), with the reason.
 *
 * Privacy: a search whose answer spans several patients yields one event per patient (BALP's rule), so a patient
 * reading who accessed their own record never sees another patient's id in it.
 */
import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding, Reference } from 'fhir/r4.js';
import { randomUUID } from 'node:crypto';

export type AuditAction = 'C' | 'R' | 'U' | 'D' | 'E';

/** What a REST interaction or an HL7 message did; everything here is ids and codes, built by the edge. */
export interface AccessRecord {
  /** FHIR restful-interaction code (read, vread, search-type, create, update, patch, delete, transaction,
   * batch, operation) or `hl7v2` for a message. */
  readonly interaction: string;
  readonly action: AuditAction;
  /** HTTP status (or 200/400/500 for an HL7 message's AA/AE/AR). */
  readonly status: number;
  readonly at: Date;
  readonly user?: {
    readonly subject: string;
    readonly fhirUser?: string;
    readonly clientId?: string;
    readonly tokenId?: string;
  };
  /** The client's network address. */
  readonly address?: string;
  /** The patient this event is about (one per event; see the header). */
  readonly patient?: string;
  /** The data touched: `Type/id` references, or `Type` for a search. */
  readonly data?: readonly string[];
  /** The query of a search, as the client sent it (kept base64, per BALP). */
  readonly query?: string;
  /** The operation (`$book`) or HL7 message type (`ADT^A04`), shown as the event's `subtype` display. */
  readonly detail?: string;
  readonly requestId?: string;
  /** Why it failed, for 4xx/5xx: the error code only, never content that could quote data. */
  readonly reason?: string;
}

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const REST_TYPE: Coding = {
  system: 'http://terminology.hl7.org/CodeSystem/audit-event-type',
  code: 'rest',
  display: 'RESTful Operation',
};
const HL7_TYPE: Coding = { system: DCM, code: '110100', display: 'Application Activity' };
const INTERACTION = 'http://hl7.org/fhir/restful-interaction';
const BALP_ENTITY = 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType';
const OBJECT_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
/** Careway's naming of a resource by its `Type/id` on the FHIR server. */
const RESOURCE_ID = 'urn:careway:resource';

/** The observer: Careway itself (an Device reference would need a Device on the server; a display suffices). */
export interface AuditSource {
  readonly site: string;
  readonly observer: string;
}

function outcomeOf(status: number): AuditEvent['outcome'] {
  if (status >= 500) return '8';
  if (status >= 400) return '4';
  return '0';
}

function agents(r: AccessRecord, source: AuditSource): AuditEventAgent[] {
  const out: AuditEventAgent[] = [];
  if (r.user) {
    out.push({
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-RoleClass', code: 'AGNT' }] },
      // The token's fhirUser is shown, not referenced: it may live on another server, or be gone later.
      who: {
        identifier: { system: 'urn:careway:token-subject', value: r.user.subject },
        ...(r.user.fhirUser ? { display: r.user.fhirUser } : {}),
      },
      altId: r.user.subject,
      ...(r.user.clientId ? { name: r.user.clientId } : {}),
      requestor: true,
      ...(r.user.tokenId ? { policy: [`urn:careway:token:${r.user.tokenId}`] } : {}),
    });
  }
  out.push({
    type: { coding: [{ system: DCM, code: '110153', display: 'Source Role ID' }] },
    who: { display: r.user?.clientId ?? 'client' },
    requestor: !r.user,
    ...(r.address ? { network: { address: r.address, type: '2' } } : {}),
  });
  out.push({
    type: { coding: [{ system: DCM, code: '110152', display: 'Destination Role ID' }] },
    who: { display: source.observer },
    requestor: false,
  });
  return out;
}

function entities(r: AccessRecord): AuditEventEntity[] {
  const out: AuditEventEntity[] = [];
  if (r.patient)
    out.push({
      // A literal reference (searchable as AuditEvent?patient=) for an access that succeeded, so the patient
      // exists; a refusal may name one that does not, and is kept by identifier.
      what:
        r.status < 400
          ? { reference: `Patient/${r.patient}` }
          : {
              identifier: { system: RESOURCE_ID, value: `Patient/${r.patient}` },
              display: `Patient/${r.patient}`,
            },
      type: { system: OBJECT_TYPE, code: '1', display: 'Person' },
      role: { system: OBJECT_ROLE, code: '1', display: 'Patient' },
    });
  for (const d of r.data ?? []) {
    // Data is named by identifier, not by a literal reference: an audit record must not depend on (or block the
    // deletion of) what it names, and a refused read may name something that does not exist.
    const what: Reference = d.includes('/')
      ? { identifier: { system: RESOURCE_ID, value: d }, display: d }
      : { display: d };
    if (d === `Patient/${r.patient}`) continue;
    out.push({
      what,
      type: { system: OBJECT_TYPE, code: '2', display: 'System Object' },
      role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' },
    });
  }
  if (r.query !== undefined)
    out.push({
      type: { system: OBJECT_TYPE, code: '2', display: 'System Object' },
      role: { system: OBJECT_ROLE, code: '24', display: 'Query' },
      query: Buffer.from(r.query, 'utf8').toString('base64'),
    });
  if (r.requestId)
    out.push({
      what: { identifier: { value: r.requestId } },
      type: { system: BALP_ENTITY, code: 'XrequestId', display: 'X-Request-Id' },
    });
  return out;
}

/** One AuditEvent, with a client-assigned id so a retried write stores it once. */
export function auditEvent(r: AccessRecord, source: AuditSource): AuditEvent & { id: string } {
  const hl7 = r.interaction === 'hl7v2';
  return {
    resourceType: 'AuditEvent',
    id: `ae-${randomUUID()}`,
    type: hl7 ? HL7_TYPE : REST_TYPE,
    subtype: [
      hl7
        ? {
            system: 'http://terminology.hl7.org/CodeSystem/v2-0003',
            code: r.detail?.split('^')[1] ?? 'unknown',
            ...(r.detail ? { display: r.detail } : {}),
          }
        : { system: INTERACTION, code: r.interaction, ...(r.detail ? { display: r.detail } : {}) },
    ],
    action: r.action,
    recorded: r.at.toISOString(),
    outcome: outcomeOf(r.status),
    ...(r.status >= 400 ? { outcomeDesc: `${r.status}${r.reason ? ` ${r.reason}` : ''}` } : {}),
    agent: agents(r, source),
    source: {
      site: source.site,
      observer: { display: source.observer },
      type: [
        {
          system: 'http://terminology.hl7.org/CodeSystem/security-source-type',
          code: '4',
          display: 'Application Server',
        },
      ],
    },
    entity: entities(r),
  };
}

/**
 * The events for one access: one per patient named (at most `maxPatients`; beyond that one event without a
 * patient, saying how many were left out), or one without a patient when none is.
 */
export function auditEvents(
  r: Omit<AccessRecord, 'patient'>,
  patients: readonly string[],
  source: AuditSource,
  maxPatients = 50,
): (AuditEvent & { id: string })[] {
  const distinct = [...new Set(patients)];
  if (distinct.length === 0) return [auditEvent(r, source)];
  const events = distinct.slice(0, maxPatients).map((patient) => auditEvent({ ...r, patient }, source));
  if (distinct.length > maxPatients)
    events.push(
      auditEvent(
        { ...r, detail: `${r.detail ?? r.interaction}; ${distinct.length - maxPatients} more patients` },
        source,
      ),
    );
  return events;
}
