/**
 * Continuous care and education.
 *
 * - A CarePlan activity with a repeating timing (`detail.scheduledTiming.repeat`: frequency per period, e.g. a
 *   check-up every 3 months) becomes a BullMQ job scheduler that sends a `check-up` notification at that rhythm,
 *   until the plan is no longer active or its journey ends (each run re-reads both and stops the scheduler).
 * - Entering a journey stage sends that stage's education once per journey: DocumentReferences categorised with
 *   the stage's code (the journey-stage CodeSystem), from the shared library or linked to this journey.
 */
import type { CarePlan, DocumentReference, EpisodeOfCare } from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import type { FhirPort } from '../fhir/client.js';
// One reading of "recurring" for check-ups and for the journey's `followup-plan-active` event.
import { activityLive, intervalMs } from '../journey/resource-events.js';
import type { NotifyJob } from './jobs.js';

export interface Recurring {
  /** Scheduler id, stable per plan and activity. */
  readonly id: string;
  readonly everyMs: number;
  readonly startMs?: number;
  readonly job: NotifyJob;
}

const OPEN = ['planned', 'waitlist', 'active', 'onhold'];
const journeyOf = (r: { extension?: CarePlan['extension'] }): string | undefined =>
  r.extension?.find((x) => x.url === canonical.journeyReferenceExtension)?.valueReference?.reference;

/** The recurring reminders a CarePlan asks for now (empty when the plan or its journey is over). */
export async function recurringFor(fhir: FhirPort, plan: CarePlan): Promise<Recurring[]> {
  const patient = /^Patient\/(.+)$/.exec(plan.subject.reference ?? '')?.[1];
  if (plan.status !== 'active' || !patient) return [];
  const journey = journeyOf(plan);
  if (journey?.startsWith('EpisodeOfCare/')) {
    const ep = await fhir
      .read<EpisodeOfCare>('EpisodeOfCare', journey.slice('EpisodeOfCare/'.length), { noCache: true })
      .catch(() => undefined);
    if (!ep || !OPEN.includes(ep.status)) return [];
  }
  const out: Recurring[] = [];
  (plan.activity ?? []).forEach((a, i) => {
    const every = intervalMs(a.detail?.scheduledTiming);
    if (!every || !activityLive(a)) return;
    const start = a.detail?.scheduledTiming?.repeat?.boundsPeriod?.start;
    out.push({
      id: `checkup-${plan.id}-${i}`,
      everyMs: every,
      ...(start ? { startMs: Date.parse(start) } : {}),
      job: {
        kind: 'check-up',
        recipient: `Patient/${patient}`,
        about: `CarePlan/${plan.id}`,
        context: `activity-${i}`,
      },
    });
  });
  return out;
}

/** Whether a check-up run should still go out (the plan active, the activity live, the journey open). */
export async function checkUpStillWanted(fhir: FhirPort, job: NotifyJob): Promise<boolean> {
  const id = /^CarePlan\/(.+)$/.exec(job.about)?.[1];
  if (!id) return false;
  const plan = await fhir.read<CarePlan>('CarePlan', id, { noCache: true }).catch(() => undefined);
  if (!plan) return false;
  return (await recurringFor(fhir, plan)).some((r) => r.job.context === job.context);
}

/** Education for a stage the journey just entered: one notification per document, once per journey. */
export async function educationFor(
  fhir: FhirPort,
  episode: EpisodeOfCare,
  stage: string,
): Promise<NotifyJob[]> {
  const patient = /^Patient\/(.+)$/.exec(episode.patient.reference ?? '')?.[1];
  if (!patient) return [];
  const docs = await fhir.searchAll<DocumentReference>(
    'DocumentReference',
    { category: `${canonical.journeyStageCodeSystem}|${stage}`, status: 'current', _count: 50 },
    { noCache: true, maxPages: 2 },
  );
  return docs
    .filter((d) => {
      const j = journeyOf(d);
      return j === undefined || j === `EpisodeOfCare/${episode.id}`;
    })
    .map((d) => ({
      kind: 'education' as const,
      recipient: `Patient/${patient}`,
      about: `DocumentReference/${d.id}`,
      context: `EpisodeOfCare/${episode.id}`,
    }));
}
