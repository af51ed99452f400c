/**
 * Holding, booking, rescheduling and cancelling, without double booking.
 *
 * Two guards, each enough on its own:
 * - the Slots' locks (Redis, sorted order) serialise Careway instances, so 50 callers racing for one Slot
 *   queue up, and each one after the first sees the Slot taken and gets a 409;
 * - every write is one transaction that updates each Slot with `If-Match` on the version we decided from, so
 *   even a writer outside Careway (the EHR) cannot be overwritten: the transaction fails whole, and we
 *   re-read and decide again.
 * A multi-actor booking (practitioner + room) is one transaction over all its Slots: all or none.
 */
import type {
  Appointment,
  AppointmentParticipant,
  Bundle,
  BundleEntry,
  Encounter,
  EpisodeOfCare,
  Reference,
  Schedule,
  Slot,
  Task,
} from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import { journeyProvenance, type Actor, SYSTEM_ACTOR } from '../journey/provenance.js';
import { journeyLink } from '../journey/episode.js';
import { CLOSED_STATUSES } from '../journey/rules.js';
import { CarewayError } from '../shared/errors.js';
import { withLocks } from '../shared/lock.js';
import { mustRead, readIfExists } from '../fhir/reads.js';
import { now, reportMade, retryOnSlotConflict, type SchedulingDeps } from './context.js';
import { holdOf, withHold, type Hold } from './resources.js';
import { closeOfferTask } from './offer-tasks.js';

const ACTIVE: readonly Appointment['status'][] = ['booked', 'arrived', 'checked-in', 'fulfilled', 'pending'];

export const slotKey = (id: string): string => `slot:${id}`;

export function put(resource: Slot | Appointment | Task, version?: string): BundleEntry {
  return {
    resource,
    request: {
      method: 'PUT',
      url: `${resource.resourceType}/${resource.id!}`,
      ...(version !== undefined ? { ifMatch: `W/"${version}"` } : {}),
    },
  };
}

export async function readSlots(deps: SchedulingDeps, ids: readonly string[]): Promise<Slot[]> {
  return Promise.all(ids.map((id) => mustRead<Slot>(deps.fhir, 'Slot', id)));
}

/** The journey an appointment belongs to: the one named, else the patient's latest open journey. */
export async function journeyFor(
  deps: SchedulingDeps,
  patientId: string,
  journeyId: string | undefined,
): Promise<EpisodeOfCare | undefined> {
  if (journeyId) {
    const j = await mustRead<EpisodeOfCare>(deps.fhir, 'EpisodeOfCare', journeyId);
    if (j.patient.reference !== `Patient/${patientId}`)
      throw new CarewayError(
        'rule-violation',
        'rule journey-patient-mismatch: the journey belongs to another patient',
        {
          detailsCode: 'journey-patient-mismatch',
        },
      );
    return j;
  }
  const all = await deps.journeys.journeysOf(patientId);
  return all.find((e) => !CLOSED_STATUSES.includes(e.status));
}

