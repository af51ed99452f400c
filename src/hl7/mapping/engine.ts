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
import { hl7ToFhirDateTime } from '../datetime.js';
import { unescapeHl7 } from '../escape.js';
import type { Delimiters } from '../delimiters.js';
import type { Hl7Message, Hl7Segment } from '../message.js';
import { isJourneyEvent, type JourneyEvent } from '../../journey/rules.js';
import { JOURNEY_STAGES, type JourneyStage } from '../../journey/stages.js';
import { cloneJson, parsePath, setPath, type Cursor } from './paths.js';
import { loadAuthorities, resolveAuthority, type AuthorityRegistry } from './authorities.js';
import { loadTiers } from './tiers.js';

/**
 * Where an assigning authority sits in a datatype, by component (`4.1` = component 4, subcomponent 1):
 * CX.4 (4.1 namespace, 4.2 universal id, 4.3 its type), EI.2-4, XCN.9, HD.1-3.
 */
export interface AuthorityRule {
  readonly namespace: string;
  readonly universal?: string;
  readonly type?: string;
}

export interface When {
  /** Segment maps: the field to test (datatype maps test a component of the value instead). */
  readonly field?: number;
  /** Compare one component (e.g. OBX-5.3, the SN separator) instead of the whole first one. */
  readonly component?: number;
  readonly equals?: readonly string[];
  readonly notEquals?: readonly string[];
}

