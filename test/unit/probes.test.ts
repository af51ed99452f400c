/**
 * Fixes for what probing Careway from outside found (issue #17, part 5), the parts that need nothing outside the
 * process: no server text in the log, the HL7 repetition cap and identifier dedupe, the MLLP connection cap,
 * the admin scope and the new limits' configuration.
 */
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/shared/logger.js';
import { describeOutcome, FhirError } from '../../src/fhir/errors.js';
import {
  loadMappings,
  Mapper,
  MappingError,
  MAX_FIELD_REPETITIONS,
  type Mappings,
} from '../../src/hl7/mapping/engine.js';
import { mergeIntoStored } from '../../src/hl7/mapping/ownership.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { MllpServer } from '../../src/hl7/mllp/server.js';
import { projectRoot } from '../../src/shared/paths.js';
import { grantsAdmin, parseScopes } from '../../src/http/auth/scopes.js';
import { loadConfig } from '../../src/config/config.js';

const CANARY = 'Zyxwqvcanary';

describe('FHIR server text in the log', () => {
  function capture() {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    return { lines, logger: createLogger({ level: 'info', destination }) };
  }
  const echoed = () =>
    new FhirError({
      kind: 'http',
      status: 500,
      method: 'POST',
      path: 'Patient',
      outcome: {
        resourceType: 'OperationOutcome',
        issue: [
          {
            severity: 'error',
            code: 'processing',
            diagnostics: `HAPI-0389: Failed to call access method: Patient.name.family "${CANARY}\uD800"`,
            expression: ['Patient.name[0].family'],
          },
        ],
      },
    });

  it('when a FHIR server 5xx whose diagnostics echo a value is logged then only its codes and location appear', () => {
    const { lines, logger } = capture();
    const e = echoed();
    logger.error({ err: e, fhirStatus: e.status }, 'FHIR server failure');
    // An error that wraps it, and an outcome logged on its own, go the same way.
    logger.error({ err: new Error('wrapped', { cause: e }) }, 'request failed');
    logger.warn({ outcome: e.outcome }, 'refused');
    const out = lines.join('');
    expect(out).not.toContain(CANARY);
    expect(out).not.toContain('Failed to call access method');
    const first = JSON.parse(lines[0]!) as { err: { outcome: unknown; type: string } };
    expect(first.err.type).toBe('FhirError');
    expect(first.err.outcome).toEqual({
      issue: [
        {
          severity: 'error',
          code: 'processing',
          serverCodes: ['HAPI-0389'],
          expression: ['Patient.name[0].family'],
        },
      ],
    });
  });

  it('when a FhirError is turned into JSON or a failure reason then the diagnostics text is left out', () => {
    const e = echoed();
    expect(JSON.stringify(e)).not.toContain(CANARY);
    expect(describeOutcome(e.outcome)).toBe('processing HAPI-0389 at Patient.name[0].family');
  });
});

