/**
 * Careway's eight journey KPIs: for each, the FHIR searches it needs (`collect`, I/O through a Searcher only)
 * and how their results become report groups (`groups`, pure). The published Measure resources in profiles/
 * (Measure-<id>.json) describe the same definitions in words; a unit test keeps their ids and group codes in
 * step with this file.
 *
 * Conventions shared by every measure:
 * - the period is [start, end) in UTC instants; an item belongs to the period by its own time (appointment
 *   start, referral authored, reminder sent, survey authored, stay ended, journey open);
 * - `subject` (one patient) narrows every search with `patient=`;
 * - items are attached to their journey through the journey-reference extension (or, for referrals, the
 *   journey's `referralRequest`), and stratified by that journey's stage and service (strata.ts).
 */
import type {
  Appointment,
  AppointmentResponse,
  Communication,
  EpisodeOfCare,
  Extension,
  Provenance,
  QuestionnaireResponse,
  Resource,
  ServiceRequest,
  Task,
} from 'fhir/r4.js';
import { CANONICAL_BASE, canonical, PROFILES_VERSION } from '../fhir/canonical.js';
import { stageCoding } from '../journey/episode.js';
import { JOURNEY_STAGES } from '../journey/stages.js';
import type { JourneyState } from '../journey/rules.js';
import type { GroupSpec, ObservationItem, ProportionItem, NpsItem, Stratified } from './report.js';
import type { SearchResult, Searcher } from './searches.js';
import { journeyState, reachedBy, serviceStratum, stageAt, stageStratum } from './strata.js';

export const MEASURE_IDS = [
  'careway-stage-funnel',
  'careway-time-in-stage',
  'careway-no-show-rate',
  'careway-referral-to-first-appointment',
  'careway-referral-turnaround',
  'careway-reminder-delivery',
  'careway-reminder-confirmation',
  'careway-patient-experience-nps',
] as const;

export type MeasureId = (typeof MEASURE_IDS)[number];

export function isMeasureId(id: string): id is MeasureId {
  return (MEASURE_IDS as readonly string[]).includes(id);
}

/** The published Measures' version (their files in profiles/ carry it). */
export const MEASURE_VERSION = PROFILES_VERSION;

export const measureUrl = (id: MeasureId): string => `${canonical.measureBase}/${id}`;

/** The patient-experience survey (profiles/Questionnaire-patient-experience.json) and its answers read here. */
export const PATIENT_EXPERIENCE = `${CANONICAL_BASE}/Questionnaire/patient-experience`;
export const NPS_LINK_ID = 'recommend-score';
export const OVERALL_LINK_ID = 'overall';

export interface EvaluationContext {
  /** Inclusive start and exclusive end, as ISO instants and milliseconds. */
  readonly start: string;
  readonly end: string;
  readonly startMs: number;
  readonly endMs: number;
  /** The evaluation's clock: a period not over yet is read as of now. */
  readonly nowMs: number;
  /** One patient's id, when the report is about one patient. */
  readonly patient?: string;
}

/** What a measure's searches returned, by name. */
export type Collected = Readonly<Record<string, SearchResult>>;

export interface MeasureDefinition {
  readonly id: MeasureId;
  collect(search: Searcher, ctx: EvaluationContext): Promise<Collected>;
  groups(collected: Collected, ctx: EvaluationContext): GroupSpec[];
}

// ---- helpers ----

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

function params(ctx: EvaluationContext, entries: readonly (readonly [string, string])[]): URLSearchParams {
  const p = new URLSearchParams();
  for (const [k, v] of entries) p.append(k, v);
  if (ctx.patient) p.append('patient', `Patient/${ctx.patient}`);
  return p;
}

/** `name=geSTART&name=ltEND`: the period as search criteria. */
function inPeriod(name: string, ctx: EvaluationContext): [string, string][] {
  return [
    [name, `ge${ctx.start}`],
    [name, `lt${ctx.end}`],
  ];
}

/** The instant the stage stratifier reads: the end of the period, or now for a period not over yet. */
const cutoff = (ctx: EvaluationContext): number => Math.min(ctx.endMs - 1, ctx.nowMs);

const within = (t: number, ctx: EvaluationContext): boolean => t >= ctx.startMs && t < ctx.endMs;