async function actorsOf(deps: SchedulingDeps, slots: readonly Slot[]): Promise<Reference[]> {
  const ids = [...new Set(slots.map((s) => s.schedule.reference ?? ''))];
  const schedules = await Promise.all(
    ids.map((r) => mustRead<Schedule>(deps.fhir, 'Schedule', r.replace(/^Schedule\//, ''))),
  );
  const seen = new Set<string>();
  return schedules
    .flatMap((s) => s.actor)
    .filter((a) => a.reference && !seen.has(a.reference) && seen.add(a.reference));
}

/** A Slot that has already started cannot be held or booked. */
function refusePast(slots: readonly Slot[], at: Date): void {
  const past = slots.find((s) => Date.parse(s.start) <= at.getTime());
  if (past)
    throw new CarewayError('rule-violation', `rule slot-in-past: Slot/${past.id} has already started`, {
      detailsCode: 'slot-in-past',
    });
}

export interface HoldResult {
  readonly hold: Hold;
  readonly slots: readonly Slot[];
  readonly changed: boolean;
}

/** `$hold`: the Slots become `busy-tentative` for the patient until the hold expires (or is booked). */
export async function hold(
  deps: SchedulingDeps,
  slotIds: readonly string[],
  patientId: string,
  actor: Actor,
): Promise<HoldResult> {
  await mustRead(deps.fhir, 'Patient', patientId);
  const holder = `Patient/${patientId}`;
  return withLocks(deps.lock, slotIds.map(slotKey), () =>
    retryOnSlotConflict(async () => {
      const slots = await readSlots(deps, slotIds);
      const at = now(deps);
      const held = slots.map(holdOf);
      // A replay by the same patient while the hold stands returns it.
      const mine = held[0];
      if (
        mine &&
        held.every((h) => h?.id === mine.id && h.holder === holder) &&
        slots.every((s) => s.status === 'busy-tentative') &&
        Date.parse(mine.expires) > at.getTime()
      )
        return { hold: mine, slots, changed: false };
      refusePast(slots, at);
      const taken = slots.filter((s) => s.status !== 'free' && !holdExpired(s, at));
      if (taken.length)
        throw new CarewayError('conflict', `Slot/${taken[0]!.id} is not free (${taken[0]!.status})`, {
          detailsCode: 'slot-taken',
        });
      const h: Hold = {
        id: crypto.randomUUID(),
        expires: new Date(at.getTime() + deps.holdMs).toISOString(),
        holder,
      };
      const tx: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          ...slots.map((s) => put(withHold(s, 'busy-tentative', h), s.meta?.versionId ?? '')),
          {
            resource: withTargets(
              journeyProvenance({
                target: `Slot/${slots[0]!.id}`,
                at: at.toISOString(),
                actor,
                activity: 'UPDATE',
                reason: 'Held for a patient',
                change: 'slot:free->busy-tentative',
              }),
              slots.slice(1).map((s) => `Slot/${s.id}`),
            ),
            request: { method: 'POST', url: 'Provenance' },
          },
        ],
      };
      await deps.fhir.transaction(tx);
      // One release per Slot: a multi-actor hold spans Schedules, and each Slot is released on its own.
      for (const id of slotIds) await deps.scheduleRelease(id, h.id, Date.parse(h.expires));
      return { hold: h, slots: await readSlots(deps, slotIds), changed: true };
    }),
  );
}

export function withTargets<T extends { target: Reference[] }>(p: T, more: readonly string[]): T {
  return { ...p, target: [...p.target, ...more.map((r) => ({ reference: r }))] };
}

export interface BookInput {
  readonly slotIds: readonly string[];
  readonly patientId: string;
  readonly journeyId?: string;
  readonly referralId?: string;
  readonly replacesId?: string;
  readonly appointmentType?: Appointment['appointmentType'];
  readonly description?: string;
  /** The patient booked it themselves (a patient-context token). */
  readonly byPatient?: boolean;
}

export interface BookResult {
  readonly appointment: Appointment;
  readonly created: boolean;
  readonly replaced?: Appointment;
}

function bookingKey(slots: readonly Slot[]): string {
  return slots
    .map((s) => `${s.id}@${s.meta?.versionId ?? ''}`)
    .sort()
    .join('+');
}

/**
 * Before any lock: the patient, the referral and the journey exist, and an appointment to replace is this
 * patient's. Returns the journey the booking joins and the appointment it replaces.
 */
async function checkBookingRequest(
  deps: SchedulingDeps,
  input: BookInput,
): Promise<{ journey: EpisodeOfCare | undefined; old: Appointment | undefined }> {
  await mustRead(deps.fhir, 'Patient', input.patientId);
  if (input.referralId) await mustRead(deps.fhir, 'ServiceRequest', input.referralId);
  const journey = await journeyFor(deps, input.patientId, input.journeyId);
  if (!input.replacesId) return { journey, old: undefined };
  const old = await mustRead<Appointment>(deps.fhir, 'Appointment', input.replacesId);
  if (!old.participant.some((p) => p.actor?.reference === `Patient/${input.patientId}`))
    throw new CarewayError(
      'rule-violation',
      "rule replaces-other-patient: the appointment to replace is another patient's",
      { detailsCode: 'replaces-other-patient' },
    );
  return { journey, old };
}

/**
 * A `busy-tentative` Slot whose hold has expired is free: the hold carries its expiry, so a Slot stays bookable
 * even when its release job was lost (Redis restarted without persistence) or has not run yet. The write that
 * takes it over carries `If-Match`, so a release racing it fails the one or the other, never both.
 */
export function holdExpired(slot: Slot, at: Date): boolean {
  if (slot.status !== 'busy-tentative') return false;
  const h = holdOf(slot);
  return !!h && Date.parse(h.expires) <= at.getTime();
}

/** Slots this patient cannot book: neither free (or under an expired hold) nor under their own unexpired hold. */
function takenSlots(slots: readonly Slot[], patientRef: string, at: Date): Slot[] {
  return slots.filter((s) => {
    if (s.status === 'free' || holdExpired(s, at)) return false;
    const h = holdOf(s);
    return !(
      s.status === 'busy-tentative' &&
      h?.holder === patientRef &&
      Date.parse(h.expires) > at.getTime()
    );
  });
}

/**
 * Some Slots are taken: a replay of a booking that already happened finds it and returns it; anything else is
 * a 409 naming the first taken Slot.
 */
async function replayedBooking(
  deps: SchedulingDeps,
  input: BookInput,
  slots: readonly Slot[],
  taken: readonly Slot[],
): Promise<BookResult> {
  const existing = await deps.fhir.searchAll<Appointment>(
    'Appointment',
    { slot: `Slot/${slots[0]!.id}`, patient: `Patient/${input.patientId}`, status: ACTIVE.join(',') },
    { noCache: true, maxPages: 1 },
  );
  const same = existing.find((a) =>
    input.slotIds.every((id) => a.slot?.some((r) => r.reference === `Slot/${id}`)),
  );
  if (same) return { appointment: same, created: false };
  const s = taken[0]!;
  const heldByOther = s.status === 'busy-tentative';
  throw new CarewayError(
    'conflict',
    `Slot/${s.id} is ${heldByOther ? 'held for another patient' : `not free (${s.status})`}`,
    { detailsCode: heldByOther ? 'slot-held' : 'slot-taken' },
  );
}

/** The appointment to replace as it is now (under the locks): it must still be one that can be moved. */
async function stillReplaceable(deps: SchedulingDeps, old: Appointment): Promise<Appointment> {
  const current = await mustRead<Appointment>(deps.fhir, 'Appointment', old.id!);
  if (!['booked', 'pending', 'proposed', 'waitlist'].includes(current.status))
    throw new CarewayError(
      'rule-violation',
      `rule replaces-not-active: the appointment to replace is ${current.status}`,
      { detailsCode: 'replaces-not-active' },
    );
  return current;
}

/**
 * The new Appointment over the Slots: from the earliest start to the latest end, coded as the first Slot,
 * keyed on the Slots' ids and versions (so a replay is a conditional create that finds it).
 */
function bookedAppointment(
  input: BookInput,
  slots: readonly Slot[],
  actors: readonly Reference[],
  journey: EpisodeOfCare | undefined,
  replaced: Appointment | undefined,
  at: Date,
): Appointment {
  const starts = slots.map((s) => Date.parse(s.start));
  const ends = slots.map((s) => Date.parse(s.end));
  const first = slots[starts.indexOf(Math.min(...starts))]!;
  const last = slots[ends.indexOf(Math.max(...ends))]!;
  const participant: AppointmentParticipant[] = [
    // Staff booked it: the patient confirms later (a reminder reply); a patient who booked has confirmed.
    {
      actor: { reference: `Patient/${input.patientId}` },
      status: input.byPatient ? 'accepted' : 'needs-action',
    },
    ...actors.map((a) => ({ actor: a, status: 'accepted' as const })),
  ];
  const extension = [
    ...(journey ? [journeyLink(journey.id!)] : []),
    ...(replaced
      ? [
          {
            url: canonical.appointmentReplacesExtension,
            valueReference: { reference: `Appointment/${replaced.id}` },
          },
        ]
      : []),
  ];
  const appointmentType = input.appointmentType ?? first.appointmentType;
  return {
    resourceType: 'Appointment',
    identifier: [{ system: canonical.bookingSystem, value: bookingKey(slots) }],
    status: 'booked',
    ...(extension.length ? { extension } : {}),
    ...(first.serviceCategory ? { serviceCategory: first.serviceCategory } : {}),
    ...(first.serviceType ? { serviceType: first.serviceType } : {}),
    ...(first.specialty ? { specialty: first.specialty } : {}),
    ...(appointmentType ? { appointmentType } : {}),
    ...(input.description ? { description: input.description } : {}),
    start: first.start,
    end: last.end,
    created: at.toISOString(),
    slot: slots.map((s) => ({ reference: `Slot/${s.id}` })),
    ...(input.referralId ? { basedOn: [{ reference: `ServiceRequest/${input.referralId}` }] } : {}),
    participant,
  };
}

/**
 * One transaction for the whole booking: the Slots become busy, the Appointment is created (conditionally on
 * its key), and for a reschedule the old Appointment is cancelled and its other Slots freed; then the
 * Provenance. Every update carries If-Match. The Appointment is entry `slots.length`.
 */
function bookingTransaction(
  slots: readonly Slot[],
  appointment: Appointment,
  replaced: Appointment | undefined,
  oldSlots: readonly Slot[],
  actor: Actor,
  at: Date,
): Bundle {
  const urn = `urn:uuid:${crypto.randomUUID()}`;
  const key = bookingKey(slots);
  const entry: BundleEntry[] = [
    ...slots.map((s) => put(withHold(s, 'busy'), s.meta?.versionId ?? '')),
    {
      fullUrl: urn,
      resource: appointment,
      request: {
        method: 'POST',
        url: 'Appointment',
        ifNoneExist: new URLSearchParams({ identifier: `${canonical.bookingSystem}|${key}` }).toString(),
      },
    },
  ];
  if (replaced) {
    entry.push(
      put(
        { ...replaced, status: 'cancelled', cancelationReason: { text: 'Rescheduled' } },
        replaced.meta?.versionId ?? '',
      ),
      ...oldSlots
        .filter((s) => s.status !== 'free')
        .map((s) => put(withHold(s, 'free'), s.meta?.versionId ?? '')),
    );
  }
  entry.push({
    resource: withTargets(
      journeyProvenance({
        target: urn,
        at: at.toISOString(),
        actor,
        activity: 'CREATE',
        reason: replaced ? 'Rescheduled' : 'Booked',
        change: replaced ? `appointment:rescheduled-from:Appointment/${replaced.id}` : 'appointment:->booked',
      }),
      [
        ...slots.map((s) => `Slot/${s.id}`),
        ...(replaced ? [`Appointment/${replaced.id}`] : []),
        ...oldSlots.map((s) => `Slot/${s.id}`),
      ],
    ),
    request: { method: 'POST', url: 'Provenance' },
  });
  return { resourceType: 'Bundle', type: 'transaction', entry };
}

/** `$book` (and reschedule with `replacesId`). */
export async function book(deps: SchedulingDeps, input: BookInput, actor: Actor): Promise<BookResult> {
  if (input.slotIds.length === 0)
    throw new CarewayError('invalid-parameters', '$book: at least one "slot" is required');
  const { journey, old } = await checkBookingRequest(deps, input);
  const oldSlotIds = old ? slotIdsOf(old).filter((id) => !input.slotIds.includes(id)) : [];

  // Slots the reschedule freed go to the waitlist once the locks are released.
  let freed: string[] = [];
  const result = await withLocks(deps.lock, [...input.slotIds, ...oldSlotIds].map(slotKey), () =>
    retryOnSlotConflict(async (): Promise<BookResult> => {
      const slots = await readSlots(deps, input.slotIds);
      const at = now(deps);
      refusePast(slots, at);
      const taken = takenSlots(slots, `Patient/${input.patientId}`, at);
      if (taken.length) return replayedBooking(deps, input, slots, taken);
      const replaced = old ? await stillReplaceable(deps, old) : undefined;
      const oldSlots = await readSlots(deps, oldSlotIds);
      const actors = await actorsOf(deps, slots);
      const appointment = bookedAppointment(input, slots, actors, journey, replaced, at);
      const res = await deps.fhir.transaction(
        bookingTransaction(slots, appointment, replaced, oldSlots, actor, at),
      );
      const location = res.entry?.[slots.length]?.response?.location ?? '';
      const id = /Appointment\/([^/]+)/.exec(location)?.[1];
      if (!id) throw new CarewayError('internal', 'the FHIR server did not return the new appointment');
      const created = await deps.fhir.read<Appointment>('Appointment', id, { noCache: true });
      const after = replaced
        ? await deps.fhir.read<Appointment>('Appointment', replaced.id!, { noCache: true })
        : undefined;
      freed = oldSlots.filter((s) => s.status !== 'free').map((s) => s.id!);
      return { appointment: created, created: true, ...(after ? { replaced: after } : {}) };
    }),
  );
  await afterBooking(deps, result, journey, actor, freed);
  return result;
}

async function afterBooking(
  deps: SchedulingDeps,
  result: BookResult,
  journey: EpisodeOfCare | undefined,
  actor: Actor,
  freed: readonly string[],
): Promise<void> {
  if (!result.created) return;
  const a = result.appointment;
  if (journey)
    await deps.journeys.applyEvent(journey.id!, 'appointment-booked', actor, {
      reference: `Appointment/${a.id}`,
    });
  await deps.appointmentChanged(a.id!);
  if (result.replaced) await deps.appointmentChanged(result.replaced.id!);
  // A reschedule is one change for the EHR: the appointment it knows moved (the old one is not reported apart).
  await reportMade(deps, a, result.replaced ? 'rescheduled' : 'booked');
  for (const slotId of freed) await announceFree(deps, slotId);
}

/** Tells the waitlist about a freed Slot; the round is the Slot's version when it became free. */
export async function announceFree(deps: SchedulingDeps, slotId: string): Promise<void> {
  const slot = await deps.fhir.read<Slot>('Slot', slotId, { noCache: true });
  if (slot.status === 'free') await deps.slotFreed(slotId, `${slotId}-v${slot.meta?.versionId ?? '0'}`);
}

export interface CancelResult {
  readonly appointment: Appointment;
  readonly changed: boolean;
}

/**
 * `$cancel`: the Appointment becomes `cancelled` with the reason, and its Slots are freed, in one transaction.
 * With `confinedTo` (a patient token), only an appointment of that patient.
 */
export async function cancel(
  deps: SchedulingDeps,
  appointmentId: string,
  reason: string,
  actor: Actor,
  confinedTo?: string,
): Promise<CancelResult> {
  const first = await mustRead<Appointment>(deps.fhir, 'Appointment', appointmentId, 'not-found');
  if (confinedTo && !first.participant.some((x) => x.actor?.reference === `Patient/${confinedTo}`))
    throw new CarewayError(
      'outside-compartment',
      "this appointment is outside the token's patient compartment",
    );
  if (first.status === 'cancelled') return { appointment: first, changed: false };
  if (['fulfilled', 'noshow', 'entered-in-error', 'arrived', 'checked-in'].includes(first.status))
    throw new CarewayError(
      'rule-violation',
      `rule cancel-not-allowed: an appointment that is ${first.status} cannot be cancelled`,
      {
        detailsCode: 'cancel-not-allowed',
      },
    );
  const slotIds = slotIdsOf(first);
  const freed: string[] = [];
  let changed = false;
  const appointment = await withLocks(deps.lock, slotIds.map(slotKey), () =>
    retryOnSlotConflict(async () => {
      const a = await mustRead<Appointment>(deps.fhir, 'Appointment', appointmentId, 'not-found');
      if (a.status === 'cancelled') return a;
      const slots = (await readSlots(deps, slotIds)).filter((s) => s.status !== 'free');
      const at = now(deps).toISOString();
      await deps.fhir.transaction({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          put({ ...a, status: 'cancelled', cancelationReason: { text: reason } }, a.meta?.versionId ?? ''),
          ...slots.map((s) => put(withHold(s, 'free'), s.meta?.versionId ?? '')),
          {
            resource: withTargets(
              journeyProvenance({
                target: `Appointment/${a.id}`,
                at,
                actor,
                activity: 'UPDATE',
                reason,
                change: `appointment:${a.status}->cancelled`,
              }),
              slots.map((s) => `Slot/${s.id}`),
            ),
            request: { method: 'POST', url: 'Provenance' },
          },
        ],
      });
      freed.splice(0, freed.length, ...slots.map((s) => s.id!));
      changed = true;
      return deps.fhir.read<Appointment>('Appointment', appointmentId, { noCache: true });
    }),
  );
  if (!changed) return { appointment, changed };
  await deps.appointmentChanged(appointmentId);
  await reportMade(deps, appointment, 'cancelled');
  for (const id of freed) await announceFree(deps, id);
  return { appointment, changed };
}

