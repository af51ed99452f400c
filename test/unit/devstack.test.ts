/**
 * The devstack's guards (src/devstack/): a taken port is refused or avoided before anything is launched, the
 * owner of a listening port is told apart from other processes, and the install decision is right per machine.
 * Ports are occupied with plain TCP listeners in this process; nothing is launched.
 */
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { choosePort, startHapi, startRedis } from '../../src/devstack/processes.js';
import { ownsPort, portFree, PortTakenError } from '../../src/devstack/ports.js';
import { installPlan, JAVA_MAVEN, REDIS, type Machine } from '../../src/devstack/install.js';

const open: Server[] = [];
async function occupy(): Promise<number> {
  const srv = createServer();
  open.push(srv);
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const addr = srv.address();
  if (!addr || typeof addr !== 'object') throw new Error('no port');
  return addr.port;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe('ports', () => {
  it('when a TCP listener holds a port then it is not free, and this process owns it while pid 1 does not', async () => {
    const port = await occupy();
    expect(await portFree(port)).toBe(false);
    expect(ownsPort(process.pid, port)).toBe('yes');
    expect(ownsPort(1, port)).not.toBe('yes');
    await Promise.all(open.splice(0).map((s) => new Promise((r) => s.close(r))));
    expect(await portFree(port)).toBe(true);
    expect(ownsPort(process.pid, port)).toBe('no');
  });

  it('when the wanted port is taken then a named port fails with a PortTakenError and a default one moves', async () => {
    const port = await occupy();
    await expect(choosePort(port, true, 'HAPI FHIR', 'HAPI_PORT')).rejects.toThrow(PortTakenError);
    await expect(choosePort(port, true, 'HAPI FHIR', 'HAPI_PORT')).rejects.toThrow(
      `port ${port} (HAPI_PORT) is already in use by another process`,
    );
    const other = await choosePort(port, false, 'HAPI FHIR', 'HAPI_PORT');
    expect(other).not.toBe(port);
    expect(await portFree(other)).toBe(true);
  });

  it('when HAPI_PORT names a taken port then startHapi refuses before building or launching anything', async () => {
    const port = await occupy();
    const progress: string[] = [];
    await expect(startHapi({ port, strictPort: true, onProgress: (m) => progress.push(m) })).rejects.toThrow(
      /HAPI_PORT/,
    );
    expect(progress).toEqual([]);
  });

  it('when a named redis port is taken then startRedis refuses without launching', async () => {
    const port = await occupy();
    await expect(startRedis({ port, strictPort: true })).rejects.toThrow(PortTakenError);
  });
});

describe('installPlan', () => {
  const debianRoot: Machine = { platform: 'linux', debian: true, root: true, aptGet: true };

  it('when nothing is missing then there is nothing to do', () => {
    expect(installPlan(REDIS, [], { ...debianRoot, root: false })).toEqual({ kind: 'present' });
  });

  it('when a tool is missing on Debian as root then it is installed', () => {
    expect(installPlan(JAVA_MAVEN, ['mvn'], debianRoot)).toEqual({ kind: 'install', missing: ['mvn'] });
  });

  it.each([
    [{ ...debianRoot, root: false }, /needs root/],
    [{ ...debianRoot, debian: false }, /not a Debian system/],
    [{ ...debianRoot, platform: 'darwin' as const }, /not a Debian system/],
    [{ ...debianRoot, aptGet: false }, /not a Debian system/],
  ])('when it cannot install (%o) then it gives a one-line instruction', (machine, why) => {
    const plan = installPlan(REDIS, ['redis-server'], machine);
    expect(plan.kind).toBe('manual');
    if (plan.kind !== 'manual') return;
    expect(plan.message).toMatch(why);
    expect(plan.message).toMatch(/apt-get install redis-server/);
    expect(plan.message).not.toMatch(/\n/);
  });
});
