/**
 * Writes a value into a FHIR resource at a simple path: `a.b`, `a[0].b`, `a[]` to append to a list, and
 * `a[$]` for "the element this segment occurrence appended": the first `[$]` write of a segment appends,
 * later ones in the same segment reuse it (so AIP-3 and AIP-4 fill one participant, and each repeating AIP
 * gets its own). Enough for declarative maps; no FHIRPath functions.
 */
type Obj = Record<string, unknown>;

interface Step {
  readonly key: string;
  /** undefined: plain property; number: that index; 'append': a new element at the end; 'cursor': `[$]`. */
  readonly index: number | 'append' | 'cursor' | undefined;
}

// Maps use a few hundred distinct paths, each written many times per message: parse each once (bench P1).
const parsed = new Map<string, readonly Step[]>();

export function parsePath(path: string): readonly Step[] {
  let steps = parsed.get(path);
  if (!steps) {
    steps = parseUncached(path);
    if (parsed.size < 10_000) parsed.set(path, steps);
  }
  return steps;
}

function parseUncached(path: string): Step[] {
  return path.split('.').map((part) => {
    const m = /^([A-Za-z][A-Za-z0-9]*)(?:\[(\d*|\$)\])?$/.exec(part);
    if (!m?.[1]) throw new Error(`invalid path segment "${part}" in "${path}"`);
    const index =
      m[2] === undefined ? undefined : m[2] === '' ? 'append' : m[2] === '$' ? 'cursor' : Number(m[2]);
    return { key: m[1], index };
  });
}

/** A deep copy of JSON data (what maps and resources are): several times faster than structuredClone. */
export function cloneJson<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v: unknown) => cloneJson(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = cloneJson(v);
    return out as T;
  }
  return value;
}

/** The `[$]` elements of one segment occurrence: list path → index. */
export type Cursor = Map<string, number>;

/** Writes the value; true when the write left an empty list position behind (an index past the end). */
export function setPath(target: Obj, path: string, value: unknown, cursor?: Cursor): boolean {
  const steps = parsePath(path);
  let node: Obj = target;
  // The list path so far, for `[$]` cursors only.
  let prefix = '';
  let hole = false;
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    const last = i === steps.length - 1;
    if (cursor) prefix += `.${step.key}`;
    if (step.index === undefined) {
      if (last) node[step.key] = value;
      else node = (node[step.key] ??= {}) as Obj;
      continue;
    }
    const list = (node[step.key] ??= []) as unknown[];
    let at: number;
    if (step.index === 'cursor') {
      const known = cursor?.get(prefix);
      at = known ?? list.length;
      cursor?.set(prefix, at);
    } else at = step.index === 'append' ? list.length : step.index;
    if (at > list.length) hole = true;
    if (cursor) prefix += `[${at}]`;
    if (last) list[at] = value;
    else node = (list[at] ??= {}) as Obj;
  }
  return hole;
}

/**
 * Like setPath, on a shallow copy: every object and list along the path is copied before it is written, so
 * the value the copy was made from is left as it was (the transaction builder wires references into mapped
 * resources that a retry maps again) without cloning whole resources.
 */
export function setPathCopying(copy: Obj, path: string, value: unknown): void {
  const steps = parsePath(path);
  let node: Obj = copy;
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    const last = i === steps.length - 1;
    if (step.index === undefined) {
      if (last) node[step.key] = value;
      else {
        const next = { ...((node[step.key] as Obj | undefined) ?? {}) };
        node[step.key] = next;
        node = next;
      }
      continue;
    }
    const list = [...((node[step.key] as unknown[] | undefined) ?? [])];
    node[step.key] = list;
    const at = step.index === 'append' || step.index === 'cursor' ? list.length : step.index;
    if (last) list[at] = value;
    else {
      const next = { ...((list[at] as Obj | undefined) ?? {}) };
      list[at] = next;
      node = next;
    }
  }
}
