import { describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseIsoDuration } from '../../src/config/config.js';

const good = {
  FHIR_BASE_URL: 'http://127.0.0.1:8090/fhir',
  REDIS_URL: 'redis://127.0.0.1:6379',
  AUTH_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----',
  AUTH_ISSUER: 'https://auth.example',
  AUTH_AUDIENCE: 'careway',
  HL7_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
};

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  return [];
}

describe('loadConfig', () => {
  it('when only the required keys are set then the documented defaults apply', () => {
    const c = loadConfig(good);
    expect(c.port).toBe(8080);
    expect(c.mllpPort).toBe(2575);
    expect(c.reminderOffsets).toEqual(['P3D', 'P1D', 'PT2H']);
    expect(c.reminderOffsetsMs).toEqual([3 * 86400_000, 86400_000, 2 * 3600_000]);
    expect(c.quietHours).toEqual({ startMinute: 21 * 60, endMinute: 8 * 60 });
    expect(c.logLevel).toBe('info');
    expect(c.auth.publicKey).toContain('\nMFkw\n');
  });

  it('when many keys are bad then every bad key is listed at once', () => {
    const p = problems({
      PORT: 'eighty',
      MLLP_PORT: '70000',
      FHIR_BASE_URL: 'ftp://x',
      REDIS_URL: 'not a url',
      REMINDER_OFFSETS: 'P1D,tomorrow',
      QUIET_HOURS: '9pm-8am',
      DEFAULT_TIMEZONE: 'Mars/Olympus',
      HL7_TIMEZONE: 'America/Chicago,LAB=Nowhere/Town',
      LOG_LEVEL: 'loud',
      SMTP_URL: 'smtp://mail.local',
      SMS_WEBHOOK_URL: 'https://sms.local/hook',
    });
    const keys = p.map((x) => x.split(':')[0]);
    expect(keys).toEqual(
      expect.arrayContaining([
        'PORT',
        'MLLP_PORT',
        'FHIR_BASE_URL',
        'REDIS_URL',
        'AUTH_JWKS_URL or AUTH_PUBLIC_KEY',
        'AUTH_ISSUER',
        'AUTH_AUDIENCE',
        'REMINDER_OFFSETS',
        'QUIET_HOURS',
        'DEFAULT_TIMEZONE',
        'HL7_TIMEZONE',
        'LOG_LEVEL',
        'SMTP_FROM',
        'SMS_WEBHOOK_SECRET',
        'HL7_ENCRYPTION_KEY',
      ]),
    );
    expect(p.length).toBe(15);
  });

  it('when scheduling and MLLP TLS keys are bad then each is named, and the defaults are documented ones', () => {
    const c = loadConfig(good);
    expect(c.scheduling).toMatchObject({ holdMs: 600_000, offerMs: 7_200_000, noShowGraceMs: 1_800_000 });
    expect(c.scheduling.weights.preference).toBe(3);
    expect(c.hl7.partitions).toBe(4);
    expect(c.hl7.tls).toBeUndefined();
    expect(loadConfig({ ...good, NOSHOW_SWEEP_INTERVAL: 'off' }).scheduling.noShowSweepMs).toBe(0);
    const p = problems({
      ...good,
      SCHEDULING_WEIGHTS: 'speed=2',
      SLOT_HOLD_TTL: '10 minutes',
      MLLP_TLS_CERT: '/nonexistent/cert.pem',
    });
    expect(p.some((x) => x.startsWith('SCHEDULING_WEIGHTS: unknown factor "speed"'))).toBe(true);
    expect(p.some((x) => x.startsWith('SLOT_HOLD_TTL:'))).toBe(true);
    expect(p).toContain('MLLP_TLS_CERT: cannot read "/nonexistent/cert.pem"');
    expect(p).toContain('MLLP_TLS_CERT and MLLP_TLS_KEY: set both to enable MLLP over TLS');
  });

  it('when reminder keys are set then offsets per service, webhook and workers are parsed, and bad ones named', () => {
    const c = loadConfig({
      ...good,
      REMINDER_OFFSETS: 'PT2H,P1D',
      REMINDER_SERVICE_OFFSETS: 'SURG=P7D,P1D http://snomed.info/sct|1234=PT30M',
      PUBLIC_BASE_URL: 'http://careway.internal:8080',
      FHIR_WEBHOOK_SECRET: 'hook-secret-0123456789',
      RUN_WORKERS: 'false',
    });
    expect(c.reminders.offsets.map((o) => o.text)).toEqual(['P1D', 'PT2H']);
    expect(c.reminders.offsetsByService['SURG']?.map((o) => o.text)).toEqual(['P7D', 'P1D']);
    expect(c.reminders.offsetsByService['http://snomed.info/sct|1234']?.map((o) => o.ms)).toEqual([
      1_800_000,
    ]);
    expect(c.reminders.webhook?.publicBaseUrl.host).toBe('careway.internal:8080');
    expect(c.runWorkers).toBe(false);
    const p = problems({
      ...good,
      REMINDER_SERVICE_OFFSETS: 'SURG',
      FHIR_WEBHOOK_SECRET: 'short',
      RUN_WORKERS: 'no',
    });
    expect(p).toContain('REMINDER_SERVICE_OFFSETS: "SURG" must be <service type code>=<offsets>');
    expect(p).toContain('FHIR_WEBHOOK_SECRET: must be at least 16 characters');
    expect(p).toContain(
      "PUBLIC_BASE_URL and FHIR_WEBHOOK_SECRET: set both to receive the FHIR server's REST-hook",
    );
    expect(p).toContain('RUN_WORKERS: must be true or false');
  });

  it('when CAREWAY_ROLES, RUN_WORKERS, PAGING_SECRET and SHUTDOWN_GRACE_MS are set then they are parsed, and bad ones named', () => {
    const all = loadConfig(good);
    expect(all.roles).toEqual({ api: true, mllp: true, workers: true });
    expect(all.pagingSecret).toBeUndefined();
    expect(all.shutdownGraceMs).toBeLessThan(all.shutdownTimeoutMs);
    const api = loadConfig({ ...good, CAREWAY_ROLES: ' api , MLLP ', PAGING_SECRET: 'p'.repeat(32) });
    expect(api.roles).toEqual({ api: true, mllp: true, workers: false });
    expect(api.runWorkers).toBe(false);
    expect(api.pagingSecret?.toString()).toBe('p'.repeat(32));
    // RUN_WORKERS=false keeps working: the roles without workers.
    expect(loadConfig({ ...good, RUN_WORKERS: 'false' }).roles).toEqual({
      api: true,
      mllp: true,
      workers: false,
    });
    const workers = loadConfig({
      ...good,
      CAREWAY_ROLES: 'workers',
      SHUTDOWN_GRACE_MS: '20000',
      SHUTDOWN_TIMEOUT_MS: '25000',
    });
    expect(workers.roles).toEqual({ api: false, mllp: false, workers: true });
    expect(workers.shutdownGraceMs).toBe(20000);
    expect(
      problems({
        ...good,
        CAREWAY_ROLES: 'api,cron',
        PAGING_SECRET: 'short',
        SHUTDOWN_GRACE_MS: '15000',
      }),
    ).toEqual([
      'CAREWAY_ROLES: "cron" is not a role (api, mllp, workers)',
      'SHUTDOWN_GRACE_MS: must be less than SHUTDOWN_TIMEOUT_MS (10000), leaving time to close the rest',
      'PAGING_SECRET: must be at least 32 characters (e.g. openssl rand -base64 32)',
    ]);
    expect(problems({ ...good, CAREWAY_ROLES: 'workers', RUN_WORKERS: 'false' })).toEqual([
      'CAREWAY_ROLES and RUN_WORKERS: this process would have no role left',
    ]);
  });

  it('when both key sources are set then that is refused', () => {
    expect(problems({ ...good, AUTH_JWKS_URL: 'https://auth.example/jwks' })).toEqual([
      'AUTH_JWKS_URL and AUTH_PUBLIC_KEY: set one, not both',
    ]);
  });

  it('when HL7_TIMEZONE names sender zones then they are parsed per sender', () => {
    const c = loadConfig({ ...good, HL7_TIMEZONE: 'America/Chicago, LABSYS=Europe/Berlin, EPIC^MAIN=UTC' });
    expect(c.hl7Timezones).toEqual({
      defaultZone: 'America/Chicago',
      bySender: { LABSYS: 'Europe/Berlin', 'EPIC^MAIN': 'UTC' },
    });
  });

  it('when the error is printed then it names each problem on its own line', () => {
    try {
      loadConfig({});
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).toMatch(
        /^Invalid configuration \(6 problems\):\n {2}- FHIR_BASE_URL: is required/,
      );
    }
  });
});

