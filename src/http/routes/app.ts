/**
 * The care-team web app at `/app`: a buildless single-page app (Preact + htm as plain ES modules) served from
 * src/web/, with its libraries served from our own node_modules under `/app/vendor/…` (never from a CDN).
 *
 * - The app's files are public: they hold no data. Every piece of data comes from Careway's APIs with the
 *   bearer token the app obtained (SMART App Launch, or the demo sign-in), so scopes decide what it shows.
 * - The page's import map is an inline script. Rather than loosen `script-src`, the HTML answer carries the
 *   site's CSP plus the import map's own SHA-256 hash: no 'unsafe-inline', no 'unsafe-eval' (htm builds its
 *   templates without eval).
 * - Vendor files: only the ones listed in VENDOR_FILES are served, whatever path is asked for.
 * - `GET /app/config.json` tells the app how to sign in (SMART client id and scopes, whether the demo sign-in
 *   is on). `POST /app/demo/sign-in` exists only when DEMO_SIGN_IN=true: it mints a short-lived staff token for
 *   a demo Practitioner with the demo's key; production deployments never register it.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import fastifyStatic from '@fastify/static';
import { SignJWT } from 'jose';
import type { Practitioner } from 'fhir/r4.js';
import { Type } from 'typebox';
import { projectRoot } from '../../shared/paths.js';
import { CarewayError } from '../../shared/errors.js';

/** node_modules paths the app imports, as `/app/vendor/<path>` (the import map in index.html names them). */
export const VENDOR_FILES = [
  'preact/dist/preact.mjs',
  'preact/hooks/dist/hooks.mjs',
  'htm/dist/htm.module.js',
  'chart.js/dist/chart.umd.min.js',
];

/** The demo identity: one Practitioner, found or created by this business identifier. */
const DEMO_PRACTITIONER = { system: 'urn:careway:demo:staff', value: 'demo-coordinator' };

/** The site-wide CSP (web.ts) with the import map's hash added to script-src, for the app's HTML only. */
function appCsp(importMapHash: string | undefined, authOrigins: readonly string[]): string {
  return [
    "default-src 'self'",
    `script-src 'self'${importMapHash ? ` '${importMapHash}'` : ''}`,
    // Chart.js sizes its canvas with inline styles.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    // The SMART launch exchanges its code at the authorization server's token endpoint (another origin).
    ["connect-src 'self'", ...authOrigins].join(' '),
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "object-src 'none'",
  ].join(';');
}

function importMapHash(html: string): string | undefined {
  const m = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html);
  return m ? `sha256-${createHash('sha256').update(m[1]!, 'utf8').digest('base64')}` : undefined;
}

