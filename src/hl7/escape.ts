/**
 * HL7 v2 escape sequences, decoded with the message's own delimiters (section 2.7 of the v2 standard):
 * \F\ field, \S\ component, \T\ subcomponent, \R\ repetition, \E\ escape, \Xhh…\ hex bytes (UTF-8 when valid,
 * else Latin-1), \.br\ line break. Formatting commands (\H\ \N\ \.sp\ \.in\ …) and unknown sequences are
 * dropped rather than shown to people as codes; a lone escape character with no closing one is kept as is.
 */
import type { Delimiters } from './delimiters.js';

export function unescapeHl7(value: string, d: Delimiters): string {
  const e = d.escape;
  if (!value.includes(e)) return value;
  let out = '';
  let i = 0;
  while (i < value.length) {
    const ch = value[i] ?? '';
    if (ch !== e) {
      out += ch;
      i++;
      continue;
    }
    const end = value.indexOf(e, i + 1);
    if (end === -1) {
      out += value.slice(i);
      break;
    }
    const seq = value.slice(i + 1, end);
    switch (seq[0]) {
      case 'F':
        if (seq === 'F') out += d.field;
        break;
      case 'S':
        if (seq === 'S') out += d.component;
        break;
      case 'T':
        if (seq === 'T') out += d.subcomponent;
        break;
      case 'R':
        if (seq === 'R') out += d.repetition;
        break;
      case 'E':
        if (seq === 'E') out += d.escape;
        break;
      case 'X': {
        const hex = seq.slice(1);
        if (/^(?:[0-9A-Fa-f]{2})+$/.test(hex)) {
          const bytes = Buffer.from(hex, 'hex');
          try {
            out += new TextDecoder('utf-8', { fatal: true }).decode(bytes);
          } catch {
            out += bytes.toString('latin1');
          }
        }
        break;
      }
      case '.':
        if (seq === '.br') out += '\n';
        break;
      default:
        // \H\, \N\, \Cxxyy\, \Mxxyyzz\, \Zxx\ and unknown: formatting or unsupported; drop.
        break;
    }
    i = end + 1;
  }
  return out;
}

/** Escapes a value for an ER7 field (used when Careway builds ACK text). */
export function escapeHl7(value: string, d: Delimiters): string {
  let out = '';
  for (const ch of value) {
    if (ch === d.escape) out += `${d.escape}E${d.escape}`;
    else if (ch === d.field) out += `${d.escape}F${d.escape}`;
    else if (ch === d.component) out += `${d.escape}S${d.escape}`;
    else if (ch === d.subcomponent) out += `${d.escape}T${d.escape}`;
    else if (ch === d.repetition) out += `${d.escape}R${d.escape}`;
    else if (ch === '\r' || ch === '\n') out += `${d.escape}.br${d.escape}`;
    else out += ch;
  }
  return out;
}
