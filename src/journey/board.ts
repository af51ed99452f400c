/**
 * The journey board: one column per stage with its count, and a card per journey (time in stage against the
 * stage's target, next appointment, open and overdue tasks, last reminder outcome per channel, allergy flag,
 * pain points). Framework-free: the caller passes the FHIR port, the filters and what the caller may see.
 *
 * Cost is bounded whatever the number of patients:
 * - per stage, one search of the matching journeys (`stage=<code>` plus the filters) with `_total=accurate`,
 *   so the column's count is exact for every matching journey while only the first `limit` become cards
 *   (`overdue` pages through the stage instead, up to MAX_SCAN, because "over target" is computed here);
 * - the patients, care managers, teams and referrals come with those searches (`_include`);
 * - the linked resources (Appointments, Tasks, Communications, CarePlans, allergies) of the cards are read with
 *   one paged search per type and per chunk of CHUNK journeys, never one request per patient.
 *
 * "Service" is the journey's `EpisodeOfCare.type` (a CodeableConcept, set by `$start-journey`'s `type`),
 * searched with the standard `type` token; the team is `EpisodeOfCare.team` (Careway's `team` search
 * parameter); the care manager is `EpisodeOfCare.careManager` (`care-manager`).
 */
import type {
  AllergyIntolerance,
  Appointment,
  Bundle,
  CareTeam,
  CodeableConcept,
  Communication,
  EpisodeOfCare,
  Patient,
  Practitioner,
  Reference,
  Resource,
  Task,
} from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { canonical } from '../fhir/canonical.js';
import { readState, stageCoding } from './episode.js';
import { JOURNEY_STAGES, type JourneyStage } from './stages.js';
import { allergyAlerts, buildTimeline, type TimelineTargets } from './timeline.js';
import type { JourneyState } from './rules.js';

const DAY_MS = 86400_000;
/** Journeys per linked-resource search (`journey=EpisodeOfCare/a,EpisodeOfCare/b,…` stays a short URL). */
const CHUNK = 50;
/** With `overdue`, the most journeys of one stage that are looked at (pages of SCAN_PAGE). */
export const MAX_SCAN = 10_000;
const SCAN_PAGE = 200;
export const OPEN_TASK_STATUSES = ['requested', 'received', 'accepted', 'ready', 'in-progress', 'on-hold'];
export const OPEN_JOURNEY_STATUSES = ['planned', 'waitlist', 'active', 'onhold'];
const JOURNEY_STATUSES = [...OPEN_JOURNEY_STATUSES, 'finished', 'cancelled', 'entered-in-error'];

export interface BoardFilters {
  /** `code` or `system|code` of EpisodeOfCare.type. */
  readonly service?: string;
  /** CareTeam/{id}. */
  readonly team?: string;
  /** Practitioner/{id} (or another literal reference the careManager may hold). */
  readonly careManager?: string;
  readonly overdue?: boolean;
  /** EpisodeOfCare statuses; default the open ones. */
  readonly status?: readonly string[];
  /** Cards per stage. */
  readonly limit: number;
}

/** What the caller may see: each part of a card is left out when its resource type is not readable. */
export interface BoardVisibility {
  readonly patients: boolean;
  readonly allergies: boolean;
  readonly appointments: boolean;
  readonly tasks: boolean;
  readonly reminders: boolean;
  readonly carePlans: boolean;
  readonly referrals: boolean;
  readonly practitioners: boolean;
  readonly careTeams: boolean;
}

export interface BoardCard {
  readonly episodeId: string;
  readonly patientId: string;
  readonly patientName?: string;
  readonly stage: JourneyStage;
  readonly stageSince: string;
  readonly daysInStage: number;
  readonly targetDays?: number;
  readonly overTarget: boolean;
  readonly status: string;
  readonly service?: { code: string; display?: string };
  readonly team?: { reference: string; display?: string };
  readonly careManager?: { reference: string; display?: string };
  readonly nextAppointment?: { id: string; start: string; status: string; description?: string };
  readonly openTasks?: number;
  readonly overdueTasks?: number;
  readonly lastReminder?: Record<string, { outcome: string; at: string }>;
  readonly allergy?: boolean;
  readonly painPoints: { code: string; summary: string }[];
}

export interface Board {
  readonly generatedAt: string;
  readonly stages: { code: JourneyStage; display: string; count: number; targetDays: number | null }[];
  readonly cards: BoardCard[];
}

