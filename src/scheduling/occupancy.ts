/**
 * Appointments that Careway did not book: HL7 SIU messages and direct edits on the FHIR server.
 *
 * - An Appointment that lists its Slots (one Careway booked) frees them when it is cancelled.
 * - An Appointment without Slots (an EHR's, from SIU) takes the free Slots of its practitioners' Schedules
 *   that overlap its time, marking each `busy` with the `slot-appointment` extension (searchable as
 *   `Slot?appointment=`), so `$find` never offers that time again. When it moves (S13/S14) the occupancy
 *   follows; when it is cancelled or deleted (S15/S17) the Slots are freed and offered to the waitlist.
 *   The practitioners come from the participants, literal (`Practitioner/1`) or by identifier (AIP-3).
 * - A no-show gets its follow-up Task. Every change calls the reminder re-planning hook.
 * - None of these is reported as Careway's own change (`appointmentMade`): the EHR sent it, or it was made on the
 *   FHIR server, so echoing it to the EHR would send it back where it came from.
 */
import type { Appointment, Practitioner, Schedule, Slot } from 'fhir/r4.js';
import { journeyProvenance, SYSTEM_ACTOR } from '../journey/provenance.js';
import { withLocks } from '../shared/lock.js';
import { now, retryOnSlotConflict, type SchedulingDeps } from './context.js';
import { announceFree, markNoShow, put, readSlots, slotIdsOf, slotKey, withTargets } from './booking.js';
import { occupantOf, withHold, withOccupant } from './resources.js';

const OCCUPYING: readonly Appointment['status'][] = ['booked', 'pending', 'arrived', 'checked-in'];
/** Longest slot considered when looking for overlaps (slots starting this long before the appointment). */
const MAX_SLOT_MS = 12 * 3600_000;

async function practitionersOf(deps: SchedulingDeps, a: Appointment): Promise<string[]> {
  const refs = new Set<string>();
  for (const p of a.participant) {
    const r = p.actor?.reference;
    if (r?.startsWith('Practitioner/')) refs.add(r);
    const id = p.actor?.identifier;
    if (!r && id?.value && (p.actor?.type === 'Practitioner' || p.actor?.type === undefined)) {
      const found = await deps.fhir.searchAll<Practitioner>(
        'Practitioner',
        { identifier: id.system ? `${id.system}|${id.value}` : id.value, _elements: 'id' },
        { noCache: true, maxPages: 1 },
      );
      for (const f of found) refs.add(`Practitioner/${f.id}`);
    }
  }
  return [...refs];
}

/** The Slots the appointment should hold now: free or already its own, overlapping its time. */
async function wantedSlots(deps: SchedulingDeps, a: Appointment): Promise<Slot[]> {
  if (!OCCUPYING.includes(a.status) || !a.start || !a.end) return [];
  const practitioners = await practitionersOf(deps, a);
  if (practitioners.length === 0) return [];
  const schedules = await deps.fhir.searchAll<Schedule>(
    'Schedule',
    { actor: practitioners.join(','), _elements: 'id', _count: 100 },
    { noCache: true, maxPages: 5 },
  );
  if (schedules.length === 0) return [];
  const startMs = Date.parse(a.start);
  const endMs = Date.parse(a.end);
  const slots = await deps.fhir.searchAll<Slot>(
    'Slot',
    {
      schedule: schedules.map((s) => `Schedule/${s.id}`).join(','),
      start: [`ge${new Date(startMs - MAX_SLOT_MS).toISOString()}`, `lt${new Date(endMs).toISOString()}`],
      _count: 200,
    },
    { noCache: true, maxPages: 10 },
  );
  return slots.filter((s) => Date.parse(s.start) < endMs && Date.parse(s.end) > startMs);
}

