/**
 * Builds Careway's areas without the HTTP layer, on the real HAPI and Redis: for integration tests of an area,
 * or of the hooks between areas, where HTTP is not what they test. Logs go to a sink the test can read.
 */
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { buildAreas, type Areas } from '../../src/areas.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { FhirClient } from '../../src/fhir/client.js';
import { createConnections } from '../../src/queues/connections.js';
import { createLogger } from '../../src/shared/logger.js';
import { makeKeys, testEnv, uniq } from './harness.js';

export interface AreasHarness {
  areas: Areas;
  config: Config;
  fhir: FhirClient;
  rawLogs: string[];
  close(): Promise<void>;
}

export async function startAreas(extraEnv: Record<string, string> = {}): Promise<AreasHarness> {
  const config = loadConfig(testEnv(makeKeys(), { QUEUE_PREFIX: `a${uniq()}`, ...extraEnv }));
  const rawLogs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      rawLogs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const fhir = new FhirClient({ baseUrl: config.fhirBaseUrl });
  const redis = createConnections(config.redis, config.queuePrefix, config.runWorkers);
  const areas = await buildAreas({
    config,
    fhir,
    redis,
    metrics: new Registry(),
    log: createLogger({ level: 'debug', destination: sink }),
  });
  await areas.start();
  return {
    areas,
    config,
    fhir,
    rawLogs,
    close: async () => {
      await areas.close();
      await redis.closeAll();
      await fhir.close();
    },
  };
}
