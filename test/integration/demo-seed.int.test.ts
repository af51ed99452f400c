/**
 * The demo seeder (src/demo/) against the real app on real sockets (HTTP + MLLP), the shared real HAPI and
 * redis: what it wrote is checked by searching the FHIR server itself, and a second run must add nothing.
 * A namespace of its own (`t<run>`) keeps every identifier apart from other tests' data.
 */
import type {
  Appointment,
  Bundle,
  Communication,
  EpisodeOfCare,
  QuestionnaireResponse,
  Resource,
  Task,
} from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonical } from '../../src/fhir/canonical.js';
import { readState } from '../../src/journey/episode.js';
import { JOURNEY_STAGES } from '../../src/journey/stages.js';
import { cohortSizes, generateHospital } from '../../src/demo/hospital.js';
import { RECOMMEND_SCORE, seedHospital, type SeedReport, type SeedTarget } from '../../src/demo/seed.js';
import { startHarness, uniq, type Harness } from '../support/harness.js';

const NS = `t${uniq()}`;
const PATIENTS = 30;
const OPTIONS = {
  ns: NS,
  patients: PATIENTS,
  slotDays: 5,
  concurrency: 2,
  log: (m: string) => process.stdout.write(`[seed ${new Date().toISOString().slice(11, 19)}] ${m}\n`),
};
const SECRET = `demo-secret-${uniq()}`;
let h: Harness;
let target: SeedTarget;
let first: SeedReport;

beforeAll(async () => {
  // The shared FHIR server is busy with everyone's tests: give it time rather than a 504.
  h = await startHarness({ SMS_WEBHOOK_SECRET: SECRET, FHIR_TIMEOUT_MS: '60000' });
  const address = await h.app.listen({ port: 0, host: '127.0.0.1' });
  target = {
    baseUrl: address,
    mllp: { host: '127.0.0.1', port: h.app.hl7.mllpPort()! },
    token: await h.token({ scope: 'system/*.cruds', sub: 'demo-seeder' }),
    smsWebhookSecret: SECRET,
  };
  first = await seedHospital(target, OPTIONS);
}, 600_000);
afterAll(async () => {
  await h?.close();
});

/** Everything that hangs off the namespace's patients, by type, read straight from HAPI. */
async function written(): Promise<Record<string, number>> {
  const mrn = `urn:careway:demo:${NS}:mrn|`;
  const counts: Record<string, number> = {};
  let url: string | undefined =
    `${h.config.fhirBaseUrl.href.replace(/\/$/, '')}/Patient?identifier=${encodeURIComponent(mrn)}&_revinclude=*&_count=200`;
  const seen = new Set<string>();
  while (url) {
    const res: Response = await fetch(url, { headers: { 'cache-control': 'no-cache' } });
    const page = (await res.json()) as Bundle;
    for (const e of page.entry ?? []) {
      const r = e.resource!;
      // AuditEvents record every read, so they grow with any access, seeding or not.
      if (r.resourceType === 'AuditEvent' || seen.has(`${r.resourceType}/${r.id}`)) continue;
      seen.add(`${r.resourceType}/${r.id}`);
      counts[r.resourceType] = (counts[r.resourceType] ?? 0) + 1;
    }
    url = page.link?.find((l) => l.relation === 'next')?.url;
  }
  return counts;
}

const search = <T extends { resourceType: string }>(type: string, q: Record<string, string>) =>
  h.fhir.searchAll<T & Resource>(type, { ...q, _count: 200 }, { noCache: true }) as Promise<T[]>;

describe('the demo seeder', () => {
  it('when it runs then every stage has journeys, with no-shows, cancellations, visits, messages, surveys and triage', async () => {
    const mrn = `urn:careway:demo:${NS}:mrn|`;
    const journeys = await search<EpisodeOfCare>('EpisodeOfCare', { 'patient.identifier': mrn });
    expect(journeys.length).toBe(PATIENTS);
    const byStage = new Map<string, number>();
    for (const j of journeys) byStage.set(readState(j).stage, (byStage.get(readState(j).stage) ?? 0) + 1);
    // The plan says how many end in each stage; the FHIR server must agree, stage by stage.
    const plan = generateHospital({ ns: NS, patients: PATIENTS, anchor: first.anchor });
    for (const s of JOURNEY_STAGES) {
      const planned = plan.patients.filter((p) => p.stage === s).length;
      expect(planned).toBeGreaterThan(0);
      expect(byStage.get(s) ?? 0, s).toBe(planned);
      expect(first.stages[s]).toBe(planned);
    }
    expect(journeys.every((j) => j.careManager?.reference?.startsWith('Practitioner/'))).toBe(true);
    expect(new Set(journeys.map((j) => j.type?.[0]?.coding?.[0]?.code)).size).toBeGreaterThan(1);

    const appointments = await search<Appointment>('Appointment', { 'patient.identifier': mrn });
    const status = (s: string) => appointments.filter((a) => a.status === s).length;
    const sizes = cohortSizes(PATIENTS);
    expect(status('noshow')).toBe(sizes['noshow-hl7'] + sizes['noshow-careway']);
    expect(status('cancelled')).toBe(sizes['referred-cancelled']);
    expect(status('fulfilled')).toBe(sizes.seen);
    expect(status('booked')).toBe(sizes['booked-hl7'] + sizes['referred-booked']);

    const noShowTasks = await search<Task>('Task', {
      'patient.identifier': mrn,
      identifier: `${canonical.noShowTaskSystem}|`,
    });
    expect(noShowTasks.length).toBeGreaterThanOrEqual(sizes['noshow-careway']);
    const triage = await search<Task>('Task', {
      'patient.identifier': mrn,
      identifier: `${canonical.triageTaskSystem}|`,
    });
    expect(triage.length).toBe(sizes.referred + sizes['referred-booked'] + sizes['referred-cancelled']);
    expect(triage.filter((t) => t.status === 'accepted').length).toBe(
      sizes['referred-booked'] + sizes['referred-cancelled'],
    );

    const replies = await search<Communication>('Communication', {
      'patient.identifier': mrn,
      category: `${canonical.communicationCategory}|patient-reply`,
    });
    expect(replies.length).toBe(plan.patients.filter((p) => p.writesIn).length);

    const surveys = await search<QuestionnaireResponse>('QuestionnaireResponse', {
      'patient.identifier': mrn,
    });
    expect(surveys.length).toBe(plan.patients.filter((p) => p.survey).length);
    for (const q of surveys) {
      const score = q.item?.find((i) => i.linkId === RECOMMEND_SCORE)?.answer?.[0]?.valueInteger;
      expect(score).toBeGreaterThanOrEqual(0);
      expect(score).toBeLessThanOrEqual(10);
    }
    // Dates spread over the last months, so analytics per month have something to show.
    const months = new Set(surveys.map((q) => q.authored?.slice(0, 7)));
    expect(months.size).toBeGreaterThan(1);
    expect(first.hl7.failed).toBe(0);
  });

  it('when it runs a second time then the FHIR server holds exactly what it held before', async () => {
    const before = await written();
    expect(before['Patient']).toBe(PATIENTS);
    const again = await seedHospital(target, OPTIONS);
    expect(again.anchor).toBe(first.anchor);
    expect(again.stages).toEqual(first.stages);
    expect(await written()).toEqual(before);
  });
});