export default async function appRoutes(app: FastifyInstance): Promise<void> {
  const webRoot = join(projectRoot(), 'src', 'web');
  const indexPath = join(webRoot, 'index.html');
  const html = existsSync(indexPath) ? readFileSync(indexPath, 'utf8') : undefined;
  const authOrigins = new Set<string>();
  for (const u of [app.config.web.tokenUrl?.toString(), app.config.auth.issuer])
    if (u && /^https?:\/\//.test(u)) authOrigins.add(new URL(u).origin);
  const csp = appCsp(html ? importMapHash(html) : undefined, [...authOrigins]);
  const cfg = app.config.app;

  // Static files: public routes (the auth hook skips routes marked public), in a scope of their own.
  await app.register(async (scope) => {
    scope.addHook('onRoute', (route) => {
      route.config = { ...route.config, public: true };
      route.schema = { ...route.schema, hide: true };
    });

    const page = {
      config: { public: true },
      schema: { hide: true },
    };
    const sendIndex = async (_request: unknown, reply: FastifyReply): Promise<FastifyReply> => {
      if (!html) throw new CarewayError('not-found', 'the care-team app files (src/web) are not installed');
      return reply
        .header('content-security-policy', csp)
        .header('cache-control', 'no-cache')
        .type('text/html; charset=utf-8')
        .send(html);
    };
    scope.get('/app', page, sendIndex);
    scope.get('/app/', page, sendIndex);

    scope.get(
      '/app/config.json',
      {
        config: { public: true },
        schema: {
          tags: ['app'],
          summary: 'How the care-team app signs in (public): SMART client id and scopes, demo sign-in',
          response: {
            200: Type.Object({
              clientId: Type.Optional(Type.String()),
              scope: Type.String(),
              demoSignIn: Type.Boolean(),
              fhirBase: Type.String(),
            }),
          },
        },
      },
      async (_request, reply) =>
        reply.header('cache-control', 'no-cache').send({
          ...(cfg.clientId ? { clientId: cfg.clientId } : {}),
          scope: cfg.scope,
          demoSignIn: cfg.demo !== undefined,
          fhirBase: '/fhir',
        }),
    );

    if (existsSync(webRoot))
      await scope.register(fastifyStatic, {
        root: webRoot,
        prefix: '/app/',
        index: false,
        wildcard: true,
        decorateReply: false,
        // index.html only through the routes above, which add its CSP.
        allowedPath: (path) => path !== '/index.html',
        cacheControl: true,
        maxAge: 0,
      });
    const vendor = new Set(VENDOR_FILES.map((f) => `/${f}`));
    await scope.register(fastifyStatic, {
      root: join(projectRoot(), 'node_modules'),
      prefix: '/app/vendor/',
      index: false,
      wildcard: true,
      decorateReply: false,
      allowedPath: (path) => vendor.has(path),
      maxAge: 3600_000,
    });
  });

  const demo = cfg.demo;
  if (!demo) return;

  // The demo Practitioner's id, found or created once (conditional create on its identifier).
  let practitionerId: string | undefined;
  const demoPractitioner = async (): Promise<string> => {
    if (practitionerId) return practitionerId;
    const created = await app.fhir.create<Practitioner>(
      {
        resourceType: 'Practitioner',
        identifier: [DEMO_PRACTITIONER],
        active: true,
        name: [{ text: 'Demo Coordinator', family: 'Coordinator', given: ['Demo'] }],
      },
      { ifNoneExist: { identifier: `${DEMO_PRACTITIONER.system}|${DEMO_PRACTITIONER.value}` } },
    );
    practitionerId = created.resource.id!;
    return practitionerId;
  };

  const alg = (): string => {
    switch (demo.privateKey.asymmetricKeyType) {
      case 'rsa':
        return 'RS256';
      case 'ed25519':
        return 'EdDSA';
      default: {
        const curve = demo.privateKey.asymmetricKeyDetails?.namedCurve;
        return curve === 'secp384r1' ? 'ES384' : curve === 'secp521r1' ? 'ES512' : 'ES256';
      }
    }
  };

  app.post(
    '/app/demo/sign-in',
    {
      config: { public: true },
      schema: {
        tags: ['app'],
        summary:
          'Demo only (DEMO_SIGN_IN=true): a short-lived staff token for the demo coordinator, for the care-team app',
        response: {
          200: Type.Object({
            access_token: Type.String(),
            token_type: Type.Literal('Bearer'),
            expires_in: Type.Integer(),
            scope: Type.String(),
            fhirUser: Type.String(),
          }),
        },
      },
    },
    async (request, reply) => {
      const fhirUser = `Practitioner/${await demoPractitioner()}`;
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ scope: cfg.scope, fhirUser, client_id: 'careway-app-demo' })
        .setProtectedHeader({ alg: alg(), typ: 'JWT', ...(demo.kid ? { kid: demo.kid } : {}) })
        .setIssuer(app.config.auth.issuer)
        .setAudience(app.config.auth.audience)
        .setSubject('demo-coordinator')
        .setIssuedAt(now)
        .setJti(crypto.randomUUID())
        .setExpirationTime(now + demo.ttlSeconds)
        .sign(demo.privateKey);
      request.log.info({ route: '/app/demo/sign-in', fhirUser }, 'demo sign-in');
      return reply.header('cache-control', 'no-store').send({
        access_token: token,
        token_type: 'Bearer' as const,
        expires_in: demo.ttlSeconds,
        scope: cfg.scope,
        fhirUser,
      });
    },
  );
}
