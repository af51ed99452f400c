/**
 * Careway through Redis Sentinel (REDIS_SENTINELS + REDIS_SENTINEL_NAME), a smoke test on a real master and a
 * real sentinel (src/devstack/redis-topologies.ts): the app asks the sentinel for the master, reports ready,
 * takes an HL7 message (a job enqueued) and writes it to FHIR (the job processed). A failover is not
 * exercised: that needs a replica and sentinel quorum, and is ioredis's own behaviour.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Patient } from 'fhir/r4.js';
import { startRedisSentinel, type RedisTopology } from '../../src/devstack/redis-topologies.js';
import { startHarness, uniq, until, type Harness } from '../support/harness.js';

let topo: RedisTopology;
let h: Harness;

beforeAll(async () => {
  topo = await startRedisSentinel('careway-smoke');
  h = await startHarness({
    REDIS_SENTINELS: topo.nodes,
    REDIS_SENTINEL_NAME: 'careway-smoke',
    HL7_INTAKE_CHECK: 'none',
  });
});

afterAll(async () => {
  await h?.close();
  await topo?.stop();
});

describe('Redis Sentinel', () => {
  it('when Careway is given sentinels then it is ready, and an HL7 message is queued on the master and written to FHIR', async () => {
    const ready = await until(
      'readiness',
      async () => {
        const r = await h.app.inject({ method: 'GET', url: '/ready' });
        return r.statusCode === 200 ? r : undefined;
      },
      30_000,
    );
    expect(ready.json()).toMatchObject({ checks: { redis: { status: 'up' } } });

    const id = uniq();
    const mrn = `MRN-${id}`;
    const token = await h.token({ scope: 'system/MessageHeader.cr', sub: 'interface-engine' });
    const res = await h.app.inject({
      method: 'POST',
      url: '/hl7',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'x-application/hl7-v2+er7' },
      payload: `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015-0500||ADT^A04|${id}|P|2.5\rPID|1||${mrn}^^^MAINHOSP^MR||Sentinel^Sam||19700101|F\r`,
    });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain(`MSA|AA|${id}`);

    // The job is on the master the sentinel names (the queue keys are under this app's QUEUE_PREFIX).
    const master = new Redis(topo.dataPorts[0]!, '127.0.0.1');
    try {
      const keys = await master.keys(`${h.config.queuePrefix}:hl7-inbound-p*:*`);
      expect(keys.length).toBeGreaterThan(0);
    } finally {
      master.disconnect();
    }
    // …and processed: the patient is on the FHIR server.
    const patient = await until(
      'the patient written',
      async () => {
        const found = await h.fhir.searchAll<Patient>('Patient', { identifier: mrn }, { noCache: true });
        return found.length ? found[0] : undefined;
      },
      30_000,
    );
    expect(patient.name?.[0]?.family).toBe('Sentinel');
  });
});