function journeyRefOf(r: { extension?: Extension[] }): string | undefined {
  return r.extension?.find((e) => e.url === canonical.journeyReferenceExtension)?.valueReference?.reference;
}

/** The strata of an item whose journey is `episode` (undefined: unlinked, both strata unknown). */
function strataOf(episode: EpisodeOfCare | undefined, ctx: EvaluationContext): Stratified {
  const state = journeyState(episode);
  return { stage: stageStratum(stageAt(state, cutoff(ctx))), service: serviceStratum(episode) };
}

function linkedJourney(r: { extension?: Extension[] }, result: SearchResult): EpisodeOfCare | undefined {
  const ref = journeyRefOf(r);
  return ref ? (result.included.get(ref) as EpisodeOfCare | undefined) : undefined;
}

/** Journeys (EpisodeOfCare with a Careway stage) open at some time in the period. */
function journeysInPeriod(result: SearchResult): { episode: EpisodeOfCare; state: JourneyState }[] {
  const out: { episode: EpisodeOfCare; state: JourneyState }[] = [];
  for (const r of result.matches) {
    const episode = r as EpisodeOfCare;
    if (episode.status === 'entered-in-error') continue;
    const state = journeyState(episode);
    if (state) out.push({ episode, state });
  }
  return out;
}

const journeySearch = (search: Searcher, ctx: EvaluationContext): Promise<SearchResult> =>
  // EpisodeOfCare `date` is its period: ge START matches a journey still open at the start (or ended after
  // it), lt END one begun before the end, so both together are the journeys open during the period.
  search.all(
    'EpisodeOfCare',
    params(ctx, [...inPeriod('date', ctx), ['_elements', 'status,type,period,extension']]),
  );

// ---- the measures ----

const stageFunnel: MeasureDefinition = {
  id: 'careway-stage-funnel',
  async collect(search, ctx) {
    return { journeys: await journeySearch(search, ctx) };
  },
  groups(c, ctx) {
    const t = cutoff(ctx);
    const journeys = journeysInPeriod(c['journeys']!);
    return JOURNEY_STAGES.map((stage) => {
      const coding = stageCoding(stage);
      return {
        kind: 'proportion' as const,
        code: stage,
        display: `Reached ${coding.display}`,
        system: coding.system,
        items: journeys.map(({ episode, state }) => ({
          stage: stageStratum(stageAt(state, t)),
          service: serviceStratum(episode),
          denominator: true,
          numerator: reachedBy(state, stage, t),
        })),
      };
    });
  },
};

const timeInStage: MeasureDefinition = {
  id: 'careway-time-in-stage',
  async collect(search, ctx) {
    return { journeys: await journeySearch(search, ctx) };
  },
  groups(c, ctx) {
    const items: ObservationItem[] = [];
    for (const { episode, state } of journeysInPeriod(c['journeys']!)) {
      const service = serviceStratum(episode);
      for (const stay of state.stageHistory) {
        if (!stay.end) continue;
        const end = Date.parse(stay.end);
        if (!within(end, ctx)) continue;
        items.push({
          stage: stageStratum(stay.stage),
          service,
          value: (end - Date.parse(stay.start)) / DAY_MS,
        });
      }
    }
    return [
      {
        kind: 'continuous',
        code: 'median',
        display: 'Median days in stage',
        method: 'median',
        unit: 'd',
        items,
      },
      {
        kind: 'continuous',
        code: 'p90',
        display: '90th percentile of days in stage',
        method: 'p90',
        unit: 'd',
        items,
      },
    ];
  },
};

const noShowRate: MeasureDefinition = {
  id: 'careway-no-show-rate',
  async collect(search, ctx) {
    const appointments = await search.all(
      'Appointment',
      params(ctx, [
        ...inPeriod('date', ctx),
        ['status', 'noshow,fulfilled'],
        ['_elements', 'status,extension'],
        ['_include', 'Appointment:journey'],
      ]),
    );
    return { appointments };
  },
  groups(c, ctx) {
    const result = c['appointments']!;
    const items: ProportionItem[] = result.matches.map((r) => {
      const a = r as Appointment;
      return {
        ...strataOf(linkedJourney(a, result), ctx),
        denominator: a.status === 'noshow' || a.status === 'fulfilled',
        numerator: a.status === 'noshow',
      };
    });
    return [
      {
        kind: 'proportion',
        code: 'no-show',
        display: 'No-shows among attended or missed appointments',
        items,
      },
    ];
  },
};

