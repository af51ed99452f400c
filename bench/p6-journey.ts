/**
 * P6: `$journey` for a journey with 50 linked resources, against the best hand-written set of direct HAPI
 * queries for the same data: the one search with the same `_include`/`_revinclude` parameters (the
 * comparator gets Careway's own query plan for free, so the ratio isolates Careway's overhead: auth,
 * shaping, alerts, serialisation). Sequential requests, alternating, medians. Target ≤ 1.3×.
 */
import type { Bundle, EpisodeOfCare, Patient, Resource, ServiceRequest } from 'fhir/r4.js';
import { request } from 'undici';
import { canonical } from '../src/fhir/canonical.js';
import { journeyQuery } from '../src/journey/service.js';
import { median, percentile, writeResult, type Stack } from './lib.js';

const TYPES = [
  'Appointment',
  'CarePlan',
  'Communication',
  'CommunicationRequest',
  'QuestionnaireResponse',
  'Condition',
  'Task',
  'DiagnosticReport',
  'Observation',
  'AllergyIntolerance',
];

function linkedResource(type: string, i: number, patient: string, journey: string): Resource {
  const subject = { reference: `Patient/${patient}` };
  const extension = [
    { url: canonical.journeyReferenceExtension, valueReference: { reference: `EpisodeOfCare/${journey}` } },
  ];
  const base = { resourceType: type, extension };
  switch (type) {
    case 'Appointment':
      return {
        ...base,
        status: 'booked',
        start: new Date(Date.now() + i * 86400_000).toISOString(),
        end: new Date(Date.now() + i * 86400_000 + 1800_000).toISOString(),
        participant: [{ actor: subject, status: 'accepted' }],
      } as Resource;
    case 'CarePlan':
      return { ...base, status: 'active', intent: 'plan', subject } as Resource;
    case 'Communication':
      return { ...base, status: 'completed', subject, sent: new Date().toISOString() } as Resource;
    case 'CommunicationRequest':
      return { ...base, status: 'active', subject } as Resource;
    case 'QuestionnaireResponse':
      return { ...base, status: 'completed', subject } as Resource;
    case 'Condition':
      return { ...base, subject, code: { text: `condition ${i}` } } as Resource;
    case 'Task':
      return { ...base, status: 'requested', intent: 'order', for: subject } as Resource;
    case 'DiagnosticReport':
      return { ...base, status: 'final', code: { text: 'panel' }, subject } as Resource;
    case 'Observation':
      return {
        ...base,
        status: 'final',
        code: { text: `obs ${i}` },
        subject,
        valueQuantity: { value: i, unit: 'mg' },
      } as Resource;
    default:
      return {
        ...base,
        patient: subject,
        code: { text: `substance ${i}` },
        clinicalStatus: { coding: [{ code: 'active' }] },
      } as Resource;
  }
}

export async function runP6(stack: Stack, iterations: number): Promise<string[]> {
  const { resource: patient } = await stack.fhir.create<Patient>({
    resourceType: 'Patient',
    identifier: [{ system: 'urn:careway:bench', value: crypto.randomUUID() }],
  });
  const { resource: referral } = await stack.fhir.create<ServiceRequest>({
    resourceType: 'ServiceRequest',
    status: 'active',
    intent: 'order',
    subject: { reference: `Patient/${patient.id}` },
    authoredOn: new Date().toISOString(),
  });
  const writer = await stack.token('system/*.cruds');
  const startRes = await request(`${stack.careway}/fhir/EpisodeOfCare/$start-journey`, {
    method: 'POST',
    headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Parameters',
      parameter: [
        { name: 'patient', valueReference: { reference: `Patient/${patient.id}` } },
        { name: 'referral', valueReference: { reference: `ServiceRequest/${referral.id}` } },
      ],
    }),
  });
  const journey = (await startRes.body.json()) as EpisodeOfCare;
  const entries = Array.from({ length: 50 }, (_, i) => ({
    resource: linkedResource(TYPES[i % TYPES.length] ?? 'Observation', i, patient.id ?? '', journey.id ?? ''),
    request: { method: 'POST' as const, url: TYPES[i % TYPES.length] ?? 'Observation' },
  }));
  await stack.fhir.batch({ resourceType: 'Bundle', type: 'batch', entry: entries });

  const reader = await stack.token('user/*.rs');
  const directUrl = `${stack.hapi}/EpisodeOfCare?${journeyQuery(journey.id ?? '').toString()}`;
  const carewayUrl = `${stack.careway}/fhir/EpisodeOfCare/${journey.id}/$journey`;

  const time = async (
    url: string,
    headers: Record<string, string>,
  ): Promise<{ ms: number; count: number }> => {
    const t0 = performance.now();
    const res = await request(url, {
      headers: { accept: 'application/fhir+json', 'cache-control': 'no-cache', ...headers },
    });
    const body = (await res.body.json()) as Bundle;
    const ms = performance.now() - t0;
    if (res.statusCode !== 200) throw new Error(`P6: ${url} answered ${res.statusCode}`);
    return { ms, count: body.entry?.length ?? 0 };
  };
  const auth = { authorization: `Bearer ${reader}` };
  for (let i = 0; i < 20; i++) {
    await time(directUrl, {});
    await time(carewayUrl, auth);
  }
  const d: number[] = [];
  const c: number[] = [];
  let counts = { direct: 0, careway: 0 };
  for (let i = 0; i < iterations; i++) {
    const a = await time(directUrl, {});
    const b = await time(carewayUrl, auth);
    d.push(a.ms);
    c.push(b.ms);
    counts = { direct: a.count, careway: b.count };
  }
  const ratio = median(c) / median(d);
  const file = writeResult('P6', {
    what: '$journey with 50 linked resources vs the same include/revinclude search straight to HAPI (sequential)',
    iterations,
    entries: counts,
    direct: { p50: median(d), p95: percentile(d, 95) },
    careway: { p50: median(c), p95: percentile(c, 95) },
    ratio,
    target: 1.3,
  });
  return [
    `P6 $journey, 50 linked resources, ${iterations} sequential requests each (medians)`,
    '| path                 | p50 ms | p95 ms | entries |',
    '|----------------------|--------|--------|---------|',
    `| direct HAPI search   | ${median(d).toFixed(1).padStart(6)} | ${percentile(d, 95).toFixed(1).padStart(6)} | ${String(counts.direct).padStart(7)} |`,
    `| Careway $journey     | ${median(c).toFixed(1).padStart(6)} | ${percentile(c, 95).toFixed(1).padStart(6)} | ${String(counts.careway).padStart(7)} |`,
    `ratio ${ratio.toFixed(3)} (target <= 1.3)`,
    `written to ${file}`,
  ];
}
