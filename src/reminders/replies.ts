/**
 * Inbound replies (SMS through the provider's webhook, e-mail through the same interface), answering the last
 * message Careway sent the patient:
 * - "C", "YES", "CONFIRM" (and the same in German) confirm a reminded appointment: the patient participant
 *   becomes `accepted`, with an AppointmentResponse; to a waitlist offer they accept it (the Slot is booked);
 * - "N", "NO", "CANCEL" cancel the appointment (the Slot frees and goes to the waitlist);
 * - anything else goes to the care team: the reply is a Communication, and a Task lands in their inbox.
 * Every reply is kept as a Communication (`inResponseTo` the message it answers), keyed on the provider's message
 * id, so a webhook delivered twice acts once.
 */
import type { Appointment, AppointmentResponse, Communication, Patient, Task } from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import type { FhirPort } from '../fhir/client.js';
import { retryOnConflict } from '../fhir/conflicts.js';
import { readIfExists } from '../fhir/reads.js';

export type Intent = 'confirm' | 'cancel' | 'other';

const CONFIRM = new Set(['C', 'Y', 'YES', 'CONFIRM', 'CONFIRMED', 'OK', 'J', 'JA', 'BESTÄTIGEN']);
const CANCEL = new Set(['N', 'NO', 'CANCEL', 'NEIN', 'ABSAGEN', 'STORNO']);

export function intentOf(text: string): Intent {
  const word = (text.trim().split(/\s+/)[0] ?? '').replace(/[^\p{L}]/gu, '').toUpperCase();
  if (CONFIRM.has(word)) return 'confirm';
  if (CANCEL.has(word)) return 'cancel';
  return 'other';
}

export interface InboundReply {
  readonly channel: 'sms' | 'email';
  /** Phone number or e-mail address of the sender. */
  readonly from: string;
  readonly text: string;
  /** The provider's id for the message (deduplication). */
  readonly messageId: string;
}

export type ReplyOutcome =
  | 'confirmed'
  | 'cancelled'
  | 'offer-accepted'
  | 'offer-declined'
  | 'forwarded-to-care-team'
  | 'unknown-sender'
  | 'duplicate';

export interface ReplyDeps {
  readonly fhir: FhirPort;
  cancelAppointment(appointmentId: string, reason: string): Promise<void>;
  acceptOffer(communicationId: string): Promise<void>;
  readonly clock?: () => Date;
}

const OUTBOUND = ['reminder', 'waitlist-offer'];