export function slotIdsOf(a: Appointment): string[] {
  return (a.slot ?? [])
    .map((r) => /^Slot\/(.+)$/.exec(r.reference ?? '')?.[1])
    .filter((x): x is string => !!x);
}

/**
 * Releases a hold at its expiry (the `slot-holds` worker). Only the hold the job was made for is released: a
 * Slot that was booked, or held again since, is left alone. Returns the released hold (an expired waitlist
 * offer moves on to the next patient).
 */
export async function releaseHold(
  deps: SchedulingDeps,
  slotId: string,
  holdId: string,
): Promise<Hold | undefined> {
  let released: Hold | undefined;
  await withLocks(deps.lock, [slotKey(slotId)], () =>
    retryOnSlotConflict(async () => {
      const slot = await readIfExists<Slot>(deps.fhir, 'Slot', slotId);
      if (!slot) return;
      const h = holdOf(slot);
      if (slot.status !== 'busy-tentative' || h?.id !== holdId) return;
      const at = now(deps).toISOString();
      // An expired offer's staff Task (offer-tasks.ts) closes with it: the slot has moved on.
      const staffTask =
        h.offer && h.round
          ? await closeOfferTask(
              deps.fhir,
              h.round,
              h.holder,
              'cancelled',
              'The offer expired unanswered; the slot went to the next patient on the waitlist',
              at,
            )
          : undefined;
      const provenance = journeyProvenance({
        target: `Slot/${slot.id}`,
        at,
        actor: SYSTEM_ACTOR,
        activity: 'UPDATE',
        reason: h.offer ? 'Waitlist offer expired' : 'Hold expired',
        change: 'slot:busy-tentative->free',
        ...(h.offer ? { trigger: { reference: h.offer } } : {}),
      });
      await deps.fhir.transaction({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          put(withHold(slot, 'free'), slot.meta?.versionId ?? ''),
          ...(staffTask ? [staffTask.entry] : []),
          {
            resource: staffTask
              ? { ...provenance, target: [...provenance.target, { reference: staffTask.target }] }
              : provenance,
            request: { method: 'POST', url: 'Provenance' },
          },
        ],
      });
      released = h;
    }),
  );
  return released;
}

