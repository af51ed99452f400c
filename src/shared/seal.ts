/**
 * PHI that must wait in Redis (raw HL7 messages kept for replay, reminder write-backs not yet on the FHIR
 * server) is kept only sealed with AES-256-GCM (a fresh 96-bit IV per item; the tag authenticates the
 * ciphertext), so Redis and its backups never hold it in clear. The key is HL7_ENCRYPTION_KEY.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export interface Sealed {
  readonly iv: string;
  readonly tag: string;
  readonly data: string;
}

export function seal(plain: Buffer, key: Buffer): Sealed {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const data = Buffer.concat([cipher.update(plain), cipher.final()]);
  return {
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    data: data.toString('base64'),
  };
}

export function unseal(sealed: Sealed, key: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64'));
  decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
  return Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64')), decipher.final()]);
}
