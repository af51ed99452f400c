/**
 * Overdue care-plan activities as work for the care team: one `care-plan-activity` Task per activity of an
 * active CarePlan that is past its scheduled time and not done (the same reading as the timeline's pain point),
 * raised and closed by a sweep (reminders/care-plan-sweep-worker.ts). Framework-free: the caller passes the
 * FHIR port, serialises sweeps and schedules them.
 *
 * Invariants:
 * - One Task per (plan, activity index, due instant), keyed on that business identifier and created
 *   conditionally: a replay, a second sweep or a crash mid-sweep creates nothing more. A Task the care team
 *   completed stays completed while the activity stays overdue (its key still exists); an activity moved to a
 *   new date that becomes overdue again is a new occurrence and gets a new Task.
 * - An open Task whose activity is no longer overdue (done, cancelled, moved, the plan ended) is closed by the
 *   sweep with a Provenance: `completed` when the activity was completed, `cancelled` otherwise. Closing is
 *   versioned (If-Match); a Task changed meanwhile (claimed) is left for the next sweep.
 * - Searches scale: the overdue plans in pages (`activity-date=lt<now>`), the Tasks that exist for them by
 *   `focus` in chunks, the open Tasks in pages, the journeys' care managers and the plans of open Tasks by `_id`
 *   in chunks. Never one request per patient.
 */
import type { BundleEntry, CarePlan, EpisodeOfCare, Reference, Task } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { canonical } from '../fhir/canonical.js';
import { versionedUpdate } from '../fhir/bundles.js';
import { FhirError } from '../fhir/errors.js';
import { OPEN_TASK_STATUSES } from './board.js';
import { journeyProvenance, type Actor } from './provenance.js';
import { overdueActivities, type OverdueActivity } from './care-plan-activities.js';

export const CARE_PLAN_TASK_CODE = 'care-plan-activity';
const SWEEP_ACTOR: Actor = { subject: 'careway-care-plan-sweep' };
const DONE: readonly string[] = ['completed', 'cancelled', 'stopped', 'entered-in-error'];
/** How many ids go in one `_id` / `focus` search, and how many creates in one transaction. */
const CHUNK = 50;

const keyOf = (t: Task): string | undefined =>
  t.identifier?.find((i) => i.system === canonical.carePlanActivityTaskSystem)?.value;

const journeyOf = (r: { extension?: CarePlan['extension'] }): string | undefined =>
  r.extension?.find((x) => x.url === canonical.journeyReferenceExtension)?.valueReference?.reference;

const chunks = <T>(xs: readonly T[], n = CHUNK): T[][] =>
  Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, i * n + n));

function activityTask(
  plan: CarePlan,
  a: OverdueActivity,
  owner: Reference | undefined,
  at: string,
): BundleEntry {
  const journey = journeyOf(plan);
  const task: Task = {
    resourceType: 'Task',
    identifier: [{ system: canonical.carePlanActivityTaskSystem, value: a.key }],
    status: 'requested',
    intent: 'order',
    priority: 'routine',
    code: {
      coding: [
        { system: canonical.taskCode, code: CARE_PLAN_TASK_CODE, display: 'Overdue care-plan activity' },
      ],
    },
    description: `Care-plan activity "${a.text}" is overdue: arrange it with the patient, or update the plan.`,
    focus: { reference: `CarePlan/${plan.id}` },
    basedOn: [{ reference: `CarePlan/${plan.id}` }],
    ...(plan.subject.reference ? { for: { reference: plan.subject.reference } } : {}),
    ...(owner ? { owner } : {}),
    authoredOn: at,
    // Due when the activity was: the worklist shows it overdue from the start.
    restriction: { period: { end: new Date(a.dueMs).toISOString() } },
    input: [{ type: { text: 'activity' }, valueInteger: a.index }],
    ...(journey
      ? { extension: [{ url: canonical.journeyReferenceExtension, valueReference: { reference: journey } }] }
      : {}),
  };
  return {
    resource: task,
    request: {
      method: 'POST',
      url: 'Task',
      ifNoneExist: new URLSearchParams({
        identifier: `${canonical.carePlanActivityTaskSystem}|${a.key}`,
      }).toString(),
    },
  };
}

