/**
 * What every area module is built from: the shared infrastructure, made once per process by the composition
 * root (areas.ts) and handed to each area explicitly. No area reaches for a global or a framework decorator.
 */
import type { Registry } from 'prom-client';
import type { BaseLogger } from 'pino';
import type { Config } from './config/config.js';
import type { FhirPort } from './fhir/client.js';
import type { RedisConnections } from './queues/connections.js';
import type { QueueRegistry } from './queues/registry.js';
import type { KeyedLock } from './shared/lock.js';

/** Made outside the areas (the process or the test builds them) and closed by whoever made them. */
export interface Infrastructure {
  readonly config: Config;
  readonly fhir: FhirPort;
  readonly redis: RedisConnections;
  /** Prometheus registry the areas add their metrics to (per app, so tests can build several). */
  readonly metrics: Registry;
  readonly log: Pick<BaseLogger, 'debug' | 'info' | 'warn' | 'error'>;
}

export interface AreaContext extends Infrastructure {
  /** Every queue an area opens comes from here (queues/specs.ts holds their options). */
  readonly queues: QueueRegistry;
  /** Per-key lock across Careway instances (one patient's writes, one Slot's booking). */
  readonly lock: KeyedLock;
}
