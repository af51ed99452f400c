/**
 * The FHIR port: the one typed interface Careway uses to talk to the hospital's FHIR server.
 *
 * Built on the platform `fetch` rather than fhir-kit-client or MedplumClient: we need typed errors with the
 * server's OperationOutcome, per-request timeouts, retries limited to idempotent requests, and exact control
 * of conditional headers (If-Match, If-None-Exist, Cache-Control). Neither library gives all of that without
 * wrapping (see the foundation issue note), and the surface we use is small.
 *
 * Invariants:
 * - Only idempotent requests are retried (GET/HEAD/PUT/DELETE, conditional creates, and requests the caller
 *   marks idempotent). A plain POST create is never retried: a lost response must not become a duplicate.
 * - Every failure surfaces as `FhirError`.
 * - Nothing here logs resource bodies or query strings.
 * - With `auth` (a secured FHIR server), every attempt asks it for a current Authorization header, and a 401
 *   drops the refused token and tries once more with a new one, whatever the method: a 401 means the server
 *   did not act on the request. A second 401, or a header that cannot change (a static bearer), is final.
 */
import type { Bundle, CapabilityStatement, OperationOutcome, Resource } from 'fhir/r4.js';
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { TokenError, type AuthProvider } from './auth.js';
import { FhirError } from './errors.js';

export type SearchParams =
  URLSearchParams | Readonly<Record<string, string | number | readonly (string | number)[] | undefined>>;

export interface RequestOptions {
  /** Send `Cache-Control: no-cache` so the server does not answer from a cached search. */
  noCache?: boolean;
  /**
   * Send `Cache-Control: no-store, max-results=N`: a fresh search that the server neither caches nor keeps for
   * paging. HAPI then answers it synchronously (up to N results) without writing a search record, which makes a
   * small lookup on a hot path markedly cheaper; any other server reads it as plain HTTP no-store.
   */
  storeless?: number;
  /** Override the client's timeout for this call. */
  timeoutMs?: number;
  /** Mark a POST as safe to retry (e.g. a transaction made only of conditional writes). */
  idempotent?: boolean;
  /** Extra request headers (e.g. Prefer). */
  headers?: Readonly<Record<string, string>>;
  signal?: AbortSignal;
  /** Return the body as text without parsing it (pass-through of large or unexamined bodies). */
  raw?: boolean;
}

/** Read access to response headers (names are case-insensitive). */
export interface ResponseHeaders {
  get(name: string): string | null;
}

export interface FhirResponse<T = unknown> {
  status: number;
  headers: ResponseHeaders;
  body: T | undefined;
}

/** One HTTP exchange. The default is undici's `request` on a keep-alive pool; tests inject `fetch`. */
type Transport = (
  method: string,
  url: string,
  headers: Record<string, string>,
  body: string | undefined,
  signal: AbortSignal,
) => Promise<{ status: number; headers: ResponseHeaders; text: string }>;

export interface WriteResult<T extends Resource> {
  resource: T;
  /** `created` for 201, `existing` when a conditional create matched, `updated` for an update. */
  outcome: 'created' | 'existing' | 'updated';
  /** Version id from the ETag, when the server sent one. */
  versionId: string | undefined;
}

export interface FhirClientOptions {
  baseUrl: URL | string;
  timeoutMs?: number;
  /** Retries after the first attempt, for idempotent requests only. */
  retries?: number;
  /** First backoff delay; doubles each retry, with jitter. */
  backoffMs?: number;
  /** Extra headers on every request (e.g. an Authorization for the FHIR server). */
  headers?: Readonly<Record<string, string>>;
  /** Use this fetch instead of the pooled undici transport (unit tests script responses this way). */
  fetch?: typeof fetch;
  /** Most connections kept open to the FHIR server. */
  connections?: number;
  /** Credentials for a secured FHIR server: asked for an Authorization header on every attempt. */
  auth?: AuthProvider;
  /** TLS options of the pooled transport: a client certificate and key (mTLS) and a CA to trust. */
  tls?: FhirTlsOptions;
  /**
   * The pooled transport to use (see `fhirAgent`), when others share it (the token source, referrer calls).
   * The client owns it: `close()` closes it. Without it the client builds its own from `connections`/`tls`.
   */
  dispatcher?: Agent;
}

