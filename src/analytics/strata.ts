/**
 * The two stratifiers of every Careway measure, computed from the journey (EpisodeOfCare) an item belongs to:
 * - `stage`: where the journey stood at the end of the period (or now, for a period not over yet), read from
 *   its stage history; for time in stage, the stage of the stay itself;
 * - `service`: the journey's `EpisodeOfCare.type` (its first coding), the kind of care the journey is for
 *   (e.g. a cardiology referral pathway). `type` is the model's coded field for it; `team` is a reference to
 *   one CareTeam, which names people rather than a service and would split a service into its teams.
 * An item with no journey, or a journey without that field, falls in an `unknown` stratum (data-absent-reason),
 * so strata always add up to the whole.
 */
import type { CodeableConcept, EpisodeOfCare } from 'fhir/r4.js';
import { readState, stageCoding } from '../journey/episode.js';
import { JOURNEY_STAGES, type JourneyStage } from '../journey/stages.js';
import type { JourneyState } from '../journey/rules.js';
import type { Stratum } from './report.js';

const DATA_ABSENT = 'http://terminology.hl7.org/CodeSystem/data-absent-reason';
const UNKNOWN_VALUE: CodeableConcept = {
  coding: [{ system: DATA_ABSENT, code: 'unknown', display: 'Unknown' }],
  text: 'unknown',
};

export const UNKNOWN_STRATUM: Stratum = { key: 'unknown', order: 1000, value: UNKNOWN_VALUE };

export function stageStratum(stage: JourneyStage | undefined): Stratum {
  if (!stage) return UNKNOWN_STRATUM;
  const coding = stageCoding(stage);
  return { key: stage, order: JOURNEY_STAGES.indexOf(stage), value: { coding: [coding], text: stage } };
}

export function serviceStratum(episode: EpisodeOfCare | undefined): Stratum {
  const coding = episode?.type?.[0]?.coding?.find((c) => c.code);
  if (!coding?.code) {
    const text = episode?.type?.[0]?.text;
    return text ? { key: `text|${text}`, order: 0, value: { text } } : UNKNOWN_STRATUM;
  }
  return {
    key: `${coding.system ?? ''}|${coding.code}`,
    order: 0,
    value: { coding: [coding], text: coding.display ?? coding.code },
  };
}

/** The journey state of an EpisodeOfCare, or undefined when it is not a Careway journey. */
export function journeyState(episode: EpisodeOfCare | undefined): JourneyState | undefined {
  if (!episode) return undefined;
  try {
    return readState(episode);
  } catch {
    return undefined;
  }
}

/**
 * The stage a journey was in at instant `t` (ms): the stay that covers `t`, else the latest stay begun by
 * then; undefined when the journey had not begun.
 */
export function stageAt(state: JourneyState | undefined, t: number): JourneyStage | undefined {
  if (!state) return undefined;
  let latest: { stage: JourneyStage; start: number } | undefined;
  for (const p of state.stageHistory) {
    const start = Date.parse(p.start);
    if (!(start <= t)) continue;
    const end = p.end ? Date.parse(p.end) : Infinity;
    if (t < end) return p.stage;
    if (!latest || start >= latest.start) latest = { stage: p.stage, start };
  }
  if (latest) return latest.stage;
  return state.stageHistory.length === 0 ? state.stage : undefined;
}

/** Whether the journey had entered `stage`, or a later one, by instant `t`. */
export function reachedBy(state: JourneyState, stage: JourneyStage, t: number): boolean {
  const wanted = JOURNEY_STAGES.indexOf(stage);
  return state.stageHistory.some(
    (p) => Date.parse(p.start) <= t && JOURNEY_STAGES.indexOf(p.stage) >= wanted,
  );
}
