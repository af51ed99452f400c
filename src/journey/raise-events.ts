/**
 * Raises the journey events that resources written by the EHR imply (resource-events.ts decides which) on the
 * journey each belongs to, through the journey service, so every change goes through the rules and gets its
 * Provenance naming the resource as its trigger. Callers: the `journey-events` queue (REST-hook deliveries and
 * the sweep, reminders/journey-event-worker.ts) and the HL7 inbound worker after it commits a message.
 *
 * The journey a resource belongs to: the one it names (Encounter.episodeOfCare, else the journey-reference
 * extension) when that is a Careway journey; else the journey the caller already knows; else the patient's
 * open journey (the newest EpisodeOfCare with a stage that is planned, waitlist, active or on hold).
 *
 * Invariants:
 * - Idempotent: an event at or before the journey's stage writes nothing (rules.ts), so a replayed hook, a
 *   repeated sweep or a retried job changes nothing and adds no Provenance.
 * - Throws only what a retry can fix (FHIR server down, a journey that kept changing); a fact the rules or
 *   the data refuse for good (a closed journey, a journey deleted meanwhile) is reported in the result.
 * - Logs nothing; the result carries ids and codes only.
 */
import type { Resource } from 'fhir/r4.js';
import { CarewayError, type ErrorCode } from '../shared/errors.js';
import { SYSTEM_ACTOR, type Actor } from './provenance.js';
import { eventsForResource, journeysNamedBy, occurredAt, patientOf, triggerOf } from './resource-events.js';
import { CLOSED_STATUSES, type JourneyEvent } from './rules.js';
import type { JourneyService } from './service.js';

/** What raising events needs of the journey service (JourneyService has it; tests may pass a fake). */
export type ResourceEventJourneys = Pick<JourneyService, 'applyEvent' | 'readJourney' | 'journeysOf'>;

export interface RaiseOptions {
  /** Who the Provenance names as the author; the system by default (the HL7 worker passes `hl7-intake`). */
  readonly actor?: Actor;
  /** The journey the caller already knows (the HL7 worker's open journey), for resources that name none. */
  readonly journeyId?: string;
  /** When the resources' source event happened (an HL7 message's EVN-2), for resources that do not say. */
  readonly occurred?: string;
}

export interface RaisedEvent {
  /** `CarePlan/123`, or the type alone for a resource written without an id. */
  readonly resource: string;
  /** `EpisodeOfCare/9`. */
  readonly journey: string;
  readonly event: JourneyEvent;
  /** `changed`: the stage moved (one EpisodeOfCare version and one Provenance); `unchanged`: already there. */
  readonly outcome: 'changed' | 'unchanged' | 'refused';
  /** Why it was refused (an error code such as `journey-closed`), when it was. */
  readonly refusal?: ErrorCode;
}

/** Errors that no retry can fix: the event is dropped and reported, not retried or dead-lettered. */
const FINAL: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'not-found',
  'not-a-journey',
  'journey-closed',
  'rule-violation',
  'unknown-reference',
]);

const isFinal = (e: unknown): e is CarewayError => e instanceof CarewayError && FINAL.has(e.code);

/**
 * Applies the events each resource implies, in order, to its journey. `trigger` says where the resources came
 * from (`rest-hook`, `sweep`, `hl7:ADT^A03:<control id>`) and goes into each Provenance's trigger display
 * beside the resource's reference and status.
 */
export async function raiseResourceEvents(
  journeys: ResourceEventJourneys,
  resources: readonly Resource[],
  trigger: string,
  options: RaiseOptions = {},
): Promise<RaisedEvent[]> {
  const raised: RaisedEvent[] = [];
  for (const resource of resources) {
    const events = eventsForResource(resource);
    // Most resources raise nothing: decide before any read.
    if (events.length === 0) continue;
    const journeyId = await journeyOf(journeys, resource, options.journeyId);
    if (!journeyId) continue;
    const name = resource.id ? `${resource.resourceType}/${resource.id}` : resource.resourceType;
    const ref = triggerOf(resource, trigger);
    for (const event of events) {
      const base = { resource: name, journey: `EpisodeOfCare/${journeyId}`, event };
      try {
        const occurred = occurredAt(resource, event) ?? options.occurred;
        const r = await journeys.applyEvent(journeyId, event, options.actor ?? SYSTEM_ACTOR, ref, occurred);
        raised.push({ ...base, outcome: r.changed ? 'changed' : 'unchanged' });
      } catch (e) {
        if (!isFinal(e)) throw e;
        raised.push({ ...base, outcome: 'refused', refusal: e.code });
      }
    }
  }
  return raised;
}

/** The journey a resource belongs to (see the header), or undefined when it has none. */
export async function journeyOf(
  journeys: ResourceEventJourneys,
  resource: Resource,
  known?: string,
): Promise<string | undefined> {
  for (const id of journeysNamedBy(resource)) {
    try {
      await journeys.readJourney(id);
      return id;
    } catch (e) {
      // An Encounter may name the EHR's own EpisodeOfCare: not a journey, look further.
      if (!isFinal(e)) throw e;
    }
  }
  if (known) return known;
  const patient = patientOf(resource);
  if (!patient) return undefined;
  try {
    // Newest first (journeysOf sorts by period): the same choice booking makes for a new appointment.
    const all = await journeys.journeysOf(patient);
    return all.find((e) => !CLOSED_STATUSES.includes(e.status))?.id;
  } catch (e) {
    if (isFinal(e)) return undefined;
    throw e;
  }
}