/** Problems with the filters, each named; empty when they are fine. */
export function checkBoardFilters(f: Partial<BoardFilters>): string[] {
  const problems: string[] = [];
  if (f.service !== undefined && !/^([^|\s]{1,200}\|)?[^|\s,]{1,100}$/.test(f.service))
    problems.push('"service" must be a code or system|code');
  if (f.team !== undefined && !/^CareTeam\/[A-Za-z0-9\-.]{1,64}$/.test(f.team))
    problems.push('"team" must be CareTeam/{id}');
  if (f.careManager !== undefined && !/^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(f.careManager))
    problems.push('"careManager" must be a reference such as Practitioner/{id}');
  for (const s of f.status ?? [])
    if (!JOURNEY_STATUSES.includes(s)) problems.push(`"status" must be among ${JOURNEY_STATUSES.join(', ')}`);
  return problems;
}

export const humanName = (p: Patient | Practitioner | undefined): string | undefined => {
  const n = p?.name?.find((x) => x.use === 'official') ?? p?.name?.[0];
  if (!n) return undefined;
  const text = n.text ?? [...(n.given ?? []), n.family ?? ''].join(' ').trim();
  return text || undefined;
};

const refOf = (r: Resource): string => `${r.resourceType}/${r.id ?? ''}`;
const journeyOf = (r: Resource): string | undefined =>
  (r as { extension?: { url: string; valueReference?: Reference }[] }).extension?.find(
    (e) => e.url === canonical.journeyReferenceExtension,
  )?.valueReference?.reference;

function serviceOf(type: readonly CodeableConcept[] | undefined): BoardCard['service'] {
  const c = type?.[0]?.coding?.find((x) => x.code) ?? undefined;
  if (c?.code)
    return {
      code: c.code,
      ...((c.display ?? type?.[0]?.text) ? { display: c.display ?? type?.[0]?.text } : {}),
    };
  if (type?.[0]?.text) return { code: type[0].text };
  return undefined;
}

/** The reminder channel a Communication went on (its v3 ParticipationMode medium). */
function channelOf(c: Communication): string {
  const code = c.medium?.[0]?.coding?.[0]?.code;
  if (code === 'SMSWRIT') return 'sms';
  if (code === 'EMAILWRIT') return 'email';
  if (code === 'ELECTRONIC') return 'portal';
  return code ?? 'other';
}

const isReminder = (c: Communication): boolean =>
  (c.category ?? []).some((cat) =>
    (cat.coding ?? []).some((x) => x.system === canonical.communicationCategory && x.code === 'reminder'),
  );

const chunks = <T>(xs: readonly T[], n: number): T[][] =>
  Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, i * n + n));

interface Row {
  readonly episode: EpisodeOfCare;
  readonly state: JourneyState;
  readonly since: string;
  readonly daysInStage: number;
  readonly overTarget: boolean;
}

