/**
 * Queue `hl7-inbound` (partitions `hl7-inbound-p0…`): turns each accepted HL7 message into one idempotent FHIR
 * transaction.
 *
 * - `exec` unseals the raw message, maps it with the declarative maps, and posts the transaction under a lock
 *   on the patient's business identifier, so two messages for one patient never write at the same time.
 * - The intake puts a message in the partition of its patient (PID-3), and each partition's worker runs one
 *   job at a time: one patient's messages leave in arrival order, so an A03 is never applied before its A01,
 *   while other patients' messages are written in parallel by the other partitions (HL7_PARTITIONS).
 *   A transient FHIR failure is retried inside the FHIR client first, holding the partition, so order holds;
 *   only a failure that outlasts those retries lets the partition move on (the job then retries with backoff).
 * - A mapping or data error cannot be fixed by retrying: UnrecoverableError, and the job goes to `hl7-dead`
 *   at once with the reason. FHIR 5xx, timeouts and HAPI's conditional-create race (409) are retried with backoff.
 * - Job data holds ids and the sealed message only; logs name job ids, never content.
 */
import { UnrecoverableError, type Job, type Queue, type Worker } from 'bullmq';
import { forwardFinalFailures } from '../queues/dead-letter.js';
import { randomUUID } from 'node:crypto';
import type { Bundle, EpisodeOfCare, Identifier, Patient, Provenance } from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import type { Hl7Timezones } from '../config/config.js';
import type { FhirPort } from '../fhir/client.js';
import { FhirError } from '../fhir/errors.js';
import type { RedisConnections } from '../queues/connections.js';
import type { KeyedLock } from '../queues/locks.js';
import type { InboundJob } from './intake.js';
import type { PartitionedQueue } from '../queues/partitioned.js';
import { Hl7Message, Hl7ParseError } from './message.js';
import { MappingError, type Mapper } from './mapping/engine.js';
import { buildTransaction, type MessageFacts } from './mapping/transaction.js';
import type { MappedMessage } from './mapping/engine.js';
import { EVENT_STAGE, initialState, type JourneyEvent } from '../journey/rules.js';
import type { JourneyStage } from '../journey/stages.js';
import { JOURNEY_EXTENSION_URL, newJourneyEpisode } from '../journey/episode.js';
import { unseal } from '../shared/seal.js';
import { mergePatients } from './merge.js';
import { CarewayError } from '../shared/errors.js';

export const HL7_DEAD_QUEUE = 'hl7-dead';

export interface DeadMessage {
  readonly jobId: string;
  readonly sender: string;
  readonly controlId: string;
  readonly type: string;
  readonly reason: string;
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
   * Called with the business key of every Appointment a message wrote, after it is committed: the reminder
   * re-planning hook. A no-op until the reminders capability lands.
   */
  readonly onAppointmentChanged?: (appointmentKey: string) => Promise<void>;
}

/**
 * What a message does to the patient's journey, through the journey rules: A04/A01/A05/S12/I12 open a journey
 * (in the message's own transaction) when the patient has none, at the stage the message implies; on an open
 * journey, A01 → admitted (care), A03 → discharged (recovery), S12 → appointment booked and I12 → referral
 * (access), R01 → results available (care).
 */
export interface JourneyEffects {
  event(journeyId: string, event: JourneyEvent, trigger: string): Promise<void>;
  /** The message cancels an earlier event (A11, S15, S17): undo it if it is what set the current stage. */
  undo(journeyId: string, event: JourneyEvent, trigger: string): Promise<void>;
}

const STARTS = new Set(['A01', 'A04', 'A05', 'S12', 'I12']);
const EVENTS: Readonly<Record<string, JourneyEvent>> = {
  A01: 'admitted',
  A03: 'discharged',
  S12: 'appointment-booked',
  I12: 'referral-accepted',
  R01: 'results-available',
};
/** Messages that take back an earlier event. */
const UNDOES: Readonly<Record<string, JourneyEvent>> = {
  A11: 'admitted',
  S15: 'appointment-booked',
  S17: 'appointment-booked',
};

