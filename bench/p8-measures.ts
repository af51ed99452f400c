/**
 * P8: `$evaluate-measure` for each of Careway's eight measures over N journeys (10,000 by default), against
 * the raw FHIR searches the measure needs, issued straight to HAPI in the same run (the analytics area's own
 * `collect`, on a client of HAPI: the same requests and paging, without Careway's HTTP, auth, audit,
 * aggregation or report). Careway runs with MEASURE_CACHE_SECONDS=0, so every request computes. Target
 * ≤ 1.5× (benchmarks.md).
 *
 * Setup writes the journeys straight to HAPI in transaction bundles (50 journeys each), in a month of their own
 * in the 1500s, so nothing else on the server falls in the period: per journey a referral, the journey
 * (EpisodeOfCare with a stage history and one of four services), an appointment (fulfilled or no-show), a
 * triage Task with its decision's Provenance, a reminder Communication, a survey response, and for half an
 * AppointmentResponse.
 */
import type { BundleEntry, Resource } from 'fhir/r4.js';
import { request } from 'undici';
import { canonical } from '../src/fhir/canonical.js';
import { newJourneyEpisode } from '../src/journey/episode.js';
import { JOURNEY_STAGES } from '../src/journey/stages.js';
import { collect, evaluationContext } from '../src/analytics/module.js';
import { MEASURE_IDS, PATIENT_EXPERIENCE } from '../src/analytics/measures.js';
import { median, startCareway, writeResult, type Stack } from './lib.js';

const PER_BUNDLE = 50;

