/**
 * Journey events read from what the EHR writes: a visit that took place, a care plan that starts, ends or sets
 * up recurring follow-up. Pure functions over one resource, no I/O: the decision lives here, the reading and
 * writing in raise-events.ts.
 *
 * | resource                              | when it is                          | event(s)                        |
 * |---------------------------------------|-------------------------------------|---------------------------------|
 * | Appointment                           | `fulfilled`                         | visit-fulfilled                 |
 * | Encounter, class AMB (outpatient)     | `finished`                          | visit-fulfilled                 |
 * | CarePlan, intent `plan` or `order`    | `active`                            | careplan-active                 |
 * |                                       | `active`, with a recurring activity | + followup-plan-active          |
 * |                                       | `completed`                         | treatment-completed             |
 *
 * Invariants:
 * - Decided from what a resource *is*, never from how it changed. REST-hook deliveries get lost and replayed,
 *   and the sweep only sees the current version, so "became fulfilled" can only be read as "is fulfilled".
 *   That is safe because an event only ever moves a journey forward (rules.ts `stageAfterEvent`): raising
 *   one again, or late, changes nothing.
 * - An inpatient Encounter that finishes is a discharge (HL7 A03 → `discharged`), handled by the HL7 intake:
 *   only an outpatient visit (class AMB) counts as a visit here.
 * - Events come in stage order, so a resource that implies two (an active plan with recurring check-ups)
 *   moves the journey one stage at a time, each change with its own Provenance.
 * - "Recurring" means what the check-up reminders read (reminders/care-plans.ts uses the same functions):
 *   a live activity whose `detail.scheduledTiming.repeat` has a period of at least a second.
 */
import type {
  Appointment,
  CarePlan,
  CarePlanActivity,
  Encounter,
  Reference,
  Resource,
  Timing,
} from 'fhir/r4.js';
import { JOURNEY_EXTENSION_URL } from './episode.js';
import { EVENT_STAGE, stageIndex, type JourneyEvent } from './rules.js';

/** The resource types whose changes can raise journey events. */
export const EVENT_RESOURCE_TYPES = ['Appointment', 'CarePlan', 'Encounter'] as const;
export type EventResourceType = (typeof EVENT_RESOURCE_TYPES)[number];

export function isEventResourceType(type: string): type is EventResourceType {
  return (EVENT_RESOURCE_TYPES as readonly string[]).includes(type);
}

/**
 * Search parameters that narrow a "changed since" search to the resources that may raise an event (a superset
 * of what `eventsForResource` accepts: it still decides). The sweep uses them so that the many bookings and
 * inpatient stays it sees cost no read.
 */
export const EVENT_CANDIDATES: Readonly<Record<EventResourceType, Readonly<Record<string, string>>>> = {
  Appointment: { status: 'fulfilled' },
  CarePlan: { status: 'active,completed' },
  Encounter: { status: 'finished', class: 'AMB' },
};

const ACT_CODE_SYSTEMS: readonly string[] = [
  'http://terminology.hl7.org/CodeSystem/v3-ActCode',
  // The pre-THO URL, still sent by older EHR interfaces.
  'http://hl7.org/fhir/v3/ActCode',
];

/** Intents that make a CarePlan the agreed plan; a `proposal` or an `option` is not yet treatment. */
const PLAN_INTENTS: readonly CarePlan['intent'][] = ['plan', 'order'];

const UNIT_MS: Readonly<Record<string, number>> = {
  s: 1000,
  min: 60_000,
  h: 3600_000,
  d: 86400_000,
  wk: 7 * 86400_000,
  mo: 30 * 86400_000,
  a: 365 * 86400_000,
};

/** The interval of a repeating timing in ms (period ÷ frequency), or undefined when it does not repeat. */
export function intervalMs(timing: Timing | undefined): number | undefined {
  const r = timing?.repeat;
  const unit = r?.periodUnit ? UNIT_MS[r.periodUnit] : undefined;
  if (!r?.period || !unit) return undefined;
  const ms = (r.period * unit) / (r.frequency ?? 1);
  // A floor against a runaway plan (frequency 1000 per second); real check-ups are months apart.
  return ms >= 1000 ? ms : undefined;
}

/** Whether a CarePlan activity still runs (not completed, cancelled, stopped or entered in error). */
export function activityLive(a: CarePlanActivity): boolean {
  const status = a.detail?.status;
  return (
    status !== 'completed' && status !== 'cancelled' && status !== 'stopped' && status !== 'entered-in-error'
  );
}

/** Whether the plan has a live activity that repeats (a check-up every three months…). */
export function hasRecurringActivity(plan: CarePlan): boolean {
  return (plan.activity ?? []).some(
    (a) => activityLive(a) && intervalMs(a.detail?.scheduledTiming) !== undefined,
  );
}

