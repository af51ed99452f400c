/**
 * The waitlist offers that need a person: a `waitlist-offer` Task for the care team when Careway cannot tell the
 * patient about an offer on their own channel (no usable mobile number or e-mail on a channel this site has, or
 * they opted out of those). The portal Communication alone is unlikely to be seen before the hold expires, so a
 * scheduler phones them and, if they want the slot, accepts it for them (`$accept-offer` with the offer).
 *
 * Invariants:
 * - The Task is created in the offer's own transaction, conditional on the offer's key (`<round>/Patient/<id>`,
 *   the same key as the offer Communication): a replayed offer job creates nothing more.
 * - It closes when the offer resolves, in the same transaction as the resolution: `completed` when the offer
 *   is accepted (by the patient or for them), `cancelled` when the hold expires and the Slot moves on. A Task the
 *   team completed or closed already is left as it is.
 * - Staff may also `$complete` it themselves (journey/tasks.ts): "phoned, they do not want it".
 */
import type { Appointment, BundleEntry, ContactPoint, Patient, Reference, Task } from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import type { FhirPort } from '../fhir/client.js';
import { OPEN_TASK_STATUSES } from '../journey/board.js';

export const OFFER_TASK_CODE = 'waitlist-offer';
/** The channels besides the portal that Careway can tell a patient on. */
export type OutsideChannel = 'sms' | 'email';

const offerTaskKey = (round: string, patient: string): string => `${round}/${patient}`;

function current(t: ContactPoint, nowMs: number): boolean {
  return !!t.value && (!t.period?.end || Date.parse(t.period.end) > nowMs);
}

/**
 * Whether the patient can be told outside the portal: the same reading as the reminders' channel choice
 * (reminders/contact.ts): a current mobile or SMS number when SMS is configured, or an e-mail address when
 * e-mail is, neither opted out.
 */
export function reachableOutsidePortal(
  patient: Patient | undefined,
  channels: ReadonlySet<OutsideChannel>,
  nowMs: number,
): boolean {
  if (!patient) return false;
  const out = new Set(
    (patient.extension ?? [])
      .filter((x) => x.url === canonical.engagementOptOutExtension && x.valueCode)
      .map((x) => x.valueCode!),
  );
  if (out.has('all')) return false;
  return (patient.telecom ?? []).some((t) => {
    if (!current(t, nowMs)) return false;
    const sms = t.system === 'sms' || (t.system === 'phone' && t.use === 'mobile');
    return (
      (sms && channels.has('sms') && !out.has('sms')) ||
      (t.system === 'email' && channels.has('email') && !out.has('email'))
    );
  });
}

/** The Task for an offer the patient cannot be told about, created with the offer (conditional on its key). */
export function offerTaskEntry(o: {
  readonly offer: string;
  readonly entry: Appointment;
  readonly patient: string;
  readonly round: string;
  readonly expires: string;
  readonly at: string;
  readonly owner?: Reference;
}): BundleEntry {
  const journey = o.entry.extension?.find(
    (x) => x.url === canonical.journeyReferenceExtension,
  )?.valueReference;
  const key = offerTaskKey(o.round, o.patient);
  const task: Task = {
    resourceType: 'Task',
    identifier: [{ system: canonical.waitlistOfferTaskSystem, value: key }],
    status: 'requested',
    intent: 'order',
    // The slot goes to the next patient at the hold's expiry: this cannot wait for tomorrow.
    priority: 'urgent',
    code: {
      coding: [
        { system: canonical.taskCode, code: OFFER_TASK_CODE, display: 'Waitlist offer to phone through' },
      ],
    },
    description:
      'An earlier slot is held for this patient, who cannot be told by SMS or e-mail: phone them, and accept the offer for them if they want it, before it expires.',
    focus: { reference: o.offer },
    basedOn: [{ reference: `Appointment/${o.entry.id}` }],
    for: { reference: o.patient },
    ...(o.owner ? { owner: o.owner } : {}),
    authoredOn: o.at,
    restriction: { period: { end: o.expires } },
    ...(journey?.reference
      ? {
          extension: [
            { url: canonical.journeyReferenceExtension, valueReference: { reference: journey.reference } },
          ],
        }
      : {}),
  };
  return {
    resource: task,
    request: {
      method: 'POST',
      url: 'Task',
      ifNoneExist: new URLSearchParams({
        identifier: `${canonical.waitlistOfferTaskSystem}|${key}`,
      }).toString(),
    },
  };
}

/**
 * The versioned update that closes the offer's Task, when there is one still open (else nothing): for the
 * transaction that resolves the offer. A Task changed between this read and that transaction fails the
 * transaction's If-Match, and the caller's conflict retry reads again.
 */
export async function closeOfferTask(
  fhir: FhirPort,
  round: string,
  patient: string,
  status: 'completed' | 'cancelled',
  reason: string,
  at: string,
): Promise<{ entry: BundleEntry; target: string } | undefined> {
  const [task] = await fhir.searchAll<Task>(
    'Task',
    { identifier: `${canonical.waitlistOfferTaskSystem}|${offerTaskKey(round, patient)}`, _count: 1 },
    { noCache: true, maxPages: 1 },
  );
  if (!task?.id || !OPEN_TASK_STATUSES.includes(task.status)) return undefined;
  const { meta, ...rest } = task;
  const next: Task = {
    ...rest,
    status,
    statusReason: { text: reason },
    lastModified: at,
    ...(status === 'completed' ? { executionPeriod: { ...task.executionPeriod, end: at } } : {}),
  };
  return {
    entry: {
      resource: next,
      request: { method: 'PUT', url: `Task/${task.id}`, ifMatch: `W/"${meta?.versionId ?? ''}"` },
    },
    target: `Task/${task.id}`,
  };
}
