/**
 * How many FHIR requests one HL7 message costs after its commit, counted at the transport (every HTTP call
 * the app makes to the FHIR server goes through the `fetch` given to its client). The HL7 commit hands the
 * written resources on to scheduling and reminders: nothing searches for an Appointment the worker just wrote.
 * The figures are printed for the notes; the test asserts on what must not happen, not on a count that could
 * drift with HAPI versions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { FhirClient } from '../../src/fhir/client.js';
import { makeKeys, signToken, testEnv, uniq, type Keys } from '../support/harness.js';

const SYS = 'urn:oid:2.16.840.1.113883.19.5';
let app: FastifyInstance;
let keys: Keys;
let token: string;
const calls: string[] = [];

beforeAll(async () => {
  keys = makeKeys();
  const config = loadConfig(testEnv(keys, { QUEUE_PREFIX: `t${uniq()}` }));
  const fhir = new FhirClient({
    baseUrl: config.fhirBaseUrl,
    fetch: (url, init) => {
      const u = new URL(url instanceof Request ? url.url : url);
      // Method, path and the names of the query's parameters: enough to tell a search from a read.
      calls.push(
        `${init?.method ?? 'GET'} ${u.pathname.replace(/^.*\/fhir/, '')}?${[...u.searchParams.keys()].join('&')}`,
      );
      return fetch(url, init);
    },
  });
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  app = await buildApp({ config, logger: createLogger({ level: 'warn', destination: sink }), fhir });
  await app.ready();
  await app.profiles.whenUploaded();
  token = await signToken(keys, { scope: 'system/MessageHeader.cr' });
});
afterAll(async () => {
  await app.close();
});

/** Waits until the inbound, plan and journey-event queues are idle. */
async function quiet(): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const all = [...app.hl7.queue.queues, app.reminders.plans.queue, app.reminders.journeyEvents.queue];
    let busy = 0;
    for (const q of all) {
      const c = await q.getJobCounts('waiting', 'active', 'delayed');
      busy += (c['waiting'] ?? 0) + (c['active'] ?? 0) + (c['delayed'] ?? 0);
    }
    if (busy === 0) return;
    if (Date.now() > deadline) throw new Error('queues did not drain');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function siu(trigger: string, appt: string, mrn: string, start: string, status: string): string {
  const sch = Array.from({ length: 26 }, () => '');
  sch[0] = 'SCH';
  sch[1] = `${appt}^EPIC^${SYS}.3`;
  sch[7] = 'CONSULT^Consultation^LOCAL';
  sch[11] = `^^^${start}^${start.slice(0, 10)}30`;
  sch[25] = status;
  return [
    `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||SIU^${trigger}^SIU_S12|${uniq()}|P|2.5`,
    sch.join('|'),
    `PID|1||${mrn}^^^MAINHOSP&${SYS}&ISO^MR||Nakamura^Ren||19750505|M`,
    `AIP|1||DR${mrn}^Grey^Meredith^^^^^^MAINHOSP&${SYS}.9&ISO`,
    '',
  ].join('\r');
}

async function cost(message: string): Promise<string[]> {
  await quiet();
  calls.length = 0;
  const r = await app.inject({
    method: 'POST',
    url: '/hl7',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'x-application/hl7-v2+er7' },
    payload: message,
  });
  expect(r.statusCode).toBe(200);
  await quiet();
  return [...calls];
}

describe('FHIR requests per HL7 message', () => {
  it('when an SIU books and cancels then the commit hands the Appointment on: no search for what was just written', async () => {
    const [appt, mrn] = [uniq(), uniq()];
    const s12 = await cost(siu('S12', appt, mrn, '203402010900', 'Booked'));
    const s15 = await cost(siu('S15', appt, mrn, '203402010900', 'Cancelled'));
    console.log(`FHIR requests: S12 ${s12.length}, S15 ${s15.length}\n${[...s12, '--', ...s15].join('\n')}`);
    for (const calls of [s12, s15]) {
      // The worker reads what it merges into (before its transaction); after the commit, nothing searches for
      // the Appointment it wrote: scheduling gets it from the worker, with its server id.
      const commit = calls.indexOf('POST ?');
      expect(commit).toBeGreaterThan(0);
      expect(calls.slice(commit + 1).filter((c) => c.startsWith('GET /Appointment?identifier'))).toEqual([]);
    }
  });
});
