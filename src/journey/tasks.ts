/**
 * The care team's work: every Task Careway creates, as one worklist, and the two things anyone does with one
 * (claim it, complete it). Framework-free: the caller passes the FHIR port and decides access.
 *
 * The kinds, and how each is recognised on the FHIR server (the data the other areas already write):
 * - `referral-triage`: identifier system `…/sid/referral-triage` (referral intake, HL7 REF);
 * - `no-show-follow-up`: code `…/CodeSystem/task-code|no-show-follow-up` (scheduling's no-show handling);
 * - `answer-patient`: code `…|answer-patient` (a patient's free-text reply, reminders/replies.ts);
 * - `care-plan-activity`: code `…|care-plan-activity` (an overdue activity of an active CarePlan, raised and
 *   closed by the care-plan sweep, journey/care-plan-tasks.ts);
 * - `waitlist-offer`: code `…|waitlist-offer` (an offer to a patient Careway cannot tell on their own channel,
 *   raised with the offer and closed when it is accepted or expires, scheduling/offer-tasks.ts).
 *
 * Writes: one transaction of the Task (`If-Match` on the version read, or on the caller's If-Match) and a
 * Provenance naming the agent. A replay finds the Task already in the asked-for state and writes nothing.
 * Referral triage Tasks are completed by the referral service (`$complete` keeps its triage semantics: the
 * journey moves and the referrer is told); claiming one only sets its owner, since a triage Task's status is
 * the referral decision.
 */
import type { Annotation, Patient, Practitioner, Reference, Resource, Task } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { canonical } from '../fhir/canonical.js';
import { versionedUpdate } from '../fhir/bundles.js';
import { retryOnConflict } from '../fhir/conflicts.js';
import { mustRead } from '../fhir/reads.js';
import { CarewayError } from '../shared/errors.js';
import { journeyProvenance, type Actor } from './provenance.js';
import { humanName, OPEN_TASK_STATUSES } from './board.js';

export const TASK_KINDS = [
  'referral-triage',
  'no-show-follow-up',
  'answer-patient',
  'care-plan-activity',
  'waitlist-offer',
] as const;
export type TaskKind = (typeof TASK_KINDS)[number];
const CODED_KINDS: readonly TaskKind[] = TASK_KINDS.filter((k) => k !== 'referral-triage');

export const TASK_STATUSES = [
  'draft',
  'requested',
  'received',
  'accepted',
  'rejected',
  'ready',
  'cancelled',
  'in-progress',
  'on-hold',
  'failed',
  'completed',
  'entered-in-error',
] as const;
/** A Task in one of these is finished with: it can be neither claimed nor completed. */
const CLOSED = ['cancelled', 'rejected', 'failed', 'entered-in-error'];

export const isTaskKind = (k: string): k is TaskKind => (TASK_KINDS as readonly string[]).includes(k);

/** The Careway kind of a Task, or undefined for a Task Careway did not create. */
export function kindOf(task: Task): TaskKind | undefined {
  if (task.identifier?.some((i) => i.system === canonical.triageTaskSystem)) return 'referral-triage';
  const code = task.code?.coding?.find((c) => c.system === canonical.taskCode)?.code;
  return code && isTaskKind(code) ? code : undefined;
}

export interface WorklistFilters {
  readonly kinds?: readonly TaskKind[];
  readonly owner?: string;
  readonly statuses?: readonly string[];
  readonly overdue?: boolean;
  readonly limit: number;
}

export interface WorklistItem {
  readonly id: string;
  readonly kind: TaskKind;
  readonly status: string;
  readonly priority?: string;
  readonly authoredOn: string;
  readonly due?: string;
  readonly overdue: boolean;
  readonly owner?: { reference: string; display?: string };
  readonly patientId?: string;
  readonly patientName?: string;
  readonly episodeId?: string;
  readonly summary: string;
  /** The version, for If-Match on $claim / $complete. */
  readonly version?: string;
}

const dueOf = (t: Task): string | undefined => t.restriction?.period?.end ?? t.executionPeriod?.end;

const SUMMARY: Record<TaskKind, string> = {
  'referral-triage': 'Triage a referral',
  'no-show-follow-up': 'Follow up a missed appointment',
  'answer-patient': 'Answer a patient message',
  'care-plan-activity': 'Overdue care-plan activity',
  'waitlist-offer': 'Phone the patient about a waitlist offer',
};

