/**
 * Property-based fuzzing of request bodies (fast-check): an arbitrary that mutates a valid JSON payload the
 * ways callers get bodies wrong — dropped elements, wrong types, `null`, arrays for objects and objects for
 * arrays, huge strings, deep nesting, control characters, lone UTF-16 surrogates, unknown elements and
 * dangling references — and the run sizes shared by every fuzz test.
 *
 * Runs are sized so the whole fuzz suite stays within about three minutes on a 2-core CI machine; `FUZZ_RUNS`
 * raises them for a long run (`npm run fuzz`). Seeds are fixed, so a failure replays.
 */
import fc from 'fast-check';

/** Runs per endpoint: small in CI, `FUZZ_RUNS` for a long run. */
export const FUZZ_RUNS = Number(process.env['FUZZ_RUNS'] ?? 20);
/** The base seed; each property adds its own index, so one failing endpoint replays on its own. */
export const FUZZ_SEED = 0x17_5eed;

/** The placeholder a payload builder puts where the run's unique marker goes (replaced after mutation). */
export const MARKER = '__FUZZ_MARKER__';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Path = (string | number)[];

export type Mutation =
  | { kind: 'drop' }
  | { kind: 'null' }
  | { kind: 'replace'; value: Json }
  | { kind: 'wrap-array' }
  | { kind: 'unwrap-array' }
  | { kind: 'huge'; length: number }
  | { kind: 'deep'; depth: number; arrays: boolean }
  | { kind: 'control'; char: string }
  | { kind: 'surrogate'; char: string }
  | { kind: 'unknown-element'; key: string }
  | { kind: 'dangling'; reference: string };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constant<Mutation>({ kind: 'drop' }),
  fc.constant<Mutation>({ kind: 'null' }),
  fc
    .constantFrom<Json>(0, -1, 3.5, 1e308, true, false, '', ' ', 'x', {}, [], [null], {
      resourceType: 'Patient',
    })
    .map((value): Mutation => ({ kind: 'replace', value })),
  fc.jsonValue({ maxDepth: 2 }).map((value): Mutation => ({ kind: 'replace', value: value as Json })),
  fc.constant<Mutation>({ kind: 'wrap-array' }),
  fc.constant<Mutation>({ kind: 'unwrap-array' }),
  fc.integer({ min: 5_000, max: 120_000 }).map((length): Mutation => ({ kind: 'huge', length })),
  fc
    .record({ depth: fc.integer({ min: 20, max: 3_000 }), arrays: fc.boolean() })
    .map((d): Mutation => ({ kind: 'deep', ...d })),
  fc
    .constantFrom('\u0000', '\u0001', '\u0007', '\u000b', '\u001b', '\u001f')
    .map((char): Mutation => ({ kind: 'control', char })),
  fc
    .constantFrom('\uD800', '\uDBFF', '\uDC00', '\uDFFF', '\uDFFF\uD800')
    .map((char): Mutation => ({ kind: 'surrogate', char })),
  fc
    .constantFrom('fuzzUnknown', '_status', 'resourceType', '', 'x\u0000', '\uD800', '__proto__x')
    .map((key): Mutation => ({ kind: 'unknown-element', key })),
  fc
    .constantFrom(
      'Patient/fuzz-missing-0',
      'Practitioner/does-not-exist-404',
      'urn:uuid:99999999-9999-4999-8999-999999999999',
      'Patient/',
      'Patient/../../metadata',
      '#contained-missing',
      'http://elsewhere.example/fhir/Patient/1',
      '',
    )
    .map((reference): Mutation => ({ kind: 'dangling', reference })),
);

/** Every node's path (root excluded), down to a depth where a deep-nesting mutation's inside stays one node. */
function allPaths(value: Json, at: Path = [], out: Path[] = []): Path[] {
  if (at.length >= 24) return out;
  const visit = (k: string | number, v: Json): void => {
    out.push([...at, k]);
    allPaths(v, [...at, k], out);
  };
  if (Array.isArray(value)) value.forEach((v, i) => visit(i, v));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) visit(k, v);
  return out;
}

function nested(depth: number, arrays: boolean): Json {
  let v: Json = 'x';
  for (let i = 0; i < depth; i++) v = arrays ? [v] : { extension: v };
  return v;
}

const insert = (s: string, c: string): string => `${s.slice(0, s.length >> 1)}${c}${s.slice(s.length >> 1)}`;

