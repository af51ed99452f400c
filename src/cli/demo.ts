/**
 * `npm run demo`: starts Careway. Unless FHIR_BASE_URL / REDIS_URL are set, it also starts a local HAPI FHIR
 * server and a local redis-server, and stops them on exit. Trusts the local dev key, so
 * `npm run token` gives working tokens. Prints the URLs when ready.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startHapi, startRedis, type LocalService } from '../devstack/processes.js';
import { DEV_AUDIENCE, DEV_ISSUER, loadOrCreateDevHl7Key, loadOrCreateDevKey } from './dev-key.js';
import { projectRoot } from '../shared/paths.js';
import { serviceEnv } from '../shared/runtime.js';

const started: LocalService[] = [];
let stopping = false;

async function stopAll(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    await Promise.allSettled(started.reverse().map((s) => s.stop()));
  }
  process.exit(code);
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const log = (msg: string): void => {
    process.stdout.write(`[demo ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  const env: NodeJS.ProcessEnv = { ...process.env };
  const tasks: Promise<void>[] = [];
  if (!env['REDIS_URL']) {
    tasks.push(
      startRedis().then((r) => {
        started.push(r);
        env['REDIS_URL'] = r.url;
        log(`redis-server at ${r.url}`);
      }),
    );
  }
  if (!env['FHIR_BASE_URL']) {
    tasks.push(
      startHapi({ port: Number(env['HAPI_PORT'] ?? 8090), onProgress: log }).then((h) => {
        started.push(h);
        env['FHIR_BASE_URL'] = h.url;
        log(`HAPI FHIR at ${h.url} (log: ${h.logFile})`);
      }),
    );
  }
  await Promise.all(tasks);

  if (!env['AUTH_JWKS_URL'] && !env['AUTH_PUBLIC_KEY']) {
    env['AUTH_PUBLIC_KEY'] = loadOrCreateDevKey().publicPem;
    env['AUTH_ISSUER'] ??= DEV_ISSUER;
    env['AUTH_AUDIENCE'] ??= DEV_AUDIENCE;
  }
  env['HL7_ENCRYPTION_KEY'] ??= loadOrCreateDevHl7Key();
  env['HOST'] ??= '127.0.0.1';
  env['PORT'] ??= '8080';

  const careway = spawn(process.execPath, [join(projectRoot(), 'dist', 'src', 'main.js')], {
    env: serviceEnv(env),
    stdio: 'inherit',
  });
  careway.once('exit', (code) => void stopAll(code ?? 1));
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  const forward = (sig: NodeJS.Signals): void => {
    careway.kill(sig);
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);

  const base = `http://${env['HOST']}:${env['PORT']}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      const res = await fetch(`${base}/ready`, { signal: AbortSignal.timeout(3000) });
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      log('Careway did not become ready within 120 s');
      careway.kill('SIGTERM');
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  log('Careway is ready');
  process.stdout.write(
    [
      '',
      `  Careway        ${base}`,
      `  API docs       ${base}/docs`,
      `  FHIR facade    ${base}/fhir  (metadata is public)`,
      `  Readiness      ${base}/ready`,
      `  MLLP (HL7 v2)  ${env['HOST']}:${env['MLLP_PORT'] ?? '2575'}`,
      `  FHIR server    ${env['FHIR_BASE_URL'] ?? ''}`,
      `  Redis          ${env['REDIS_URL'] ?? ''}`,
      '',
      '  Try:',
      `    TOKEN=$(npm run -s token -- --scope "user/*.rs")`,
      `    curl -H "Authorization: Bearer $TOKEN" ${base}/fhir/Patient`,
      '',
      '  Ctrl-C stops Careway and the servers the demo started.',
      '',
    ].join('\n'),
  );
}

main().catch(async (e: unknown) => {
  process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
  await stopAll(1);
});
