/**
 * Process entry: load config → build app → listen. SIGTERM/SIGINT close everything in this order, because a pod
 * is removed from its Service while it drains, and `worker.close()` and keep-alive connections have no timeout
 * of their own:
 *   1. `/ready` answers 503 at once (the load balancer stops sending requests; HTTP still serves);
 *   2. the MLLP listener stops accepting (senders reconnect to another replica);
 *   3. the workers stop taking jobs and finish those in hand within SHUTDOWN_GRACE_MS (then they are cancelled
 *      and go back to the head of their queue, for another replica);
 *   4. HTTP closes (in-flight requests finish), then the queues, Redis and the FHIR client.
 * SHUTDOWN_TIMEOUT_MS bounds the whole; exit 0 when it closed in time.
 */
import { loadConfig, ConfigError } from './config/config.js';
import { createLogger } from './shared/logger.js';
import { buildApp } from './app.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`careway: ${e.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw e;
  }
  const logger = createLogger({ level: config.logLevel });
  const app = await buildApp({ config, logger });

  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown deadline passed; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    app.lifecycle.draining = true;
    app.areas
      .drain(config.shutdownGraceMs)
      .then(() => logger.info('intake stopped and workers drained; closing HTTP'))
      .catch((err: unknown) => logger.error({ err }, 'error while draining'))
      .then(() => app.close())
      .then(
        () => {
          logger.info('closed');
          process.exit(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'error while closing');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));

  await app.listen({ port: config.port, host: config.host });
}

main().catch((err: unknown) => {
  process.stderr.write(`careway: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
