/**
 * The outbound map engine: FHIR → HL7 v2, the reverse direction of the inbound maps and in the same tiers, as data
 * in `mappings/outbound/` (overridable by a site's `MAPPINGS_DIR/outbound/`, later roots winning by file name):
 *
 * - `messages/<STRUCTURE>.yaml`: which segments a message has, in order, and which Careway change sends it with
 *   which trigger event (`changes: { booked: S12, … }`);
 * - `segments/<SEG>.yaml`: the fields of one segment, each rule reading a path in the view;
 * - `datatypes/<DT>.yaml`: a FHIR value (Identifier, HumanName, …) → the components of a v2 datatype;
 * - `vocab/<FhirCode>[<HL7 table>].yaml`: a FHIR code → a v2 table code.
 *
 * The engine is pure: it takes the view (plain JSON made from the FHIR resources, src/hl7/outbound/view.ts) and
 * returns ER7 text. Every value is escaped with the message's delimiters (escape.ts), so nothing a patient typed
 * can break the structure. A rule whose path has no value writes nothing; a code outside a vocabulary writes
 * nothing. Files are checked against `mappings/outbound/schema.json` and every cross-reference when loaded, and
 * every problem is reported at once.
 *
 * Paths: `appointment.start`, `patient.identifier[0].value`, `name[use=official]` (the first element whose key
 * has that value), alternatives with `|` (the first with a value wins). In `each` segments the element is `item`
 * and its 1-based position `index`.
 */
import { escapeHl7 } from '../escape.js';
import { DEFAULT_DELIMITERS, type Delimiters } from '../delimiters.js';
import type { AuthorityRegistry } from '../mapping/authorities.js';
import { loadTiers } from '../mapping/tiers.js';

/** The changes Careway reports to the EHR. */
export type AppointmentChangeKind = 'booked' | 'rescheduled' | 'cancelled' | 'noshow';

export interface OutRule {
  readonly field?: number;
  readonly component?: number;
  readonly subcomponent?: number;
  readonly from?: string;
  readonly const?: string | number;
  readonly datatype?: string;
  readonly vocab?: string;
  readonly repeat?: boolean;
  readonly spread?: boolean;
  readonly note?: string;
}

export interface OutVocabMap {
  readonly kind: 'vocab';
  readonly source: string;
  readonly target: string;
  readonly note?: string;
  readonly map: Readonly<Record<string, string>>;
}

export interface OutDatatypeMap {
  readonly kind: 'datatype';
  readonly datatype: string;
  readonly note?: string;
  readonly rules: readonly OutRule[];
}

export interface OutSegmentMap {
  readonly kind: 'segment';
  readonly segment: string;
  readonly note?: string;
  readonly rules: readonly OutRule[];
}

export interface OutMessageMap {
  readonly kind: 'message';
  readonly structure: string;
  readonly code: string;
  readonly note?: string;
  readonly changes: Readonly<Partial<Record<AppointmentChangeKind, string>>>;
  readonly segments: readonly { segment: string; each?: string; when?: string; note?: string }[];
}

type OutMapFile = OutVocabMap | OutDatatypeMap | OutSegmentMap | OutMessageMap;

export interface OutboundMaps {
  readonly vocab: ReadonlyMap<string, OutVocabMap>;
  readonly datatypes: ReadonlyMap<string, OutDatatypeMap>;
  readonly segments: ReadonlyMap<string, OutSegmentMap>;
  readonly messages: ReadonlyMap<string, OutMessageMap>;
}

