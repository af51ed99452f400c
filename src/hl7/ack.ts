/**
 * ACK messages: MSH with sender and receiver swapped, MSH-9 `ACK^<trigger>^ACK`, a fresh MSH-10, the
 * original MSH-11/12, MSA with the original MSH-10 in MSA-2, and an ERR segment for AE/AR (HL7 table 0357
 * codes in ERR-3, severity in ERR-4). Built with the delimiters of the message being answered, or the
 * defaults when it could not be parsed.
 */
import { escapeHl7 } from './escape.js';
import { DEFAULT_DELIMITERS, type Delimiters } from './delimiters.js';
import type { Hl7Message } from './message.js';

export type AckCode = 'AA' | 'AE' | 'AR' | 'CA' | 'CE' | 'CR';

export interface AckError {
  /** Table 0357: 100 segment sequence, 101 required field missing, 102 data type, 200 unsupported message type, 207 application internal error. */
  readonly code: string;
  readonly text: string;
}

const ERR_TEXT: Record<string, string> = {
  '100': 'Segment sequence error',
  '101': 'Required field missing',
  '102': 'Data type error',
  '200': 'Unsupported message type',
  '201': 'Unsupported event code',
  '203': 'Unsupported version id',
  '207': 'Application internal error',
};

function hl7Now(now: Date): string {
  return now
    .toISOString()
    .replace(/[-:T]/g, '')
    .replace(/\.\d+Z$/, '+0000');
}

export function buildAck(
  original: Hl7Message | undefined,
  code: AckCode,
  options: { controlId: string; error?: AckError; now?: Date; application?: string; facility?: string },
): string {
  const d: Delimiters = original?.delimiters ?? DEFAULT_DELIMITERS;
  const msh = original?.msh;
  const f = d.field;
  const enc = `${d.component}${d.repetition}${d.escape}${d.subcomponent}`;
  const raw = (n: number): string => msh?.raw(n) ?? '';
  const trigger = msh?.get(9, 2) ?? '';
  const fields = [
    'MSH',
    enc,
    raw(5) || escapeHl7(options.application ?? 'CAREWAY', d), // MSH-3 ← original MSH-5
    raw(6) || escapeHl7(options.facility ?? '', d), // MSH-4 ← original MSH-6
    raw(3), // MSH-5 ← original MSH-3
    raw(4), // MSH-6 ← original MSH-4
    hl7Now(options.now ?? new Date()),
    '',
    `ACK${d.component}${trigger}${d.component}ACK`,
    escapeHl7(options.controlId, d),
    raw(11) || 'P',
    raw(12) || '2.5',
  ];
  const segments = [fields.join(f), ['MSA', code, raw(10)].join(f)];
  if (options.error) {
    const text = escapeHl7(options.error.text.slice(0, 200), d);
    const name = ERR_TEXT[options.error.code] ?? 'Error';
    const severity = code === 'AA' || code === 'CA' ? 'W' : 'E';
    segments.push(
      [
        'ERR',
        '',
        '',
        `${options.error.code}${d.component}${name}${d.component}HL70357`,
        severity,
        '',
        '',
        '',
        text,
      ].join(f),
    );
  }
  return `${segments.join('\r')}\r`;
}
