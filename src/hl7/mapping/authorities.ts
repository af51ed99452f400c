/**
 * The assigning-authority registry: which FHIR `Identifier.system` an HL7 assigning authority stands for.
 *
 * Real feeds mostly send a namespace id only (`MRN100234^^^STMARYS^MR`, `PL-5001^STMARYS`): no universal id
 * (CX.4.2, EI.3, HD.2), so nothing in the message says which URI the identifier belongs to. Resources are
 * keyed on `system|value`, so the answer must be deterministic and must never change for a namespace once
 * data was written with it. In order:
 * 1. a universal id in the message always wins: an ISO OID becomes `urn:oid:<oid>`, a UUID `urn:uuid:<uuid>`,
 *    a URI (or anything already holding a scheme) stays as written;
 * 2. else the namespace's entry in the registry (`mappings/authorities.yaml`, overridden per namespace by
 *    `authorities.yaml` in a site's MAPPINGS_DIR);
 * 3. else the default rule, `urn:id:<namespace>` (whitespace as `_`). That is the LinuxForHealth converter's
 *    convention, so a site moving from it keeps its keys; it is a valid URI, readable, and stable because it
 *    depends on the namespace alone. Each use is reported, so a site sees which namespaces to configure;
 * 4. an identifier with no authority at all is taken as assigned by the sending facility (MSH-4, else MSH-3):
 *    keyed per sender, it can never collide with another sender's numbers.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';

export interface AuthorityRegistry {
  /** The rule for namespaces nobody configured; `{namespace}` is replaced. */
  readonly default: string;
  /** Namespace id → system URI. */
  readonly namespaces: ReadonlyMap<string, string>;
}

export const DEFAULT_AUTHORITY_RULE = 'urn:id:{namespace}';

export interface AuthorityParts {
  readonly namespace: string;
  readonly universal: string;
  readonly type: string;
}

export interface ResolvedAuthority {
  readonly system: string;
  /** The namespace, when the system came from the default rule (nobody configured it). */
  readonly defaulted?: string;
}

const OID = /^[0-2](\.(0|[1-9]\d*))+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;

/** A universal id (HD.2) of the given type (HD.3, table 0301) as a URI. */
export function universalIdToUri(universal: string, type: string): string {
  const u = universal.trim();
  if (SCHEME.test(u)) return u;
  const t = type.trim().toUpperCase();
  if (OID.test(u) && (t === 'ISO' || t === '')) return `urn:oid:${u}`;
  if (UUID.test(u) && (t === 'UUID' || t === 'GUID' || t === '')) return `urn:uuid:${u.toLowerCase()}`;
  return `urn:id:${u.replace(/\s+/g, '_')}`;
}

export function resolveAuthority(
  registry: AuthorityRegistry,
  parts: AuthorityParts,
  senderNamespace: string,
): ResolvedAuthority | undefined {
  if (parts.universal.trim()) return { system: universalIdToUri(parts.universal, parts.type) };
  const namespace = (parts.namespace.trim() || senderNamespace.trim()).replace(/\s+/g, '_');
  if (!namespace) return undefined;
  const configured = registry.namespaces.get(namespace);
  if (configured) return { system: configured };
  return { system: registry.default.replace('{namespace}', namespace), defaulted: namespace };
}

/**
 * Reads `authorities.yaml` from each mapping root; later roots override earlier ones per namespace, and
 * their `default` replaces the rule. Problems are added to the caller's list (reported at once).
 */
export async function loadAuthorities(
  roots: readonly string[],
  problems: string[],
): Promise<AuthorityRegistry> {
  let rule = DEFAULT_AUTHORITY_RULE;
  const namespaces = new Map<string, string>();
  for (const root of roots) {
    const where = join(root, 'authorities.yaml');
    let text: string;
    try {
      text = await readFile(where, 'utf8');
    } catch {
      continue;
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      problems.push(`${where}: not valid YAML (${e instanceof Error ? e.message.split('\n')[0] : ''})`);
      continue;
    }
    const d = (doc ?? {}) as { kind?: unknown; default?: unknown; namespaces?: unknown };
    if (d.kind !== 'authorities') {
      problems.push(`${where}: kind must be "authorities"`);
      continue;
    }
    if (d.default !== undefined) {
      if (typeof d.default !== 'string' || !d.default.includes('{namespace}') || !SCHEME.test(d.default))
        problems.push(
          `${where}: default must be a URI template holding {namespace}, e.g. urn:id:{namespace}`,
        );
      else rule = d.default;
    }
    if (d.namespaces !== undefined && d.namespaces !== null) {
      if (typeof d.namespaces !== 'object' || Array.isArray(d.namespaces)) {
        problems.push(`${where}: namespaces must map a namespace id to a system URI`);
        continue;
      }
      for (const [ns, system] of Object.entries(d.namespaces)) {
        if (typeof system !== 'string' || !SCHEME.test(system) || /\s/.test(system))
          problems.push(
            `${where}: namespace ${ns} must map to an absolute URI, e.g. urn:oid:2.16.840.1.113883.3.1`,
          );
        else namespaces.set(ns, system);
      }
    }
  }
  return { default: rule, namespaces };
}