export interface Rule {
  readonly from?: string;
  /** Resolve an assigning authority into `to` (a system URI) through the registry (authorities.ts). */
  readonly authority?: AuthorityRule;
  /** Datatype maps: the components, concatenated (XTN.6 area code + XTN.7 local number). */
  readonly join?: readonly string[];
  readonly field?: number;
  readonly to: string;
  readonly datatype?: string;
  readonly vocab?: string;
  readonly repeat?: boolean;
  readonly component?: number;
  /** Apply only when this holds (a list: all of them). */
  readonly when?: When | readonly When[];
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
export interface MergeSegment {
  readonly segment: string;
  readonly map: string;
  /** Every occurrence, not only the first (repeating AIP/AIL/AIG, several NTE). */
  readonly repeat?: boolean;
  /**
   * Only the occurrences right after this resource's own segment (with other `follows` segments between
   * them): NTE after an OBX belongs to that OBX, not to the message's first one.
   */
  readonly follows?: boolean;
}

export interface MessageResource {
  readonly id: string;
  readonly segment: string;
  readonly map: string;
  readonly required?: boolean;
  readonly key?: string;
  readonly refs?: Readonly<Record<string, string>>;
  readonly merge?: readonly MergeSegment[];
  readonly repeat?: boolean;
  readonly identity?: { readonly system: string; readonly from: readonly string[] };
  /**
   * The resource this one belongs to in a repeating group: the nearest earlier occurrence of that resource's
   * segment (OBX → its OBR, OBR → its ORC). `stopAt` segments end the search (an OBR between an ORC and
   * this OBR means the ORC belongs to another order). References and `ref:` identity parts between a
   * resource and its parent stay inside the group.
   */
  readonly parent?: string;
  readonly stopAt?: readonly string[];
}
export interface MessageMap {
  readonly kind: 'message';
  readonly source: string;
  readonly target: 'Bundle';
  readonly triggers: readonly string[];
  readonly resources: readonly MessageResource[];
  readonly byTrigger?: Readonly<Record<string, Readonly<Record<string, Readonly<Record<string, unknown>>>>>>;
  /** Segments of the structure that Careway reads nowhere on purpose (EVN, RGS…): not counted as unknown. */
  readonly unmapped?: readonly string[];
  /** Per trigger, what the message does to the patient's journey (validated against the journey rules). */
  readonly journey?: Readonly<Record<string, JourneyEffect>>;
  /** A merge (A40): the segment naming the patient to retire into this message's Patient, and its map. */
  readonly patientMerge?: { readonly segment: string; readonly map: string };
}

/**
 * What a message does to a journey: `opens` a journey at that stage when the patient has none (in the
 * message's own transaction), raises `event` on the open one, or `undoes` an earlier event (a cancel).
 */
export interface JourneyEffect {
  readonly opens?: JourneyStage;
  readonly event?: JourneyEvent;
  readonly undoes?: JourneyEvent;
}
export interface SegmentMap {
  readonly kind: 'segment';
  readonly source: string;
  readonly target: string;
  readonly fixed?: Readonly<Record<string, unknown>>;
  readonly rules: readonly Rule[];
}
type MapFile = VocabMap | DatatypeMap | SegmentMap | MessageMap;

/** Where in the message a mapping problem is (for the ACK's ERR-2 and for people). */
export interface ErrorLocation {
  readonly segment: string;
  /** 1-based occurrence of the segment in the message. */
  readonly sequence?: number;
  readonly field?: number;
  readonly component?: number;
}

/**
 * A message (or a map) that cannot be mapped. `code` is HL7 table 0357: 100 segment sequence (a required
 * segment is missing), 101 required field missing, 102 data type error (a bad date, a code outside its table).
 */
/**
 * The most repetitions of one field a map takes (PID-3, PID-5, PID-13…): a real feed sends a handful; 10,000
 * copies of PID-3 would make a Patient with 10,000 identifiers. More is refused with AE, the ERR naming the
 * field (code 102), so the sender sees which field to fix.
 */
export const MAX_FIELD_REPETITIONS = 100;

/** The list without exact duplicates (same JSON), first occurrences kept in order. */
export function uniqueValues<T>(list: readonly T[]): T[] {
  const seen = new Set<string>();
  return list.filter((x) => {
    const k = JSON.stringify(x);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export class MappingError extends Error {
  readonly code: '100' | '101' | '102' | '200' | '207';
  readonly location: ErrorLocation | undefined;
  constructor(message: string, code: MappingError['code'] = '207', location?: ErrorLocation) {
    super(message);
    this.name = 'MappingError';
    this.code = code;
    this.location = location;
  }
}

export interface Mappings {
  readonly vocab: ReadonlyMap<string, VocabMap>;
  readonly datatypes: ReadonlyMap<string, DatatypeMap>;
  readonly segments: ReadonlyMap<string, SegmentMap>;
  readonly messages: ReadonlyMap<string, MessageMap>;
  readonly authorities: AuthorityRegistry;
}

/** Loads and validates every map under the given roots; later roots override earlier ones by name. */
export async function loadMappings(roots: readonly string[], schemaPath: string): Promise<Mappings> {
  const problems: string[] = [];
  const out = (await loadTiers<MapFile>(roots, schemaPath, (m) => `${m.source}[${m.target}]`, problems)) as {
    vocab: Map<string, VocabMap>;
    datatypes: Map<string, DatatypeMap>;
    segments: Map<string, SegmentMap>;
    messages: Map<string, MessageMap>;
  };
  const authorities = await loadAuthorities(roots, problems);
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
      if (r.parent && !ids.has(r.parent)) problems.push(`${n}: ${r.id} has unknown parent ${r.parent}`);
      for (const x of r.merge ?? []) {
        const extra = out.segments.get(x.map);
        if (!extra) problems.push(`${n}: unknown segment map ${x.map}`);
        else if (extra.source !== x.segment)
          problems.push(`${n}: ${x.map} maps ${extra.source}, not ${x.segment}`);
      }
    }
    for (const [t, sets] of Object.entries(m.byTrigger ?? {})) {
      for (const id of Object.keys(sets))
        if (!ids.has(id)) problems.push(`${n}: byTrigger ${t} names unknown resource ${id}`);
    }
    for (const [t, effect] of Object.entries(m.journey ?? {})) {
      if (!m.triggers.includes(t))
        problems.push(`${n}: journey names ${t}, which is not one of its triggers`);
      if (effect.opens && !JOURNEY_STAGES.includes(effect.opens))
        problems.push(`${n}: journey ${t} opens at unknown stage ${effect.opens}`);
      // Read as text: the YAML holds whatever a site wrote, whatever the type says.
      for (const e of [effect.event, effect.undoes] as (string | undefined)[])
        if (e !== undefined && !isJourneyEvent(e))
          problems.push(`${n}: journey ${t} names unknown event ${e}`);
    }
    if (m.patientMerge) {
      const merge = out.segments.get(m.patientMerge.map);
      if (!merge) problems.push(`${n}: unknown segment map ${m.patientMerge.map}`);
      else if (merge.target !== 'Patient' || merge.source !== m.patientMerge.segment)
        problems.push(`${n}: patientMerge needs a ${m.patientMerge.segment}[Patient] map`);
    }
  }
  if (problems.length) throw new MappingError(`invalid mappings:\n  - ${problems.join('\n  - ')}`);
  return { ...out, authorities };
}

type Obj = Record<string, unknown>;

/**
 * What a message says about each top-level element of a resource, for the merge with what is stored
 * (transaction.ts): `set` (the message carries it: replace), `clear` (HL7 explicit null `""`: remove),
 * `default` (a map's fixed value: only when the stored resource has none). Elements not listed are not the
 * message's business and are kept.
 */
export type Claim = 'set' | 'clear' | 'default';
export type Claims = Record<string, Claim>;

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
  /** The element claims of this message (see Claim). */
  readonly claims: Readonly<Claims>;
  /** The segment it was mapped from, and where (for errors that name the field). */
  readonly source: ErrorLocation;
  /** The fields of its segment that write its business key (PID-3, SCH-1/2…), for errors. */
  readonly keyFields: readonly number[];
  /** The instance of its `parent` resource in the same group, when it has one. */
  readonly parent?: string;
}

export interface MappedMessage {
  readonly structure: string;
  readonly trigger: string;
  readonly resources: readonly MappedResource[];
  /** Namespaces whose system came from the default rule (a site may want to configure them). */
  readonly defaultedAuthorities: ReadonlyMap<string, string>;
  /** Segments no map reads (Z-segments, unknown ones), once per occurrence: ignored, and counted. */
  readonly ignoredSegments: readonly string[];
  /** What this trigger does to the journey, from the message map. */
  readonly journey?: JourneyEffect;
  /** The message map's patient merge (A40), if it has one. */
  readonly patientMerge?: { readonly segment: string; readonly map: string };
}

export interface MapContext {
  /** IANA zone for offset-less times from this sender. */
  readonly zone: string;
  readonly delimiters: Delimiters;
  /** MSH-3/MSH-4: the authority of identifiers that name none (authorities.ts). */
  readonly sender?: { readonly application: string; readonly facility: string };
}

/** Per-run state: what the maps of one message observed. */
interface Run {
  readonly ctx: MapContext;
  readonly defaulted: Map<string, string>;
  claims: Claims;
  where: ErrorLocation;
  /** A write left an empty list position behind (compactLists needed). */
  holes: boolean;
}

function claim(claims: Claims, path: string, what: Claim): void {
  const top = parsePath(path)[0]?.key;
  if (!top) return;
  const now = claims[top];
  // A value wins over a null, and both win over a map's default.
  if (what === 'set' || now === undefined || (what === 'clear' && now === 'default')) claims[top] = what;
}

export class Mapper {
  private readonly m: Mappings;

