/**
 * Reads a FHIR `Parameters` body for an operation against a small spec, reporting every problem at once
 * (unknown names, duplicates, missing required parameters, wrong value[x] types) as one 400.
 */
import type { Parameters, ParametersParameter } from 'fhir/r4.js';
import { CarewayError } from '../shared/errors.js';

export type ValueKind =
  | 'valueReference'
  | 'valueCode'
  | 'valueString'
  | 'valueCodeableConcept'
  | 'valueIdentifier'
  | 'valueBoolean'
  | 'valueCoding'
  | 'valueDate'
  | 'valueDateTime'
  | 'valueInstant'
  | 'valueTime'
  | 'valueInteger'
  | 'valuePositiveInt'
  | 'valueDecimal'
  | 'valueUrl'
  /** A parameter made of parts (`parameter.part`), read with another spec by the caller. */
  | 'part'
  /** A resource (`parameter.resource`). */
  | 'resource';

export interface ParamSpec {
  readonly kind: ValueKind;
  readonly required?: boolean;
  /** May be given more than once; the value is then an array in the order given. */
  readonly repeats?: boolean;
}

type One<P extends ParamSpec> = P['kind'] extends 'part'
  ? ParametersParameter[]
  : P['kind'] extends 'resource'
    ? NonNullable<ParametersParameter['resource']>
    : NonNullable<ParametersParameter[Exclude<P['kind'], 'part' | 'resource'>]>;

type Values<S extends Record<string, ParamSpec>> = {
  [K in keyof S]?: S[K]['repeats'] extends true ? One<S[K]>[] : One<S[K]>;
};

export function readParameters<const S extends Record<string, ParamSpec>>(
  body: unknown,
  spec: S,
  operation: string,
): Values<S> {
  const problems: string[] = [];
  if (
    typeof body !== 'object' ||
    body === null ||
    (body as { resourceType?: unknown }).resourceType !== 'Parameters'
  ) {
    throw new CarewayError(
      'invalid-parameters',
      `${operation} expects a FHIR Parameters resource as its body`,
    );
  }
  const params = (body as Parameters).parameter ?? [];
  if (!Array.isArray(params))
    throw new CarewayError('invalid-parameters', `${operation}: Parameters.parameter must be an array`);
  const out: Record<string, unknown> = {};
  for (const p of params) {
    const name = typeof p?.name === 'string' ? p.name : undefined;
    if (!name) {
      problems.push('every parameter needs a name');
      continue;
    }
    const s = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (!s) {
      problems.push(`unknown parameter "${name}" (known: ${Object.keys(spec).join(', ')})`);
      continue;
    }
    if (name in out && !s.repeats) {
      problems.push(`parameter "${name}" is given more than once`);
      continue;
    }
    const value =
      s.kind === 'part'
        ? Array.isArray(p.part) && p.part.length > 0
          ? p.part
          : undefined
        : s.kind === 'resource'
          ? p.resource
          : (p as unknown as Record<string, unknown>)[s.kind];
    const wrong =
      Object.keys(p).find((k) => k.startsWith('value') && k !== s.kind) ??
      (p.resource && s.kind !== 'resource' ? 'resource' : undefined);
    if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) {
      const as = s.kind === 'part' ? 'parts' : s.kind;
      problems.push(`parameter "${name}" must be given as ${as}${wrong ? ` (got ${wrong})` : ''}`);
      continue;
    }
    if (s.repeats) ((out[name] ??= []) as unknown[]).push(value);
    else out[name] = value;
  }
  for (const [name, s] of Object.entries(spec)) {
    if (s.required && !(name in out) && !problems.some((p) => p.includes(`"${name}"`))) {
      problems.push(`parameter "${name}" is required`);
    }
  }
  if (problems.length > 0)
    throw new CarewayError('invalid-parameters', `${operation}: ${problems.join('; ')}`);
  return out as Values<S>;
}

/** `Patient/123` → `123` for the expected type; undefined for anything else (contained, absolute, other type). */
export function localId(reference: { reference?: string } | undefined, type: string): string | undefined {
  const m = new RegExp(`^${type}/([A-Za-z0-9\\-.]{1,64})$`).exec(reference?.reference ?? '');
  return m?.[1];
}