export interface CarePlanSweepOptions {
  readonly now?: Date;
  /** Pages of 200 read per search, at most (default 500: 100,000 overdue plans or open Tasks). */
  readonly maxPages?: number;
}

export interface CarePlanSweepResult {
  /** Tasks created by this sweep. */
  readonly raised: number;
  /** Open Tasks closed because their activity is no longer overdue. */
  readonly closed: number;
}

/**
 * One sweep: raises the Tasks of overdue activities that have none, closes the open ones that are resolved.
 * Page by page, so memory stays one page deep however many plans are overdue.
 */
export async function sweepCarePlanActivities(
  fhir: FhirPort,
  o: CarePlanSweepOptions = {},
): Promise<CarePlanSweepResult> {
  const now = o.now ?? new Date();
  const maxPages = o.maxPages ?? 500;
  const first = await fhir.search<CarePlan>(
    'CarePlan',
    { status: 'active', 'activity-date': `lt${now.toISOString()}`, _count: 200 },
    { noCache: true },
  );
  let raised = 0;
  for await (const page of fhir.pages(first, { noCache: true, maxPages }))
    raised += await raiseForPage(
      fhir,
      (page.entry ?? []).flatMap((e) => (e.resource?.resourceType === 'CarePlan' ? [e.resource] : [])),
      now,
    );
  return { raised, closed: await closeResolved(fhir, now, maxPages) };
}

/** The Tasks of one page of overdue plans: those that have none yet (in any status) are created. */
async function raiseForPage(fhir: FhirPort, plans: readonly CarePlan[], now: Date): Promise<number> {
  const byId = new Map(plans.filter((p) => p.id).map((p) => [p.id!, p]));
  const due = plans.flatMap((p) => overdueActivities(p, now.getTime()));
  if (due.length === 0) return 0;
  // Which already have a Task, whatever its status (a completed one is not raised again).
  const existing = new Set<string>();
  for (const ids of chunks([...new Set(due.map((a) => a.planId))])) {
    const tasks = await fhir.searchAll<Task>(
      'Task',
      {
        code: `${canonical.taskCode}|${CARE_PLAN_TASK_CODE}`,
        focus: ids.map((id) => `CarePlan/${id}`).join(','),
        _elements: 'identifier',
        _count: 200,
      },
      { noCache: true, maxPages: 50 },
    );
    for (const t of tasks) {
      const k = keyOf(t);
      if (k) existing.add(k);
    }
  }
  const missing = due.filter((a) => !existing.has(a.key));
  const owners = await careManagers(
    fhir,
    missing.map((a) => byId.get(a.planId)!),
  );
  const at = now.toISOString();
  let raised = 0;
  for (const batch of chunks(missing)) {
    const entry = batch.map((a) => activityTask(byId.get(a.planId)!, a, owners.get(a.planId), at));
    // Conditional creates: a retried transaction finds what the first one wrote.
    const res = await fhir.transaction(
      { resourceType: 'Bundle', type: 'transaction', entry },
      { idempotent: true },
    );
    raised += (res.entry ?? []).filter((e) => e.response?.status?.startsWith('201')).length;
  }
  return raised;
}

/**
 * The Task's owner: the journey's care manager (else its first team), else the plan's author when a
 * practitioner. The journeys are read by `_id` in chunks.
 */
