/**
 * The one error registry. Every failure Careway reports to a caller is a `CarewayError` with a registry code;
 * the HTTP error handler turns it into an OperationOutcome with the registry's status and FHIR issue code.
 *
 * Invariant: `diagnostics` never carries PHI. It names the rule, the parameter or the resource type, never
 * a value taken from a patient record.
 */
import type { OperationOutcome, OperationOutcomeIssue } from 'fhir/r4.js';

/** FHIR issue-type codes we use (http://hl7.org/fhir/issue-type). */
export type IssueCode =
  | 'invalid'
  | 'structure'
  | 'required'
  | 'value'
  | 'security'
  | 'login'
  | 'forbidden'
  | 'not-found'
  | 'not-supported'
  | 'conflict'
  | 'duplicate'
  | 'processing'
  | 'business-rule'
  | 'transient'
  | 'timeout'
  | 'exception'
  | 'too-costly'
  | 'throttled';

interface Entry {
  readonly status: number;
  readonly issue: IssueCode;
  readonly severity: 'error' | 'fatal';
}

/** Registry: code → HTTP status and FHIR issue type. Add new failure kinds here, nowhere else. */
export const ERRORS = {
  'bad-request': { status: 400, issue: 'invalid', severity: 'error' },
  /** A body that is not a structurally valid FHIR R4 resource (or holds lone surrogates, control characters). */
  'invalid-structure': { status: 400, issue: 'structure', severity: 'error' },
  'unsupported-media-type': { status: 415, issue: 'not-supported', severity: 'error' },
  'payload-too-large': { status: 413, issue: 'too-costly', severity: 'error' },
  unauthenticated: { status: 401, issue: 'login', severity: 'error' },
  'insufficient-scope': { status: 403, issue: 'forbidden', severity: 'error' },
  'outside-compartment': { status: 403, issue: 'forbidden', severity: 'error' },
  'not-found': { status: 404, issue: 'not-found', severity: 'error' },
  'method-not-allowed': { status: 405, issue: 'not-supported', severity: 'error' },
  'not-supported': { status: 400, issue: 'not-supported', severity: 'error' },
  conflict: { status: 409, issue: 'conflict', severity: 'error' },
  'invalid-parameters': { status: 400, issue: 'invalid', severity: 'error' },
  unprocessable: { status: 422, issue: 'processing', severity: 'error' },
  'unknown-reference': { status: 422, issue: 'not-found', severity: 'error' },
  'rule-violation': { status: 422, issue: 'business-rule', severity: 'error' },
  'journey-closed': { status: 409, issue: 'business-rule', severity: 'error' },
  'not-a-journey': { status: 422, issue: 'business-rule', severity: 'error' },
  'concurrent-update': { status: 409, issue: 'conflict', severity: 'error' },
  'rate-limited': { status: 429, issue: 'throttled', severity: 'error' },
  'upstream-unavailable': { status: 502, issue: 'transient', severity: 'error' },
  'upstream-timeout': { status: 504, issue: 'timeout', severity: 'error' },
  'shutting-down': { status: 503, issue: 'transient', severity: 'error' },
  internal: { status: 500, issue: 'exception', severity: 'fatal' },
} as const satisfies Record<string, Entry>;

export type ErrorCode = keyof typeof ERRORS;

/** An error Careway raises on purpose. `code` selects the registry entry. */
export class CarewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly issue: IssueCode;
  /** Extra headers the HTTP layer should send, e.g. WWW-Authenticate on 401. */
  readonly headers: Readonly<Record<string, string>>;
  /** A finer code than the registry's for machines (e.g. the journey rule that refused a change). */
  readonly detailsCode: string;
  /** One issue per problem, when a request had several (each with its FHIRPath expression). */
  readonly issues: readonly OperationOutcomeIssue[] | undefined;

  constructor(
    code: ErrorCode,
    diagnostics: string,
    options?: {
      cause?: unknown;
      headers?: Record<string, string>;
      detailsCode?: string;
      issues?: readonly OperationOutcomeIssue[];
    },
  ) {
    super(diagnostics, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CarewayError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.issue = ERRORS[code].issue;
    this.headers = options?.headers ?? {};
    this.detailsCode = options?.detailsCode ?? code;
    this.issues = options?.issues;
  }

  toOperationOutcome(): OperationOutcome {
    if (this.issues?.length) return { resourceType: 'OperationOutcome', issue: [...this.issues] };
    return operationOutcome(ERRORS[this.code].severity, this.issue, this.message, this.detailsCode);
  }
}

/** Builds a one-issue OperationOutcome. `detailsCode` is Careway's registry code, for machines. */
export function operationOutcome(
  severity: 'fatal' | 'error' | 'warning' | 'information',
  code: IssueCode,
  diagnostics: string,
  detailsCode?: string,
): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity,
        code,
        diagnostics,
        ...(detailsCode
          ? {
              details: {
                coding: [{ system: 'https://careway.dev/fhir/CodeSystem/error', code: detailsCode }],
              },
            }
          : {}),
      },
    ],
  };
}
