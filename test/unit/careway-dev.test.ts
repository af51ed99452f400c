/**
 * scripts/careway-dev.mjs (the `npm run demo | test | token | bench | chaos` entry) stands in for the command it
 * runs: a SIGTERM sent to the wrapper alone must reach the command, which then stops what it started. Runs the
 * real script from a scratch project whose "command" is a small program that records the signal it gets.
 */
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const scratch: string[] = [];
afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A project the wrapper sees as installed and built, whose `token` command waits for a signal. */
function project(): string {
  const root = mkdtempSync(join(tmpdir(), 'careway-dev-'));
  scratch.push(root);
  mkdirSync(join(root, 'scripts'));
  copyFileSync(join(process.cwd(), 'scripts', 'careway-dev.mjs'), join(root, 'scripts', 'careway-dev.mjs'));
  writeFileSync(join(root, 'package-lock.json'), '{}');
  writeFileSync(join(root, 'tsconfig.json'), '{}');
  mkdirSync(join(root, 'node_modules'));
  mkdirSync(join(root, 'dist', 'src', 'cli'), { recursive: true });
  return root;
}

/** The install record and the build stamp, written after the lockfile and tsconfig: no install, no build. */
async function installed(root: string): Promise<void> {
  await new Promise((r) => setTimeout(r, 20));
  writeFileSync(join(root, 'node_modules', '.package-lock.json'), '{}');
  writeFileSync(join(root, 'dist', '.build-stamp'), new Date().toISOString());
  writeFileSync(
    join(root, 'dist', 'src', 'cli', 'token.js'),
    `const { writeFileSync } = require('node:fs');
const out = ${JSON.stringify(join(root, 'signal.txt'))};
for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'])
  process.on(s, () => { writeFileSync(out, s); process.exit(3); });
writeFileSync(${JSON.stringify(join(root, 'ready.txt'))}, String(process.pid));
setInterval(() => {}, 1000);
`,
  );
  // The scratch project is CommonJS: no "type": "module" package.json above dist/.
  writeFileSync(join(root, 'dist', 'package.json'), '{"type":"commonjs"}');
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('scripts/careway-dev.mjs', () => {
  it('when the wrapper alone gets SIGTERM then the command gets it too and the wrapper exits as the command did', async () => {
    const root = project();
    await installed(root);
    const wrapper = spawn(process.execPath, [join(root, 'scripts', 'careway-dev.mjs'), 'token'], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    wrapper.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((r) => wrapper.once('exit', (code) => r(code)));
    await until(() => existsSync(join(root, 'ready.txt')), `the command to start (${stderr})`);
    const commandPid = Number(readFileSync(join(root, 'ready.txt'), 'utf8'));
    expect(commandPid).not.toBe(wrapper.pid);

    wrapper.kill('SIGTERM');
    expect(await exited).toBe(3);
    expect(readFileSync(join(root, 'signal.txt'), 'utf8')).toBe('SIGTERM');
    // And the command is gone, not orphaned.
    expect(() => process.kill(commandPid, 0)).toThrow();
  });
});
