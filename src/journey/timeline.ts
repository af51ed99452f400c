/**
 * The journey timeline and its pain points, computed from the journey's FHIR resources. Pure: the caller
 * passes the resources (from `$journey`) and the clock.
 *
 * Pain points are the places a patient is stuck or let down:
 * - time in the current stage beyond the stage's target;
 * - a long wait from referral to the first appointment (or still waiting);
 * - no-shows and cancellations;
 * - reminders sent for an appointment the patient has not confirmed;
 * - patient messages unanswered for longer than the reply target;
 * - overdue follow-ups (care-plan activities and tasks past their due time).
 */
import type {
  AllergyIntolerance,
  Appointment,
  CarePlan,
  Communication,
  EpisodeOfCare,
  Flag,
  FhirResource,
  Resource,
  ServiceRequest,
  Task,
} from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import type { JourneyStage } from './stages.js';
import type { JourneyState } from './rules.js';
import { overdueActivities } from './care-plan-activities.js';

export interface TimelineTargets {
  /** Longest expected time in each stage, in ms; a stage without a target never raises the pain point. */
  readonly stageMs: Partial<Record<JourneyStage, number>>;
  readonly referralToFirstAppointmentMs: number;
  readonly messageReplyMs: number;
}

export const DEFAULT_TARGETS: TimelineTargets = {
  stageMs: {
    awareness: 14 * 86400_000,
    consideration: 14 * 86400_000,
    access: 21 * 86400_000,
    care: 90 * 86400_000,
    recovery: 90 * 86400_000,
  },
  referralToFirstAppointmentMs: 14 * 86400_000,
  messageReplyMs: 48 * 3600_000,
};

export type TouchpointKind =
  | 'stage'
  | 'status'
  | 'referral'
  | 'appointment'
  | 'encounter'
  | 'care-plan'
  | 'communication'
  | 'communication-request'
  | 'questionnaire-response'
  | 'task'
  | 'condition'
  | 'diagnostic-report'
  | 'observation';

export interface Touchpoint {
  readonly kind: TouchpointKind;
  readonly time: string;
  /** The journey stage at that time. */
  readonly stage: JourneyStage | undefined;
  readonly status?: string;
  readonly summary: string;
  readonly resource: string;
}

export type PainPointKind =
  | 'time-in-stage'
  | 'referral-wait'
  | 'no-show'
  | 'cancellation'
  | 'reminder-unconfirmed'
  | 'message-unanswered'
  | 'follow-up-overdue';

export interface PainPoint {
  readonly kind: PainPointKind;
  readonly severity: 'high' | 'moderate' | 'low';
  readonly summary: string;
  /** Measured duration in ms where the pain point is about time. */
  readonly durationMs?: number;
  readonly targetMs?: number;
  readonly resource: string;
}

export interface Alert {
  readonly kind: 'allergy';
  readonly summary: string;
  readonly criticality?: string;
  readonly resource: string;
}

export interface Timeline {
  readonly journey: string;
  readonly patient: string;
  readonly stage: JourneyStage;
  readonly status: string;
  readonly alerts: readonly Alert[];
  readonly painPoints: readonly PainPoint[];
  readonly touchpoints: readonly Touchpoint[];
}

const ref = (r: Resource): string => `${r.resourceType}/${r.id ?? ''}`;
const ms = (iso: string | undefined): number | undefined => (iso ? Date.parse(iso) : undefined);
const days = (d: number): string => `${(d / 86400_000).toFixed(1)} days`;
const hours = (d: number): string => `${(d / 3600_000).toFixed(1)} hours`;

function stageAt(state: JourneyState, time: string): JourneyStage | undefined {
  const t = Date.parse(time);
  let found: JourneyStage | undefined;
  for (const p of state.stageHistory) if (Date.parse(p.start) <= t) found = p.stage;
  return found ?? state.stageHistory[0]?.stage;
}

function isPatientRef(reference: string | undefined): boolean {
  return !!reference?.startsWith('Patient/');
}

/** An alert as a FHIR Flag (flag-detail points at the AllergyIntolerance), as `$journey` and `$find` return it. */
export function alertFlag(a: Alert, patientId: string): Flag {
  return {
    resourceType: 'Flag',
    status: 'active',
    category: [
      {
        coding: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/flag-category',
            code: 'clinical',
            display: 'Clinical',
          },
        ],
      },
    ],
    code: { text: a.summary },
    subject: { reference: `Patient/${patientId}` },
    extension: [
      {
        url: 'http://hl7.org/fhir/StructureDefinition/flag-detail',
        valueReference: { reference: a.resource },
      },
    ],
  };
}

