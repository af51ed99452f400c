/**
 * Automatic waitlist backfill.
 *
 * The waitlist is standard FHIR: an Appointment with status `waitlist` for the patient, the service type,
 * an optional `requestedPeriod` (the window they can come in), an optional practitioner, and `priority`
 * (1 = most urgent; 0 or none = routine). Ranking: priority, then who has waited longest (`created`).
 *
 * When a Slot frees, the best-ranked entry whose window, practitioner and preferences (weekday, time of day,
 * in the patient's zone) fit it gets an offer: the Slot is held for that patient (a hold that names the
 * offer), and a portal Communication tells them. The hold's expiry releases the Slot and the next entry is
 * offered it; accepting books the waitlist Appointment itself. Every step writes a Provenance.
 *
 * A "round" is one freeing of a Slot: patients already offered it in this round are skipped, so an
 * expired offer moves down the list instead of asking the same patient again.
 */
import type {
  Appointment,
  Bundle,
  BundleEntry,
  Communication,
  EpisodeOfCare,
  Patient,
  Provenance,
  Reference,
  Schedule,
  Slot,
} from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import { zoneOf } from '../fhir/zones.js';
import { journeyProvenance, type Actor } from '../journey/provenance.js';
import { CarewayError } from '../shared/errors.js';
import { toZonedIso } from '../shared/zoned-time.js';
import { withLocks } from '../shared/lock.js';
import { mustRead, readIfExists } from '../fhir/reads.js';
import { now, reportMade, retryOnSlotConflict, type SchedulingDeps } from './context.js';
import { fitsPreferences } from './ranking.js';
import { holdOf, readPreferences, withHold, type Hold } from './resources.js';
import { closeOfferTask, offerTaskEntry, reachableOutsidePortal } from './offer-tasks.js';

export const OFFER_CATEGORY = 'waitlist-offer';
const OFFER_SYSTEM = `${canonical.communicationCategory.replace('/CodeSystem/', '/sid/')}-offer`;

const priorityRank = (p: number | undefined): number => (p && p > 0 ? p : 10);

/** Waitlist entries best first (pure). */
export function rankWaitlist(entries: readonly Appointment[]): Appointment[] {
  return [...entries].sort(
    (a, b) =>
      priorityRank(a.priority) - priorityRank(b.priority) ||
      Date.parse(a.created ?? a.meta?.lastUpdated ?? '') -
        Date.parse(b.created ?? b.meta?.lastUpdated ?? '') ||
      (a.id ?? '').localeCompare(b.id ?? ''),
  );
}

const patientOf = (a: Appointment): string | undefined =>
  a.participant.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor?.reference;

/** Whether the entry can take the slot: its window, its practitioner, and the patient's preferences. */
export function fits(
  entry: Appointment,
  slot: Slot,
  schedule: Schedule | undefined,
  patient: Patient | undefined,
  defaultZone: string,
): boolean {
  const s = Date.parse(slot.start);
  const e = Date.parse(slot.end);
  const periods = entry.requestedPeriod ?? [];
  if (
    periods.length &&
    !periods.some((p) => (!p.start || Date.parse(p.start) <= s) && (!p.end || Date.parse(p.end) >= e))
  )
    return false;
  const wanted = entry.participant
    .map((p) => p.actor?.reference ?? '')
    .filter((r) => r.startsWith('Practitioner/'));
  if (wanted.length && !wanted.some((w) => schedule?.actor.some((a) => a.reference === w))) return false;
  const prefs = readPreferences(patient);
  return prefs ? fitsPreferences(s, zoneOf(patient, defaultZone), prefs) : true;
}

const token = (slot: Slot): string[] =>
  (slot.serviceType ?? []).flatMap((cc) =>
    (cc.coding ?? []).filter((c) => c.code).map((c) => (c.system ? `${c.system}|${c.code}` : c.code!)),
  );

