/**
 * A real OAuth 2.0 authorization server for the tests of Careway as a client of a secured FHIR server:
 * `oidc-provider` (a certified OpenID Connect / OAuth implementation), not a hand-made token endpoint, so the
 * client-credentials exchange, `client_secret_basic`/`client_secret_post` and the `private_key_jwt` client
 * assertions of SMART Backend Services are checked by code that real deployments run.
 *
 * It issues JWT access tokens (RFC 9068 style) for one resource server, the secured FHIR server, whose
 * launcher verifies them against this server's JWKS. Test-only knobs:
 * - `ttlSeconds` (mutable): the access-token lifetime, short so that expiry is reached inside a test;
 * - `rotateKeys()`: a new signing key replaces the old one in the JWKS, so tokens signed before no longer
 *   verify at the FHIR server (what a key rotation or a revocation looks like to a client: a 401);
 * - `tokenRequests` / `tokensIssued`: counted at the token endpoint, so a test can see each fetch.
 *
 * Binds 127.0.0.1 on a free port (plain HTTP: the token endpoint is on loopback only).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { decodeJwt, exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, { errors, type ClientMetadata, type Configuration } from 'oidc-provider';

export interface AuthServerOptions {
  /** The resource indicator and `aud` of every access token: the secured FHIR server's base URL. */
  readonly audience: string;
  /** Registered clients (client_secret_basic, client_secret_post, private_key_jwt with `jwks`). */
  readonly clients: readonly ClientMetadata[];
  /** Access-token lifetime in seconds (default 300). */
  readonly ttlSeconds?: number;
  /** Scopes the FHIR server grants (default SMART v2 system scopes). */
  readonly scope?: string;
}

export interface AuthServer {
  readonly issuer: string;
  readonly tokenUrl: string;
  readonly jwksUrl: string;
  /** Access-token lifetime for tokens issued from now on. */
  ttlSeconds: number;
  /** POSTs to the token endpoint, successful or not. */
  readonly tokenRequests: number;
  /** Access tokens issued. */
  readonly tokensIssued: number;
  /** Each issued token's client and expiry (seconds since the epoch), oldest first. */
  readonly issued: readonly { readonly clientId: string; readonly exp: number }[];
  /** Every access token this server handed out (so a test can look for them where they must not be). */
  readonly accessTokens: readonly string[];
  /** Kid of the key that signs access tokens now. */
  readonly kid: string;
  /** Replaces the signing key: tokens signed with the old one stop verifying. */
  rotateKeys(): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_SCOPE = 'system/*.cruds system/*.rs system/Patient.rs system/Patient.cruds';

async function signingKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

export async function startAuthServer(options: AuthServerOptions): Promise<AuthServer> {
  let tokenRequests = 0;
  let tokensIssued = 0;
  const issued: { clientId: string; exp: number }[] = [];
  const accessTokens: string[] = [];
  let provider: Provider | undefined;
  let key = await signingKey();
  const state = { ttlSeconds: options.ttlSeconds ?? 300 };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'POST' && req.url?.startsWith('/token')) {
      tokenRequests++;
      // Koa ends a JSON response with one end(body): keep the access token it carries.
      const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
      res.end = ((...args: unknown[]) => {
        const chunk = args[0];
        if (typeof chunk === 'string' || Buffer.isBuffer(chunk)) {
          try {
            const b = JSON.parse(chunk.toString()) as { access_token?: unknown };
            if (typeof b.access_token === 'string') {
              accessTokens.push(b.access_token);
              const claims = decodeJwt(b.access_token);
              issued.push({
                clientId: typeof claims['client_id'] === 'string' ? claims['client_id'] : '',
                exp: claims.exp ?? 0,
              });
            }
          } catch {
            // not JSON: nothing to keep
          }
        }
        return end(...args);
      }) as typeof res.end;
    }
    if (!provider) {
      res.statusCode = 503;
      res.end();
      return;
    }
    void provider.callback()(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const build = (): Provider => {
    const configuration: Configuration = {
      clients: options.clients.map((c) => ({ ...c })),
      jwks: { keys: [key] },
      features: {
        clientCredentials: { enabled: true },
        devInteractions: { enabled: false },
        introspection: { enabled: false },
        revocation: { enabled: false },
        resourceIndicators: {
          enabled: true,
          // SMART Backend Services sends no `resource`: every token is for the one FHIR server.
          defaultResource: () => options.audience,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource) => {
            if (resource !== options.audience) throw new errors.InvalidTarget();
            return {
              scope: options.scope ?? DEFAULT_SCOPE,
              audience: options.audience,
              accessTokenFormat: 'jwt',
              accessTokenTTL: state.ttlSeconds,
              jwt: { sign: { alg: 'RS256' } },
            };
          },
        },
      },
      ttl: {
        ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? state.ttlSeconds,
      },
      clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      enabledJWA: {
        clientAuthSigningAlgValues: ['RS256', 'RS384', 'ES256', 'ES384', 'PS384'],
      },
      // The default console renderer prints errors with their request; keep test output quiet.
      renderError: (ctx, out) => {
        ctx.type = 'json';
        ctx.body = out;
      },
    };
    const p = new Provider(issuer, configuration);
    p.on('client_credentials.issued', () => {
      tokensIssued++;
    });
    // oidc-provider logs every server_error to the console; a test that wants one reads the response.
    p.on('server_error', () => undefined);
    return p;
  };
  provider = build();

  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    jwksUrl: `${issuer}/jwks`,
    get ttlSeconds() {
      return state.ttlSeconds;
    },
    set ttlSeconds(v: number) {
      state.ttlSeconds = v;
    },
    get tokenRequests() {
      return tokenRequests;
    },
    get tokensIssued() {
      return tokensIssued;
    },
    issued,
    accessTokens,
    get kid() {
      return key.kid ?? '';
    },
    async rotateKeys() {
      key = await signingKey();
      provider = build();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
