/**
 * SCHED: `$find` over 5,000 Slots (10 practitioners × 500), against the raw FHIR search that returns the
 * same Slots straight from HAPI (all pages, sequential, no cache). The ratio is Careway's whole `$find`
 * (schedules with actors, slots, patient, earlier visits, allergies, ranking, proposals) over that one
 * search. Also reports how long `$generate-slots` took to create the 5,000 Slots.
 */
import type { Bundle, Patient, Practitioner, Schedule } from 'fhir/r4.js';
import { request } from 'undici';
import { canonical } from '../src/fhir/canonical.js';
import { median, percentile, writeResult, type Stack } from './lib.js';

const SCHEDULES = 10;

async function post(url: string, token: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const res = await request(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, body: await res.body.json() };
}

export async function runScheduling(stack: Stack, iterations: number): Promise<string[]> {
  const code = `bench-${crypto.randomUUID().slice(0, 8)}`;
  const serviceType = { coding: [{ system: 'urn:careway:bench:service', code }] };
  const token = await stack.token('system/*.cruds');
  const first = new Date();
  first.setUTCHours(0, 0, 0, 0);
  first.setUTCDate(first.getUTCDate() + 2);
  const day = (n: number): string => new Date(first.getTime() + n * 86400_000).toISOString().slice(0, 10);

  const scheduleIds: string[] = [];
  const t0 = performance.now();
  for (let i = 0; i < SCHEDULES; i++) {
    const { resource: dr } = await stack.fhir.create<Practitioner>({ resourceType: 'Practitioner' });
    const { resource: s } = await stack.fhir.create<Schedule>({
      resourceType: 'Schedule',
      active: true,
      extension: [{ url: canonical.timezoneExtension, valueCode: 'Europe/Berlin' }],
      serviceType: [serviceType],
      actor: [{ reference: `Practitioner/${dr.id}` }],
    });
    scheduleIds.push(s.id!);
    // 08:00-16:20 in 10-minute slots = 50 a day, 10 days = 500 per schedule.
    const res = await post(`${stack.careway}/fhir/Schedule/${s.id}/$generate-slots`, token, {
      resourceType: 'Parameters',
      parameter: [
        { name: 'start', valueDate: day(0) },
        { name: 'end', valueDate: day(9) },
        { name: 'slot-minutes', valuePositiveInt: 10 },
        {
          name: 'availableTime',
          part: [
            { name: 'availableStartTime', valueTime: '08:00:00' },
            { name: 'availableEndTime', valueTime: '16:20:00' },
          ],
        },
      ],
    });
    if (res.status !== 201) throw new Error(`SCHED: $generate-slots answered ${res.status}`);
  }
  const generateMs = performance.now() - t0;
  const { resource: patient } = await stack.fhir.create<Patient>({
    resourceType: 'Patient',
    identifier: [{ system: 'urn:careway:bench', value: crypto.randomUUID() }],
    extension: [
      {
        url: canonical.schedulingPreferencesExtension,
        extension: [
          { url: 'weekday', valueCode: 'tue' },
          { url: 'timeOfDay', valueCode: 'afternoon' },
        ],
      },
    ],
  });
  const start = `${day(0)}T00:00:00Z`;
  const end = `${day(10)}T00:00:00Z`;
  const findBody = {
    resourceType: 'Parameters',
    parameter: [
      { name: 'service-type', valueCodeableConcept: serviceType },
      { name: 'patient', valueReference: { reference: `Patient/${patient.id}` } },
      { name: 'start', valueDateTime: start },
      { name: 'end', valueDateTime: end },
      { name: '_count', valuePositiveInt: 20 },
    ],
  };
  const direct = async (): Promise<{ ms: number; count: number }> => {
    const t = performance.now();
    let url: string | undefined = `${stack.hapi}/Slot?${new URLSearchParams([
      ['schedule', scheduleIds.map((id) => `Schedule/${id}`).join(',')],
      ['start', `ge${start}`],
      ['start', `lt${end}`],
      ['_count', '200'],
    ]).toString()}`;
    let count = 0;
    while (url) {
      const res = await request(url, {
        headers: { accept: 'application/fhir+json', 'cache-control': 'no-cache' },
      });
      const b = (await res.body.json()) as Bundle;
      count += b.entry?.length ?? 0;
      url = b.link?.find((l) => l.relation === 'next')?.url;
    }
    return { ms: performance.now() - t, count };
  };
  const find = async (): Promise<{ ms: number; count: number }> => {
    const t = performance.now();
    const res = await post(`${stack.careway}/fhir/Appointment/$find`, token, findBody);
    if (res.status !== 200) throw new Error(`SCHED: $find answered ${res.status}`);
    return { ms: performance.now() - t, count: (res.body as Bundle).entry?.length ?? 0 };
  };
  for (let i = 0; i < 3; i++) {
    await direct();
    await find();
  }
  const d: number[] = [];
  const c: number[] = [];
  let slots = 0;
  let proposals = 0;
  for (let i = 0; i < iterations; i++) {
    const a = await direct();
    const b = await find();
    d.push(a.ms);
    c.push(b.ms);
    slots = a.count;
    proposals = b.count;
  }
  const ratio = median(c) / median(d);
  const file = writeResult('SCHED', {
    what: '$find over 5,000 Slots vs the raw FHIR search for the same Slots (all pages), sequential',
    iterations,
    slots,
    proposals,
    generateSlotsMs: generateMs,
    direct: { p50: median(d), p95: percentile(d, 95) },
    find: { p50: median(c), p95: percentile(c, 95) },
    ratio,
  });
  return [
    `SCHED $find over ${slots} Slots (${SCHEDULES} schedules), ${iterations} sequential requests each`,
    '| path                         | p50 ms | p95 ms |',
    '|------------------------------|--------|--------|',
    `| raw FHIR Slot search (pages) | ${median(d).toFixed(1).padStart(6)} | ${percentile(d, 95).toFixed(1).padStart(6)} |`,
    `| Careway $find (top 20)       | ${median(c).toFixed(1).padStart(6)} | ${percentile(c, 95).toFixed(1).padStart(6)} |`,
    `ratio ${ratio.toFixed(3)}; $generate-slots made ${SCHEDULES * 500} Slots in ${(generateMs / 1000).toFixed(1)} s`,
    `written to ${file}`,
  ];
}
