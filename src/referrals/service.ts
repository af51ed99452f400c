/**
 * The one referral path: whatever shape a referral arrived in, it is validated, matched and written here.
 *
 * What one referral creates, in one FHIR transaction: the Patient (matched on identifier), supporting
 * resources, the ServiceRequest (keyed on the referrer's identifier), a triage Task, the journey
 * (EpisodeOfCare at `access`, referral linked) and a Provenance.
 *
 * Idempotency: the same referral posted again writes nothing and answers with the same ids. A changed
 * referral (same identifier, different content) updates the ServiceRequest with If-Match, plus a Provenance.
 * Writes for one patient are serialised with the patient's lock.
 */
import type {
  Bundle,
  BundleEntry,
  EpisodeOfCare,
  Extension,
  Identifier,
  MessageHeader,
  OperationOutcomeIssue,
  Provenance,
  Resource,
  ServiceRequest,
  Task,
} from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { FhirError } from '../fhir/errors.js';
import { versionedUpdate } from '../fhir/bundles.js';
import { retryOnConflict } from '../fhir/conflicts.js';
import { mustRead } from '../fhir/reads.js';
import { CANONICAL_BASE, canonical, versioned } from '../fhir/canonical.js';
import { CarewayError } from '../shared/errors.js';
import type { KeyedLock } from '../shared/lock.js';
import { journeyLink, newJourneyEpisode } from '../journey/episode.js';
import { initialState } from '../journey/rules.js';
import { journeyProvenance, type Actor } from '../journey/provenance.js';
import type { JourneyService } from '../journey/service.js';
import type { Problem, Submission } from './submission.js';

/** A refused referral: one OperationOutcome issue per problem, each with its FHIRPath expression. */
export function referralRejected(status: 400 | 422, issues: OperationOutcomeIssue[]): CarewayError {
  return new CarewayError(
    status === 400 ? 'bad-request' : 'unprocessable',
    issues[0]?.diagnostics ?? 'referral refused',
    {
      issues,
    },
  );
}

export function rejectProblems(problems: readonly Problem[]): CarewayError {
  const status = problems.some((p) => p.status === 400) ? 400 : 422;
  return referralRejected(
    status,
    problems.map((p) => ({
      severity: 'error',
      code: p.status === 400 ? 'structure' : 'business-rule',
      diagnostics: p.message,
      expression: [p.expression],
    })),
  );
}

export type IntakeOutcome = 'created' | 'unchanged' | 'updated';

export interface IntakeResult {
  readonly outcome: IntakeOutcome;
  readonly serviceRequest: ServiceRequest;
  readonly task: Task;
  readonly episode: EpisodeOfCare;
  /** One entry per stored resource, in the order of a transaction-response. */
  readonly response: Bundle;
}

export type TriageAction = 'accept' | 'reject' | 'start' | 'complete';

const TASK_STATUS: Record<TriageAction, Task['status']> = {
  accept: 'accepted',
  reject: 'rejected',
  start: 'in-progress',
  complete: 'completed',
};

/** Triage moves allowed from each Task status. */
const TRIAGE_FROM: Readonly<Record<string, readonly Task['status'][]>> = {
  requested: ['accepted', 'rejected'],
  received: ['accepted', 'rejected'],
  accepted: ['in-progress', 'completed', 'rejected'],
  'in-progress': ['completed'],
};

/**
 * Triage through plain FHIR writes, for systems that do not call operations: the Task status a PUT or a
 * JSON Patch asks for, and the triage action it stands for.
 */
export const ACTION_FOR_STATUS: Readonly<Record<string, TriageAction>> = {
  accepted: 'accept',
  rejected: 'reject',
  'in-progress': 'start',
  completed: 'complete',
};

/**
 * The reply to a referral message (`$process-message`): a message Bundle whose MessageHeader answers the
 * referrer's (same event, `response.identifier` = their message id) and focuses on what was stored.
 */
