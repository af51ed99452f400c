/**
 * `npm run token -- --scope "<SMART scopes>" [--patient <id>] [--sub <id>] [--ttl <seconds>]`
 * Prints a bearer token signed with the local dev key, which a demo instance trusts.
 */
import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';
import { DEV_AUDIENCE, DEV_ISSUER, loadOrCreateDevKey } from './dev-key.js';
import { parseScopes } from '../http/auth/scopes.js';

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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      scope: { type: 'string' },
      patient: { type: 'string' },
      sub: { type: 'string' },
      ttl: { type: 'string' },
    },
    strict: true,
  });
  if (!values.scope) {
    process.stderr.write(
      'usage: npm run token -- --scope "user/*.rs" [--patient <Patient id>] [--sub <id>] [--ttl <seconds>]\n',
    );
    process.exit(2);
  }
  const parsed = parseScopes(values.scope);
  if (parsed.length === 0) {
    process.stderr.write(
      `no SMART resource scope in "${values.scope}" (e.g. user/*.rs, patient/Patient.rs, system/*.cruds)\n`,
    );
    process.exit(2);
  }
  if (parsed.some((s) => s.context === 'patient') && !values.patient) {
    process.stderr.write('patient/ scopes need --patient <Patient id>\n');
    process.exit(2);
  }
  const ttl = values.ttl === undefined ? 3600 : Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl <= 0) {
    process.stderr.write('--ttl must be a positive number of seconds\n');
    process.exit(2);
  }
  process.stdout.write(
    `${await mintDevToken({ scope: values.scope, ttlSeconds: ttl, ...(values.patient ? { patient: values.patient } : {}), ...(values.sub ? { sub: values.sub } : {}) })}\n`,
  );
}

await main();
