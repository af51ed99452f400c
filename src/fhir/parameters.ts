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
  | 'valueBoolean';

export interface ParamSpec {
  readonly kind: ValueKind;
  readonly required?: boolean;
}

type Values<S extends Record<string, ParamSpec>> = {
  [K in keyof S]?: NonNullable<ParametersParameter[S[K]['kind']]>;
};

export function readParameters<S extends Record<string, ParamSpec>>(
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
    if (name in out) {
      problems.push(`parameter "${name}" is given more than once`);
      continue;
    }
    const value = (p as unknown as Record<string, unknown>)[s.kind];
    const wrong =
      Object.keys(p).find((k) => k.startsWith('value') && k !== s.kind) ??
      (p.resource ? 'resource' : undefined);
    if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) {
      problems.push(`parameter "${name}" must be given as ${s.kind}${wrong ? ` (got ${wrong})` : ''}`);
      continue;
    }
    out[name] = value;
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
