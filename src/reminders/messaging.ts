/**
 * Secure messaging: threads of Communications (`inResponseTo`) between a patient and their care team, posted
 * through the facade. A patient writes only as themselves, only about themselves, and only to the care team;
 * staff write to the patient. Each new message notifies its recipients on their own channel, and the
 * notification says only that there is a message: the content stays behind the portal's login.
 *
 * A message carries the client's identifier, and posting is conditional on it, so a retry posts nothing new.
 */
import type { Communication, Reference } from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import type { FhirPort } from '../fhir/client.js';
import { readIfExists } from '../fhir/reads.js';
import { CarewayError } from '../shared/errors.js';

export interface Author {
  /** Set for a patient-context token: the patient it acts for. */
  readonly patient?: string;
  /** The SMART fhirUser (`Practitioner/1`), for staff. */
  readonly fhirUser?: string;
}

export interface MessagingDeps {
  readonly fhir: FhirPort;
  notify(recipient: string, communicationId: string): Promise<void>;
  readonly clock?: () => Date;
}

const STAFF = /^(Practitioner|PractitionerRole|CareTeam|Organization)\/[A-Za-z0-9\-.]{1,64}$/;
const PATIENT = /^Patient\/([A-Za-z0-9\-.]{1,64})$/;

export async function postMessage(
  deps: MessagingDeps,
  body: unknown,
  author: Author,
): Promise<{ communication: Communication; created: boolean }> {
  const c = body as Communication;
  const problems: string[] = [];
  if (c?.resourceType !== 'Communication')
    throw new CarewayError('invalid-parameters', 'the body must be a Communication');
  const text = c.payload?.[0]?.contentString;
  if (!text?.trim()) problems.push('payload[0].contentString (the message) is required');
  else if (text.length > 10_000) problems.push('the message may be at most 10,000 characters');
  const id = c.identifier?.find((i) => i.system && i.value);
  if (!id)
    problems.push(
      "identifier (system and value: the client's message id) is required, so a retry does not post twice",
    );
  const subject = PATIENT.exec(c.subject?.reference ?? '')?.[1];
  if (!subject) problems.push('subject must reference Patient/{id}');
  const recipients = (c.recipient ?? []).map((r) => r.reference ?? '');
  if (author.patient) {
    if (recipients.length === 0 || !recipients.every((r) => STAFF.test(r)))
      problems.push(
        'recipient must be the care team (Practitioner, PractitionerRole, CareTeam or Organization)',
      );
  } else if (recipients.some((r) => !STAFF.test(r) && !PATIENT.test(r))) {
    problems.push('recipient must be the patient or the care team');
  }
  if (problems.length) throw new CarewayError('invalid-parameters', `Communication: ${problems.join('; ')}`);
  if (author.patient && subject !== author.patient)
    throw new CarewayError('outside-compartment', 'a patient can only write about themselves');

  // A reply must stay in its thread: the message it answers is about the same patient.
  let journey = c.extension?.find((x) => x.url === canonical.journeyReferenceExtension);
  for (const r of c.inResponseTo ?? []) {
    const parentId = /^Communication\/([A-Za-z0-9\-.]{1,64})$/.exec(r.reference ?? '')?.[1];
    const parent = parentId
      ? await readIfExists<Communication>(deps.fhir, 'Communication', parentId)
      : undefined;
    if (!parent || parent.subject?.reference !== `Patient/${subject}`)
      throw new CarewayError(
        'unknown-reference',
        "inResponseTo must reference a message in this patient's threads",
      );
    journey ??= parent.extension?.find((x) => x.url === canonical.journeyReferenceExtension);
  }
  const sender: Reference = author.patient
    ? { reference: `Patient/${author.patient}` }
    : author.fhirUser && STAFF.test(author.fhirUser)
      ? { reference: author.fhirUser }
      : (c.sender ?? {});
  const message: Communication = {
    resourceType: 'Communication',
    identifier: [id!],
    status: 'completed',
    category: [
      { coding: [{ system: canonical.communicationCategory, code: 'message', display: 'Secure message' }] },
    ],
    subject: { reference: `Patient/${subject}` },
    ...(sender.reference ? { sender } : {}),
    recipient: recipients.length
      ? recipients.map((reference) => ({ reference }))
      : [{ reference: `Patient/${subject}` }],
    ...(c.inResponseTo?.length ? { inResponseTo: c.inResponseTo } : {}),
    ...(c.topic ? { topic: c.topic } : {}),
    sent: (deps.clock ?? (() => new Date()))().toISOString(),
    payload: [{ contentString: text! }],
    ...(journey ? { extension: [journey] } : {}),
  };
  const written = await deps.fhir.create<Communication>(message, {
    ifNoneExist: { identifier: `${id!.system}|${id!.value}` },
  });
  const created = written.outcome === 'created';
  if (created)
    for (const r of message.recipient ?? [])
      if (r.reference) await deps.notify(r.reference, written.resource.id!);
  return { communication: written.resource, created };
}
