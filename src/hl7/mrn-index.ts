/**
 * The MRN index of the inbound message log. The MRN is PHI and never waits in Redis in clear: the intake keeps a
 * keyed hash of each PID-3 identifier (HMAC-SHA256 under a key derived from HL7_ENCRYPTION_KEY with HKDF, so the
 * index key is not the sealing key, and hashing guessed MRNs needs the key). A search hashes the MRN it is given
 * the same way and compares hashes.
 */
import { createHmac, hkdfSync } from 'node:crypto';
import type { Hl7Message } from './message.js';

/** The key the MRN index hashes with: derived from the sealing key, never the sealing key itself. */
export function mrnIndexKey(sealingKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', sealingKey, Buffer.alloc(0), 'careway hl7 mrn index v1', 32));
}

export function mrnHash(indexKey: Buffer, mrn: string): string {
  return createHmac('sha256', indexKey).update(mrn.trim()).digest('base64url').slice(0, 32);
}

/** Keyed hashes of every identifier in PID-3 (the ID component of each repetition). */
export function mrnHashes(indexKey: Buffer, msg: Hl7Message): string[] {
  const pid3 = msg.segment('PID')?.raw(3) ?? '';
  const ids = pid3
    .split(msg.delimiters.repetition)
    .map((rep) => rep.split(msg.delimiters.component)[0]?.trim() ?? '')
    .filter(Boolean);
  return [...new Set(ids.slice(0, 20).map((id) => mrnHash(indexKey, id)))];
}