export class OutboundMapError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`outbound HL7 maps have ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
    this.name = 'OutboundMapError';
  }
}

/** Primitives written by code; anything else names a datatype map. */
const PRIMITIVES = new Set(['ST', 'ID', 'IS', 'NM', 'SI', 'DT', 'DTM', 'TS', 'HD']);

const nameOf = (m: OutMapFile): string => {
  switch (m.kind) {
    case 'vocab':
      return `${m.source}[${m.target}]`;
    case 'datatype':
      return m.datatype;
    case 'segment':
      return m.segment;
    case 'message':
      return m.structure;
  }
};

/** Loads the outbound maps from each root's `messages/ segments/ datatypes/ vocab/`, later roots winning. */
export async function loadOutboundMaps(roots: readonly string[], schemaPath: string): Promise<OutboundMaps> {
  const problems: string[] = [];
  const out = (await loadTiers<OutMapFile>(roots, schemaPath, nameOf, problems)) as {
    vocab: Map<string, OutVocabMap>;
    datatypes: Map<string, OutDatatypeMap>;
    segments: Map<string, OutSegmentMap>;
    messages: Map<string, OutMessageMap>;
  };
  const check = (owner: string, rules: readonly OutRule[]): void => {
    for (const r of rules) {
      if (r.vocab && !out.vocab.has(r.vocab)) problems.push(`${owner}: unknown vocab ${r.vocab}`);
      if (r.datatype && !PRIMITIVES.has(r.datatype) && !out.datatypes.has(r.datatype))
        problems.push(`${owner}: unknown datatype map ${r.datatype}`);
    }
  };
  for (const [n, m] of out.datatypes) check(`datatypes/${n}`, m.rules);
  for (const [n, m] of out.segments) check(`segments/${n}`, m.rules);
  const taken = new Map<string, string>();
  for (const [n, m] of out.messages) {
    if (m.segments[0]?.segment !== 'MSH') problems.push(`messages/${n}: the first segment must be MSH`);
    for (const s of m.segments)
      if (!out.segments.has(s.segment)) problems.push(`messages/${n}: no segment map for ${s.segment}`);
    for (const change of Object.keys(m.changes)) {
      const other = taken.get(change);
      if (other) problems.push(`messages/${n}: the ${change} change is already sent by ${other}`);
      taken.set(change, n);
    }
  }
  if (problems.length) throw new OutboundMapError(problems);
  return out;
}

// ---- paths ----------------------------------------------------------------------------------------------------

type Json = unknown;

/** Splits `a.b[x.y=z].c` on the dots outside brackets. */
function steps(path: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of path) {
    if (ch === '[') depth++;
    if (ch === ']') depth--;
    if (ch === '.' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function step(value: Json, s: string): Json {
  const m = /^([A-Za-z$][A-Za-z0-9]*)(?:\[([^\]]*)\])?$/.exec(s.trim());
  if (!m || value === null || typeof value !== 'object') return undefined;
  let v = (value as Record<string, Json>)[m[1]!];
  const sel = m[2];
  if (sel === undefined) return v;
  if (!Array.isArray(v)) v = v === undefined ? [] : [v];
  const list = v as Json[];
  if (/^\d+$/.test(sel)) return list[Number(sel)];
  const eq = sel.indexOf('=');
  if (eq < 0) return undefined;
  const key = sel.slice(0, eq).trim();
  const want = sel.slice(eq + 1).trim();
  return list.find((x) => {
    return scalar(resolvePath(x, key)) === want;
  });
}

function resolvePath(scope: Json, path: string): Json {
  let v = scope;
  for (const s of steps(path)) {
    v = step(v, s);
    if (v === undefined || v === null) return undefined;
  }
  return v;
}

/** A string, number or boolean as text; anything else (an object, a list) has no text of its own. */
const scalar = (v: Json): string | undefined =>
  typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;

const hasValue = (v: Json): boolean =>
  v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && v.length === 0);

/** Resolves an expression: `|`-separated alternatives outside brackets, the first with a value wins. */
export function resolve(scope: Json, expr: string): Json {
  let depth = 0;
  let cur = '';
  const alternatives: string[] = [];
  for (const ch of expr) {
    if (ch === '[') depth++;
    if (ch === ']') depth--;
    if (ch === '|' && depth === 0) {
      alternatives.push(cur);
      cur = '';
    } else cur += ch;
  }
  alternatives.push(cur);
  for (const a of alternatives) {
    const v = resolvePath(scope, a.trim());
    if (hasValue(v)) return v;
  }
  return undefined;
}

// ---- values ---------------------------------------------------------------------------------------------------

/**
 * A value being built: a string, or the parts one level down (a field's components, a component's
 * subcomponents). Parts are 0-based here (component 1 is index 0).
 */
export type Node = string | Node[];

/** FHIR date/dateTime/instant → HL7 DT/DTM, keeping the offset as stored (the instant is exact either way). */
export function fhirToHl7DateTime(value: string): string | undefined {
  const m =
    /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/.exec(
      value,
    );
  if (!m) return undefined;
  const [, y, mo = '', d = '', h = '', mi = '', s = '', frac = '', tz = ''] = m;
  const offset = tz === 'Z' ? '+0000' : tz.replace(':', '');
  return `${y}${mo}${d}${h}${mi}${h ? s || '00' : ''}${h && s ? frac.slice(0, 5) : ''}${h ? offset : ''}`;
}

/**
 * An identifier system → HD (namespace, universal id, its type), the reverse of the inbound registry
 * (mapping/authorities.ts): a namespace the registry names for this system, else the default rule's
 * `urn:id:<namespace>`, else no namespace; an OID, UUID or other URI also goes as the universal id.
 */
export function systemToHd(system: string, registry?: AuthorityRegistry): string[] {
  let namespace = '';
  for (const [ns, sys] of registry?.namespaces ?? []) if (sys === system) namespace = ns;
  const pattern = (registry?.default ?? 'urn:id:{namespace}').split('{namespace}');
  if (!namespace && pattern.length === 2) {
    const [pre = '', post = ''] = pattern;
    if (system.startsWith(pre) && system.endsWith(post) && system.length > pre.length + post.length)
      return [system.slice(pre.length, system.length - post.length)];
  }
  const oid = /^urn:oid:([0-2](?:\.\d+)+)$/.exec(system);
  if (oid) return [namespace, oid[1]!, 'ISO'];
  const uuid = /^urn:uuid:([0-9a-f-]{36})$/i.exec(system);
  if (uuid) return [namespace, uuid[1]!, 'GUID'];
  if (/^[a-z][a-z0-9+.-]*:/i.test(system)) return [namespace, system, 'URI'];
  return [namespace || system];
}

function primitive(type: string, v: Json, registry?: AuthorityRegistry): Node | undefined {
  const text = scalar(v);
  if (text === undefined) return undefined;
  switch (type) {
    case 'DT':
      return fhirToHl7DateTime(text.slice(0, 10));
    case 'DTM':
    case 'TS':
      return fhirToHl7DateTime(text);
    case 'NM':
    case 'SI':
      return Number.isFinite(Number(text)) ? String(Number(text)) : undefined;
    case 'HD':
      return systemToHd(text, registry);
    default:
      return text;
  }
}

/** Writes `node` at a 0-based position of `parts`, or from there on when `spread` (an HD inside an EI). */
function place(parts: Node[], index: number, node: Node, spread: boolean): void {
  if (spread && Array.isArray(node)) node.forEach((n, i) => (parts[index + i] = n));
  else parts[index] = node;
}

// ---- the engine -----------------------------------------------------------------------------------------------

export interface BuiltMessage {
  readonly er7: string;
  readonly structure: string;
  readonly code: string;
  readonly trigger: string;
}

export class OutboundMapper {
  readonly d: Delimiters = DEFAULT_DELIMITERS;

  constructor(
    readonly maps: OutboundMaps,
    private readonly registry?: AuthorityRegistry,
  ) {}

  /** The message map that sends a change, and its trigger event; undefined when no map sends it. */
  messageFor(change: AppointmentChangeKind): { map: OutMessageMap; trigger: string } | undefined {
    for (const map of this.maps.messages.values()) {
      const trigger = map.changes[change];
      if (trigger) return { map, trigger };
    }
    return undefined;
  }

  /** The value of one rule in a scope: a Node per repetition (several only with `repeat`). */
  private value(rule: OutRule, scope: Json): Node[] {
    const source = rule.from !== undefined ? resolve(scope, rule.from) : undefined;
    if (rule.from !== undefined && !hasValue(source)) return [];
    if (rule.const !== undefined) return [String(rule.const)];
    const items = rule.repeat ? (Array.isArray(source) ? source : [source]) : [source];
    const out: Node[] = [];
    for (const item of items) {
      const n = this.convert(rule, item);
      if (n !== undefined && n !== '' && !(Array.isArray(n) && n.every((p) => p === '' || p === undefined)))
        out.push(n);
    }
    return out;
  }

  private convert(rule: OutRule, item: Json): Node | undefined {
    if (rule.vocab) {
      const code = scalar(item);
      return code === undefined ? undefined : this.maps.vocab.get(rule.vocab)?.map[code];
    }
    const type = rule.datatype ?? 'ST';
    if (PRIMITIVES.has(type)) return primitive(type, item, this.registry);
    const dt = this.maps.datatypes.get(type);
    if (!dt || item === null || typeof item !== 'object') return undefined;
    const parts: Node[] = [];
    for (const r of dt.rules) {
      const [n] = this.value(r, item);
      if (n === undefined) continue;
      const at = (r.component ?? 1) - 1;
      if (r.subcomponent) {
        const cur = parts[at];
        const sub = Array.isArray(cur) ? cur : cur ? [cur] : [];
        sub[r.subcomponent - 1] = n;
        parts[at] = sub;
      } else place(parts, at, n, !!r.spread);
    }
    return parts;
  }

  /** One segment's fields (index = field number; MSH's index 1 and 2 are written by `encode`). */
  segment(map: OutSegmentMap, scope: Json): Node[][] {
    const fields: Node[][] = [];
    for (const r of map.rules) {
      const values = this.value(r, scope);
      if (values.length === 0) continue;
      const f = r.field!;
      if (r.repeat || r.component === undefined) {
        fields[f] = r.repeat ? values : [values[0]!];
        continue;
      }
      const rep = fields[f]?.[0];
      const comps: Node[] = Array.isArray(rep) ? rep : rep !== undefined ? [rep] : [];
      if (r.subcomponent) {
        const cur = comps[r.component - 1];
        const sub = Array.isArray(cur) ? cur : cur ? [cur] : [];
        sub[r.subcomponent - 1] = values[0]!;
        comps[r.component - 1] = sub;
      } else place(comps, r.component - 1, values[0]!, !!r.spread);
      fields[f] = [comps];
    }
    return fields;
  }

  /** ER7 for one segment: escaped values, empty trailing parts dropped. */
  encode(name: string, fields: Node[][]): string {
    const d = this.d;
    const trim = (xs: string[], sep: string): string => {
      let n = xs.length;
      while (n > 0 && xs[n - 1] === '') n--;
      return xs.slice(0, n).join(sep);
    };
    const leaf = (n: Node | undefined): string =>
      n === undefined ? '' : Array.isArray(n) ? leaf(n[0]) : escapeHl7(n, d);
    const sub = (n: Node | undefined): string =>
      n === undefined ? '' : Array.isArray(n) ? trim(Array.from(n, leaf), d.subcomponent) : escapeHl7(n, d);
    const rep = (n: Node | undefined): string =>
      n === undefined ? '' : Array.isArray(n) ? trim(Array.from(n, sub), d.component) : escapeHl7(n, d);
    const text = Array.from(fields, (reps) => (reps ? reps.map(rep).join(d.repetition) : ''));
    if (name === 'MSH') {
      const enc = `${d.component}${d.repetition}${d.escape}${d.subcomponent}`;
      return `MSH${d.field}${enc}${d.field}${trim(text.slice(3), d.field)}`;
    }
    const body = trim(text.slice(1), d.field);
    return body ? `${name}${d.field}${body}` : name;
  }

  /**
   * The message for a change, from the view. `view.header` must hold what MSH reads (the trigger is set here
   * from the message map). Segments follow the message map's order; `each` repeats a segment per element.
   */
  build(change: AppointmentChangeKind, view: Record<string, Json>): BuiltMessage | undefined {
    const found = this.messageFor(change);
    if (!found) return undefined;
    const { map, trigger } = found;
    const root = {
      ...view,
      header: {
        ...((view['header'] as object | undefined) ?? {}),
        code: map.code,
        trigger,
        structure: map.structure,
      },
    };
    const lines: string[] = [];
    for (const s of map.segments) {
      const seg = this.maps.segments.get(s.segment)!;
      if (s.when && !hasValue(resolve(root, s.when))) continue;
      if (s.each) {
        const list = resolve(root, s.each);
        const items = Array.isArray(list) ? list : hasValue(list) ? [list] : [];
        items.forEach((item: Json, i) =>
          lines.push(this.encode(s.segment, this.segment(seg, { ...root, item, index: i + 1 }))),
        );
      } else lines.push(this.encode(s.segment, this.segment(seg, root)));
    }
    return { er7: `${lines.join('\r')}\r`, structure: map.structure, code: map.code, trigger };
  }
}
