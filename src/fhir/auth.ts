/**
 * Credentials for a secured FHIR server (and for the referrers that get the same client options): where the
 * `Authorization` header of each outbound request comes from.
 *
 * Hospitals rarely leave their FHIR server open. Careway is a backend service with no user at hand, so it
 * authenticates as itself: a static bearer token, an OAuth 2.0 client-credentials grant with a client secret,
 * or SMART Backend Services (the same grant, authenticated by a `private_key_jwt` assertion signed with
 * Careway's own key, RS384 or ES384, and the token endpoint found in the server's
 * `.well-known/smart-configuration` when not configured).
 *
 * Invariants:
 * - A token is cached until shortly before it expires, and fetched by one request however many callers
 *   want it at once.
 * - A server that refuses a token (401) reports it with `invalidate`; only that token is dropped, so a burst
 *   of 401s from parallel requests costs one new token, not one each.
 * - No token, secret, key or client assertion is ever put in an error message, and nothing here logs.
 * - A token request has a deadline: a silent token endpoint is an error, never a hang.
 */
import { randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { request, type Dispatcher } from 'undici';

/** Supplies the `Authorization` header for requests to a secured server. */
export interface AuthProvider {
  /** The header value (`Bearer …`), or undefined for none. Fetches a token when none is cached. */
  header(): Promise<string | undefined>;
  /** The server refused this header value (401): forget it so the next `header()` gets a new token. */
  invalidate(rejected: string): void;
}

/** What a client other than the FhirClient needs to call with the same options (the referral callback). */
export interface OutboundHttp {
  readonly auth?: AuthProvider;
  /** An undici dispatcher carrying the mTLS client certificate and CA, when configured. */
  readonly dispatcher?: Dispatcher;
}

/** Getting a token failed. `status` is the token endpoint's HTTP status, 0 when it could not be reached. */
export class TokenError extends Error {
  readonly status: number;
  /** The OAuth `error` code (e.g. `invalid_client`), when the endpoint sent one. */
  readonly error: string | undefined;

  constructor(message: string, status: number, error?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TokenError';
    this.status = status;
    this.error = error;
  }

  /** Worth retrying later: the endpoint was unreachable, throttled us or failed on its side. */
  get isTransient(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/** A fixed bearer token (FHIR_AUTH=bearer). Nothing to refresh: a 401 is final. */
export function staticBearer(token: string): AuthProvider {
  const value = `Bearer ${token}`;
  return {
    header: async () => value,
    invalidate: () => undefined,
  };
}

/** Signature algorithms SMART Backend Services requires servers to support for client assertions. */
export type AssertionAlgorithm = 'RS384' | 'ES384';

export type ClientAuthentication =
  /** RFC 6749 §2.3.1: HTTP Basic with the form-encoded id and secret. */
  | { readonly method: 'client_secret_basic'; readonly secret: string }
  /** RFC 6749 §2.3.1: `client_id` and `client_secret` in the form body. */
  | { readonly method: 'client_secret_post'; readonly secret: string }
  /** RFC 7523 / SMART Backend Services: a short-lived JWT signed with the client's private key. */
  | {
      readonly method: 'private_key_jwt';
      readonly key: KeyObject;
      readonly alg: AssertionAlgorithm;
      /** `kid` header; must name the key in the JWK Set registered with the authorization server. */
      readonly kid: string;
    };

export interface TokenSourceOptions {
  /** The token endpoint. Without it, `fhirBaseUrl` + `/.well-known/smart-configuration` names it. */
  readonly tokenUrl?: string;
  /** The FHIR server, for discovery of the token endpoint. */
  readonly fhirBaseUrl?: string;
  readonly clientId: string;
  readonly client: ClientAuthentication;
  /** Requested scopes, space-separated (e.g. `system/*.rs system/*.cu`). */
  readonly scope?: string;
  /** Carries the mTLS client certificate to the token endpoint too. */
  readonly dispatcher?: Dispatcher;
  /** Deadline of one token or discovery request (default 15 s). */
  readonly timeoutMs?: number;
  /** The clock, for tests. */
  readonly now?: () => number;
}

/** Lifetime assumed when the token endpoint sends no `expires_in`. */
const DEFAULT_LIFETIME_MS = 300_000;
/** Refresh this long before expiry at most (a quarter of the lifetime for short-lived tokens). */
const MAX_REFRESH_MARGIN_MS = 30_000;
/** SMART Backend Services: the assertion's `exp` no more than five minutes ahead. */
const ASSERTION_LIFETIME_S = 240;
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

interface CachedToken {
  readonly header: string;
  /** When to fetch a new one (shortly before expiry). */
  readonly refreshAt: number;
}

/** Error text from a token endpoint, kept short: it is the server's, and ends up in our logs. */
function describe(body: unknown): { error?: string; text: string } {
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    const error = typeof b['error'] === 'string' ? b['error'].slice(0, 64) : undefined;
    const desc = typeof b['error_description'] === 'string' ? b['error_description'].slice(0, 200) : '';
    if (error) return { error, text: desc ? `${error}: ${desc}` : error };
  }
  return { text: 'no OAuth error in the response' };
}

/**
 * OAuth 2.0 client-credentials token source (FHIR_AUTH=client-credentials and smart-backend).
 */
export class OAuthTokenSource implements AuthProvider {
  private readonly o: TokenSourceOptions;
  private readonly now: () => number;
  private cached: CachedToken | undefined;
  private pending: Promise<CachedToken> | undefined;
  private tokenUrl: string | undefined;

  constructor(options: TokenSourceOptions) {
    if (!options.tokenUrl && !options.fhirBaseUrl)
      throw new TypeError('OAuthTokenSource needs tokenUrl or fhirBaseUrl (for discovery)');
    this.o = options;
    this.now = options.now ?? Date.now;
    this.tokenUrl = options.tokenUrl;
  }

  async header(): Promise<string> {
    const c = this.cached;
    if (c && this.now() < c.refreshAt) return c.header;
    // One request for every caller that finds the cache empty or stale at once.
    this.pending ??= this.fetchToken().finally(() => {
      this.pending = undefined;
    });
    const fresh = await this.pending;
    this.cached = fresh;
    return fresh.header;
  }

  invalidate(rejected: string): void {
    if (this.cached?.header === rejected) this.cached = undefined;
  }

  /** The token endpoint: configured, or read once from the FHIR server's SMART configuration. */
  async endpoint(): Promise<string> {
    if (this.tokenUrl) return this.tokenUrl;
    const base = (this.o.fhirBaseUrl ?? '').replace(/\/+$/, '');
    const url = `${base}/.well-known/smart-configuration`;
    const { status, body } = await this.call(url, 'GET', { accept: 'application/json' }, undefined);
    if (status !== 200)
      throw new TokenError(`SMART configuration discovery at ${url} answered ${status}`, status);
    const endpoint =
      body && typeof body === 'object' ? (body as Record<string, unknown>)['token_endpoint'] : undefined;
    if (typeof endpoint !== 'string' || !/^https?:\/\//.test(endpoint))
      throw new TokenError(`SMART configuration at ${url} names no token_endpoint`, status);
    this.tokenUrl = endpoint;
    return endpoint;
  }

  private async fetchToken(): Promise<CachedToken> {
    const tokenUrl = await this.endpoint();
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (this.o.scope) form.set('scope', this.o.scope);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    const client = this.o.client;
    switch (client.method) {
      case 'client_secret_basic': {
        const id = encodeURIComponent(this.o.clientId);
        const secret = encodeURIComponent(client.secret);
        headers['authorization'] = `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
        break;
      }
      case 'client_secret_post':
        form.set('client_id', this.o.clientId);
        form.set('client_secret', client.secret);
        break;
      case 'private_key_jwt':
        form.set('client_assertion_type', JWT_BEARER);
        form.set('client_assertion', await this.assertion(tokenUrl, client));
        break;
    }
    const sentAt = this.now();
    const { status, body } = await this.call(tokenUrl, 'POST', headers, form.toString());
    if (status !== 200) {
      const d = describe(body);
      throw new TokenError(
        `token endpoint ${tokenUrl} refused the request (${status} ${d.text})`,
        status,
        d.error,
      );
    }
    const b = (body ?? {}) as Record<string, unknown>;
    const token = b['access_token'];
    const type = b['token_type'];
    if (typeof token !== 'string' || token === '')
      throw new TokenError(`token endpoint ${tokenUrl} sent no access_token`, status);
    if (typeof type !== 'string' || type.toLowerCase() !== 'bearer')
      throw new TokenError(`token endpoint ${tokenUrl} sent a token_type other than Bearer`, status);
    const expiresIn = b['expires_in'];
    const lifetime = typeof expiresIn === 'number' && expiresIn > 0 ? expiresIn * 1000 : DEFAULT_LIFETIME_MS;
    // Counted from when the request left: the token's own clock started no earlier than that.
    const margin = Math.min(MAX_REFRESH_MARGIN_MS, lifetime / 4);
    return { header: `Bearer ${token}`, refreshAt: sentAt + lifetime - margin };
  }

  /** SMART Backend Services client assertion: iss = sub = client id, aud = token endpoint, unique jti. */
  private async assertion(
    tokenUrl: string,
    client: Extract<ClientAuthentication, { method: 'private_key_jwt' }>,
  ): Promise<string> {
    const now = Math.floor(this.now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: client.alg, kid: client.kid, typ: 'JWT' })
      .setIssuer(this.o.clientId)
      .setSubject(this.o.clientId)
      .setAudience(tokenUrl)
      .setJti(randomUUID())
      .setIssuedAt(now)
      .setExpirationTime(now + ASSERTION_LIFETIME_S)
      .sign(client.key);
  }

  /** One HTTP exchange with a deadline; the body parsed as JSON when it is JSON. */
  private async call(
    url: string,
    method: 'GET' | 'POST',
    headers: Record<string, string>,
    body: string | undefined,
  ): Promise<{ status: number; body: unknown }> {
    let status: number;
    let text: string;
    try {
      const res = await request(url, {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 15_000),
        ...(this.o.dispatcher ? { dispatcher: this.o.dispatcher } : {}),
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (cause) {
      // The cause is undici's (a socket error or the abort); it carries no request headers or body.
      const why =
        cause instanceof Error && cause.name === 'TimeoutError' ? 'did not answer in time' : 'is unreachable';
      throw new TokenError(
        `${method === 'GET' ? 'SMART configuration' : 'token endpoint'} ${url} ${why}`,
        0,
        undefined,
        {
          cause,
        },
      );
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status, body: parsed };
  }
}