/** Appointment statuses that stand for a booking that held (a cancelled or proposed one is no first appointment). */
const BOOKED = new Set(['booked', 'arrived', 'checked-in', 'fulfilled', 'noshow']);

const referralToFirstAppointment: MeasureDefinition = {
  id: 'careway-referral-to-first-appointment',
  async collect(search, ctx) {
    const referrals = await search.all(
      'ServiceRequest',
      params(ctx, [
        ...inPeriod('authored', ctx),
        ['_elements', 'authoredOn'],
        ['_revinclude', 'EpisodeOfCare:incoming-referral'],
        ['_revinclude', 'Appointment:based-on'],
        ['_revinclude:iterate', 'Appointment:journey'],
      ]),
    );
    return { referrals };
  },
  groups(c, ctx) {
    const result = c['referrals']!;
    const journeyOf = new Map<string, EpisodeOfCare>();
    const firstStart = new Map<string, number>();
    const earliest = (key: string, t: number): void => {
      const prev = firstStart.get(key);
      if (prev === undefined || t < prev) firstStart.set(key, t);
    };
    for (const [, r] of result.included) {
      if (r.resourceType === 'EpisodeOfCare') {
        for (const ref of (r as EpisodeOfCare).referralRequest ?? [])
          if (ref.reference) journeyOf.set(ref.reference, r as EpisodeOfCare);
      }
    }
    for (const [, r] of result.included) {
      if (r.resourceType !== 'Appointment') continue;
      const a = r as Appointment;
      const t = a.start ? Date.parse(a.start) : NaN;
      if (!BOOKED.has(a.status) || !Number.isFinite(t)) continue;
      for (const b of a.basedOn ?? []) if (b.reference) earliest(b.reference, t);
      const j = journeyRefOf(a);
      if (j) earliest(j, t);
    }
    const items: ObservationItem[] = [];
    for (const r of result.matches) {
      const sr = r as ServiceRequest;
      const ref = `ServiceRequest/${sr.id}`;
      const episode = journeyOf.get(ref);
      // A ServiceRequest no journey started from is an order, not a referral.
      if (!episode || !sr.authoredOn) continue;
      const a = firstStart.get(ref);
      const b = firstStart.get(`EpisodeOfCare/${episode.id}`);
      const first = a === undefined ? b : b === undefined ? a : Math.min(a, b);
      items.push({
        ...strataOf(episode, ctx),
        ...(first === undefined ? {} : { value: (first - Date.parse(sr.authoredOn)) / DAY_MS }),
      });
    }
    return [
      {
        kind: 'continuous',
        code: 'median',
        display: 'Median days from referral to first appointment',
        method: 'median',
        unit: 'd',
        items,
      },
    ];
  },
};

/** Task statuses that mean triage has not decided yet. */
const UNTRIAGED = new Set(['draft', 'requested', 'received', 'ready']);

const referralTurnaround: MeasureDefinition = {
  id: 'careway-referral-turnaround',
  async collect(search, ctx) {
    const tasks = await search.all(
      'Task',
      params(ctx, [
        ['identifier', `${canonical.triageTaskSystem}|`],
        ...inPeriod('authored-on', ctx),
        ['_elements', 'status,authoredOn,lastModified,extension'],
        ['_include', 'Task:journey'],
        ['_revinclude', 'Provenance:target'],
      ]),
    );
    return { tasks };
  },
  groups(c, ctx) {
    const result = c['tasks']!;
    // The triage decision's time: the Provenance Careway writes with it (`triage:<from>-><to>`, from an
    // undecided status); a Task triaged by someone else's write falls back on its lastModified.
    const decidedAt = new Map<string, number>();
    for (const [, r] of result.included) {
      if (r.resourceType !== 'Provenance') continue;
      const p = r as Provenance;
      const m = /^triage:([a-z-]+)->/.exec(p.activity?.text ?? '');
      if (!m || !UNTRIAGED.has(m[1]!)) continue;
      const t = Date.parse(p.recorded);
      for (const target of p.target) {
        const ref = target.reference?.replace(/\/_history\/.*$/, '');
        if (!ref) continue;
        const prev = decidedAt.get(ref);
        if (prev === undefined || t < prev) decidedAt.set(ref, t);
      }
    }
    const items: ObservationItem[] = result.matches.map((r) => {
      const task = r as Task;
      let decided = decidedAt.get(`Task/${task.id}`);
      if (decided === undefined && !UNTRIAGED.has(task.status) && task.lastModified)
        decided = Date.parse(task.lastModified);
      const received = task.authoredOn ? Date.parse(task.authoredOn) : NaN;
      return {
        ...strataOf(linkedJourney(task, result), ctx),
        ...(decided !== undefined && Number.isFinite(received)
          ? { value: (decided - received) / HOUR_MS }
          : {}),
      };
    });
    return [
      {
        kind: 'continuous',
        code: 'median',
        display: 'Median hours from referral received to triaged',
        method: 'median',
        unit: 'h',
        items,
      },
    ];
  },
};

