/**
 * Configuration from environment variables (names are part of the interface contract in product.md).
 *
 * The loader checks every key and reports every problem at once, so an operator fixes a deployment in one
 * round instead of one error per restart. Values are parsed into typed form here; nothing else reads
 * `process.env`.
 */
import { readFileSync } from 'node:fs';
import { parseWeights, type Weights } from '../scheduling/ranking.js';
import { isJourneyStage, type JourneyStage } from '../journey/stages.js';

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

export interface AuthConfig {
  readonly jwksUrl?: URL;
  /** PEM (SPKI) or a JWK as JSON. */
  readonly publicKey?: string;
  readonly issuer: string;
  readonly audience: string;
}

/** Targets the timeline measures pain points against. */
export interface JourneyTargets {
  readonly stageMs: Partial<Record<JourneyStage, number>>;
  readonly referralToFirstAppointmentMs: number;
  readonly messageReplyMs: number;
}

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly mllpPort: number;
  readonly fhirBaseUrl: URL;
  readonly redisUrl: URL;
  readonly auth: AuthConfig;
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
  /** Upload profiles/ to the FHIR server at start. */
  readonly uploadProfiles: boolean;
  readonly journeyTargets: JourneyTargets;
  /** Prefix of every BullMQ key, so several deployments (or test runs) can share one Redis. */
  readonly queuePrefix: string;
  /** RUN_WORKERS=false: this instance serves HTTP and MLLP and queues work, and runs no queue workers. */
  readonly runWorkers: boolean;
  readonly referrals: ReferralConfig;
  readonly hl7: Hl7Config;
  readonly scheduling: SchedulingConfig;
  readonly reminders: RemindersConfig;
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

/**
 * Loads and validates configuration. Throws `ConfigError` listing every bad key.
 */