/** The waitlist for a service type, ranked. */
export async function waitlistFor(
  deps: SchedulingDeps,
  serviceTypes: readonly string[],
): Promise<{ entries: Appointment[]; patients: Map<string, Patient> }> {
  if (serviceTypes.length === 0) return { entries: [], patients: new Map() };
  // Paged by hand: searchAll keeps only the matches, and the included Patients (preferences, zone, channels)
  // are needed too.
  const first = await deps.fhir.search<Appointment | Patient>(
    'Appointment',
    {
      status: 'waitlist',
      'service-type': serviceTypes.join(','),
      _include: 'Appointment:patient',
      _count: 200,
    },
    { noCache: true },
  );
  const found: (Appointment | Patient)[] = [];
  for await (const page of deps.fhir.pages(first, { noCache: true, maxPages: 10 }))
    for (const e of page.entry ?? []) if (e.resource) found.push(e.resource);
  const entries = rankWaitlist(found.filter((r): r is Appointment => r.resourceType === 'Appointment'));
  const patients = new Map(
    found.filter((r): r is Patient => r.resourceType === 'Patient').map((p) => [`Patient/${p.id}`, p]),
  );
  return { entries, patients };
}

export type OfferOutcome =
  | {
      readonly kind: 'offered';
      readonly communicationId: string;
      readonly entry: string;
      readonly hold: Hold;
    }
  | { readonly kind: 'not-free' | 'nobody-fits' };

/** The identifier of the offer of a round to a patient: one offer per patient per round. */
const offerKey = (round: string, patient: string): string => `${OFFER_SYSTEM}|${round}/${patient}`;

/** A Slot can still be offered when it exists, is free and has not started. */
const offerable = (slot: Slot | undefined, at: Date): slot is Slot =>
  !!slot && slot.status === 'free' && Date.parse(slot.start) > at.getTime();

/**
 * The best-ranked waitlist entry the Slot fits (window, practitioner, preferences), skipping patients already
 * offered this Slot in this round, so an expired offer moves down the list. The Slot's service types decide
 * the waitlist; a Slot without any takes its Schedule's.
 */
async function bestFit(
  deps: SchedulingDeps,
  slot: Slot,
  schedule: Schedule | undefined,
  round: string,
): Promise<{ entry: Appointment; patient: string; patientResource: Patient | undefined } | undefined> {
  const types = token(slot).length
    ? token(slot)
    : token({ ...slot, serviceType: schedule?.serviceType ?? [] });
  const { entries, patients } = await waitlistFor(deps, types);
  const offeredThisRound = async (patient: string): Promise<boolean> =>
    (
      await deps.fhir.search<Communication>(
        'Communication',
        { identifier: offerKey(round, patient), _summary: 'count' },
        { noCache: true },
      )
    ).total !== 0;
  for (const entry of entries) {
    const patient = patientOf(entry);
    if (!patient || !fits(entry, slot, schedule, patients.get(patient), deps.defaultZone)) continue;
    if (await offeredThisRound(patient)) continue;
    return { entry, patient, patientResource: patients.get(patient) };
  }
  return undefined;
}

/** The offer as the patient reads it in the portal: the service, when, and until when it is held (their zone). */
function offerCommunication(
  slot: Slot,
  entry: Appointment,
  patient: string,
  zone: string,
  round: string,
  at: Date,
  expires: Date,
): Communication {
  const journeyRef = entry.extension?.find(
    (x) => x.url === canonical.journeyReferenceExtension,
  )?.valueReference;
  const service = slot.serviceType?.[0]?.text ?? slot.serviceType?.[0]?.coding?.[0]?.display ?? 'an';
  const local = (ms: number): string => toZonedIso(ms, zone).slice(0, 16);
  return {
    resourceType: 'Communication',
    identifier: [{ system: OFFER_SYSTEM, value: `${round}/${patient}` }],
    status: 'completed',
    category: [
      {
        coding: [
          { system: canonical.communicationCategory, code: OFFER_CATEGORY, display: 'Waitlist offer' },
        ],
      },
    ],
    medium: [
      {
        coding: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationMode',
            code: 'ELECTRONIC',
            display: 'electronic data',
          },
        ],
      },
    ],
    subject: { reference: patient },
    recipient: [{ reference: patient }],
    about: [{ reference: `Slot/${slot.id}` }, { reference: `Appointment/${entry.id}` }],
    sent: at.toISOString(),
    payload: [
      {
        contentString: `An earlier ${service} appointment is available on ${local(Date.parse(slot.start)).replace('T', ' at ')}. Accept it in the portal before ${local(expires.getTime()).replace('T', ' ')}.`,
      },
    ],
    ...(journeyRef
      ? { extension: [{ url: canonical.journeyReferenceExtension, valueReference: journeyRef }] }
      : {}),
  };
}

