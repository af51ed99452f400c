/**
 * The declarative HL7 v2 → FHIR mapping engine. Maps are data (mappings/, YAML), in tiers named
 * `SOURCE[Target]` after the HL7 V2-to-FHIR IG:
 * - `vocab/`: a v2 table → FHIR codes (`HL70001[AdministrativeGender]`);
 * - `datatypes/`: a v2 datatype → a FHIR datatype, component by component (`CX[Identifier]`);
 * - `segments/`: a v2 segment → a FHIR resource, field by field (`PID[Patient]`);
 * - `messages/` (next): which segment maps a message structure uses and how the resources reference each other.
 *
 * Every file is validated against mappings/schema.json when loaded, and its name must match its
 * `source[target]`. A site adds or overrides maps with a directory of its own (later directories win), with no
 * code change. Rules apply in order: a later rule with a value overwrites a scalar, `[]` appends.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { hl7ToFhirDateTime } from '../datetime.js';
import { unescapeHl7 } from '../escape.js';
import type { Delimiters } from '../delimiters.js';
import type { Hl7Message, Hl7Segment } from '../message.js';
import { setPath } from './paths.js';

export interface Rule {
  readonly from?: string;
  readonly field?: number;
  readonly to: string;
  readonly datatype?: string;
  readonly vocab?: string;
  readonly repeat?: boolean;
  readonly component?: number;
  readonly when?: { readonly field: number; readonly equals: readonly string[] };
  readonly const?: unknown;
  readonly note?: string;
}

export interface VocabMap {
  readonly kind: 'vocab';
  readonly source: string;
  readonly target: string;
  readonly system?: string;
  readonly map: Readonly<Record<string, string>>;
}
export interface DatatypeMap {
  readonly kind: 'datatype';
  readonly source: string;
  readonly target: string;
  readonly rules: readonly Rule[];
}
export interface MessageResource {
  readonly id: string;
  readonly segment: string;
  readonly map: string;
  readonly required?: boolean;
  readonly key?: string;
  readonly refs?: Readonly<Record<string, string>>;
  readonly merge?: readonly { readonly segment: string; readonly map: string }[];
  readonly repeat?: boolean;
  readonly identity?: { readonly system: string; readonly from: readonly string[] };
}
export interface MessageMap {
  readonly kind: 'message';
  readonly source: string;
  readonly target: 'Bundle';
  readonly triggers: readonly string[];
  readonly resources: readonly MessageResource[];
  readonly byTrigger?: Readonly<Record<string, Readonly<Record<string, Readonly<Record<string, unknown>>>>>>;
}
export interface SegmentMap {
  readonly kind: 'segment';
  readonly source: string;
  readonly target: string;
  readonly fixed?: Readonly<Record<string, unknown>>;
  readonly rules: readonly Rule[];
}
type MapFile = VocabMap | DatatypeMap | SegmentMap | MessageMap;

export class MappingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MappingError';
  }
}

export interface Mappings {
  readonly vocab: ReadonlyMap<string, VocabMap>;
  readonly datatypes: ReadonlyMap<string, DatatypeMap>;
  readonly segments: ReadonlyMap<string, SegmentMap>;
  readonly messages: ReadonlyMap<string, MessageMap>;
}

const TIERS = { vocab: 'vocab', datatypes: 'datatype', segments: 'segment', messages: 'message' } as const;

/** Loads and validates every map under the given roots; later roots override earlier ones by name. */
export async function loadMappings(roots: readonly string[], schemaPath: string): Promise<Mappings> {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(JSON.parse(await readFile(schemaPath, 'utf8')) as object);
  const out = {
    vocab: new Map<string, VocabMap>(),
    datatypes: new Map<string, DatatypeMap>(),
    segments: new Map<string, SegmentMap>(),
    messages: new Map<string, MessageMap>(),
  };
  const problems: string[] = [];
  for (const root of roots) {
    for (const [dir, kind] of Object.entries(TIERS) as [keyof typeof TIERS, MapFile['kind']][]) {
      let files: string[];
      try {
        files = (await readdir(join(root, dir))).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'));
      } catch {
        continue;
      }
      for (const f of files.sort()) {
        const where = `${join(root, dir, f)}`;
        let doc: unknown;
        try {
          doc = parseYaml(await readFile(join(root, dir, f), 'utf8'));
        } catch (e) {
          problems.push(`${where}: not valid YAML (${e instanceof Error ? e.message.split('\n')[0] : ''})`);
          continue;
        }
        if (!validate(doc)) {
          problems.push(`${where}: ${ajv.errorsText(validate.errors, { separator: '; ' })}`);
          continue;
        }
        const m = doc as MapFile;
        const name = `${m.source}[${m.target}]`;
        if (m.kind !== kind) problems.push(`${where}: a ${m.kind} map does not belong in ${dir}/`);
        else if (basename(f).replace(/\.ya?ml$/, '') !== name)
          problems.push(`${where}: the file must be named ${name}.yaml`);
        else (out[dir] as Map<string, MapFile>).set(name, m);
      }
    }
  }
  // Every reference between maps must resolve.
  const check = (owner: string, rules: readonly Rule[]): void => {
    for (const r of rules) {
      if (r.vocab && !out.vocab.has(r.vocab)) problems.push(`${owner}: unknown vocab ${r.vocab}`);
      if (r.datatype?.includes('[') && !out.datatypes.has(r.datatype))
        problems.push(`${owner}: unknown datatype map ${r.datatype}`);
    }
  };
  for (const [n, m] of out.datatypes) check(n, m.rules);
  for (const [n, m] of out.segments) check(n, m.rules);
  for (const [n, m] of out.messages) {
    const ids = new Set(m.resources.map((r) => r.id));
    for (const r of m.resources) {
      const seg = out.segments.get(r.map);
      if (!seg) problems.push(`${n}: unknown segment map ${r.map}`);
      else if (seg.source !== r.segment) problems.push(`${n}: ${r.map} maps ${seg.source}, not ${r.segment}`);
      for (const target of Object.values(r.refs ?? {}))
        if (!ids.has(target)) problems.push(`${n}: ${r.id} refers to unknown resource ${target}`);
    }
    for (const [t, sets] of Object.entries(m.byTrigger ?? {})) {
      for (const id of Object.keys(sets))
        if (!ids.has(id)) problems.push(`${n}: byTrigger ${t} names unknown resource ${id}`);
    }
  }
  if (problems.length) throw new MappingError(`invalid mappings:\n  - ${problems.join('\n  - ')}`);
  return out;
}