describe('parseIsoDuration', () => {
  it.each([
    ['P3D', 3 * 86400_000],
    ['PT2H', 7200_000],
    ['PT30M', 1800_000],
    ['P1DT12H', 36 * 3600_000],
    ['P1W', 7 * 86400_000],
    ['PT0.5S', 500],
  ])('when given %s then it is %d ms', (text, ms) => {
    expect(parseIsoDuration(text)).toBe(ms);
  });

  it.each(['', 'P', 'PT', '3D', 'P1M', 'P1Y', 'PT0S', 'P-1D'])(
    'when given "%s" then it is rejected',
    (text) => {
      expect(parseIsoDuration(text)).toBeUndefined();
    },
  );
});

describe('browser settings', () => {
  it('when CORS_ORIGINS lists origins then each is kept; a path, a wildcard or another scheme is named', () => {
    expect(loadConfig(good).web.corsOrigins).toEqual([]);
    const c = loadConfig({ ...good, CORS_ORIGINS: 'https://a.example.org, http://127.0.0.1:3000/' });
    expect(c.web.corsOrigins).toEqual(['https://a.example.org', 'http://127.0.0.1:3000']);
    const p = problems({
      ...good,
      CORS_ORIGINS: '* https://a.example.org/app ftp://b.example.org',
      AUTH_TOKEN_URL: 'not a url',
    });
    expect(p.filter((x) => x.startsWith('CORS_ORIGINS'))).toHaveLength(3);
    expect(p.some((x) => x.startsWith('AUTH_TOKEN_URL'))).toBe(true);
  });
});

