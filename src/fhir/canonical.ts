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
} as const;

/** `url|version`, the form to validate against and to reference from other definitions. */
export function versioned(url: string, version: string = PROFILES_VERSION): string {
  return `${url}|${version}`;
}