export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const str = (key: string): string | undefined => {
    const v = env[key];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };

  const port = (key: string, fallback: number): number => {
    const raw = str(key);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > 65535) {
      problems.push(`${key}: must be an integer port 0-65535 (got "${raw}")`);
      return fallback;
    }
    return n;
  };

  const positiveInt = (key: string, fallback: number): number => {
    const raw = str(key);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0) {
      problems.push(`${key}: must be a positive integer (got "${raw}")`);
      return fallback;
    }
    return n;
  };

  const url = (key: string, protocols: readonly string[], required: boolean): URL | undefined => {
    const raw = str(key);
    if (raw === undefined) {
      if (required) problems.push(`${key}: is required`);
      return undefined;
    }
    try {
      const u = new URL(raw);
      if (!protocols.includes(u.protocol)) {
        problems.push(`${key}: must use ${protocols.join(' or ')} (got "${u.protocol}")`);
        return undefined;
      }
      return u;
    } catch {
      problems.push(`${key}: is not a valid URL`);
      return undefined;
    }
  };

  const zone = (key: string, fallback: string): string => {
    const raw = str(key);
    if (raw === undefined) return fallback;
    if (!isValidTimeZone(raw)) {
      problems.push(`${key}: "${raw}" is not an IANA time zone (e.g. Europe/Amsterdam)`);
      return fallback;
    }
    return raw;
  };

  const fhirBaseUrl = url('FHIR_BASE_URL', ['http:', 'https:'], true);
  const redisUrl = url('REDIS_URL', ['redis:', 'rediss:'], true);

  // Authentication: exactly one key source, plus issuer and audience.
  const jwksUrl = url('AUTH_JWKS_URL', ['http:', 'https:'], false);
  const publicKey = str('AUTH_PUBLIC_KEY')?.replace(/\\n/g, '\n');
  if (!jwksUrl && !publicKey && !str('AUTH_JWKS_URL')) {
    problems.push('AUTH_JWKS_URL or AUTH_PUBLIC_KEY: one is required to verify bearer tokens');
  }
  if (str('AUTH_JWKS_URL') && publicKey) {
    problems.push('AUTH_JWKS_URL and AUTH_PUBLIC_KEY: set one, not both');
  }
  if (publicKey && !publicKey.includes('-----BEGIN PUBLIC KEY-----') && !publicKey.startsWith('{')) {
    problems.push('AUTH_PUBLIC_KEY: must be a PEM public key (SPKI) or a JWK in JSON');
  }
  const issuer = str('AUTH_ISSUER');
  if (!issuer) problems.push('AUTH_ISSUER: is required (the expected "iss" of bearer tokens)');
  const audience = str('AUTH_AUDIENCE');
  if (!audience) problems.push('AUTH_AUDIENCE: is required (the expected "aud" of bearer tokens)');

  // HL7_TIMEZONE: "Zone" or "Zone,SENDER=Zone,APP^FACILITY=Zone".
  const defaultTimezone = zone('DEFAULT_TIMEZONE', 'UTC');
  let hl7Timezones: Hl7Timezones = { defaultZone: defaultTimezone, bySender: {} };
  const hl7Raw = str('HL7_TIMEZONE');
  if (hl7Raw !== undefined) {
    let defaultZone = defaultTimezone;
    const bySender: Record<string, string> = {};
    for (const part of hl7Raw
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)) {
      const eq = part.indexOf('=');
      const z = eq === -1 ? part : part.slice(eq + 1).trim();
      if (!isValidTimeZone(z)) {
        problems.push(`HL7_TIMEZONE: "${z}" is not an IANA time zone`);
        continue;
      }
      if (eq === -1) defaultZone = z;
      else bySender[part.slice(0, eq).trim()] = z;
    }
    hl7Timezones = { defaultZone, bySender };
  }

  const offsetsRaw = str('REMINDER_OFFSETS') ?? 'P3D,P1D,PT2H';
  const offsetList = (key: string, text: string): ReminderOffset[] => {
    const out: ReminderOffset[] = [];
    for (const o of text
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean)) {
      const ms = parseIsoDuration(o);
      if (ms === undefined || ms <= 0)
        problems.push(`${key}: "${o}" is not an ISO 8601 duration like P1D or PT2H`);
      else out.push({ text: o, ms });
    }
    return out.sort((a, b) => b.ms - a.ms);
  };
  const offsets = offsetList('REMINDER_OFFSETS', offsetsRaw);
  const reminderOffsets = offsets.map((o) => o.text);
  const reminderOffsetsMs = offsets.map((o) => o.ms);

  const quietRaw = str('QUIET_HOURS') ?? '21:00-08:00';
  let quietHours: QuietHours = { startMinute: 21 * 60, endMinute: 8 * 60 };
  const [qs, qe, ...rest] = quietRaw.split('-');
  const qStart = qs === undefined ? undefined : parseClock(qs.trim());
  const qEnd = qe === undefined ? undefined : parseClock(qe.trim());
  if (qStart === undefined || qEnd === undefined || rest.length > 0) {
    problems.push(`QUIET_HOURS: must be HH:MM-HH:MM in 24-hour time (got "${quietRaw}")`);
  } else {
    quietHours = { startMinute: qStart, endMinute: qEnd };
  }

  const smtpUrl = url('SMTP_URL', ['smtp:', 'smtps:'], false);
  const smtpFrom = str('SMTP_FROM');
  if (smtpUrl && !smtpFrom) problems.push('SMTP_FROM: is required when SMTP_URL is set');
  if (smtpFrom && !/^[^@\s]+@[^@\s]+$/.test(smtpFrom.replace(/^.*<(.+)>$/, '$1'))) {
    problems.push('SMTP_FROM: must be an e-mail address');
  }
  const smsWebhookUrl = url('SMS_WEBHOOK_URL', ['http:', 'https:'], false);
  const smsWebhookSecret = str('SMS_WEBHOOK_SECRET');
  if (smsWebhookUrl && !smsWebhookSecret)
    problems.push('SMS_WEBHOOK_SECRET: is required when SMS_WEBHOOK_URL is set');
  if (smsWebhookSecret && smsWebhookSecret.length < 16) {
    problems.push('SMS_WEBHOOK_SECRET: must be at least 16 characters');
  }

  const offsetsByService: Record<string, readonly ReminderOffset[]> = {};
  // REMINDER_SERVICE_OFFSETS: space-separated `<code or system|code>=<offsets>`.
  for (const part of (str('REMINDER_SERVICE_OFFSETS') ?? '').split(/\s+/).filter(Boolean)) {
    const eq = part.lastIndexOf('=');
    if (eq <= 0) problems.push(`REMINDER_SERVICE_OFFSETS: "${part}" must be <service type code>=<offsets>`);
    else offsetsByService[part.slice(0, eq)] = offsetList('REMINDER_SERVICE_OFFSETS', part.slice(eq + 1));
  }

  const levelRaw = str('LOG_LEVEL') ?? 'info';
  const logLevel = (LOG_LEVELS as readonly string[]).includes(levelRaw)
    ? (levelRaw as Config['logLevel'])
    : 'info';
  if (logLevel !== levelRaw)
    problems.push(`LOG_LEVEL: must be one of ${LOG_LEVELS.join(', ')} (got "${levelRaw}")`);

  const duration = (key: string, fallback: string): number => {
    const raw = str(key) ?? fallback;
    const v = parseIsoDuration(raw);
    if (v === undefined) {
      problems.push(`${key}: "${raw}" is not an ISO 8601 duration like P14D or PT48H`);
      return parseIsoDuration(fallback) ?? 0;
    }
    return v;
  };
  const stageMs: Partial<Record<JourneyStage, number>> = {};
  const stageRaw =
    str('JOURNEY_STAGE_TARGETS') ?? 'awareness=P14D,consideration=P14D,access=P21D,care=P90D,recovery=P90D';
  for (const part of stageRaw
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const [stage, d] = part.split('=').map((x) => x.trim());
    const v = d === undefined ? undefined : parseIsoDuration(d);
    if (!stage || !isJourneyStage(stage) || v === undefined) {
      problems.push(
        `JOURNEY_STAGE_TARGETS: "${part}" must be <stage>=<ISO 8601 duration> with a journey stage code`,
      );
      continue;
    }
    stageMs[stage] = v;
  }
  const journeyTargets: JourneyTargets = {
    stageMs,
    referralToFirstAppointmentMs: duration('REFERRAL_WAIT_TARGET', 'P14D'),
    messageReplyMs: duration('MESSAGE_REPLY_TARGET', 'PT48H'),
  };

  const replyAllowlist: string[] = [];
  for (const o of (str('REFERRAL_REPLY_ALLOWLIST') ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    try {
      const u = new URL(o);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('protocol');
      replyAllowlist.push(u.origin);
    } catch {
      problems.push(`REFERRAL_REPLY_ALLOWLIST: "${o}" is not an http(s) origin`);
    }
  }
  const endpoints: Record<string, string> = {};
  for (const part of (str('REFERRAL_ENDPOINTS') ?? '').split(/\s+/).filter(Boolean)) {
    const eq = part.lastIndexOf('=');
    const system = eq > 0 ? part.slice(0, eq) : '';
    const url = eq > 0 ? part.slice(eq + 1) : '';
    try {
      const u = new URL(url);
      if (!system || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new Error('bad');
      endpoints[system] = url;
      if (!replyAllowlist.includes(u.origin)) replyAllowlist.push(u.origin);
    } catch {
      problems.push(
        `REFERRAL_ENDPOINTS: "${part}" must be <referral identifier system>=<http(s) URL>, space-separated`,
      );
    }
  }
  const receivingOrganization = str('REFERRAL_RECEIVING_ORGANIZATION');
  if (receivingOrganization && !/^Organization\/[A-Za-z0-9\-.]{1,64}$/.test(receivingOrganization)) {
    problems.push('REFERRAL_RECEIVING_ORGANIZATION: must be Organization/{id}');
  }
  const queuePrefix = str('QUEUE_PREFIX') ?? 'careway';
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(queuePrefix))
    problems.push('QUEUE_PREFIX: letters, digits, _ and - only (at most 40)');
  const referrals: ReferralConfig = {
    replyAllowlist,
    endpoints,
    ...(receivingOrganization ? { receivingOrganization } : {}),
    maxEntries: positiveInt('REFERRAL_MAX_ENTRIES', 100),
    maxBytes: positiveInt('REFERRAL_MAX_BYTES', 5 * 1024 * 1024),
    callbackAttempts: positiveInt('REFERRAL_CALLBACK_ATTEMPTS', 12),
    callbackBackoffMs: positiveInt('REFERRAL_CALLBACK_BACKOFF_MS', 2000),
  };

  const keyRaw = str('HL7_ENCRYPTION_KEY');
  let encryptionKey = Buffer.alloc(32);
  if (!keyRaw)
    problems.push(
      'HL7_ENCRYPTION_KEY: is required (32 random bytes, base64) to seal raw HL7 messages kept for replay',
    );
  else {
    const k = Buffer.from(keyRaw, 'base64');
    if (k.length !== 32)
      problems.push('HL7_ENCRYPTION_KEY: must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)');
    else encryptionKey = k;
  }
  const charsetRaw = (str('HL7_DEFAULT_CHARSET') ?? 'UTF-8').toUpperCase();
  if (!['UTF-8', '8859/1', 'LATIN1'].includes(charsetRaw))
    problems.push('HL7_DEFAULT_CHARSET: must be UTF-8 or 8859/1');
  const pem = (key: string): Buffer | undefined => {
    const file = str(key);
    if (!file) return undefined;
    try {
      return readFileSync(file);
    } catch {
      problems.push(`${key}: cannot read "${file}"`);
      return undefined;
    }
  };
  const tlsCert = pem('MLLP_TLS_CERT');
  const tlsKey = pem('MLLP_TLS_KEY');
  const tlsCa = pem('MLLP_TLS_CA');
  if (!!str('MLLP_TLS_CERT') !== !!str('MLLP_TLS_KEY'))
    problems.push('MLLP_TLS_CERT and MLLP_TLS_KEY: set both to enable MLLP over TLS');
  if (str('MLLP_TLS_CA') && !str('MLLP_TLS_CERT'))
    problems.push('MLLP_TLS_CA: needs MLLP_TLS_CERT and MLLP_TLS_KEY');
  const intakeCheckRaw = (str('HL7_INTAKE_CHECK') ?? 'map').toLowerCase();
  if (intakeCheckRaw !== 'map' && intakeCheckRaw !== 'none')
    problems.push(
      'HL7_INTAKE_CHECK: must be map (refuse unmappable messages with AE) or none (commit ACK only)',
    );
  const hl7: Hl7Config = {
    encryptionKey,
    maxFrameBytes: positiveInt('HL7_MAX_FRAME_BYTES', 1024 * 1024),
    idleTimeoutMs: positiveInt('HL7_IDLE_TIMEOUT_MS', 300_000),
    defaultCharset: charsetRaw === 'UTF-8' ? 'utf-8' : 'latin1',
    partitions: Math.min(64, positiveInt('HL7_PARTITIONS', 4)),
    ...(tlsCert && tlsKey ? { tls: { cert: tlsCert, key: tlsKey, ...(tlsCa ? { ca: tlsCa } : {}) } } : {}),
    ...(str('MAPPINGS_DIR') ? { mappingsDir: str('MAPPINGS_DIR') } : {}),
    intakeCheck: intakeCheckRaw === 'none' ? 'none' : 'map',
  };

  const publicBaseUrl = url('PUBLIC_BASE_URL', ['http:', 'https:'], false);
  const webhookSecret = str('FHIR_WEBHOOK_SECRET');
  if (!!publicBaseUrl !== !!webhookSecret)
    problems.push("PUBLIC_BASE_URL and FHIR_WEBHOOK_SECRET: set both to receive the FHIR server's REST-hook");
  if (webhookSecret && webhookSecret.length < 16)
    problems.push('FHIR_WEBHOOK_SECRET: must be at least 16 characters');
  const webhook = publicBaseUrl && webhookSecret ? { publicBaseUrl, secret: webhookSecret } : undefined;
  const reminders: RemindersConfig = {
    offsets,
    offsetsByService,
    attempts: positiveInt('REMINDER_ATTEMPTS', 5),
    concurrency: positiveInt('REMINDER_CONCURRENCY', 32),
    smsPerSecond: positiveInt('SMS_RATE_PER_SECOND', 10),
    sweepMs: str('REMINDER_SWEEP_INTERVAL') === 'off' ? 0 : duration('REMINDER_SWEEP_INTERVAL', 'PT5M'),
    ...(str('TEMPLATES_DIR') ? { templatesDir: str('TEMPLATES_DIR')! } : {}),
    ...(str('PORTAL_URL') ? { portalUrl: str('PORTAL_URL')! } : {}),
    surveyDelayMs: duration('SURVEY_DELAY', 'PT2H'),
    ...(webhook ? { webhook } : {}),
  };

  const parsedWeights = parseWeights(str('SCHEDULING_WEIGHTS'));
  for (const p of parsedWeights.problems) problems.push(`SCHEDULING_WEIGHTS: ${p}`);
  const scheduling: SchedulingConfig = {
    weights: parsedWeights.weights,
    holdMs: duration('SLOT_HOLD_TTL', 'PT10M'),
    offerMs: duration('WAITLIST_OFFER_TTL', 'PT2H'),
    noShowGraceMs: duration('NOSHOW_GRACE', 'PT30M'),
    // `off` leaves the sweep to another instance (or to tests, which call it directly).
    noShowSweepMs: str('NOSHOW_SWEEP_INTERVAL') === 'off' ? 0 : duration('NOSHOW_SWEEP_INTERVAL', 'PT5M'),
  };

  const workersRaw = str('RUN_WORKERS') ?? 'true';
  if (!['true', 'false'].includes(workersRaw)) problems.push('RUN_WORKERS: must be true or false');
  const uploadRaw = str('CAREWAY_UPLOAD_PROFILES') ?? 'true';
  if (!['true', 'false'].includes(uploadRaw)) problems.push('CAREWAY_UPLOAD_PROFILES: must be true or false');

  const config: Config = {
    port: port('PORT', 8080),
    host: str('HOST') ?? '0.0.0.0',
    mllpPort: port('MLLP_PORT', 2575),
    fhirBaseUrl: fhirBaseUrl ?? new URL('http://invalid.invalid'),
    redisUrl: redisUrl ?? new URL('redis://invalid.invalid'),
    auth: {
      ...(jwksUrl ? { jwksUrl } : {}),
      ...(publicKey ? { publicKey } : {}),
      issuer: issuer ?? '',
      audience: audience ?? '',
    },
    hl7Timezones,
    reminderOffsets,
    reminderOffsetsMs,
    quietHours,
    defaultTimezone,
    ...(smtpUrl ? { smtpUrl } : {}),
    ...(smtpFrom ? { smtpFrom } : {}),
    ...(smsWebhookUrl ? { smsWebhookUrl } : {}),
    ...(smsWebhookSecret ? { smsWebhookSecret } : {}),
    logLevel,
    fhirTimeoutMs: positiveInt('FHIR_TIMEOUT_MS', 15000),
    shutdownTimeoutMs: positiveInt('SHUTDOWN_TIMEOUT_MS', 10000),
    uploadProfiles: uploadRaw !== 'false',
    journeyTargets,
    queuePrefix,
    runWorkers: workersRaw !== 'false',
    referrals,
    hl7,
    scheduling,
    reminders,
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