/** Moves the appointment's occupancy to the Slots it should hold; returns the Slots it freed. */
export async function syncOccupancy(deps: SchedulingDeps, a: Appointment): Promise<string[]> {
  const me = `Appointment/${a.id}`;
  const [wanted, held] = await Promise.all([
    wantedSlots(deps, a),
    deps.fhir.searchAll<Slot>('Slot', { appointment: me, _count: 200 }, { noCache: true, maxPages: 5 }),
  ]);
  const keys = [...new Set([...wanted, ...held].map((s) => s.id!))];
  if (keys.length === 0) return [];
  const freed: string[] = [];
  await withLocks(deps.lock, keys.map(slotKey), () =>
    retryOnSlotConflict(async () => {
      const current = await readSlots(deps, keys);
      const wantedIds = new Set(wanted.map((s) => s.id!));
      // Another booking that got there first keeps its Slot; the EHR's double booking is the EHR's to resolve.
      const take = current.filter((s) => wantedIds.has(s.id!) && s.status === 'free');
      const give = current.filter((s) => !wantedIds.has(s.id!) && occupantOf(s) === me);
      if (take.length + give.length === 0) return;
      await deps.fhir.transaction({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          ...take.map((s) => put(withOccupant(s, me), s.meta?.versionId ?? '')),
          ...give.map((s) => put(withOccupant(s, undefined), s.meta?.versionId ?? '')),
          {
            resource: withTargets(
              journeyProvenance({
                target: me,
                at: now(deps).toISOString(),
                actor: SYSTEM_ACTOR,
                activity: 'UPDATE',
                reason: `Slots follow an appointment booked elsewhere (${a.status})`,
                change: `slots:+${take.length}-${give.length}`,
              }),
              [...take, ...give].map((s) => `Slot/${s.id}`),
            ),
            request: { method: 'POST', url: 'Provenance' },
          },
        ],
      });
      freed.splice(0, freed.length, ...give.map((s) => s.id!));
    }),
  );
  return freed;
}

/** Frees the Slots a Careway-booked appointment lists, once it is cancelled or deleted elsewhere. */
async function freeListedSlots(deps: SchedulingDeps, a: Appointment): Promise<string[]> {
  const slotIds = slotIdsOf(a);
  const freed: string[] = [];
  await withLocks(deps.lock, slotIds.map(slotKey), () =>
    retryOnSlotConflict(async () => {
      const slots = (await readSlots(deps, slotIds)).filter((s) => s.status === 'busy');
      if (slots.length === 0) return;
      await deps.fhir.transaction({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          ...slots.map((s) => put(withHold(s, 'free'), s.meta?.versionId ?? '')),
          {
            resource: withTargets(
              journeyProvenance({
                target: `Slot/${slots[0]!.id}`,
                at: now(deps).toISOString(),
                actor: SYSTEM_ACTOR,
                activity: 'UPDATE',
                reason: `Appointment ${a.status}`,
                change: 'slot:busy->free',
                trigger: { reference: `Appointment/${a.id}` },
              }),
              slots.slice(1).map((s) => `Slot/${s.id}`),
            ),
            request: { method: 'POST', url: 'Provenance' },
          },
        ],
      });
      freed.splice(0, freed.length, ...slots.map((s) => s.id!));
    }),
  );
  return freed;
}

/** An Appointment changed outside Careway's booking operations (HL7 SIU, or an edit on the FHIR server). */
export async function appointmentChangedElsewhere(
  deps: SchedulingDeps,
  appointment: Appointment,
): Promise<void> {
  const id = appointment.id!;
  let freed: string[] = [];
  if (slotIdsOf(appointment).length > 0) {
    if (appointment.status === 'cancelled' || appointment.status === 'entered-in-error')
      freed = await freeListedSlots(deps, appointment);
  } else {
    freed = await syncOccupancy(deps, appointment);
  }
  for (const s of freed) await announceFree(deps, s);
  if (appointment.status === 'noshow')
    await markNoShow(deps, id, SYSTEM_ACTOR, 'Reported as a no-show', /* reported elsewhere */ true);
  // Re-planned, never reported back (deps.appointmentMade): the change is the EHR's or the FHIR server's own.
  await deps.appointmentChanged(id);
}
