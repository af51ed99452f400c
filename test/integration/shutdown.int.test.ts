/**
 * SIGTERM with real workers (issue #18), on the built service as a child process: readiness goes false at once
 * while HTTP still answers, the MLLP listener stops accepting, the job in hand finishes (within
 * SHUTDOWN_GRACE_MS), the workers close, then HTTP; exit 0. A job still retrying when the grace ends is put
 * back at the head of its partition, not lost and not behind the patient's next message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Patient } from 'fhir/r4.js';
import { projectRoot } from '../../src/shared/paths.js';
import { freePort } from '../../src/devstack/processes.js';
import { FhirClient } from '../../src/fhir/client.js';
import { MllpClient } from '../../src/hl7/mllp/client.js';
import { createConnections, type RedisConnections } from '../../src/queues/connections.js';
import { PartitionedQueue } from '../../src/queues/partitioned.js';
import { makeKeys, testEnv, uniq, until } from '../support/harness.js';

const SYS = 'urn:oid:2.16.840.1.113883.19.5';

/** What the proxy does with a transaction POST that carries `marker`: hold it until released, or refuse it. */
let marker = '';
let mode: 'hold' | 'fail' = 'hold';
let held: (() => void) | undefined;
let heldSeen = 0;
let proxy: Server;
let proxyUrl: string;
let conns: RedisConnections;
let fhir: FhirClient;

