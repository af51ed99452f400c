/**
 * Journey use cases on the hospital's FHIR server: start, advance (command or event), close, and the
 * read models ($journey, $journeys, timeline).
 *
 * Invariants:
 * - Writes for one patient run under that patient's lock (HAPI's conditional create is not race-safe).
 * - Every change is one transaction: the EpisodeOfCare with `If-Match` on the version it was computed from,
 *   plus its Provenance. A conflict (someone else wrote first) re-reads and recomputes, so no update is
 *   lost: the later change is applied on top of the earlier one, or refused if the rules no longer allow it.
 * - Replays change nothing: a journey is keyed on its business identifier, and a change to the stage the
 *   journey is already in writes nothing.
 */
import type {
  Bundle,
  BundleEntry,
  CodeableConcept,
  EpisodeOfCare,
  Identifier,
  Patient,
  Reference,
  Resource,
  ServiceRequest,
} from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { versionedUpdate } from '../fhir/bundles.js';
import { canonical } from '../fhir/canonical.js';
import { retryOnConflict } from '../fhir/conflicts.js';
import { mustRead } from '../fhir/reads.js';
import { CarewayError } from '../shared/errors.js';
import type { KeyedLock } from '../shared/lock.js';
import { newJourneyEpisode, NotAJourneyError, readState, writeState } from './episode.js';
import { journeyProvenance, type Actor } from './provenance.js';
import {
  checkClose,
  checkTransition,
  closed,
  eventDate,
  initialState,
  stageAfterEvent,
  stageBeforeEvent,
  withStage,
  type JourneyEvent,
  type JourneyState,
  type RuleViolation,
} from './rules.js';
import { ruleError } from './errors.js';
import type { JourneyStage } from './stages.js';
import {
  allergyAlerts,
  alertFlag,
  type Alert,
  buildTimeline,
  DEFAULT_TARGETS,
  type Timeline,
  type TimelineTargets,
} from './timeline.js';

/** Resource types linked to a journey through the journey-reference extension (SearchParameter `journey`). */
export const JOURNEY_LINKED_TYPES = [
  'Appointment',
  'CarePlan',
  'Communication',
  'CommunicationRequest',
  'QuestionnaireResponse',
  'Condition',
  'AllergyIntolerance',
  'Task',
  'DiagnosticReport',
  'Observation',
  'ServiceRequest',
  'DocumentReference',
] as const;

/**
 * The one search behind `$journey`: `_include` for the journey's own references, `_revinclude` for resources
 * that point at it, and `_revinclude:iterate` for the patient's allergies.
 */
export function journeyQuery(id: string): URLSearchParams {
  const params = new URLSearchParams({ _id: id });
  for (const inc of ['patient', 'incoming-referral', 'care-manager', 'organization', 'team']) {
    params.append('_include', `EpisodeOfCare:${inc}`);
  }
  params.append('_revinclude', 'Encounter:episode-of-care');
  for (const t of JOURNEY_LINKED_TYPES) params.append('_revinclude', `${t}:journey`);
  params.append('_revinclude:iterate', 'AllergyIntolerance:patient');
  return params;
}

export interface StartJourneyInput {
  readonly patientId: string;
  readonly referralId?: string;
  /** Business identifier; defaults to one derived from the referral. One of the two is required. */
  readonly identifier?: Identifier;
  readonly type?: CodeableConcept;
  readonly stage?: JourneyStage;
  readonly organizationId?: string;
  readonly careManager?: Reference;
}

export interface ChangeResult {
  readonly episode: EpisodeOfCare;
  readonly changed: boolean;
}

type Computed =
  | { readonly state: JourneyState; readonly change: string; readonly reason: string }
  | RuleViolation
  | undefined;

export interface JourneyServiceOptions {
  readonly fhir: FhirPort;
  readonly lock: KeyedLock;
  readonly clock?: () => Date;
  readonly targets?: TimelineTargets;
  /** Attempts when the EpisodeOfCare version moved under us. */
  readonly maxAttempts?: number;
  /** Called after a journey enters a stage (engagement sends that stage's education). */
  readonly onStageEntered?: (episode: EpisodeOfCare, stage: JourneyStage) => Promise<void>;
}

function idFromLocation(location: string | undefined): string | undefined {
  // "EpisodeOfCare/123/_history/1" or an absolute URL ending the same way.
  const m = /(?:^|\/)EpisodeOfCare\/([^/]+)(?:\/_history\/[^/]+)?$/.exec(location ?? '');
  return m?.[1];
}

/**
 * The journey key of a referral: the referrer's business identifier when it has one (so referral intake and
 * `$start-journey` find the same journey), else the ServiceRequest's id.
 */
export function referralKey(referral: ServiceRequest): string {
  const bid = referral.identifier?.find((i) => i.system && i.value);
  return bid ? `${bid.system}|${bid.value}` : `ServiceRequest/${referral.id ?? ''}`;
}

