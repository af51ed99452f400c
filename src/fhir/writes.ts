/**
 * The rules for writes through the `/fhir` facade, as data and pure functions (the route adapts HTTP to them):
 * which SMART permission each interaction needs, how a Bundle entry's request is read, and whether a resource
 * body belongs to a patient's compartment.
 *
 * A patient-context token may only write inside its own compartment. A body is inside when one of the elements
 * behind the type's compartment parameters (CompartmentDefinition/patient) references the token's Patient:
 * `Observation.subject`, `Appointment.participant.actor`, `Coverage.beneficiary`… Checking the body itself,
 * rather than asking the server afterwards, keeps a write that would leave the compartment from ever happening.
 */
import type { Bundle, BundleEntry, Resource } from 'fhir/r4.js';
import { compartmentParams, confiningParam, patientAccessFor } from './compartment.js';

export type WriteInteraction = 'create' | 'update' | 'patch' | 'delete' | 'read' | 'search';

/** The SMART v2 permission each interaction needs (`c`, `u`, `d`, `r`, `s`). */
export const PERMISSION: Readonly<Record<WriteInteraction, 'c' | 'u' | 'd' | 'r' | 's'>> = {
  create: 'c',
  update: 'u',
  patch: 'u',
  delete: 'd',
  read: 'r',
  search: 's',
};

const TYPE_RE = /^[A-Z][A-Za-z]{1,63}$/;
const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;

/** One request of a batch or transaction, as the facade checks it. */
export interface EntryRequest {
  readonly index: number;
  readonly interaction: WriteInteraction;
  readonly type: string;
  readonly id?: string;
  /** The search part of a conditional URL (`Type?identifier=…`), or of `ifNoneExist`. */
  readonly criteria?: string;
  readonly resource?: Resource;
}

export class EntryProblem extends Error {
  constructor(
    readonly index: number,
    message: string,
  ) {
    super(`entry ${index}: ${message}`);
  }
}

/** Reads a Bundle entry's request (`method` + relative `url`) into what the facade decides on. */
export function readEntryRequest(entry: BundleEntry, index: number): EntryRequest {
  const method = entry.request?.method;
  const url = entry.request?.url;
  if (!method || !url) throw new EntryProblem(index, 'request.method and request.url are required');
  if (/^[a-z]+:/i.test(url) || url.startsWith('/'))
    throw new EntryProblem(index, 'request.url must be relative to the FHIR base (e.g. Patient/123)');
  const [path = '', query] = url.split('?', 2) as [string, string | undefined];
  const [type = '', id, ...rest] = path.split('/');
  if (!TYPE_RE.test(type) || rest.length > 0 || (id !== undefined && !ID_RE.test(id)))
    throw new EntryProblem(index, `request.url "${url.slice(0, 100)}" is not Type, Type/id or Type?query`);
  const resource = entry.resource;
  const withBody = (interaction: WriteInteraction, criteria?: string): EntryRequest => {
    if (!resource || resource.resourceType !== type)
      throw new EntryProblem(index, `a ${method} of ${type} needs a ${type} resource`);
    return {
      index,
      interaction,
      type,
      ...(id ? { id } : {}),
      ...(criteria ? { criteria } : {}),
      resource,
    };
  };
  switch (method) {
    case 'POST':
      if (id) throw new EntryProblem(index, 'POST goes to a type (Type), not an instance');
      return withBody('create', entry.request?.ifNoneExist);
    case 'PUT':
      if (!id && !query) throw new EntryProblem(index, 'PUT needs Type/id or a conditional Type?query');
      if (id && resource?.id !== id) throw new EntryProblem(index, 'the resource id must match the URL');
      return withBody('update', query);
    case 'DELETE':
      if (!id && !query) throw new EntryProblem(index, 'DELETE needs Type/id or a conditional Type?query');
      return {
        index,
        interaction: 'delete',
        type,
        ...(id ? { id } : {}),
        ...(query ? { criteria: query } : {}),
      };
    case 'GET':
    case 'HEAD':
      return { index, interaction: id ? 'read' : 'search', type, ...(id ? { id } : {}) };
    case 'PATCH':
      if (!id) throw new EntryProblem(index, 'PATCH needs Type/id');
      return { index, interaction: 'patch', type, id };
    default:
      throw new EntryProblem(index, `request.method ${String(method)} is not supported`);
  }
}

/** A batch or transaction's entries; the Bundle must be one of the two, with at least one entry. */
export function readBundleRequests(bundle: Bundle, maxEntries: number): EntryRequest[] {
  const entries = bundle.entry ?? [];
  if (entries.length === 0) throw new EntryProblem(0, 'the Bundle has no entries');
  if (entries.length > maxEntries)
    throw new EntryProblem(maxEntries, `at most ${maxEntries} entries are taken in one Bundle`);
  return entries.map((e, i) => readEntryRequest(e, i));
}

/**
 * The top-level elements behind a type's compartment parameters, where they are not named as the parameter
 * (the rest are: `subject`, `patient`, `performer`, …).
 */
const MEMBER_ELEMENTS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  Appointment: { actor: 'participant' },
  CareTeam: { participant: 'participant' },
  Composition: { attester: 'attester' },
  Coverage: { 'policy-holder': 'policyHolder' },
  Group: { member: 'member' },
  Provenance: { patient: 'target' },
};

/** Does some Reference under `value` point at `Patient/{id}` (relative or absolute)? */
function referencesPatient(value: unknown, patientId: string): boolean {
  if (Array.isArray(value)) return value.some((v) => referencesPatient(v, patientId));
  if (!value || typeof value !== 'object') return false;
  const ref = (value as { reference?: unknown }).reference;
  if (typeof ref === 'string' && (ref === `Patient/${patientId}` || ref.endsWith(`/Patient/${patientId}`)))
    return true;
  return Object.values(value).some((v) => referencesPatient(v, patientId));
}

/**
 * Is this body inside the patient's compartment? For Patient itself, only the patient's own record; for
 * types outside the compartment (directories, definitions), never: a patient token does not write those.
 */
export function bodyInCompartment(resource: Resource, patientId: string): boolean {
  const type = resource.resourceType;
  if (patientAccessFor(type) !== 'compartment') return false;
  if (type === 'Patient') return resource.id === patientId;
  const rename = MEMBER_ELEMENTS[type] ?? {};
  const record = resource as unknown as Record<string, unknown>;
  return compartmentParams(type).some((param) =>
    referencesPatient(record[rename[param] ?? param], patientId),
  );
}

/** A conditional URL's criteria, narrowed to the patient's compartment (a patient's write matches only theirs). */
export function confineCriteria(type: string, criteria: string, patientId: string): string | undefined {
  const confine = confiningParam(type, patientId);
  if (!confine) return undefined;
  const q = new URLSearchParams(criteria);
  q.append(confine[0], confine[1]);
  return q.toString();
}