const reminderSearch = (
  search: Searcher,
  ctx: EvaluationContext,
  extra: [string, string][],
): Promise<SearchResult> =>
  search.all(
    'Communication',
    params(ctx, [
      ['category', `${canonical.communicationCategory}|reminder`],
      ...inPeriod('sent', ctx),
      ...extra,
      ['_include', 'Communication:journey'],
    ]),
  );

/** The reminder a Communication reports on: its basedOn key (failed attempts carry `<key>|not-done` as id). */
function reminderKeyOf(c: Communication): string | undefined {
  const based = c.basedOn?.find((b) => b.identifier?.system === canonical.reminderSystem)?.identifier?.value;
  if (based) return based;
  const own = c.identifier?.find((i) => i.system === canonical.reminderSystem)?.value;
  return own?.replace(/\|not-done$/, '');
}

const reminderDelivery: MeasureDefinition = {
  id: 'careway-reminder-delivery',
  async collect(search, ctx) {
    return {
      reminders: await reminderSearch(search, ctx, [
        ['status', 'completed,not-done'],
        ['_elements', 'status,identifier,basedOn,extension'],
      ]),
    };
  },
  groups(c, ctx) {
    const result = c['reminders']!;
    // One item per reminder: a reminder retried after failures has several Communications, delivered once.
    const byKey = new Map<string, { delivered: boolean; c: Communication }>();
    for (const r of result.matches) {
      const comm = r as Communication;
      const key = reminderKeyOf(comm) ?? `Communication/${comm.id}`;
      const prev = byKey.get(key);
      byKey.set(key, {
        delivered: (prev?.delivered ?? false) || comm.status === 'completed',
        c: prev?.c ?? comm,
      });
    }
    const items: ProportionItem[] = [...byKey.values()].map(({ delivered, c: comm }) => ({
      ...strataOf(linkedJourney(comm, result), ctx),
      denominator: true,
      numerator: delivered,
    }));
    return [
      {
        kind: 'proportion',
        code: 'delivered',
        display: 'Reminders delivered among reminders attempted',
        items,
      },
    ];
  },
};

/** Appointment ids per AppointmentResponse search: keeps the URL short (about 2 kB). */
const ID_CHUNK = 100;

