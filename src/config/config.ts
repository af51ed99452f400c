/**
 * Configuration from environment variables (names are part of the interface contract in product.md).
 *
 * The loader checks every key and reports every problem at once, so an operator fixes a deployment in one
 * round instead of one error per restart. Values are parsed into typed form here; nothing else reads
 * `process.env`.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  X509Certificate,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseWeights, type Weights } from '../scheduling/ranking.js';
import { isJourneyStage, type JourneyStage } from '../journey/stages.js';
import type { TimelineTargets } from '../journey/timeline.js';

export interface QuietHours {
  /** Minutes after local midnight when quiet time starts (inclusive). */
  readonly startMinute: number;
  /** Minutes after local midnight when quiet time ends (exclusive). May be less than start (wraps midnight). */
  readonly endMinute: number;
}

export interface Hl7Timezones {
  /** Zone for HL7 timestamps without an offset when no sender-specific zone applies. */
  readonly defaultZone: string;
  /** Sender key (MSH-4 facility, or `MSH-3^MSH-4`) → IANA zone. */
  readonly bySender: Readonly<Record<string, string>>;
}

export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

/** Credentials and TLS for cluster nodes and a Sentinel-managed master (a REDIS_URL carries its own). */
export interface RedisAuth {
  readonly username?: string;
  readonly password?: string;
  readonly tls: boolean;
}

/** Exactly one of the three ways to reach Redis (connectionConfig checks that only one is given). */
export type RedisTarget =
  | { readonly mode: 'standalone'; readonly url: URL }
  | { readonly mode: 'cluster'; readonly nodes: readonly RedisNode[]; readonly auth: RedisAuth }
  | {
      readonly mode: 'sentinel';
      readonly sentinels: readonly RedisNode[];
      /** The master's name as the sentinels know it (REDIS_SENTINEL_NAME). */
      readonly name: string;
      readonly auth: RedisAuth;
      /** REDIS_SENTINEL_PASSWORD: the sentinels' own password, when they have one. */
      readonly sentinelPassword?: string;
    };

export interface AuthConfig {
  readonly jwksUrl?: URL;
  /** PEM (SPKI) or a JWK as JSON. */
  readonly publicKey?: string;
  readonly issuer: string;
  readonly audience: string;
  /**
   * AUTH_CACHE_SECONDS: the longest a verified token stays in the verifier's cache (never past its `exp`);
   * 0 verifies every request.
   */
  readonly cacheSeconds: number;
}

/** Rate limits per minute (RATE_LIMIT_*), counted in Redis so every instance shares them; 0 turns one off. */
export interface RateLimitConfig {
  /** Failed bearer authentications per client address. */
  readonly authFailures: number;
  /** Inbound replies (`POST /engagement/replies`) per client address. */
  readonly replies: number;
  /** `$hold` and `$book` calls per token subject (against slot hoarding). */
  readonly bookings: number;
}

/**
 * FHIR_AUTH: how Careway authenticates to the FHIR server (and to configured referrer endpoints).
 * Secrets live here in memory only; nothing logs the Config.
 */
export type FhirAuthConfig =
  | { readonly mode: 'none' }
  | { readonly mode: 'bearer'; readonly token: string }
  | {
      readonly mode: 'client-credentials';
      readonly tokenUrl: URL;
      readonly clientId: string;
      readonly clientSecret: string;
      /** FHIR_CLIENT_AUTH_METHOD: how the secret is sent (RFC 6749 §2.3.1). */
      readonly secretMethod: 'client_secret_basic' | 'client_secret_post';
      readonly scope?: string;
    }
  | {
      readonly mode: 'smart-backend';
      /** Unset: read from `{FHIR_BASE_URL}/.well-known/smart-configuration` on first use. */
      readonly tokenUrl?: URL;
      readonly clientId: string;
      /** The private key that signs `private_key_jwt` client assertions. */
      readonly key: KeyObject;
      readonly alg: 'RS384' | 'ES384';
      /** The `kid` of the assertions: FHIR_CLIENT_KEY_ID, else the JWK's `kid`, else its RFC 7638 thumbprint. */
      readonly kid: string;
      readonly scope: string;
    };

/** FHIR_TLS_*: PEM contents for calls to the FHIR server and referrers (client certificate, trusted CA). */
export interface FhirTlsConfig {
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly ca?: Buffer;
}

/** Targets the timeline measures pain points against (the journey domain's own type). */
export type JourneyTargets = TimelineTargets;

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly mllpPort: number;
  readonly fhirBaseUrl: URL;
  /** Which Redis: one server (REDIS_URL), a Redis Cluster (REDIS_CLUSTER_NODES) or Sentinel (REDIS_SENTINELS). */
  readonly redis: RedisTarget;
  readonly auth: AuthConfig;
  readonly rateLimits: RateLimitConfig;
  /** Credentials Careway presents to the FHIR server (FHIR_AUTH and friends). */
  readonly fhirAuth: FhirAuthConfig;
  /** mTLS and trust for the FHIR server (FHIR_TLS_CERT/KEY/CA); unset: the platform's defaults. */
  readonly fhirTls?: FhirTlsConfig;
  readonly hl7Timezones: Hl7Timezones;
  /** ISO 8601 durations, in milliseconds, largest first. */
  readonly reminderOffsetsMs: readonly number[];
  readonly reminderOffsets: readonly string[];
  readonly quietHours: QuietHours;
  readonly defaultTimezone: string;
  readonly smtpUrl?: URL;
  readonly smtpFrom?: string;
  readonly smsWebhookUrl?: URL;
  readonly smsWebhookSecret?: string;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Per-request timeout for calls to the FHIR server. */
  readonly fhirTimeoutMs: number;
  /** How long SIGTERM may take before the process exits anyway. */
  readonly shutdownTimeoutMs: number;
  /**
   * SHUTDOWN_GRACE_MS: how long SIGTERM lets the jobs in hand finish before they are cancelled (and go back to
   * the head of their queue for another replica); below SHUTDOWN_TIMEOUT_MS, which is below the pod's grace period.
   */
  readonly shutdownGraceMs: number;
  /** CAREWAY_ROLES (and RUN_WORKERS=false): what this process does. */
  readonly roles: Roles;
  /**
   * PAGING_SECRET: the key that signs `/fhir` paging links, shared by every replica so a link one replica made
   * works on another. Unset: a random key per process (one instance only), with a warning at start.
   */
  readonly pagingSecret?: Buffer;
  /** Upload profiles/ to the FHIR server at start. */
  readonly uploadProfiles: boolean;
  readonly journeyTargets: JourneyTargets;
  /**
   * Prefix of every Redis key Careway writes, so several deployments (or test runs) can share one Redis. It may
   * hold one `{hash tag}`: then every key of the deployment is in that tag's cluster slot (queues/keys.ts).
   */
  readonly queuePrefix: string;
  /** RUN_WORKERS=false, or CAREWAY_ROLES without `workers`: this instance runs no queue workers. */
  readonly runWorkers: boolean;
  readonly referrals: ReferralConfig;
  readonly hl7: Hl7Config;
  /** HL7_OUTBOUND_URL and friends: Careway's appointment changes sent to the EHR; unset, nothing is sent. */
  readonly hl7Outbound?: Hl7OutboundConfig;
  readonly scheduling: SchedulingConfig;
  readonly reminders: RemindersConfig;
  readonly web: WebConfig;
  /**
   * HTTP_BODY_LIMIT: the largest request body, in bytes, on every route that sets none of its own (413
   * beyond). Bundles take REFERRAL_MAX_BYTES, `POST /hl7` HL7_MAX_FRAME_BYTES × 16.
   */
  readonly httpBodyLimit: number;
  readonly audit: AuditConfig;
  /** The care-team web app at /app (APP_CLIENT_ID, APP_SCOPE, DEMO_SIGN_IN, DEMO_SIGNING_KEY_FILE). */
  readonly app: AppConfig;
  readonly analytics: AnalyticsConfig;
}

/** Analytics (src/analytics): MEASURE_CACHE_SECONDS [300], how long a computed MeasureReport is served; 0: never cached. */
export interface AnalyticsConfig {
  readonly cacheSeconds: number;
}

