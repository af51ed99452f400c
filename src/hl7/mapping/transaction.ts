/**
 * One FHIR transaction per HL7 message, idempotent:
 * - every resource is a conditional update keyed on its business identifier (`Type?identifier=system|value`),
 *   so a replay matches what the first run wrote and HAPI records no new version for unchanged content;
 * - a resource that has no usable business identifier is left out (it could not be written idempotently);
 *   a required one fails the message;
 * - the Provenance has an id derived from the message (sender + MSH-10), written with PUT: a replay rewrites
 *   the same content.
 */
import type { Bundle, BundleEntry, Identifier, Provenance, Reference } from 'fhir/r4.js';
import { setPath } from './paths.js';
import { MappingError, type MappedMessage } from './engine.js';

export interface MessageFacts {
  /** The inbound job id (hash of sender + MSH-10): the Provenance id is derived from it. */
  readonly jobId: string;
  readonly sender: string;
  readonly controlId: string;
  readonly type: string;
  /** When Careway first received the message (kept in the job, so replays write the same Provenance). */
  readonly receivedAt: string;
}

export interface BuiltTransaction {
  readonly bundle: Bundle;
  /** `Type?identifier=…` of each written resource, by message resource id. */
  readonly keys: Readonly<Record<string, string>>;
  readonly skipped: readonly string[];
}

function businessKey(resource: Record<string, unknown>, path: string): Identifier | undefined {
  const list = resource[path];
  return Array.isArray(list) ? (list as Identifier[]).find((i) => i.system && i.value) : undefined;
}

export function buildTransaction(mapped: MappedMessage, facts: MessageFacts): BuiltTransaction {
  const urls = new Map<string, string>();
  const keys: Record<string, string> = {};
  const skipped: string[] = [];
  const kept = mapped.resources.filter((r) => {
    const key = r.key ? businessKey(r.resource, r.key) : undefined;
    if (!key) {
      if (r.required)
        throw new MappingError(
          `${String(r.resource['resourceType'])} (${r.id}) has no business identifier with a system`,
        );
      skipped.push(r.id);
      return false;
    }
    urls.set(r.id, `urn:uuid:${crypto.randomUUID()}`);
    keys[r.id] =
      `${String(r.resource['resourceType'])}?${new URLSearchParams({ identifier: `${key.system}|${key.value}` }).toString()}`;
    return true;
  });
  const entries: BundleEntry[] = kept.map((r) => {
    const resource = structuredClone(r.resource);
    for (const [path, target] of Object.entries(r.refs)) {
      const url = urls.get(target);
      if (url) setPath(resource, path, { reference: url } satisfies Reference);
    }
    return {
      fullUrl: urls.get(r.id) ?? '',
      resource: resource as unknown as BundleEntry['resource'] & object,
      request: { method: 'PUT', url: keys[r.id] ?? '' },
    };
  });
  const provenance: Provenance = {
    resourceType: 'Provenance',
    id: `hl7-${facts.jobId}`,
    target: kept.map((r) => ({ reference: urls.get(r.id) ?? '' })),
    recorded: facts.receivedAt,
    activity: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE' }],
      text: `hl7:${facts.type}`,
    },
    agent: [
      {
        type: {
          coding: [
            { system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' },
          ],
        },
        who: { identifier: { system: 'urn:careway:hl7-sender', value: facts.sender } },
      },
    ],
    entity: [
      {
        role: 'source',
        what: { identifier: { system: `urn:careway:hl7-sender:${facts.sender}`, value: facts.controlId } },
      },
    ],
  };
  if (kept.length === 0) throw new MappingError('the message maps to no resource that can be written');
  entries.push({
    fullUrl: `urn:uuid:${crypto.randomUUID()}`,
    resource: provenance,
    request: { method: 'PUT', url: `Provenance/${provenance.id}` },
  });
  return { bundle: { resourceType: 'Bundle', type: 'transaction', entry: entries }, keys, skipped };
}
