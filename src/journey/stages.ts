/**
 * The six journey stages (product.md). Pure data: the stage rules (issue "Journeys") build on it.
 * The codes are the contract with the CodeSystem in profiles/CodeSystem-journey-stage.json; a unit test
 * keeps the two in step.
 */
import { canonical } from '../fhir/canonical.js';

export const JOURNEY_STAGES = [
  'awareness',
  'consideration',
  'access',
  'care',
  'recovery',
  'continuous-care',
] as const;

export type JourneyStage = (typeof JOURNEY_STAGES)[number];

export const JOURNEY_STAGE_SYSTEM = canonical.journeyStageCodeSystem;

export function isJourneyStage(code: string): code is JourneyStage {
  return (JOURNEY_STAGES as readonly string[]).includes(code);
}