describe('the care-team app settings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'careway-config-'));
  const pair = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { privateKey, publicKey } = pair();
  const pem = join(dir, 'demo.pem');
  writeFileSync(pem, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const devJson = join(dir, 'dev-key.json');
  writeFileSync(
    devJson,
    JSON.stringify({ kid: 'dev-1', privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }) }),
  );
  const trusted = { ...good, AUTH_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString() };

  it('when DEMO_SIGN_IN is not set then there is no demo sign-in, and the app asks for the default scopes', () => {
    const c = loadConfig(trusted);
    expect(c.app.demo).toBeUndefined();
    expect(c.app.scope).toContain('user/*.rs');
  });

  it('when DEMO_SIGN_IN=true with the trusted key (PEM or dev-key.json) then the demo sign-in is on', () => {
    expect(
      loadConfig({ ...trusted, DEMO_SIGN_IN: 'true', DEMO_SIGNING_KEY_FILE: pem }).app.demo,
    ).toBeDefined();
    const fromJson = loadConfig({ ...trusted, DEMO_SIGN_IN: 'true', DEMO_SIGNING_KEY_FILE: devJson });
    expect(fromJson.app.demo?.kid).toBe('dev-1');
  });

  it('when DEMO_SIGN_IN=true without a readable key, or with a key Careway would not trust, then start is refused', () => {
    expect(problems({ ...trusted, DEMO_SIGN_IN: 'true' })).toEqual([
      expect.stringMatching(/^DEMO_SIGNING_KEY_FILE: is required/),
    ]);
    expect(
      problems({ ...trusted, DEMO_SIGN_IN: 'true', DEMO_SIGNING_KEY_FILE: join(dir, 'missing.pem') }),
    ).toEqual([expect.stringMatching(/^DEMO_SIGNING_KEY_FILE: cannot read/)]);
    const other = join(dir, 'other.pem');
    writeFileSync(other, pair().privateKey.export({ type: 'pkcs8', format: 'pem' }));
    expect(problems({ ...trusted, DEMO_SIGN_IN: 'true', DEMO_SIGNING_KEY_FILE: other })).toEqual([
      expect.stringMatching(/does not match AUTH_PUBLIC_KEY/),
    ]);
    expect(problems({ ...trusted, DEMO_SIGNING_KEY_FILE: pem })).toEqual([
      expect.stringMatching(/only used with DEMO_SIGN_IN=true/),
    ]);
  });
});