/**
 * One transaction: the offer Communication (conditional on its round/patient key), the Slot held for the
 * patient with If-Match (the hold names the offer), the Task for staff when the patient cannot be told on their
 * own channel (offer-tasks.ts, conditional on the same key), and the Provenance.
 */
function offerTransaction(
  slot: Slot,
  entry: Appointment,
  communication: Communication,
  commUrn: string,
  hold: Hold,
  round: string,
  at: Date,
  staffTask: BundleEntry | undefined,
): Bundle {
  const slotRef = `Slot/${slot.id}`;
  const taskUrn = `urn:uuid:${crypto.randomUUID()}`;
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: commUrn,
        resource: communication,
        request: {
          method: 'POST',
          url: 'Communication',
          ifNoneExist: new URLSearchParams({ identifier: offerKey(round, hold.holder) }).toString(),
        },
      },
      {
        resource: withHold(slot, 'busy-tentative', hold),
        request: { method: 'PUT', url: slotRef, ifMatch: `W/"${slot.meta?.versionId ?? ''}"` },
      },
      ...(staffTask ? [{ ...staffTask, fullUrl: taskUrn }] : []),
      {
        resource: <Provenance>{
          ...journeyProvenance({
            target: commUrn,
            at: at.toISOString(),
            actor: { subject: 'careway-waitlist' },
            activity: 'CREATE',
            reason: 'Freed slot offered to the waitlist',
            change: 'waitlist:offered',
          }),
          target: [
            { reference: commUrn },
            { reference: slotRef },
            { reference: `Appointment/${entry.id}` },
            ...(staffTask ? [{ reference: taskUrn }] : []),
          ],
        },
        request: { method: 'POST', url: 'Provenance' },
      },
    ],
  };
}

/** The journey's care manager (else its first team), as the owner of an offer's staff Task. */
async function careManagerOf(deps: SchedulingDeps, entry: Appointment): Promise<{ owner?: Reference }> {
  const journey = entry.extension?.find((x) => x.url === canonical.journeyReferenceExtension)?.valueReference
    ?.reference;
  if (!journey?.startsWith('EpisodeOfCare/')) return {};
  const ep = await readIfExists<EpisodeOfCare>(
    deps.fhir,
    'EpisodeOfCare',
    journey.slice('EpisodeOfCare/'.length),
  );
  const owner = ep?.careManager ?? ep?.team?.[0];
  return owner?.reference ? { owner: { reference: owner.reference } } : {};
}

