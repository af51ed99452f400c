/**
 * `npm run demo [-- --empty] [-- --patients N]`: starts Careway. Unless FHIR_BASE_URL / REDIS_URL are set, it
 * also starts a local HAPI FHIR server and a local redis-server (installing redis-server, Java and Maven first
 * when it can), and stops them on exit. Then, unless `--empty`, it seeds the demo hospital through Careway's own
 * paths (src/demo/). Trusts the local dev key, so `npm run token` gives working tokens.
 *
 * It only ever talks to servers it started or was told to use: a taken port fails with one line (or, for its
 * own HAPI without HAPI_PORT, moves to a free one), a server is used only once the process we started owns its
 * port, and the demo stops with a clear error when one of its servers dies later.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startHapi, startRedis, type LocalService } from '../devstack/processes.js';
import { ensureTool, JAVA_MAVEN, REDIS } from '../devstack/install.js';
import { ownsPort, portFree, PortTakenError } from '../devstack/ports.js';
import { seedHospital } from '../demo/seed.js';
import {
  DEV_AUDIENCE,
  DEV_ISSUER,
  devKeyPath,
  loadOrCreateDevHl7Key,
  loadOrCreateDevKey,
  loadOrCreateDevSmsSecret,
} from './dev-key.js';
import { mintDevToken } from './dev-key-token.js';
import { projectRoot } from '../shared/paths.js';
import { serviceEnv } from '../shared/runtime.js';

const started: LocalService[] = [];
let stopping = false;
/** Ctrl-C (or SIGTERM) reached us: servers ending now are part of stopping, not a failure to report. */
let interrupted = false;

let stoppedAll: Promise<void> | undefined;

/**
 * Stops what the demo started, last started first (Careway before the servers it uses), then exits. Called
 * again while it runs (a child's exit handler, a second Ctrl-C), it waits for the same stop.
 */
async function stopAll(code: number): Promise<never> {
  stopping = true;
  stoppedAll ??= (async () => {
    for (const s of [...started].reverse()) await s.stop().catch(() => undefined);
  })();
  await stoppedAll;
  process.exit(code);
}

/** A one-line failure: said once, then everything the demo started is stopped. */
async function fail(message: string): Promise<never> {
  if (!stopping) process.stderr.write(`demo: ${message}\n`);
  return stopAll(1);
}

