/** Mints a token signed with the local dev key (used by `npm run token` and the benchmarks). */
import { SignJWT } from 'jose';
import { DEV_AUDIENCE, DEV_ISSUER, loadOrCreateDevKey } from './dev-key.js';

export async function mintDevToken(opts: {
  scope: string;
  patient?: string;
  sub?: string;
  ttlSeconds?: number;
}): Promise<string> {
  const key = loadOrCreateDevKey();
  const jwt = new SignJWT({
    scope: opts.scope,
    ...(opts.patient ? { patient: opts.patient } : {}),
    client_id: 'careway-dev-cli',
  })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
    .setIssuer(DEV_ISSUER)
    .setAudience(DEV_AUDIENCE)
    .setSubject(opts.sub ?? 'dev-user')
    .setIssuedAt()
    .setJti(crypto.randomUUID())
    .setExpirationTime(Math.floor(Date.now() / 1000) + (opts.ttlSeconds ?? 3600));
  return jwt.sign(key.privateKey);
}
