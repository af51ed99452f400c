/**
 * Three Careway processes on one Redis and one HAPI keep every patient's HL7 in order (issue #18).
 *
 * A feed of A01, A08, A08, A03 per patient, two patients interleaved at a time, is sent one message after
 * another, each to the next of the three MLLP listeners. Every process runs a worker on every partition, so
 * without the partitions' global concurrency of 1 up to three messages of one partition (often one patient's)
 * would be written at once, in whatever order their locks fell. One A08 fails at the FHIR server (503, more
 * often than the FHIR client retries) so its retry is visible: the patient's next message must not overtake
 * it. Then, for every patient, the Patient's versions on HAPI (_history) carry the names in feed order, and
 * the Encounter ends finished, after every other status.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Bundle, Encounter, Patient } from 'fhir/r4.js';
import { projectRoot } from '../../src/shared/paths.js';
import { freePort } from '../../src/devstack/processes.js';
import { FhirClient } from '../../src/fhir/client.js';
import { MllpClient } from '../../src/hl7/mllp/client.js';
import { createConnections, type RedisConnections } from '../../src/queues/connections.js';
import { PartitionedQueue } from '../../src/queues/partitioned.js';
import { makeKeys, testEnv, uniq, until } from '../support/harness.js';

const SYS = 'urn:oid:2.16.840.1.113883.19.5';
const PATIENTS = 8;
const PARTITIONS = 2;
const prefix = `rep${uniq()}`;
const sealingKey = randomBytes(32).toString('base64');
/** The given name of the A08 whose write fails at first (nothing else the servers see carries it). */
const failing = `Retry${uniq()}`;
const FAILURES = 3; // one more than the FHIR client's own retries, so the worker's in-place retry runs

let proxy: Server;
let proxyUrl: string;
let refused = 0;
const children: { child: ChildProcess; out: string[]; exited: Promise<number | null> }[] = [];
const mllpPorts: number[] = [];
let conns: RedisConnections;
let fhir: FhirClient;

/**
 * The FHIR server as the three processes see it: HAPI, except that the transaction carrying `failing` is
 * answered 503 the first FAILURES times (a server briefly unable to write).
 */