/** Applies one mutation at the `pick`-th node (root excluded) of `doc`, in place; returns the new root. */
export function applyMutation(doc: Json, pick: number, m: Mutation): Json {
  const paths = allPaths(doc);
  let candidates = paths;
  if (m.kind === 'dangling') {
    const refs = paths.filter((p) => p[p.length - 1] === 'reference');
    if (refs.length > 0) candidates = refs;
  }
  if (candidates.length === 0) return doc;
  const path = candidates[pick % candidates.length]!;
  const parentPath = path.slice(0, -1);
  const key = path[path.length - 1]!;
  let parent: Json = doc;
  for (const k of parentPath) parent = (parent as Record<string | number, Json>)[k]!;
  const container = parent as Record<string | number, Json>;
  const current = container[key]!;
  const set = (v: Json) => {
    container[key] = v;
  };
  switch (m.kind) {
    case 'drop':
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete container[key];
      break;
    case 'null':
      set(null);
      break;
    case 'replace':
      set(structuredClone(m.value));
      break;
    case 'wrap-array':
      set([current]);
      break;
    case 'unwrap-array':
      set(Array.isArray(current) ? (current[0] ?? {}) : { value: current });
      break;
    case 'huge':
      set(typeof current === 'string' ? current + 'x'.repeat(m.length) : 'y'.repeat(m.length));
      break;
    case 'deep':
      set(nested(m.depth, m.arrays));
      break;
    case 'control':
    case 'surrogate':
      set(typeof current === 'string' ? insert(current, m.char) : `a${m.char}b`);
      break;
    case 'unknown-element':
      if (current && typeof current === 'object' && !Array.isArray(current)) current[m.key] = 'fuzz';
      else if (!Array.isArray(parent)) container[m.key] = 'fuzz';
      else set({ [m.key]: 'fuzz' });
      break;
    case 'dangling':
      if (key === 'reference') set(m.reference);
      else set({ reference: m.reference });
      break;
  }
  return doc;
}

/** One to three mutations of `base`, as JSON text (the marker placeholder still in it). */
export function mutatedJson(base: unknown): fc.Arbitrary<{ text: string; mutations: [number, Mutation][] }> {
  return fc.array(fc.tuple(fc.nat(), mutationArb), { minLength: 1, maxLength: 3 }).map((mutations) => {
    let doc = structuredClone(base) as Json;
    for (const [pick, m] of mutations) doc = applyMutation(doc, pick, m);
    return { text: JSON.stringify(doc), mutations };
  });
}

/** A short description of the mutations, for a failure message (huge strings and deep values abbreviated). */
export function describeMutations(mutations: readonly [number, Mutation][]): string {
  return mutations
    .map(([pick, m]) => `${m.kind}@${pick}${'value' in m ? `=${JSON.stringify(m.value).slice(0, 40)}` : ''}`)
    .join(', ');
}

/** HL7 v2 text mutations: segments dropped or repeated, fields replaced by hostile values, separators broken. */
export function mutatedHl7(base: string): fc.Arbitrary<string> {
  const hostile = fc.oneof(
    fc.constantFrom(
      '',
      '\u0000',
      '\uD800',
      '\uDFFF',
      '|||||',
      '^^^^',
      '~~~',
      '\\',
      '\\X00\\',
      '\\H\\',
      '99999999999999999999',
      '2024-13-45',
      'MSH|^~\\&|',
      '\r',
      '\n',
      '\u001c',
      '\u000b',
      'Patient/fuzz-missing-0',
    ),
    fc.integer({ min: 1_000, max: 60_000 }).map((n) => 'z'.repeat(n)),
    fc.string({ maxLength: 30, unit: 'binary' }),
  );
  const op = fc.oneof(
    fc.tuple(fc.constant('field' as const), fc.nat(), fc.nat(), hostile),
    fc.tuple(fc.constant('drop-segment' as const), fc.nat(), fc.nat(), fc.constant('')),
    fc.tuple(fc.constant('dup-segment' as const), fc.nat(), fc.nat(), fc.constant('')),
    fc.tuple(fc.constant('truncate' as const), fc.nat(), fc.nat(), fc.constant('')),
  );
  return fc.array(op, { minLength: 1, maxLength: 3 }).map((ops) => {
    let segments = base.split('\r').filter(Boolean);
    for (const [kind, a, b, value] of ops) {
      if (segments.length === 0) break;
      const si = a % segments.length;
      const seg = segments[si]!;
      if (kind === 'field') {
        const fields = seg.split('|');
        fields[b % fields.length] = value;
        segments[si] = fields.join('|');
      } else if (kind === 'drop-segment') segments = segments.filter((_, i) => i !== si);
      else if (kind === 'dup-segment') segments.splice(si, 0, seg);
      else segments[si] = seg.slice(0, b % (seg.length + 1));
    }
    return segments.map((s) => `${s}\r`).join('');
  });
}