/** A deterministic pseudo-random sequence, so two runs seed the same shape. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function seed(stack: Stack, journeys: number, year: number, month: number): Promise<number> {
  const rand = rng(year * 100 + month);
  const at = (day: number, hour = 10): string => new Date(Date.UTC(year, month - 1, day, hour)).toISOString();
  const t0 = performance.now();
  const bundles: BundleEntry[][] = [];
  for (let b = 0; b < journeys / PER_BUNDLE; b++) {
    const entry: BundleEntry[] = [];
    const add = (resource: Resource): string => {
      const fullUrl = `urn:uuid:${crypto.randomUUID()}`;
      entry.push({ fullUrl, resource, request: { method: 'POST', url: resource.resourceType } });
      return fullUrl;
    };
    const patient = add({
      resourceType: 'Patient',
      identifier: [{ system: 'urn:careway:bench:p8', value: `${year}-${month}-${b}` }],
    } as Resource);
    for (let i = 0; i < PER_BUNDLE; i++) {
      const day = 1 + Math.floor(rand() * 20);
      const sr = add({
        resourceType: 'ServiceRequest',
        status: 'active',
        intent: 'order',
        subject: { reference: patient },
        authoredOn: at(day, 8),
      } as Resource);
      const last = 2 + Math.floor(rand() * 4);
      const stays = JOURNEY_STAGES.slice(2, last + 1).map((stage, k) => ({
        stage,
        start: at(day + k * 2, 8 + k),
      }));
      const stageHistory = stays.map((s, k) =>
        k < stays.length - 1 ? { ...s, end: stays[k + 1]!.start } : s,
      );
      const eoc = add(
        newJourneyEpisode({
          identifier: { system: 'urn:careway:bench:p8-journey', value: crypto.randomUUID() },
          patient: { reference: patient },
          referral: { reference: sr },
          type: {
            coding: [{ system: 'urn:careway:bench:service', code: `service-${Math.floor(rand() * 4)}` }],
          },
          state: {
            stage: stays.at(-1)!.stage,
            status: 'finished',
            stageHistory,
            statusHistory: [
              { status: 'active', start: stays[0]!.start, end: at(40) },
              { status: 'finished', start: at(40) },
            ],
          },
        }),
      );
      const ext = [{ url: canonical.journeyReferenceExtension, valueReference: { reference: eoc } }];
      const appt = add({
        resourceType: 'Appointment',
        status: rand() < 0.15 ? 'noshow' : 'fulfilled',
        start: at(day + 3, 9),
        end: at(day + 3, 10),
        basedOn: [{ reference: sr }],
        participant: [{ actor: { reference: patient }, status: 'accepted' }],
        extension: ext,
      } as Resource);
      const task = add({
        resourceType: 'Task',
        identifier: [{ system: canonical.triageTaskSystem, value: crypto.randomUUID() }],
        status: 'accepted',
        intent: 'order',
        for: { reference: patient },
        authoredOn: at(day, 8),
        lastModified: at(day + 1, 8),
        extension: ext,
      } as Resource);
      add({
        resourceType: 'Provenance',
        target: [{ reference: task }],
        recorded: at(day, 8 + Math.floor(rand() * 12)),
        activity: { text: 'triage:requested->accepted' },
        agent: [{ who: { display: 'bench' } }],
      } as Resource);
      const key = crypto.randomUUID();
      const delivered = rand() < 0.9;
      add({
        resourceType: 'Communication',
        identifier: [{ system: canonical.reminderSystem, value: delivered ? key : `${key}|not-done` }],
        status: delivered ? 'completed' : 'not-done',
        category: [{ coding: [{ system: canonical.communicationCategory, code: 'reminder' }] }],
        basedOn: [{ identifier: { system: canonical.reminderSystem, value: key } }],
        about: [{ reference: appt }],
        subject: { reference: patient },
        sent: at(day + 2, 9),
        extension: ext,
      } as Resource);
      if (rand() < 0.5)
        add({
          resourceType: 'AppointmentResponse',
          appointment: { reference: appt },
          actor: { reference: patient },
          participantStatus: 'accepted',
        } as Resource);
      add({
        resourceType: 'QuestionnaireResponse',
        status: 'completed',
        questionnaire: PATIENT_EXPERIENCE,
        subject: { reference: patient },
        authored: at(day + 4, 15),
        item: [
          { linkId: 'overall', answer: [{ valueInteger: 1 + Math.floor(rand() * 5) }] },
          { linkId: 'recommend-score', answer: [{ valueInteger: Math.floor(rand() * 11) }] },
        ],
        extension: ext,
      } as Resource);
    }
    bundles.push(entry);
  }
  // Two bundles in flight: HAPI commits each transaction on one thread, and the shared machine has two cores.
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < bundles.length; i = next++) {
      await stack.fhir.transaction(
        { resourceType: 'Bundle', type: 'transaction', entry: bundles[i]! },
        { timeoutMs: 600_000 },
      );
      if ((i + 1) % 20 === 0) process.stderr.write(`P8 seed: ${(i + 1) * PER_BUNDLE} journeys\n`);
    }
  };
  await Promise.all([worker(), worker()]);
  return (performance.now() - t0) / 1000;
}

export async function runP8(stack: Stack, journeys: number, iterations: number): Promise<string[]> {
  // A month of its own in the 1500s (the integration tests use 1700-1849).
  const year = 1500 + Math.floor(Math.random() * 200);
  const month = 1 + Math.floor(Math.random() * 12);
  const pad = (n: number): string => String(n).padStart(2, '0');
  const periodStart = `${year}-${pad(month)}-01`;
  const periodEnd = `${year}-${pad(month)}-28`;
  const seedSeconds = await seed(stack, journeys, year, month);

  const { careway, service } = await startCareway(stack.hapi, stack.redis, { MEASURE_CACHE_SECONDS: '0' });
  try {
    const token = await stack.token('system/MeasureReport.r');
    const ctx = evaluationContext({ periodStart, periodEnd }, Date.now());
    const rows: { id: string; direct: number; careway: number; ratio: number }[] = [];
    for (const id of MEASURE_IDS) {
      const viaCareway = async (): Promise<number> => {
        const t0 = performance.now();
        const res = await request(
          `${careway}/fhir/Measure/${id}/$evaluate-measure?periodStart=${periodStart}&periodEnd=${periodEnd}`,
          { headers: { authorization: `Bearer ${token}` }, headersTimeout: 600_000, bodyTimeout: 600_000 },
        );
        await res.body.text();
        if (res.statusCode !== 200) throw new Error(`P8: ${id} answered ${res.statusCode}`);
        return performance.now() - t0;
      };
      const direct = async (): Promise<number> => {
        const t0 = performance.now();
        await collect(stack.fhir, id, ctx);
        return performance.now() - t0;
      };
      // One of each to warm up (HAPI's query plans, Careway's JIT), then alternate.
      await direct();
      await viaCareway();
      const d: number[] = [];
      const c: number[] = [];
      for (let i = 0; i < iterations; i++) {
        d.push(await direct());
        c.push(await viaCareway());
      }
      rows.push({ id, direct: median(d), careway: median(c), ratio: median(c) / median(d) });
      process.stderr.write(`P8 ${id}: ${(median(c) / median(d)).toFixed(2)}\n`);
    }
    const worst = Math.max(...rows.map((r) => r.ratio));
    const file = writeResult('P8', {
      what: '$evaluate-measure per measure vs the same FHIR searches straight to HAPI (sequential, medians)',
      journeys,
      iterations,
      period: { periodStart, periodEnd },
      seedSeconds,
      measures: rows,
      worstRatio: worst,
      target: 1.5,
    });
    return [
      `P8 $evaluate-measure over ${journeys} journeys, ${iterations} rounds each (medians; seeded in ${seedSeconds.toFixed(0)} s)`,
      '| measure                                 | direct ms | Careway ms | ratio |',
      '|-----------------------------------------|-----------|------------|-------|',
      ...rows.map(
        (r) =>
          `| ${r.id.padEnd(39)} | ${r.direct.toFixed(0).padStart(9)} | ${r.careway.toFixed(0).padStart(10)} | ${r.ratio.toFixed(2).padStart(5)} |`,
      ),
      `worst ratio ${worst.toFixed(2)} (target <= 1.5)`,
      `written to ${file}`,
    ];
  } finally {
    await service.stop();
  }
}