/**
 * The care-team web app. `clientId` and `scope` are what the app asks the authorization server for in a SMART
 * App Launch (authorization code + PKCE). `demo` is set only when DEMO_SIGN_IN=true: the demo's "Demo sign-in"
 * mints short-lived staff tokens with this key, which must be the one Careway's own verifier trusts.
 */
export interface AppConfig {
  readonly clientId?: string;
  readonly scope: string;
  readonly demo?: {
    readonly privateKey: KeyObject;
    /** The key id put in the token header (dev-key.json's `kid`), when the key file names one. */
    readonly kid?: string;
    /** Token lifetime in seconds. */
    readonly ttlSeconds: number;
  };
}

/**
 * What one Careway process does, so a deployment can run each as its own set of replicas:
 * - `api`: the HTTP routes (FHIR facade, journeys, referrals, scheduling, engagement, `POST /hl7`, the app);
 * - `mllp`: the MLLP listener;
 * - `workers`: the BullMQ workers, the sweeps and their schedulers.
 * Every process serves `/health`, `/ready` and `/metrics` whatever its roles (the probes and Prometheus need them).
 */
export interface Roles {
  readonly api: boolean;
  readonly mllp: boolean;
  readonly workers: boolean;
}

export const ROLE_NAMES = ['api', 'mllp', 'workers'] as const;

/** The audit trail (src/audit): AUDIT_EVENTS, AUDIT_FHIR_BASE_URL, AUDIT_SITE. */
export interface AuditConfig {
  readonly enabled: boolean;
  /** Where AuditEvents are written; unset, the FHIR server itself. */
  readonly fhirBaseUrl?: URL;
  /** AuditEvent.source.site: the deployment's name. */
  readonly site: string;
}

/** What browser apps need: the origins allowed to call Careway, and where SMART apps get their tokens. */
export interface WebConfig {
  /** CORS_ORIGINS: exact origins (scheme://host[:port]) allowed to call from a browser; none by default. */
  readonly corsOrigins: readonly string[];
  /** AUTH_AUTHORIZE_URL / AUTH_TOKEN_URL: the authorization server's endpoints; else from its discovery. */
  readonly authorizeUrl?: URL;
  readonly tokenUrl?: URL;
}

export interface ReminderOffset {
  readonly text: string;
  readonly ms: number;
}

export interface RemindersConfig {
  /** REMINDER_OFFSETS, largest first. */
  readonly offsets: readonly ReminderOffset[];
  /** REMINDER_SERVICE_OFFSETS: per service type (`code` or `system|code`). */
  readonly offsetsByService: Readonly<Record<string, readonly ReminderOffset[]>>;
  readonly attempts: number;
  readonly concurrency: number;
  readonly smsPerSecond: number;
  /** How often the reconciliation sweep re-plans recently changed Appointments; 0 = not in this instance. */
  readonly sweepMs: number;
  /** How often overdue care-plan activities are swept into Tasks (CAREPLAN_SWEEP_INTERVAL); 0 = not here. */
  readonly carePlanSweepMs: number;
  /** A site's own message templates (same layout as templates/). */
  readonly templatesDir?: string;
  /** The patient portal's base URL, for links in survey and education messages. */
  readonly portalUrl?: string;
  /** SURVEY_DELAY: how long after a fulfilled appointment the feedback survey goes out. */
  readonly surveyDelayMs: number;
  /**
   * PUBLIC_BASE_URL + FHIR_WEBHOOK_SECRET: Careway's address as the FHIR server reaches it, and the bearer
   * secret the FHIR server's REST-hook Subscription sends. With both, direct Appointment edits re-plan at once.
   */
  readonly webhook?: { readonly publicBaseUrl: URL; readonly secret: string };
}

export interface SchedulingConfig {
  /** `$find` ranking weights (scheduling/ranking.ts documents each factor). */
  readonly weights: Weights;
  /** How long a `$hold` keeps a Slot tentative before it is released. */
  readonly holdMs: number;
  /** How long a waitlist offer is held for its patient before the next one is offered the slot. */
  readonly offerMs: number;
  /** A booked appointment this long past its end with no arrival becomes a no-show. */
  readonly noShowGraceMs: number;
  /** How often the no-show sweep runs; 0 = not in this instance. */
  readonly noShowSweepMs: number;
}

export interface Hl7Config {
  /** AES-256 key sealing the PHI that waits in Redis (raw messages kept for replay, reminder write-backs). */
  readonly encryptionKey: Buffer;
  readonly maxFrameBytes: number;
  readonly idleTimeoutMs: number;
  /** MLLP_MAX_CONNECTIONS: open MLLP connections at most; more are closed as they come. */
  readonly maxConnections: number;
  readonly defaultCharset: 'utf-8' | 'latin1';
  /** A site's own maps (same layout as mappings/), added to or overriding the built-in ones. */
  readonly mappingsDir?: string;
  /** Inbound partitions: messages of one patient stay ordered, different patients are written in parallel. */
  readonly partitions: number;
  /** MLLP over TLS: PEM certificate and key, and a CA bundle when client certificates are required. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca?: Buffer };
  /**
   * HL7_INTAKE_CHECK: `map` (default) maps each message before acknowledging it and answers AE with an ERR
   * segment when it cannot be written; `none` acknowledges on the durable enqueue alone (commit ACK only).
   */
  readonly intakeCheck: 'map' | 'none';
  /** HL7_REQUIRE_DURABLE: refuse to start the MLLP listener on a Redis that does not persist (AOF off). */
  readonly requireDurable: boolean;
}

