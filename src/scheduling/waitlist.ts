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
  Patient,
  Provenance,
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
import { now, retryOnSlotConflict, type SchedulingDeps } from './context.js';
import { fitsPreferences } from './ranking.js';
import { holdOf, readPreferences, withHold, type Hold } from './resources.js';

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
  const found = await deps.fhir.searchAll<Appointment | Patient>(
    'Appointment',
    {
      status: 'waitlist',
      'service-type': serviceTypes.join(','),
      _include: 'Appointment:patient',
      _count: 200,
    },
    { noCache: true, maxPages: 10 },
  );
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

/** Offers a freed Slot to the best waiting patient it fits (the `waitlist-offers` worker). */
export async function offerSlot(deps: SchedulingDeps, slotId: string, round: string): Promise<OfferOutcome> {
  let outcome = { kind: 'nobody-fits' } as OfferOutcome;
  await withLocks(deps.lock, [`slot:${slotId}`], () =>
    retryOnSlotConflict(async () => {
      const slot = await readIfExists<Slot>(deps.fhir, 'Slot', slotId);
      const at = now(deps);
      if (!slot || slot.status !== 'free' || Date.parse(slot.start) <= at.getTime()) {
        outcome = { kind: 'not-free' };
        return;
      }
      const schedule = await readIfExists<Schedule>(
        deps.fhir,
        'Schedule',
        (slot.schedule.reference ?? '').replace(/^Schedule\//, ''),
      );
      const types = token(slot).length
        ? token(slot)
        : token({ ...slot, serviceType: schedule?.serviceType ?? [] });
      const { entries, patients } = await waitlistFor(deps, types);
      // Patients already offered this round are skipped: each offer's identifier is `<round>/<patient>`.
      const offeredThisRound = async (patient: string): Promise<boolean> =>
        (
          await deps.fhir.search<Communication>(
            'Communication',
            { identifier: `${OFFER_SYSTEM}|${round}/${patient}`, _summary: 'count' },
            { noCache: true },
          )
        ).total !== 0;
      let best: Appointment | undefined;
      for (const e of entries) {
        const p = patientOf(e);
        if (!p || !fits(e, slot, schedule, patients.get(p), deps.defaultZone)) continue;
        if (await offeredThisRound(p)) continue;
        best = e;
        break;
      }
      if (!best) {
        outcome = { kind: 'nobody-fits' };
        return;
      }
      const patient = patientOf(best)!;
      const zone = zoneOf(patients.get(patient), deps.defaultZone);
      const expires = new Date(at.getTime() + deps.offerMs);
      const commUrn = `urn:uuid:${crypto.randomUUID()}`;
      const h: Hold = {
        id: crypto.randomUUID(),
        expires: expires.toISOString(),
        holder: patient,
        offer: commUrn,
        round,
      };
      const journeyRef = best.extension?.find(
        (x) => x.url === canonical.journeyReferenceExtension,
      )?.valueReference;
      const service = slot.serviceType?.[0]?.text ?? slot.serviceType?.[0]?.coding?.[0]?.display ?? 'an';
      const communication: Communication = {
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
        about: [{ reference: `Slot/${slotId}` }, { reference: `Appointment/${best.id}` }],
        sent: at.toISOString(),
        payload: [
          {
            contentString: `An earlier ${service} appointment is available on ${toZonedIso(Date.parse(slot.start), zone).slice(0, 16).replace('T', ' at ')}. Accept it in the portal before ${toZonedIso(expires.getTime(), zone).slice(0, 16).replace('T', ' ')}.`,
          },
        ],
        ...(journeyRef
          ? { extension: [{ url: canonical.journeyReferenceExtension, valueReference: journeyRef }] }
          : {}),
      };
      const tx: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          {
            fullUrl: commUrn,
            resource: communication,
            request: {
              method: 'POST',
              url: 'Communication',
              ifNoneExist: new URLSearchParams({
                identifier: `${OFFER_SYSTEM}|${round}/${patient}`,
              }).toString(),
            },
          },
          {
            resource: withHold(slot, 'busy-tentative', h),
            request: { method: 'PUT', url: `Slot/${slotId}`, ifMatch: `W/"${slot.meta?.versionId ?? ''}"` },
          },
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
                { reference: `Slot/${slotId}` },
                { reference: `Appointment/${best.id}` },
              ],
            },
            request: { method: 'POST', url: 'Provenance' },
          },
        ],
      };
      const res = await deps.fhir.transaction(tx);
      const communicationId =
        /Communication\/([^/]+)/.exec(res.entry?.[0]?.response?.location ?? '')?.[1] ?? '';
      outcome = {
        kind: 'offered',
        communicationId,
        entry: best.id!,
        hold: { ...h, offer: `Communication/${communicationId}` },
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

/** Accepting an offer books the waitlist Appointment into the held Slot. */
export async function acceptOffer(
  deps: SchedulingDeps,
  communicationId: string,
  actor: Actor,
  confinedTo?: string,
): Promise<{ appointment: Appointment; changed: boolean }> {
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
  let changed = false;
  const appointment = await withLocks(deps.lock, [`slot:${slotId}`], () =>
    retryOnSlotConflict(async () => {
      const [slot, entry] = await Promise.all([
        mustRead<Slot>(deps.fhir, 'Slot', slotId),
        mustRead<Appointment>(deps.fhir, 'Appointment', entryId),
      ]);
      if (entry.status === 'booked' && entry.slot?.some((r) => r.reference === `Slot/${slotId}`))
        return entry;
      const h = holdOf(slot);
      const at = now(deps);
      if (
        slot.status !== 'busy-tentative' ||
        h?.offer !== `Communication/${communicationId}` ||
        Date.parse(h.expires) <= at.getTime()
      )
        throw new CarewayError('conflict', 'the offer has expired or the slot was given to someone else', {
          detailsCode: 'offer-expired',
        });
      const schedule = await mustRead<Schedule>(
        deps.fhir,
        'Schedule',
        (slot.schedule.reference ?? '').replace(/^Schedule\//, ''),
      );
      const others = entry.participant.filter(
        (p) => !schedule.actor.some((a) => a.reference === p.actor?.reference),
      );
      const booked: Appointment = {
        ...entry,
        status: 'booked',
        start: slot.start,
        end: slot.end,
        slot: [{ reference: `Slot/${slotId}` }],
        ...((entry.serviceType ?? slot.serviceType)
          ? { serviceType: entry.serviceType ?? slot.serviceType }
          : {}),
        participant: [
          ...others.map((p) => ({ ...p, status: 'accepted' as const })),
          ...schedule.actor.map((a) => ({ actor: a, status: 'accepted' as const })),
        ],
      };
      const entries: BundleEntry[] = [
        {
          resource: withHold(slot, 'busy'),
          request: { method: 'PUT', url: `Slot/${slotId}`, ifMatch: `W/"${slot.meta?.versionId ?? ''}"` },
        },
        {
          resource: booked,
          request: {
            method: 'PUT',
            url: `Appointment/${entryId}`,
            ifMatch: `W/"${entry.meta?.versionId ?? ''}"`,
          },
        },
        {
          resource: <Provenance>{
            ...journeyProvenance({
              target: `Appointment/${entryId}`,
              at: at.toISOString(),
              actor,
              activity: 'UPDATE',
              reason: 'Waitlist offer accepted',
              change: 'appointment:waitlist->booked',
              trigger: { reference: `Communication/${communicationId}` },
            }),
            target: [{ reference: `Appointment/${entryId}` }, { reference: `Slot/${slotId}` }],
          },
          request: { method: 'POST', url: 'Provenance' },
        },
      ];
      await deps.fhir.transaction({ resourceType: 'Bundle', type: 'transaction', entry: entries });
      changed = true;
      return deps.fhir.read<Appointment>('Appointment', entryId, { noCache: true });
    }),
  );
  if (changed) {
    deps.metrics?.accepted();
    const journey = appointment.extension?.find((x) => x.url === canonical.journeyReferenceExtension)
      ?.valueReference?.reference;
    if (journey?.startsWith('EpisodeOfCare/'))
      await deps.journeys
        .applyEvent(journey.slice('EpisodeOfCare/'.length), 'appointment-booked', actor, {
          reference: `Appointment/${entryId}`,
        })
        .catch((e: unknown) => {
          // The booking stands; a closed journey refusing the event is not the patient's problem.
          if (!(e instanceof CarewayError && e.status < 500)) throw e;
        });
    await deps.appointmentChanged(entryId);
  }
  return { appointment, changed };
}
