/**
 * The one pino logger. Redaction is configured here and only here: a child logger given its own `redact`
 * silently drops the parent's paths (pino behaviour), so children must never pass `redact`.
 *
 * Invariant: PHI never reaches a log line. Redaction is the safety net; the rule is to log ids, not payloads,
 * because message strings are never redacted.
 */
import { pino, type Logger, type LoggerOptions } from 'pino';

/** Keys that hold PHI wherever they appear (top level, or up to three levels deep). */
const PHI_KEYS = [
  'name',
  'given',
  'family',
  'identifier',
  'telecom',
  'address',
  'birthDate',
  'birthdate',
  'phone',
  'email',
  'mrn',
  'ssn',
  'hl7',
  'raw',
  'er7',
  'message_body',
  'payload',
  'resource',
  'body',
  'entry',
  'text',
  // OperationOutcome.issue.diagnostics: servers echo the values they refused (HAPI quotes them).
  'diagnostics',
] as const;

function phiPaths(): string[] {
  const paths: string[] = [];
  for (const key of PHI_KEYS) {
    paths.push(key, `*.${key}`, `*.*.${key}`, `*.*.*.${key}`);
  }
  return paths;
}

/** Exported so a test can prove each class of PHI path is covered. */
export const REDACT_PATHS: readonly string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-careway-signature"]',
  'headers.authorization',
  '*.headers.authorization',
  'authorization',
  'token',
  '*.token',
  ...phiPaths(),
];

/**
 * An OperationOutcome from a server that may echo what it was sent (HAPI quotes resource values in
 * `diagnostics`: a family name, an identifier) cut down to what is safe to log: per issue its severity, code,
 * the codes of its details, the server's own message codes found in the text (`HAPI-0389`) and where it points
 * (expression, location). Never the text itself.
 */
export function outcomeSummary(outcome: unknown): { issue: Record<string, unknown>[] } | undefined {
  const issues = (outcome as { issue?: unknown } | undefined)?.issue;
  if (!Array.isArray(issues)) return undefined;
  return {
    issue: issues.slice(0, 20).map((raw) => {
      const i = (raw ?? {}) as Record<string, unknown>;
      const codes = ((i['details'] as { coding?: { code?: unknown }[] } | undefined)?.coding ?? [])
        .map((c) => c.code)
        .filter((c): c is string => typeof c === 'string');
      const list = (v: unknown): string[] | undefined =>
        Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string').slice(0, 5) : undefined;
      const diagnostics = typeof i['diagnostics'] === 'string' ? i['diagnostics'] : '';
      const serverCodes = [...new Set(diagnostics.match(/\bHAPI-\d{3,5}\b/g) ?? [])].slice(0, 5);
      const expression = list(i['expression']);
      const location = list(i['location']);
      return {
        ...(typeof i['severity'] === 'string' ? { severity: i['severity'] } : {}),
        ...(typeof i['code'] === 'string' ? { code: i['code'] } : {}),
        ...(codes.length ? { details: codes } : {}),
        ...(serverCodes.length ? { serverCodes } : {}),
        ...(expression?.length ? { expression } : {}),
        ...(location?.length ? { location } : {}),
      };
    }),
  };
}

/**
 * Where a serialized error may carry text a server echoed: an `outcome` (FhirError) or a `diagnostics`
 * anywhere below the error, at any depth the redact paths do not reach. Outcomes become their summary.
 */
function scrubError(node: unknown, depth = 0): unknown {
  if (depth > 6 || node === null || typeof node !== 'object') return node;
  if (Array.isArray(node)) return node.map((x) => scrubError(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if (k === 'outcome') out[k] = outcomeSummary(v) ?? '[redacted]';
    else if (k === 'diagnostics') out[k] = '[redacted]';
    else out[k] = scrubError(v, depth + 1);
  }
  return out;
}

/** pino's error serializer, then scrubbed (see scrubError). */
export function serializeError(err: unknown): unknown {
  return scrubError(pino.stdSerializers.err(err as Error));
}

export interface LoggerSettings {
  level: string;
  /** Pretty output for humans at a terminal (dev only; pino-pretty is a dev dependency). */
  pretty?: boolean;
  /** A destination stream, used by tests to capture lines. */
  destination?: NodeJS.WritableStream;
}

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: { service: 'careway' },
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    // The std serializer reports the class as `err.type`, which survives the `*.name` PHI path; an
    // OperationOutcome the error carries is cut down to its codes and locations (outcomeSummary).
    serializers: { err: serializeError },
  };
}

export function createLogger(settings: LoggerSettings): Logger {
  const options = loggerOptions(settings.level);
  if (settings.destination) return pino(options, settings.destination as pino.DestinationStream);
  if (settings.pretty) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  return pino(options);
}
