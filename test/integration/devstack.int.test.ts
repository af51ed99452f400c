/**
 * The devstack's local redis-server, for real: the process we start owns the port it reports, and its death
 * later is noticed (the `exited` reason the demo stops on). Cheap: redis-server starts in milliseconds.
 */
import { describe, expect, it } from 'vitest';
import { startRedis } from '../../src/devstack/processes.js';
import { ownsPort } from '../../src/devstack/ports.js';

describe('local redis-server', () => {
  it('when started then it owns its port; when it dies later then exited says so', async () => {
    const r = await startRedis({ persistent: false });
    try {
      const port = Number(new URL(r.url).port);
      expect(ownsPort(r.pid!, port)).toBe('yes');
      expect(ownsPort(process.pid, port)).toBe('no');
      process.kill(r.pid!, 'SIGKILL');
      const why = await r.exited;
      expect(why).toMatch(new RegExp(`^redis-server \\(pid ${r.pid}\\) exited \\(signal SIGKILL\\)`));
    } finally {
      await r.stop();
    }
  });
});
