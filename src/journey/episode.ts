/**
 * Reads and writes the journey state on a FHIR EpisodeOfCare, per profiles/:
 * - current stage: extension `journey-stage` (valueCoding);
 * - stage history: repeating complex extension `journey-stage-history` (stage, period, reason);
 * - FHIR status and `statusHistory`: the native elements.
 * Pure data mapping; the rules live in rules.ts.
 */
import type { CodeableConcept, EpisodeOfCare, Extension, Identifier, Reference } from 'fhir/r4.js';
import { canonical, versioned } from '../fhir/canonical.js';
import { isJourneyStage, JOURNEY_STAGE_SYSTEM, type JourneyStage } from './stages.js';
import type { JourneyState, StagePeriod } from './rules.js';

export const STAGE_HISTORY_URL = canonical.journeyStageHistoryExtension;
export const JOURNEY_EXTENSION_URL = canonical.journeyReferenceExtension;

export class NotAJourneyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotAJourneyError';
  }
}

const STAGE_DISPLAY: Record<JourneyStage, string> = {
  awareness: 'Awareness and acknowledgement',
  consideration: 'Research and consideration',
  access: 'Selection, appointments and initial contact',
  care: 'Diagnosis, treatment planning and procurement',
  recovery: 'Post-treatment and lifestyle change',
  'continuous-care': 'Continuous care',
};

export function stageCoding(stage: JourneyStage): { system: string; code: JourneyStage; display: string } {
  return { system: JOURNEY_STAGE_SYSTEM, code: stage, display: STAGE_DISPLAY[stage] };
}

function codeOf(ext: Extension | undefined): string | undefined {
  return ext?.valueCoding?.system === JOURNEY_STAGE_SYSTEM ? ext.valueCoding.code : undefined;
}

/** Reads the journey state; throws NotAJourneyError when the EpisodeOfCare carries no valid stage. */
export function readState(eoc: EpisodeOfCare): JourneyState {
  const current = codeOf(eoc.extension?.find((e) => e.url === canonical.journeyStageExtension));
  if (!current || !isJourneyStage(current)) {
    throw new NotAJourneyError(`EpisodeOfCare/${eoc.id ?? '?'} has no Careway journey stage`);
  }
  const stageHistory: StagePeriod[] = [];
  for (const h of eoc.extension?.filter((e) => e.url === STAGE_HISTORY_URL) ?? []) {
    const stage = codeOf(h.extension?.find((x) => x.url === 'stage'));
    const period = h.extension?.find((x) => x.url === 'period')?.valuePeriod;
    const reason = h.extension?.find((x) => x.url === 'reason')?.valueString;
    if (!stage || !isJourneyStage(stage) || !period?.start) continue;
    stageHistory.push({
      stage,
      start: period.start,
      ...(period.end ? { end: period.end } : {}),
      ...(reason ? { reason } : {}),
    });
  }
  const status = eoc.status;
  const statusHistory = (eoc.statusHistory ?? []).map((s) => ({
    status: s.status,
    start: s.period.start ?? '',
    ...(s.period.end ? { end: s.period.end } : {}),
  }));
  return { stage: current, status, stageHistory, statusHistory };
}

/** Writes `state` onto a copy of `eoc`, replacing the stage extensions and the status elements. */
export function writeState(eoc: EpisodeOfCare, state: JourneyState): EpisodeOfCare {
  const others = (eoc.extension ?? []).filter(
    (e) => e.url !== canonical.journeyStageExtension && e.url !== STAGE_HISTORY_URL,
  );
  const history: Extension[] = state.stageHistory.map((p) => ({
    url: STAGE_HISTORY_URL,
    extension: [
      { url: 'stage', valueCoding: stageCoding(p.stage) },
      { url: 'period', valuePeriod: { start: p.start, ...(p.end ? { end: p.end } : {}) } },
      ...(p.reason ? [{ url: 'reason', valueString: p.reason }] : []),
    ],
  }));
  const closedAt = ['finished', 'cancelled', 'entered-in-error'].includes(state.status)
    ? state.statusHistory.at(-1)?.start
    : undefined;
  return {
    ...eoc,
    extension: [
      { url: canonical.journeyStageExtension, valueCoding: stageCoding(state.stage) },
      ...history,
      ...others,
    ],
    status: state.status,
    statusHistory: state.statusHistory.map((s) => ({
      status: s.status,
      period: { start: s.start, ...(s.end ? { end: s.end } : {}) },
    })),
    ...(eoc.period || closedAt ? { period: { ...eoc.period, ...(closedAt ? { end: closedAt } : {}) } } : {}),
  };
}

export interface NewJourney {
  readonly identifier: Identifier;
  readonly patient: Reference;
  readonly state: JourneyState;
  readonly referral?: Reference;
  readonly type?: CodeableConcept;
  readonly managingOrganization?: Reference;
  readonly careManager?: Reference;
  readonly team?: Reference;
}

/** A new journey EpisodeOfCare that conforms to the journey profile. */
export function newJourneyEpisode(j: NewJourney): EpisodeOfCare {
  const start = j.state.stageHistory[0]?.start ?? new Date().toISOString();
  const base: EpisodeOfCare = {
    resourceType: 'EpisodeOfCare',
    meta: { profile: [versioned(canonical.journeyEpisodeOfCare)] },
    identifier: [j.identifier],
    status: j.state.status,
    ...(j.type ? { type: [j.type] } : {}),
    patient: j.patient,
    ...(j.managingOrganization ? { managingOrganization: j.managingOrganization } : {}),
    period: { start },
    ...(j.referral ? { referralRequest: [j.referral] } : {}),
    ...(j.careManager ? { careManager: j.careManager } : {}),
    ...(j.team ? { team: [j.team] } : {}),
  };
  return writeState(base, j.state);
}

/** The journey-reference extension that links a resource without a native link to its journey. */
export function journeyLink(episodeId: string): Extension {
  return { url: JOURNEY_EXTENSION_URL, valueReference: { reference: `EpisodeOfCare/${episodeId}` } };
}
