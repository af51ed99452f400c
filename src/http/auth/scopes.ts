/**
 * SMART App Launch v2 scopes: parsing and the access decision. Pure functions, no I/O.
 *
 * Grammar: `(patient|user|system)/(ResourceType|*).(c?r?u?d?s?)[?param=value]`. SMART v1 suffixes
 * (`read`, `write`, `*`) are accepted and mapped (read → rs, write → cud, * → cruds) because many EHR
 * authorization servers still issue them.
 *
 * Granular scopes with a `?` restriction (e.g. `patient/Observation.rs?category=laboratory`) are parsed but
 * do not grant access yet: enforcing the restriction needs search-parameter evaluation on every result, and
 * granting the unrestricted permission instead would widen what the token holder agreed to.
 */

export type ScopeContext = 'patient' | 'user' | 'system';
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

export interface Scope {
  readonly context: ScopeContext;
  /** A resource type, or `*`. */
  readonly resourceType: string;
  readonly permissions: ReadonlySet<Permission>;
  /** The raw query after `?`, when the scope is granular. */
  readonly restriction?: string;
  readonly raw: string;
}

const SCOPE_RE = /^(patient|user|system)\/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)(?:\?(.+))?$/;
const ORDER: readonly Permission[] = ['c', 'r', 'u', 'd', 's'];

function parsePermissions(text: string): Set<Permission> | undefined {
  if (text === 'read') return new Set(['r', 's']);
  if (text === 'write') return new Set(['c', 'u', 'd']);
  if (text === '*') return new Set(ORDER);
  // v2: letters in the order c, r, u, d, s, each at most once.
  let last = -1;
  const out = new Set<Permission>();
  for (const ch of text) {
    const i = ORDER.indexOf(ch as Permission);
    if (i <= last) return undefined;
    last = i;
    out.add(ch as Permission);
  }
  return out.size > 0 ? out : undefined;
}

/** Parses a space-separated scope string; non-resource scopes (openid, launch/patient, …) are ignored. */
export function parseScopes(scope: string | readonly string[] | undefined): Scope[] {
  const items = typeof scope === 'string' ? scope.split(/\s+/) : (scope ?? []);
  const out: Scope[] = [];
  for (const raw of items) {
    const m = SCOPE_RE.exec(raw);
    if (!m) continue;
    const permissions = parsePermissions(m[3] ?? '');
    if (!permissions) continue;
    out.push({
      context: m[1] as ScopeContext,
      resourceType: m[2] ?? '',
      permissions,
      ...(m[4] ? { restriction: m[4] } : {}),
      raw,
    });
  }
  return out;
}

export type AccessDecision =
  | {
      readonly allowed: true;
      /** Set when only patient-context scopes grant this: confine to the compartment. */ readonly compartmentOnly: boolean;
    }
  | { readonly allowed: false; readonly reason: string };

/**
 * Decides whether `scopes` allow `permission` on `resourceType`. A user/system scope grants unconfined access;
 * a patient scope grants access confined to the token's patient compartment.
 */
export function decide(
  scopes: readonly Scope[],
  resourceType: string,
  permission: Permission,
): AccessDecision {
  let patientGrant = false;
  for (const s of scopes) {
    if (s.restriction !== undefined) continue;
    if (s.resourceType !== '*' && s.resourceType !== resourceType) continue;
    if (!s.permissions.has(permission)) continue;
    if (s.context !== 'patient') return { allowed: true, compartmentOnly: false };
    patientGrant = true;
  }
  if (patientGrant) return { allowed: true, compartmentOnly: true };
  return { allowed: false, reason: `no scope grants "${permission}" on ${resourceType}` };
}

/**
 * Careway's own administration scopes: they grant the queue dashboard's actions (pause, resume, retry, clean,
 * empty, obliterate, add, edit). Not a FHIR resource scope, so `parseScopes` ignores them; a patient-context
 * form is not accepted (an administrator is staff or a backend service, never a patient).
 */
export const ADMIN_SCOPES: readonly string[] = ['system/careway.admin', 'user/careway.admin'];

/** Whether a token's scope claim (space-separated, or a list) holds one of the ADMIN_SCOPES. */
export function grantsAdmin(scope: string | readonly string[] | undefined): boolean {
  const items = typeof scope === 'string' ? scope.split(/\s+/) : (scope ?? []);
  return items.some((s) => ADMIN_SCOPES.includes(s));
}

/**
 * The scope that shows an inbound HL7 message's raw text (`GET /hl7/messages/{id}` gives `raw` only with it).
 * The raw message holds everything the EHR sent about the patient, so it is a grant of its own, beyond
 * MessageHeader.r (which lists messages with ids, types and status only); staff or a backend, never a patient.
 */
export const HL7_RAW_SCOPES: readonly string[] = ['system/careway.hl7.raw', 'user/careway.hl7.raw'];

/** Whether a token's scope claim holds one of the HL7_RAW_SCOPES. */
export function grantsHl7Raw(scope: string | readonly string[] | undefined): boolean {
  const items = typeof scope === 'string' ? scope.split(/\s+/) : (scope ?? []);
  return items.some((s) => HL7_RAW_SCOPES.includes(s));
}

/** The scope a client would need, for error messages (e.g. `user/Patient.r`). */
export function neededScope(resourceType: string, permission: Permission): string {
  return `<patient|user|system>/${resourceType}.${permission}`;
}