function isOutpatient(e: Encounter): boolean {
  // Required in R4, but a hook body is outside input: a missing class is simply not outpatient.
  const c = e.class as Encounter['class'] | undefined;
  return c?.code === 'AMB' && (c.system === undefined || ACT_CODE_SYSTEMS.includes(c.system));
}

function carePlanEvents(plan: CarePlan): JourneyEvent[] {
  if (!PLAN_INTENTS.includes(plan.intent)) return [];
  switch (plan.status) {
    case 'active':
      return hasRecurringActivity(plan) ? ['careplan-active', 'followup-plan-active'] : ['careplan-active'];
    case 'completed':
      return ['treatment-completed'];
    default:
      // draft, on-hold, revoked, entered-in-error, unknown: nothing has started or ended for the patient.
      return [];
  }
}

/** The journey events a resource raises as it is now, in stage order; empty for anything else. */
export function eventsForResource(resource: Resource): JourneyEvent[] {
  let events: JourneyEvent[] = [];
  switch (resource.resourceType) {
    case 'Appointment':
      events = (resource as Appointment).status === 'fulfilled' ? ['visit-fulfilled'] : [];
      break;
    case 'Encounter': {
      const e = resource as Encounter;
      events = e.status === 'finished' && isOutpatient(e) ? ['visit-fulfilled'] : [];
      break;
    }
    case 'CarePlan':
      events = carePlanEvents(resource as CarePlan);
      break;
    default:
      events = [];
  }
  return events.sort((a, b) => stageIndex(EVENT_STAGE[a]) - stageIndex(EVENT_STAGE[b]));
}

const EPISODE_REF = /^EpisodeOfCare\/([^/]+)(?:\/_history\/[^/]+)?$/;
const PATIENT_REF = /^Patient\/([^/]+)(?:\/_history\/[^/]+)?$/;

const idIn = (re: RegExp, ref: Reference | undefined): string | undefined =>
  re.exec(ref?.reference ?? '')?.[1];

/**
 * The EpisodeOfCare ids a resource names as its journey: Encounter natively (`episodeOfCare`), the other types
 * through the journey-reference extension (profiles/StructureDefinition-journey.json). Literal references only;
 * whether each is a Careway journey is for the caller to check.
 */
export function journeysNamedBy(resource: Resource): string[] {
  const refs: (Reference | undefined)[] =
    resource.resourceType === 'Encounter'
      ? ((resource as Encounter).episodeOfCare ?? [])
      : ((resource as { extension?: CarePlan['extension'] }).extension ?? [])
          .filter((x) => x.url === JOURNEY_EXTENSION_URL)
          .map((x) => x.valueReference);
  return [...new Set(refs.map((r) => idIn(EPISODE_REF, r)).filter((id): id is string => !!id))];
}

/** The patient a resource is about (Appointment participant, Encounter or CarePlan subject), by id. */
export function patientOf(resource: Resource): string | undefined {
  switch (resource.resourceType) {
    case 'Appointment':
      for (const p of (resource as Appointment).participant ?? []) {
        const id = idIn(PATIENT_REF, p.actor);
        if (id) return id;
      }
      return undefined;
    case 'Encounter':
      return idIn(PATIENT_REF, (resource as Encounter).subject);
    case 'CarePlan':
      return idIn(PATIENT_REF, (resource as CarePlan).subject);
    default:
      return undefined;
  }
}

/**
 * The Provenance trigger for events raised by a resource: a reference to it (when it has an id) and a display
 * naming it and its status, e.g. `CarePlan/123 active (rest-hook)`. Ids and codes only, never patient data.
 */
export function triggerOf(resource: Resource, via?: string): Reference {
  const status = (resource as { status?: unknown }).status;
  const name = resource.id ? `${resource.resourceType}/${resource.id}` : resource.resourceType;
  const display = [name, typeof status === 'string' ? status : undefined, via ? `(${via})` : undefined]
    .filter(Boolean)
    .join(' ');
  return { ...(resource.id ? { reference: `${resource.resourceType}/${resource.id}` } : {}), display };
}

/**
 * When the fact behind a resource's event happened, for dating the stage change (rules.ts `eventDate`):
 * a fulfilled Appointment's `end` (else `start`), a finished Encounter's `period.end`, an active CarePlan's
 * `period.start` and a completed one's `period.end`. Undefined when the resource does not say.
 */
export function occurredAt(resource: Resource, event: JourneyEvent): string | undefined {
  switch (resource.resourceType) {
    case 'Appointment': {
      const a = resource as Appointment;
      return a.end ?? a.start;
    }
    case 'Encounter':
      return (resource as Encounter).period?.end;
    case 'CarePlan': {
      const p = (resource as CarePlan).period;
      return event === 'treatment-completed' ? p?.end : p?.start;
    }
    default:
      return undefined;
  }
}