beforeAll(async () => {
  const target = new URL(inject('fhirBaseUrl'));
  proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const forward = (): void => {
        const up = httpRequest(
          {
            host: target.hostname,
            port: target.port,
            method: req.method,
            path: req.url ?? '/',
            headers: { ...req.headers, host: target.host },
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
      };
      if (req.method !== 'POST' || !marker || !body.includes(marker)) return forward();
      if (mode === 'fail') {
        res.writeHead(503, { 'content-type': 'application/fhir+json' });
        res.end('{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}');
        return;
      }
      heldSeen++;
      held = forward;
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/fhir`;
  fhir = new FhirClient({ baseUrl: target });
});
afterAll(async () => {
  await conns?.closeAll();
  await fhir?.close();
  await new Promise<void>((r) => proxy.close(() => r()));
});

function start(prefix: string, port: number, mllpPort: number, extra: Record<string, string>) {
  const child: ChildProcess = spawn(process.execPath, [join(projectRoot(), 'dist', 'src', 'main.js')], {
    env: {
      PATH: process.env['PATH'] ?? '',
      ...testEnv(makeKeys()),
      FHIR_BASE_URL: proxyUrl,
      HL7_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      QUEUE_PREFIX: prefix,
      HL7_PARTITIONS: '1',
      PORT: String(port),
      MLLP_PORT: String(mllpPort),
      CAREWAY_UPLOAD_PROFILES: 'false',
      LOG_LEVEL: 'info',
      ...extra,
    },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const out: { msg: string }[] = [];
  child.stdout?.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n').filter(Boolean))
      try {
        out.push(JSON.parse(line) as { msg: string });
      } catch {
        // a partial line: not one the test reads
      }
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, out, exited, logged: (msg: string) => out.findIndex((l) => l.msg === msg) };
}

function a01(mrn: string, given: string): { er7: string; ctl: string } {
  const ctl = `S${uniq()}`;
  const er7 = [
    `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||ADT^A01^ADT_A01|${ctl}|P|2.5`,
    'EVN|A01|20240115083015',
    `PID|1||${mrn}^^^MAINHOSP&${SYS}&ISO^MR||Shutdown^${given}||19800202|F`,
    `PV1|1|I|||||||||||||||||${uniq()}^^^MAINHOSP&${SYS}.2&ISO^VN`,
    '',
  ].join('\r');
  return { er7, ctl };
}

async function send(port: number, m: { er7: string; ctl: string }): Promise<string> {
  const client = new MllpClient({ host: '127.0.0.1', port, ackTimeoutMs: 30_000 });
  try {
    return (await client.send(m.er7, m.ctl)).segment('MSA')?.get(1) ?? '';
  } finally {
    await client.close();
  }
}

/** True when a TCP connection to the port is refused. */
function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('graceful shutdown', () => {
  it(
    'when SIGTERM arrives mid-job then readiness goes false at once, MLLP stops accepting, the job finishes, workers close, then HTTP, and it exits 0',
    { timeout: 120_000 },
    async () => {
      const prefix = `sd${uniq()}`;
      const [port, mllpPort] = [await freePort(), await freePort()];
      const p = start(prefix, port, mllpPort, { SHUTDOWN_GRACE_MS: '20000', SHUTDOWN_TIMEOUT_MS: '30000' });
      await until('listening', () => (p.logged('MLLP listener ready') >= 0 ? true : undefined), 60_000);
      const mrn = `SD${uniq()}`;
      marker = `Held${uniq()}`;
      mode = 'hold';
      expect(await send(mllpPort, a01(mrn, marker))).toBe('AA');
      // The worker's transaction is at the FHIR server, held there: a job in hand.
      await until('the write in flight', () => (held ? true : undefined), 60_000, 50);

      p.child.kill('SIGTERM');
      await until('draining', async () => {
        const r = await fetch(`http://127.0.0.1:${port}/ready`);
        return r.status === 503 && ((await r.json()) as { status: string }).status === 'draining'
          ? true
          : undefined;
      });
      await until('MLLP closed', async () => ((await refuses(mllpPort)) ? true : undefined));
      // HTTP is still up while the job runs: liveness answers.
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
      expect(p.logged('workers drained')).toBe(-1);

      const release = held!;
      held = undefined;
      release();
      expect(await p.exited).toBe(0);

      const order = ['shutting down', 'MLLP listener closed', 'workers drained', 'closed'].map(p.logged);
      expect(order.every((i) => i >= 0)).toBe(true);
      expect([...order].sort((x, y) => x - y)).toEqual(order);
      expect(heldSeen).toBe(1);
      const [patient] = await fhir.searchAll<Patient>(
        'Patient',
        { identifier: `${SYS}|${mrn}` },
        { noCache: true },
      );
      expect(patient?.name?.[0]?.given?.[0]).toBe(marker);
      conns = createConnections(new URL(inject('redisUrl')), prefix, false);
      const queue = new PartitionedQueue(conns, 'hl7-inbound', 1);
      expect(await queue.getJobCounts('completed', 'active', 'waiting', 'failed')).toEqual({
        completed: 1,
        active: 0,
        waiting: 0,
        failed: 0,
      });
      await Promise.all(queue.queues.map((q) => q.close()));
      await conns.closeAll();
    },
  );

  it(
    'when a job is still retrying as SHUTDOWN_GRACE_MS ends then it goes back to the head of its partition, ahead of the next message, and the process exits 0',
    { timeout: 120_000 },
    async () => {
      const prefix = `sg${uniq()}`;
      const [port, mllpPort] = [await freePort(), await freePort()];
      const p = start(prefix, port, mllpPort, { SHUTDOWN_GRACE_MS: '1500', SHUTDOWN_TIMEOUT_MS: '15000' });
      await until('listening', () => (p.logged('MLLP listener ready') >= 0 ? true : undefined), 60_000);
      const mrn = `SG${uniq()}`;
      marker = `Fails${uniq()}`;
      mode = 'fail';
      const first = a01(mrn, marker);
      expect(await send(mllpPort, first)).toBe('AA');
      await until(
        'retrying in place',
        () => (p.logged('HL7 message not written yet; retrying in place') >= 0 ? true : undefined),
        60_000,
      );
      // The patient's next message waits behind it.
      const second = a01(mrn, 'Next');
      expect(await send(mllpPort, second)).toBe('AA');

      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
      conns = createConnections(new URL(inject('redisUrl')), prefix, false);
      const queue = new PartitionedQueue(conns, 'hl7-inbound', 1);
      expect(await conns.ping(5000)).toBe(true);
      // BullMQ pushes new jobs on the left of the wait list and takes the next from the right: read the list
      // itself, right to left, for the order the partition will run them in.
      const ids = (await conns.producer.lrange(`${prefix}:hl7-inbound-p0:wait`, 0, -1)).reverse();
      const jobs = await Promise.all(ids.map((id) => queue.getJob(id)));
      expect(jobs.map((j) => (j?.data as { controlId: string } | undefined)?.controlId)).toEqual([
        first.ctl,
        second.ctl,
      ]);
      expect(await queue.getJobCounts('completed', 'active', 'failed', 'delayed')).toEqual({
        completed: 0,
        active: 0,
        failed: 0,
        delayed: 0,
      });
      await Promise.all(queue.queues.map((q) => q.close()));
      marker = '';
    },
  );
});