type Obj = Record<string, unknown>;

export interface MappedResource {
  /** The message map's resource id (shared by every instance of a repeating segment). */
  readonly id: string;
  /** Unique within the message: the id, or `id#n` for the n-th occurrence of a repeating segment. */
  readonly instance: string;
  /** Compose a business identifier (system + parts) when the segment carries none. */
  readonly identity?: { readonly system: string; readonly from: readonly string[] };
  readonly resource: Obj;
  /** Path of the business identifier list the resource is matched on. */
  readonly key?: string;
  readonly refs: Readonly<Record<string, string>>;
  readonly required: boolean;
}

export interface MappedMessage {
  readonly structure: string;
  readonly trigger: string;
  readonly resources: readonly MappedResource[];
}

export interface MapContext {
  /** IANA zone for offset-less times from this sender. */
  readonly zone: string;
  readonly delimiters: Delimiters;
}

export class Mapper {
  private readonly m: Mappings;

  constructor(mappings: Mappings) {
    this.m = mappings;
  }

  /** Maps one segment to a resource with the named segment map (e.g. `PID[Patient]`). */
  segment(seg: Hl7Segment, mapName: string, ctx: MapContext): Obj {
    const map = this.m.segments.get(mapName);
    if (!map) throw new MappingError(`no segment map ${mapName}`);
    const resource: Obj = { resourceType: map.target, ...structuredClone(map.fixed ?? {}) };
    return this.segmentInto(seg, mapName, ctx, resource);
  }

  /** Applies a segment map's rules onto an existing resource (used to merge e.g. TQ1 into an Appointment). */
  segmentInto(seg: Hl7Segment, mapName: string, ctx: MapContext, resource: Obj): Obj {
    const map = this.m.segments.get(mapName);
    if (!map) throw new MappingError(`no segment map ${mapName}`);
    if (map.source !== seg.name) throw new MappingError(`${mapName} maps ${map.source}, not ${seg.name}`);
    for (const rule of map.rules) {
      if (rule.field === undefined) throw new MappingError(`${mapName}: a segment rule needs "field"`);
      if (rule.when && !rule.when.equals.includes(seg.get(rule.when.field))) continue;
      const reps =
        seg.name === 'MSH' && rule.field <= 2
          ? [seg.raw(rule.field)]
          : seg.raw(rule.field).split(ctx.delimiters.repetition);
      const used = rule.repeat ? reps : reps.slice(0, 1);
      for (const rep of used) {
        if (rep === '') continue;
        const all = rep.split(ctx.delimiters.component);
        const parts = rule.component ? [all[rule.component - 1] ?? ''] : all;
        const where = `${seg.name}-${rule.field}${rule.component ? `.${rule.component}` : ''}`;
        const value = this.value(parts, ctx.delimiters.subcomponent, rule, ctx, where);
        if (value !== undefined) setPath(resource, rule.to, value);
      }
    }
    return resource;
  }

  /** The message map for an incoming message: by MSH-9.3 structure, else the map whose triggers include the event. */
  messageMap(code: string, trigger: string, structure: string): MessageMap | undefined {
    const byStructure = structure ? this.m.messages.get(`${structure}[Bundle]`) : undefined;
    if (byStructure?.triggers.includes(trigger)) return byStructure;
    for (const m of this.m.messages.values())
      if (m.source.startsWith(`${code}_`) && m.triggers.includes(trigger)) return m;
    return undefined;
  }