/**
 * A hold's expiry: releases it (if it still stands) and hands an expired waitlist offer's Slot to the next
 * patient of its round. The `slot-holds` job at the expiry and the sweep below both end here.
 */
export async function expireHold(
  deps: SchedulingDeps,
  slotId: string,
  holdId: string,
): Promise<'released' | 'stale'> {
  const released = await releaseHold(deps, slotId, holdId);
  if (!released) return 'stale';
  if (released.offer) {
    deps.metrics?.expired();
    if (released.round) await deps.slotFreed(slotId, released.round, holdId);
  }
  return 'released';
}

/**
 * Frees the Slots whose hold has expired and is still on them: the safety net for release jobs Redis lost.
 * Runs with the no-show sweep. Returns the ids of the Slots it freed. Slots that started over a day ago are left
 * (nobody can book them any more), which keeps each sweep bounded.
 */
export async function sweepExpiredHolds(deps: SchedulingDeps, limit = 200): Promise<string[]> {
  const at = now(deps);
  const held = await deps.fhir.searchAll<Slot>(
    'Slot',
    { status: 'busy-tentative', start: `ge${new Date(at.getTime() - 86400_000).toISOString()}`, _count: 100 },
    { noCache: true, maxPages: Math.ceil(limit / 100) },
  );
  const freed: string[] = [];
  for (const slot of held.slice(0, limit)) {
    const h = holdOf(slot);
    if (!slot.id || !h || !holdExpired(slot, at)) continue;
    if ((await expireHold(deps, slot.id, h.id)) === 'released') freed.push(slot.id);
  }
  return freed;
}

