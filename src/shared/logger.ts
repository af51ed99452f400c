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
    // The std serializer reports the class as `err.type`, which survives the `*.name` PHI path.
    serializers: { err: pino.stdSerializers.err },
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
