/**
 * No AuditEvent is lost to a crash: a Careway process answers reads (each answer leaves only once its event is in
 * Redis) and is killed with SIGKILL right after the last answer, while its audit worker is still writing
 * batches. A second process takes the queue over. Every answered read has exactly one AuditEvent on the FHIR
 * server: none lost, none twice (events are PUT by their own id).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent, Patient } from 'fhir/r4.js';
import { projectRoot } from '../../src/shared/paths.js';
import { freePort } from '../../src/devstack/processes.js';
import { FhirClient } from '../../src/fhir/client.js';
import { makeKeys, signToken, testEnv, uniq, until, type Keys } from '../support/harness.js';

const COUNT = 80;
const prefix = `auditcrash${uniq()}`;
const sealingKey = randomBytes(32).toString('base64');
let keys: Keys;
let fhir: FhirClient;
const children: ChildProcess[] = [];

beforeAll(() => {
  keys = makeKeys();
  fhir = new FhirClient({ baseUrl: testEnv(keys)['FHIR_BASE_URL']! });
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await fhir.close();
});

function careway(port: number): ChildProcess {
  const env = {
    ...testEnv(keys),
    HL7_ENCRYPTION_KEY: sealingKey,
    PORT: String(port),
    HOST: '127.0.0.1',
    MLLP_PORT: '0',
    QUEUE_PREFIX: prefix,
    CAREWAY_UPLOAD_PROFILES: 'false',
    LOG_LEVEL: 'warn',
  };
  const child = spawn(process.execPath, [join(projectRoot(), 'dist', 'src', 'main.js')], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: 'ignore',
  });
  children.push(child);
  return child;
}

async function up(port: number): Promise<void> {
  await until(
    `Careway on ${port}`,
    async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/health`)).ok ? true : undefined;
      } catch {
        return undefined;
      }
    },
    60_000,
  );
}

const written = async (subject: string): Promise<AuditEvent[]> =>
  fhir.searchAll<AuditEvent>('AuditEvent', { altid: subject, _count: 500 }, { noCache: true, maxPages: 5 });

describe('audit trail and crashes', () => {
  it(
    'when the process is killed with SIGKILL right after answering then a successor writes every event, once',
    { timeout: 180_000 },
    async () => {
      const pid = (
        await fhir.create<Patient>({
          resourceType: 'Patient',
          identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
        })
      ).resource.id!;
      const subject = `auditor-${uniq()}`;
      const token = await signToken(keys, { scope: 'user/Patient.rs', sub: subject });
      const firstPort = await freePort();
      const first = careway(firstPort);
      await up(firstPort);
      let answered = 0;
      for (let i = 0; i < COUNT; i++) {
        const res = await fetch(`http://127.0.0.1:${firstPort}/fhir/Patient/${pid}`, {
          headers: { authorization: `Bearer ${token}` },
        });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
        answered++;
      }
      const exited = new Promise((r) => first.once('exit', r));
      first.kill('SIGKILL');
      await exited;
      const atKill = (await written(subject)).length;
      console.log(`audit crash: ${answered} answered, ${atKill} events written before SIGKILL`);

      const secondPort = await freePort();
      careway(secondPort);
      await up(secondPort);
      await until(
        'every event written',
        async () => ((await written(subject)).length >= answered ? true : undefined),
        90_000,
      );
      // A moment more: a duplicate, if there were one, would show up now.
      await new Promise((r) => setTimeout(r, 2000));
      const events = await written(subject);
      expect(events).toHaveLength(answered);
      expect(new Set(events.map((e) => e.id)).size).toBe(answered);
      expect(events.every((e) => e.subtype?.[0]?.code === 'read')).toBe(true);
    },
  );
});