export async function handleReply(deps: ReplyDeps, reply: InboundReply): Promise<ReplyOutcome> {
  const now = (deps.clock ?? (() => new Date()))().toISOString();
  const patients = await deps.fhir.searchAll<Patient>(
    'Patient',
    { telecom: reply.from, _count: 2 },
    { noCache: true, maxPages: 1 },
  );
  // No match, or an address shared by several patients: nobody is acted for (an ambiguous reply is not guessed).
  if (patients.length !== 1) return 'unknown-sender';
  const patient = patients[0]!;
  const patientRef = `Patient/${patient.id}`;
  const [last] = await deps.fhir.searchAll<Communication>(
    'Communication',
    {
      recipient: patientRef,
      category: OUTBOUND.map((c) => `${canonical.communicationCategory}|${c}`).join(','),
      status: 'completed',
      _sort: '-sent',
      _count: 1,
    },
    { noCache: true, maxPages: 1 },
  );
  const kind = last?.category
    ?.flatMap((c) => c.coding ?? [])
    .find((c) => OUTBOUND.includes(c.code ?? ''))?.code;
  const appointmentId = last?.about
    ?.map((r) => /^Appointment\/(.+)$/.exec(r.reference ?? '')?.[1])
    .find(Boolean);
  const intent = intentOf(reply.text);

  const inbound: Communication = {
    resourceType: 'Communication',
    identifier: [{ system: canonical.inboundMessageSystem, value: `${reply.channel}|${reply.messageId}` }],
    status: 'completed',
    category: [
      {
        coding: [
          { system: canonical.communicationCategory, code: 'patient-reply', display: 'Patient reply' },
        ],
      },
    ],
    medium: [
      {
        coding: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationMode',
            code: reply.channel === 'sms' ? 'SMSWRIT' : 'EMAILWRIT',
          },
        ],
      },
    ],
    subject: { reference: patientRef },
    sender: { reference: patientRef },
    ...(last ? { inResponseTo: [{ reference: `Communication/${last.id}` }] } : {}),
    ...(appointmentId ? { about: [{ reference: `Appointment/${appointmentId}` }] } : {}),
    received: now,
    payload: [{ contentString: reply.text.slice(0, 1600) }],
    ...(last?.extension?.length
      ? { extension: last.extension.filter((x) => x.url === canonical.journeyReferenceExtension) }
      : {}),
  };
  const written = await deps.fhir.create<Communication>(inbound, {
    ifNoneExist: { identifier: `${canonical.inboundMessageSystem}|${reply.channel}|${reply.messageId}` },
  });
  if (written.outcome !== 'created') return 'duplicate';
  const inboundId = written.resource.id!;

  if (kind === 'waitlist-offer' && last && intent !== 'other') {
    if (intent === 'confirm') {
      // The offer itself, or the SMS/e-mail notification about it (which points at the offer).
      const offerId =
        last.about?.map((r) => /^Communication\/(.+)$/.exec(r.reference ?? '')?.[1]).find(Boolean) ??
        last.id!;
      await deps.acceptOffer(offerId);
      return 'offer-accepted';
    }
    return 'offer-declined';
  }
  if (kind === 'reminder' && appointmentId && intent === 'confirm') {
    await confirm(deps.fhir, appointmentId, patientRef);
    return 'confirmed';
  }
  if (kind === 'reminder' && appointmentId && intent === 'cancel') {
    await deps.cancelAppointment(appointmentId, 'Cancelled by the patient (reply)');
    return 'cancelled';
  }
  await forward(deps.fhir, inboundId, patientRef, appointmentId, now, inbound.extension);
  return 'forwarded-to-care-team';
}

/** The patient participant becomes accepted (If-Match, retried on a conflict) and an AppointmentResponse says so. */
async function confirm(fhir: FhirPort, appointmentId: string, patientRef: string): Promise<void> {
  await retryOnConflict(async () => {
    const a = await fhir.read<Appointment>('Appointment', appointmentId, { noCache: true });
    const participant = a.participant.map((p) =>
      p.actor?.reference === patientRef ? { ...p, status: 'accepted' as const } : p,
    );
    const updated: Appointment = { ...a, participant };
    const response: AppointmentResponse = {
      resourceType: 'AppointmentResponse',
      appointment: { reference: `Appointment/${appointmentId}` },
      actor: { reference: patientRef },
      participantStatus: 'accepted',
      comment: 'Confirmed by reply',
      start: a.start,
      end: a.end,
    };
    await fhir.transaction({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          resource: updated,
          request: {
            method: 'PUT',
            url: `Appointment/${appointmentId}`,
            ifMatch: `W/"${a.meta?.versionId ?? ''}"`,
          },
        },
        { resource: response, request: { method: 'POST', url: 'AppointmentResponse' } },
      ],
    });
  });
}

/** Anything else goes to the care team: a Task in their inbox pointing at the reply. */
async function forward(
  fhir: FhirPort,
  communicationId: string,
  patientRef: string,
  appointmentId: string | undefined,
  now: string,
  /** The journey link the reply carries: the Task shows on that journey's board card and in the worklist. */
  journey: Communication['extension'],
): Promise<void> {
  let owner: Task['owner'];
  if (appointmentId) {
    const a = await readIfExists<Appointment>(fhir, 'Appointment', appointmentId);
    owner = a?.participant.find((p) => p.actor?.reference?.startsWith('Practitioner/'))?.actor;
  }
  const task: Task = {
    resourceType: 'Task',
    status: 'requested',
    intent: 'order',
    code: {
      coding: [{ system: canonical.taskCode, code: 'answer-patient', display: 'Answer a patient message' }],
    },
    description: 'The patient replied to a message; read and answer it.',
    focus: { reference: `Communication/${communicationId}` },
    for: { reference: patientRef },
    ...(owner ? { owner } : {}),
    authoredOn: now,
    ...(journey?.length ? { extension: journey } : {}),
  };
  await fhir.create<Task>(task, { ifNoneExist: { focus: `Communication/${communicationId}` } });
}
