/**
 * The built service as a process (dist/, built by global-setup): bad configuration exits non-zero with every
 * problem listed, and SIGTERM closes the service cleanly.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/shared/paths.js';
import { freePort } from '../../src/devstack/processes.js';
import { makeKeys, testEnv } from '../support/harness.js';

const main = join(projectRoot(), 'dist', 'src', 'main.js');

function run(env: Record<string, string>) {
  const child = spawn(process.execPath, [main], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

describe('careway process', () => {
  it('when the configuration is bad then it exits non-zero listing every bad key', async () => {
    const p = run({ PORT: 'x', REDIS_URL: 'http://nope', QUIET_HOURS: 'never' });
    const code = await p.exited;
    expect(code).toBe(78);
    const err = p.err();
    for (const key of ['PORT', 'FHIR_BASE_URL', 'REDIS_URL', 'AUTH_ISSUER', 'AUTH_AUDIENCE', 'QUIET_HOURS']) {
      expect(err).toContain(`- ${key}`);
    }
  });

  it('when SIGTERM arrives then it stops accepting, closes Redis and exits 0', async () => {
    const port = await freePort();
    const p = run({ ...testEnv(makeKeys()), PORT: String(port), HOST: '127.0.0.1' });
    const deadline = Date.now() + 30_000;
    let ready = false;
    while (!ready && Date.now() < deadline) {
      try {
        ready = (await fetch(`http://127.0.0.1:${port}/ready`)).ok;
      } catch {
        // not listening yet
      }
      if (!ready) await new Promise((r) => setTimeout(r, 200));
    }
    expect(ready).toBe(true);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(p.out()).toContain('"msg":"closed"');
    await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
  });
});
