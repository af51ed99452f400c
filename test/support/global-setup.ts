/**
 * Starts the real parts for the integration tests: a redis-server and the HAPI FHIR JPA launcher, each on a
 * free port on 127.0.0.1, plus a build of dist/ for the process-level tests. Stops them in teardown.
 *
 * CAREWAY_TEST_FHIR_BASE_URL / CAREWAY_TEST_REDIS_URL reuse servers already running (a faster local loop);
 * they are still real servers, never stand-ins.
 *
 * CAREWAY_TEST_REDIS_CLUSTER=1 also starts a real 3-master Redis Cluster (src/devstack/redis-topologies.ts), and the
 * harness then points every app it builds at the cluster (REDIS_CLUSTER_NODES) instead of REDIS_URL
 * (`npm run test:cluster`). The standalone redis stays for the tests that open connections of their own.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startHapi, startRedis, type LocalService } from '../../src/devstack/processes.js';
import { startRedisCluster } from '../../src/devstack/redis-topologies.js';
import { projectRoot } from '../../src/shared/paths.js';

declare module 'vitest' {
  export interface ProvidedContext {
    fhirBaseUrl: string;
    redisUrl: string;
    /** `host:port,…` of the Redis Cluster when CAREWAY_TEST_REDIS_CLUSTER=1; empty otherwise. */
    redisClusterNodes: string;
  }
}

function buildDist(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(projectRoot(), 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
      {
        cwd: projectRoot(),
        stdio: 'inherit',
      },
    );
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tsc exited with ${code}`))));
  });
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started: Pick<LocalService, 'stop'>[] = [];
  const t0 = Date.now();
  const note = (msg: string): void => {
    process.stderr.write(`[global-setup ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
  };
  try {
    const [redisUrl, fhirBaseUrl] = await Promise.all([
      process.env['CAREWAY_TEST_REDIS_URL'] ??
        startRedis().then((r) => {
          started.push(r);
          return r.url;
        }),
      process.env['CAREWAY_TEST_FHIR_BASE_URL'] ??
        startHapi({ onProgress: note, timeoutMs: 300_000 }).then((h) => {
          started.push(h);
          note(`HAPI ready at ${h.url}`);
          return h.url;
        }),
      buildDist(),
    ]);
    let clusterNodes = '';
    if (process.env['CAREWAY_TEST_REDIS_CLUSTER'] === '1') {
      const cluster = await startRedisCluster();
      started.push(cluster);
      clusterNodes = cluster.nodes;
      note(`Redis Cluster ready at ${clusterNodes}`);
    }
    project.provide('redisClusterNodes', clusterNodes);
    project.provide('redisUrl', redisUrl);
    project.provide('fhirBaseUrl', fhirBaseUrl);
  } catch (e) {
    await Promise.allSettled(started.map((s) => s.stop()));
    throw e;
  }
  return async () => {
    await Promise.allSettled(started.reverse().map((s) => s.stop()));
  };
}