describe('HL7 field repetitions', () => {
  let mappings: Mappings;
  beforeAll(async () => {
    const root = join(projectRoot(), 'mappings');
    mappings = await loadMappings([root], join(root, 'schema.json'));
  });
  const adt = (pid3: string) =>
    Hl7Message.parse(
      [
        'MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||ADT^A04^ADT_A01|1|P|2.5',
        'EVN|A04|20240115083015',
        `PID|1||${pid3}||Doe^Jane||19700101|F`,
        'PV1|1|O',
      ].join('\r'),
    );
  const map = (msg: Hl7Message) =>
    new Mapper(mappings).message(msg, { zone: 'UTC', delimiters: msg.delimiters });

  it('when PID-3 repeats past the cap then the message is refused with an error naming PID-3', () => {
    const msg = adt(Array.from({ length: 10_000 }, () => 'MRN1^^^HOSP^MR').join('~'));
    let error: unknown;
    try {
      map(msg);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(MappingError);
    const m = error as MappingError;
    expect(m.code).toBe('102');
    expect(m.location).toMatchObject({ segment: 'PID', field: 3 });
    expect(m.message).toMatch(new RegExp(`^PID-3: 10000 repetitions, at most ${MAX_FIELD_REPETITIONS}`));
  });

  it('when PID-3 repeats one identifier then the Patient carries it once', () => {
    const msg = adt(['MRN1^^^HOSP^MR', 'MRN1^^^HOSP^MR', 'MRN1^^^HOSP^MR', 'X9^^^OTHER^PI'].join('~'));
    const patient = map(msg).resources.find((r) => r.resource['resourceType'] === 'Patient')!;
    const ids = patient.resource['identifier'] as { value: string }[];
    expect(ids.map((i) => i.value)).toEqual(['MRN1', 'X9']);
  });

  it('when a message is merged into a Patient stored with duplicate identifiers then each is kept once', () => {
    const dup = { system: 'urn:a', value: '1' };
    const merged = mergeIntoStored(
      { resourceType: 'Patient', identifier: [dup, dup, { system: 'urn:portal', value: 'p' }] },
      { resourceType: 'Patient', identifier: [dup, dup] },
      { identifier: 'set' },
    );
    expect(merged['identifier']).toEqual([dup, { system: 'urn:portal', value: 'p' }]);
  });
});

describe('MLLP connection cap', () => {
  it('when more connections than MLLP_MAX_CONNECTIONS are opened then the extra one is closed and counted', async () => {
    let refused = 0;
    const server = new MllpServer({
      host: '127.0.0.1',
      port: 0,
      maxFrameBytes: 1 << 20,
      idleTimeoutMs: 60_000,
      maxConnections: 2,
      onRefused: () => refused++,
      handle: async () => [],
    });
    const port = await server.listen();
    const open = (): Promise<{ socket: Socket; closed: Promise<void> }> =>
      new Promise((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        const closed = new Promise<void>((r) => socket.once('close', () => r()));
        socket.once('connect', () => resolve({ socket, closed }));
        socket.once('error', reject);
      });
    const sockets: Socket[] = [];
    try {
      const a = await open();
      const b = await open();
      sockets.push(a.socket, b.socket);
      await new Promise((r) => setTimeout(r, 100));
      expect(server.connections).toBe(2);
      const c = await open();
      sockets.push(c.socket);
      await c.closed;
      expect(refused).toBe(1);
      expect(server.connections).toBe(2);
      // A place frees up when a connection closes.
      a.socket.destroy();
      await a.closed;
      await new Promise((r) => setTimeout(r, 100));
      const d = await open();
      sockets.push(d.socket);
      await new Promise((r) => setTimeout(r, 100));
      expect(d.socket.destroyed).toBe(false);
      expect(server.connections).toBe(2);
    } finally {
      for (const s of sockets) s.destroy();
      await server.close();
    }
  });
});

describe('admin scope and the new limits', () => {
  it('when a token holds system/ or user/careway.admin then it is an admin; a patient scope or a resource scope is not', () => {
    expect(grantsAdmin('user/Communication.r system/careway.admin')).toBe(true);
    expect(grantsAdmin(['user/careway.admin'])).toBe(true);
    expect(grantsAdmin('patient/careway.admin user/*.cruds')).toBe(false);
    expect(grantsAdmin(undefined)).toBe(false);
    // Not a FHIR resource scope: it grants nothing on resources.
    expect(parseScopes('system/careway.admin')).toEqual([]);
  });

  it('when HTTP_BODY_LIMIT and MLLP_MAX_CONNECTIONS are unset then 1 MiB and 200 apply; bad values are listed', () => {
    const env = {
      FHIR_BASE_URL: 'http://127.0.0.1:1/fhir',
      REDIS_URL: 'redis://127.0.0.1:1',
      AUTH_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----',
      AUTH_ISSUER: 'https://issuer.test',
      AUTH_AUDIENCE: 'careway',
      HL7_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64'),
    };
    const c = loadConfig(env);
    expect(c.httpBodyLimit).toBe(1024 * 1024);
    expect(c.hl7.maxConnections).toBe(200);
    expect(
      loadConfig({ ...env, HTTP_BODY_LIMIT: '65536', MLLP_MAX_CONNECTIONS: '5' }).hl7.maxConnections,
    ).toBe(5);
    expect(() => loadConfig({ ...env, HTTP_BODY_LIMIT: 'lots', MLLP_MAX_CONNECTIONS: '0' })).toThrow(
      /HTTP_BODY_LIMIT[\s\S]*MLLP_MAX_CONNECTIONS|MLLP_MAX_CONNECTIONS[\s\S]*HTTP_BODY_LIMIT/,
    );
  });
});
