/**
 * What a browser needs from Careway, and what it must not be allowed to do with it:
 * - CORS for the origins in CORS_ORIGINS only (none by default), preflight included. Registered before auth, so
 *   a preflight (which carries no token, by the Fetch standard) is answered without one; the real request that
 *   follows is authenticated as any other. Headers a FHIR client reads (ETag, Location, Content-Location) are
 *   exposed; the ones it sends (If-Match, If-None-Exist, Prefer) are allowed.
 * - Security headers (helmet): no framing, no MIME sniffing, no referrer, HSTS, and a Content-Security-Policy
 *   that allows only Careway's own scripts and styles (the /docs UI is served from here).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';

const ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'accept',
  'if-match',
  'if-none-match',
  'if-none-exist',
  'if-modified-since',
  'prefer',
  'x-request-id',
];
const EXPOSED_HEADERS = [
  'etag',
  'location',
  'content-location',
  'last-modified',
  'www-authenticate',
  'x-request-id',
  'x-careway-journey',
];

export default fp(
  async function web(app: FastifyInstance) {
    const origins = new Set(app.config.web.corsOrigins);
    await app.register(cors, {
      // A function, not the list: an origin not on the list gets no CORS headers at all (the browser refuses).
      origin: (origin, cb) => cb(null, origin !== undefined && origins.has(origin)),
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ALLOWED_HEADERS,
      exposedHeaders: EXPOSED_HEADERS,
      // Bearer tokens, not cookies: credentials mode is never needed.
      credentials: false,
      maxAge: 600,
      strictPreflight: true,
    });
    await app.register(helmet, {
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'self'"],
          scriptSrc: ["'self'"],
          // swagger-ui sets inline styles on its elements.
          styleSrc: ["'self'", "'unsafe-inline'"],
          imgSrc: ["'self'", 'data:'],
          connectSrc: ["'self'"],
          frameAncestors: ["'none'"],
          baseUri: ["'none'"],
          formAction: ["'self'"],
          objectSrc: ["'none'"],
        },
      },
      referrerPolicy: { policy: 'no-referrer' },
      // API responses are read by the apps CORS allows; the browser's cross-origin isolation is theirs to set.
      crossOriginEmbedderPolicy: false,
      crossOriginResourcePolicy: { policy: origins.size > 0 ? 'cross-origin' : 'same-origin' },
    });
  },
  { name: 'careway-web', dependencies: ['careway-infrastructure'] },
);
