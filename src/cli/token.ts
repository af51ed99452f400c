/**
 * `npm run token -- --scope "<SMART scopes>" [--patient <id>] [--sub <id>] [--ttl <seconds>]`
 * Prints a bearer token signed with the local dev key, which a demo instance trusts.
 */
import { parseArgs } from 'node:util';
import { mintDevToken } from './dev-key-token.js';
import { parseScopes } from '../http/auth/scopes.js';

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