export interface ReferralConfig {
  /** Origins a referrer's reply address may point at; status updates go nowhere else (no SSRF). */
  readonly replyAllowlist: readonly string[];
  /** Per-referrer reply endpoints: referral identifier system → base URL (also allowed for replies). */
  readonly endpoints: Readonly<Record<string, string>>;
  /** `Organization/{id}` that owns triage Tasks. */
  readonly receivingOrganization?: string;
  readonly maxEntries: number;
  /** Largest referral body accepted, in bytes (413 beyond). */
  readonly maxBytes: number;
  readonly callbackAttempts: number;
  readonly callbackBackoffMs: number;
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(
      `Invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  - ${problems.join('\n  - ')}`,
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Parses ISO 8601 durations of the day/time form (PnDTnHnMnS, PnW). Months and years are ambiguous for reminders. */
export function parseIsoDuration(text: string): number | undefined {
  const m = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(text);
  if (!m || text === 'P' || text.endsWith('T')) return undefined;
  const [, w, d, h, min, s] = m;
  const ms =
    (Number(w ?? 0) * 7 * 86400 +
      Number(d ?? 0) * 86400 +
      Number(h ?? 0) * 3600 +
      Number(min ?? 0) * 60 +
      Number(s ?? 0)) *
    1000;
  return ms > 0 ? ms : undefined;
}

export function isValidTimeZone(zone: string): boolean {
  if (!zone.includes('/') && zone !== 'UTC') return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

function parseClock(text: string): number | undefined {
  const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(text);
  return m ? Number(m[1]) * 60 + Number(m[2]) : undefined;
}

/** Splits a comma-separated list, trimmed, without empty items. */
const commaList = (text: string): string[] =>
  text
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

/**
 * Reads keys from the environment and collects every problem instead of throwing at the first, so one run of
 * the loader names every bad key. Each reader returns a usable fallback after noting its problem.
 */
class EnvReader {
  readonly problems: string[] = [];

  constructor(private readonly env: Env) {}

  problem(message: string): void {
    this.problems.push(message);
  }

  /** The trimmed value; unset and blank are the same. */
  str(key: string): string | undefined {
    const v = this.env[key];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  port(key: string, fallback: number): number {
    const raw = this.str(key);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > 65535) {
      this.problem(`${key}: must be an integer port 0-65535 (got "${raw}")`);
      return fallback;
    }
    return n;
  }

  positiveInt(key: string, fallback: number): number {
    const raw = this.str(key);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0) {
      this.problem(`${key}: must be a positive integer (got "${raw}")`);
      return fallback;
    }
    return n;
  }

  url(key: string, protocols: readonly string[], required: boolean): URL | undefined {
    const raw = this.str(key);
    if (raw === undefined) {
      if (required) this.problem(`${key}: is required`);
      return undefined;
    }
    try {
      const u = new URL(raw);
      if (!protocols.includes(u.protocol)) {
        this.problem(`${key}: must use ${protocols.join(' or ')} (got "${u.protocol}")`);
        return undefined;
      }
      return u;
    } catch {
      this.problem(`${key}: is not a valid URL`);
      return undefined;
    }
  }

  zone(key: string, fallback: string): string {
    const raw = this.str(key);
    if (raw === undefined) return fallback;
    if (!isValidTimeZone(raw)) {
      this.problem(`${key}: "${raw}" is not an IANA time zone (e.g. Europe/Amsterdam)`);
      return fallback;
    }
    return raw;
  }

  /** An ISO 8601 duration in ms; a bad value is reported and the fallback's duration used. */
  duration(key: string, fallback: string): number {
    const raw = this.str(key) ?? fallback;
    const v = parseIsoDuration(raw);
    if (v === undefined) {
      this.problem(`${key}: "${raw}" is not an ISO 8601 duration like P14D or PT48H`);
      return parseIsoDuration(fallback) ?? 0;
    }
    return v;
  }

  /** A sweep interval: `off` (0) leaves the sweep to another instance, or to tests that call it directly. */
  interval(key: string, fallback: string): number {
    return this.str(key) === 'off' ? 0 : this.duration(key, fallback);
  }

  /** `true` or `false`. */
  flag(key: string, fallback: boolean): boolean {
    const raw = this.str(key) ?? String(fallback);
    if (!['true', 'false'].includes(raw)) this.problem(`${key}: must be true or false`);
    return raw !== 'false';
  }

  /** Comma-separated reminder offsets (ISO 8601 durations), largest first. */
  offsets(key: string, text: string): ReminderOffset[] {
    const out: ReminderOffset[] = [];
    for (const o of commaList(text)) {
      const ms = parseIsoDuration(o);
      if (ms === undefined || ms <= 0)
        this.problem(`${key}: "${o}" is not an ISO 8601 duration like P1D or PT2H`);
      else out.push({ text: o, ms });
    }
    return out.sort((a, b) => b.ms - a.ms);
  }

  /** The contents of the PEM file the key names. */
  pem(key: string): Buffer | undefined {
    const file = this.str(key);
    if (!file) return undefined;
    try {
      return readFileSync(file);
    } catch {
      this.problem(`${key}: cannot read "${file}"`);
      return undefined;
    }
  }
}

/** FHIR_BASE_URL and Redis: the two servers Careway cannot run without. */
function connectionConfig(r: EnvReader): Pick<Config, 'fhirBaseUrl' | 'redis' | 'fhirTimeoutMs'> {
  const fhirBaseUrl = r.url('FHIR_BASE_URL', ['http:', 'https:'], true);
  return {
    // Placeholder only when a problem was reported: the loader throws before anyone sees it.
    fhirBaseUrl: fhirBaseUrl ?? new URL('http://invalid.invalid'),
    redis: redisConfig(r),
    fhirTimeoutMs: r.positiveInt('FHIR_TIMEOUT_MS', 15000),
  };
}

/** `host:port` (`[v6]:port` for IPv6), as REDIS_CLUSTER_NODES and REDIS_SENTINELS list them. */
function parseNode(text: string): RedisNode | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || !(port > 0 && port <= 65535)) return undefined;
  return { host: m[1] ?? m[2]!, port };
}

/**
 * REDIS_URL (one server), REDIS_CLUSTER_NODES (a Redis Cluster: some of its nodes, the rest are discovered) or
 * REDIS_SENTINELS with REDIS_SENTINEL_NAME (Sentinel: the master is asked of the sentinels). Exactly one mode:
 * two given at once is an error rather than a silent choice, since the wrong one would write the queues where
 * the other instances do not look. REDIS_USERNAME, REDIS_PASSWORD and REDIS_TLS serve the cluster and Sentinel
 * modes; a REDIS_URL carries its own (`rediss://user:password@host:port`).
 */
function redisConfig(r: EnvReader): RedisTarget {
  const url = r.url('REDIS_URL', ['redis:', 'rediss:'], false);
  const nodesOf = (key: string): RedisNode[] => {
    const nodes: RedisNode[] = [];
    for (const item of commaList(r.str(key) ?? '')) {
      const node = parseNode(item);
      if (node) nodes.push(node);
      else r.problem(`${key}: "${item.slice(0, 100)}" is not host:port`);
    }
    return nodes;
  };
  const clusterSet = r.str('REDIS_CLUSTER_NODES') !== undefined;
  const sentinelSet = r.str('REDIS_SENTINELS') !== undefined || r.str('REDIS_SENTINEL_NAME') !== undefined;
  const given = [
    ...(r.str('REDIS_URL') !== undefined ? ['REDIS_URL'] : []),
    ...(clusterSet ? ['REDIS_CLUSTER_NODES'] : []),
    ...(sentinelSet ? ['REDIS_SENTINELS'] : []),
  ];
  const placeholder: RedisTarget = { mode: 'standalone', url: new URL('redis://invalid.invalid') };
  if (given.length === 0) {
    r.problem('REDIS_URL: is required (or REDIS_CLUSTER_NODES for a Redis Cluster, or REDIS_SENTINELS)');
    return placeholder;
  }
  if (given.length > 1) {
    r.problem(
      `Redis: give exactly one of REDIS_URL, REDIS_CLUSTER_NODES, REDIS_SENTINELS (got ${given.join(', ')})`,
    );
    return placeholder;
  }
  const auth = (): RedisAuth => {
    const username = r.str('REDIS_USERNAME');
    const password = r.str('REDIS_PASSWORD');
    return {
      ...(username ? { username } : {}),
      ...(password ? { password } : {}),
      tls: r.flag('REDIS_TLS', false),
    };
  };
  if (url) {
    for (const key of ['REDIS_USERNAME', 'REDIS_PASSWORD', 'REDIS_TLS', 'REDIS_SENTINEL_PASSWORD'])
      if (r.str(key) !== undefined)
        r.problem(`${key}: not used with REDIS_URL (put credentials and rediss: in the URL itself)`);
    return { mode: 'standalone', url };
  }
  if (clusterSet) {
    const nodes = nodesOf('REDIS_CLUSTER_NODES');
    if (r.str('REDIS_SENTINEL_PASSWORD') !== undefined)
      r.problem('REDIS_SENTINEL_PASSWORD: only used with REDIS_SENTINELS');
    return nodes.length ? { mode: 'cluster', nodes, auth: auth() } : placeholder;
  }
  if (!sentinelSet) return placeholder; // REDIS_URL was given but invalid: already reported.
  const sentinels = nodesOf('REDIS_SENTINELS');
  const name = r.str('REDIS_SENTINEL_NAME');
  if (r.str('REDIS_SENTINELS') === undefined)
    r.problem('REDIS_SENTINELS: is required with REDIS_SENTINEL_NAME (host:port of each sentinel)');
  if (!name)
    r.problem('REDIS_SENTINEL_NAME: is required with REDIS_SENTINELS (the master name, e.g. mymaster)');
  else if (!/^[A-Za-z0-9._-]{1,100}$/.test(name))
    r.problem('REDIS_SENTINEL_NAME: letters, digits, ., _ and - only');
  const sentinelPassword = r.str('REDIS_SENTINEL_PASSWORD');
  if (!sentinels.length || !name) return placeholder;
  return {
    mode: 'sentinel',
    sentinels,
    name,
    auth: auth(),
    ...(sentinelPassword ? { sentinelPassword } : {}),
  };
}