/** PEM contents (not file names). */
export interface FhirTlsOptions {
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  readonly ca?: string | Buffer;
}

const FHIR_JSON = 'application/fhir+json';

/** The keep-alive pool the client uses by default: at most `connections` per origin, with the TLS options. */
export function fhirAgent(options: { connections?: number; tls?: FhirTlsOptions } = {}): Agent {
  return new Agent({
    connections: options.connections ?? 32,
    keepAliveTimeout: 10_000,
    ...(options.tls ? { connect: { ...options.tls } } : {}),
  });
}

/** The port. Depend on this interface, not on the class, so the journey domain stays I/O-agnostic. */
export interface FhirPort {
  readonly baseUrl: string;
  read<T extends Resource>(type: T['resourceType'], id: string, options?: RequestOptions): Promise<T>;
  vread<T extends Resource>(
    type: T['resourceType'],
    id: string,
    versionId: string,
    options?: RequestOptions,
  ): Promise<T>;
  search<T extends Resource = Resource>(
    type: string,
    params?: SearchParams,
    options?: RequestOptions,
  ): Promise<Bundle<T>>;
  /** Follows `next` links; yields each page. Stops after `maxPages` (default 100) to bound runaway paging. */
  pages<T extends Resource = Resource>(
    first: Bundle<T>,
    options?: RequestOptions & { maxPages?: number },
  ): AsyncGenerator<Bundle<T>>;
  /** All matching resources of the first `maxPages` pages. */
  searchAll<T extends Resource = Resource>(
    type: string,
    params?: SearchParams,
    options?: RequestOptions & { maxPages?: number },
  ): Promise<T[]>;
  create<T extends Resource>(
    resource: T,
    options?: RequestOptions & { ifNoneExist?: SearchParams },
  ): Promise<WriteResult<T>>;
  update<T extends Resource>(
    resource: T & { id: string },
    options?: RequestOptions & { ifMatch?: string },
  ): Promise<WriteResult<T>>;
  conditionalUpdate<T extends Resource>(
    resource: T,
    criteria: SearchParams,
    options?: RequestOptions,
  ): Promise<WriteResult<T>>;
  transaction(bundle: Bundle, options?: RequestOptions): Promise<Bundle>;
  batch(bundle: Bundle, options?: RequestOptions): Promise<Bundle>;
  capabilities(options?: RequestOptions): Promise<CapabilityStatement>;
  /** `$validate`; resolves with the OperationOutcome whether or not the resource is valid. */
  validate(resource: Resource, profile?: string, options?: RequestOptions): Promise<OperationOutcome>;
  /** Low-level call relative to the base; errors (>= 400) still throw FhirError. */
  request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    options?: RequestOptions,
  ): Promise<FhirResponse<T>>;
  /** Closes pooled connections. */
  close(): Promise<void>;
}

export function toQuery(params: SearchParams | undefined): string {
  if (!params) return '';
  const q = new URLSearchParams();
  if (params instanceof URLSearchParams) {
    params.forEach((v, k) => q.append(k, v));
  } else {
    for (const [k, v] of Object.entries(params)) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const item of v) q.append(k, String(item));
      else q.append(k, String(v));
    }
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Parses `W/"3"` or `"3"` into `3`. */
export function versionFromEtag(etag: string | null): string | undefined {
  if (!etag) return undefined;
  const m = /^(?:W\/)?"([^"]*)"$/.exec(etag.trim());
  return m?.[1];
}