  constructor(mappings: Mappings) {
    this.m = mappings;
  }

  /** The registry in use (read by the listing of defaulted namespaces). */
  get authorities(): AuthorityRegistry {
    return this.m.authorities;
  }

  /** Maps one segment to a resource with the named segment map (e.g. `PID[Patient]`). */
  segment(seg: Hl7Segment, mapName: string, ctx: MapContext): Obj {
    return this.segmentRun(seg, mapName, this.run(ctx)).resource;
  }

  private run(ctx: MapContext): Run {
    return { ctx, defaulted: new Map(), claims: {}, where: { segment: '' }, holes: false };
  }

  private segmentRun(
    seg: Hl7Segment,
    mapName: string,
    run: Run,
    sequence = 1,
  ): { resource: Obj; claims: Claims } {
    const map = this.m.segments.get(mapName);
    if (!map) throw new MappingError(`no segment map ${mapName}`);
    const resource: Obj = { resourceType: map.target, ...cloneJson(map.fixed ?? {}) };
    const claims: Claims = {};
    for (const k of Object.keys(map.fixed ?? {})) claim(claims, k, 'default');
    run.claims = claims;
    this.segmentInto(seg, mapName, run, resource, sequence);
    return { resource, claims };
  }

  /** Applies a segment map's rules onto an existing resource (used to merge e.g. TQ1 into an Appointment). */
  private segmentInto(seg: Hl7Segment, mapName: string, run: Run, resource: Obj, sequence: number): Obj {
    const map = this.m.segments.get(mapName);
    if (!map) throw new MappingError(`no segment map ${mapName}`);
    if (map.source !== seg.name) throw new MappingError(`${mapName} maps ${map.source}, not ${seg.name}`);
    const d = run.ctx.delimiters;
    const cursor: Cursor = new Map();
    // The values `when` tests (OBX-2 by most OBX rules), read once per segment.
    const tested = new Map<number, string>();
    // A merged segment's fixed values apply like its owner's: only where nothing is stored.
    for (const [k, v] of Object.entries(map.fixed ?? {})) {
      if (resource[k] === undefined) resource[k] = cloneJson(v);
      claim(run.claims, k, 'default');
    }
    for (const rule of map.rules) {
      if (rule.field === undefined) throw new MappingError(`${mapName}: a segment rule needs "field"`);
      if (rule.when && !whens(rule.when).every((w) => whenHolds(seg, w, tested))) continue;
      const rawField = seg.raw(rule.field);
      // HL7 null semantics: an empty field means "no change"; `""` clears the element in the receiver.
      if (rawField === '') continue;
      if (rawField === '""') {
        claim(run.claims, rule.to, 'clear');
        continue;
      }
      let used: string[];
      if (seg.name === 'MSH' && rule.field <= 2) used = [rawField];
      else if (rule.repeat) {
        used = rawField.split(d.repetition);
        if (used.length > MAX_FIELD_REPETITIONS) {
          const where = { segment: seg.name, sequence, field: rule.field };
          throw new MappingError(
            `${formatWhere(where)}: ${used.length} repetitions, at most ${MAX_FIELD_REPETITIONS} are taken`,
            '102',
            where,
          );
        }
      } else {
        const end = rawField.indexOf(d.repetition);
        used = [end < 0 ? rawField : rawField.slice(0, end)];
      }
      for (const rep of used) {
        if (rep === '') continue;
        const all = rep.split(d.component);
        const parts = rule.component ? [all[rule.component - 1] ?? ''] : all;
        run.where = rule.component
          ? { segment: seg.name, sequence, field: rule.field, component: rule.component }
          : { segment: seg.name, sequence, field: rule.field };
        const value = this.value(parts, d.subcomponent, rule, run);
        if (value !== undefined) {
          if (setPath(resource, rule.to, value, cursor)) run.holes = true;
          claim(run.claims, rule.to, 'set');
        }
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

  /** Whether some message map takes this message type (the intake refuses the others with AR). */
  supports(code: string, trigger: string, structure = ''): boolean {
    return this.messageMap(code, trigger, structure) !== undefined;
  }

  /**
   * Maps a message: one resource per listed segment (every occurrence for `repeat`), with the trigger's
   * values applied, grouped under their parents (OBX under its OBR). References between them are returned as
   * ids for the transaction builder to wire.
   */
  message(msg: Hl7Message, ctx: MapContext): MappedMessage {
    const { code, trigger, structure } = msg.type;
    const map = this.messageMap(code, trigger, structure);
    if (!map)
      throw new MappingError(
        `no message map for ${code}^${trigger}${structure ? ` (${structure})` : ''}`,
        '200',
        { segment: 'MSH', sequence: 1, field: 9 },
      );
    const run = this.run({
      ...ctx,
      sender: ctx.sender ?? msg.sender,
    });
    const segments = msg.segments;
    // Where each segment name occurs, and each segment's occurrence number (ERR-2 sequence), computed once.
    const byName = new Map<string, number[]>();
    const sequenceOf: number[] = [];
    segments.forEach((s, i) => {
      const list = byName.get(s.name) ?? [];
      list.push(i);
      byName.set(s.name, list);
      sequenceOf[i] = list.length;
    });
    const used = new Set<number>([0]);
    const resources: MappedResource[] = [];
    /** Segment index of each instance, to find parents and following segments. */
    const at = new Map<string, number>();
    for (const r of map.resources) {
      const indexes = byName.get(r.segment) ?? [];
      const chosen = r.repeat ? indexes : indexes.slice(0, 1);
      if (chosen.length === 0) {
        if (r.required)
          throw new MappingError(`${map.source}: segment ${r.segment} is required`, '100', {
            segment: r.segment,
          });
        continue;
      }
      const keyFields = this.keyFieldsOf(r);
      chosen.forEach((index, n) => {
        const seg = segments[index]!;
        used.add(index);
        const sequence = sequenceOf[index] ?? 1;
        run.holes = false;
        const { resource, claims } = this.segmentRun(seg, r.map, run, sequence);
        const follows = r.merge?.some((y) => y.follows)
          ? following(
              segments,
              index,
              new Set((r.merge ?? []).filter((y) => y.follows).map((y) => y.segment)),
            )
          : [];
        for (const x of r.merge ?? []) {
          const extras = x.follows
            ? follows.filter((i) => segments[i]!.name === x.segment)
            : (byName.get(x.segment) ?? []);
          for (const i of x.repeat ? extras : extras.slice(0, 1)) {
            used.add(i);
            run.claims = claims;
            this.segmentInto(segments[i]!, x.map, run, resource, sequenceOf[i] ?? 1);
          }
        }
        for (const [path, value] of Object.entries(map.byTrigger?.[trigger]?.[r.id] ?? {})) {
          if (setPath(resource, path, cloneJson<unknown>(value))) run.holes = true;
          claim(claims, path, 'set');
        }
        // Maps may write fixed list positions; when an earlier segment is absent its position stays empty,
        // and the list closes up here.
        if (run.holes) compactLists(resource);
        // A sender that repeats one identifier (PID-3 twice over) gives the resource one.
        if (Array.isArray(resource['identifier']))
          resource['identifier'] = uniqueValues(resource['identifier'] as unknown[]);
        const instance = r.repeat ? `${r.id}#${n + 1}` : r.id;
        at.set(instance, index);
        const parent = r.parent ? parentOf(segments, index, map, r, at, resources) : undefined;
        resources.push({
          id: r.id,
          instance,
          resource,
          ...(r.key ? { key: r.key } : {}),
          ...(r.identity ? { identity: r.identity } : {}),
          refs: r.refs ?? {},
          required: r.required ?? false,
          claims,
          source: { segment: seg.name, sequence },
          keyFields,
          ...(parent ? { parent } : {}),
        });
      });
    }
    const known = this.knownSegments(map);
    const ignoredSegments = segments.filter((s, i) => !used.has(i) && !known.has(s.name)).map((s) => s.name);
    const journey = map.journey?.[trigger];
    return {
      structure: map.source,
      trigger,
      resources,
      defaultedAuthorities: run.defaulted,
      ignoredSegments,
      ...(journey ? { journey } : {}),
      ...(map.patientMerge ? { patientMerge: map.patientMerge } : {}),
    };
  }

  private readonly keyFieldCache = new WeakMap<MessageResource, readonly number[]>();
  /** The fields of a resource's segment map that write its key (PID-3 for `identifier`), for errors. */
  private keyFieldsOf(r: MessageResource): readonly number[] {
    let v = this.keyFieldCache.get(r);
    if (!v) {
      const rules = this.m.segments.get(r.map)?.rules ?? [];
      v = r.key ? rules.filter((x) => parsePath(x.to)[0]?.key === r.key && x.field).map((x) => x.field!) : [];
      this.keyFieldCache.set(r, v);
    }
    return v;
  }

  private readonly knownCache = new WeakMap<MessageMap, ReadonlySet<string>>();
  /** Segments a message map reads or names as unmapped on purpose: the others are ignored and counted. */
  private knownSegments(map: MessageMap): ReadonlySet<string> {
    let v = this.knownCache.get(map);
    if (!v) {
      v = new Set([
        'MSH',
        ...(map.unmapped ?? []),
        ...map.resources.flatMap((r) => [r.segment, ...(r.merge ?? []).map((x) => x.segment)]),
      ]);
      this.knownCache.set(map, v);
    }
    return v;
  }

  /** Converts one value (its components) by the rule's datatype or vocab. */
  private value(components: string[], sub: string, rule: Rule, run: Run): unknown {
    if (rule.const !== undefined) return components.join('') === '' ? undefined : rule.const;
    const dt = rule.datatype;
    if (dt !== undefined && isMapRef(dt)) {
      const out = this.datatype(dt, components, sub, run);
      return Object.keys(out).length ? out : undefined;
    }
    const first = components[0] ?? '';
    const end = first.indexOf(sub);
    const text = unescapeHl7(end < 0 ? first : first.slice(0, end), run.ctx.delimiters);
    if (text === '' || text === '""') return undefined;
    if (rule.vocab) {
      const v = this.m.vocab.get(rule.vocab);
      const code = v?.map[text];
      if (code === undefined)
        throw new MappingError(
          `${formatWhere(run.where)}: code "${text.slice(0, 20)}" is not in ${rule.vocab}`,
          '102',
          run.where,
        );
      return code;
    }
    return primitive(text, dt, run.ctx.zone, run.where);
  }

  private datatype(name: string, components: string[], sub: string, run: Run): Obj {
    const map = this.m.datatypes.get(name);
    if (!map) throw new MappingError(`no datatype map ${name}`);
    const out: Obj = {};
    const outer = run.where;
    let pendingDefault: [string, string] | undefined;
    const pick = (from: string): string => {
      const [c, s] = componentRef(from);
      const comp = components[c - 1] ?? '';
      if (s === undefined && !comp.includes(sub)) return comp;
      return comp.split(sub)[(s ?? 1) - 1] ?? '';
    };
    let valued = false;
    for (const rule of map.rules) {
      if (rule.authority) {
        // In its place among the rules (so identifiers read as before); dropped below if nothing else is set.
        const a = rule.authority;
        const text = (from: string | undefined): string =>
          from ? unescapeHl7(pick(from), run.ctx.delimiters).replace(/^""$/, '') : '';
        const sender = run.ctx.sender;
        const resolved = resolveAuthority(
          this.m.authorities,
          { namespace: text(a.namespace), universal: text(a.universal), type: text(a.type) },
          sender?.facility || sender?.application || '',
        );
        if (resolved) {
          setPath(out, rule.to, resolved.system);
          if (resolved.defaulted) pendingDefault = [resolved.defaulted, resolved.system];
        }
        continue;
      }
      if (rule.when) {
        const holds = whens(rule.when).every((w) => {
          const v = unescapeHl7(pick(String(w.component ?? 1)), run.ctx.delimiters);
          return (!w.equals || w.equals.includes(v)) && !w.notEquals?.includes(v);
        });
        if (!holds) continue;
      }
      if (rule.join) {
        const joined = rule.join
          .map((f) => unescapeHl7(pick(f), run.ctx.delimiters).replace(/^""$/, ''))
          .join('');
        if (joined) {
          setPath(out, rule.to, joined);
          valued = true;
        }
        continue;
      }
      const [c, s] = componentRef(rule.from ?? '1');
      const comp = components[c - 1] ?? '';
      if (comp === '' && rule.const === undefined) continue;
      let parts: string[];
      if (s !== undefined) parts = [comp.split(sub)[s - 1] ?? ''];
      else if (rule.datatype !== undefined && isMapRef(rule.datatype)) parts = comp.split(sub);
      else parts = [comp];
      run.where = outer.component === undefined ? { ...outer, component: c } : outer;
      const value = this.value(parts, sub, rule, run);
      run.where = outer;
      if (value !== undefined) {
        setPath(out, rule.to, value);
        valued = true;
      }
    }
    // An identifier with no value is no identifier: its authority, type or assigner alone write nothing (and
    // count nothing).
    if (!valued || (hasAuthority(map) && out['value'] === undefined)) return {};
    if (pendingDefault) run.defaulted.set(pendingDefault[0], pendingDefault[1]);
    return out;
  }
}

const NO_WHENS: readonly When[] = [];

function whens(w: Rule['when']): readonly When[] {
  return w === undefined ? NO_WHENS : Array.isArray(w) ? (w as readonly When[]) : [w as When];
}

// Rule facts read on every value, computed once per rule or map (bench P1: maps run millions of times).
const refs = new Map<string, readonly [number, number | undefined]>();
/** `4.2` → [4, 2]; `5` → [5, undefined]. */
function componentRef(from: string): readonly [number, number | undefined] {
  let r = refs.get(from);
  if (!r) {
    const [c, s] = from.split('.').map(Number);
    r = [c ?? 1, s];
    refs.set(from, r);
  }
  return r;
}
const authorityMaps = new WeakMap<DatatypeMap, boolean>();
function hasAuthority(map: DatatypeMap): boolean {
  let v = authorityMaps.get(map);
  if (v === undefined) {
    v = map.rules.some((r) => r.authority);
    authorityMaps.set(map, v);
  }
  return v;
}
function isMapRef(datatype: string): boolean {
  return datatype.charCodeAt(datatype.length - 1) === 93; // ends in "]": SOURCE[Target]
}

function whenHolds(seg: Hl7Segment, when: When, tested: Map<number, string>): boolean {
  if (when.field === undefined) return true;
  const key = when.field * 1000 + (when.component ?? 1);
  let v = tested.get(key);
  if (v === undefined) {
    v = seg.get(when.field, when.component ?? 1);
    tested.set(key, v);
  }
  if (when.equals && !when.equals.includes(v)) return false;
  if (when.notEquals?.includes(v)) return false;
  return true;
}

function formatWhere(w: ErrorLocation): string {
  return `${w.segment}-${w.field ?? ''}${w.component ? `.${w.component}` : ''}`;
}

/** Indexes of the segments right after `index` whose names are in `names` (a contiguous run). */
function following(segments: readonly Hl7Segment[], index: number, names: ReadonlySet<string>): number[] {
  const out: number[] = [];
  for (let i = index + 1; i < segments.length && names.has(segments[i]!.name); i++) out.push(i);
  return out;
}

/** The instance of `r.parent` this occurrence belongs to: the nearest earlier one, unless a stopAt segment intervenes. */
function parentOf(
  segments: readonly Hl7Segment[],
  index: number,
  map: MessageMap,
  r: MessageResource,
  at: ReadonlyMap<string, number>,
  done: readonly MappedResource[],
): string | undefined {
  const parent = map.resources.find((x) => x.id === r.parent);
  if (!parent) return undefined;
  const stop = new Set(r.stopAt ?? []);
  for (let i = index - 1; i >= 0; i--) {
    const name = segments[i]!.name;
    if (name === parent.segment) {
      return done.find((x) => x.id === parent.id && at.get(x.instance) === i)?.instance;
    }
    if (stop.has(name)) return undefined;
  }
  return undefined;
}

function primitive(text: string, dt: string | undefined, zone: string, loc: ErrorLocation): unknown {
  try {
    switch (dt) {
      case undefined:
      case 'ST':
      case 'ID':
      case 'IS':
        return text;
      case 'NM': {
        const n = Number(text);
        if (!Number.isFinite(n) || text.trim() === '') throw new Error('not a number');
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
      case 'YN': {
        const v = text.toUpperCase();
        if (v !== 'Y' && v !== 'N') throw new Error('not Y or N');
        return v === 'Y';
      }
      default:
        throw new Error(`unknown datatype ${dt}`);
    }
  } catch (e) {
    throw new MappingError(
      `${formatWhere(loc)}: ${e instanceof Error ? e.message : 'invalid value'}`,
      '102',
      loc,
    );
  }
}

export function compactLists(node: unknown): void {
  if (Array.isArray(node)) {
    for (let i = node.length - 1; i >= 0; i--)
      if (node[i] === undefined || node[i] === null) node.splice(i, 1);
    for (const x of node) compactLists(x);
  } else if (node && typeof node === 'object') {
    for (const v of Object.values(node)) compactLists(v);
  }
}