function startProxy(target: URL): Promise<void> {
  proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'POST' && refused < FAILURES && body.includes(failing)) {
        refused++;
        res.writeHead(503, { 'content-type': 'application/fhir+json' });
        res.end(
          JSON.stringify({
            resourceType: 'OperationOutcome',
            issue: [{ severity: 'error', code: 'transient', diagnostics: 'briefly unavailable' }],
          }),
        );
        return;
      }
      const headers = { ...req.headers, host: target.host };
      const up = httpRequest(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: target.pathname.replace(/\/fhir$/, '') + (req.url ?? '/'),
          headers,
        },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      up.end(body);
    });
  });
  return new Promise((resolve) =>
    proxy.listen(0, '127.0.0.1', () => {
      proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/fhir`;
      resolve();
    }),
  );
}

function careway(port: number, mllpPort: number, first: boolean): void {
  const env = {
    ...testEnv(makeKeys()),
    FHIR_BASE_URL: proxyUrl,
    HL7_ENCRYPTION_KEY: sealingKey,
    QUEUE_PREFIX: prefix,
    HL7_PARTITIONS: String(PARTITIONS),
    PORT: String(port),
    MLLP_PORT: String(mllpPort),
    // One process uploads the profiles and search parameters the maps rely on; the others need not.
    CAREWAY_UPLOAD_PROFILES: first ? 'true' : 'false',
    LOG_LEVEL: 'info',
  };
  const child = spawn(process.execPath, [join(projectRoot(), 'dist', 'src', 'main.js')], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const out: string[] = [];
  child.stdout?.on('data', (d: Buffer) => out.push(...d.toString().split('\n').filter(Boolean)));
  children.push({ child, out, exited: new Promise((r) => child.once('exit', (code) => r(code))) });
}

/**
 * Up once it says so in its log: the MLLP listener is listening (and, for the first, the profiles are on the
 * server). Not `/ready`: on a loaded shared HAPI its 2 s deadline on /metadata can keep failing.
 */
async function whenUp(index: number): Promise<void> {
  const wanted = index === 0 ? ['MLLP listener ready', 'profiles uploaded'] : ['MLLP listener ready'];
  await until(
    `careway ${index} up`,
    () => {
      const out = children[index]!.out;
      return wanted.every((w) => out.some((l) => l.includes(`"msg":"${w}"`))) ? true : undefined;
    },
    120_000,
    250,
  );
}

beforeAll(async () => {
  const hapi = new URL(inject('fhirBaseUrl'));
  await startProxy(hapi);
  fhir = new FhirClient({ baseUrl: new URL(inject('fhirBaseUrl')) });
  const httpPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    httpPorts.push(await freePort());
    mllpPorts.push(await freePort());
  }
  careway(httpPorts[0]!, mllpPorts[0]!, true);
  await whenUp(0);
  careway(httpPorts[1]!, mllpPorts[1]!, false);
  careway(httpPorts[2]!, mllpPorts[2]!, false);
  await Promise.all([whenUp(1), whenUp(2)]);
  conns = createConnections(new URL(inject('redisUrl')), prefix, false);
}, 180_000);

afterAll(async () => {
  for (const c of children) c.child.kill('SIGTERM');
  await Promise.all(children.map((c) => c.exited));
  await conns?.closeAll();
  await fhir?.close();
  await new Promise<void>((r) => (proxy ? proxy.close(() => r()) : r()));
});

function adt(trigger: string, controlId: string, mrn: string, visit: string, given: string): string {
  const pv1 = Array.from({ length: 46 }, () => '');
  pv1[0] = 'PV1';
  pv1[1] = '1';
  pv1[2] = 'I';
  pv1[19] = `${visit}^^^MAINHOSP&${SYS}.2&ISO^VN`;
  pv1[44] = '20240115080000';
  if (trigger === 'A03') pv1[45] = '20240120100000';
  return [
    `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||ADT^${trigger}^ADT_A01|${controlId}|P|2.5`,
    `EVN|${trigger}|20240115083015`,
    `PID|1||${mrn}^^^MAINHOSP&${SYS}&ISO^MR||Replica^${given}||19800202|F`,
    pv1.join('|'),
    '',
  ].join('\r');
}

interface Sent {
  readonly mrn: string;
  readonly visit: string;
  /** The given names of this patient's messages, in feed order. */
  readonly names: string[];
}

describe('three Careway replicas', () => {
  it(
    'when a feed of A01, A08, A08, A03 per patient is spread over three replicas, with one write failing at first, then every patient ends as the feed says, with versions in feed order',
    { timeout: 300_000 },
    async () => {
      const patients: Sent[] = Array.from({ length: PATIENTS }, (_, i) => ({
        mrn: `R${uniq()}${i}`,
        visit: `V${uniq()}${i}`,
        names: ['Admitted', i === 0 ? failing : 'Updated', 'Corrected', 'Discharged'],
      }));
      const triggers = ['A01', 'A08', 'A08', 'A03'];
      // Two patients at a time, their messages alternating: each patient's next message close behind its last.
      const feed: { p: Sent; step: number }[] = [];
      for (let i = 0; i < PATIENTS; i += 2)
        for (let step = 0; step < triggers.length; step++)
          for (const p of patients.slice(i, i + 2)) feed.push({ p, step });

      const clients = mllpPorts.map(
        (port) => new MllpClient({ host: '127.0.0.1', port, ackTimeoutMs: 30_000 }),
      );
      try {
        for (const [n, { p, step }] of feed.entries()) {
          const ctl = `C${uniq()}`;
          const ack = await clients[n % 3]!.send(
            adt(triggers[step]!, ctl, p.mrn, p.visit, p.names[step]!),
            ctl,
          );
          expect(ack.segment('MSA')?.get(1)).toBe('AA');
        }
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }

      const queue = new PartitionedQueue(conns, 'hl7-inbound', PARTITIONS);
      await until(
        'the feed written',
        async () => {
          const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
          expect(c['failed']).toBe(0);
          return c['completed'] === feed.length ? true : undefined;
        },
        240_000,
        500,
      );
      await Promise.all(queue.queues.map((q) => q.close()));

      // The failing write was refused as often as asked, and a replica retried it in place.
      expect(refused).toBe(FAILURES);
      const retried = children.flatMap((c) => c.out).filter((l) => l.includes('retrying in place'));
      expect(retried.length).toBeGreaterThanOrEqual(1);

      for (const p of patients) {
        const [patient, ...more] = await fhir.searchAll<Patient>(
          'Patient',
          { identifier: `${SYS}|${p.mrn}` },
          { noCache: true },
        );
        expect(more).toHaveLength(0);
        const history = await fhir.request<Bundle>(
          'GET',
          `Patient/${patient!.id}/_history?_count=100`,
          undefined,
          {
            noCache: true,
          },
        );
        const versions = (history.body?.entry ?? [])
          .map((e) => e.resource as Patient)
          .sort((x, y) => Number(x.meta?.versionId) - Number(y.meta?.versionId));
        const names = versions
          .map((v) => v.name?.[0]?.given?.[0] ?? '')
          .filter((name, i, all) => i === 0 || name !== all[i - 1]);
        expect(names, p.mrn).toEqual(p.names);
        expect(patient!.name?.[0]?.given?.[0]).toBe('Discharged');

        const [encounter, ...others] = await fhir.searchAll<Encounter>(
          'Encounter',
          { identifier: `${SYS}.2|${p.visit}` },
          { noCache: true },
        );
        expect(others).toHaveLength(0);
        expect(encounter!.status).toBe('finished');
        const eh = await fhir.request<Bundle>(
          'GET',
          `Encounter/${encounter!.id}/_history?_count=100`,
          undefined,
          {
            noCache: true,
          },
        );
        const statuses = (eh.body?.entry ?? [])
          .map((e) => e.resource as Encounter)
          .sort((x, y) => Number(x.meta?.versionId) - Number(y.meta?.versionId))
          .map((e) => e.status);
        // Finished only at the end: no admission or update was applied after the discharge.
        expect(statuses.indexOf('finished'), statuses.join(',')).toBe(statuses.length - 1);
      }
    },
  );
});