const NO_SHOW_TASK_CODE = 'no-show-follow-up';
const NO_SHOW_LOOKBACK_MS = 7 * 86400_000;

/** The no-show follow-up Task for the care team, keyed on the appointment (created once). */
function followUpTask(
  a: Appointment,
  journeyRef: string | undefined,
  owner: Reference | undefined,
  at: string,
): BundleEntry {
  const patient = a.participant.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor;
  const task: Task = {
    resourceType: 'Task',
    identifier: [{ system: canonical.noShowTaskSystem, value: a.id! }],
    status: 'requested',
    intent: 'order',
    priority: 'routine',
    code: {
      coding: [
        { system: canonical.taskCode, code: NO_SHOW_TASK_CODE, display: 'Follow up a missed appointment' },
      ],
    },
    description: 'The patient did not attend; contact them and rebook.',
    focus: { reference: `Appointment/${a.id}` },
    ...(patient ? { for: patient } : {}),
    ...(owner ? { owner } : {}),
    authoredOn: at,
    ...(journeyRef
      ? {
          extension: [
            { url: canonical.journeyReferenceExtension, valueReference: { reference: journeyRef } },
          ],
        }
      : {}),
  };
  return {
    resource: task,
    request: {
      method: 'POST',
      url: 'Task',
      ifNoneExist: new URLSearchParams({ identifier: `${canonical.noShowTaskSystem}|${a.id}` }).toString(),
    },
  };
}

