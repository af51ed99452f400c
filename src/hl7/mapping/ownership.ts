/**
 * The EHR owns its fields, Careway owns its own: how a mapped HL7 resource is merged into the stored one.
 *
 * An ADT A08 or an SIU S14 carries the sender's fields only. Writing the mapped resource whole would erase
 * what Careway and other systems keep on the same resource (scheduling preferences, the patient's time zone,
 * the engagement opt-out, the language the patient chose, an appointment the patient confirmed). So, per
 * top-level element, by the message's claims (engine.ts, `Claim`):
 * - `set`: the message's segments map it and carry a value: it replaces the stored element;
 * - `clear`: HL7 explicit null (`""`): the stored element is removed, as the standard says;
 * - `default`: a map's fixed value (e.g. a new Appointment is `booked`): written only when nothing is stored;
 * - anything the message does not claim is kept as stored.
 * Lists with an identity of their own merge instead of replacing:
 * - `identifier`: by system (the sender's PID-3 replaces its own identifiers; a portal id stays), and
 *   identical identifiers are kept once;
 * - `extension`: by url (the journey link is rewritten; preferences, zone and opt-out stay);
 * - `participant` (Appointment): the message's list, but a participant already stored keeps its `status`
 *   (the patient's confirmation by reply, a practitioner's acceptance are not the EHR's to reset).
 * The function is pure: merging the same message into its own result gives the same result, which is what
 * makes a replay a no-op on the FHIR server (HAPI keeps no new version for unchanged content).
 */
import { uniqueValues, type Claims } from './engine.js';
import { cloneJson } from './paths.js';

type Obj = Record<string, unknown>;

const CHOICE =
  /^(value|deceased|effective|onset|abatement|occurrence|multipleBirth|born|performed|timing|asNeeded|reported|serviced|medication)[A-Z]/;

/** Elements that are the server's or the merge's own, never taken from a message. */
const SERVER_OWNED = new Set(['resourceType', 'id', 'meta', 'text']);

export interface MergeOptions {
  /** The key of a participant actor, so that `urn:uuid:` of this message's Patient matches `Patient/<id>`. */
  readonly actorKey?: (actor: Obj | undefined) => string | undefined;
}

export function mergeIntoStored(
  stored: Obj,
  mapped: Obj,
  claims: Readonly<Claims>,
  o: MergeOptions = {},
): Obj {
  const out: Obj = cloneJson(stored);
  const meta = out['meta'] as Obj | undefined;
  if (meta) {
    // versionId and lastUpdated are the server's; the write is versioned with If-Match instead.
    const { versionId: _v, lastUpdated: _l, ...rest } = meta;
    if (Object.keys(rest).length) out['meta'] = rest;
    else delete out['meta'];
  }
  for (const [k, value] of Object.entries(mapped)) {
    if (SERVER_OWNED.has(k) || value === undefined) continue;
    const c = claims[k] ?? 'set';
    if (c === 'default') {
      if (out[k] === undefined) out[k] = cloneJson(value);
      continue;
    }
    if (c === 'clear') continue;
    // A choice element (value[x], deceased[x], effective[x]…) has one type at a time: the sender's replaces
    // whichever type is stored (an SN result that turns from a ratio into a quantity, PID-29 after PID-30).
    const choice = CHOICE.exec(k)?.[1];
    if (choice)
      for (const other of Object.keys(out))
        if (other !== k && CHOICE.exec(other)?.[1] === choice) delete out[other];
    // Identical identifiers (a stored duplicate, a sender repeating one) are kept once.
    if (k === 'identifier') out[k] = uniqueValues(mergeBy(out[k], value, (i) => str((i as Obj)['system'])));
    else if (k === 'extension') out[k] = mergeBy(out[k], value, (e) => str((e as Obj)['url']));
    else if (k === 'participant') out[k] = mergeParticipants(out[k], value, o.actorKey ?? defaultActorKey);
    else out[k] = cloneJson(value);
  }
  for (const [k, c] of Object.entries(claims)) {
    if (c === 'clear' && !SERVER_OWNED.has(k)) delete out[k];
  }
  return out;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** The mapped elements first (in their order), then the stored ones whose key the message did not send. */
function mergeBy(stored: unknown, mapped: unknown, key: (x: unknown) => string | undefined): unknown[] {
  const next = Array.isArray(mapped) ? (cloneJson(mapped) as unknown[]) : [];
  const sent = new Set(next.map(key).filter((k): k is string => k !== undefined));
  const kept = (Array.isArray(stored) ? (stored as unknown[]) : []).filter((x) => {
    const k = key(x);
    return k === undefined || !sent.has(k);
  });
  return [...next, ...kept];
}

/** A participant's actor as a comparable key: its reference, else its identifier, else its display. */
export function defaultActorKey(actor: Obj | undefined): string | undefined {
  if (!actor) return undefined;
  const ref = str(actor['reference']);
  if (ref) return ref;
  const id = actor['identifier'] as Obj | undefined;
  if (id) return `${str(actor['type']) ?? ''}|${str(id['system']) ?? ''}|${str(id['value']) ?? ''}`;
  const display = str(actor['display']);
  return display ? `${str(actor['type']) ?? ''}|display|${display}` : undefined;
}

function mergeParticipants(
  stored: unknown,
  mapped: unknown,
  actorKey: (actor: Obj | undefined) => string | undefined,
): unknown[] {
  const before = new Map<string, Obj>();
  for (const p of Array.isArray(stored) ? (stored as Obj[]) : []) {
    const k = actorKey(p['actor'] as Obj | undefined);
    if (k) before.set(k, p);
  }
  return (Array.isArray(mapped) ? (mapped as Obj[]) : []).map((p) => {
    const k = actorKey(p['actor'] as Obj | undefined);
    const was = k ? before.get(k) : undefined;
    return was?.['status'] ? { ...cloneJson(p), status: was['status'] } : cloneJson(p);
  });
}
