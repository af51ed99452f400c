/**
 * Reminders: planning (on every Appointment change) and sending (when a reminder falls due).
 *
 * Planning re-reads the Appointment and computes the plan (plan.ts). Each reminder is a delayed BullMQ job
 * whose id is the appointment, the offset and the start, so an unchanged appointment re-plans to the same jobs
 * (nothing new), a moved one gets new jobs and loses the old ones, and a cancelled one loses them all. Staff see
 * the plan as CommunicationRequests (active while planned, revoked when re-planned away, completed once sent).
 *
 * Sending re-reads the Appointment (with its Patient) first: nothing goes out for a cancelled, moved or past
 * appointment. The send ledger makes each reminder go out once (ledger.ts): a send is recorded in Redis the
 * moment the provider accepts it, before the write-back, and a run that finds it recorded only queues the
 * write-back again. Every
 * attempt writes back a Communication, `completed` or `not-done` with the reason, through a durable queue
 * (writeback-worker.ts): the send does not wait for the FHIR server's transaction.
 */
import type {
  Appointment,
  CarePlan,
  BundleEntry,
  Communication,
  CommunicationRequest,
  Location,
  Patient,
  Practitioner,
  Resource,
  Slot,
} from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import type { FhirPort } from '../fhir/client.js';
import { readIfExists } from '../fhir/reads.js';
import { declaredZone } from '../fhir/zones.js';
import type { KeyedLock } from '../shared/lock.js';
import { planReminders, type Offset, type QuietWindow } from './plan.js';
import { LedgerBusyError, type Ledger } from './ledger.js';
import type { Templates } from './templates.js';
import { ChannelError, type Channel, type ChannelKind } from './channels/channel.js';
import { contactOf } from './contact.js';
import {
  notifyKey,
  REMINDER_LEAD_MS,
  reminderJobId,
  reminderKey,
  type NotifyJob,
  type ReminderJob,
} from './jobs.js';
export { notifyJobId, reminderJobId, type NotifyJob, type ReminderJob } from './jobs.js';
import { checkUpStillWanted, recurringFor, type Recurring } from './care-plans.js';
import { ReadBatch, withStatus, type WriteBack } from './send-batch.js';

export interface ReminderJobs {
  schedule(job: ReminderJob): Promise<void>;
  /** A one-off notification, after `delayMs`. */
  notify(job: NotifyJob, delayMs: number): Promise<void>;
  /** Removes a planned job that has not started (an active one re-checks the Appointment itself). */
  remove(jobId: string): Promise<void>;
  planned(appointmentId: string): Promise<string[]>;
  /** Recurring notifications (BullMQ job schedulers), for continuous care. */
  upsertRecurring(r: Recurring): Promise<void>;
  removeRecurring(id: string): Promise<void>;
  setPlanned(appointmentId: string, jobIds: readonly string[]): Promise<void>;
}

export interface ReminderDeps {
  readonly fhir: FhirPort;
  readonly lock: KeyedLock;
  readonly ledger: Ledger;
  readonly templates: Templates;
  readonly channels: ReadonlyMap<ChannelKind, Channel>;
  readonly offsets: readonly Offset[];
  /** Per service type (`code` or `system|code`) offsets that replace the default ones. */
  readonly offsetsByService: Readonly<Record<string, readonly Offset[]>>;
  readonly quiet: QuietWindow | undefined;
  readonly defaultZone: string;
  readonly jobs: ReminderJobs;
  /** The durable write-back queue for reminder Communications (writeback-worker.ts). */
  readonly writeBacks: { add(item: WriteBack): Promise<void> };
  readonly clock?: () => Date;
  /** Where patients open the portal (links in survey and education messages). */
  readonly portalUrl?: string;
  /** How long after a fulfilled appointment the feedback survey goes out. */
  readonly surveyDelayMs: number;
}