async function ownerFor(
  deps: SchedulingDeps,
  a: Appointment,
  journeyRef: string | undefined,
): Promise<Reference | undefined> {
  if (journeyRef) {
    try {
      const j = await deps.fhir.read<EpisodeOfCare>(
        'EpisodeOfCare',
        journeyRef.replace(/^EpisodeOfCare\//, ''),
        { noCache: true },
      );
      if (j.careManager) return j.careManager;
      if (j.team?.[0]) return j.team[0];
    } catch {
      // A journey that cannot be read leaves the Task to the practitioner below.
    }
  }
  return a.participant.find((p) => p.actor?.reference?.startsWith('Practitioner/'))?.actor;
}

const journeyOfAppointment = (a: Appointment): string | undefined =>
  a.extension?.find((x) => x.url === canonical.journeyReferenceExtension)?.valueReference?.reference;

/**
 * Marks a no-show: the Appointment becomes `noshow` (already `noshow`, e.g. from SIU S26, is kept) and a
 * follow-up Task goes to the care team, in one transaction. The timeline shows the pain point. `reported`: the
 * no-show came from elsewhere (SIU S26), so it is not Careway's change to report back.
 */
export async function markNoShow(
  deps: SchedulingDeps,
  appointmentId: string,
  actor: Actor,
  why: string,
  reported = false,
): Promise<{ appointment: Appointment; changed: boolean }> {
  let changed = false;
  let statusMoved = false;
  const appointment = await retryOnSlotConflict(async () => {
    const a = await mustRead<Appointment>(deps.fhir, 'Appointment', appointmentId, 'not-found');
    if (a.status !== 'noshow' && !['booked', 'pending', 'proposed'].includes(a.status))
      throw new CarewayError(
        'rule-violation',
        `rule noshow-not-allowed: an appointment that is ${a.status} cannot become a no-show`,
        {
          detailsCode: 'noshow-not-allowed',
        },
      );
    const journeyRef = journeyOfAppointment(a);
    const at = now(deps).toISOString();
    const owner = await ownerFor(deps, a, journeyRef);
    const entry: BundleEntry[] = [followUpTask(a, journeyRef, owner, at)];
    if (a.status !== 'noshow') {
      entry.unshift(put({ ...a, status: 'noshow' }, a.meta?.versionId ?? ''));
      entry.push({
        resource: journeyProvenance({
          target: `Appointment/${a.id}`,
          at,
          actor,
          activity: 'UPDATE',
          reason: why,
          change: `appointment:${a.status}->noshow`,
        }),
        request: { method: 'POST', url: 'Provenance' },
      });
    }
    const res = await deps.fhir.transaction({ resourceType: 'Bundle', type: 'transaction', entry });
    // Changed when the status moved, or when the Task is new (a replayed S26 finds it and changes nothing).
    const taskIndex = a.status !== 'noshow' ? 1 : 0;
    changed = a.status !== 'noshow' || !!res.entry?.[taskIndex]?.response?.status?.startsWith('201');
    statusMoved = a.status !== 'noshow';
    return deps.fhir.read<Appointment>('Appointment', appointmentId, { noCache: true });
  });
  if (changed) {
    deps.metrics?.noShow();
    await deps.appointmentChanged(appointmentId);
  }
  if (statusMoved && !reported) await reportMade(deps, appointment, 'noshow');
  return { appointment, changed };
}

/**
 * The no-show sweep: booked appointments whose end (plus the grace period) has passed, with no sign of
 * arrival (no Encounter for the appointment), become no-shows. Returns the ids it marked.
 */
export async function sweepNoShows(deps: SchedulingDeps, limit = 200): Promise<string[]> {
  const cutoff = now(deps).getTime() - deps.noShowGraceMs;
  // A week back is plenty for a sweep that runs every few minutes, and keeps each sweep bounded.
  const since = cutoff - NO_SHOW_LOOKBACK_MS;
  const due = await deps.fhir.searchAll<Appointment>(
    'Appointment',
    {
      status: 'booked',
      date: [`ge${new Date(since).toISOString()}`, `lt${new Date(cutoff).toISOString()}`],
      _sort: 'date',
      _count: 100,
    },
    { noCache: true, maxPages: Math.ceil(limit / 100) },
  );
  const marked: string[] = [];
  for (const a of due.slice(0, limit)) {
    const endMs = Date.parse(a.end ?? a.start ?? '');
    if (!Number.isFinite(endMs) || endMs > cutoff) continue;
    const arrivals = await deps.fhir.search<Encounter>(
      'Encounter',
      { appointment: `Appointment/${a.id}`, _summary: 'count' },
      { noCache: true },
    );
    if ((arrivals.total ?? 0) > 0) continue;
    const r = await markNoShow(
      deps,
      a.id!,
      SYSTEM_ACTOR,
      'No arrival recorded by the end of the appointment',
    );
    if (r.changed) marked.push(a.id!);
  }
  return marked;
}
