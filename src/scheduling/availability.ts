/**
 * Availability: slot generation on a Schedule and `$find`.
 *
 * `$find` makes three reads whatever the number of slots: the Schedules offering the service (with their
 * Practitioners and Locations through `_include`), the Slots of those Schedules in the window (free and
 * taken: the taken ones measure each practitioner's load), and the patient with their earlier appointments.
 * Everything else is the pure ranking in ranking.ts.
 */
import type {
  Appointment,
  AppointmentParticipant,
  Bundle,
  BundleEntry,
  CodeableConcept,
  Coding,
  EpisodeOfCare,
  Location,
  Patient,
  Practitioner,
  Schedule,
  Slot,
} from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import { zoneOf } from '../fhir/zones.js';
import { retryOnConflict } from '../fhir/conflicts.js';
import { journeyLink } from '../journey/episode.js';
import { alertFlag } from '../journey/timeline.js';
import { CarewayError } from '../shared/errors.js';
import { checkTemplate, generateSlots, type SlotTemplate } from './slots.js';
import { rank, type Candidate, type Preferences, type RankingContext, type Scored } from './ranking.js';
import { withLocks } from '../shared/lock.js';
import { mustRead } from '../fhir/reads.js';
import { now, type SchedulingDeps } from './context.js';
import {
  homeOf,
  languagesOf,
  mergePreferences,
  patientLanguage,
  positionOf,
  readPreferences,
  withPreferences,
} from './resources.js';

export interface GenerateResult {
  readonly created: number;
  readonly existing: number;
}

/** Transactions of this many creates keep each request well inside the FHIR timeout. */
const CREATE_CHUNK = 250;

/** `$generate-slots`: creates the template's Slots that do not exist yet, keyed on schedule + local start. */
export async function generateScheduleSlots(
  deps: SchedulingDeps,
  scheduleId: string,
  template: Omit<SlotTemplate, 'zone'>,
): Promise<GenerateResult> {
  const schedule = await mustRead<Schedule>(deps.fhir, 'Schedule', scheduleId, 'not-found');
  const full: SlotTemplate = { ...template, zone: zoneOf(schedule, deps.defaultZone) };
  const problems = checkTemplate(full);
  if (problems.length)
    throw new CarewayError('invalid-parameters', `$generate-slots: ${problems.join('; ')}`);
  let slots;
  try {
    slots = generateSlots(full);
  } catch (e) {
    throw new CarewayError('invalid-parameters', `$generate-slots: ${(e as Error).message}`);
  }
  if (slots.length === 0) return { created: 0, existing: 0 };
  return withLocks(deps.lock, [`schedule:${scheduleId}`], async () => {
    // One search finds what exists, so a replay posts nothing; ifNoneExist still guards every create.
    const existing = new Set(
      (
        await deps.fhir.searchAll<Slot>(
          'Slot',
          {
            schedule: `Schedule/${scheduleId}`,
            start: [`ge${slots[0]!.start}`, `le${slots[slots.length - 1]!.start}`],
            _elements: 'identifier',
            _count: 200,
          },
          { noCache: true, maxPages: 1000 },
        )
      ).flatMap((s) =>
        (s.identifier ?? []).filter((i) => i.system === canonical.slotSystem).map((i) => i.value),
      ),
    );
    const missing = slots.filter((s) => !existing.has(`${scheduleId}/${s.key}`));
    for (let i = 0; i < missing.length; i += CREATE_CHUNK) {
      const entry: BundleEntry[] = missing.slice(i, i + CREATE_CHUNK).map((s) => {
        const value = `${scheduleId}/${s.key}`;
        const slot: Slot = {
          resourceType: 'Slot',
          identifier: [{ system: canonical.slotSystem, value }],
          schedule: { reference: `Schedule/${scheduleId}` },
          status: 'free',
          start: s.start,
          end: s.end,
          ...(schedule.serviceCategory ? { serviceCategory: schedule.serviceCategory } : {}),
          ...(schedule.serviceType ? { serviceType: schedule.serviceType } : {}),
          ...(schedule.specialty ? { specialty: schedule.specialty } : {}),
        };
        return {
          resource: slot,
          request: {
            method: 'POST',
            url: 'Slot',
            ifNoneExist: new URLSearchParams({ identifier: `${canonical.slotSystem}|${value}` }).toString(),
          },
        };
      });
      await deps.fhir.transaction({ resourceType: 'Bundle', type: 'transaction', entry });
    }
    return { created: missing.length, existing: slots.length - missing.length };
  });
}

export interface FindInput {
  readonly serviceType?: Coding;
  readonly specialty?: Coding;
  readonly visitType?: Coding;
  readonly practitionerId?: string;
  readonly locationId?: string;
  readonly patientId?: string;
  readonly journeyId?: string;
  readonly start?: string;
  readonly end?: string;
  readonly count: number;
}

