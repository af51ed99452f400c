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

function touchpointsOf(resource: Resource, state: JourneyState): Touchpoint[] {
  const r = resource as FhirResource;
  const at = (
    kind: TouchpointKind,
    time: string | undefined,
    summary: string,
    status?: string,
  ): Touchpoint[] =>
    time
      ? [
          {
            kind,
            time,
            stage: stageAt(state, time),
            ...(status ? { status } : {}),
            summary,
            resource: ref(r),
          },
        ]
      : [];
  switch (r.resourceType) {
    case 'ServiceRequest':
      return at('referral', r.authoredOn ?? r.meta?.lastUpdated, 'Referral', r.status);
    case 'Appointment':
      return at(
        'appointment',
        r.start ?? r.created ?? r.meta?.lastUpdated,
        `Appointment ${r.status}`,
        r.status,
      );
    case 'Encounter':
      return at(
        'encounter',
        r.period?.start ?? r.meta?.lastUpdated,
        `Encounter (${r.class.code ?? 'visit'})`,
        r.status,
      );
    case 'CarePlan':
      return at(
        'care-plan',
        r.period?.start ?? r.created ?? r.meta?.lastUpdated,
        `Care plan ${r.status}`,
        r.status,
      );
    case 'Communication':
      return at(
        'communication',
        r.sent ?? r.received ?? r.meta?.lastUpdated,
        isPatientRef(r.sender?.reference) ? 'Message from the patient' : 'Message to the patient',
        r.status,
      );
    case 'CommunicationRequest':
      return at(
        'communication-request',
        r.occurrenceDateTime ?? r.authoredOn ?? r.meta?.lastUpdated,
        'Planned message',
        r.status,
      );
    case 'QuestionnaireResponse': {
      // The patient-experience survey's `overall` answer (1-5) is the score staff look for.
      const score = r.item?.find((i) => i.linkId === 'overall')?.answer?.[0]?.valueInteger;
      return at(
        'questionnaire-response',
        r.authored ?? r.meta?.lastUpdated,
        score !== undefined ? `Questionnaire answered (score ${score}/5)` : 'Questionnaire answered',
        r.status,
      );
    }
    case 'Task':
      return at('task', r.authoredOn ?? r.meta?.lastUpdated, 'Task', r.status);
    case 'Condition':
      return at('condition', r.recordedDate ?? r.onsetDateTime ?? r.meta?.lastUpdated, 'Condition recorded');
    case 'DiagnosticReport':
      return at(
        'diagnostic-report',
        r.issued ?? r.effectiveDateTime ?? r.meta?.lastUpdated,
        'Results',
        r.status,
      );
    case 'Observation':
      return at(
        'observation',
        r.issued ?? r.effectiveDateTime ?? r.meta?.lastUpdated,
        'Observation',
        r.status,
      );
    default:
      return [];
  }
}