async function careManagers(fhir: FhirPort, plans: readonly CarePlan[]): Promise<Map<string, Reference>> {
  const journeyIds = [
    ...new Set(
      plans
        .map((p) => journeyOf(p))
        .filter((r): r is string => !!r?.startsWith('EpisodeOfCare/'))
        .map((r) => r.slice('EpisodeOfCare/'.length)),
    ),
  ];
  const journeys = new Map<string, EpisodeOfCare>();
  for (const ids of chunks(journeyIds)) {
    const found = await fhir.searchAll<EpisodeOfCare>(
      'EpisodeOfCare',
      { _id: ids.join(','), _count: 200 },
      { noCache: true, maxPages: 2 },
    );
    for (const e of found) journeys.set(`EpisodeOfCare/${e.id}`, e);
  }
  const out = new Map<string, Reference>();
  for (const p of plans) {
    const j = journeys.get(journeyOf(p) ?? '');
    const owner =
      j?.careManager ??
      j?.team?.[0] ??
      (p.author?.reference?.startsWith('Practitioner/') ? { reference: p.author.reference } : undefined);
    if (owner?.reference && p.id) out.set(p.id, { reference: owner.reference });
  }
  return out;
}

/** Open Tasks whose activity is no longer overdue are closed (versioned, with a Provenance), page by page. */
async function closeResolved(fhir: FhirPort, now: Date, maxPages: number): Promise<number> {
  const first = await fhir.search<Task>(
    'Task',
    {
      code: `${canonical.taskCode}|${CARE_PLAN_TASK_CODE}`,
      status: OPEN_TASK_STATUSES.join(','),
      _count: 200,
    },
    { noCache: true },
  );
  let closed = 0;
  for await (const page of fhir.pages(first, { noCache: true, maxPages })) {
    const open = (page.entry ?? []).flatMap((e) => (e.resource?.resourceType === 'Task' ? [e.resource] : []));
    const plans = new Map<string, CarePlan>();
    for (const ids of chunks([...new Set(open.map(planOf).filter((id): id is string => !!id))])) {
      const found = await fhir.searchAll<CarePlan>(
        'CarePlan',
        { _id: ids.join(','), _count: 200 },
        { noCache: true, maxPages: 2 },
      );
      for (const p of found) if (p.id) plans.set(p.id, p);
    }
    for (const task of open) if (await closeIfResolved(fhir, task, plans, now)) closed++;
  }
  return closed;
}

const planOf = (t: Task): string | undefined => /^CarePlan\/(.+)$/.exec(t.focus?.reference ?? '')?.[1];

async function closeIfResolved(
  fhir: FhirPort,
  task: Task,
  plans: ReadonlyMap<string, CarePlan>,
  now: Date,
): Promise<boolean> {
  const key = keyOf(task);
  const planId = planOf(task);
  if (!key || !planId || !task.id) return false;
  const plan = plans.get(planId);
  if (plan && overdueActivities(plan, now.getTime()).some((a) => a.key === key)) return false;
  const index = Number(key.split('/')[1]);
  const activityStatus = plan?.activity?.[index]?.detail?.status;
  const done = activityStatus === 'completed';
  const why = !plan
    ? 'the care plan is gone'
    : plan.status !== 'active'
      ? `the care plan is ${plan.status}`
      : done
        ? 'the activity was completed'
        : activityStatus && DONE.includes(activityStatus)
          ? `the activity is ${activityStatus}`
          : 'the activity was rescheduled';
  const status = done ? 'completed' : 'cancelled';
  const at = now.toISOString();
  const { meta: _meta, ...rest } = task;
  const next: Task & { id: string } = {
    ...rest,
    id: task.id,
    status,
    statusReason: { text: why },
    lastModified: at,
    ...(done ? { executionPeriod: { ...task.executionPeriod, end: at } } : {}),
  };
  try {
    await fhir.transaction(
      versionedUpdate(
        next,
        task.meta?.versionId,
        journeyProvenance({
          target: `Task/${task.id}`,
          at,
          actor: SWEEP_ACTOR,
          activity: 'UPDATE',
          reason: `Care-plan activity no longer overdue: ${why}`,
          change: `task:${task.status}->${status}`,
        }),
      ),
    );
    return true;
  } catch (e) {
    // Changed meanwhile (claimed, completed): the next sweep decides on the new version.
    if (!(e instanceof FhirError && e.isConflict)) throw e;
    return false;
  }
}
