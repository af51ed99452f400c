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

function getPath(obj: unknown, path: string): unknown {
  let node: unknown = obj;
  for (const part of path.split('.')) {
    const m = /^([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?$/.exec(part);
    if (!m?.[1] || node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[m[1]];
    if (m[2] !== undefined) node = Array.isArray(node) ? node[Number(m[2])] : undefined;
  }
  return node;
}

/** Adds the composed identifier (e.g. patient MRN + allergen code) for segments that carry no identifier. */
function withIdentity(mapped: MappedMessage): MappedMessage {
  const patient = mapped.resources.find((r) => r.id === 'patient');
  const patientValue = patient ? businessKey(patient.resource, 'identifier')?.value : undefined;
  return {
    ...mapped,
    resources: mapped.resources.map((r) => {
      if (!r.identity) return r;
      const parts = r.identity.from.map((p) => {
        if (p === 'patient') return patientValue;
        // `ref:<id>`: the business identifier value of another resource of the message (e.g. the report).
        if (p.startsWith('ref:')) {
          const other = mapped.resources.find((x) => x.id === p.slice(4));
          return other ? businessKey(other.resource, 'identifier')?.value : undefined;
        }
        return getPath(r.resource, p);
      });
      if (parts.some((p) => p === undefined || p === '' || typeof p === 'object')) return r;
      const identifier: Identifier = { system: r.identity.system, value: parts.map(String).join('|') };
      const existing = (r.resource['identifier'] as Identifier[] | undefined) ?? [];
      return { ...r, resource: { ...r.resource, identifier: [identifier, ...existing] } };
    }),
  };
}

export function buildTransaction(input: MappedMessage, facts: MessageFacts): BuiltTransaction {
  const mapped = withIdentity(input);
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
      skipped.push(r.instance);
      return false;
    }
    urls.set(r.instance, `urn:uuid:${crypto.randomUUID()}`);
    keys[r.instance] =
      `${String(r.resource['resourceType'])}?${new URLSearchParams({ identifier: `${key.system}|${key.value}` }).toString()}`;
    return true;
  });
  const entries: BundleEntry[] = kept.map((r) => {
    const resource = structuredClone(r.resource);
    for (const [path, target] of Object.entries(r.refs)) {
      // Every written instance of the target (a repeating segment gives several); a list path takes them all.
      const targets = kept.filter((k) => k.id === target).map((k) => urls.get(k.instance) ?? '');
      for (const url of path.endsWith('[]') ? targets : targets.slice(0, 1))
        setPath(resource, path, { reference: url } satisfies Reference);
    }
    return {
      fullUrl: urls.get(r.instance) ?? '',
      resource: resource as unknown as BundleEntry['resource'] & object,
      request: { method: 'PUT', url: keys[r.instance] ?? '' },
    };
  });
  const provenance: Provenance = {
    resourceType: 'Provenance',
    id: `hl7-${facts.jobId}`,
    target: kept.map((r) => ({ reference: urls.get(r.instance) ?? '' })),
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