/** Authentication: exactly one key source, plus issuer and audience. */
function authConfig(r: EnvReader): AuthConfig {
  const jwksUrl = r.url('AUTH_JWKS_URL', ['http:', 'https:'], false);
  // A PEM in one env line has its newlines written as `\n`.
  const publicKey = r.str('AUTH_PUBLIC_KEY')?.replace(/\\n/g, '\n');
  // AUTH_JWKS_URL may be set but invalid (already reported): that still counts as "set" below.
  const jwksSet = r.str('AUTH_JWKS_URL') !== undefined;
  if (!jwksUrl && !publicKey && !jwksSet) {
    r.problem('AUTH_JWKS_URL or AUTH_PUBLIC_KEY: one is required to verify bearer tokens');
  }
  if (jwksSet && publicKey) r.problem('AUTH_JWKS_URL and AUTH_PUBLIC_KEY: set one, not both');
  if (publicKey && !publicKey.includes('-----BEGIN PUBLIC KEY-----') && !publicKey.startsWith('{')) {
    r.problem('AUTH_PUBLIC_KEY: must be a PEM public key (SPKI) or a JWK in JSON');
  }
  const issuer = r.str('AUTH_ISSUER');
  if (!issuer) r.problem('AUTH_ISSUER: is required (the expected "iss" of bearer tokens)');
  const audience = r.str('AUTH_AUDIENCE');
  if (!audience) r.problem('AUTH_AUDIENCE: is required (the expected "aud" of bearer tokens)');
  return {
    ...(jwksUrl ? { jwksUrl } : {}),
    ...(publicKey ? { publicKey } : {}),
    issuer: issuer ?? '',
    audience: audience ?? '',
    cacheSeconds: nonNegativeInt(r, 'AUTH_CACHE_SECONDS', 60),
  };
}

function nonNegativeInt(r: EnvReader, key: string, fallback: number): number {
  const raw = r.str(key);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    r.problem(`${key}: must be a whole number, 0 or more (got "${raw.slice(0, 40)}")`);
    return fallback;
  }
  return n;
}

/** RATE_LIMIT_AUTH_FAILURES [20], RATE_LIMIT_REPLIES [120], RATE_LIMIT_BOOKINGS [30], each per minute. */
function rateLimitConfig(r: EnvReader): RateLimitConfig {
  return {
    authFailures: nonNegativeInt(r, 'RATE_LIMIT_AUTH_FAILURES', 20),
    replies: nonNegativeInt(r, 'RATE_LIMIT_REPLIES', 120),
    bookings: nonNegativeInt(r, 'RATE_LIMIT_BOOKINGS', 30),
  };
}

const FHIR_AUTH_MODES = ['none', 'bearer', 'client-credentials', 'smart-backend'] as const;

/** Which FHIR_AUTH modes use each credential key: a key set for another mode is a mistake worth naming. */
const FHIR_AUTH_KEYS: Readonly<Record<string, readonly (typeof FHIR_AUTH_MODES)[number][]>> = {
  FHIR_BEARER_TOKEN: ['bearer'],
  FHIR_TOKEN_URL: ['client-credentials', 'smart-backend'],
  FHIR_CLIENT_ID: ['client-credentials', 'smart-backend'],
  FHIR_CLIENT_SECRET: ['client-credentials'],
  FHIR_CLIENT_AUTH_METHOD: ['client-credentials'],
  FHIR_CLIENT_KEY: ['smart-backend'],
  FHIR_CLIENT_KEY_ID: ['smart-backend'],
  FHIR_SCOPE: ['client-credentials', 'smart-backend'],
};

/** RFC 7638 thumbprint of the key's public part: a stable `kid` for a PEM key that has none. */
function jwkThumbprint(jwk: JsonWebKey): string {
  const members =
    jwk.kty === 'RSA'
      ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
      : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

/**
 * FHIR_CLIENT_KEY: a PEM private key (PKCS#8, PKCS#1 or SEC1) or a private JWK, given inline (a PEM in one env
 * line may write its newlines as `\n`) or as the path of a file holding either. RSA (≥ 2048 bits) signs
 * RS384; EC P-384 signs ES384, the two algorithms SMART Backend Services servers must accept.
 */
function clientKeyConfig(
  r: EnvReader,
): Pick<Extract<FhirAuthConfig, { mode: 'smart-backend' }>, 'key' | 'alg' | 'kid'> | undefined {
  const raw = r.str('FHIR_CLIENT_KEY');
  if (!raw) {
    r.problem(
      'FHIR_CLIENT_KEY: is required with FHIR_AUTH=smart-backend (a PEM or JWK private key, or its file)',
    );
    return undefined;
  }
  let text = raw.replace(/\\n/g, '\n');
  if (!text.startsWith('-----BEGIN') && !text.startsWith('{')) {
    try {
      text = readFileSync(raw, 'utf8').trim();
    } catch {
      r.problem(`FHIR_CLIENT_KEY: is neither a PEM or JWK key nor a readable file ("${raw}")`);
      return undefined;
    }
  }
  let key: KeyObject;
  let jwk: (JsonWebKey & { kid?: unknown; alg?: unknown; keys?: unknown }) | undefined;
  try {
    if (text.startsWith('{')) {
      jwk = JSON.parse(text) as JsonWebKey;
      if (jwk.keys !== undefined) {
        r.problem('FHIR_CLIENT_KEY: must be one JWK, not a JWK Set');
        return undefined;
      }
      key = createPrivateKey({ key: jwk, format: 'jwk' });
    } else {
      key = createPrivateKey(text);
    }
  } catch {
    // The key's text is never quoted: it is a secret.
    r.problem('FHIR_CLIENT_KEY: is not a PEM or JWK private key (a public key or a garbled one will not do)');
    return undefined;
  }
  let alg: 'RS384' | 'ES384';
  if (key.asymmetricKeyType === 'rsa') {
    alg = 'RS384';
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
      r.problem('FHIR_CLIENT_KEY: an RSA key must have at least 2048 bits');
      return undefined;
    }
  } else if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'secp384r1') {
    alg = 'ES384';
  } else {
    const what =
      key.asymmetricKeyType === 'ec'
        ? `an EC key on ${key.asymmetricKeyDetails?.namedCurve}`
        : `a key of type ${key.asymmetricKeyType}`;
    r.problem(`FHIR_CLIENT_KEY: must be an RSA key (RS384) or an EC P-384 key (ES384), not ${what}`);
    return undefined;
  }
  if (jwk?.alg !== undefined && jwk.alg !== alg) {
    r.problem(
      `FHIR_CLIENT_KEY: the JWK says alg ${JSON.stringify(jwk.alg)}; SMART Backend Services uses ${alg} for this key`,
    );
    return undefined;
  }
  const kid =
    r.str('FHIR_CLIENT_KEY_ID') ??
    (typeof jwk?.kid === 'string' && jwk.kid ? jwk.kid : jwkThumbprint(key.export({ format: 'jwk' })));
  return { key, alg, kid };
}

/** FHIR_AUTH and the credentials of its mode. Every missing or misplaced key is its own problem. */
function fhirAuthConfig(r: EnvReader): FhirAuthConfig {
  const raw = r.str('FHIR_AUTH') ?? 'none';
  if (!(FHIR_AUTH_MODES as readonly string[]).includes(raw)) {
    r.problem(`FHIR_AUTH: must be one of ${FHIR_AUTH_MODES.join(', ')} (got "${raw}")`);
    return { mode: 'none' };
  }
  const mode = raw as (typeof FHIR_AUTH_MODES)[number];
  for (const [key, modes] of Object.entries(FHIR_AUTH_KEYS)) {
    if (r.str(key) !== undefined && !modes.includes(mode))
      r.problem(`${key}: is only used with FHIR_AUTH=${modes.join(' or ')} (FHIR_AUTH is ${mode})`);
  }
  const need = (key: string, what: string): string | undefined => {
    const v = r.str(key);
    if (v === undefined) r.problem(`${key}: is required with FHIR_AUTH=${mode} (${what})`);
    return v;
  };
  switch (mode) {
    case 'none':
      return { mode };
    case 'bearer': {
      const token = need('FHIR_BEARER_TOKEN', 'the token sent as Authorization: Bearer');
      // The token goes into a header as it is: no whitespace, no line breaks (header injection).
      if (token && !/^[\x21-\x7e]+$/.test(token))
        r.problem('FHIR_BEARER_TOKEN: must be one printable ASCII word (no spaces or line breaks)');
      return token ? { mode, token } : { mode: 'none' };
    }
    case 'client-credentials': {
      const tokenUrl = r.url('FHIR_TOKEN_URL', ['http:', 'https:'], false);
      if (r.str('FHIR_TOKEN_URL') === undefined)
        r.problem('FHIR_TOKEN_URL: is required with FHIR_AUTH=client-credentials (the token endpoint)');
      const clientId = need('FHIR_CLIENT_ID', 'the OAuth client id');
      const clientSecret = need('FHIR_CLIENT_SECRET', 'the OAuth client secret');
      const method = r.str('FHIR_CLIENT_AUTH_METHOD') ?? 'client_secret_basic';
      if (method !== 'client_secret_basic' && method !== 'client_secret_post')
        r.problem(
          `FHIR_CLIENT_AUTH_METHOD: must be client_secret_basic or client_secret_post (got "${method}")`,
        );
      const scope = r.str('FHIR_SCOPE');
      if (!tokenUrl || !clientId || !clientSecret) return { mode: 'none' };
      return {
        mode,
        tokenUrl,
        clientId,
        clientSecret,
        secretMethod: method === 'client_secret_post' ? 'client_secret_post' : 'client_secret_basic',
        ...(scope ? { scope } : {}),
      };
    }
    case 'smart-backend': {
      const tokenUrl = r.url('FHIR_TOKEN_URL', ['http:', 'https:'], false);
      const clientId = need('FHIR_CLIENT_ID', 'the client id registered for Careway');
      const scope = need('FHIR_SCOPE', 'the SMART system scopes to request, e.g. "system/*.rs"');
      const signing = clientKeyConfig(r);
      if (!clientId || !scope || !signing) return { mode: 'none' };
      return { mode, ...(tokenUrl ? { tokenUrl } : {}), clientId, scope, ...signing };
    }
  }
}

