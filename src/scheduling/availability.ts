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
import { alertFlag } from '../journey/timeline.js';
import { CarewayError } from '../shared/errors.js';
import { checkTemplate, generateSlots, type SlotTemplate } from './slots.js';
import { rank, type Candidate, type Preferences } from './ranking.js';
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

export async function findAppointments(deps: SchedulingDeps, input: FindInput): Promise<Bundle> {
  const nowMs = now(deps).getTime();
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
  const from = Math.max(startMs, nowMs);

  // 1. Schedules offering the service, with their actors.
  const scheduleQuery: Record<string, string | string[]> = { active: 'true', _count: '200' };
  if (input.serviceType) scheduleQuery['service-type'] = token(input.serviceType);
  if (input.specialty) scheduleQuery['specialty'] = token(input.specialty);
  const actors = [
    ...(input.practitionerId ? [`Practitioner/${input.practitionerId}`] : []),
    ...(input.locationId ? [`Location/${input.locationId}`] : []),
  ];
  if (actors.length) scheduleQuery['actor'] = actors;
  scheduleQuery['_include'] = 'Schedule:actor';
  const [found, patient, journey] = await Promise.all([
    deps.fhir.searchAll<Schedule | Practitioner | Location>('Schedule', scheduleQuery, {
      noCache: true,
      maxPages: 20,
    }),
    input.patientId ? mustRead<Patient>(deps.fhir, 'Patient', input.patientId) : Promise.resolve(undefined),
    input.journeyId
      ? mustRead<EpisodeOfCare>(deps.fhir, 'EpisodeOfCare', input.journeyId)
      : Promise.resolve(undefined),
  ]);
  if (journey && patient && journey.patient.reference !== `Patient/${patient.id}`)
    throw new CarewayError('invalid-parameters', '$find: the journey belongs to another patient');
  const schedules = found.filter((r): r is Schedule => r.resourceType === 'Schedule');
  if (schedules.length === 0) {
    throw new CarewayError(
      'unknown-reference',
      `$find: no active Schedule offers this ${input.serviceType ? 'service type' : 'specialty'}${actors.length ? ' with the given practitioner or location' : ''}`,
      { detailsCode: 'unknown-service' },
    );
  }
  const practitioners = new Map(
    found
      .filter((r): r is Practitioner => r.resourceType === 'Practitioner')
      .map((p) => [`Practitioner/${p.id}`, p]),
  );
  const locations = new Map(
    found.filter((r): r is Location => r.resourceType === 'Location').map((l) => [`Location/${l.id}`, l]),
  );

  // 2. The slots of those schedules in the window (all statuses: taken ones give the load).
  // The window is cut into slices searched in parallel: the FHIR server pages each search one page at a
  // time, so one long search is sequential round trips, while slices overlap them (bench SCHED).
  const ids = schedules.map((s) => `Schedule/${s.id}`);
  const slotPages: Promise<Slot[]>[] = [];
  const slices = Math.max(1, Math.min(SLOT_SEARCH_SLICES, Math.ceil((endMs - from) / 86400_000)));
  const step = Math.ceil((endMs - from) / slices);
  for (let i = 0; i < ids.length; i += 50) {
    for (let k = 0; k < slices; k++) {
      const a = from + k * step;
      const b = Math.min(endMs, a + step);
      if (a >= b) continue;
      slotPages.push(
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
  // 3. Earlier appointments (continuity), in parallel with the slots.
  const earlier = patient
    ? deps.fhir.searchAll<Appointment>(
        'Appointment',
        {
          ...(journey ? { journey: `EpisodeOfCare/${journey.id}` } : { patient: `Patient/${patient.id}` }),
          status: 'fulfilled,arrived,checked-in,booked',
          _sort: '-date',
          _count: 50,
        },
        { noCache: true, maxPages: 1 },
      )
    : Promise.resolve([] as Appointment[]);
  const alerts = patient ? deps.journeys.allergyAlertsFor(patient.id!) : Promise.resolve([]);
  const [slotLists, previous, allergy] = await Promise.all([Promise.all(slotPages), earlier, alerts]);
  const slots = slotLists.flat();

  const bySchedule = new Map(schedules.map((s) => [`Schedule/${s.id}`, s]));
  const loadOf = new Map<string, { busy: number; total: number }>();
  for (const s of slots) {
    const l = loadOf.get(s.schedule.reference ?? '') ?? { busy: 0, total: 0 };
    l.total++;
    if (s.status !== 'free') l.busy++;
    loadOf.set(s.schedule.reference ?? '', l);
  }
  const candidates: Candidate[] = [];
  for (const s of slots) {
    if (s.status !== 'free') continue;
    if (input.visitType && s.appointmentType && !matches(s.appointmentType, input.visitType)) continue;
    const sMs = Date.parse(s.start);
    if (sMs < from) continue;
    const schedule = bySchedule.get(s.schedule.reference ?? '');
    const practitioner = schedule?.actor.find((a) => a.reference?.startsWith('Practitioner/'))?.reference;
    const location = schedule?.actor.find((a) => a.reference?.startsWith('Location/'))?.reference;
    const l = loadOf.get(s.schedule.reference ?? '');
    const position = positionOf(location ? locations.get(location) : undefined);
    candidates.push({
      slotId: s.id!,
      startMs: sMs,
      endMs: Date.parse(s.end),
      ...(practitioner ? { practitioner } : {}),
      ...(location ? { location } : {}),
      ...(position ? { position } : {}),
      languages: languagesOf(practitioner ? practitioners.get(practitioner) : undefined),
      load: l && l.total ? l.busy / l.total : 0,
    });
  }

  const prefs: Preferences = mergePreferences(readPreferences(patient), readPreferences(journey));
  const language = prefs.language ?? patientLanguage(patient);
  const home = homeOf(patient);
  const ranked = rank(candidates, {
    windowStartMs: from,
    windowEndMs: endMs,
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
  }).slice(0, input.count);

  const slotById = new Map(slots.map((s) => [s.id!, s]));
  const entry: BundleEntry[] = ranked.map(({ candidate: c, score, reasons }) => {
    const slot = slotById.get(c.slotId)!;
    const participant: AppointmentParticipant[] = [
      ...(patient
        ? [{ actor: { reference: `Patient/${patient.id}` }, status: 'needs-action' as const }]
        : []),
      ...(c.practitioner ? [{ actor: { reference: c.practitioner }, status: 'needs-action' as const }] : []),
      ...(c.location ? [{ actor: { reference: c.location }, status: 'needs-action' as const }] : []),
    ];
    const appointment: Appointment = {
      resourceType: 'Appointment',
      status: 'proposed',
      extension: [
        { url: canonical.appointmentScoreExtension, valueDecimal: score },
        ...(journey
          ? [
              {
                url: canonical.journeyReferenceExtension,
                valueReference: { reference: `EpisodeOfCare/${journey.id}` },
              },
            ]
          : []),
      ],
      ...(slot.serviceType ? { serviceType: slot.serviceType } : {}),
      ...(slot.specialty ? { specialty: slot.specialty } : {}),
      ...(slot.appointmentType
        ? { appointmentType: slot.appointmentType }
        : input.visitType
          ? { appointmentType: { coding: [input.visitType] } }
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
  });
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

/** `$set-preferences` on a Patient or a journey: replaces the preferences extension with If-Match. */
export async function setPreferences(
  deps: SchedulingDeps,
  type: 'Patient' | 'EpisodeOfCare',
  id: string,
  prefs: Preferences,
): Promise<Patient | EpisodeOfCare> {
  // Someone else changed the resource since we read it: apply our change on top of theirs.
  return retryOnConflict(async () => {
    const current = await mustRead<Patient | EpisodeOfCare>(deps.fhir, type, id, 'not-found');
    const next = withPreferences(current, prefs);
    const written = await deps.fhir.update({ ...next, id }, { ifMatch: current.meta?.versionId ?? '' });
    return written.resource;
  });
}