/** From now on, a server of ours that ends (while we are not stopping) ends the demo with its reason. */
function watch(s: LocalService): void {
  started.push(s);
  void s.exited?.then((why) => {
    if (!stopping && !interrupted) void fail(`${why}; the demo cannot go on without it, so it stops`);
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { empty: { type: 'boolean', default: false }, patients: { type: 'string' } },
    strict: true,
  });
  const patients = values.patients === undefined ? undefined : Number(values.patients);
  if (patients !== undefined && !(Number.isInteger(patients) && patients >= 14))
    return fail('--patients must be a whole number of at least 14');

  const t0 = Date.now();
  const log = (msg: string): void => {
    process.stdout.write(`[demo ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
  };
  const early = (): void => {
    interrupted = true;
    void stopAll(0);
  };
  process.on('SIGINT', early);
  process.on('SIGTERM', early);

  const env: NodeJS.ProcessEnv = { ...process.env };
  env['HOST'] ??= '127.0.0.1';
  env['PORT'] ??= '8080';
  env['MLLP_PORT'] ??= '2575';
  // Careway's own ports first: a taken one is a one-line error before anything is started.
  for (const [variable, what] of [
    ['PORT', 'Careway (HTTP)'],
    ['MLLP_PORT', 'the MLLP listener'],
  ] as const) {
    const port = Number(env[variable]);
    const host = env['HOST'] === '0.0.0.0' ? '0.0.0.0' : env['HOST'];
    if (Number.isInteger(port) && port > 0 && !(await portFree(port, host)))
      return fail(new PortTakenError(port, what, variable).message);
  }

  if (!env['REDIS_URL']) ensureTool(REDIS, log);
  if (!env['FHIR_BASE_URL']) ensureTool(JAVA_MAVEN, log);

  const tasks: Promise<void>[] = [];
  if (!env['REDIS_URL']) {
    tasks.push(
      startRedis().then((r) => {
        watch(r);
        env['REDIS_URL'] = r.url;
        log(`redis-server at ${r.url} (pid ${r.pid})`);
      }),
    );
  }
  if (!env['FHIR_BASE_URL']) {
    const named = env['HAPI_PORT'];
    tasks.push(
      startHapi({ port: Number(named ?? 8090), strictPort: named !== undefined, onProgress: log }).then(
        (h) => {
          watch(h);
          env['FHIR_BASE_URL'] = h.url;
          log(`HAPI FHIR at ${h.url} (pid ${h.pid}; log: ${h.logFile})`);
        },
      ),
    );
  }
  const outcomes = await Promise.allSettled(tasks);
  const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed) return fail(failed.reason instanceof Error ? failed.reason.message : String(failed.reason));

  if (!env['AUTH_JWKS_URL'] && !env['AUTH_PUBLIC_KEY']) {
    env['AUTH_PUBLIC_KEY'] = loadOrCreateDevKey().publicPem;
    env['AUTH_ISSUER'] ??= DEV_ISSUER;
    env['AUTH_AUDIENCE'] ??= DEV_AUDIENCE;
  }
  env['HL7_ENCRYPTION_KEY'] ??= loadOrCreateDevHl7Key();
  // The demo sign-in contract: the app mints demo tokens with the dev key, which the demo trusts.
  env['DEMO_SIGN_IN'] = 'true';
  env['DEMO_SIGNING_KEY_FILE'] = devKeyPath();
  // Replies from patients are HMAC-signed; the seeder signs its replies with the same secret.
  env['SMS_WEBHOOK_SECRET'] ??= loadOrCreateDevSmsSecret();
  // Overdue care-plan activities reach the worklist within a minute of the seeding, not a quarter of an hour.
  env['CAREPLAN_SWEEP_INTERVAL'] ??= 'PT1M';
  // A laptop's HAPI, busy with the seeding, can take longer than a hospital's server to answer.
  env['FHIR_TIMEOUT_MS'] ??= '60000';

  const careway = spawn(process.execPath, [join(projectRoot(), 'dist', 'src', 'main.js')], {
    env: serviceEnv(env),
    stdio: 'inherit',
  });
  const carewayExited = new Promise<void>((resolve) => careway.once('exit', () => resolve()));
  started.push({
    url: '',
    pid: careway.pid,
    logFile: '',
    // SIGTERM lets Careway drain (SHUTDOWN_TIMEOUT_MS, 10 s by default); past 30 s it is killed.
    stop: async () => {
      if (careway.exitCode !== null || careway.signalCode !== null) return;
      careway.kill('SIGTERM');
      const timer = setTimeout(() => careway.kill('SIGKILL'), 30_000);
      await carewayExited;
      clearTimeout(timer);
    },
  });
  careway.once('exit', (code) => {
    if (interrupted) void stopAll(0);
    else void fail(`Careway exited (code ${code ?? 'signal'})`);
  });
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  // Careway first (it drains its queues and closes its connections), then the servers, once it has exited.
  const forward = (sig: NodeJS.Signals): void => {
    interrupted = true;
    careway.kill(sig);
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);

  const base = `http://${env['HOST']}:${env['PORT']}`;
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      const res = await fetch(`${base}/ready`, { signal: AbortSignal.timeout(3000) });
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      careway.kill('SIGTERM');
      return fail('Careway did not become ready within 180 s');
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  // The answer must come from the Careway we started, not from whatever else took the port meanwhile.
  if (careway.pid && ownsPort(careway.pid, Number(env['PORT'])) === 'no') {
    careway.kill('SIGTERM');
    return fail(`another process answers on port ${env['PORT']}, not the Careway this demo started`);
  }
  log('Careway is ready');
  const seeding = !values.empty;
  process.stdout.write(
    [
      '',
      `  Care-team app  ${base}/app   (Demo sign-in)`,
      `  Careway        ${base}`,
      `  API docs       ${base}/docs`,
      `  FHIR facade    ${base}/fhir  (metadata is public)`,
      `  Readiness      ${base}/ready`,
      `  MLLP (HL7 v2)  ${env['HOST']}:${env['MLLP_PORT']}`,
      `  FHIR server    ${env['FHIR_BASE_URL'] ?? ''}`,
      `  Redis          ${env['REDIS_URL'] ?? ''}`,
      '',
      '  Try:',
      `    TOKEN=$(npm run -s token -- --scope "user/*.rs")`,
      `    curl -H "Authorization: Bearer $TOKEN" ${base}/fhir/Patient`,
      '',
      seeding
        ? '  Seeding the demo hospital now (progress below); Ctrl-C stops Careway and the servers the demo started.'
        : '  Started empty (--empty). Ctrl-C stops Careway and the servers the demo started.',
      '',
    ].join('\n'),
  );
  if (!seeding) return;

  try {
    const report = await seedHospital(
      {
        baseUrl: base,
        mllp: {
          host: env['HOST'] === '0.0.0.0' ? '127.0.0.1' : env['HOST'],
          port: Number(env['MLLP_PORT']),
        },
        token: await mintDevToken({
          scope: 'system/*.cruds',
          sub: 'careway-demo-seeder',
          ttlSeconds: 3 * 3600,
        }),
        smsWebhookSecret: env['SMS_WEBHOOK_SECRET'],
      },
      { ...(patients ? { patients } : {}), log: (m) => log(`seed: ${m}`) },
    );
    log(`demo hospital ready: ${report.patients} patients; open ${base}/app`);
  } catch (e) {
    // Careway stays up: the user can look at what was written, and a restart seeds the rest (idempotent).
    if (!stopping) log(`seeding stopped: ${e instanceof Error ? e.message : String(e)}`);
  }
}

main().catch(async (e: unknown) => fail(`failed: ${e instanceof Error ? e.message : String(e)}`));
