/**
 * One FHIR transaction per HL7 message, idempotent:
 * - every resource is keyed on its business identifier (`Type?identifier=system|value`). One already stored
 *   (read by the worker under the patient's lock) is merged (ownership.ts: the message's fields replace, the
 *   rest is kept) and written with `PUT Type/id` + If-Match, so a change made meanwhile is never overwritten;
 *   a new one is a conditional update on its key. A replay merges to the same content, and HAPI records no
 *   new version for unchanged content;
 * - a resource that has no usable business identifier is left out (it could not be written idempotently);
 *   a required one fails the message;
 * - the Provenance has an id derived from the message (sender + MSH-10), written with PUT: a replay rewrites
 *   the same content.
 */
import type { Bundle, BundleEntry, Identifier, Provenance, Reference, Resource } from 'fhir/r4.js';
import { setPathCopying } from './paths.js';
import { MappingError, type MappedMessage, type MappedResource } from './engine.js';
import { defaultActorKey, mergeIntoStored } from './ownership.js';

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

/**
 * The identifier a resource is keyed on: of those with a system and a value, the medical record number
 * (type MR) when there is one (PID-3 often lists an SSN or an enterprise id first), else the first.
 */
export function businessKey(resource: Record<string, unknown>, path: string): Identifier | undefined {
  const list = resource[path];
  if (!Array.isArray(list)) return undefined;
  const usable = (list as Identifier[]).filter((i) => i.system && i.value);
  return usable.find((i) => i.type?.coding?.some((c) => c.code === 'MR')) ?? usable[0];
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

/**
 * The instances of `target` that `r` refers to: inside a group, its own children (a report's results) or its
 * own parent (a result's report); otherwise every instance (a list path takes them all).
 */
function related(r: MappedResource, target: string, among: readonly MappedResource[]): MappedResource[] {
  const children = among.filter((k) => k.id === target && k.parent === r.instance);
  if (children.length) return children;
  if (r.parent) {
    const parent = among.find((k) => k.instance === r.parent);
    if (parent?.id === target) return [parent];
  }
  const all = among.filter((k) => k.id === target);
  // A grouped resource never points into another group.
  return all.filter((k) => k.parent === undefined || k.parent === r.parent || r.parent === undefined);
}

/** Adds the composed identifier (e.g. patient MRN + allergen code) for segments that carry no identifier. */
function withIdentity(mapped: MappedMessage): MappedMessage {
  const patient = mapped.resources.find((r) => r.id === 'patient');
  const patientValue = patient ? businessKey(patient.resource, 'identifier')?.value : undefined;
  return {
    ...mapped,
    resources: mapped.resources.map((r) => {
      if (!r.identity) return r;
      const parts = r.identity.from.map((spec) => {
        // `?part`: may be empty, and is then left out (OBX-4 sub-id, when the sender uses none).
        const optional = spec.startsWith('?');
        const p = optional ? spec.slice(1) : spec;
        let v: unknown;
        if (p === 'patient') v = patientValue;
        // `ref:<id>`: the business identifier value of another resource of the message (e.g. the report;
        // in a group, its own report).
        else if (p.startsWith('ref:')) {
          const other = related(r, p.slice(4), mapped.resources)[0];
          v = other ? businessKey(other.resource, 'identifier')?.value : undefined;
        } else if (p.startsWith('refkey:')) {
          // `refkey:<id>`: its whole key, system|value (the triage Task is keyed like a FHIR referral's).
          const other = related(r, p.slice(7), mapped.resources)[0];
          const k = other ? businessKey(other.resource, 'identifier') : undefined;
          v = k ? `${k.system}|${k.value}` : undefined;
        } else v = getPath(r.resource, p);
        return optional && (v === undefined || v === '') ? null : v;
      });
      if (parts.some((p) => p === undefined || p === '' || (typeof p === 'object' && p !== null))) return r;
      const identifier: Identifier = {
        system: r.identity.system,
        value: parts
          .filter((p) => p !== null)
          .map(String)
          .join('|'),
      };
      const existing = (r.resource['identifier'] as Identifier[] | undefined) ?? [];
      return { ...r, resource: { ...r.resource, identifier: [identifier, ...existing] } };
    }),
  };
}

export interface MessageKeys {
  /** `Type?identifier=…` of each resource that can be written, by instance. */
  readonly keys: Readonly<Record<string, string>>;
  /** Instances left out: no usable business identifier. */
  readonly skipped: readonly string[];
}

/**
 * The business key of every resource of a mapped message (the worker reads the stored ones by it before
 * building the transaction). A required resource without one fails the message, naming the field.
 */
export function messageKeys(input: MappedMessage): MessageKeys {
  return keysOf(withIdentity(input));
}

function keysOf(mapped: MappedMessage): MessageKeys {
  const keys: Record<string, string> = {};
  const skipped: string[] = [];
  for (const r of mapped.resources) {
    const key = r.key ? businessKey(r.resource, r.key) : undefined;
    if (!key) {
      if (r.required) {
        const field = r.keyFields[0];
        throw new MappingError(
          `${r.source.segment}${field ? `-${field}` : ''}: the ${String(r.resource['resourceType'])} identifier is missing (an ID with an assigning authority or a sending facility)`,
          '101',
          { ...r.source, ...(field ? { field } : {}) },
        );
      }
      skipped.push(r.instance);
      continue;
    }
    keys[r.instance] =
      `${String(r.resource['resourceType'])}?${new URLSearchParams({ identifier: `${key.system}|${key.value}` }).toString()}`;
  }
  return { keys, skipped };
}

export interface BuildOptions {
  /** The stored resource for each instance the worker found by its key: merged and written with If-Match. */
  readonly stored?: ReadonlyMap<string, Resource>;
}

export function buildTransaction(
  input: MappedMessage,
  facts: MessageFacts,
  options: BuildOptions = {},
): BuiltTransaction {
  const mapped = withIdentity(input);
  const { keys, skipped } = keysOf(mapped);
  const urls = new Map<string, string>();
  const kept = mapped.resources.filter((r) => keys[r.instance] !== undefined);
  for (const r of kept) urls.set(r.instance, `urn:uuid:${crypto.randomUUID()}`);
  const stored = options.stored ?? new Map<string, Resource>();
  // This message's resources by their transaction URL, so `urn:uuid:` of the Patient matches `Patient/<id>`
  // when participants are compared with the stored ones.
  const storedRefByUrl = new Map<string, string>();
  for (const r of kept) {
    const s = stored.get(r.instance);
    if (s?.id) storedRefByUrl.set(urls.get(r.instance) ?? '', `${s.resourceType}/${s.id}`);
  }
  const entries: BundleEntry[] = kept.map((r) => {
    let resource = { ...r.resource };
    for (const [path, target] of Object.entries(r.refs)) {
      // The written instances of the target (in a group: this resource's own); a list path takes them all.
      const targets = related(r, target, kept).map((k) => urls.get(k.instance) ?? '');
      for (const url of path.endsWith('[]') ? targets : targets.slice(0, 1))
        setPathCopying(resource, path, { reference: url } satisfies Reference);
    }
    const before = stored.get(r.instance);
    if (before?.id) {
      resource = mergeIntoStored(before as unknown as Record<string, unknown>, resource, r.claims, {
        actorKey: (actor) => {
          const ref = typeof actor?.['reference'] === 'string' ? actor['reference'] : undefined;
          return ref ? (storedRefByUrl.get(ref) ?? ref) : defaultActorKey(actor);
        },
      });
      resource['id'] = before.id;
    }
    return {
      fullUrl: urls.get(r.instance) ?? '',
      resource: resource as unknown as BundleEntry['resource'] & object,
      request: before?.id
        ? {
            method: 'PUT',
            url: `${before.resourceType}/${before.id}`,
            ...(before.meta?.versionId ? { ifMatch: `W/"${before.meta.versionId}"` } : {}),
          }
        : { method: 'PUT', url: keys[r.instance] ?? '' },
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
