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

export function parsePath(path: string): Step[] {
  return path.split('.').map((part) => {
    const m = /^([A-Za-z][A-Za-z0-9]*)(?:\[(\d*|\$)\])?$/.exec(part);
    if (!m?.[1]) throw new Error(`invalid path segment "${part}" in "${path}"`);
    const index =
      m[2] === undefined ? undefined : m[2] === '' ? 'append' : m[2] === '$' ? 'cursor' : Number(m[2]);
    return { key: m[1], index };
  });
}

/** The `[$]` elements of one segment occurrence: list path → index. */
export type Cursor = Map<string, number>;

export function setPath(target: Obj, path: string, value: unknown, cursor?: Cursor): void {
  const steps = parsePath(path);
  let node: Obj = target;
  let prefix = '';
  steps.forEach((step, i) => {
    prefix += `.${step.key}`;
    const last = i === steps.length - 1;
    if (step.index === undefined) {
      if (last) node[step.key] = value;
      else node = (node[step.key] ??= {}) as Obj;
      return;
    }
    const list = (node[step.key] ??= []) as unknown[];
    let at: number;
    if (step.index === 'cursor') {
      const known = cursor?.get(prefix);
      at = known ?? list.length;
      cursor?.set(prefix, at);
    } else at = step.index === 'append' ? list.length : step.index;
    prefix += `[${at}]`;
    if (last) list[at] = value;
    else node = (list[at] ??= {}) as Obj;
  });
}