export function messageResponse(
  result: IntakeResult,
  incoming: Submission | undefined,
  endpoint: string,
): Bundle {
  const header: MessageHeader = {
    resourceType: 'MessageHeader',
    id: crypto.randomUUID(),
    eventCoding: {
      system: incoming?.event?.system ?? `${CANONICAL_BASE}/CodeSystem/message-event`,
      code: incoming?.event?.code ?? 'referral',
    },
    source: { name: 'Careway', endpoint },
    response: { identifier: incoming?.messageId ?? 'unknown', code: 'ok' },
    focus: [
      { reference: `ServiceRequest/${result.serviceRequest.id}` },
      { reference: `Task/${result.task.id}` },
      { reference: `EpisodeOfCare/${result.episode.id}` },
    ],
  };
  return {
    resourceType: 'Bundle',
    type: 'message',
    timestamp: new Date().toISOString(),
    entry: [
      { fullUrl: `urn:uuid:${header.id}`, resource: header },
      { fullUrl: `${endpoint}/ServiceRequest/${result.serviceRequest.id}`, resource: result.serviceRequest },
      { fullUrl: `${endpoint}/Task/${result.task.id}`, resource: result.task },
      { fullUrl: `${endpoint}/EpisodeOfCare/${result.episode.id}`, resource: result.episode },
    ],
  };
}

/** The fields of a triage Task that a plain FHIR write may not change (all but status and its reason). */
function fixedFields(t: Task): string {
  const { meta: _m, status: _s, statusReason: _r, lastModified: _l, text: _t, ...rest } = t;
  return JSON.stringify(rest, Object.keys(rest).sort());
}

export interface ReferralServiceOptions {
  readonly fhir: FhirPort;
  readonly lock: KeyedLock;
  readonly journeys: JourneyService;
  /** Organization/{id} that owns triage Tasks, when configured. */
  readonly receivingOrganization?: string;
  /** Origins Careway may send status updates to (a referrer's reply address must be on this list). */
  readonly replyAllowlist: readonly string[];
  /** Configured reply endpoints per referral identifier system (used when a referral carries none). */
  readonly endpoints?: Readonly<Record<string, string>>;
  /** Called after a triage change is stored, to queue the update to the referrer. */
  readonly onStatusChange?: (taskId: string, version: string) => Promise<void>;
  readonly clock?: () => Date;
}

const ident = (i: Identifier): string => `${i.system ?? ''}|${i.value ?? ''}`;
const businessId = (r: { identifier?: Identifier[] }): Identifier | undefined =>
  (Array.isArray(r.identifier) ? r.identifier : []).find((i) => i?.system && i.value);
const query = (i: Identifier): string => new URLSearchParams({ identifier: ident(i) }).toString();

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Same referral content? References are compared as first stored (they were resolved at intake), so only
 * what a referrer can change counts: status, intent, code, reason, priority, notes, timing and so on. */
function sameClinicalContent(a: ServiceRequest, b: ServiceRequest): boolean {
  const pick = (sr: ServiceRequest): Record<string, unknown> => {
    const copy: Record<string, unknown> = { ...sr };
    for (const k of [
      'id',
      'meta',
      'text',
      'subject',
      'requester',
      'performer',
      'reasonReference',
      'supportingInfo',
      'encounter',
      'basedOn',
      'replaces',
      'specimen',
      'insurance',
      'relevantHistory',
      'contained',
    ]) {
      delete copy[k];
    }
    return copy;
  };
  return stableJson(pick(a)) === stableJson(pick(b));
}

function locationOf(r: Resource): string {
  return `${r.resourceType}/${r.id ?? ''}/_history/${r.meta?.versionId ?? '1'}`;
}

const urn = (): string => `urn:uuid:${crypto.randomUUID()}`;

/** The full URLs that tie one intake transaction together (`patient` is the subject's reference). */
interface IntakeUrls {
  readonly serviceRequest: string;
  readonly episode: string;
  readonly task: string;
  readonly patient: string;
}

/** A link from a resource to the journey being created in the same transaction. */
const journeyLinkTo = (episodeUrl: string): Extension => ({
  ...journeyLink('x'),
  valueReference: { reference: episodeUrl },
});

