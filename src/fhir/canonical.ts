/**
 * Canonical URLs of Careway's conformance resources (profiles/, uploaded to the FHIR server at start).
 *
 * URLs are stable across releases, because data written with an extension URL keeps it forever; each
 * release of a definition carries its own `version`, and references to it pin `url|version`. HAPI caches
 * StructureDefinitions without expiry, so a changed definition must get a new version, never an in-place edit.
 */
export const CANONICAL_BASE = 'https://careway.dev/fhir';
export const PROFILES_VERSION = '0.1.0';

export const canonical = {
  journeyStageCodeSystem: `${CANONICAL_BASE}/CodeSystem/journey-stage`,
  journeyStageValueSet: `${CANONICAL_BASE}/ValueSet/journey-stage`,
  journeyStageExtension: `${CANONICAL_BASE}/StructureDefinition/journey-stage`,
  journeyStageHistoryExtension: `${CANONICAL_BASE}/StructureDefinition/journey-stage-history`,
  journeyReferenceExtension: `${CANONICAL_BASE}/StructureDefinition/journey`,
  journeyEpisodeOfCare: `${CANONICAL_BASE}/StructureDefinition/journey-episode-of-care`,
  /** Identifier system for journeys keyed on the referral that started them. */
  journeyForReferralSystem: `${CANONICAL_BASE}/sid/journey-for-referral`,
  /** Careway's own code systems. */
  provenanceActivity: `${CANONICAL_BASE}/CodeSystem/provenance-activity`,
  communicationCategory: `${CANONICAL_BASE}/CodeSystem/communication-category`,
  agentSubject: `${CANONICAL_BASE}/sid/token-subject`,
  referralProfile: `${CANONICAL_BASE}/StructureDefinition/referral`,
  /** Identifier system of Careway's triage Task for a referral; value = `<referral system>|<referral value>`. */
  triageTaskSystem: `${CANONICAL_BASE}/sid/referral-triage`,
  /** Extension on the triage Task: where the referrer wants status updates. */
  replyToExtension: `${CANONICAL_BASE}/StructureDefinition/referral-reply-to`,
  /** Scheduling: the patient's preferences (Patient or EpisodeOfCare), a profiled complex extension. */
  schedulingPreferencesExtension: `${CANONICAL_BASE}/StructureDefinition/scheduling-preferences`,
  timeOfDayCodeSystem: `${CANONICAL_BASE}/CodeSystem/time-of-day`,
  /** On a Slot: the tentative hold (id, expires, holder, offer). */
  slotHoldExtension: `${CANONICAL_BASE}/StructureDefinition/slot-hold`,
  /** On a Slot: the Appointment from another system (HL7 SIU) that occupies it; searchable as `appointment`. */
  slotAppointmentExtension: `${CANONICAL_BASE}/StructureDefinition/slot-appointment`,
  /** On a proposed Appointment from `$find`: its ranking score. */
  appointmentScoreExtension: `${CANONICAL_BASE}/StructureDefinition/appointment-score`,
  /** On an Appointment: the one it replaces (R4 has no previousAppointment). */
  appointmentReplacesExtension: `${CANONICAL_BASE}/StructureDefinition/appointment-replaces`,
  /** Identifier systems: a generated Slot (`<schedule id>/<local start>`), a booking (`<slot@version>+…`). */
  slotSystem: `${CANONICAL_BASE}/sid/slot`,
  bookingSystem: `${CANONICAL_BASE}/sid/booking`,
  /** The no-show follow-up Task of an Appointment (value = appointment id). */
  noShowTaskSystem: `${CANONICAL_BASE}/sid/no-show-follow-up`,
  /** The Task for an overdue care-plan activity (value = `<care plan id>/<activity index>/<due instant>`). */
  carePlanActivityTaskSystem: `${CANONICAL_BASE}/sid/care-plan-activity`,
  /** The Task for a waitlist offer that needs staff (value = the offer's `<round>/Patient/<id>`). */
  waitlistOfferTaskSystem: `${CANONICAL_BASE}/sid/waitlist-offer-task`,
  /** Careway's task codes (follow-up work for the care team). */
  taskCode: `${CANONICAL_BASE}/CodeSystem/task-code`,
  /** Reminders: the patient's opt-out (valueCode all | sms | email, repeating) on the Patient. */
  engagementOptOutExtension: `${CANONICAL_BASE}/StructureDefinition/engagement-opt-out`,
  /** Identifier systems: one planned or sent reminder (`<appointment>|<offset>|<start ms>`). */
  reminderSystem: `${CANONICAL_BASE}/sid/reminder`,
  /** An inbound reply (provider message id). */
  inboundMessageSystem: `${CANONICAL_BASE}/sid/inbound-message`,
  /** Analytics: Careway's published Measures live at `${measure base}/<id>` (one per journey KPI). */
  measureBase: `${CANONICAL_BASE}/Measure`,
  /** The codes of Measure groups (what a group counts) and of report stratifiers (`stage`, `service`). */
  measureGroupCodeSystem: `${CANONICAL_BASE}/CodeSystem/measure-group`,
  measureStratifierCodeSystem: `${CANONICAL_BASE}/CodeSystem/measure-stratifier`,
  /** The standard IANA time zone extension (Schedule, Patient, Location). */
  timezoneExtension: 'http://hl7.org/fhir/StructureDefinition/timezone',
} as const;

/** `url|version`, the form to validate against and to reference from other definitions. */
export function versioned(url: string, version: string = PROFILES_VERSION): string {
  return `${url}|${version}`;
}
