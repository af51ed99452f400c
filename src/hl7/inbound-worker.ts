/**
 * Queue `hl7-inbound` (partitions `hl7-inbound-p0…`): turns each accepted HL7 message into one idempotent FHIR
 * transaction.
 *
 * - `exec` unseals the raw message, maps it with the declarative maps, and posts the transaction under a lock
 *   on the patient's business identifier, so two messages for one patient never write at the same time.
 * - The intake puts a message in the partition of its patient (PID-3), and each partition's worker runs one
 *   job at a time: one patient's messages leave in arrival order, so an A03 is never applied before its A01,
 *   while other patients' messages are written in parallel by the other partitions (HL7_PARTITIONS).
 *   Each partition has a queue-level concurrency of 1 (queues/registry.ts), so this holds across replicas too,
 *   and after a crash: the job a dead process had in hand stays `active` (and so blocks its partition) until its
 *   lock expires and the stalled check returns it to the head of the partition; nothing overtakes it meanwhile.
 * - Failures that waiting can cure are retried **in place**, holding the partition: a BullMQ retry would park
 *   the job in `delayed` and let the patient's next message (an A03 behind its A01) run first.
 *   - While the FHIR server (or Redis) cannot be reached at all (refused, reset, timed out, 502/503/504/429),
 *     the job waits for as long as it takes: BullMQ's attempts would send every message of an outage longer
 *     than its backoff (about 2 minutes) to `hl7-dead` (found by the chaos suite, bench/chaos).
 *   - Other transient failures (FHIR 500, HAPI's conditional-create race (409)) get a bounded number of tries,
 *     then the message goes to `hl7-dead`, from where it is replayed.
 *   A shutdown cuts the wait short and puts the job back at the head of its partition (not behind the next
 *   message), for whichever replica takes the partition next.
 * - A mapping or data error cannot be fixed by retrying: UnrecoverableError, and the job goes to `hl7-dead`
 *   at once with the reason.
 * - Job data holds ids and the sealed message only; logs name job ids, never content.
 */
import { UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import { randomUUID } from 'node:crypto';
import type { Bundle, EpisodeOfCare, Identifier, Provenance, Resource } from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import type { Hl7Timezones } from '../config/config.js';
import type { FhirPort } from '../fhir/client.js';
import { describeOutcome, FhirError } from '../fhir/errors.js';
import type { QueueRegistry } from '../queues/registry.js';
import type { KeyedLock } from '../shared/lock.js';
import { HL7_INBOUND_QUEUE, type InboundJob } from './intake.js';
import type { PartitionedQueue } from '../queues/partitioned.js';
import { Hl7Message, Hl7ParseError } from './message.js';
import { MappingError, type MapContext, type MappedMessage, type Mapper } from './mapping/engine.js';
import {
  buildTransaction,
  businessKey,
  messageKeys,
  type MessageFacts,
  type MessageKeys,
} from './mapping/transaction.js';
import { eventDate, initialState, type JourneyEvent, type JourneyState } from '../journey/rules.js';
import { Hl7DateError, hl7ToFhirDateTime } from './datetime.js';
import type { JourneyStage } from '../journey/stages.js';
import { JOURNEY_EXTENSION_URL, newJourneyEpisode } from '../journey/episode.js';
import { unseal } from '../shared/seal.js';
import { mergePatients } from './merge.js';
import { CarewayError } from '../shared/errors.js';

export interface DeadMessage {
  readonly jobId: string;
  readonly sender: string;
  readonly controlId: string;
  readonly type: string;
  readonly reason: string;
}

/** The message a commit came from (ids and codes: the audit trail records it). */
export interface WrittenMessage {
  readonly sender: string;
  readonly controlId: string;
  /** MSH-9, e.g. `ADT^A04`. */
  readonly type: string;
}

export interface InboundDeps {
  readonly fhir: FhirPort;
  readonly mapper: Mapper;
  readonly key: Buffer;
  readonly lock: KeyedLock;
  readonly zones: Hl7Timezones;
  /** Journey effects; without it messages only write their resources. */
  readonly journeys?: JourneyEffects;
  /**
   * Called with the resources a message wrote, as written and with the ids the server gave them, after the
   * commit (outside the patient's lock): scheduling reacts to Appointments (freed Slots, no-shows) and
   * reminders are re-planned, without reading back what was just written.
   */
  readonly onWritten?: (written: readonly Resource[], message: WrittenMessage) => Promise<void>;
  /** What the maps observed (namespaces that fell back to the default rule, ignored segments): counted. */
  readonly onMapped?: (observed: MappingObservations) => Promise<void> | void;
  /** In-place retries of a transient failure (default: 8 tries, 1 s doubling, at most 30 s apart). */
  readonly retry?: InPlaceRetry;
  /** Told of each transient failure retried in place (job id and try; never the message). */
  readonly onRetry?: (jobId: string, tries: number, err: Error) => void;
}

export interface InPlaceRetry {
  readonly attempts: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
}

const DEFAULT_RETRY: InPlaceRetry = { attempts: 8, backoffMs: 1000, maxBackoffMs: 30_000 };

/** Waits `ms`; false when the signal aborted the wait (or had already). */
function pause(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(ok);
    };
    const onAbort = (): void => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * `exec` with transient failures retried in place (see the header): the partition waits for this message.
 * With `signal` aborted (a shutdown past its grace) the job goes back to the head of its partition:
 * BullMQ's RateLimitError moves it from active to the front of `wait` without counting an attempt.
 */
export async function execInOrder(
  job: Pick<Job<InboundJob>, 'id' | 'data'>,
  deps: InboundDeps,
  signal?: AbortSignal,
): Promise<InboundResult> {
  const retry = deps.retry ?? DEFAULT_RETRY;
  // `failures` counts only what waiting may not cure; an outage (unavailable) never uses up the tries.
  for (let tries = 1, failures = 0; ; tries++) {
    try {
      return await exec(job, deps);
    } catch (e) {
      if (e instanceof UnrecoverableError || !(e instanceof Error)) throw e;
      if (!unavailable(e) && ++failures >= retry.attempts)
        throw new UnrecoverableError(`still failing after ${failures} tries: ${e.message.slice(0, 800)}`);
      deps.onRetry?.(job.id ?? '', tries, e);
      const wait = Math.min(retry.maxBackoffMs, retry.backoffMs * 2 ** Math.min(tries - 1, 16));
      if (!(await pause(wait, signal))) throw Worker.RateLimitError();
    }
  }
}

export interface MappingObservations {
  readonly sender: string;
  readonly defaultedAuthorities: ReadonlyMap<string, string>;
  readonly ignoredSegments: readonly string[];
}

/**
 * What a message does to the patient's journey is declared in its message map (`journey:` per trigger, checked
 * against the journey rules when the maps load): `opens` a journey at a stage when the patient has none (in the
 * message's own transaction), raises an `event` on the open one, or `undoes` an earlier event. The built-in maps
 * say: A01/A04/A05, S12 and I12 open; A01 → admitted, A03 → discharged, S12 → appointment booked, R01 → results;
 * A11, S15 and S17 undo. A referral (I12) waits for triage, like a FHIR referral. A site's map for a new type
 * declares its own effects, with no code change.
 */
export interface JourneyEffects {
  /** `occurred`: when the event happened (`messageEventTime`); the stage change is dated then. */
  event(journeyId: string, event: JourneyEvent, trigger: string, occurred?: string): Promise<void>;
  /** The message cancels an earlier event (A11, S15, S17): undo it if it is what set the current stage. */
  undo(journeyId: string, event: JourneyEvent, trigger: string, occurred?: string): Promise<void>;
  /** Events that the written resources themselves imply (a fulfilled Appointment, an active CarePlan…). */
  resources?(
    journeyId: string,
    resources: readonly Resource[],
    trigger: string,
    occurred?: string,
  ): Promise<void>;
}

/**
 * When the message's event happened: EVN-2 (recorded date/time), else MSH-7 (message date/time), read in the
 * sender's zone like every other HL7 time. Undefined when neither is there or readable: a bad timestamp only
 * loses the dating (the change is dated when processed), never the message. A feed replayed after an outage
 * thereby dates each stage change when it happened, not when the backlog drained.
 */
export function messageEventTime(msg: Hl7Message, zone: string): string | undefined {
  const candidates = [msg.segment('EVN')?.get(2) ?? '', msg.msh.get(7)];
  for (const value of candidates) {
    if (!value.trim()) continue;
    try {
      return hl7ToFhirDateTime(value, zone);
    } catch (e) {
      if (!(e instanceof Hl7DateError)) throw e;
    }
  }
  return undefined;
}

export interface InboundResult {
  readonly written: number;
  readonly skipped: readonly string[];
  /** `Type/id` of what the message wrote (kept with the completed job: the message log shows it). */
  readonly resources: readonly string[];
}

function zoneFor(zones: Hl7Timezones, msg: Hl7Message): string {
  const { application, facility } = msg.sender;
  return (
    zones.bySender[`${application}^${facility}`] ??
    zones.bySender[facility] ??
    zones.bySender[application] ??
    zones.defaultZone
  );
}

/** The mapping context of a message: its sender's zone, its delimiters, its sender (for authorities). */
export function mapContext(zones: Hl7Timezones, msg: Hl7Message): MapContext {
  return { zone: zoneFor(zones, msg), delimiters: msg.delimiters, sender: msg.sender };
}

/**
 * Maps a message and computes its keys: the dry run the intake does before it acknowledges (a message that
 * cannot be written is refused at the door), and the first step of the worker.
 */
export function prepareMessage(
  mapper: Mapper,
  zones: Hl7Timezones,
  msg: Hl7Message,
): { mapped: MappedMessage; keys: MessageKeys } {
  const mapped = mapper.message(msg, mapContext(zones, msg));
  // A merge names the patient it retires (MRG-1); without it there is nothing to merge.
  const merge = mapped.patientMerge;
  if (merge && !msg.segment(merge.segment)?.get(1))
    throw new MappingError(`${merge.segment}-1: a merge needs the prior patient identifier`, '101', {
      segment: merge.segment,
      sequence: 1,
      field: 1,
    });
  return { mapped, keys: messageKeys(mapped) };
}

/** How often a message is re-read and re-merged when a resource changed between the read and the write. */
const MERGE_ATTEMPTS = 4;

export async function exec(
  job: Pick<Job<InboundJob>, 'id' | 'data'>,
  deps: InboundDeps,
): Promise<InboundResult> {
  let msg: Hl7Message;
  try {
    msg = Hl7Message.parse(unseal(job.data.raw, deps.key).toString('utf8'));
  } catch (e) {
    throw new UnrecoverableError(
      e instanceof Hl7ParseError ? e.message : 'the stored message could not be unsealed',
    );
  }
  let mapped: MappedMessage;
  let keys: MessageKeys;
  const facts = {
    jobId: job.id ?? '',
    sender: job.data.sender,
    controlId: job.data.controlId,
    type: job.data.type,
    receivedAt: job.data.receivedAt,
  };
  try {
    ({ mapped, keys } = prepareMessage(deps.mapper, deps.zones, msg));
  } catch (e) {
    if (e instanceof MappingError) throw new UnrecoverableError(`mapping: ${e.message}`);
    throw e;
  }
  mapped = withReferrer(mapped, job.data.sender);
  const occurred = messageEventTime(msg, zoneFor(deps.zones, msg));
  const patientKey = keys.keys['patient'];
  const lockKey = `hl7-patient:${patientKey ?? `${job.data.sender}|${job.data.controlId}`}`;
  let written: Bundle = { resourceType: 'Bundle', type: 'transaction' };
  let committed: readonly Resource[] = [];
  let journeyId: string | undefined;
  let opened = false;
  await deps.lock.withLock(lockKey, async () => {
    for (let attempt = 1; ; attempt++) {
      // One round of reads gives the stored resources (to merge into) and the patient's open journey.
      const { stored, open } = await readStored(
        deps.fhir,
        keys.keys,
        patientKey ? 'patient' : undefined,
        !!deps.journeys,
      );
      journeyId = open;
      const opening = !open && !!deps.journeys && !!patientKey && mapped.journey?.opens !== undefined;
      const bundle = messageTransaction(mapped, facts, {
        ...(open ? { open } : {}),
        ...(opening && patientKey
          ? {
              opening: {
                sender: job.data.sender,
                patientKey,
                ...(occurred ? { at: eventDate(EMPTY_STATE, occurred, new Date().toISOString()) } : {}),
              },
            }
          : {}),
        stored,
      });
      try {
        const response = await postTransaction(deps, bundle);
        written = bundle;
        committed = withServerIds(bundle, response);
        if (opening) {
          opened = true;
          journeyId = episodeIdFrom(bundle, response);
        }
        break;
      } catch (e) {
        // Someone changed a resource between our read and our write (If-Match): read again and re-merge.
        if (e instanceof FhirError && e.kind === 'http' && e.status === 412 && attempt < MERGE_ATTEMPTS)
          continue;
        throw e;
      }
    }
    if (mapped.patientMerge) {
      const mrg = msg.segment(mapped.patientMerge.segment);
      const survivor = mapped.resources.find((r) => r.id === 'patient')?.resource;
      const survivorKey = survivor ? businessKey(survivor, 'identifier') : undefined;
      if (!mrg || !survivorKey)
        throw new UnrecoverableError('mapping: a merge needs PID-3 and MRG-1 identifiers');
      const retired = deps.mapper.segment(mrg, mapped.patientMerge.map, mapContext(deps.zones, msg));
      await mergePatients(
        deps.fhir,
        survivorKey,
        (retired['identifier'] as Identifier[] | undefined) ?? [],
        `hl7-${facts.jobId}-merge`,
        facts.receivedAt,
      );
      return;
    }
    // A journey this message opened already stands at the message's stage; an open one hears the event.
    const event = opened ? undefined : mapped.journey?.event;
    const undo = opened ? undefined : mapped.journey?.undoes;
    const open = journeyId;
    if (open && deps.journeys) {
      try {
        const why = `hl7:${job.data.type}:${job.data.controlId}`;
        if (event) await deps.journeys.event(open, event, why, occurred);
        else if (undo) await deps.journeys.undo(open, undo, why, occurred);
        // What the written resources say by themselves: an outpatient visit finished, an Appointment
        // fulfilled (S14/SCH-25 Complete). Each is dated by its own time, else by the message's.
        if (deps.journeys.resources) await deps.journeys.resources(open, committed, why, occurred);
      } catch (e) {
        // The message's data is committed; a journey rule refusing the event (e.g. a closed journey) is not a
        // reason to retry or dead-letter it. Transient failures still throw, and the replay is idempotent.
        if (!(e instanceof CarewayError && e.status < 500)) throw e;
      }
    }
  });
  if (deps.onMapped)
    await deps.onMapped({
      sender: job.data.sender,
      defaultedAuthorities: mapped.defaultedAuthorities,
      ignoredSegments: mapped.ignoredSegments,
    });
  if (deps.onWritten && committed.length > 0)
    await deps.onWritten(committed, { sender: facts.sender, controlId: facts.controlId, type: facts.type });
  return {
    written: written.entry?.length ?? 0,
    skipped: keys.skipped,
    // Bounded: a message writes a handful of resources, but the log must not grow with a pathological one.
    resources: committed
      .filter((r) => r.id)
      .slice(0, 200)
      .map((r) => `${r.resourceType}/${r.id ?? ''}`),
  };
}

/** The written resources with the ids the server gave them (from the transaction response's locations). */
function withServerIds(bundle: Bundle, response: Bundle): Resource[] {
  return (bundle.entry ?? []).flatMap((e, i) => {
    if (!e.resource) return [];
    const loc = response.entry?.[i]?.response?.location ?? '';
    const id = new RegExp(`^(?:.*/)?${e.resource.resourceType}/([^/]+)`).exec(loc)?.[1];
    return [id ? { ...e.resource, id } : e.resource];
  });
}

/** A journey with no history yet: `eventDate` against it only clamps a future time to now. */
const EMPTY_STATE: JourneyState = {
  stage: 'awareness',
  status: 'active',
  stageHistory: [],
  statusHistory: [],
};

/** The id of the journey a message's own transaction opened (its entry's location in the response). */
function episodeIdFrom(bundle: Bundle, response: Bundle): string | undefined {
  const i = (bundle.entry ?? []).findIndex((e) => e.resource?.resourceType === 'EpisodeOfCare');
  const loc = i >= 0 ? response.entry?.[i]?.response?.location : undefined;
  return loc ? /EpisodeOfCare\/([^/]+)/.exec(loc)?.[1] : undefined;
}

/**
 * A referral's triage Task records who sent it (the HL7 sender, MSH-3^MSH-4): its status changes are owed to
 * that referrer, and outbound HL7 will send them there.
 */
function withReferrer(mapped: MappedMessage, sender: string): MappedMessage {
  return {
    ...mapped,
    resources: mapped.resources.map((r) =>
      r.resource['resourceType'] === 'Task'
        ? {
            ...r,
            resource: {
              ...r.resource,
              requester: { identifier: { system: 'urn:careway:hl7-sender', value: sender }, display: sender },
            },
          }
        : r,
    ),
  };
}

export const HL7_JOURNEY_SYSTEM = 'https://careway.dev/fhir/sid/journey-from-hl7';

const LINKED_BY_EXTENSION = new Set([
  'Task',
  'Appointment',
  'ServiceRequest',
  'Condition',
  'AllergyIntolerance',
  'DiagnosticReport',
  'Observation',
]);

/** Adds the journey link: Encounter natively (episodeOfCare), other linked types by the journey extension. */
function linkToJourney(mapped: MappedMessage, journeyRef: string): MappedMessage {
  const ref = { reference: journeyRef };
  return {
    ...mapped,
    resources: mapped.resources.map((r) => {
      const type = r.resource['resourceType'];
      if (type === 'Encounter') return { ...r, resource: { ...r.resource, episodeOfCare: [ref] } };
      if (typeof type === 'string' && LINKED_BY_EXTENSION.has(type)) {
        const ext = (r.resource['extension'] as unknown[] | undefined) ?? [];
        return {
          ...r,
          resource: {
            ...r.resource,
            extension: [...ext, { url: JOURNEY_EXTENSION_URL, valueReference: ref }],
          },
        };
      }
      return r;
    }),
  };
}

/** Adds a new journey (conditional on its identifier) to a message transaction, before its Provenance. */
function addJourney(
  bundle: Bundle,
  fullUrl: string,
  j: { identifier: Identifier; stage: JourneyStage; at: string; reason: string },
): void {
  const entries = bundle.entry ?? [];
  const patientUrl = entries.find((e) => e.resource?.resourceType === 'Patient')?.fullUrl ?? '';
  const episode = newJourneyEpisode({
    identifier: j.identifier,
    patient: { reference: patientUrl },
    state: initialState(j.stage, 'active', j.at, j.reason),
  });
  const provenance = entries.at(-1)?.resource as Provenance | undefined;
  provenance?.target.push({ reference: fullUrl });
  entries.splice(entries.length - 1, 0, {
    fullUrl,
    resource: episode,
    request: {
      method: 'POST',
      url: 'EpisodeOfCare',
      ifNoneExist: new URLSearchParams({
        identifier: `${j.identifier.system}|${j.identifier.value}`,
      }).toString(),
    },
  });
}

export interface JourneyPlacement {
  /** The patient's open journey (EpisodeOfCare id): the message's resources are linked to it. */
  readonly open?: string;
  /** No open journey and the message starts one: it is opened in the same transaction. */
  readonly opening?: {
    readonly sender: string;
    readonly patientKey: string;
    /** When the opening event happened (clamped to now); the message's receipt time by default. */
    readonly at?: string;
  };
  /** The stored resources by instance: merged into, and written with If-Match (ownership.ts). */
  readonly stored?: ReadonlyMap<string, Resource>;
}

/**
 * The one transaction a message becomes: its resources (conditional on business identifiers), linked to the
 * journey, a new journey when this first contact opens one (so the journey, the links and the data commit
 * together: one write instead of five), and the Provenance. Bench P3 replays exactly these bundles.
 */
export function messageTransaction(
  mapped: MappedMessage,
  facts: MessageFacts,
  journey: JourneyPlacement,
): Bundle {
  const journeyRef = journey.open
    ? `EpisodeOfCare/${journey.open}`
    : journey.opening
      ? `urn:uuid:${randomUUID()}`
      : undefined;
  const bundle = buildTransaction(journeyRef ? linkToJourney(mapped, journeyRef) : mapped, facts, {
    ...(journey.stored ? { stored: journey.stored } : {}),
  }).bundle;
  if (journey.opening && journeyRef) {
    addJourney(bundle, journeyRef, {
      identifier: {
        system: HL7_JOURNEY_SYSTEM,
        value: `${journey.opening.sender}|${journey.opening.patientKey}`,
      },
      // A first contact that is already a booking, a referral or an admission starts at that stage.
      stage: mapped.journey?.opens ?? 'awareness',
      at: journey.opening.at ?? facts.receivedAt,
      reason: `hl7: ${facts.type}`,
    });
  }
  return bundle;
}

/**
 * The stored version of every resource of the message, found by business key, and the patient's open
 * journey: one search per resource type (identifiers OR-ed), the Patient's with
 * `_revinclude=EpisodeOfCare:patient`, all in parallel, storeless (no search record on HAPI: bench P3).
 */
async function readStored(
  fhir: FhirPort,
  keys: Readonly<Record<string, string>>,
  patientInstance: string | undefined,
  withJourney: boolean,
): Promise<{ stored: Map<string, Resource>; open: string | undefined }> {
  const byType = new Map<string, { instance: string; token: string }[]>();
  for (const [instance, key] of Object.entries(keys)) {
    const [type = '', query = ''] = key.split('?');
    const token = new URLSearchParams(query).get('identifier');
    if (!token) continue;
    byType.set(type, [...(byType.get(type) ?? []), { instance, token }]);
  }
  const stored = new Map<string, Resource>();
  let open: string | undefined;
  await Promise.all(
    [...byType].map(async ([type, wanted]) => {
      const tokens = [...new Set(wanted.map((w) => w.token))];
      // Several identifiers in one search are OR-ed with commas; a comma inside one is escaped (FHIR search).
      const params: Record<string, string> = {
        identifier: tokens.map((t) => t.replaceAll(',', '\\,')).join(','),
      };
      const isPatient = wanted.some((w) => w.instance === patientInstance);
      if (isPatient && withJourney) params['_revinclude'] = 'EpisodeOfCare:patient';
      const bundle = await fhir.search(type, params, { storeless: 200 });
      const found = (bundle.entry ?? [])
        .map((e) => e.resource)
        .filter((r): r is Resource => !!r && r.resourceType === type);
      for (const w of wanted) {
        const [system, ...rest] = w.token.split('|');
        const value = rest.join('|');
        const hit = found.find((r) =>
          ((r as { identifier?: Identifier[] }).identifier ?? []).some(
            (i) => i.system === system && i.value === value,
          ),
        );
        if (hit) stored.set(w.instance, hit);
      }
      if (isPatient && withJourney) {
        open = (bundle.entry ?? [])
          .map((e) => e.resource)
          .filter((r): r is EpisodeOfCare => r?.resourceType === 'EpisodeOfCare')
          .filter((e) => ['planned', 'waitlist', 'active', 'onhold'].includes(e.status))
          .filter((e) => e.extension?.some((x) => x.url === canonical.journeyStageExtension))
          .sort((a, b) => (b.period?.start ?? '').localeCompare(a.period?.start ?? ''))[0]?.id;
      }
    }),
  );
  return { stored, open };
}

async function postTransaction(deps: InboundDeps, bundle: Bundle): Promise<Bundle> {
  try {
    return await deps.fhir.transaction(bundle, { idempotent: true });
  } catch (e) {
    if (
      e instanceof FhirError &&
      e.kind === 'http' &&
      e.status >= 400 &&
      e.status < 500 &&
      e.status !== 409 &&
      e.status !== 412 &&
      e.status !== 429
    ) {
      // Codes and locations only: the server's diagnostics may quote the message's values (PHI), and this
      // reason is kept in Redis and listed at /hl7/messages.
      const why = describeOutcome(e.outcome);
      throw new UnrecoverableError(`FHIR server refused the transaction (${e.status}): ${why.slice(0, 500)}`);
    }
    throw e;
  }
}

export interface InboundQueue {
  /** Partitioned by patient: one job per partition at a time, cluster-wide (per-patient order). */
  readonly queue: PartitionedQueue<InboundJob>;
  readonly workers: readonly Worker<InboundJob>[];
  readonly dead: Queue<DeadMessage>;
}

/**
 * Waiting is the only thing that helps: the FHIR server cannot be reached or says it is unavailable; Redis
 * cannot be reached (the patient's lock, the queues a written message feeds); or the patient's lock is still
 * held (by a process that died holding it, until its TTL).
 */
function unavailable(e: unknown): boolean {
  if (e instanceof FhirError)
    return (
      e.kind === 'network' ||
      e.kind === 'timeout' ||
      (e.kind === 'http' && [429, 502, 503, 504].includes(e.status))
    );
  if (e instanceof CarewayError) return e.code === 'upstream-unavailable' || e.code === 'concurrent-update';
  // ioredis, when Redis is restarting.
  return (
    e instanceof Error &&
    /ECONNREFUSED|ECONNRESET|Connection is closed|enableOfflineQueue|Stream isn't writeable/.test(e.message)
  );
}

export function init(queues: QueueRegistry, deps: InboundDeps): InboundQueue {
  const { queue, workers, dead } = queues.openPartitioned<InboundJob>(
    HL7_INBOUND_QUEUE,
    (job, _token, signal) => execInOrder(job, deps, signal),
    // Ids only: the sealed message stays with the failed job, for replay.
    (job, err): DeadMessage => ({
      jobId: job.id ?? '',
      sender: job.data.sender,
      controlId: job.data.controlId,
      type: job.data.type,
      reason: err.message.slice(0, 1000),
    }),
  );
  return { queue, workers, dead: dead as Queue<DeadMessage> };
}