/** FHIR_TLS_CERT + FHIR_TLS_KEY (mTLS client certificate, together) and FHIR_TLS_CA (CA bundle to trust). */
function fhirTlsConfig(r: EnvReader): FhirTlsConfig | undefined {
  const cert = r.pem('FHIR_TLS_CERT');
  const key = r.pem('FHIR_TLS_KEY');
  const ca = r.pem('FHIR_TLS_CA');
  if (!!r.str('FHIR_TLS_CERT') !== !!r.str('FHIR_TLS_KEY'))
    r.problem('FHIR_TLS_CERT and FHIR_TLS_KEY: set both to present a client certificate');
  const check = (name: string, buf: Buffer | undefined, parse: (b: Buffer) => unknown): void => {
    if (!buf) return;
    try {
      parse(buf);
    } catch {
      r.problem(`${name}: is not a PEM ${name === 'FHIR_TLS_KEY' ? 'private key' : 'certificate'}`);
    }
  };
  check('FHIR_TLS_CERT', cert, (b) => new X509Certificate(b));
  check('FHIR_TLS_KEY', key, (b) => createPrivateKey(b));
  check('FHIR_TLS_CA', ca, (b) => new X509Certificate(b));
  if (!cert && !key && !ca) return undefined;
  return { ...(cert && key ? { cert, key } : {}), ...(ca ? { ca } : {}) };
}

/** DEFAULT_TIMEZONE, and HL7_TIMEZONE: "Zone" or "Zone,SENDER=Zone,APP^FACILITY=Zone". */
function timezoneConfig(r: EnvReader): Pick<Config, 'defaultTimezone' | 'hl7Timezones'> {
  const defaultTimezone = r.zone('DEFAULT_TIMEZONE', 'UTC');
  const hl7Raw = r.str('HL7_TIMEZONE');
  if (hl7Raw === undefined)
    return { defaultTimezone, hl7Timezones: { defaultZone: defaultTimezone, bySender: {} } };
  let defaultZone = defaultTimezone;
  const bySender: Record<string, string> = {};
  for (const part of commaList(hl7Raw)) {
    const eq = part.indexOf('=');
    const z = eq === -1 ? part : part.slice(eq + 1).trim();
    if (!isValidTimeZone(z)) {
      r.problem(`HL7_TIMEZONE: "${z}" is not an IANA time zone`);
      continue;
    }
    if (eq === -1) defaultZone = z;
    else bySender[part.slice(0, eq).trim()] = z;
  }
  return { defaultTimezone, hl7Timezones: { defaultZone, bySender } };
}

/** QUIET_HOURS: HH:MM-HH:MM, local to the patient; may wrap midnight. */
function quietHoursConfig(r: EnvReader): QuietHours {
  const raw = r.str('QUIET_HOURS') ?? '21:00-08:00';
  const [qs, qe, ...rest] = raw.split('-');
  const startMinute = qs === undefined ? undefined : parseClock(qs.trim());
  const endMinute = qe === undefined ? undefined : parseClock(qe.trim());
  if (startMinute === undefined || endMinute === undefined || rest.length > 0) {
    r.problem(`QUIET_HOURS: must be HH:MM-HH:MM in 24-hour time (got "${raw}")`);
    return { startMinute: 21 * 60, endMinute: 8 * 60 };
  }
  return { startMinute, endMinute };
}

/** The outbound channels: SMTP for e-mail, a signed webhook for SMS. Each is off unless configured. */
function channelConfig(
  r: EnvReader,
): Pick<Config, 'smtpUrl' | 'smtpFrom' | 'smsWebhookUrl' | 'smsWebhookSecret'> {
  const smtpUrl = r.url('SMTP_URL', ['smtp:', 'smtps:'], false);
  const smtpFrom = r.str('SMTP_FROM');
  if (smtpUrl && !smtpFrom) r.problem('SMTP_FROM: is required when SMTP_URL is set');
  // `Name <address>` or a bare address.
  if (smtpFrom && !/^[^@\s]+@[^@\s]+$/.test(smtpFrom.replace(/^.*<(.+)>$/, '$1'))) {
    r.problem('SMTP_FROM: must be an e-mail address');
  }
  const smsWebhookUrl = r.url('SMS_WEBHOOK_URL', ['http:', 'https:'], false);
  const smsWebhookSecret = r.str('SMS_WEBHOOK_SECRET');
  if (smsWebhookUrl && !smsWebhookSecret)
    r.problem('SMS_WEBHOOK_SECRET: is required when SMS_WEBHOOK_URL is set');
  if (smsWebhookSecret && smsWebhookSecret.length < 16) {
    r.problem('SMS_WEBHOOK_SECRET: must be at least 16 characters');
  }
  return {
    ...(smtpUrl ? { smtpUrl } : {}),
    ...(smtpFrom ? { smtpFrom } : {}),
    ...(smsWebhookUrl ? { smsWebhookUrl } : {}),
    ...(smsWebhookSecret ? { smsWebhookSecret } : {}),
  };
}

/** REMINDER_SERVICE_OFFSETS: space-separated `<code or system|code>=<offsets>`. */
function offsetsByServiceConfig(r: EnvReader): Record<string, readonly ReminderOffset[]> {
  const out: Record<string, readonly ReminderOffset[]> = {};
  for (const part of (r.str('REMINDER_SERVICE_OFFSETS') ?? '').split(/\s+/).filter(Boolean)) {
    // The last `=`: a system URL may hold one.
    const eq = part.lastIndexOf('=');
    if (eq <= 0) r.problem(`REMINDER_SERVICE_OFFSETS: "${part}" must be <service type code>=<offsets>`);
    else out[part.slice(0, eq)] = r.offsets('REMINDER_SERVICE_OFFSETS', part.slice(eq + 1));
  }
  return out;
}

/**
 * PUBLIC_BASE_URL + FHIR_WEBHOOK_SECRET, set together: with both, the FHIR server's REST-hook Subscription
 * tells Careway of direct Appointment edits.
 */
function webhookConfig(r: EnvReader): RemindersConfig['webhook'] {
  const publicBaseUrl = r.url('PUBLIC_BASE_URL', ['http:', 'https:'], false);
  const secret = r.str('FHIR_WEBHOOK_SECRET');
  if (!!publicBaseUrl !== !!secret)
    r.problem("PUBLIC_BASE_URL and FHIR_WEBHOOK_SECRET: set both to receive the FHIR server's REST-hook");
  if (secret && secret.length < 16) r.problem('FHIR_WEBHOOK_SECRET: must be at least 16 characters');
  return publicBaseUrl && secret ? { publicBaseUrl, secret } : undefined;
}