const REMINDED: readonly Appointment['status'][] = ['booked', 'pending'];
const MEDIUM: Readonly<Record<ChannelKind, { code: string; display: string }>> = {
  sms: { code: 'SMSWRIT', display: 'SMS wording' },
  email: { code: 'EMAILWRIT', display: 'email' },
  portal: { code: 'ELECTRONIC', display: 'electronic data' },
};

export type SendOutcome = 'sent' | 'stale' | 'duplicate' | 'not-done';

export class ReminderService {
  /** Re-reads of concurrent sends share FHIR requests. */
  private readonly batch: ReadBatch;

  constructor(private readonly d: ReminderDeps) {
    this.batch = new ReadBatch(d.fhir);
  }

  /** Whether sends are re-reading from the FHIR server right now (write-backs give way to them). */
  sending(): boolean {
    return this.batch.busy();
  }

  private now(): number {
    return (this.d.clock ?? (() => new Date()))().getTime();
  }

  /** A resource's current version, or undefined when it is gone; reads made at the same time share a request. */
  private read<T extends Resource>(type: T['resourceType'], id: string): Promise<T | undefined> {
    return this.batch.read<T>(type, id);
  }

  private offsetsFor(a: Appointment): readonly Offset[] {
    for (const cc of a.serviceType ?? [])
      for (const c of cc.coding ?? []) {
        const byCode =
          this.d.offsetsByService[`${c.system ?? ''}|${c.code ?? ''}`] ??
          this.d.offsetsByService[c.code ?? ''];
        if (byCode) return byCode;
      }
    return this.d.offsets;
  }

  /** The patient's zone: the Patient's, else the appointment's Location's, else DEFAULT_TIMEZONE. */
  private async zoneFor(patient: Patient | undefined, a: Appointment): Promise<string> {
    const own = declaredZone(patient);
    if (own) return own;
    const loc = a.participant.find((p) => p.actor?.reference?.startsWith('Location/'))?.actor?.reference;
    if (loc) {
      const l = await this.read<Location>('Location', loc.slice('Location/'.length));
      const z = declaredZone(l);
      if (z) return z;
    }
    return this.d.defaultZone;
  }

  /** Whether the delivered message's Communication exists (only it carries the bare key: see notDone). */
  private async delivered(key: string): Promise<boolean> {
    const found = await this.d.fhir.searchAll<Communication>(
      'Communication',
      { identifier: `${canonical.reminderSystem}|${key}` },
      { storeless: 1, maxPages: 1 },
    );
    return found.length > 0;
  }

  /** Re-plans an appointment's reminders to match what it is now. Returns the planned job ids. */
  async replan(appointmentId: string): Promise<string[]> {
    return this.d.lock.withLock(`reminders:${appointmentId}`, async () => {
      const { appointment: a, patient } = await this.batch.appointment(appointmentId);
      const nowMs = this.now();
      const startMs = a?.start ? Date.parse(a.start) : NaN;
      let jobs: ReminderJob[] = [];
      if (a && REMINDED.includes(a.status) && Number.isFinite(startMs) && startMs > nowMs) {
        const zone = await this.zoneFor(patient, a);
        jobs = planReminders({ startMs, nowMs, offsets: this.offsetsFor(a), quiet: this.d.quiet, zone }).map(
          (p) => ({
            appointmentId,
            offset: p.offset,
            startMs,
            dueAt: p.dueMs,
          }),
        );
      }
      const wanted = new Set(jobs.map(reminderJobId));
      for (const old of await this.d.jobs.planned(appointmentId))
        if (!wanted.has(old)) await this.d.jobs.remove(old);
      for (const j of jobs) await this.d.jobs.schedule(j);
      await this.d.jobs.setPlanned(appointmentId, [...wanted]);
      if (a) await this.syncRequests(a, jobs);
      // After the visit: the feedback survey, once per appointment (the job id and the ledger both key on it).
      const patientId = a ? patientOf(a) : undefined;
      if (a?.status === 'fulfilled' && patientId)
        await this.d.jobs.notify(
          { kind: 'survey', recipient: `Patient/${patientId}`, about: `Appointment/${appointmentId}` },
          this.d.surveyDelayMs,
        );
      return [...wanted];
    });
  }