/**
 * The Patient and the supporting resources as the referrer sent them, each created unless its business
 * identifier finds it. Supporting resources that can carry the journey link get it.
 */
function submittedEntries(sub: Submission, episodeUrl: string): BundleEntry[] {
  const entries: BundleEntry[] = [];
  if (sub.patient) {
    const pid = businessId(sub.patient.resource);
    entries.push({
      fullUrl: sub.patient.fullUrl ?? urn(),
      resource: sub.patient.resource,
      request: { method: 'POST', url: 'Patient', ...(pid ? { ifNoneExist: query(pid) } : {}) },
    });
  }
  for (const s of sub.supporting) {
    const r = s.resource as Resource & { identifier?: Identifier[]; extension?: Extension[] };
    const linkable = ['Condition', 'DocumentReference', 'QuestionnaireResponse'].includes(r.resourceType);
    const withLink = linkable ? { ...r, extension: [...(r.extension ?? []), journeyLinkTo(episodeUrl)] } : r;
    const bid = businessId(r);
    entries.push({
      fullUrl: s.fullUrl ?? urn(),
      resource: withLink,
      request: { method: 'POST', url: r.resourceType, ...(bid ? { ifNoneExist: query(bid) } : {}) },
    });
  }
  return entries;
}

/** The ServiceRequest (on the referral profile) and its journey, at stage `access`, keyed on the referral. */
function referralEntries(sub: Submission, srIdent: Identifier, urls: IntakeUrls, at: string): BundleEntry[] {
  const sr = sub.serviceRequest.resource;
  const journeyIdent: Identifier = { system: canonical.journeyForReferralSystem, value: ident(srIdent) };
  return [
    {
      fullUrl: urls.serviceRequest,
      resource: { ...sr, meta: { ...sr.meta, profile: [versioned(canonical.referralProfile)] } },
      request: { method: 'POST', url: 'ServiceRequest', ifNoneExist: query(srIdent) },
    },
    {
      fullUrl: urls.episode,
      resource: newJourneyEpisode({
        identifier: journeyIdent,
        patient: { reference: urls.patient },
        referral: { reference: urls.serviceRequest },
        state: initialState('access', 'active', at, 'Referral received'),
      }),
      request: { method: 'POST', url: 'EpisodeOfCare', ifNoneExist: query(journeyIdent) },
    },
  ];
}

/** The triage Task for the receiving organization, with the referrer's reply address when it is allowed. */
function triageTaskEntry(
  srIdent: Identifier,
  urls: IntakeUrls,
  at: string,
  replyTo: string | undefined,
  owner: string | undefined,
): BundleEntry {
  const taskIdent: Identifier = { system: canonical.triageTaskSystem, value: ident(srIdent) };
  const task: Task = {
    resourceType: 'Task',
    identifier: [taskIdent],
    status: 'requested',
    intent: 'order',
    code: {
      coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }],
      text: 'Triage referral',
    },
    focus: { reference: urls.serviceRequest },
    for: { reference: urls.patient },
    authoredOn: at,
    lastModified: at,
    ...(owner ? { owner: { reference: owner } } : {}),
    extension: [
      journeyLinkTo(urls.episode),
      ...(replyTo ? [{ url: canonical.replyToExtension, valueUrl: replyTo }] : []),
    ],
  };
  return {
    fullUrl: urls.task,
    resource: task,
    request: { method: 'POST', url: 'Task', ifNoneExist: query(taskIdent) },
  };
}

export class ReferralService {
  private readonly o: ReferralServiceOptions;
  private readonly clock: () => Date;

  constructor(options: ReferralServiceOptions) {
    this.o = options;
    this.clock = options.clock ?? (() => new Date());
  }