function remindersConfig(r: EnvReader): RemindersConfig {
  const offsets = r.offsets('REMINDER_OFFSETS', r.str('REMINDER_OFFSETS') ?? 'P3D,P1D,PT2H');
  const offsetsByService = offsetsByServiceConfig(r);
  const webhook = webhookConfig(r);
  const templatesDir = r.str('TEMPLATES_DIR');
  const portalUrl = r.str('PORTAL_URL');
  return {
    offsets,
    offsetsByService,
    attempts: r.positiveInt('REMINDER_ATTEMPTS', 5),
    concurrency: r.positiveInt('REMINDER_CONCURRENCY', 32),
    smsPerSecond: r.positiveInt('SMS_RATE_PER_SECOND', 10),
    sweepMs: r.interval('REMINDER_SWEEP_INTERVAL', 'PT5M'),
    carePlanSweepMs: r.interval('CAREPLAN_SWEEP_INTERVAL', 'PT15M'),
    ...(templatesDir ? { templatesDir } : {}),
    ...(portalUrl ? { portalUrl } : {}),
    surveyDelayMs: r.duration('SURVEY_DELAY', 'PT2H'),
    ...(webhook ? { webhook } : {}),
  };
}

function logLevelConfig(r: EnvReader): Config['logLevel'] {
  const raw = r.str('LOG_LEVEL') ?? 'info';
  if ((LOG_LEVELS as readonly string[]).includes(raw)) return raw as Config['logLevel'];
  r.problem(`LOG_LEVEL: must be one of ${LOG_LEVELS.join(', ')} (got "${raw}")`);
  return 'info';
}

/** JOURNEY_STAGE_TARGETS (`<stage>=<duration>,…`), REFERRAL_WAIT_TARGET and MESSAGE_REPLY_TARGET. */
function journeyTargetsConfig(r: EnvReader): JourneyTargets {
  const stageMs: Partial<Record<JourneyStage, number>> = {};
  const raw =
    r.str('JOURNEY_STAGE_TARGETS') ?? 'awareness=P14D,consideration=P14D,access=P21D,care=P90D,recovery=P90D';
  for (const part of commaList(raw)) {
    const [stage, d] = part.split('=').map((x) => x.trim());
    const v = d === undefined ? undefined : parseIsoDuration(d);
    if (!stage || !isJourneyStage(stage) || v === undefined) {
      r.problem(
        `JOURNEY_STAGE_TARGETS: "${part}" must be <stage>=<ISO 8601 duration> with a journey stage code`,
      );
      continue;
    }
    stageMs[stage] = v;
  }
  return {
    stageMs,
    referralToFirstAppointmentMs: r.duration('REFERRAL_WAIT_TARGET', 'P14D'),
    messageReplyMs: r.duration('MESSAGE_REPLY_TARGET', 'PT48H'),
  };
}

/** REFERRAL_REPLY_ALLOWLIST: the http(s) origins a referrer's reply address may point at. */
function replyAllowlistConfig(r: EnvReader): string[] {
  const out: string[] = [];
  for (const o of commaList(r.str('REFERRAL_REPLY_ALLOWLIST') ?? '')) {
    try {
      const u = new URL(o);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('protocol');
      out.push(u.origin);
    } catch {
      r.problem(`REFERRAL_REPLY_ALLOWLIST: "${o}" is not an http(s) origin`);
    }
  }
  return out;
}

/**
 * REFERRAL_ENDPOINTS: space-separated `<referral identifier system>=<URL>`. A configured endpoint's origin is
 * allowed for replies too (added to `allowlist`).
 */
function referralEndpointsConfig(r: EnvReader, allowlist: string[]): Record<string, string> {
  const endpoints: Record<string, string> = {};
  for (const part of (r.str('REFERRAL_ENDPOINTS') ?? '').split(/\s+/).filter(Boolean)) {
    // The last `=`: the system is a URL that may hold one.
    const eq = part.lastIndexOf('=');
    const system = eq > 0 ? part.slice(0, eq) : '';
    const url = eq > 0 ? part.slice(eq + 1) : '';
    try {
      const u = new URL(url);
      if (!system || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new Error('bad');
      endpoints[system] = url;
      if (!allowlist.includes(u.origin)) allowlist.push(u.origin);
    } catch {
      r.problem(
        `REFERRAL_ENDPOINTS: "${part}" must be <referral identifier system>=<http(s) URL>, space-separated`,
      );
    }
  }
  return endpoints;
}

function referralConfig(r: EnvReader): ReferralConfig {
  const replyAllowlist = replyAllowlistConfig(r);
  const endpoints = referralEndpointsConfig(r, replyAllowlist);
  const receivingOrganization = r.str('REFERRAL_RECEIVING_ORGANIZATION');
  if (receivingOrganization && !/^Organization\/[A-Za-z0-9\-.]{1,64}$/.test(receivingOrganization)) {
    r.problem('REFERRAL_RECEIVING_ORGANIZATION: must be Organization/{id}');
  }
  return {
    replyAllowlist,
    endpoints,
    ...(receivingOrganization ? { receivingOrganization } : {}),
    maxEntries: r.positiveInt('REFERRAL_MAX_ENTRIES', 100),
    maxBytes: r.positiveInt('REFERRAL_MAX_BYTES', 5 * 1024 * 1024),
    callbackAttempts: r.positiveInt('REFERRAL_CALLBACK_ATTEMPTS', 12),
    callbackBackoffMs: r.positiveInt('REFERRAL_CALLBACK_BACKOFF_MS', 2000),
  };
}

/** HL7_ENCRYPTION_KEY: 32 bytes, base64. Required: raw messages kept for replay are PHI at rest in Redis. */
function encryptionKeyConfig(r: EnvReader): Buffer {
  const raw = r.str('HL7_ENCRYPTION_KEY');
  if (!raw) {
    r.problem(
      'HL7_ENCRYPTION_KEY: is required (32 random bytes, base64) to seal raw HL7 messages kept for replay',
    );
    return Buffer.alloc(32);
  }
  const k = Buffer.from(raw, 'base64');
  if (k.length === 32) return k;
  r.problem('HL7_ENCRYPTION_KEY: must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)');
  return Buffer.alloc(32);
}

/** MLLP over TLS: MLLP_TLS_CERT and MLLP_TLS_KEY together, MLLP_TLS_CA to require client certificates. */
function mllpTlsConfig(r: EnvReader): Hl7Config['tls'] {
  const cert = r.pem('MLLP_TLS_CERT');
  const key = r.pem('MLLP_TLS_KEY');
  const ca = r.pem('MLLP_TLS_CA');
  if (!!r.str('MLLP_TLS_CERT') !== !!r.str('MLLP_TLS_KEY'))
    r.problem('MLLP_TLS_CERT and MLLP_TLS_KEY: set both to enable MLLP over TLS');
  if (r.str('MLLP_TLS_CA') && !r.str('MLLP_TLS_CERT'))
    r.problem('MLLP_TLS_CA: needs MLLP_TLS_CERT and MLLP_TLS_KEY');
  return cert && key ? { cert, key, ...(ca ? { ca } : {}) } : undefined;
}

function hl7Config(r: EnvReader): Hl7Config {
  const encryptionKey = encryptionKeyConfig(r);
  const charset = (r.str('HL7_DEFAULT_CHARSET') ?? 'UTF-8').toUpperCase();
  if (!['UTF-8', '8859/1', 'LATIN1'].includes(charset))
    r.problem('HL7_DEFAULT_CHARSET: must be UTF-8 or 8859/1');
  const tls = mllpTlsConfig(r);
  const intakeCheck = (r.str('HL7_INTAKE_CHECK') ?? 'map').toLowerCase();
  if (intakeCheck !== 'map' && intakeCheck !== 'none')
    r.problem('HL7_INTAKE_CHECK: must be map (refuse unmappable messages with AE) or none (commit ACK only)');
  const mappingsDir = r.str('MAPPINGS_DIR');
  return {
    encryptionKey,
    maxFrameBytes: r.positiveInt('HL7_MAX_FRAME_BYTES', 1024 * 1024),
    idleTimeoutMs: r.positiveInt('HL7_IDLE_TIMEOUT_MS', 300_000),
    maxConnections: r.positiveInt('MLLP_MAX_CONNECTIONS', 200),
    defaultCharset: charset === 'UTF-8' ? 'utf-8' : 'latin1',
    partitions: Math.min(64, r.positiveInt('HL7_PARTITIONS', 4)),
    ...(tls ? { tls } : {}),
    ...(mappingsDir ? { mappingsDir } : {}),
    intakeCheck: intakeCheck === 'none' ? 'none' : 'map',
    requireDurable: r.flag('HL7_REQUIRE_DURABLE', false),
  };
}

/** Outbound HL7 to the EHR (src/hl7/outbound-worker.ts). */
export interface Hl7OutboundConfig {
  readonly host: string;
  readonly port: number;
  /** `mllps://`: MLLP over TLS; a CA bundle to trust instead of the system's, and a client certificate. */
  readonly tls?: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
  /** How long to wait for the EHR's ACK before the connection is dropped and the message retried. */
  readonly ackTimeoutMs: number;
  readonly attempts: number;
  readonly backoffMs: number;
  /** Outbound partitions: one patient's changes in order, patients in parallel. */
  readonly partitions: number;
  /** MSH-3/4 (Careway) and MSH-5/6 (the EHR). */
  readonly sendingApplication: string;
  readonly sendingFacility: string;
  readonly receivingApplication: string;
  readonly receivingFacility: string;
}

/**
 * HL7_OUTBOUND_URL (`mllp://host:port` or `mllps://host:port`) turns outbound HL7 on; HL7_OUTBOUND_TLS_CA /
 * _CERT / _KEY are PEM files for `mllps://` (cert and key together); the rest tune delivery and MSH-3..6.
 */
function hl7OutboundConfig(r: EnvReader): Hl7OutboundConfig | undefined {
  const url = r.url('HL7_OUTBOUND_URL', ['mllp:', 'mllps:'], false);
  const tlsKeys = ['HL7_OUTBOUND_TLS_CA', 'HL7_OUTBOUND_TLS_CERT', 'HL7_OUTBOUND_TLS_KEY'];
  if (!url) {
    for (const k of tlsKeys) if (r.str(k)) r.problem(`${k}: needs HL7_OUTBOUND_URL=mllps://host:port`);
    return undefined;
  }
  const port = Number(url.port);
  if (!url.hostname || !Number.isInteger(port) || port <= 0)
    r.problem('HL7_OUTBOUND_URL: must name a host and a port, e.g. mllp://ehr.example.org:2575');
  const tls = url.protocol === 'mllps:';
  if (!tls) for (const k of tlsKeys) if (r.str(k)) r.problem(`${k}: only applies to mllps://`);
  if (!!r.str('HL7_OUTBOUND_TLS_CERT') !== !!r.str('HL7_OUTBOUND_TLS_KEY'))
    r.problem('HL7_OUTBOUND_TLS_CERT and HL7_OUTBOUND_TLS_KEY: set both for a client certificate');
  const ca = r.pem('HL7_OUTBOUND_TLS_CA');
  const cert = r.pem('HL7_OUTBOUND_TLS_CERT');
  const key = r.pem('HL7_OUTBOUND_TLS_KEY');
  // MSH-3..6 are written as they are: no delimiter may appear in them.
  const hd = (name: string, fallback: string): string => {
    const v = r.str(name) ?? fallback;
    if (!/^[^|^~\\&\r\n]{0,64}$/.test(v)) r.problem(`${name}: at most 64 characters, none of | ^ ~ \\ &`);
    return v;
  };
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port,
    ...(tls ? { tls: { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) } } : {}),
    ackTimeoutMs: r.positiveInt('HL7_OUTBOUND_ACK_TIMEOUT_MS', 30_000),
    attempts: r.positiveInt('HL7_OUTBOUND_ATTEMPTS', 12),
    backoffMs: r.positiveInt('HL7_OUTBOUND_BACKOFF_MS', 2000),
    partitions: Math.min(64, r.positiveInt('HL7_OUTBOUND_PARTITIONS', 4)),
    sendingApplication: hd('HL7_OUTBOUND_SENDING_APPLICATION', 'CAREWAY'),
    sendingFacility: hd('HL7_OUTBOUND_SENDING_FACILITY', ''),
    receivingApplication: hd('HL7_OUTBOUND_RECEIVING_APPLICATION', ''),
    receivingFacility: hd('HL7_OUTBOUND_RECEIVING_FACILITY', ''),
  };
}

