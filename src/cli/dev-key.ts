/**
 * The local development signing key that `npm run token` signs with and `npm run demo` trusts.
 * Generated on first use into .careway/ (git-ignored, mode 0600); never committed, never used in production,
 * where tokens come from the hospital's authorization server (AUTH_JWKS_URL).
 */
import { generateKeyPairSync, createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../shared/paths.js';

export const DEV_ISSUER = 'careway-dev';
export const DEV_AUDIENCE = 'careway';

export interface DevKey {
  readonly privateKey: KeyObject;
  readonly publicPem: string;
  readonly kid: string;
}

export function devKeyPath(): string {
  return join(projectRoot(), '.careway', 'dev-key.json');
}

export function loadOrCreateDevKey(): DevKey {
  const path = devKeyPath();
  if (!existsSync(path)) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    mkdirSync(join(projectRoot(), '.careway'), { recursive: true, mode: 0o700 });
    const record = {
      kid: `dev-${Date.now().toString(36)}`,
      privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    };
    writeFileSync(path, JSON.stringify(record, null, 2), { mode: 0o600 });
  }
  const record = JSON.parse(readFileSync(path, 'utf8')) as {
    kid: string;
    privatePem: string;
    publicPem: string;
  };
  return { privateKey: createPrivateKey(record.privatePem), publicPem: record.publicPem, kid: record.kid };
}

/** The demo's key for sealing raw HL7 messages (HL7_ENCRYPTION_KEY), generated once into .careway/. */
export function loadOrCreateDevHl7Key(): string {
  const path = join(projectRoot(), '.careway', 'hl7.key');
  if (!existsSync(path)) {
    mkdirSync(join(projectRoot(), '.careway'), { recursive: true, mode: 0o700 });
    writeFileSync(path, randomBytes(32).toString('base64'), { mode: 0o600 });
  }
  return readFileSync(path, 'utf8').trim();
}

/** The demo's SMS_WEBHOOK_SECRET (signs patient replies the seeder sends), generated once into .careway/. */
export function loadOrCreateDevSmsSecret(): string {
  const path = join(projectRoot(), '.careway', 'sms-webhook.secret');
  if (!existsSync(path)) {
    mkdirSync(join(projectRoot(), '.careway'), { recursive: true, mode: 0o700 });
    writeFileSync(path, randomBytes(24).toString('hex'), { mode: 0o600 });
  }
  return readFileSync(path, 'utf8').trim();
}