function stripQuery(path: string): string {
  const i = path.indexOf('?');
  return i === -1 ? path : path.slice(0, i);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class FhirClient implements FhirPort {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly headers: Readonly<Record<string, string>>;
  private readonly transport: Transport;
  private readonly agent: Agent | undefined;
  /** The credentials every request carries (undefined for an open server). */
  readonly auth: AuthProvider | undefined;

  constructor(options: FhirClientOptions) {
    this.baseUrl = String(options.baseUrl).replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 15000;
    this.retries = options.retries ?? 2;
    this.backoffMs = options.backoffMs ?? 100;
    this.headers = options.headers ?? {};
    this.auth = options.auth;
    if (options.fetch) {
      const f = options.fetch;
      this.transport = async (method, url, headers, body, signal) => {
        const res = await f(url, { method, headers, ...(body === undefined ? {} : { body }), signal });
        return { status: res.status, headers: res.headers, text: await res.text() };
      };
    } else {
      // undici's request() skips the WHATWG stream layers of fetch: much less CPU per call, which is most of
      // the facade's overhead on a small machine (bench P5).
      const agent =
        options.dispatcher ??
        fhirAgent({
          ...(options.connections === undefined ? {} : { connections: options.connections }),
          ...(options.tls ? { tls: options.tls } : {}),
        });
      this.agent = agent;
      this.transport = async (method, url, headers, body, signal) => {
        const res = await undiciRequest(url, {
          method: method as 'GET',
          headers,
          ...(body === undefined ? {} : { body }),
          signal,
          dispatcher: agent,
        });
        const text = await res.body.text();
        const h = res.headers;
        return {
          status: res.statusCode,
          headers: {
            get: (name: string) => {
              const v = h[name.toLowerCase()];
              return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
            },
          },
          text,
        };
      };
    }
  }

  /** The pooled transport (with the mTLS options), for other calls that go out with the same options. */
  get dispatcher(): Dispatcher | undefined {
    return this.agent;
  }

  async close(): Promise<void> {
    await this.agent?.close();
  }

  async read<T extends Resource>(type: T['resourceType'], id: string, options?: RequestOptions): Promise<T> {
    const res = await this.request<T>('GET', `${type}/${encodeURIComponent(id)}`, undefined, options);
    return this.expectBody(res, 'GET', type);
  }

  async vread<T extends Resource>(
    type: T['resourceType'],
    id: string,
    versionId: string,
    options?: RequestOptions,
  ): Promise<T> {
    const path = `${type}/${encodeURIComponent(id)}/_history/${encodeURIComponent(versionId)}`;
    const res = await this.request<T>('GET', path, undefined, options);
    return this.expectBody(res, 'GET', type);
  }

  async search<T extends Resource = Resource>(
    type: string,
    params?: SearchParams,
    options?: RequestOptions,
  ): Promise<Bundle<T>> {
    const res = await this.request<Bundle<T>>('GET', `${type}${toQuery(params)}`, undefined, options);
    return this.expectBody(res, 'GET', type);
  }

  async *pages<T extends Resource = Resource>(
    first: Bundle<T>,
    options?: RequestOptions & { maxPages?: number },
  ): AsyncGenerator<Bundle<T>> {
    const maxPages = options?.maxPages ?? 100;
    let page: Bundle<T> | undefined = first;
    for (let n = 0; page && n < maxPages; n++) {
      yield page;
      const next = page.link?.find((l) => l.relation === 'next')?.url;
      if (!next) return;
      const res: FhirResponse<Bundle<T>> = await this.request<Bundle<T>>('GET', next, undefined, options);
      page = res.body;
    }
  }

  async searchAll<T extends Resource = Resource>(
    type: string,
    params?: SearchParams,
    options?: RequestOptions & { maxPages?: number },
  ): Promise<T[]> {
    const out: T[] = [];
    const first = await this.search<T>(type, params, options);
    for await (const page of this.pages(first, options)) {
      for (const e of page.entry ?? []) {
        if (e.resource && (e.search?.mode ?? 'match') === 'match') out.push(e.resource);
      }
    }
    return out;
  }

  async create<T extends Resource>(
    resource: T,
    options?: RequestOptions & { ifNoneExist?: SearchParams },
  ): Promise<WriteResult<T>> {
    const headers: Record<string, string> = { Prefer: 'return=representation', ...options?.headers };
    let idempotent = options?.idempotent ?? false;
    if (options?.ifNoneExist) {
      headers['If-None-Exist'] = toQuery(options.ifNoneExist).slice(1);
      // A conditional create replayed after a lost response finds the first one: safe to retry.
      idempotent = true;
    }
    let res: FhirResponse<T>;
    try {
      res = await this.request<T>('POST', resource.resourceType, resource, {
        ...options,
        headers,
        idempotent,
      });
    } catch (e) {
      // Conditional create is not race-safe on HAPI: the loser of two parallel creates gets 409 (HAPI-2745, a
      // unique-constraint clash on the match URL). The winner's resource exists, so read it back.
      if (options?.ifNoneExist && e instanceof FhirError && e.isConflict) {
        const existing = await this.searchAll<T>(resource.resourceType, options.ifNoneExist, {
          noCache: true,
          maxPages: 1,
        });
        if (existing.length === 1 && existing[0]) {
          return { resource: existing[0], outcome: 'existing', versionId: existing[0].meta?.versionId };
        }
      }
      throw e;
    }
    return {
      resource: this.expectBody(res, 'POST', resource.resourceType),
      outcome: res.status === 201 ? 'created' : 'existing',
      versionId: versionFromEtag(res.headers.get('etag')),
    };
  }

  async update<T extends Resource>(
    resource: T & { id: string },
    options?: RequestOptions & { ifMatch?: string },
  ): Promise<WriteResult<T>> {
    const path = `${resource.resourceType}/${encodeURIComponent(resource.id)}`;
    return this.put(path, resource, options, options?.ifMatch);
  }

  async conditionalUpdate<T extends Resource>(
    resource: T,
    criteria: SearchParams,
    options?: RequestOptions,
  ): Promise<WriteResult<T>> {
    return this.put(`${resource.resourceType}${toQuery(criteria)}`, resource, options, undefined);
  }

  async transaction(bundle: Bundle, options?: RequestOptions): Promise<Bundle> {
    if (bundle.type !== 'transaction')
      throw new TypeError('transaction() needs a Bundle of type "transaction"');
    const res = await this.request<Bundle>('POST', '', bundle, options);
    return this.expectBody(res, 'POST', 'transaction');
  }

  async batch(bundle: Bundle, options?: RequestOptions): Promise<Bundle> {
    if (bundle.type !== 'batch') throw new TypeError('batch() needs a Bundle of type "batch"');
    const res = await this.request<Bundle>('POST', '', bundle, options);
    return this.expectBody(res, 'POST', 'batch');
  }

  async capabilities(options?: RequestOptions): Promise<CapabilityStatement> {
    const res = await this.request<CapabilityStatement>('GET', 'metadata', undefined, options);
    return this.expectBody(res, 'GET', 'metadata');
  }

  async validate(resource: Resource, profile?: string, options?: RequestOptions): Promise<OperationOutcome> {
    // The raw resource as the body and `profile` as a query parameter: HAPI 8.8 mishandles the Parameters
    // form (it looks the profile up as a literal "UriType[...]", or validates the Parameters resource itself).
    const path = `${resource.resourceType}/$validate${profile ? toQuery({ profile }) : ''}`;
    try {
      const res = await this.request<OperationOutcome>('POST', path, resource, {
        ...options,
        idempotent: true,
      });
      return this.expectBody(res, 'POST', `${resource.resourceType}/$validate`);
    } catch (e) {
      // Some servers answer 412/422 with the OperationOutcome when the resource is invalid (HAPI answers 200);
      // either way it is a result, not a failure.
      if (e instanceof FhirError && e.kind === 'http' && (e.status === 412 || e.status === 422) && e.outcome)
        return e.outcome;
      throw e;
    }
  }

  async request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    options?: RequestOptions,
  ): Promise<FhirResponse<T>> {
    const url = this.resolve(path);
    const relPath = stripQuery(url.startsWith(this.baseUrl) ? url.slice(this.baseUrl.length + 1) : path);
    const idempotent = options?.idempotent ?? ['GET', 'HEAD', 'PUT', 'DELETE'].includes(method);
    const headers: Record<string, string> = { Accept: FHIR_JSON, ...this.headers, ...options?.headers };
    if (body !== undefined) headers['Content-Type'] = `${FHIR_JSON}; charset=utf-8`;
    if (options?.storeless) headers['Cache-Control'] = `no-store, max-results=${options.storeless}`;
    else if (options?.noCache) headers['Cache-Control'] = 'no-cache';
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const attempts = idempotent ? this.retries + 1 : 1;
    let reauthorized = false;

    for (let attempt = 1; ; attempt++) {
      let authorization: string | undefined;
      try {
        authorization = await this.authorization(method, relPath);
        const sent = authorization === undefined ? headers : { ...headers, Authorization: authorization };
        return await this.once<T>(method, url, relPath, sent, payload, options);
      } catch (e) {
        // A refused token: drop it and try once more with a new one (not counted as a transient retry).
        if (
          e instanceof FhirError &&
          e.kind === 'http' &&
          e.status === 401 &&
          this.auth &&
          authorization !== undefined &&
          !reauthorized
        ) {
          reauthorized = true;
          this.auth.invalidate(authorization);
          // A header that cannot change (a static bearer) would only be refused again.
          if ((await this.authorization(method, relPath)) === authorization) throw e;
          attempt--;
          continue;
        }
        if (!(e instanceof FhirError) || !e.isTransient || attempt >= attempts || options?.signal?.aborted)
          throw e;
        const delay = this.backoffMs * 2 ** (attempt - 1);
        await sleep(delay / 2 + Math.random() * delay);
      }
    }
  }

  /** The Authorization header for this attempt; a token that cannot be had is a FhirError of kind `auth`. */
  private async authorization(method: string, relPath: string): Promise<string | undefined> {
    if (!this.auth) return undefined;
    try {
      return await this.auth.header();
    } catch (e) {
      if (!(e instanceof TokenError)) throw e;
      throw new FhirError({
        kind: 'auth',
        status: e.status,
        method,
        path: relPath,
        detail: e.message,
        cause: e,
      });
    }
  }

  private async once<T>(
    method: string,
    url: string,
    relPath: string,
    headers: Record<string, string>,
    payload: string | undefined,
    options: RequestOptions | undefined,
  ): Promise<FhirResponse<T>> {
    const timeout = AbortSignal.timeout(options?.timeoutMs ?? this.timeoutMs);
    const signal = options?.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    let res: { status: number; headers: ResponseHeaders; text: string };
    try {
      res = await this.transport(method, url, headers, payload, signal);
    } catch (cause) {
      const timedOut = timeout.aborted && !options?.signal?.aborted;
      throw new FhirError({
        kind: timedOut ? 'timeout' : 'network',
        status: 0,
        method,
        path: relPath,
        cause,
      });
    }
    const text = res.text;
    if (options?.raw && res.status < 400)
      return { status: res.status, headers: res.headers, body: text as T };
    let parsed: unknown;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (res.status >= 400) {
      const outcome =
        parsed && (parsed as Resource).resourceType === 'OperationOutcome'
          ? (parsed as OperationOutcome)
          : undefined;
      throw new FhirError({ kind: 'http', status: res.status, method, path: relPath, outcome });
    }
    return { status: res.status, headers: res.headers, body: parsed as T | undefined };
  }

  /** An update (plain or conditional) that returns the stored resource; `ifMatch` only applies to that version. */
  private async put<T extends Resource>(
    path: string,
    resource: T,
    options: RequestOptions | undefined,
    ifMatch: string | undefined,
  ): Promise<WriteResult<T>> {
    const headers: Record<string, string> = { Prefer: 'return=representation', ...options?.headers };
    if (ifMatch !== undefined) headers['If-Match'] = `W/"${ifMatch}"`;
    const res = await this.request<T>('PUT', path, resource, { ...options, headers });
    return {
      resource: this.expectBody(res, 'PUT', resource.resourceType),
      outcome: res.status === 201 ? 'created' : 'updated',
      versionId: versionFromEtag(res.headers.get('etag')),
    };
  }

  /** Accepts a path relative to the base, or an absolute URL on the same server (paging links). */
  private resolve(path: string): string {
    if (/^https?:\/\//.test(path)) {
      const u = new URL(path);
      const base = new URL(this.baseUrl);
      // Never follow a link to another origin with our headers (a hostile or misconfigured server).
      if (u.origin !== base.origin)
        throw new FhirError({ kind: 'network', status: 0, method: 'GET', path: 'foreign-link' });
      return path;
    }
    return path === '' ? this.baseUrl : `${this.baseUrl}/${path.replace(/^\/+/, '')}`;
  }

  private expectBody<T>(res: FhirResponse<T>, method: string, path: string): T {
    if (res.body === undefined) {
      throw new FhirError({ kind: 'http', status: res.status, method, path });
    }
    return res.body;
  }
}