function schedulingConfig(r: EnvReader): SchedulingConfig {
  const parsedWeights = parseWeights(r.str('SCHEDULING_WEIGHTS'));
  for (const p of parsedWeights.problems) r.problem(`SCHEDULING_WEIGHTS: ${p}`);
  return {
    weights: parsedWeights.weights,
    holdMs: r.duration('SLOT_HOLD_TTL', 'PT10M'),
    offerMs: r.duration('WAITLIST_OFFER_TTL', 'PT2H'),
    noShowGraceMs: r.duration('NOSHOW_GRACE', 'PT30M'),
    noShowSweepMs: r.interval('NOSHOW_SWEEP_INTERVAL', 'PT5M'),
  };
}

/** What this process does and how it listens: roles, ports, queue prefix, profile upload, shutdown, paging. */
function processConfig(
  r: EnvReader,
): Pick<
  Config,
  | 'port'
  | 'host'
  | 'mllpPort'
  | 'queuePrefix'
  | 'runWorkers'
  | 'roles'
  | 'uploadProfiles'
  | 'shutdownTimeoutMs'
  | 'shutdownGraceMs'
  | 'pagingSecret'
> {
  const queuePrefix = r.str('QUEUE_PREFIX') ?? 'careway';
  // At most one hash tag, not empty (Redis ignores `{}`), and no `:` (BullMQ's separator): queues/keys.ts.
  if (queuePrefix.length > 40 || !/^[A-Za-z0-9_-]*(\{[A-Za-z0-9_-]+\})?[A-Za-z0-9_-]*$/.test(queuePrefix))
    r.problem(
      'QUEUE_PREFIX: letters, digits, _ and - (at most 40), with at most one {hash tag} of the same, e.g. careway or {careway}',
    );
  const roles = rolesConfig(r);
  const shutdownTimeoutMs = r.positiveInt('SHUTDOWN_TIMEOUT_MS', 10000);
  const graceRaw = r.str('SHUTDOWN_GRACE_MS');
  const shutdownGraceMs = r.positiveInt('SHUTDOWN_GRACE_MS', Math.max(1, shutdownTimeoutMs - 2000));
  // The jobs' grace must end before the hard deadline, with room to close the queues and HTTP after it.
  if (graceRaw !== undefined && shutdownGraceMs >= shutdownTimeoutMs)
    r.problem(
      `SHUTDOWN_GRACE_MS: must be less than SHUTDOWN_TIMEOUT_MS (${shutdownTimeoutMs}), leaving time to close the rest`,
    );
  const paging = r.str('PAGING_SECRET');
  if (paging !== undefined && paging.length < 32)
    r.problem('PAGING_SECRET: must be at least 32 characters (e.g. openssl rand -base64 32)');
  return {
    queuePrefix,
    roles,
    runWorkers: roles.workers,
    uploadProfiles: r.flag('CAREWAY_UPLOAD_PROFILES', true),
    port: r.port('PORT', 8080),
    host: r.str('HOST') ?? '0.0.0.0',
    mllpPort: r.port('MLLP_PORT', 2575),
    shutdownTimeoutMs,
    shutdownGraceMs,
    ...(paging !== undefined && paging.length >= 32 ? { pagingSecret: Buffer.from(paging, 'utf8') } : {}),
  };
}

/**
 * CAREWAY_ROLES [api,mllp,workers]: a comma list of roles. RUN_WORKERS=false (the older switch) takes `workers`
 * away from whatever the list says.
 */
function rolesConfig(r: EnvReader): Roles {
  const raw = r.str('CAREWAY_ROLES');
  const named = raw === undefined ? [...ROLE_NAMES] : commaList(raw.toLowerCase());
  for (const n of named)
    if (!(ROLE_NAMES as readonly string[]).includes(n))
      r.problem(`CAREWAY_ROLES: "${n.slice(0, 40)}" is not a role (api, mllp, workers)`);
  if (raw !== undefined && named.length === 0)
    r.problem('CAREWAY_ROLES: name at least one of api, mllp, workers');
  const runWorkers = r.flag('RUN_WORKERS', true);
  const roles = {
    api: named.includes('api'),
    mllp: named.includes('mllp'),
    workers: named.includes('workers') && runWorkers,
  };
  if (named.length > 0 && !roles.api && !roles.mllp && !roles.workers)
    r.problem('CAREWAY_ROLES and RUN_WORKERS: this process would have no role left');
  return roles;
}

