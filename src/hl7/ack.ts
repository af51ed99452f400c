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
  /** Where the error is: ERR-2 (v2.5+) and ERR-1 (before 2.5), e.g. PID, 1st occurrence, field 7. */
  readonly location?: {
    readonly segment: string;
    readonly sequence?: number;
    readonly field?: number;
    readonly component?: number;
  };
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
    const loc = options.error.location;
    const c = d.component;
    // ERR-2 (ERL): segment ^ sequence ^ field ^ repetition ^ component. ERR-1 (ELD, before v2.5): segment ^
    // sequence ^ field ^ code; both name the same place, so senders of any version can show it.
    const erl = loc
      ? [
          loc.segment,
          String(loc.sequence ?? 1),
          loc.field ? String(loc.field) : '',
          loc.field ? '1' : '',
          loc.component ? String(loc.component) : '',
        ]
          .join(c)
          .replace(new RegExp(`${escapeRegex(c)}+$`), '')
      : '';
    const old = /^2\.[1-4]/.test(raw(12));
    const eld =
      loc && old
        ? [
            loc.segment,
            String(loc.sequence ?? 1),
            loc.field ? String(loc.field) : '',
            `${options.error.code}${d.subcomponent}${name}${d.subcomponent}HL70357`,
          ].join(c)
        : '';
    segments.push(
      [
        'ERR',
        eld,
        erl,
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

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