function isReminder(c: Communication): boolean {
  return (c.category ?? []).some((cat) =>
    (cat.coding ?? []).some((x) => x.system === canonical.communicationCategory && x.code === 'reminder'),
  );
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
  const pains: PainPoint[] = [];
  const journeyRef = ref(episode);

  // Stage and status changes are touchpoints too.
  const touchpoints: Touchpoint[] = [
    ...state.stageHistory.map((p) => ({
      kind: 'stage' as const,
      time: p.start,
      stage: p.stage,
      summary: p.reason ? `Stage ${p.stage}: ${p.reason}` : `Stage ${p.stage}`,
      resource: journeyRef,
    })),
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

  // 1. Time in the current stage against its target (open journeys only).
  const current = state.stageHistory.at(-1);
  const stageTarget = targets.stageMs[state.stage];
  if (
    current &&
    !current.end &&
    stageTarget !== undefined &&
    !['finished', 'cancelled'].includes(state.status)
  ) {
    const inStage = nowMs - Date.parse(current.start);
    if (inStage > stageTarget) {
      pains.push({
        kind: 'time-in-stage',
        severity: inStage > 2 * stageTarget ? 'high' : 'moderate',
        summary: `${days(inStage)} in ${state.stage}, target ${days(stageTarget)}`,
        durationMs: inStage,
        targetMs: stageTarget,
        resource: journeyRef,
      });
    }
  }

  // 2. Referral to first appointment.
  const appointments = linked.filter((r): r is Appointment => r.resourceType === 'Appointment');
  const referralIds = new Set((episode.referralRequest ?? []).map((r) => r.reference));
  const referral = linked.find(
    (r): r is ServiceRequest => r.resourceType === 'ServiceRequest' && referralIds.has(ref(r)),
  );
  const referredAt = ms(referral?.authoredOn);
  if (referral && referredAt !== undefined) {
    const firstStart = appointments
      .filter((a) => !['cancelled', 'entered-in-error'].includes(a.status) && a.start)
      .map((a) => Date.parse(a.start ?? ''))
      .sort((a, b) => a - b)[0];
    const wait = (firstStart ?? nowMs) - referredAt;
    if (wait > targets.referralToFirstAppointmentMs) {
      pains.push({
        kind: 'referral-wait',
        severity: wait > 2 * targets.referralToFirstAppointmentMs ? 'high' : 'moderate',
        summary:
          firstStart === undefined
            ? `still waiting for a first appointment, ${days(wait)} after referral`
            : `${days(wait)} from referral to first appointment, target ${days(targets.referralToFirstAppointmentMs)}`,
        durationMs: wait,
        targetMs: targets.referralToFirstAppointmentMs,
        resource: ref(referral),
      });
    }
  }

  // 3. No-shows and cancellations.
  for (const a of appointments) {
    if (a.status === 'noshow') {
      pains.push({
        kind: 'no-show',
        severity: 'high',
        summary: `No-show${a.start ? ` on ${a.start.slice(0, 10)}` : ''}`,
        resource: ref(a),
      });
    } else if (a.status === 'cancelled') {
      pains.push({
        kind: 'cancellation',
        severity: 'low',
        summary: 'Appointment cancelled',
        resource: ref(a),
      });
    }
  }

  // 4. Reminders sent, appointment still unconfirmed by the patient.
  const communications = linked.filter((r): r is Communication => r.resourceType === 'Communication');
  for (const a of appointments) {
    if (!['booked', 'pending', 'proposed'].includes(a.status)) continue;
    const patientPart = a.participant.find((p) => isPatientRef(p.actor?.reference));
    if (!patientPart || patientPart.status === 'accepted') continue;
    const reminders = communications.filter(
      (c) => isReminder(c) && c.status === 'completed' && (c.about ?? []).some((x) => x.reference === ref(a)),
    );
    if (reminders.length > 0) {
      pains.push({
        kind: 'reminder-unconfirmed',
        severity: 'moderate',
        summary: `${reminders.length} reminder(s) sent, appointment not confirmed`,
        resource: ref(a),
      });
    }
  }

  // 5. Patient messages without a reply within the target.
  for (const c of communications) {
    if (!isPatientRef(c.sender?.reference)) continue;
    const sentAt = ms(c.sent ?? c.received);
    if (sentAt === undefined) continue;
    const reply = communications.find(
      (r) =>
        r !== c &&
        !isPatientRef(r.sender?.reference) &&
        ((r.inResponseTo ?? []).some((x) => x.reference === ref(c)) || (ms(r.sent) ?? 0) > sentAt),
    );
    const repliedAt = reply ? ms(reply.sent) : undefined;
    const waited = (repliedAt ?? nowMs) - sentAt;
    if (waited > targets.messageReplyMs) {
      pains.push({
        kind: 'message-unanswered',
        severity: repliedAt === undefined ? 'high' : 'low',
        summary:
          repliedAt === undefined
            ? `patient message unanswered for ${hours(waited)}`
            : `patient message answered after ${hours(waited)}`,
        durationMs: waited,
        targetMs: targets.messageReplyMs,
        resource: ref(c),
      });
    }
  }

  // 6. Overdue follow-ups: care-plan activities and tasks past due.
  for (const cp of linked.filter((r): r is CarePlan => r.resourceType === 'CarePlan')) {
    if (cp.status !== 'active') continue;
    for (const act of cp.activity ?? []) {
      const d = act.detail;
      if (!d || ['completed', 'cancelled', 'stopped', 'entered-in-error'].includes(d.status)) continue;
      const due = ms(d.scheduledPeriod?.end ?? d.scheduledPeriod?.start ?? d.scheduledString);
      if (due !== undefined && !Number.isNaN(due) && due < nowMs) {
        pains.push({
          kind: 'follow-up-overdue',
          severity: 'moderate',
          summary: `Care-plan activity "${d.code?.text ?? d.code?.coding?.[0]?.display ?? 'follow-up'}" overdue by ${days(nowMs - due)}`,
          durationMs: nowMs - due,
          resource: ref(cp),
        });
      }
    }
  }
  for (const t of linked.filter((r): r is Task => r.resourceType === 'Task')) {
    if (['completed', 'cancelled', 'failed', 'entered-in-error', 'rejected'].includes(t.status)) continue;
    const due = ms(t.restriction?.period?.end ?? t.executionPeriod?.end);
    if (due !== undefined && due < nowMs) {
      pains.push({
        kind: 'follow-up-overdue',
        severity: 'moderate',
        summary: `Task overdue by ${days(nowMs - due)}`,
        durationMs: nowMs - due,
        resource: ref(t),
      });
    }
  }

  return {
    journey: journeyRef,
    patient: episode.patient.reference ?? '',
    stage: state.stage,
    status: state.status,
    alerts: allergyAlerts(linked),
    painPoints: pains,
    touchpoints,
  };
}
