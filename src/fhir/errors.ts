/**
 * The one typed error for anything that goes wrong talking to the FHIR server.
 *
 * It carries the server's OperationOutcome and status so callers can branch on them (409 on a stale
 * If-Match, 412 on a multiple-match conditional, 404/410 on reads) without parsing text. The message names
 * the method and the resource path only: query strings may hold PHI (e.g. `Patient?name=`), so they are
 * never put into the message.
 *
 * Nor is the server's `diagnostics` text: servers echo the values they were sent (HAPI quotes a family name
 * or an identifier it could not store), so wherever the error is written out (a log line, JSON, a job's
 * failure reason) only the outcome's codes and locations go with it (`toJSON`, `describeOutcome`).
 */
import type { OperationOutcome } from 'fhir/r4.js';
import { outcomeSummary } from '../shared/logger.js';

/** `auth`: no access token could be had for the request (the token endpoint refused or could not be reached). */
export type FhirErrorKind = 'http' | 'network' | 'timeout' | 'auth';

export class FhirError extends Error {
  readonly kind: FhirErrorKind;
  /**
   * HTTP status from the server; 0 for network failures and timeouts. For `auth`, the token endpoint's
   * status (0 when it could not be reached).
   */
  readonly status: number;
  readonly outcome: OperationOutcome | undefined;
  readonly method: string;
  /** Path relative to the FHIR base, without the query string. */
  readonly path: string;

  constructor(args: {
    kind: FhirErrorKind;
    status: number;
    method: string;
    path: string;
    outcome?: OperationOutcome | undefined;
    cause?: unknown;
    /** Appended to the message (`auth`: why no token); never a token, secret or query string. */
    detail?: string;
  }) {
    const what =
      args.kind === 'http'
        ? `FHIR server answered ${args.status}`
        : args.kind === 'timeout'
          ? 'FHIR server did not answer in time'
          : args.kind === 'auth'
            ? 'No access token for the FHIR server'
            : 'FHIR server could not be reached';
    super(
      `${what} for ${args.method} ${args.path}${args.detail ? `: ${args.detail}` : ''}`,
      args.cause === undefined ? undefined : { cause: args.cause },
    );
    this.name = 'FhirError';
    this.kind = args.kind;
    this.status = args.status;
    this.outcome = args.outcome;
    this.method = args.method;
    this.path = args.path;
  }

  /** What a log line or a JSON dump of the error shows: the outcome cut down to codes and locations. */
  toJSON(): Record<string, unknown> {
    const outcome = outcomeSummary(this.outcome);
    return {
      name: this.name,
      message: this.message,
      kind: this.kind,
      status: this.status,
      method: this.method,
      path: this.path,
      ...(outcome ? { outcome } : {}),
    };
  }

  /** A version conflict: HAPI answers 409 (HAPI-0989) for a stale If-Match, other servers 412. */
  get isConflict(): boolean {
    return this.kind === 'http' && (this.status === 409 || this.status === 412);
  }

  get isNotFound(): boolean {
    return this.kind === 'http' && (this.status === 404 || this.status === 410);
  }

  /**
   * Worth retrying: the network, a timeout, throttling or a server-side failure (of the FHIR server, or for
   * `auth` of the token endpoint; a token endpoint that refused our credentials is final).
   */
  get isTransient(): boolean {
    if (this.kind === 'auth') return this.status === 0 || this.status === 429 || this.status >= 500;
    return this.kind !== 'http' || this.status === 429 || (this.status >= 500 && this.status !== 501);
  }
}

export function isFhirError(e: unknown): e is FhirError {
  return e instanceof FhirError;
}

/**
 * An OperationOutcome in a line that is safe to keep (a job's failure reason, a dead letter): each issue's
 * code, the server's message codes and where it points, e.g. `processing HAPI-0450 at Patient.birthDate`.
 */
export function describeOutcome(outcome: OperationOutcome | undefined): string {
  return (outcomeSummary(outcome)?.issue ?? [])
    .map((i) =>
      [
        i['code'],
        ...((i['details'] as string[] | undefined) ?? []),
        ...((i['serverCodes'] as string[] | undefined) ?? []),
        ...(i['expression'] || i['location']
          ? [`at ${((i['expression'] ?? i['location']) as string[]).join(', ')}`]
          : []),
      ]
        .filter(Boolean)
        .join(' '),
    )
    .filter(Boolean)
    .join('; ');
}