function patientIdOf(eoc: EpisodeOfCare): string {
  const m = /^Patient\/([^/]+)$/.exec(eoc.patient.reference ?? '');
  if (!m?.[1])
    throw new CarewayError(
      'not-a-journey',
      `EpisodeOfCare/${eoc.id ?? '?'} has no literal Patient reference`,
    );
  return m[1];
}

/**
 * The change that moves the journey to stage `to` (none when there is no stage to move to): `noted` goes into
 * the stage history, `reason` into the Provenance.
 */
function moveTo(
  state: JourneyState,
  to: JourneyStage | undefined,
  at: string,
  noted: string | undefined,
  reason: string,
): Computed {
  if (!to) return undefined;
  return { state: withStage(state, to, at, noted), change: `stage:${state.stage}->${to}`, reason };
}

export class JourneyService {
  private readonly fhir: FhirPort;
  private readonly lock: KeyedLock;
  private readonly clock: () => Date;
  private readonly targets: TimelineTargets;
  private readonly maxAttempts: number;
  private readonly onStageEntered: JourneyServiceOptions['onStageEntered'];

  constructor(options: JourneyServiceOptions) {
    this.fhir = options.fhir;
    this.lock = options.lock;
    this.clock = options.clock ?? (() => new Date());
    this.targets = options.targets ?? DEFAULT_TARGETS;
    this.maxAttempts = options.maxAttempts ?? 5;
    this.onStageEntered = options.onStageEntered;
  }