/** Active allergies of the patient, as alerts; `$journey` shows the same list. */
export function allergyAlerts(resources: readonly Resource[]): Alert[] {
  return resources
    .filter((r): r is AllergyIntolerance => r.resourceType === 'AllergyIntolerance')
    .filter((a) => {
      const status = a.clinicalStatus?.coding?.[0]?.code;
      return (
        (status === undefined || status === 'active') &&
        a.verificationStatus?.coding?.[0]?.code !== 'entered-in-error' &&
        a.verificationStatus?.coding?.[0]?.code !== 'refuted'
      );
    })
    .sort((a, b) => (a.criticality === 'high' ? -1 : 0) - (b.criticality === 'high' ? -1 : 0))
    .map((a) => ({
      kind: 'allergy' as const,
      summary: `Allergy: ${a.code?.text ?? a.code?.coding?.[0]?.display ?? a.code?.coding?.[0]?.code ?? 'unspecified substance'}`,
      ...(a.criticality ? { criticality: a.criticality } : {}),
      resource: ref(a),
    }));
}

/** What a linked resource contributes to the timeline: its kind, when it happened, a summary, its status. */
interface Moment {
  readonly kind: TouchpointKind;
  /** When it happened; without one, when the server last saw the resource. */
  readonly time: string | undefined;
  readonly summary: string;
  readonly status: string | undefined;
}

const moment = (
  kind: TouchpointKind,
  time: string | undefined,
  summary: string,
  status?: string,
): Moment => ({
  kind,
  time,
  summary,
  status,
});

type MomentOf = {
  [K in FhirResource['resourceType']]?: (r: Extract<FhirResource, { resourceType: K }>) => Moment;
};

/** Per resource type, the moment it stands for. */
const MOMENT_OF: MomentOf = {
  ServiceRequest: (r) => moment('referral', r.authoredOn, 'Referral', r.status),
  Appointment: (r) => moment('appointment', r.start ?? r.created, `Appointment ${r.status}`, r.status),
  Encounter: (r) => moment('encounter', r.period?.start, `Encounter (${r.class.code ?? 'visit'})`, r.status),
  CarePlan: (r) => moment('care-plan', r.period?.start ?? r.created, `Care plan ${r.status}`, r.status),
  Communication: (r) =>
    moment(
      'communication',
      r.sent ?? r.received,
      isPatientRef(r.sender?.reference) ? 'Message from the patient' : 'Message to the patient',
      r.status,
    ),
  CommunicationRequest: (r) =>
    moment('communication-request', r.occurrenceDateTime ?? r.authoredOn, 'Planned message', r.status),
  QuestionnaireResponse: (r) => {
    // The patient-experience survey's `overall` answer (1-5) is the score staff look for.
    const score = r.item?.find((i) => i.linkId === 'overall')?.answer?.[0]?.valueInteger;
    const summary =
      score !== undefined ? `Questionnaire answered (score ${score}/5)` : 'Questionnaire answered';
    return moment('questionnaire-response', r.authored, summary, r.status);
  },
  Task: (r) => moment('task', r.authoredOn, 'Task', r.status),
  Condition: (r) => moment('condition', r.recordedDate ?? r.onsetDateTime, 'Condition recorded'),
  DiagnosticReport: (r) => moment('diagnostic-report', r.issued ?? r.effectiveDateTime, 'Results', r.status),
  Observation: (r) => moment('observation', r.issued ?? r.effectiveDateTime, 'Observation', r.status),
};

/** The touchpoint a linked resource stands for; none for other types, or when it has no time at all. */
function touchpointsOf(resource: Resource, state: JourneyState): Touchpoint[] {
  const r = resource as FhirResource;
  const momentOf = MOMENT_OF[r.resourceType] as ((r: FhirResource) => Moment) | undefined;
  const m = momentOf?.(r);
  const time = m && (m.time ?? r.meta?.lastUpdated);
  if (!m || !time) return [];
  return [
    {
      kind: m.kind,
      time,
      stage: stageAt(state, time),
      ...(m.status ? { status: m.status } : {}),
      summary: m.summary,
      resource: ref(r),
    },
  ];
}

function isReminder(c: Communication): boolean {
  return (c.category ?? []).some((cat) =>
    (cat.coding ?? []).some((x) => x.system === canonical.communicationCategory && x.code === 'reminder'),
  );
}