const token = (c: Coding): string => (c.system ? `${c.system}|${c.code ?? ''}` : (c.code ?? ''));
const matches = (concepts: CodeableConcept[] | CodeableConcept | undefined, c: Coding): boolean =>
  [concepts ?? []]
    .flat()
    .some((cc) => (cc.coding ?? []).some((x) => x.code === c.code && (!c.system || x.system === c.system)));

/** Default window when none is given: from now, four weeks. */
const DEFAULT_WINDOW_MS = 28 * 86400_000;
const MAX_WINDOW_MS = 366 * 86400_000;
/** Parallel searches per window (at most one per day of it). */
const SLOT_SEARCH_SLICES = 4;

/** The window `$find` searches: `from` (never before now) to `endMs`. Every problem with it is named at once. */
function findWindow(input: FindInput, nowMs: number): { from: number; endMs: number } {
  const problems: string[] = [];
  if (!input.serviceType && !input.specialty) problems.push('"service-type" or "specialty" is required');
  const startMs = input.start ? Date.parse(input.start) : nowMs;
  const endMs = input.end ? Date.parse(input.end) : Math.max(startMs, nowMs) + DEFAULT_WINDOW_MS;
  if (Number.isNaN(startMs)) problems.push('"start" must be a dateTime');
  if (Number.isNaN(endMs)) problems.push('"end" must be a dateTime');
  if (!Number.isNaN(startMs) && !Number.isNaN(endMs)) {
    if (endMs <= startMs) problems.push('"end" must be after "start"');
    else if (endMs <= nowMs) problems.push('the window is in the past');
    else if (endMs - startMs > MAX_WINDOW_MS) problems.push('the window may span at most 366 days');
  }
  if (problems.length) throw new CarewayError('invalid-parameters', `$find: ${problems.join('; ')}`);
  return { from: Math.max(startMs, nowMs), endMs };
}

/** The Schedules offering the service, with their Practitioners and Locations (`_include`). */
interface Offering {
  readonly schedules: Schedule[];
  readonly practitioners: ReadonlyMap<string, Practitioner>;
  readonly locations: ReadonlyMap<string, Location>;
}

/** The practitioner and location the caller asked for, as Schedule actors. */
const namedActors = (input: FindInput): string[] => [
  ...(input.practitionerId ? [`Practitioner/${input.practitionerId}`] : []),
  ...(input.locationId ? [`Location/${input.locationId}`] : []),
];

/** Read 1 of 3: the active Schedules offering the service (and the practitioner or location, when named). */
async function searchOffering(deps: SchedulingDeps, input: FindInput): Promise<Offering> {
  const query: Record<string, string | string[]> = { active: 'true', _count: '200' };
  if (input.serviceType) query['service-type'] = token(input.serviceType);
  if (input.specialty) query['specialty'] = token(input.specialty);
  const actors = namedActors(input);
  if (actors.length) query['actor'] = actors;
  query['_include'] = 'Schedule:actor';
  const found = await deps.fhir.searchAll<Schedule | Practitioner | Location>('Schedule', query, {
    noCache: true,
    maxPages: 20,
  });
  return {
    schedules: found.filter((r): r is Schedule => r.resourceType === 'Schedule'),
    practitioners: new Map(
      found
        .filter((r): r is Practitioner => r.resourceType === 'Practitioner')
        .map((p) => [`Practitioner/${p.id}`, p]),
    ),
    locations: new Map(
      found.filter((r): r is Location => r.resourceType === 'Location').map((l) => [`Location/${l.id}`, l]),
    ),
  };
}

/** A journey named with a patient must be that patient's, and something must offer the service. */
function checkFindTargets(
  input: FindInput,
  offering: Offering,
  patient: Patient | undefined,
  journey: EpisodeOfCare | undefined,
): void {
  if (journey && patient && journey.patient.reference !== `Patient/${patient.id}`)
    throw new CarewayError('invalid-parameters', '$find: the journey belongs to another patient');
  if (offering.schedules.length === 0) {
    throw new CarewayError(
      'unknown-reference',
      `$find: no active Schedule offers this ${input.serviceType ? 'service type' : 'specialty'}${namedActors(input).length ? ' with the given practitioner or location' : ''}`,
      { detailsCode: 'unknown-service' },
    );
  }
}

/**
 * Read 2 of 3: the Slots of the Schedules in the window, of every status (taken ones give the load). The
 * window is cut into slices searched in parallel: the FHIR server pages each search one page at a time, so
 * one long search is sequential round trips, while slices overlap them (bench SCHED).
 */