export interface TaskWriteResult {
  readonly task: Task;
  readonly changed: boolean;
}

const versionOf = (ifMatch: string | undefined): string | undefined =>
  ifMatch === undefined ? undefined : ifMatch.replace(/^W\//, '').replace(/"/g, '');

export class CareTasks {
  constructor(
    private readonly fhir: FhirPort,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /**
   * The worklist: at most two searches (triage Tasks by identifier system, the coded kinds by code), each
   * paged up to `limit`, with the patients (`_include`, only when `withPatients`) and owners' names.
   */
  async worklist(
    f: WorklistFilters,
    see: { patients: boolean; practitioners: boolean },
  ): Promise<WorklistItem[]> {
    const kinds = f.kinds?.length ? f.kinds : TASK_KINDS;
    const common: Record<string, string> = {
      status: (f.statuses?.length ? f.statuses : OPEN_TASK_STATUSES).join(','),
      _count: String(Math.min(200, f.limit)),
      _sort: 'authored-on',
    };
    if (f.owner) common['owner'] = f.owner;
    const searches: URLSearchParams[] = [];
    const coded = kinds.filter((k) => CODED_KINDS.includes(k));
    if (kinds.includes('referral-triage'))
      searches.push(new URLSearchParams({ ...common, identifier: `${canonical.triageTaskSystem}|` }));
    if (coded.length)
      searches.push(
        new URLSearchParams({ ...common, code: coded.map((k) => `${canonical.taskCode}|${k}`).join(',') }),
      );
    for (const s of searches) {
      if (see.patients) s.append('_include', 'Task:patient');
      if (see.practitioners) s.append('_include', 'Task:owner');
    }
    const included = new Map<string, Resource>();
    const tasks: Task[] = [];
    const maxPages = Math.ceil(f.limit / 200) + 1;
    await Promise.all(
      searches.map(async (params) => {
        const first = await this.fhir.search<Resource>('Task', params, { noCache: true });
        for await (const page of this.fhir.pages(first, { noCache: true, maxPages }))
          for (const e of page.entry ?? []) {
            const r = e.resource;
            if (!r?.id) continue;
            if (e.search?.mode === 'include') included.set(`${r.resourceType}/${r.id}`, r);
            else if (r.resourceType === 'Task') tasks.push(r as Task);
          }
      }),
    );
    const nowMs = this.clock().getTime();
    const items = tasks.flatMap((t): WorklistItem[] => {
      const kind = kindOf(t);
      if (!kind || !kinds.includes(kind)) return [];
      const due = dueOf(t);
      const dueMs = due ? Date.parse(due) : NaN;
      const overdue = Number.isFinite(dueMs) && dueMs < nowMs && !['completed', ...CLOSED].includes(t.status);
      if (f.overdue && !overdue) return [];
      const patientRef = t.for?.reference?.startsWith('Patient/') ? t.for.reference : undefined;
      const patientName = patientRef ? humanName(included.get(patientRef) as Patient | undefined) : undefined;
      const episode = t.extension
        ?.find((e) => e.url === canonical.journeyReferenceExtension)
        ?.valueReference?.reference?.replace(/^EpisodeOfCare\//, '');
      const ownerName =
        t.owner?.display ?? humanName(included.get(t.owner?.reference ?? '') as Practitioner | undefined);
      return [
        {
          id: t.id ?? '',
          kind,
          status: t.status,
          ...(t.priority ? { priority: t.priority } : {}),
          authoredOn: t.authoredOn ?? t.meta?.lastUpdated ?? '',
          ...(due ? { due } : {}),
          overdue,
          ...(t.owner?.reference
            ? { owner: { reference: t.owner.reference, ...(ownerName ? { display: ownerName } : {}) } }
            : {}),
          ...(patientRef ? { patientId: patientRef.slice('Patient/'.length) } : {}),
          ...(see.patients && patientName ? { patientName } : {}),
          ...(episode ? { episodeId: episode } : {}),
          summary: t.description ?? t.code?.text ?? t.code?.coding?.[0]?.display ?? SUMMARY[kind],
          ...(t.meta?.versionId ? { version: t.meta.versionId } : {}),
        },
      ];
    });
    // Overdue first, then the oldest: what has waited longest is done first.
    items.sort((a, b) => Number(b.overdue) - Number(a.overdue) || a.authoredOn.localeCompare(b.authoredOn));
    return items.slice(0, f.limit);
  }

  /** A Careway Task by id: 404 when missing, 422 when Careway did not create it. */
  async read(id: string): Promise<{ task: Task; kind: TaskKind }> {
    const task = await mustRead<Task>(this.fhir, 'Task', id, 'not-found');
    const kind = kindOf(task);
    if (!kind)
      throw new CarewayError('rule-violation', 'rule not-a-careway-task: Careway did not create this Task', {
        detailsCode: 'not-a-careway-task',
      });
    return { task, kind };
  }

  /** `$claim`: the Task gets an owner (a follow-up also becomes `accepted`); the same owner again writes nothing. */
  claim(id: string, owner: Reference, actor: Actor, ifMatch?: string): Promise<TaskWriteResult> {
    return this.change(id, actor, ifMatch, (task, kind) => {
      if (CLOSED.includes(task.status) || task.status === 'completed') throw closedError(task, 'claimed');
      if (task.owner?.reference === owner.reference) return undefined;
      const accept = kind !== 'referral-triage' && ['requested', 'received', 'ready'].includes(task.status);
      return {
        next: { ...task, owner, ...(accept ? { status: 'accepted' as const } : {}) },
        change: `task:owner:${task.owner?.reference ?? '-'}->${owner.reference ?? '-'}`,
        reason: 'Task claimed',
      };
    });
  }

  /**
   * `$complete` for every kind but referral triage (the referral service owns that). Already completed: nothing
   * is written (a replay). A cancelled, rejected or failed Task cannot be completed.
   */
  complete(id: string, note: string | undefined, actor: Actor, ifMatch?: string): Promise<TaskWriteResult> {
    return this.change(id, actor, ifMatch, (task, kind, at) => {
      if (kind === 'referral-triage')
        throw new CarewayError('internal', 'a referral triage Task is completed by the referral service');
      if (task.status === 'completed') return undefined;
      if (CLOSED.includes(task.status)) throw closedError(task, 'completed');
      const text = note?.trim();
      const annotation: Annotation | undefined = text
        ? {
            text,
            time: at,
            ...(actor.fhirUser
              ? { authorReference: { reference: actor.fhirUser } }
              : { authorString: actor.subject }),
          }
        : undefined;
      return {
        next: {
          ...task,
          status: 'completed',
          executionPeriod: { ...task.executionPeriod, end: at },
          ...(annotation ? { note: [...(task.note ?? []), annotation] } : {}),
        },
        change: `task:${task.status}->completed`,
        reason: text || 'Task completed',
      };
    });
  }

  private async change(
    id: string,
    actor: Actor,
    ifMatch: string | undefined,
    compute: (
      task: Task,
      kind: TaskKind,
      at: string,
    ) => { next: Task; change: string; reason: string } | undefined,
  ): Promise<TaskWriteResult> {
    const wanted = versionOf(ifMatch);
    return retryOnConflict(
      async (): Promise<TaskWriteResult> => {
        const { task, kind } = await this.read(id);
        const at = this.clock().toISOString();
        const computed = compute(task, kind, at);
        // Already in the asked-for state (a replay, whatever version it names): nothing to write.
        if (!computed) return { task, changed: false };
        if (wanted !== undefined && wanted !== task.meta?.versionId)
          throw new CarewayError(
            'conflict',
            `If-Match ${ifMatch ?? ''} does not match the current version ${task.meta?.versionId ?? '?'}`,
          );
        const { meta: _meta, ...rest } = computed.next;
        const updated: Task & { id: string } = { ...rest, id, lastModified: at };
        const tx = versionedUpdate(
          updated,
          task.meta?.versionId,
          journeyProvenance({
            target: `Task/${id}`,
            at,
            actor,
            activity: 'UPDATE',
            reason: computed.reason,
            change: computed.change,
          }),
        );
        // Safe to retry: a replay after a lost response fails its If-Match, and the next attempt recomputes.
        await this.fhir.transaction(tx, { idempotent: true });
        return { task: await this.fhir.read<Task>('Task', id, { noCache: true }), changed: true };
      },
      {
        // With the caller's If-Match the caller decides again; without it, re-read and recompute.
        attempts: wanted === undefined ? 4 : 1,
        exhausted: 'the Task changed while this change was applied; re-read and retry',
      },
    );
  }
}

function closedError(task: Task, what: string): CarewayError {
  return new CarewayError('rule-violation', `rule task-closed: a ${task.status} Task cannot be ${what}`, {
    detailsCode: 'task-closed',
  });
}
