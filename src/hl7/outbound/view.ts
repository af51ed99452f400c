/**
 * The view an outbound message is mapped from: the Appointment as it is on the FHIR server when the message is
 * sent, with the resources its segments name (the patient, the practitioners, the locations), read fresh. The
 * queue job holds ids only; everything a message says about the patient comes from here, at send time.
 *
 * Appointment ids as the EHR sees them:
 * - `ids.placer` (SCH-1) is the id of the first Appointment of a reschedule chain (each rebooking points at the
 *   one it replaced with the `appointment-replaces` extension), so S12, S14 and S15 name one appointment;
 * - `ids.filler` (SCH-2) is the first identifier along that chain that is not Careway's booking key: the id the
 *   EHR itself gave an appointment it sent over SIU, which Careway then cancelled or moved.
 */
import type {
  Appointment,
  AppointmentParticipant,
  Identifier,
  Location,
  Patient,
  Practitioner,
} from 'fhir/r4.js';
import type { FhirPort } from '../../fhir/client.js';
import { canonical } from '../../fhir/canonical.js';
import { readIfExists } from '../../fhir/reads.js';

/** How far back a reschedule chain is followed (each step is one read). */
const MAX_CHAIN = 20;

export interface OutboundHeader {
  readonly sendingApplication: string;
  readonly sendingFacility: string;
  readonly receivingApplication: string;
  readonly receivingFacility: string;
  /** MSH-7, a FHIR instant. */
  readonly time: string;
  readonly controlId: string;
}

export interface OutboundView {
  readonly header: OutboundHeader;
  readonly change: string;
  readonly appointment: Appointment;
  readonly timing: { readonly start?: string; readonly end?: string; readonly minutes?: number };
  readonly ids: {
    readonly placer: { readonly value: string; readonly namespace: string };
    readonly filler?: Identifier;
  };
  readonly patient?: Patient;
  readonly practitioners: readonly { resource: Practitioner; participant: AppointmentParticipant }[];
  readonly locations: readonly { resource: Location; participant: AppointmentParticipant }[];
  readonly [key: string]: unknown;
}

const replacedBy = (a: Appointment): string | undefined =>
  a.extension
    ?.find((x) => x.url === canonical.appointmentReplacesExtension)
    ?.valueReference?.reference?.replace(/^Appointment\//, '');

function minutesOf(a: Appointment): number | undefined {
  if (a.minutesDuration) return a.minutesDuration;
  if (!a.start || !a.end) return undefined;
  const ms = Date.parse(a.end) - Date.parse(a.start);
  return Number.isFinite(ms) && ms > 0 ? Math.round(ms / 60_000) : undefined;
}

async function participants<T extends Practitioner | Location>(
  fhir: FhirPort,
  a: Appointment,
  type: T['resourceType'],
): Promise<{ resource: T; participant: AppointmentParticipant }[]> {
  const prefix = `${type}/`;
  const found = await Promise.all(
    a.participant
      .filter((p) => p.actor?.reference?.startsWith(prefix))
      .map(async (participant) => {
        const resource = await readIfExists<T>(
          fhir,
          type,
          participant.actor!.reference!.slice(prefix.length),
        );
        return resource ? { resource, participant } : undefined;
      }),
  );
  return found.filter((x): x is { resource: T; participant: AppointmentParticipant } => !!x);
}

/**
 * Reads what the message needs; `undefined` when the Appointment no longer exists (deleted on the server, so
 * there is nothing left to describe).
 */
export async function buildView(
  fhir: FhirPort,
  appointmentId: string,
  change: string,
  header: OutboundHeader,
): Promise<OutboundView | undefined> {
  const appointment = await readIfExists<Appointment>(fhir, 'Appointment', appointmentId);
  if (!appointment) return undefined;
  let root = appointment;
  const chain = [appointment];
  for (let prev = replacedBy(root); prev && chain.length < MAX_CHAIN; prev = replacedBy(root)) {
    const older = await readIfExists<Appointment>(fhir, 'Appointment', prev);
    if (!older || chain.some((c) => c.id === older.id)) break;
    chain.push(older);
    root = older;
  }
  const filler = chain
    .flatMap((c) => c.identifier ?? [])
    .find((i) => i.system !== canonical.bookingSystem && !!i.value);
  const patientRef = appointment.participant.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor
    ?.reference;
  const [patient, practitioners, locations] = await Promise.all([
    patientRef ? readIfExists<Patient>(fhir, 'Patient', patientRef.slice('Patient/'.length)) : undefined,
    participants<Practitioner>(fhir, appointment, 'Practitioner'),
    participants<Location>(fhir, appointment, 'Location'),
  ]);
  const minutes = minutesOf(appointment);
  return {
    header,
    change,
    appointment,
    timing: {
      ...(appointment.start ? { start: appointment.start } : {}),
      ...(appointment.end ? { end: appointment.end } : {}),
      ...(minutes !== undefined ? { minutes } : {}),
    },
    ids: {
      placer: { value: root.id!, namespace: header.sendingApplication },
      ...(filler ? { filler } : {}),
    },
    ...(patient ? { patient } : {}),
    practitioners,
    locations,
  };
}