async function slotsInWindow(
  deps: SchedulingDeps,
  schedules: readonly Schedule[],
  from: number,
  endMs: number,
): Promise<Slot[]> {
  const ids = schedules.map((s) => `Schedule/${s.id}`);
  const searches: Promise<Slot[]>[] = [];
  const slices = Math.max(1, Math.min(SLOT_SEARCH_SLICES, Math.ceil((endMs - from) / 86400_000)));
  const step = Math.ceil((endMs - from) / slices);
  // At most 50 Schedules per search, to keep the URL short.
  for (let i = 0; i < ids.length; i += 50) {
    for (let k = 0; k < slices; k++) {
      const a = from + k * step;
      const b = Math.min(endMs, a + step);
      if (a >= b) continue;
      searches.push(
        deps.fhir.searchAll<Slot>(
          'Slot',
          {
            schedule: ids.slice(i, i + 50).join(','),
            start: [`ge${new Date(a).toISOString()}`, `lt${new Date(b).toISOString()}`],
            _count: 200,
          },
          { noCache: true, maxPages: 500 },
        ),
      );
    }
  }
  return (await Promise.all(searches)).flat();
}

/** Read 3 of 3: the patient's earlier appointments (in the journey, when named), for continuity of care. */
async function earlierAppointments(
  deps: SchedulingDeps,
  patient: Patient | undefined,
  journey: EpisodeOfCare | undefined,
): Promise<Appointment[]> {
  if (!patient) return [];
  return deps.fhir.searchAll<Appointment>(
    'Appointment',
    {
      ...(journey ? { journey: `EpisodeOfCare/${journey.id}` } : { patient: `Patient/${patient.id}` }),
      status: 'fulfilled,arrived,checked-in,booked',
      _sort: '-date',
      _count: 50,
    },
    { noCache: true, maxPages: 1 },
  );
}

/** Per Schedule, the share of its Slots in the window that are taken. */
function loadPerSchedule(slots: readonly Slot[]): Map<string, number> {
  const counts = new Map<string, { busy: number; total: number }>();
  for (const s of slots) {
    const l = counts.get(s.schedule.reference ?? '') ?? { busy: 0, total: 0 };
    l.total++;
    if (s.status !== 'free') l.busy++;
    counts.set(s.schedule.reference ?? '', l);
  }
  return new Map([...counts].map(([k, l]) => [k, l.total ? l.busy / l.total : 0]));
}

/** The free Slots of the window that fit the visit type, as ranking candidates. */
function candidatesOf(
  slots: readonly Slot[],
  offering: Offering,
  visitType: Coding | undefined,
  from: number,
): Candidate[] {
  const bySchedule = new Map(offering.schedules.map((s) => [`Schedule/${s.id}`, s]));
  const load = loadPerSchedule(slots);
  const candidates: Candidate[] = [];
  for (const s of slots) {
    if (s.status !== 'free') continue;
    if (visitType && s.appointmentType && !matches(s.appointmentType, visitType)) continue;
    const sMs = Date.parse(s.start);
    if (sMs < from) continue;
    const schedule = bySchedule.get(s.schedule.reference ?? '');
    const practitioner = schedule?.actor.find((a) => a.reference?.startsWith('Practitioner/'))?.reference;
    const location = schedule?.actor.find((a) => a.reference?.startsWith('Location/'))?.reference;
    const position = positionOf(location ? offering.locations.get(location) : undefined);
    candidates.push({
      slotId: s.id!,
      startMs: sMs,
      endMs: Date.parse(s.end),
      ...(practitioner ? { practitioner } : {}),
      ...(location ? { location } : {}),
      ...(position ? { position } : {}),
      languages: languagesOf(practitioner ? offering.practitioners.get(practitioner) : undefined),
      load: load.get(s.schedule.reference ?? '') ?? 0,
    });
  }
  return candidates;
}

/** What ranking knows of the patient: preferences (the journey's win), language, home, earlier practitioners. */
function rankingContext(
  deps: SchedulingDeps,
  patient: Patient | undefined,
  journey: EpisodeOfCare | undefined,
  previous: readonly Appointment[],
  window: { from: number; endMs: number },
): RankingContext {
  const prefs: Preferences = mergePreferences(readPreferences(patient), readPreferences(journey));
  const language = prefs.language ?? patientLanguage(patient);
  const home = homeOf(patient);
  return {
    windowStartMs: window.from,
    windowEndMs: window.endMs,
    zone: zoneOf(patient, deps.defaultZone),
    preferences: { ...prefs, ...(language ? { language } : {}) },
    previousPractitioners: [
      ...new Set(
        previous.flatMap((a) =>
          a.participant.map((p) => p.actor?.reference ?? '').filter((r) => r.startsWith('Practitioner/')),
        ),
      ),
    ],
    ...(home ? { home } : {}),
    weights: deps.weights,
  };
}