const ofType = <T extends FhirResource>(linked: readonly Resource[], type: T['resourceType']): T[] =>
  linked.filter((r): r is T => r.resourceType === type);

/** Every touchpoint in time order: the journey's own stage and status changes, then its linked resources. */
function journeyTouchpoints(
  state: JourneyState,
  linked: readonly Resource[],
  journeyRef: string,
): Touchpoint[] {
  return [
    ...state.stageHistory.map((p) => ({
      kind: 'stage' as const,
      time: p.start,
      stage: p.stage,
      summary: p.reason ? `Stage ${p.stage}: ${p.reason}` : `Stage ${p.stage}`,
      resource: journeyRef,
    })),
    // The first status is the journey's start, already shown as its first stage.
    ...state.statusHistory.slice(1).map((s) => ({
      kind: 'status' as const,
      time: s.start,
      stage: stageAt(state, s.start),
      status: s.status,
      summary: `Journey ${s.status}`,
      resource: journeyRef,
    })),
    ...linked.flatMap((r) => touchpointsOf(r, state)),
  ].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
}

/**
 * Time in the current stage against its target (open journeys only). Comparisons here are written so that
 * an unparseable date (NaN) never raises a pain point.
 */
function timeInStage(
  state: JourneyState,
  nowMs: number,
  targets: TimelineTargets,
  journeyRef: string,
): PainPoint[] {
  const current = state.stageHistory.at(-1);
  const target = targets.stageMs[state.stage];
  if (!current || current.end || target === undefined || ['finished', 'cancelled'].includes(state.status))
    return [];
  const inStage = nowMs - Date.parse(current.start);
  if (!(inStage > target)) return [];
  return [
    {
      kind: 'time-in-stage',
      severity: inStage > 2 * target ? 'high' : 'moderate',
      summary: `${days(inStage)} in ${state.stage}, target ${days(target)}`,
      durationMs: inStage,
      targetMs: target,
      resource: journeyRef,
    },
  ];
}

/** From the journey's referral to its first appointment that was not called off (or to now, still waiting). */
function referralWait(
  episode: EpisodeOfCare,
  linked: readonly Resource[],
  appointments: readonly Appointment[],
  nowMs: number,
  targets: TimelineTargets,
): PainPoint[] {
  const referralIds = new Set((episode.referralRequest ?? []).map((r) => r.reference));
  const referral = linked.find(
    (r): r is ServiceRequest => r.resourceType === 'ServiceRequest' && referralIds.has(ref(r)),
  );
  const referredAt = ms(referral?.authoredOn);
  if (!referral || referredAt === undefined) return [];
  const firstStart = appointments
    .filter((a) => !['cancelled', 'entered-in-error'].includes(a.status) && a.start)
    .map((a) => Date.parse(a.start ?? ''))
    .sort((a, b) => a - b)[0];
  const wait = (firstStart ?? nowMs) - referredAt;
  const target = targets.referralToFirstAppointmentMs;
  if (!(wait > target)) return [];
  return [
    {
      kind: 'referral-wait',
      severity: wait > 2 * target ? 'high' : 'moderate',
      summary:
        firstStart === undefined
          ? `still waiting for a first appointment, ${days(wait)} after referral`
          : `${days(wait)} from referral to first appointment, target ${days(target)}`,
      durationMs: wait,
      targetMs: target,
      resource: ref(referral),
    },
  ];
}

/** No-shows and cancellations. */
function missedAppointments(appointments: readonly Appointment[]): PainPoint[] {
  return appointments.flatMap((a): PainPoint[] => {
    if (a.status === 'noshow')
      return [
        {
          kind: 'no-show',
          severity: 'high',
          summary: `No-show${a.start ? ` on ${a.start.slice(0, 10)}` : ''}`,
          resource: ref(a),
        },
      ];
    if (a.status === 'cancelled')
      return [{ kind: 'cancellation', severity: 'low', summary: 'Appointment cancelled', resource: ref(a) }];
    return [];
  });
}

