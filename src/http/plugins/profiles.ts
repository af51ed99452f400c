/**
 * Uploads profiles/ to the FHIR server once the app is ready, and keeps retrying in the background while the
 * server is unreachable. Start-up does not wait on it: a hospital FHIR server that is briefly down must not
 * stop Careway from starting; `/ready` reports not-ready until the upload has succeeded.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { loadConformanceResources, uploadProfiles } from '../../fhir/profiles.js';
import { projectRoot } from '../../shared/paths.js';

declare module 'fastify' {
  interface FastifyInstance {
    profiles: { readonly uploaded: boolean; readonly lastError?: string; whenUploaded(): Promise<void> };
  }
}

export default fp(
  async function profiles(app: FastifyInstance) {
    let uploaded = !app.config.uploadProfiles;
    let lastError: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    let resolveUploaded: () => void = () => undefined;
    const done = new Promise<void>((resolve) => {
      resolveUploaded = resolve;
    });
    if (uploaded) resolveUploaded();

    const attempt = async (): Promise<void> => {
      try {
        const dir = join(projectRoot(), 'profiles');
        const resources = await loadConformanceResources(dir);
        const result = await uploadProfiles(app.fhir, resources);
        uploaded = true;
        lastError = undefined;
        resolveUploaded();
        app.log.info(result, 'profiles uploaded');
      } catch (e) {
        lastError = e instanceof Error ? e.message : String(e);
        app.log.warn({ err: e }, 'profile upload failed; retrying in 5 s');
        if (!stopped) timer = setTimeout(() => void attempt(), 5000);
      }
    };

    app.decorate('profiles', {
      get uploaded() {
        return uploaded;
      },
      get lastError() {
        return lastError;
      },
      whenUploaded: () => done,
    });
    app.addHook('onReady', async () => {
      if (!uploaded) void attempt();
    });
    app.addHook('onClose', async () => {
      stopped = true;
      clearTimeout(timer);
    });
  },
  { name: 'careway-profiles', dependencies: ['careway-infrastructure'] },
);
