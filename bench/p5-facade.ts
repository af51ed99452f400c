/**
 * P5: the FHIR facade's read path, `GET /fhir/Patient/{id}` at 200 concurrent connections with auth on,
 * against the same GET straight to HAPI. Rounds alternate direct, Careway (audit on, the default) and a second
 * Careway with AUDIT_EVENTS=off on the same HAPI and Redis, so the audit trail's cost is measured in the same
 * run. Medians are reported. Targets (benchmarks.md): added p99 ≤ 2 ms, throughput ≥ 90 % of direct.
 */
import autocannon from 'autocannon';
import type { Patient } from 'fhir/r4.js';
import { median, startCareway, writeResult, type Stack } from './lib.js';

interface Sample {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function load(
  url: string,
  headers: Record<string, string>,
  seconds: number,
  connections: number,
): Promise<Sample> {
  const r = await autocannon({ url, connections, duration: seconds, headers, pipelining: 1 });
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts + r.non2xx,
  };
}

export async function runP5(stack: Stack, rounds: number, seconds: number): Promise<string[]> {
  const connections = 200;
  const { resource: patient } = await stack.fhir.create<Patient>({
    resourceType: 'Patient',
    identifier: [{ system: 'urn:careway:bench', value: crypto.randomUUID() }],
    gender: 'unknown',
  });
  const token = await stack.token('user/Patient.rs');
  const direct = `${stack.hapi}/Patient/${patient.id}`;
  const via = `${stack.careway}/fhir/Patient/${patient.id}`;
  const unaudited = await startCareway(stack.hapi, stack.redis, { AUDIT_EVENTS: 'off' });
  const viaOff = `${unaudited.careway}/fhir/Patient/${patient.id}`;
  const accept = { accept: 'application/fhir+json' };
  const auth = { ...accept, authorization: `Bearer ${token}` };
  await load(direct, accept, 3, connections);
  await load(via, auth, 3, connections);
  await load(viaOff, auth, 3, connections);
  const d: Sample[] = [];
  const c: Sample[] = [];
  const o: Sample[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      d.push(await load(direct, accept, seconds, connections));
      c.push(await load(via, auth, seconds, connections));
      o.push(await load(viaOff, auth, seconds, connections));
      process.stderr.write(`P5 round ${i + 1}/${rounds}\n`);
    }
  } finally {
    await unaudited.service.stop();
  }
  const med = (xs: Sample[]) => ({
    rps: median(xs.map((x) => x.rps)),
    p50: median(xs.map((x) => x.p50)),
    p99: median(xs.map((x) => x.p99)),
  });
  const dm = med(d);
  const cm = med(c);
  const om = med(o);
  const ratio = cm.rps / dm.rps;
  const auditCost = cm.rps / om.rps;
  const addedP99 = cm.p99 - dm.p99;
  const file = writeResult('P5', {
    what: 'FHIR facade GET /fhir/Patient/{id}, 200 concurrent, auth on, vs direct to HAPI',
    rounds,
    secondsPerRound: seconds,
    direct: dm,
    careway: cm,
    carewayAuditOff: om,
    auditThroughputRatio: auditCost,
    errors: {
      direct: d.reduce((a, x) => a + x.errors, 0),
      careway: c.reduce((a, x) => a + x.errors, 0),
      carewayAuditOff: o.reduce((a, x) => a + x.errors, 0),
    },
    throughputRatio: ratio,
    addedP99Ms: addedP99,
    targets: { throughputRatio: 0.9, addedP99Ms: 2 },
  });
  return [
    `P5 facade read, ${connections} concurrent, ${rounds}x${seconds}s rounds (medians)`,
    '| path                   |    req/s | p50 ms  | p99 ms  |',
    '|------------------------|----------|---------|---------|',
    `| direct to HAPI         | ${dm.rps.toFixed(0).padStart(8)} | ${dm.p50.toFixed(1).padStart(7)} | ${dm.p99.toFixed(1).padStart(7)} |`,
    `| through Careway (auth) | ${cm.rps.toFixed(0).padStart(8)} | ${cm.p50.toFixed(1).padStart(7)} | ${cm.p99.toFixed(1).padStart(7)} |`,
    `| Careway, audit off     | ${om.rps.toFixed(0).padStart(8)} | ${om.p50.toFixed(1).padStart(7)} | ${om.p99.toFixed(1).padStart(7)} |`,
    `audit on/off throughput ${auditCost.toFixed(3)}, added p99 ${(cm.p99 - om.p99).toFixed(1)} ms (one AuditEvent enqueued per read)`,
    `throughput ratio ${ratio.toFixed(3)} (target >= 0.90), added p99 ${addedP99.toFixed(1)} ms (target <= 2 ms)`,
    `written to ${file}`,
  ];
}