  /** Validates, matches and stores a referral. Throws a 400/422 CarewayError with every problem found. */
  async intake(sub: Submission, actor: Actor): Promise<IntakeResult> {
    await this.validate(sub);
    await this.checkServerReferences(sub);
    const srIdent = businessId(sub.serviceRequest.resource);
    if (!srIdent)
      throw rejectProblems([
        { expression: `${sub.serviceRequest.path}.identifier`, message: 'identifier required', status: 422 },
      ]);
    const patientIdent = sub.patient ? businessId(sub.patient.resource) : undefined;
    const lockKey = patientIdent
      ? `patient-identifier:${ident(patientIdent)}`
      : `patient:${sub.serviceRequest.resource.subject.reference ?? ''}`;

    return this.o.lock.withLock(lockKey, async () => {
      const [existing] = await this.o.fhir.searchAll<ServiceRequest>(
        'ServiceRequest',
        { identifier: ident(srIdent) },
        { noCache: true, maxPages: 1 },
      );
      if (!existing) return this.create(sub, srIdent, actor);
      const [task] = await this.o.fhir.searchAll<Task>(
        'Task',
        { identifier: `${canonical.triageTaskSystem}|${ident(srIdent)}` },
        { noCache: true, maxPages: 1 },
      );
      const [episode] = await this.o.fhir.searchAll<EpisodeOfCare>(
        'EpisodeOfCare',
        { identifier: `${canonical.journeyForReferralSystem}|${ident(srIdent)}` },
        { noCache: true, maxPages: 1 },
      );
      if (!task || !episode) {
        throw new CarewayError(
          'conflict',
          'this referral identifier is already used by a ServiceRequest that Careway did not create',
        );
      }
      const incoming = sub.serviceRequest.resource;
      if (sameClinicalContent(incoming, existing)) {
        return {
          outcome: 'unchanged',
          serviceRequest: existing,
          task,
          episode,
          response: this.responseBundle([existing, task, episode], '200 OK'),
        };
      }
      return this.update(existing, incoming, task, episode, actor);
    });
  }

  /**
   * A new referral: one transaction (in this order) of the Patient and the supporting resources as sent, the
   * ServiceRequest, the journey, the triage Task and the Provenance; each conditional on its business
   * identifier, so a lost response replayed writes nothing twice.
   */
  private async create(sub: Submission, srIdent: Identifier, actor: Actor): Promise<IntakeResult> {
    const at = this.clock().toISOString();
    const sr = sub.serviceRequest.resource;
    const urls: IntakeUrls = {
      serviceRequest: sub.serviceRequest.fullUrl ?? urn(),
      episode: urn(),
      task: urn(),
      patient: sub.patient ? (sub.patient.fullUrl ?? '') : (sr.subject.reference ?? ''),
    };
    const requested = sub.replyTo ?? this.o.endpoints?.[srIdent.system ?? ''];
    const replyTo = requested && this.replyAllowed(requested) ? requested : undefined;
    const provenance: Provenance = journeyProvenance({
      target: urls.serviceRequest,
      at,
      actor,
      activity: 'CREATE',
      reason: 'Referral received',
      change: `referral:${sub.shape}`,
    });
    provenance.target = [
      { reference: urls.serviceRequest },
      { reference: urls.episode },
      { reference: urls.task },
    ];
    const entries: BundleEntry[] = [
      ...submittedEntries(sub, urls.episode),
      ...referralEntries(sub, srIdent, urls, at),
      triageTaskEntry(srIdent, urls, at, replyTo, this.o.receivingOrganization),
      { fullUrl: urn(), resource: provenance, request: { method: 'POST', url: 'Provenance' } },
    ];
    const res = await this.postIntake(entries);
    return this.storedIntake(res, entries.length);
  }

  /** Posts the intake transaction; the FHIR server refusing it (4xx) refuses the referral (422) with its issues. */
  private async postIntake(entries: BundleEntry[]): Promise<Bundle> {
    try {
      return await this.o.fhir.transaction({ resourceType: 'Bundle', type: 'transaction', entry: entries });
    } catch (e) {
      if (e instanceof FhirError && e.kind === 'http' && e.status >= 400 && e.status < 500) {
        throw referralRejected(
          422,
          (e.outcome?.issue ?? []).length
            ? [...(e.outcome?.issue ?? [])]
            : [
                {
                  severity: 'error',
                  code: 'processing',
                  diagnostics: `the FHIR server refused the referral (${e.status})`,
                },
              ],
        );
      }
      throw e;
    }
  }