export interface InboundResult {
  readonly written: number;
  readonly skipped: readonly string[];
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
  let built: ReturnType<typeof buildTransaction>;
  const facts = {
    jobId: job.id ?? '',
    sender: job.data.sender,
    controlId: job.data.controlId,
    type: job.data.type,
    receivedAt: job.data.receivedAt,
  };
  try {
    mapped = deps.mapper.message(msg, { zone: zoneFor(deps.zones, msg), delimiters: msg.delimiters });
    built = buildTransaction(mapped, facts);
  } catch (e) {
    if (e instanceof MappingError) throw new UnrecoverableError(`mapping: ${e.message}`);
    throw e;
  }
  const patientKey = built.keys['patient'];
  const lockKey = `hl7-patient:${patientKey ?? `${job.data.sender}|${job.data.controlId}`}`;
  const trigger = mapped.trigger;
  await deps.lock.withLock(lockKey, async () => {
    // One read gives both the stored Patient and its journeys (bench P3: every request counts here).
    const { kept, open } = patientKey
      ? await patientContext(deps.fhir, patientKey, !!deps.journeys)
      : { kept: {}, open: undefined };
    // Patient.link and Patient.active belong to merges, not to the sender's message: keep what is stored.
    const withKept: MappedMessage = {
      ...mapped,
      resources: mapped.resources.map((r) =>
        r.id === 'patient' ? { ...r, resource: { ...r.resource, ...kept } } : r,
      ),
    };
    const event = EVENTS[trigger];
    const opening = !open && !!deps.journeys && !!patientKey && STARTS.has(trigger);
    const bundle = messageTransaction(withKept, facts, {
      ...(open ? { open } : {}),
      ...(opening && patientKey ? { opening: { sender: job.data.sender, patientKey } } : {}),
    });
    await postTransaction(deps, bundle);
    if (trigger === 'A40') {
      const mrg = msg.segment('MRG');
      const survivor = mapped.resources.find((r) => r.id === 'patient')?.resource['identifier'] as
        Identifier[] | undefined;
      const survivorKey = survivor?.find((i) => i.system && i.value);
      if (!mrg || !survivorKey)
        throw new UnrecoverableError('mapping: an A40 needs PID-3 and MRG-1 identifiers with a system');
      const retired = deps.mapper.segment(mrg, 'MRG[Patient]', {
        zone: zoneFor(deps.zones, msg),
        delimiters: msg.delimiters,
      });
      await mergePatients(
        deps.fhir,
        survivorKey,
        (retired['identifier'] as Identifier[] | undefined) ?? [],
        `hl7-${facts.jobId}-merge`,
        facts.receivedAt,
      );
      return;
    }
    const undo = UNDOES[trigger];
    if (open && (event || undo) && deps.journeys) {
      try {
        const why = `hl7:${job.data.type}:${job.data.controlId}`;
        if (event) await deps.journeys.event(open, event, why);
        else if (undo) await deps.journeys.undo(open, undo, why);
      } catch (e) {
        // The message's data is committed; a journey rule refusing the event (e.g. a closed journey) is not a
        // reason to retry or dead-letter it. Transient failures still throw, and the replay is idempotent.
        if (!(e instanceof CarewayError && e.status < 500)) throw e;
      }
    }
  });
  if (deps.onAppointmentChanged) {
    for (const r of mapped.resources) {
      const key = built.keys[r.instance];
      if (r.resource['resourceType'] === 'Appointment' && key) await deps.onAppointmentChanged(key);
    }
  }
  return { written: built.bundle.entry?.length ?? 0, skipped: built.skipped };
}

export const HL7_JOURNEY_SYSTEM = 'https://careway.dev/fhir/sid/journey-from-hl7';

const LINKED_BY_EXTENSION = new Set([
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
  readonly opening?: { readonly sender: string; readonly patientKey: string };
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
  const bundle = buildTransaction(journeyRef ? linkToJourney(mapped, journeyRef) : mapped, facts).bundle;
  if (journey.opening && journeyRef) {
    const event = EVENTS[mapped.trigger];
    addJourney(bundle, journeyRef, {
      identifier: {
        system: HL7_JOURNEY_SYSTEM,
        value: `${journey.opening.sender}|${journey.opening.patientKey}`,
      },
      // A first contact that is already a booking, a referral or an admission starts at that stage.
      stage: event ? EVENT_STAGE[event] : 'awareness',
      at: facts.receivedAt,
      reason: `hl7: ${facts.type}`,
    });
  }
  return bundle;
}

/**
 * The stored Patient's merge fields (`link`, `active`: they belong to merges, not to the sender's message) and
 * the id of its open journey, in one search: `Patient?identifier=…&_revinclude=EpisodeOfCare:patient`.
 */
async function patientContext(
  fhir: FhirPort,
  patientKey: string,
  withJourney: boolean,
): Promise<{ kept: Record<string, unknown>; open: string | undefined }> {
  const token = new URLSearchParams(patientKey.split('?')[1] ?? '').get('identifier');
  if (!token) return { kept: {}, open: undefined };
  const params: Record<string, string> = { identifier: token };
  if (withJourney) params['_revinclude'] = 'EpisodeOfCare:patient';
  const bundle = await fhir.search('Patient', params, { storeless: 100 });
  const resources = (bundle.entry ?? []).map((e) => e.resource);
  const current = resources.find((r): r is Patient => r?.resourceType === 'Patient');
  const open = resources
    .filter((r): r is EpisodeOfCare => r?.resourceType === 'EpisodeOfCare')
    .filter((e) => ['planned', 'waitlist', 'active', 'onhold'].includes(e.status))
    .filter((e) => e.extension?.some((x) => x.url === canonical.journeyStageExtension))
    .sort((a, b) => (b.period?.start ?? '').localeCompare(a.period?.start ?? ''))[0]?.id;
  return {
    kept: {
      ...(current?.link ? { link: current.link } : {}),
      ...(current?.active !== undefined ? { active: current.active } : {}),
    },
    open,
  };
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
      e.status !== 429
    ) {
      const why =
        e.outcome?.issue
          .map((i) => i.diagnostics)
          .filter(Boolean)
          .join('; ') ?? '';
      throw new UnrecoverableError(`FHIR server refused the transaction (${e.status}): ${why.slice(0, 500)}`);
    }
    throw e;
  }
}

export interface InboundQueue {
  /** One worker per partition, each with concurrency 1 (per-patient order). */
  readonly workers: readonly Worker<InboundJob>[];
  readonly dead: Queue<DeadMessage>;
}

export function init(
  conns: RedisConnections,
  queue: PartitionedQueue<InboundJob>,
  deps: InboundDeps,
): InboundQueue {
  const dead = conns.queue<DeadMessage>(HL7_DEAD_QUEUE);
  const workers = queue.queues.map((q) => {
    const worker = conns.worker<InboundJob>(q.name, (job) => exec(job, deps), { concurrency: 1 });
    forwardFinalFailures(worker, dead, (job, err) => ({
      jobId: job.id ?? '',
      sender: job.data.sender,
      controlId: job.data.controlId,
      type: job.data.type,
      reason: err.message.slice(0, 1000),
    }));
    return worker;
  });
  return { workers, dead };
}