  /** Makes the CarePlan's recurring check-ups match the plan as it is now. Returns the scheduler ids kept. */
  async syncCarePlan(carePlanId: string): Promise<string[]> {
    const plan = await readIfExists<CarePlan>(this.d.fhir, 'CarePlan', carePlanId);
    const wanted = plan ? await recurringFor(this.d.fhir, plan) : [];
    for (const r of wanted) await this.d.jobs.upsertRecurring(r);
    // Activities that stopped repeating (or a plan that ended) lose their schedulers.
    const keep = new Set(wanted.map((r) => r.id));
    for (let i = 0; i < Math.max(plan?.activity?.length ?? 0, 20); i++) {
      const id = `checkup-${carePlanId}-${i}`;
      if (!keep.has(id)) await this.d.jobs.removeRecurring(id);
    }
    return [...keep];
  }

  /** CommunicationRequests mirror the plan: new ones created, ones planned away revoked, in one transaction. */
  private async syncRequests(a: Appointment, jobs: readonly ReminderJob[]): Promise<void> {
    const existing = await this.d.fhir
      .searchAll<CommunicationRequest>(
        'CommunicationRequest',
        { 'based-on': `Appointment/${a.id}`, _count: 100 },
        { noCache: true, maxPages: 2 },
      )
      .then((all) => all.filter((c) => c.status === 'active'));
    const keyOf = (c: CommunicationRequest): string | undefined =>
      c.identifier?.find((i) => i.system === canonical.reminderSystem)?.value;
    const have = new Set(existing.map(keyOf));
    const wanted = new Set(jobs.map(reminderKey));
    const patient = patientOf(a);
    const journey = a.extension?.find((x) => x.url === canonical.journeyReferenceExtension);
    const entry: BundleEntry[] = [
      ...jobs
        .filter((j) => !have.has(reminderKey(j)))
        .map((j): BundleEntry => {
          const cr: CommunicationRequest = {
            resourceType: 'CommunicationRequest',
            identifier: [{ system: canonical.reminderSystem, value: reminderKey(j) }],
            status: 'active',
            category: [
              {
                coding: [{ system: canonical.communicationCategory, code: 'reminder', display: 'Reminder' }],
              },
            ],
            basedOn: [{ reference: `Appointment/${a.id}` }],
            about: [{ reference: `Appointment/${a.id}` }],
            ...(patient
              ? {
                  subject: { reference: `Patient/${patient}` },
                  recipient: [{ reference: `Patient/${patient}` }],
                }
              : {}),
            occurrenceDateTime: new Date(j.dueAt).toISOString(),
            authoredOn: new Date(this.now()).toISOString(),
            ...(journey ? { extension: [journey] } : {}),
          };
          return {
            resource: cr,
            request: {
              method: 'POST',
              url: 'CommunicationRequest',
              ifNoneExist: new URLSearchParams({
                identifier: `${canonical.reminderSystem}|${reminderKey(j)}`,
              }).toString(),
            },
          };
        }),
      ...existing.filter((c) => !wanted.has(keyOf(c) ?? '')).map((c) => withStatus(c, 'revoked')),
    ];
    if (entry.length) await this.d.fhir.transaction({ resourceType: 'Bundle', type: 'transaction', entry });
  }