  /**
   * Maps a message: one resource per listed segment occurrence (the first of each), with the trigger's
   * values applied. References between them are returned as ids for the transaction builder to wire.
   */
  message(msg: Hl7Message, ctx: MapContext): MappedMessage {
    const { code, trigger, structure } = msg.type;
    const map = this.messageMap(code, trigger, structure);
    if (!map)
      throw new MappingError(`no message map for ${code}^${trigger}${structure ? ` (${structure})` : ''}`);
    const resources: MappedResource[] = [];
    for (const r of map.resources) {
      const segs = r.repeat ? msg.all(r.segment) : msg.segment(r.segment) ? [msg.segment(r.segment)!] : [];
      if (segs.length === 0) {
        if (r.required) throw new MappingError(`${map.source}: segment ${r.segment} is required`);
        continue;
      }
      segs.forEach((seg, n) => {
        const resource = this.segment(seg, r.map, ctx);
        for (const x of r.merge ?? []) {
          const extra = msg.segment(x.segment);
          if (extra) this.segmentInto(extra, x.map, ctx, resource);
        }
        for (const [path, value] of Object.entries(map.byTrigger?.[trigger]?.[r.id] ?? {})) {
          setPath(resource, path, structuredClone<unknown>(value));
        }
        // Maps may write fixed list positions (AIP → participant[1], AIL → participant[2]); when an earlier
        // segment is absent its position stays empty, and the list closes up here.
        compactLists(resource);
        resources.push({
          id: r.id,
          instance: r.repeat ? `${r.id}#${n + 1}` : r.id,
          resource,
          ...(r.key ? { key: r.key } : {}),
          ...(r.identity ? { identity: r.identity } : {}),
          refs: r.refs ?? {},
          required: r.required ?? false,
        });
      });
    }
    return { structure: map.source, trigger, resources };
  }

  /** Converts one value (its components) by the rule's datatype or vocab. */
  private value(components: string[], sub: string, rule: Rule, ctx: MapContext, where: string): unknown {
    if (rule.const !== undefined) return components.join('') === '' ? undefined : rule.const;
    const dt = rule.datatype;
    if (dt?.includes('[')) {
      const out = this.datatype(dt, components, sub, ctx, where);
      return Object.keys(out).length ? out : undefined;
    }
    const text = unescapeHl7((components[0] ?? '').split(sub)[0] ?? '', ctx.delimiters);
    if (text === '' || text === '""') return undefined;
    if (rule.vocab) {
      const v = this.m.vocab.get(rule.vocab);
      const code = v?.map[text];
      if (code === undefined)
        throw new MappingError(`${where}: code "${text.slice(0, 20)}" is not in ${rule.vocab}`);
      return code;
    }
    return primitive(text, dt, ctx.zone, where);
  }

  private datatype(name: string, components: string[], sub: string, ctx: MapContext, where: string): Obj {
    const map = this.m.datatypes.get(name);
    if (!map) throw new MappingError(`no datatype map ${name}`);
    const out: Obj = {};
    for (const rule of map.rules) {
      const [c, s] = (rule.from ?? '1').split('.').map(Number);
      const comp = components[(c ?? 1) - 1] ?? '';
      let parts: string[];
      if (s !== undefined) parts = [comp.split(sub)[s - 1] ?? ''];
      else if (rule.datatype?.includes('[')) parts = comp.split(sub);
      else parts = [comp];
      const value = this.value(parts, sub, rule, ctx, `${where}.${rule.from ?? '1'}`);
      if (value !== undefined) setPath(out, rule.to, value);
    }
    return out;
  }
}

function primitive(text: string, dt: string | undefined, zone: string, where: string): unknown {
  try {
    switch (dt) {
      case undefined:
      case 'ST':
      case 'ID':
      case 'IS':
        return text;
      case 'NM': {
        const n = Number(text);
        if (!Number.isFinite(n)) throw new Error('not a number');
        return n;
      }
      case 'SI': {
        const n = Number(text);
        if (!Number.isInteger(n) || n < 0) throw new Error('not a sequence id');
        return n;
      }
      case 'DT':
        return hl7ToFhirDateTime(text.slice(0, 8), zone);
      case 'DTM':
      case 'TS':
        return hl7ToFhirDateTime(text, zone);
      default:
        throw new Error(`unknown datatype ${dt}`);
    }
  } catch (e) {
    throw new MappingError(`${where}: ${e instanceof Error ? e.message : 'invalid value'}`);
  }
}

/** Removes empty positions from every list in a mapped resource, in place. */
export function compactLists(node: unknown): void {
  if (Array.isArray(node)) {
    for (let i = node.length - 1; i >= 0; i--)
      if (node[i] === undefined || node[i] === null) node.splice(i, 1);
    for (const x of node) compactLists(x);
  } else if (node && typeof node === 'object') {
    for (const v of Object.values(node)) compactLists(v);
  }
}