/** A ranked Slot as a proposed Appointment: its score on `search.score`, an extension and the comment. */
function proposedAppointment(
  r: Scored,
  slot: Slot,
  patient: Patient | undefined,
  journey: EpisodeOfCare | undefined,
  visitType: Coding | undefined,
): BundleEntry {
  const { candidate: c, score, reasons } = r;
  const participant: AppointmentParticipant[] = [
    ...(patient ? [{ actor: { reference: `Patient/${patient.id}` }, status: 'needs-action' as const }] : []),
    ...(c.practitioner ? [{ actor: { reference: c.practitioner }, status: 'needs-action' as const }] : []),
    ...(c.location ? [{ actor: { reference: c.location }, status: 'needs-action' as const }] : []),
  ];
  const appointment: Appointment = {
    resourceType: 'Appointment',
    status: 'proposed',
    extension: [
      { url: canonical.appointmentScoreExtension, valueDecimal: score },
      ...(journey ? [journeyLink(journey.id!)] : []),
    ],
    ...(slot.serviceType ? { serviceType: slot.serviceType } : {}),
    ...(slot.specialty ? { specialty: slot.specialty } : {}),
    ...(slot.appointmentType
      ? { appointmentType: slot.appointmentType }
      : visitType
        ? { appointmentType: { coding: [visitType] } }
        : {}),
    start: slot.start,
    end: slot.end,
    slot: [{ reference: `Slot/${slot.id}` }],
    comment: `score ${score.toFixed(4)}: ${reasons.join('; ')}`,
    participant,
  };
  return {
    fullUrl: `urn:uuid:${crypto.randomUUID()}`,
    resource: appointment,
    search: { mode: 'match', score },
  };
}

/**
 * `$find`: the best free Slots for the service in the window, ranked for the patient (and journey) when one is
 * named, as a searchset of proposed Appointments, with the patient's allergy alerts as Flags.
 */
export async function findAppointments(deps: SchedulingDeps, input: FindInput): Promise<Bundle> {
  const nowMs = now(deps).getTime();
  const window = findWindow(input, nowMs);
  // The checks wait for all three reads: a failed read is reported before a refused request.
  const [offering, patient, journey] = await Promise.all([
    searchOffering(deps, input),
    input.patientId ? mustRead<Patient>(deps.fhir, 'Patient', input.patientId) : undefined,
    input.journeyId ? mustRead<EpisodeOfCare>(deps.fhir, 'EpisodeOfCare', input.journeyId) : undefined,
  ]);
  checkFindTargets(input, offering, patient, journey);
  const [slots, previous, allergy] = await Promise.all([
    slotsInWindow(deps, offering.schedules, window.from, window.endMs),
    earlierAppointments(deps, patient, journey),
    patient ? deps.journeys.allergyAlertsFor(patient.id!) : [],
  ]);
  const ranked = rank(
    candidatesOf(slots, offering, input.visitType, window.from),
    rankingContext(deps, patient, journey, previous, window),
  ).slice(0, input.count);
  const slotById = new Map(slots.map((s) => [s.id!, s]));
  const entry: BundleEntry[] = ranked.map((r) =>
    proposedAppointment(r, slotById.get(r.candidate.slotId)!, patient, journey, input.visitType),
  );
  for (const a of allergy)
    entry.push({
      fullUrl: `urn:uuid:${crypto.randomUUID()}`,
      resource: alertFlag(a, patient!.id!),
      search: { mode: 'include' },
    });
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    timestamp: new Date(nowMs).toISOString(),
    total: ranked.length,
    entry,
  };
}

/** A patient token sets preferences only on its own Patient, or on one of its own journeys. */
async function checkOwnRecord(
  deps: SchedulingDeps,
  type: 'Patient' | 'EpisodeOfCare',
  id: string,
  confinedTo: string,
): Promise<void> {
  const patientId =
    type === 'Patient'
      ? id
      : /^Patient\/(.+)$/.exec((await deps.journeys.readJourney(id)).episode.patient.reference ?? '')?.[1];
  if (patientId !== confinedTo)
    throw new CarewayError('outside-compartment', 'a patient token can only act for its own patient');
}

/**
 * `$set-preferences` on a Patient or a journey: replaces the preferences extension with If-Match. With
 * `confinedTo` (a patient token), only on that patient's own records.
 */
export async function setPreferences(
  deps: SchedulingDeps,
  type: 'Patient' | 'EpisodeOfCare',
  id: string,
  prefs: Preferences,
  confinedTo?: string,
): Promise<Patient | EpisodeOfCare> {
  if (confinedTo) await checkOwnRecord(deps, type, id, confinedTo);
  // Someone else changed the resource since we read it: apply our change on top of theirs.
  return retryOnConflict(async () => {
    const current = await mustRead<Patient | EpisodeOfCare>(deps.fhir, type, id, 'not-found');
    const next = withPreferences(current, prefs);
    const written = await deps.fhir.update({ ...next, id }, { ifMatch: current.meta?.versionId ?? '' });
    return written.resource;
  });
}