  /**
   * Sends one reminder. Throws a retryable error to be tried again; `final` marks the last attempt, after which
   * a not-done Communication records the failure.
   */
  async send(job: ReminderJob, owner: string, final: boolean): Promise<SendOutcome> {
    const { appointment: a, patient } = await this.batch.appointment(job.appointmentId);
    const nowMs = this.now();
    if (
      !a ||
      !REMINDED.includes(a.status) ||
      !a.start ||
      Date.parse(a.start) !== job.startMs ||
      job.startMs <= nowMs
    )
      return 'stale';
    const key = reminderKey(job);
    const contact = patient
      ? contactOf(patient, new Set(this.d.channels.keys()), nowMs)
      : { channel: 'portal' as const, to: '', language: undefined, firstName: '' };
    const zone = await this.zoneFor(patient, a);
    const place = await this.placeOf(a);
    const when = new Date(job.startMs);
    const locale = contact.language ?? 'en';
    const message = this.d.templates.render('reminder', contact.language, {
      firstName: contact.firstName,
      date: safeFormat(locale, { dateStyle: 'medium', timeZone: zone }, when),
      time: safeFormat(locale, { timeStyle: 'short', timeZone: zone }, when),
      place,
    });
    const claim = await this.d.ledger.claim(key, owner);
    if (claim === 'busy') throw new LedgerBusyError();
    if (claim === 'sent') {
      // Sent, but the run may have been cut off before its write-back was queued: queue it (again). The same
      // write-back queued twice is one job, and its create is conditional on the key.
      await this.writeBack(a, job, contact.channel, { status: 'completed' }, message.text);
      return 'duplicate';
    }
    // Tried before (a claim left by a worker that died mid-send, or an earlier attempt): the Communication tells
    // whether the send happened. A first attempt has nothing to look for, which saves a search per reminder.
    if (claim === 'reclaimed' && (await this.delivered(key))) {
      await this.d.ledger.markSent(key);
      return 'duplicate';
    }
    // Queued a lead ahead of its time (jobs.ts): everything is ready, so send on the due instant, not before.
    const early = job.dueAt - Date.now();
    if (early > 0) await new Promise((r) => setTimeout(r, Math.min(early, 2 * REMINDER_LEAD_MS)));
    const failure = await this.deliver(
      contact,
      message,
      `reminder-${key.replaceAll('|', '-')}`,
      key,
      owner,
      final,
    );
    if (failure) {
      await this.writeBack(a, job, contact.channel, { status: 'not-done', reason: failure }, message.text);
      await this.d.ledger.release(key, owner);
      return 'not-done';
    }
    // Recorded first, in Redis (sub-millisecond), so a crash after this point can never send it again.
    await this.d.ledger.markSent(key);
    await this.writeBack(a, job, contact.channel, { status: 'completed' }, message.text);
    return 'sent';
  }

