/**
 * The scheduling use cases behind one object, for the routes and the HL7 hook. Each method is a thin call
 * into availability.ts, booking.ts, occupancy.ts or waitlist.ts with the shared dependencies.
 */
import type { Appointment } from 'fhir/r4.js';
import type { Actor } from '../journey/provenance.js';
import type { SchedulingDeps } from './context.js';
import { findAppointments, generateScheduleSlots, setPreferences, type FindInput } from './availability.js';
import { appointmentChangedElsewhere } from './occupancy.js';
import {
  book,
  cancel,
  hold,
  markNoShow,
  sweepExpiredHolds,
  sweepNoShows,
  type BookInput,
} from './booking.js';
import { acceptOffer, waitlistFor } from './waitlist.js';
import type { SlotTemplate } from './slots.js';
import type { Preferences } from './ranking.js';

export class SchedulingService {
  constructor(readonly deps: SchedulingDeps) {}

  generateSlots(scheduleId: string, template: Omit<SlotTemplate, 'zone'>) {
    return generateScheduleSlots(this.deps, scheduleId, template);
  }

  find(input: FindInput) {
    return findAppointments(this.deps, input);
  }

  setPreferences(type: 'Patient' | 'EpisodeOfCare', id: string, prefs: Preferences, confinedTo?: string) {
    return setPreferences(this.deps, type, id, prefs, confinedTo);
  }

  hold(slotIds: readonly string[], patientId: string, actor: Actor) {
    return hold(this.deps, slotIds, patientId, actor);
  }

  book(input: BookInput, actor: Actor) {
    return book(this.deps, input, actor);
  }

  cancel(appointmentId: string, reason: string, actor: Actor, confinedTo?: string) {
    return cancel(this.deps, appointmentId, reason, actor, confinedTo);
  }

  markNoShow(appointmentId: string, actor: Actor) {
    return markNoShow(this.deps, appointmentId, actor, 'Marked as a no-show');
  }

  sweepNoShows() {
    return sweepNoShows(this.deps);
  }

  /** Frees Slots whose hold expired (the no-show sweep runs it too): the ids of the Slots freed. */
  sweepExpiredHolds() {
    return sweepExpiredHolds(this.deps);
  }

  acceptOffer(communicationId: string, actor: Actor, confinedTo?: string) {
    return acceptOffer(this.deps, communicationId, actor, confinedTo);
  }

  async waitlist(serviceTypes: readonly string[]): Promise<Appointment[]> {
    return (await waitlistFor(this.deps, serviceTypes)).entries;
  }

  /** An Appointment was written outside the booking operations (HL7 SIU): react as to any outside change. */
  appointmentWrittenElsewhere(appointment: Appointment): Promise<void> {
    return appointmentChangedElsewhere(this.deps, appointment);
  }
}