export class JourneyBoard {
  constructor(
    private readonly fhir: FhirPort,
    private readonly targets: TimelineTargets,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async board(filters: BoardFilters, see: BoardVisibility): Promise<Board> {
    const now = this.clock();
    const included = new Map<string, Resource>();
    const columns = await Promise.all(
      JOURNEY_STAGES.map((stage) => this.column(stage, filters, see, now, included)),
    );
    const rows = columns.flatMap((c) => c.rows);
    const linked = await this.linked(rows, see);
    const cards = rows.map((r) => this.card(r, linked, included, see, now));
    return {
      generatedAt: now.toISOString(),
      stages: JOURNEY_STAGES.map((code, i) => ({
        code,
        display: stageCoding(code).display,
        count: columns[i]?.count ?? 0,
        targetDays: this.targetDays(code) ?? null,
      })),
      cards,
    };
  }

  private targetDays(stage: JourneyStage): number | undefined {
    const ms = this.targets.stageMs[stage];
    return ms === undefined ? undefined : ms / DAY_MS;
  }

  /** One stage's count and its first `limit` cards' journeys (longest in the stage first). */
  private async column(
    stage: JourneyStage,
    f: BoardFilters,
    see: BoardVisibility,
    now: Date,
    included: Map<string, Resource>,
  ): Promise<{ count: number; rows: Row[] }> {
    const params = new URLSearchParams({
      stage: `${canonical.journeyStageCodeSystem}|${stage}`,
      status: (f.status?.length ? f.status : OPEN_JOURNEY_STATUSES).join(','),
      _sort: 'date',
      _count: String(f.overdue ? SCAN_PAGE : f.limit),
      _total: 'accurate',
    });
    if (f.service) params.set('type', f.service);
    if (f.team) params.set('team', f.team);
    if (f.careManager) params.set('care-manager', f.careManager);
    if (see.patients) params.append('_include', 'EpisodeOfCare:patient');
    if (see.practitioners) params.append('_include', 'EpisodeOfCare:care-manager');
    if (see.careTeams) params.append('_include', 'EpisodeOfCare:team');
    if (see.referrals) params.append('_include', 'EpisodeOfCare:incoming-referral');
    const first = await this.fhir.search<Resource>('EpisodeOfCare', params, { noCache: true });
    const rows: Row[] = [];
    const take = (page: Bundle<Resource>): void => {
      for (const e of page.entry ?? []) {
        const r = e.resource;
        if (!r?.id) continue;
        if (e.search?.mode === 'include') included.set(refOf(r), r);
        else if (r.resourceType === 'EpisodeOfCare') {
          const row = this.row(r as EpisodeOfCare, now);
          if (row && (!f.overdue || row.overTarget)) rows.push(row);
        }
      }
    };
    if (!f.overdue) {
      take(first);
      rows.sort((a, b) => b.daysInStage - a.daysInStage);
      return { count: first.total ?? rows.length, rows: rows.slice(0, f.limit) };
    }
    for await (const page of this.fhir.pages(first, {
      noCache: true,
      maxPages: Math.ceil(MAX_SCAN / SCAN_PAGE),
    }))
      take(page);
    rows.sort((a, b) => b.daysInStage - a.daysInStage);
    return { count: rows.length, rows: rows.slice(0, f.limit) };
  }

  private row(episode: EpisodeOfCare, now: Date): Row | undefined {
    let state: JourneyState;
    try {
      state = readState(episode);
    } catch {
      return undefined;
    }
    const since = state.stageHistory.at(-1)?.start ?? episode.period?.start ?? now.toISOString();
    const inStage = Math.max(0, now.getTime() - Date.parse(since));
    const target = this.targets.stageMs[state.stage];
    const open = OPEN_JOURNEY_STATUSES.includes(state.status);
    return {
      episode,
      state,
      since,
      daysInStage: Number.isFinite(inStage) ? Math.floor((inStage / DAY_MS) * 10) / 10 : 0,
      overTarget: open && target !== undefined && inStage > target,
    };
  }

  /** The cards' linked resources by journey reference, and allergies by patient reference. */
  private async linked(
    rows: readonly Row[],
    see: BoardVisibility,
  ): Promise<{ byJourney: Map<string, Resource[]>; allergies: Map<string, AllergyIntolerance[]> }> {
    const byJourney = new Map<string, Resource[]>();
    const allergies = new Map<string, AllergyIntolerance[]>();
    const journeyRefs = rows.map((r) => refOf(r.episode));
    const patientRefs = [...new Set(rows.map((r) => r.episode.patient.reference ?? ''))].filter(Boolean);
    const searches: { type: string; extra: Record<string, string> }[] = [
      ...(see.appointments ? [{ type: 'Appointment', extra: {} }] : []),
      ...(see.tasks ? [{ type: 'Task', extra: { status: OPEN_TASK_STATUSES.join(',') } }] : []),
      ...(see.reminders ? [{ type: 'Communication', extra: {} }] : []),
      ...(see.carePlans ? [{ type: 'CarePlan', extra: { status: 'active' } }] : []),
    ];
    const jobs: Promise<void>[] = [];
    for (const s of searches)
      for (const chunk of chunks(journeyRefs, CHUNK))
        jobs.push(
          this.fhir
            .searchAll(
              s.type,
              { journey: chunk.join(','), _count: 200, ...s.extra },
              {
                noCache: true,
                maxPages: 20,
              },
            )
            .then((found) => {
              for (const r of found) {
                const j = journeyOf(r);
                if (!j) continue;
                const list = byJourney.get(j) ?? [];
                list.push(r);
                byJourney.set(j, list);
              }
            }),
        );
    if (see.allergies)
      for (const chunk of chunks(patientRefs, CHUNK))
        jobs.push(
          this.fhir
            .searchAll<AllergyIntolerance>(
              'AllergyIntolerance',
              { patient: chunk.join(','), _count: 200 },
              { noCache: true, maxPages: 20 },
            )
            .then((found) => {
              for (const a of found) {
                const p = a.patient.reference ?? '';
                allergies.set(p, [...(allergies.get(p) ?? []), a]);
              }
            }),
        );
    await Promise.all(jobs);
    return { byJourney, allergies };
  }

  private card(
    row: Row,
    linked: { byJourney: Map<string, Resource[]>; allergies: Map<string, AllergyIntolerance[]> },
    included: Map<string, Resource>,
    see: BoardVisibility,
    now: Date,
  ): BoardCard {
    const { episode, state } = row;
    const jref = refOf(episode);
    const patientRef = episode.patient.reference ?? '';
    const own = linked.byJourney.get(jref) ?? [];
    const referrals = see.referrals
      ? (episode.referralRequest ?? []).flatMap((r) => {
          const found = included.get(r.reference ?? '');
          return found ? [found] : [];
        })
      : [];
    const timeline = buildTimeline(episode, state, [...own, ...referrals], now, this.targets);
    const nowMs = now.getTime();
    const target = this.targetDays(state.stage);
    const appointments = own.filter((r): r is Appointment => r.resourceType === 'Appointment');
    const next = appointments
      .filter(
        (a) =>
          a.start &&
          Date.parse(a.start) >= nowMs &&
          ['booked', 'pending', 'proposed', 'arrived', 'checked-in'].includes(a.status),
      )
      .sort((a, b) => Date.parse(a.start ?? '') - Date.parse(b.start ?? ''))[0];
    const tasks = own.filter((r): r is Task => r.resourceType === 'Task');
    const overdueTasks = tasks.filter((t) => {
      const due = Date.parse(t.restriction?.period?.end ?? t.executionPeriod?.end ?? '');
      return Number.isFinite(due) && due < nowMs;
    }).length;
    const lastReminder: Record<string, { outcome: string; at: string }> = {};
    const accepted = new Set(
      appointments
        .filter((a) =>
          a.participant.some((p) => p.actor?.reference?.startsWith('Patient/') && p.status === 'accepted'),
        )
        .map(refOf),
    );
    const reminders = own.filter(
      (r): r is Communication => r.resourceType === 'Communication' && isReminder(r as Communication),
    );
    for (const c of reminders) {
      const at = c.sent ?? c.meta?.lastUpdated ?? '';
      const channel = channelOf(c);
      if ((lastReminder[channel]?.at ?? '') >= at) continue;
      const outcome =
        c.status === 'completed'
          ? (c.about ?? []).some((x) => accepted.has(x.reference ?? ''))
            ? 'confirmed'
            : 'sent'
          : c.status === 'not-done'
            ? 'failed'
            : c.status;
      lastReminder[channel] = { outcome, at };
    }
    const patient = included.get(patientRef) as Patient | undefined;
    const manager = episode.careManager;
    const team = episode.team?.[0];
    const name = see.patients ? humanName(patient) : undefined;
    const service = serviceOf(episode.type);
    const managerName =
      manager?.display ??
      (see.practitioners ? humanName(included.get(manager?.reference ?? '') as Practitioner) : undefined);
    const teamName =
      team?.display ??
      (see.careTeams ? (included.get(team?.reference ?? '') as CareTeam | undefined)?.name : undefined);
    return {
      episodeId: episode.id ?? '',
      patientId: patientRef.replace(/^Patient\//, ''),
      ...(name ? { patientName: name } : {}),
      stage: state.stage,
      stageSince: row.since,
      daysInStage: row.daysInStage,
      ...(target !== undefined ? { targetDays: target } : {}),
      overTarget: row.overTarget,
      status: state.status,
      ...(service ? { service } : {}),
      ...(team?.reference
        ? { team: { reference: team.reference, ...(teamName ? { display: teamName } : {}) } }
        : {}),
      ...(manager?.reference
        ? { careManager: { reference: manager.reference, ...(managerName ? { display: managerName } : {}) } }
        : {}),
      ...(see.appointments && next?.id
        ? {
            nextAppointment: {
              id: next.id,
              start: next.start ?? '',
              status: next.status,
              ...(next.description ? { description: next.description } : {}),
            },
          }
        : {}),
      ...(see.tasks ? { openTasks: tasks.length, overdueTasks } : {}),
      ...(see.reminders ? { lastReminder } : {}),
      ...(see.allergies ? { allergy: allergyAlerts(linked.allergies.get(patientRef) ?? []).length > 0 } : {}),
      painPoints: timeline.painPoints.map((p) => ({ code: p.kind, summary: p.summary })),
    };
  }
}