  /**
   * Sends a notification once (ledger key: kind + resource), on the patient's channel, and writes it back as a
   * Communication about that resource. The text carries no content of the resource itself: a date, a time, a
   * place or a link at most.
   */
  async notify(job: NotifyJob, owner: string, final: boolean): Promise<SendOutcome> {
    const key = notifyKey(job);
    const claim = await this.d.ledger.claim(key, owner);
    if (claim === 'sent') return 'duplicate';
    if (claim === 'busy') throw new LedgerBusyError();
    if (claim === 'reclaimed' && (await this.delivered(key))) {
      await this.d.ledger.markSent(key);
      return 'duplicate';
    }
    // A check-up run whose plan or journey has ended stops its scheduler instead of sending.
    if (job.kind === 'check-up' && !(await checkUpStillWanted(this.d.fhir, job))) {
      await this.d.ledger.release(key, owner);
      const plan = job.about.replace(/^CarePlan\//, '');
      await this.d.jobs.removeRecurring(`checkup-${plan}-${(job.context ?? '').replace('activity-', '')}`);
      return 'stale';
    }
    const [recipientType, recipientId = ''] = job.recipient.split('/');
    const person =
      recipientType === 'Practitioner'
        ? asContactable(await this.read<Practitioner>('Practitioner', recipientId))
        : await this.read<Patient>('Patient', recipientId);
    if (!person) {
      await this.d.ledger.release(key, owner);
      return 'stale';
    }
    const patient = person;
    const nowMs = this.now();
    const contact = contactOf(patient, new Set(this.d.channels.keys()), nowMs);
    const zone = declaredZone(patient) ?? this.d.defaultZone;
    const values = await this.notifyValues(job, contact.language ?? 'en', zone);
    if (!values) {
      await this.d.ledger.release(key, owner);
      return 'stale';
    }
    const message = this.d.templates.render(job.kind, contact.language, {
      firstName: contact.firstName,
      ...values,
    });
    const failure = await this.deliver(contact, message, key.replace(/[|/]/g, '-'), key, owner, final);
    const communication: Communication = {
      resourceType: 'Communication',
      identifier: [{ system: canonical.reminderSystem, value: failure ? notDone(key) : key }],
      status: failure ? 'not-done' : 'completed',
      ...(failure ? { statusReason: { text: failure } } : {}),
      category: [
        {
          coding: [
            { system: canonical.communicationCategory, code: 'notification', display: 'Notification' },
            { system: canonical.communicationCategory, code: job.kind },
          ],
        },
      ],
      medium: [
        {
          coding: [
            {
              system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationMode',
              ...MEDIUM[contact.channel],
            },
          ],
        },
      ],
      ...(recipientType === 'Patient' ? { subject: { reference: job.recipient } } : {}),
      recipient: [{ reference: job.recipient }],
      about: [{ reference: job.about }],
      sent: new Date(nowMs).toISOString(),
      payload: [{ contentString: message.text }],
    };
    if (failure) {
      await this.d.fhir.create(communication);
      await this.d.ledger.release(key, owner);
      return 'not-done';
    }
    // Recorded in Redis first (sub-millisecond), so a crash after the send can never send it again.
    await this.d.ledger.markSent(key);
    await this.d.fhir.create(communication, {
      ifNoneExist: { identifier: `${canonical.reminderSystem}|${key}` },
    });
    return 'sent';
  }

  /** Template values for a notification, read from the resource it is about; undefined when it is gone. */
  private async notifyValues(
    job: NotifyJob,
    locale: string,
    zone: string,
  ): Promise<Record<string, string> | undefined> {
    const [type, id = ''] = job.about.split('/');
    const portal = (this.d.portalUrl ?? '').replace(/\/+$/, '');
    switch (job.kind) {
      case 'waitlist-offer': {
        const offer =
          type === 'Communication' ? await this.read<Communication>('Communication', id) : undefined;
        const slotRef = offer?.about?.find((r) => r.reference?.startsWith('Slot/'))?.reference;
        const slot = slotRef ? await this.read<Slot>('Slot', slotRef.slice('Slot/'.length)) : undefined;
        if (!slot) return undefined;
        const hold = slot.extension?.find((x) => x.url === canonical.slotHoldExtension);
        const expires = hold?.extension?.find((x) => x.url === 'expires')?.valueInstant;
        const when = new Date(slot.start);
        return {
          date: safeFormat(locale, { dateStyle: 'medium', timeZone: zone }, when),
          time: safeFormat(locale, { timeStyle: 'short', timeZone: zone }, when),
          place: 'the clinic',
          expires: expires
            ? safeFormat(
                locale,
                { dateStyle: 'short', timeStyle: 'short', timeZone: zone },
                new Date(expires),
              )
            : '',
        };
      }
      case 'survey':
        return { link: `${portal}/survey/patient-experience?appointment=${encodeURIComponent(id)}` };
      case 'education':
        return { link: `${portal}/${type}/${id}` };
      case 'check-up':
      case 'message-notification':
        return {};
    }
  }

  /**
   * Sends on the contact's channel (the portal when that channel is not configured). Returns the reason when the
   * send failed for good; a retryable failure before the last attempt gives the claim back and throws.
   */
  private async deliver(
    contact: { channel: ChannelKind; to: string },
    message: { subject: string; text: string },
    messageId: string,
    key: string,
    owner: string,
    final: boolean,
  ): Promise<string | undefined> {
    const channel = this.d.channels.get(contact.channel) ?? this.d.channels.get('portal')!;
    try {
      await channel.send({ to: contact.to, subject: message.subject, text: message.text, messageId });
      return undefined;
    } catch (e) {
      const err = e instanceof ChannelError ? e : new ChannelError('send failed', true);
      if (err.retryable && !final) {
        await this.d.ledger.release(key, owner);
        throw err;
      }
      return err.message;
    }
  }

  private async placeOf(a: Appointment): Promise<string> {
    const loc = a.participant.find(
      (p) => p.actor?.reference?.startsWith('Location/') || p.actor?.type === 'Location',
    )?.actor;
    if (loc?.display) return loc.display;
    if (loc?.reference) {
      const l = await this.read<Location>('Location', loc.reference.slice('Location/'.length));
      if (l?.name) return l.name;
    }
    return 'the clinic';
  }

  /**
   * Queues the Communication for this attempt (and the CommunicationRequest's completion): written off the send
   * path, many per transaction (writeback-worker.ts), so a busy FHIR server does not make reminders late.
   */
  private async writeBack(
    a: Appointment,
    job: ReminderJob,
    channel: ChannelKind,
    result: { status: 'completed' } | { status: 'not-done'; reason: string },
    text: string,
  ): Promise<void> {
    const key = reminderKey(job);
    const patient = patientOf(a);
    const journey = a.extension?.find((x) => x.url === canonical.journeyReferenceExtension);
    const communication: Communication = {
      resourceType: 'Communication',
      identifier: [
        { system: canonical.reminderSystem, value: result.status === 'completed' ? key : notDone(key) },
      ],
      status: result.status,
      ...(result.status === 'not-done' ? { statusReason: { text: result.reason } } : {}),
      category: [
        { coding: [{ system: canonical.communicationCategory, code: 'reminder', display: 'Reminder' }] },
      ],
      medium: [
        {
          coding: [
            { system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationMode', ...MEDIUM[channel] },
          ],
        },
      ],
      basedOn: [{ identifier: { system: canonical.reminderSystem, value: key } }],
      about: [{ reference: `Appointment/${a.id}` }],
      ...(patient
        ? { subject: { reference: `Patient/${patient}` }, recipient: [{ reference: `Patient/${patient}` }] }
        : {}),
      sent: new Date(this.now()).toISOString(),
      payload: [{ contentString: text }],
      ...(journey ? { extension: [journey] } : {}),
    };
    await this.d.writeBacks.add({ key, communication });
  }
}

/** A Practitioner reached the same way as a patient: telecom, name, language. */
function asContactable(p: Practitioner | undefined): Patient | undefined {
  if (!p) return undefined;
  const language = p.communication?.[0]?.coding?.find((c) => c.code);
  return {
    resourceType: 'Patient',
    ...(p.telecom ? { telecom: p.telecom } : {}),
    ...(p.name ? { name: p.name } : {}),
    ...(language ? { communication: [{ language: { coding: [language] }, preferred: true }] } : {}),
  };
}

/**
 * A failed attempt's identifier. The key itself is kept for the one delivered message, so a single identifier
 * (an indexed lookup, unlike a status clause matching thousands) finds it and keeps its create conditional.
 */
function notDone(key: string): string {
  return `${key}|not-done`;
}

function patientOf(a: Appointment): string | undefined {
  const r = a.participant.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor?.reference;
  return r?.slice('Patient/'.length);
}

function safeFormat(locale: string, options: Intl.DateTimeFormatOptions, d: Date): string {
  try {
    return new Intl.DateTimeFormat(locale, options).format(d);
  } catch {
    return new Intl.DateTimeFormat('en', options).format(d);
  }
}
