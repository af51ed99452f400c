/**
 * Writes a value into a FHIR resource at a simple path: `a.b`, `a[0].b`, and `a[]` to append to a list.
 * Enough for declarative maps; no FHIRPath functions.
 */
type Obj = Record<string, unknown>;

interface Step {
  readonly key: string;
  /** undefined: plain property; number: that index; 'append': a new element at the end. */
  readonly index: number | 'append' | undefined;
}

export function parsePath(path: string): Step[] {
  return path.split('.').map((part) => {
    const m = /^([A-Za-z][A-Za-z0-9]*)(?:\[(\d*)\])?$/.exec(part);
    if (!m?.[1]) throw new Error(`invalid path segment "${part}" in "${path}"`);
    return { key: m[1], index: m[2] === undefined ? undefined : m[2] === '' ? 'append' : Number(m[2]) };
  });
}

export function setPath(target: Obj, path: string, value: unknown): void {
  const steps = parsePath(path);
  let node: Obj = target;
  steps.forEach((step, i) => {
    const last = i === steps.length - 1;
    if (step.index === undefined) {
      if (last) node[step.key] = value;
      else node = (node[step.key] ??= {}) as Obj;
      return;
    }
    const list = (node[step.key] ??= []) as unknown[];
    const at = step.index === 'append' ? list.length : step.index;
    if (last) list[at] = value;
    else node = (list[at] ??= {}) as Obj;
  });
}