const reminderConfirmation: MeasureDefinition = {
  id: 'careway-reminder-confirmation',
  async collect(search, ctx) {
    const reminders = await reminderSearch(search, ctx, [
      ['status', 'completed'],
      ['_elements', 'status,about,extension'],
    ]);
    // Communication has no search parameter on `about`, so the reminded Appointments' confirmations are asked
    // for by id, a hundred at a time: requests grow with the reminded appointments / 100, not per patient.
    const ids = [...new Set(reminders.matches.flatMap((r) => appointmentsAbout(r as Communication)))];
    const matches: Resource[] = [];
    for (let i = 0; i < ids.length; i += ID_CHUNK) {
      const chunk = ids.slice(i, i + ID_CHUNK);
      const res = await search.all(
        'AppointmentResponse',
        new URLSearchParams({
          appointment: chunk.map((id) => `Appointment/${id}`).join(','),
          'part-status': 'accepted',
          _elements: 'appointment,actor,participantStatus',
        }),
      );
      matches.push(...res.matches);
    }
    return { reminders, responses: { matches, included: new Map() } };
  },
  groups(c, ctx) {
    const result = c['reminders']!;
    const confirmed = new Set<string>();
    for (const r of c['responses']!.matches) {
      const ar = r as AppointmentResponse;
      if (
        ar.participantStatus === 'accepted' &&
        ar.actor?.reference?.startsWith('Patient/') &&
        ar.appointment.reference
      )
        confirmed.add(ar.appointment.reference.replace(/^Appointment\//, ''));
    }
    // One item per reminded appointment (several reminders for one appointment are one chance to confirm).
    const byAppointment = new Map<string, Communication>();
    for (const r of result.matches)
      for (const id of appointmentsAbout(r as Communication))
        if (!byAppointment.has(id)) byAppointment.set(id, r as Communication);
    const items: ProportionItem[] = [...byAppointment].map(([id, comm]) => ({
      ...strataOf(linkedJourney(comm, result), ctx),
      denominator: true,
      numerator: confirmed.has(id),
    }));
    return [
      {
        kind: 'proportion',
        code: 'confirmed',
        display: 'Reminded appointments the patient confirmed',
        items,
      },
    ];
  },
};

function appointmentsAbout(c: Communication): string[] {
  return (c.about ?? []).flatMap((a) => {
    const m = /^Appointment\/([A-Za-z0-9\-.]{1,64})$/.exec(a.reference ?? '');
    return m ? [m[1]!] : [];
  });
}

const patientExperience: MeasureDefinition = {
  id: 'careway-patient-experience-nps',
  async collect(search, ctx) {
    const responses = await search.all(
      'QuestionnaireResponse',
      params(ctx, [
        ...inPeriod('authored', ctx),
        ['status', 'completed,amended'],
        ['_elements', 'questionnaire,item,extension'],
        ['_include', 'QuestionnaireResponse:journey'],
      ]),
    );
    return { responses };
  },
  groups(c, ctx) {
    const result = c['responses']!;
    const nps: NpsItem[] = [];
    const overall: ObservationItem[] = [];
    for (const r of result.matches) {
      const qr = r as QuestionnaireResponse;
      // Matched here rather than by `questionnaire=` in the search: responses cite the survey with or
      // without its version, and a canonical search would miss one form or the other.
      if (qr.questionnaire?.split('|')[0] !== PATIENT_EXPERIENCE) continue;
      const strata = strataOf(linkedJourney(qr, result), ctx);
      const answer = (linkId: string): number | undefined =>
        qr.item?.find((i) => i.linkId === linkId)?.answer?.[0]?.valueInteger;
      const score = answer(NPS_LINK_ID);
      const o = answer(OVERALL_LINK_ID);
      nps.push({ ...strata, ...(score === undefined ? {} : { score }) });
      overall.push({ ...strata, ...(o === undefined ? {} : { value: o }) });
    }
    const proportion = (code: string, display: string, hit: (s: number) => boolean): GroupSpec => ({
      kind: 'proportion',
      code,
      display,
      items: nps.map((i) => ({
        stage: i.stage,
        service: i.service,
        denominator: i.score !== undefined && Number.isInteger(i.score) && i.score >= 0 && i.score <= 10,
        numerator: i.score !== undefined && hit(i.score),
      })),
    });
    return [
      { kind: 'nps', code: 'nps', display: 'Net Promoter Score (% 9-10 minus % 0-6)', items: nps },
      proportion('promoters', 'Promoters (9-10) among 0-10 answers', (s) => s >= 9),
      proportion('detractors', 'Detractors (0-6) among 0-10 answers', (s) => s <= 6),
      {
        kind: 'continuous',
        code: 'overall',
        display: 'Mean overall rating (1-5)',
        method: 'average',
        items: overall,
      },
    ];
  },
};

export const MEASURES: Readonly<Record<MeasureId, MeasureDefinition>> = {
  'careway-stage-funnel': stageFunnel,
  'careway-time-in-stage': timeInStage,
  'careway-no-show-rate': noShowRate,
  'careway-referral-to-first-appointment': referralToFirstAppointment,
  'careway-referral-turnaround': referralTurnaround,
  'careway-reminder-delivery': reminderDelivery,
  'careway-reminder-confirmation': reminderConfirmation,
  'careway-patient-experience-nps': patientExperience,
};