  /**
   * What the intake stored, read back by the ids in the transaction-response (ServiceRequest, journey and Task
   * are the 4th, 3rd and 2nd entries from the end), and the response with the journey in it.
   */
  private async storedIntake(res: Bundle, n: number): Promise<IntakeResult> {
    const loc = (i: number): string | undefined => res.entry?.[i]?.response?.location;
    const idOf = (i: number): string => /\/([^/]+)\/_history\//.exec(loc(i) ?? '')?.[1] ?? '';
    const [storedSr, storedEoc, storedTask] = await Promise.all([
      this.o.fhir.read<ServiceRequest>('ServiceRequest', idOf(n - 4), { noCache: true }),
      this.o.fhir.read<EpisodeOfCare>('EpisodeOfCare', idOf(n - 3), { noCache: true }),
      this.o.fhir.read<Task>('Task', idOf(n - 2), { noCache: true }),
    ]);
    const response: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction-response',
      entry: (res.entry ?? []).map((e, i) => ({
        response: e.response ?? { status: '200 OK' },
        ...(i === n - 3 ? { resource: storedEoc } : {}),
      })),
    };
    return { outcome: 'created', serviceRequest: storedSr, task: storedTask, episode: storedEoc, response };
  }

  private async update(
    existing: ServiceRequest,
    incoming: ServiceRequest,
    task: Task,
    episode: EpisodeOfCare,
    actor: Actor,
  ): Promise<IntakeResult> {
    const at = this.clock().toISOString();
    const keep = {
      subject: existing.subject,
      ...(existing.requester ? { requester: existing.requester } : {}),
      ...(existing.performer ? { performer: existing.performer } : {}),
      ...(existing.reasonReference ? { reasonReference: existing.reasonReference } : {}),
      ...(existing.supportingInfo ? { supportingInfo: existing.supportingInfo } : {}),
    };
    const next: ServiceRequest = {
      ...incoming,
      ...keep,
      id: existing.id ?? '',
      meta: { profile: [versioned(canonical.referralProfile)] },
    };
    const tx = versionedUpdate(
      { ...next, id: existing.id ?? '' },
      existing.meta?.versionId,
      journeyProvenance({
        target: `ServiceRequest/${existing.id}`,
        at,
        actor,
        activity: 'UPDATE',
        reason: 'Referral updated by the referrer',
        change: `referral:update`,
      }),
    );
    // No second attempt: the referrer's update was compared with the version read; a newer one needs a new look.
    await retryOnConflict(() => this.o.fhir.transaction(tx), {
      attempts: 1,
      exhausted: 'the referral changed while it was being updated; retry',
    });
    const stored = await this.o.fhir.read<ServiceRequest>('ServiceRequest', existing.id ?? '', {
      noCache: true,
    });
    // A referral the referrer withdrew closes its journey.
    if (
      (stored.status === 'revoked' || stored.status === 'entered-in-error') &&
      episode.id &&
      !['finished', 'cancelled'].includes(episode.status)
    ) {
      await this.o.journeys.close(
        episode.id,
        'cancelled',
        `Referral ${stored.status} by the referrer`,
        actor,
      );
    }
    const freshEpisode = await this.o.fhir.read<EpisodeOfCare>('EpisodeOfCare', episode.id ?? '', {
      noCache: true,
    });
    return {
      outcome: 'updated',
      serviceRequest: stored,
      task,
      episode: freshEpisode,
      response: this.responseBundle([stored, task, freshEpisode], '200 OK'),
    };
  }

  /** Moves the triage Task; the journey follows, and the referrer is told when it left a reply address. */
  async triage(
    taskId: string,
    action: TriageAction,
    reason: string | undefined,
    actor: Actor,
  ): Promise<Task> {
    const task = await this.readTask(taskId);
    const to = TASK_STATUS[action];
    const journeyRef = task.extension?.find((e) => e.url === canonical.journeyReferenceExtension)
      ?.valueReference?.reference;
    const journeyId = /^EpisodeOfCare\/(.+)$/.exec(journeyRef ?? '')?.[1];
    const patient = task.for?.reference ?? '';
    if (task.status === to) return task;
    if (!(TRIAGE_FROM[task.status] ?? []).includes(to)) {
      throw new CarewayError(
        'rule-violation',
        `rule triage-transition: a ${task.status} referral cannot become ${to}`,
        { detailsCode: 'triage-transition' },
      );
    }
    if (action === 'reject' && !reason?.trim()) {
      throw new CarewayError('rule-violation', 'rule reason-required: rejecting a referral needs a reason', {
        detailsCode: 'reason-required',
      });
    }
    const at = this.clock().toISOString();
    const updated = await this.o.lock.withLock(`patient:${patient.replace(/^Patient\//, '')}`, async () => {
      const next: Task & { id: string } = {
        ...task,
        id: task.id ?? '',
        status: to,
        lastModified: at,
        ...(reason?.trim() ? { statusReason: { text: reason.trim() } } : {}),
      };
      const tx = versionedUpdate(
        next,
        task.meta?.versionId,
        journeyProvenance({
          target: `Task/${task.id}`,
          at,
          actor,
          activity: 'UPDATE',
          reason: reason?.trim() || `Referral ${to}`,
          change: `triage:${task.status}->${to}`,
        }),
      );
      // No second attempt: the triage decision was checked against the version read, so the caller re-reads.
      await retryOnConflict(() => this.o.fhir.transaction(tx), {
        attempts: 1,
        exhausted: 'the triage task changed meanwhile; re-read and retry',
      });
      return this.o.fhir.read<Task>('Task', task.id ?? '', { noCache: true });
    });
    // The journey follows (outside the lock: the journey service takes the same patient lock itself).
    if (journeyId) {
      if (to === 'accepted')
        await this.o.journeys.applyEvent(journeyId, 'referral-accepted', actor, {
          reference: `Task/${task.id}`,
        });
      if (to === 'rejected')
        await this.o.journeys.close(
          journeyId,
          'cancelled',
          `Referral rejected: ${reason?.trim() ?? ''}`,
          actor,
        );
      // A completed referral means the patient was seen for it: the first visit is fulfilled.
      if (to === 'completed') {
        await this.o.journeys.applyEvent(journeyId, 'visit-fulfilled', actor, {
          reference: `Task/${task.id}`,
        });
      }
    }
    if (this.o.onStatusChange && updated.extension?.some((e) => e.url === canonical.replyToExtension)) {
      await this.o.onStatusChange(updated.id ?? '', updated.meta?.versionId ?? '');
    }
    return updated;
  }

  /**
   * Triage by a PUT of the whole Task (FHIR update): only status and statusReason may differ from the stored
   * Task; the new status says which triage action to take.
   */
  async triageByUpdate(taskId: string, body: Task, actor: Actor, ifMatch?: string): Promise<Task> {
    if (body.resourceType !== 'Task' || (body.id !== undefined && body.id !== taskId)) {
      throw new CarewayError('bad-request', 'the body must be the Task with the id in the URL');
    }
    const current = await this.readTask(taskId);
    if (fixedFields({ ...body, id: taskId }) !== fixedFields(current)) {
      throw new CarewayError(
        'rule-violation',
        'rule triage-fields: only status and statusReason of a triage Task can change',
        { detailsCode: 'triage-fields' },
      );
    }
    return this.triageToStatus(taskId, body.status, body.statusReason?.text, actor, ifMatch);
  }

  /**
   * Triage to the Task status a plain FHIR write asks for. With `ifMatch`, only from that version of the
   * Task; the same status again changes nothing.
   */
  async triageToStatus(
    taskId: string,
    status: unknown,
    reason: string | undefined,
    actor: Actor,
    ifMatch?: string,
  ): Promise<Task> {
    const current = await this.readTask(taskId);
    if (ifMatch !== undefined && ifMatch.replace(/^W\//, '').replace(/"/g, '') !== current.meta?.versionId) {
      throw new CarewayError(
        'conflict',
        `If-Match ${ifMatch} does not match the current version ${current.meta?.versionId ?? '?'}`,
      );
    }
    const action = typeof status === 'string' ? ACTION_FOR_STATUS[status] : undefined;
    if (!action) {
      if (status === current.status) return current;
      throw new CarewayError(
        'rule-violation',
        `rule triage-transition: status must become one of ${Object.keys(ACTION_FOR_STATUS).join(', ')}`,
        { detailsCode: 'triage-transition' },
      );
    }
    return this.triage(taskId, action, reason, actor);
  }

  async readTask(taskId: string): Promise<Task> {
    const task = await mustRead<Task>(this.o.fhir, 'Task', taskId, 'not-found');
    if (!task.identifier?.some((i) => i.system === canonical.triageTaskSystem)) {
      throw new CarewayError(
        'rule-violation',
        'rule not-a-triage-task: this Task is not a Careway referral triage task',
        { detailsCode: 'not-a-triage-task' },
      );
    }
    return task;
  }

  replyAllowed(endpoint: string): boolean {
    try {
      const origin = new URL(endpoint).origin;
      return this.o.replyAllowlist.includes(origin);
    } catch {
      return false;
    }
  }

  /** `$validate` on the FHIR server: the ServiceRequest against the referral profile, the rest against R4. */
  private async validate(sub: Submission): Promise<void> {
    const all = [sub.serviceRequest, ...(sub.patient ? [sub.patient] : []), ...sub.supporting];
    const outcomes = await Promise.all(
      all.map((e) =>
        this.o.fhir.validate(
          e.resource,
          e === sub.serviceRequest ? versioned(canonical.referralProfile) : undefined,
        ),
      ),
    );
    const issues: OperationOutcomeIssue[] = [];
    outcomes.forEach((oo, i) => {
      const entry = all[i];
      if (!entry) return;
      for (const issue of oo.issue) {
        if (issue.severity !== 'error' && issue.severity !== 'fatal') continue;
        // References to other bundle entries cannot resolve when a resource is validated on its own.
        if (
          /urn:uuid|resolve|Unable to find a match for profile/i.test(issue.diagnostics ?? '') &&
          /reference/i.test(issue.diagnostics ?? '')
        )
          continue;
        const type = entry.resource.resourceType;
        const expression = (issue.expression ?? issue.location ?? [type]).map((x) =>
          x.startsWith(type) ? entry.path + x.slice(type.length) : `${entry.path}.${x}`,
        );
        issues.push({ ...issue, expression });
      }
    });
    if (issues.length > 0) throw referralRejected(422, issues);
  }

  /** `Type/id` references must exist on the server: one batch of reads. */
  private async checkServerReferences(sub: Submission): Promise<void> {
    if (sub.serverReferences.length === 0) return;
    const unique = [...new Map(sub.serverReferences.map((r) => [r.reference, r])).values()];
    const res = await this.o.fhir.batch({
      resourceType: 'Bundle',
      type: 'batch',
      entry: unique.map((r) => ({ request: { method: 'GET', url: `${r.reference}?_elements=id` } })),
    });
    const problems: Problem[] = [];
    unique.forEach((r, i) => {
      const status = res.entry?.[i]?.response?.status ?? '';
      if (!status.startsWith('200')) {
        problems.push({
          expression: r.expression,
          message: `${r.reference} does not exist on the server`,
          status: 422,
        });
      }
    });
    if (problems.length) throw rejectProblems(problems);
  }

  private responseBundle(resources: Resource[], status: string): Bundle {
    return {
      resourceType: 'Bundle',
      type: 'transaction-response',
      entry: resources.map((r) => ({
        response: { status, location: locationOf(r) },
        ...(r.resourceType === 'EpisodeOfCare' ? { resource: r } : {}),
      })),
    };
  }
}