/**
 * CORS_ORIGINS: space- or comma-separated origins, each exactly `scheme://host[:port]` (a path, a wildcard or
 * `*` is refused: patient data is not for any page on the web). AUTH_AUTHORIZE_URL and AUTH_TOKEN_URL name the
 * authorization server's endpoints for `.well-known/smart-configuration`; unset, they are read from the
 * issuer's own discovery document (AUTH_ISSUER + /.well-known/openid-configuration) when asked.
 */
function webConfig(r: EnvReader): WebConfig {
  const corsOrigins: string[] = [];
  for (const origin of (r.str('CORS_ORIGINS') ?? '').split(/[\s,]+/).filter(Boolean)) {
    let ok = false;
    try {
      const u = new URL(origin);
      ok = (u.protocol === 'https:' || u.protocol === 'http:') && u.origin === origin.replace(/\/$/, '');
    } catch {
      ok = false;
    }
    if (ok) corsOrigins.push(origin.replace(/\/$/, ''));
    else
      r.problem(`CORS_ORIGINS: "${origin.slice(0, 100)}" must be an origin such as https://app.example.org`);
  }
  const authorizeUrl = r.url('AUTH_AUTHORIZE_URL', ['http:', 'https:'], false);
  const tokenUrl = r.url('AUTH_TOKEN_URL', ['http:', 'https:'], false);
  return { corsOrigins, ...(authorizeUrl ? { authorizeUrl } : {}), ...(tokenUrl ? { tokenUrl } : {}) };
}

/** AUDIT_EVENTS [on] (off: no AuditEvents at all), AUDIT_FHIR_BASE_URL (a separate audit server), AUDIT_SITE. */
function auditConfig(r: EnvReader): AuditConfig {
  const flag = (r.str('AUDIT_EVENTS') ?? 'on').toLowerCase();
  if (!['on', 'off', 'true', 'false'].includes(flag)) r.problem('AUDIT_EVENTS: must be on or off');
  const fhirBaseUrl = r.url('AUDIT_FHIR_BASE_URL', ['http:', 'https:'], false);
  return {
    enabled: flag === 'on' || flag === 'true',
    ...(fhirBaseUrl ? { fhirBaseUrl } : {}),
    site: r.str('AUDIT_SITE') ?? 'careway',
  };
}

/** The scopes the care-team app asks for by default: staff (user/) reads and the writes its actions need. */
export const DEFAULT_APP_SCOPE =
  'openid fhirUser user/*.rs user/EpisodeOfCare.u user/Appointment.cu user/Task.u user/Communication.c user/MessageHeader.cr';

/**
 * APP_CLIENT_ID and APP_SCOPE (SMART launch of the care-team app); DEMO_SIGN_IN=true with DEMO_SIGNING_KEY_FILE
 * (a PKCS#8 PEM private key, or the demo's `.careway/dev-key.json`) turns the demo sign-in on. The key must
 * match AUTH_PUBLIC_KEY when that is set: a demo sign-in whose tokens Careway then refuses is a setup error
 * better reported at start.
 */
function appConfig(r: EnvReader, auth: AuthConfig): AppConfig {
  const clientId = r.str('APP_CLIENT_ID');
  if (clientId !== undefined && !/^[\x21-\x7e]{1,200}$/.test(clientId))
    r.problem('APP_CLIENT_ID: printable ASCII without spaces, at most 200 characters');
  const scope = r.str('APP_SCOPE') ?? DEFAULT_APP_SCOPE;
  if (!r.flag('DEMO_SIGN_IN', false)) {
    if (r.str('DEMO_SIGNING_KEY_FILE')) r.problem('DEMO_SIGNING_KEY_FILE: only used with DEMO_SIGN_IN=true');
    return { ...(clientId ? { clientId } : {}), scope };
  }
  const file = r.str('DEMO_SIGNING_KEY_FILE');
  if (!file) {
    r.problem(
      'DEMO_SIGNING_KEY_FILE: is required with DEMO_SIGN_IN=true (the demo dev key that signs tokens)',
    );
    return { ...(clientId ? { clientId } : {}), scope };
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    r.problem(`DEMO_SIGNING_KEY_FILE: cannot read "${file}"`);
    return { ...(clientId ? { clientId } : {}), scope };
  }
  let privateKey: KeyObject | undefined;
  let kid: string | undefined;
  try {
    if (text.trim().startsWith('{')) {
      const record = JSON.parse(text) as { privatePem?: unknown; kid?: unknown };
      if (typeof record.privatePem !== 'string') throw new Error('no privatePem');
      privateKey = createPrivateKey(record.privatePem);
      if (typeof record.kid === 'string') kid = record.kid;
    } else privateKey = createPrivateKey(text);
  } catch {
    r.problem(`DEMO_SIGNING_KEY_FILE: "${file}" holds no private key (PKCS#8 PEM, or dev-key.json)`);
  }
  if (privateKey && !['ec', 'rsa', 'ed25519'].includes(privateKey.asymmetricKeyType ?? '')) {
    r.problem('DEMO_SIGNING_KEY_FILE: the key must be EC (P-256/384/521), RSA or Ed25519');
    privateKey = undefined;
  }
  if (privateKey && auth.publicKey && !auth.publicKey.trim().startsWith('{')) {
    const derived = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    let trusted: Buffer | undefined;
    try {
      trusted = createPublicKey(auth.publicKey).export({ type: 'spki', format: 'der' });
    } catch {
      trusted = undefined; // AUTH_PUBLIC_KEY's own problem is reported where it is read.
    }
    if (trusted && !derived.equals(trusted))
      r.problem(
        'DEMO_SIGNING_KEY_FILE: its key does not match AUTH_PUBLIC_KEY, so Careway would refuse its tokens',
      );
  }
  const ttlSeconds = Math.min(3600, r.positiveInt('DEMO_TOKEN_TTL_SECONDS', 900));
  return {
    ...(clientId ? { clientId } : {}),
    scope,
    ...(privateKey ? { demo: { privateKey, ...(kid ? { kid } : {}), ttlSeconds } } : {}),
  };
}

/**
 * Loads and validates configuration. Throws `ConfigError` listing every bad key, area by area.
 */
export function loadConfig(env: Env): Config {
  const r = new EnvReader(env);
  const connections = connectionConfig(r);
  const auth = authConfig(r);
  const rateLimits = rateLimitConfig(r);
  const fhirAuth = fhirAuthConfig(r);
  const fhirTls = fhirTlsConfig(r);
  const zones = timezoneConfig(r);
  const reminders = remindersConfig(r);
  const quietHours = quietHoursConfig(r);
  const channels = channelConfig(r);
  const logLevel = logLevelConfig(r);
  const journeyTargets = journeyTargetsConfig(r);
  const referrals = referralConfig(r);
  const hl7 = hl7Config(r);
  const hl7Outbound = hl7OutboundConfig(r);
  const scheduling = schedulingConfig(r);
  const proc = processConfig(r);
  const web = webConfig(r);
  const httpBodyLimit = r.positiveInt('HTTP_BODY_LIMIT', 1024 * 1024);
  const audit = auditConfig(r);
  const app = appConfig(r, auth);
  const analytics: AnalyticsConfig = { cacheSeconds: nonNegativeInt(r, 'MEASURE_CACHE_SECONDS', 300) };
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return {
    ...proc,
    ...connections,
    auth,
    rateLimits,
    fhirAuth,
    ...(fhirTls ? { fhirTls } : {}),
    ...zones,
    reminderOffsets: reminders.offsets.map((o) => o.text),
    reminderOffsetsMs: reminders.offsets.map((o) => o.ms),
    quietHours,
    ...channels,
    logLevel,
    journeyTargets,
    referrals,
    hl7,
    ...(hl7Outbound ? { hl7Outbound } : {}),
    scheduling,
    reminders,
    web,
    httpBodyLimit,
    audit,
    app,
    analytics,
  };
}