  /** Starts a journey, or returns the one already started for the same identifier (created: false). */
  async startJourney(input: StartJourneyInput, actor: Actor): Promise<ChangeResult> {
    const patient = await mustRead<Patient>(this.fhir, 'Patient', input.patientId);
    let referral: ServiceRequest | undefined;
    if (input.referralId) {
      referral = await mustRead<ServiceRequest>(this.fhir, 'ServiceRequest', input.referralId);
      if (referral.subject.reference !== `Patient/${patient.id}`) {
        throw new CarewayError(
          'rule-violation',
          'rule referral-patient-mismatch: the referral is for another patient',
          {
            detailsCode: 'referral-patient-mismatch',
          },
        );
      }
    }
    const identifier =
      input.identifier ??
      (referral ? { system: canonical.journeyForReferralSystem, value: referralKey(referral) } : undefined);
    if (!identifier?.system || !identifier.value) {
      throw new CarewayError(
        'invalid-parameters',
        'parameter "identifier" (with system and value) or "referral" is required, so that a replay does not start a second journey',
      );
    }
    const token = `${identifier.system}|${identifier.value}`;

    return this.lock.withLock(`patient:${patient.id}`, async () => {
      const existing = await this.fhir.searchAll<EpisodeOfCare>(
        'EpisodeOfCare',
        { identifier: token },
        { noCache: true, maxPages: 1 },
      );
      if (existing[0]) {
        if (existing[0].patient.reference !== `Patient/${patient.id}`) {
          throw new CarewayError(
            'rule-violation',
            'rule identifier-in-use: this journey identifier belongs to another patient',
            {
              detailsCode: 'identifier-in-use',
            },
          );
        }
        return { episode: existing[0], changed: false };
      }
      const at = this.clock().toISOString();
      const stage = input.stage ?? (referral ? 'access' : 'awareness');
      // A journey started from a referral begins when the referral was written, not when Careway saw it.
      const occurred = referral?.authoredOn
        ? eventDate(initialState(stage, 'active', '', undefined), referral.authoredOn, at)
        : undefined;
      const state = initialState(stage, 'active', occurred ?? at, referral ? 'Referral received' : undefined);
      const episode = newJourneyEpisode({
        identifier,
        patient: { reference: `Patient/${patient.id}` },
        state,
        ...(referral ? { referral: { reference: `ServiceRequest/${referral.id}` } } : {}),
        ...(input.type ? { type: input.type } : {}),
        ...(input.organizationId
          ? { managingOrganization: { reference: `Organization/${input.organizationId}` } }
          : {}),
        ...(input.careManager ? { careManager: input.careManager } : {}),
      });
      const eocUrn = `urn:uuid:${crypto.randomUUID()}`;
      const tx: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          {
            fullUrl: eocUrn,
            resource: episode,
            request: {
              method: 'POST',
              url: 'EpisodeOfCare',
              ifNoneExist: new URLSearchParams({ identifier: token }).toString(),
            },
          },
          {
            fullUrl: `urn:uuid:${crypto.randomUUID()}`,
            resource: journeyProvenance({
              target: eocUrn,
              at,
              actor,
              activity: 'CREATE',
              reason: referral ? 'Journey started from a referral' : 'Journey started',
              change: `stage:->${stage}`,
              ...(referral ? { trigger: { reference: `ServiceRequest/${referral.id}` } } : {}),
              ...(occurred ? { occurred } : {}),
            }),
            request: { method: 'POST', url: 'Provenance' },
          },
        ],
      };
      const res = await this.fhir.transaction(tx);
      const id = idFromLocation(res.entry?.[0]?.response?.location);
      if (!id) throw new CarewayError('internal', 'the FHIR server did not return the new journey location');
      return {
        episode: await this.fhir.read<EpisodeOfCare>('EpisodeOfCare', id, { noCache: true }),
        changed: true,
      };
    });
  }

  /** A commanded stage change (`$advance-stage`): the transition table applies; back needs a reason. */
  advanceStage(
    id: string,
    to: JourneyStage,
    reason: string | undefined,
    actor: Actor,
    trigger?: Reference,
  ): Promise<ChangeResult> {
    return this.mutate(
      id,
      (state, at) => {
        const check = checkTransition(state, to, reason);
        if (!check.ok) return check;
        if (check.direction === 'same') return undefined;
        return moveTo(state, to, at, reason, reason?.trim() || `Stage advanced to ${to}`);
      },
      actor,
      trigger,
    );
  }

  /**
   * An EHR event (discharge, fulfilled visit…): forward only, may skip stages, never an error for a stale event.
   * `occurred` is when the event happened: the stage change is dated then (rules.ts `eventDate`), not now.
   */
  applyEvent(
    id: string,
    event: JourneyEvent,
    actor: Actor,
    trigger?: Reference,
    occurred?: string,
  ): Promise<ChangeResult> {
    return this.moveOnEvent(
      id,
      `event: ${event}`,
      (state) => stageAfterEvent(state, event),
      actor,
      trigger,
      occurred,
    );
  }

  /** An EHR took back an event (`stageBeforeEvent`): the journey goes back, with the reason recorded. */
  undoEvent(
    id: string,
    event: JourneyEvent,
    actor: Actor,
    trigger?: Reference,
    occurred?: string,
  ): Promise<ChangeResult> {
    return this.moveOnEvent(
      id,
      `undo: ${event}`,
      (state) => stageBeforeEvent(state, event),
      actor,
      trigger,
      occurred,
    );
  }

  /** Finishes or cancels a journey. */
  close(
    id: string,
    status: 'finished' | 'cancelled',
    reason: string | undefined,
    actor: Actor,
  ): Promise<ChangeResult> {
    return this.mutate(
      id,
      (state, at) => {
        if (state.status === status) return undefined;
        const check = checkClose(state, status, reason);
        if (!check.ok) return check;
        return {
          state: closed(state, status, at),
          change: `status:${state.status}->${status}`,
          reason: reason?.trim() || `Journey ${status}`,
        };
      },
      actor,
    );
  }

  /** Reads a journey; 404 when missing, 422 when the EpisodeOfCare is not a Careway journey. */
  async readJourney(id: string): Promise<{ episode: EpisodeOfCare; state: JourneyState }> {
    const episode = await mustRead<EpisodeOfCare>(this.fhir, 'EpisodeOfCare', id, 'not-found');
    try {
      return { episode, state: readState(episode) };
    } catch (e) {
      if (e instanceof NotAJourneyError) throw new CarewayError('not-a-journey', e.message);
      throw e;
    }
  }

  /**
   * `$journey`: the journey with everything linked to it, in one search: `_include` for the journey's own
   * references, `_revinclude` for resources that point at it, and `_revinclude:iterate` for the patient's
   * allergies (shown as alerts, because they matter in every stage even when recorded outside the journey).
   */
  async journeyBundle(
    id: string,
  ): Promise<{ bundle: Bundle; episode: EpisodeOfCare; state: JourneyState; linked: Resource[] }> {
    const main = await this.fhir.search('EpisodeOfCare', journeyQuery(id), { noCache: true });
    const episode = main.entry?.find(
      (e) => e.resource?.resourceType === 'EpisodeOfCare' && e.resource.id === id,
    )?.resource as EpisodeOfCare | undefined;
    if (!episode) throw new CarewayError('not-found', `EpisodeOfCare/${id} does not exist`);
    let state: JourneyState;
    try {
      state = readState(episode);
    } catch (e) {
      if (e instanceof NotAJourneyError) throw new CarewayError('not-a-journey', e.message);
      throw e;
    }
    const pid = patientIdOf(episode);
    const seen = new Set<string>();
    const resources: Resource[] = [];
    for (const r of (main.entry ?? []).map((e) => e.resource)) {
      if (!r?.id) continue;
      const key = `${r.resourceType}/${r.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      resources.push(r);
    }
    const fresh = episode;
    const linked = resources.filter((r) => !(r.resourceType === 'EpisodeOfCare' && r.id === id));
    const alerts = allergyAlerts(linked);
    const entry: BundleEntry[] = [
      { fullUrl: `EpisodeOfCare/${id}`, resource: fresh },
      ...linked.map((r) => ({ fullUrl: `${r.resourceType}/${r.id}`, resource: r })),
      ...alerts.map((a): BundleEntry => ({
        fullUrl: `urn:uuid:${crypto.randomUUID()}`,
        resource: alertFlag(a, pid),
      })),
    ];
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      timestamp: this.clock().toISOString(),
      total: entry.length,
      entry,
    };
    return { bundle, episode: fresh, state, linked };
  }

  /** `$journeys`: the journeys (EpisodeOfCare with a stage) of a patient, newest first. */
  async journeysOf(patientId: string): Promise<EpisodeOfCare[]> {
    await mustRead<Patient>(this.fhir, 'Patient', patientId, 'not-found');
    const all = await this.fhir.searchAll<EpisodeOfCare>(
      'EpisodeOfCare',
      { patient: `Patient/${patientId}`, _sort: '-date', _count: 100 },
      { noCache: true, maxPages: 10 },
    );
    return all.filter((e) => e.extension?.some((x) => x.url === canonical.journeyStageExtension));
  }

  /** Active allergy alerts for a patient: the one call booking and care-plan operations use. */
  async allergyAlertsFor(patientId: string): Promise<Alert[]> {
    const all = await this.fhir.searchAll(
      'AllergyIntolerance',
      { patient: `Patient/${patientId}`, _count: 200 },
      { noCache: true, maxPages: 5 },
    );
    return allergyAlerts(all);
  }

  /**
   * The timeline with pain points and alerts, computed only from the linked resources whose type `readable`
   * lets the caller see (a caller without AllergyIntolerance read gets no allergy alerts, one without CarePlan
   * read no care-plan touchpoints or overdue activities).
   */
  async timeline(id: string, readable: (resourceType: string) => boolean = () => true): Promise<Timeline> {
    const { episode, state, linked } = await this.journeyBundle(id);
    const visible = linked.filter((r) => readable(r.resourceType));
    return buildTimeline(episode, state, visible, this.clock(), this.targets);
  }

  /** An event moves the journey to the stage `stageOf` names (nothing when it names none), `reason` recorded. */
  private moveOnEvent(
    id: string,
    reason: string,
    stageOf: (state: JourneyState) => JourneyStage | undefined,
    actor: Actor,
    trigger: Reference | undefined,
    occurred: string | undefined,
  ): Promise<ChangeResult> {
    return this.mutate(
      id,
      (state, now) => moveTo(state, stageOf(state), eventDate(state, occurred, now), reason, reason),
      actor,
      trigger,
      occurred,
    );
  }

  /**
   * `compute` gets the processing time (`now`); a command dates its change then, an event at its own time.
   * The Provenance is `recorded` now, with the event's time as `occurredDateTime` when there is one.
   */
  private async mutate(
    id: string,
    compute: (state: JourneyState, at: string) => Computed,
    actor: Actor,
    trigger?: Reference,
    occurred?: string,
  ): Promise<ChangeResult> {
    const first = await this.readJourney(id);
    const result = await this.lock.withLock(`patient:${patientIdOf(first.episode)}`, () =>
      retryOnConflict(
        async (attempt): Promise<ChangeResult> => {
          // The first attempt uses the read that found the patient; If-Match catches anything newer.
          const { episode } = attempt === 1 ? first : await this.readJourney(id);
          const state = readState(episode);
          const at = this.clock().toISOString();
          const result = compute(state, at);
          if (result === undefined) return { episode, changed: false };
          if ('ok' in result) throw ruleError(result);
          const updated = writeState(episode, result.state);
          const tx = versionedUpdate(
            { ...updated, id },
            episode.meta?.versionId,
            journeyProvenance({
              target: `EpisodeOfCare/${id}`,
              at,
              actor,
              activity: 'UPDATE',
              reason: result.reason,
              change: result.change,
              ...(trigger ? { trigger } : {}),
              ...(occurred ? { occurred: eventDate(state, occurred, at) } : {}),
            }),
          );
          // Safe to retry: a replay after a lost response fails its If-Match, and the next attempt recomputes.
          await this.fhir.transaction(tx, { idempotent: true });
          return { episode: (await this.readJourney(id)).episode, changed: true };
        },
        {
          attempts: this.maxAttempts,
          exhausted: 'the journey kept changing while this change was applied; retry',
        },
      ),
    );
    // Outside the lock: what follows a stage change (education for the new stage) must not hold up the patient.
    if (result.changed && this.onStageEntered) {
      const stage = readState(result.episode).stage;
      if (stage !== first.state.stage) await this.onStageEntered(result.episode, stage);
    }
    return result;
  }
}