/** Offers a freed Slot to the best waiting patient it fits (the `waitlist-offers` worker). */
export async function offerSlot(deps: SchedulingDeps, slotId: string, round: string): Promise<OfferOutcome> {
  const outcome = await withLocks(deps.lock, [`slot:${slotId}`], () =>
    retryOnSlotConflict(async (): Promise<OfferOutcome> => {
      const slot = await readIfExists<Slot>(deps.fhir, 'Slot', slotId);
      const at = now(deps);
      if (!offerable(slot, at)) return { kind: 'not-free' };
      const schedule = await readIfExists<Schedule>(
        deps.fhir,
        'Schedule',
        (slot.schedule.reference ?? '').replace(/^Schedule\//, ''),
      );
      const best = await bestFit(deps, slot, schedule, round);
      if (!best) return { kind: 'nobody-fits' };
      const expires = new Date(at.getTime() + deps.offerMs);
      const commUrn = `urn:uuid:${crypto.randomUUID()}`;
      const hold: Hold = {
        id: crypto.randomUUID(),
        expires: expires.toISOString(),
        holder: best.patient,
        offer: commUrn,
        round,
      };
      const zone = zoneOf(best.patientResource, deps.defaultZone);
      const communication = offerCommunication(slot, best.entry, best.patient, zone, round, at, expires);
      const staffTask =
        deps.outsideChannels &&
        !reachableOutsidePortal(best.patientResource, deps.outsideChannels, at.getTime())
          ? offerTaskEntry({
              offer: commUrn,
              entry: best.entry,
              patient: best.patient,
              round,
              expires: hold.expires,
              at: at.toISOString(),
              ...(await careManagerOf(deps, best.entry)),
            })
          : undefined;
      const res = await deps.fhir.transaction(
        offerTransaction(slot, best.entry, communication, commUrn, hold, round, at, staffTask),
      );
      const communicationId =
        /Communication\/([^/]+)/.exec(res.entry?.[0]?.response?.location ?? '')?.[1] ?? '';
      return {
        kind: 'offered',
        communicationId,
        entry: best.entry.id!,
        hold: { ...hold, offer: `Communication/${communicationId}` },
      };
    }),
  );
  if (outcome.kind === 'offered') {
    deps.metrics?.offered();
    await deps.scheduleRelease(slotId, outcome.hold.id, Date.parse(outcome.hold.expires));
    // The portal Communication is the offer; the patient also hears of it on their own channel.
    await deps.offerMade?.(outcome.communicationId, outcome.hold.holder.replace(/^Patient\//, ''));
  }
  return outcome;
}

/** The offer's Slot and waitlist entry; refuses what is not a waitlist offer, or another patient's offer. */
async function readOffer(
  deps: SchedulingDeps,
  communicationId: string,
  confinedTo: string | undefined,
): Promise<{ slotId: string; entryId: string }> {
  const offer = await mustRead<Communication>(deps.fhir, 'Communication', communicationId, 'not-found');
  const isOffer = offer.category?.some((c) =>
    c.coding?.some((x) => x.system === canonical.communicationCategory && x.code === OFFER_CATEGORY),
  );
  const slotId = offer.about?.map((r) => /^Slot\/(.+)$/.exec(r.reference ?? '')?.[1]).find(Boolean);
  const entryId = offer.about?.map((r) => /^Appointment\/(.+)$/.exec(r.reference ?? '')?.[1]).find(Boolean);
  if (!isOffer || !slotId || !entryId)
    throw new CarewayError('unprocessable', `Communication/${communicationId} is not a waitlist offer`, {
      detailsCode: 'not-an-offer',
    });
  if (confinedTo && offer.subject?.reference !== `Patient/${confinedTo}`)
    throw new CarewayError('outside-compartment', "this offer is outside the token's patient compartment");
  return { slotId, entryId };
}

/** The Slot must still be held for this offer, and the hold not expired. */
function checkOfferStands(slot: Slot, communicationId: string, at: Date): void {
  const h = holdOf(slot);
  if (
    slot.status !== 'busy-tentative' ||
    h?.offer !== `Communication/${communicationId}` ||
    Date.parse(h.expires) <= at.getTime()
  )
    throw new CarewayError('conflict', 'the offer has expired or the slot was given to someone else', {
      detailsCode: 'offer-expired',
    });
}

/**
 * The waitlist Appointment booked into the Slot: its time, the Slot, and the Schedule's actors (who replace
 * any practitioner the entry asked for); everyone has accepted.
 */
function bookedFromWaitlist(entry: Appointment, slot: Slot, schedule: Schedule): Appointment {
  const others = entry.participant.filter(
    (p) => !schedule.actor.some((a) => a.reference === p.actor?.reference),
  );
  return {
    ...entry,
    status: 'booked',
    start: slot.start,
    end: slot.end,
    slot: [{ reference: `Slot/${slot.id}` }],
    ...((entry.serviceType ?? slot.serviceType)
      ? { serviceType: entry.serviceType ?? slot.serviceType }
      : {}),
    participant: [
      ...others.map((p) => ({ ...p, status: 'accepted' as const })),
      ...schedule.actor.map((a) => ({ actor: a, status: 'accepted' as const })),
    ],
  };
}

/** One transaction: the Slot busy and the Appointment booked, both with If-Match, and the Provenance. */
function acceptTransaction(
  slot: Slot,
  entry: Appointment,
  booked: Appointment,
  communicationId: string,
  actor: Actor,
  at: Date,
  staffTask: { entry: BundleEntry; target: string } | undefined,
): Bundle {
  const slotRef = `Slot/${slot.id}`;
  const entryRef = `Appointment/${entry.id}`;
  const entries: BundleEntry[] = [
    {
      resource: withHold(slot, 'busy'),
      request: { method: 'PUT', url: slotRef, ifMatch: `W/"${slot.meta?.versionId ?? ''}"` },
    },
    {
      resource: booked,
      request: { method: 'PUT', url: entryRef, ifMatch: `W/"${entry.meta?.versionId ?? ''}"` },
    },
    ...(staffTask ? [staffTask.entry] : []),
    {
      resource: <Provenance>{
        ...journeyProvenance({
          target: entryRef,
          at: at.toISOString(),
          actor,
          activity: 'UPDATE',
          reason: 'Waitlist offer accepted',
          change: 'appointment:waitlist->booked',
          trigger: { reference: `Communication/${communicationId}` },
        }),
        target: [
          { reference: entryRef },
          { reference: slotRef },
          ...(staffTask ? [{ reference: staffTask.target }] : []),
        ],
      },
      request: { method: 'POST', url: 'Provenance' },
    },
  ];
  return { resourceType: 'Bundle', type: 'transaction', entry: entries };
}

/** After a booking from the waitlist: its journey moves on, and its reminders are planned. */
async function afterAccept(deps: SchedulingDeps, appointment: Appointment, actor: Actor): Promise<void> {
  deps.metrics?.accepted();
  const journey = appointment.extension?.find((x) => x.url === canonical.journeyReferenceExtension)
    ?.valueReference?.reference;
  if (journey?.startsWith('EpisodeOfCare/'))
    await deps.journeys
      .applyEvent(journey.slice('EpisodeOfCare/'.length), 'appointment-booked', actor, {
        reference: `Appointment/${appointment.id}`,
      })
      .catch((e: unknown) => {
        // The booking stands; a closed journey refusing the event is not the patient's problem.
        if (!(e instanceof CarewayError && e.status < 500)) throw e;
      });
  await deps.appointmentChanged(appointment.id!);
  await reportMade(deps, appointment, 'booked');
}

/** Accepting an offer books the waitlist Appointment into the held Slot. */
export async function acceptOffer(
  deps: SchedulingDeps,
  communicationId: string,
  actor: Actor,
  confinedTo?: string,
): Promise<{ appointment: Appointment; changed: boolean }> {
  const { slotId, entryId } = await readOffer(deps, communicationId, confinedTo);
  let changed = false;
  const appointment = await withLocks(deps.lock, [`slot:${slotId}`], () =>
    retryOnSlotConflict(async () => {
      const [slot, entry] = await Promise.all([
        mustRead<Slot>(deps.fhir, 'Slot', slotId),
        mustRead<Appointment>(deps.fhir, 'Appointment', entryId),
      ]);
      // Accepted already (a replay): nothing to do.
      if (entry.status === 'booked' && entry.slot?.some((r) => r.reference === `Slot/${slotId}`))
        return entry;
      const at = now(deps);
      checkOfferStands(slot, communicationId, at);
      const schedule = await mustRead<Schedule>(
        deps.fhir,
        'Schedule',
        (slot.schedule.reference ?? '').replace(/^Schedule\//, ''),
      );
      const booked = bookedFromWaitlist(entry, slot, schedule);
      const hold = holdOf(slot);
      const staffTask = hold?.round
        ? await closeOfferTask(
            deps.fhir,
            hold.round,
            hold.holder,
            'completed',
            'Waitlist offer accepted',
            at.toISOString(),
          )
        : undefined;
      await deps.fhir.transaction(
        acceptTransaction(slot, entry, booked, communicationId, actor, at, staffTask),
      );
      changed = true;
      return deps.fhir.read<Appointment>('Appointment', entryId, { noCache: true });
    }),
  );
  if (changed) await afterAccept(deps, appointment, actor);
  return { appointment, changed };
}