/** Reminders sent for an upcoming appointment that the patient has still not confirmed. */
function unconfirmedReminders(
  appointments: readonly Appointment[],
  communications: readonly Communication[],
): PainPoint[] {
  return appointments.flatMap((a): PainPoint[] => {
    if (!['booked', 'pending', 'proposed'].includes(a.status)) return [];
    const patientPart = a.participant.find((p) => isPatientRef(p.actor?.reference));
    if (!patientPart || patientPart.status === 'accepted') return [];
    const reminders = communications.filter(
      (c) => isReminder(c) && c.status === 'completed' && (c.about ?? []).some((x) => x.reference === ref(a)),
    );
    if (reminders.length === 0) return [];
    return [
      {
        kind: 'reminder-unconfirmed',
        severity: 'moderate',
        summary: `${reminders.length} reminder(s) sent, appointment not confirmed`,
        resource: ref(a),
      },
    ];
  });
}

/**
 * Patient messages without a reply within the target. A reply is a staff message that answers it
 * (`inResponseTo`) or, in a thread kept without links, any staff message sent after it.
 */
function unansweredMessages(
  communications: readonly Communication[],
  nowMs: number,
  targets: TimelineTargets,
): PainPoint[] {
  return communications.flatMap((c): PainPoint[] => {
    if (!isPatientRef(c.sender?.reference)) return [];
    const sentAt = ms(c.sent ?? c.received);
    if (sentAt === undefined) return [];
    const reply = communications.find(
      (r) =>
        r !== c &&
        !isPatientRef(r.sender?.reference) &&
        ((r.inResponseTo ?? []).some((x) => x.reference === ref(c)) || (ms(r.sent) ?? 0) > sentAt),
    );
    const repliedAt = reply ? ms(reply.sent) : undefined;
    const waited = (repliedAt ?? nowMs) - sentAt;
    if (!(waited > targets.messageReplyMs)) return [];
    return [
      {
        kind: 'message-unanswered',
        severity: repliedAt === undefined ? 'high' : 'low',
        summary:
          repliedAt === undefined
            ? `patient message unanswered for ${hours(waited)}`
            : `patient message answered after ${hours(waited)}`,
        durationMs: waited,
        targetMs: targets.messageReplyMs,
        resource: ref(c),
      },
    ];
  });
}

/** Activities of active care plans that are past due and not done (the reading the care-plan sweep raises Tasks on). */
function overdueCarePlanActivities(plans: readonly CarePlan[], nowMs: number): PainPoint[] {
  return plans.flatMap((cp): PainPoint[] =>
    overdueActivities(cp, nowMs).map((a) => ({
      kind: 'follow-up-overdue',
      severity: 'moderate',
      summary: `Care-plan activity "${a.text}" overdue by ${days(nowMs - a.dueMs)}`,
      durationMs: nowMs - a.dueMs,
      resource: ref(cp),
    })),
  );
}

/** Open tasks past their due time. */
function overdueTasks(tasks: readonly Task[], nowMs: number): PainPoint[] {
  return tasks.flatMap((t): PainPoint[] => {
    if (['completed', 'cancelled', 'failed', 'entered-in-error', 'rejected'].includes(t.status)) return [];
    const due = ms(t.restriction?.period?.end ?? t.executionPeriod?.end);
    if (due === undefined || !(due < nowMs)) return [];
    return [
      {
        kind: 'follow-up-overdue',
        severity: 'moderate',
        summary: `Task overdue by ${days(nowMs - due)}`,
        durationMs: nowMs - due,
        resource: ref(t),
      },
    ];
  });
}

/** Computes the timeline with its pain points and alerts. */
export function buildTimeline(
  episode: EpisodeOfCare,
  state: JourneyState,
  linked: readonly Resource[],
  now: Date,
  targets: TimelineTargets = DEFAULT_TARGETS,
): Timeline {
  const nowMs = now.getTime();
  const journeyRef = ref(episode);
  const appointments = ofType<Appointment>(linked, 'Appointment');
  const communications = ofType<Communication>(linked, 'Communication');
  return {
    journey: journeyRef,
    patient: episode.patient.reference ?? '',
    stage: state.stage,
    status: state.status,
    alerts: allergyAlerts(linked),
    painPoints: [
      ...timeInStage(state, nowMs, targets, journeyRef),
      ...referralWait(episode, linked, appointments, nowMs, targets),
      ...missedAppointments(appointments),
      ...unconfirmedReminders(appointments, communications),
      ...unansweredMessages(communications, nowMs, targets),
      ...overdueCarePlanActivities(ofType<CarePlan>(linked, 'CarePlan'), nowMs),
      ...overdueTasks(ofType<Task>(linked, 'Task'), nowMs),
    ],
    touchpoints: journeyTouchpoints(state, linked, journeyRef),
  };
}
