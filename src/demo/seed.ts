/**
 * Seeds the demo hospital (hospital.ts) into a running Careway **through Careway's own paths only**: the HL7
 * feed over MLLP, referral bundles on `POST /fhir` and `$process-message`, `$start-journey`, `$advance-stage`,
 * `$generate-slots`, `$find`/`$book`/`$cancel`/`$noshow`, `POST /fhir/QuestionnaireResponse`, signed replies on
 * `POST /engagement/replies`, and facade writes for reference data (Organization, Practitioners, Locations,
 * CareTeams, Schedules), follow-up Tasks and the journeys' care-manager assignment. It never talks to the FHIR
 * server itself.
 *
 * Idempotent: every write is keyed on a business identifier of the plan, and every action first reads whether
 * it already happened (a booked patient is not booked again, an accepted triage is not accepted again), so a
 * second run writes nothing new. The anchor day (which every date is relative to) is kept on the hospital's
 * Organization, so a re-run on a later day rebuilds the same plan.
 */
import type {
  Appointment,
  Bundle,
  CarePlan,
  EpisodeOfCare,
  Organization,
  Parameters,
  Patient,
  Resource,
  Task,
} from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import { readState } from '../journey/episode.js';
import { MllpClient } from '../hl7/mllp/client.js';
import { sign } from '../reminders/channels/sms-webhook.js';
import { PATIENT_EXPERIENCE } from '../reminders/feedback.js';
import type { JourneyStage } from '../journey/stages.js';
import {
  generateHospital,
  hl7Feed,
  referralBundle,
  REFERRED,
  SERVICES,
  timesOf,
  type Hospital,
  type PlannedPatient,
} from './hospital.js';

export interface SeedTarget {
  /** Careway's HTTP base, e.g. http://127.0.0.1:8080 */
  readonly baseUrl: string;
  readonly mllp: { readonly host: string; readonly port: number };
  /** A bearer token with `system/*.cruds` (the demo mints it with the dev key). */
  readonly token: string;
  /** SMS_WEBHOOK_SECRET of that Careway, to sign patient replies. Without it no replies are sent. */
  readonly smsWebhookSecret?: string;
}

export interface SeedOptions {
  readonly ns?: string;
  readonly patients?: number;
  /** Brief progress lines. */
  readonly log?: (msg: string) => void;
  /** Requests in flight at once (default 2: the FHIR server shares two cores with everything else). */
  readonly concurrency?: number;
  /** The anchor day when the hospital is new (default: today, UTC). */
  readonly today?: string;
  /** Days of clinics (Slots) after the anchor day (default 14). */
  readonly slotDays?: number;
}

export interface SeedReport {
  readonly ns: string;
  readonly anchor: string;
  readonly patients: number;
  readonly stages: Readonly<Record<JourneyStage, number>>;
  readonly hl7: { readonly sent: number; readonly accepted: number; readonly failed: number };
}

const SERVICE_SYSTEM = 'urn:careway:demo:service';
const serviceConcept = (code: string) => {
  const s = SERVICES.find((x) => x.code === code)!;
  return { coding: [{ system: SERVICE_SYSTEM, code: s.code, display: s.display }], text: s.display };
};

export class SeedError extends Error {}

/** Careway over HTTP with the seeder's token; any answer other than the expected ones is a SeedError. */
class Api {
  constructor(private readonly t: SeedTarget) {}

  /**
   * One request. A 502/503/504 or a lost connection is tried again (up to 4 times, backing off): every seeding
   * write is keyed or conditional, so a repeat is harmless, and a busy FHIR server on a small machine does time
   * out now and then. `once` opts out, for `$book`, whose retry could book a second slot.
   */
  async call<T>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    ok: readonly number[] = [200, 201],
    once = false,
  ): Promise<{ status: number; body: T }> {
    for (let attempt = 1; ; attempt++) {
      const t0 = Date.now();
      let res: Response;
      let text: string;
      try {
        res = await fetch(`${this.t.baseUrl}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${this.t.token}`,
            accept: 'application/fhir+json',
            'cache-control': 'no-cache',
            ...(body === undefined ? {} : { 'content-type': 'application/fhir+json' }),
            ...headers,
          },
          ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
          signal: AbortSignal.timeout(120_000),
        });
        text = await res.text();
      } catch (e) {
        if (once || attempt >= 4) throw e;
        await sleep(2000 * attempt);
        continue;
      }
      if (process.env['CAREWAY_SEED_TRACE'])
        process.stdout.write(`  ${method} ${path.slice(0, 80)} ${res.status} ${Date.now() - t0} ms\n`);
      if (!once && attempt < 4 && [502, 503, 504].includes(res.status)) {
        await sleep(2000 * attempt);
        continue;
      }
      if (!ok.includes(res.status)) {
        let why = text.slice(0, 300);
        try {
          const oo = JSON.parse(text) as { issue?: { diagnostics?: string }[] };
          why = oo.issue?.map((i) => i.diagnostics).join('; ') || why;
        } catch {
          // not JSON: keep the text
        }
        throw new SeedError(`${method} ${path.split('?')[0]} answered ${res.status}: ${why}`);
      }
      return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
    }
  }

  post<T>(path: string, body: unknown, headers?: Record<string, string>): Promise<T> {
    return this.call<T>('POST', path, body, headers).then((r) => r.body);
  }

  /** Every match of a search, following the facade's signed paging links. */
  async search<T extends Resource>(type: string, query: Record<string, string>): Promise<T[]> {
    const out: T[] = [];
    let path: string | undefined =
      `/fhir/${type}?${new URLSearchParams({ _count: '200', ...query }).toString()}`;
    while (path) {
      const page: Bundle = (await this.call<Bundle>('GET', path)).body;
      for (const e of page.entry ?? []) if (e.resource?.resourceType === type) out.push(e.resource as T);
      const next = page.link?.find((l) => l.relation === 'next')?.url;
      path = next ? next.slice(next.indexOf('/fhir')) : undefined;
    }
    return out;
  }

  async count(type: string, query: Record<string, string>): Promise<number> {
    const b = (
      await this.call<Bundle>(
        'GET',
        `/fhir/${type}?${new URLSearchParams({ ...query, _summary: 'count' }).toString()}`,
      )
    ).body;
    return b.total ?? 0;
  }

  /** A conditional create on the resource's first identifier; returns the stored resource's id. */
  async ensure<T extends Resource & { identifier?: { system?: string; value?: string }[] }>(
    resource: T,
  ): Promise<string> {
    const id = resource.identifier?.[0];
    const r = await this.call<T>('POST', `/fhir/${resource.resourceType}`, resource, {
      'if-none-exist': `identifier=${encodeURIComponent(`${id?.system}|${id?.value}`)}`,
      prefer: 'return=representation',
    });
    if (!r.body?.id) throw new SeedError(`${resource.resourceType} came back without an id`);
    return r.body.id;
  }
}

/** Runs `fn` over `items` with at most `n` at a time; the first failure stops the run. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(workers);
}

const params = (...parameter: NonNullable<Parameters['parameter']>): Parameters => ({
  resourceType: 'Parameters',
  parameter,
});
const ref = (reference: string) => ({ reference });
const DAY = 86_400_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const stageOf = (e: EpisodeOfCare): string | undefined => {
  try {
    return readState(e).stage;
  } catch {
    return undefined;
  }
};

interface Reference {
  readonly organization: string;
  readonly practitioners: ReadonlyMap<string, string>;
  readonly careTeams: ReadonlyMap<string, string>;
}

/** The anchor day: the one kept on the hospital's Organization, else `today` for a new hospital. */
async function anchorOf(api: Api, ns: string, today: string): Promise<{ anchor: string; org?: string }> {
  const [org] = await api.search<Organization>('Organization', {
    identifier: `urn:careway:demo:${ns}:organization|hospital`,
  });
  const kept = org?.identifier?.find((i) => i.system === `urn:careway:demo:${ns}:seeded-on`)?.value;
  return kept ? { anchor: kept, org: org.id } : { anchor: today };
}

async function seedReference(
  api: Api,
  h: Hospital,
  log: (m: string) => void,
  n: number,
  slotDays: number,
): Promise<Reference> {
  const organization = await api.ensure<Organization>({
    resourceType: 'Organization',
    identifier: [
      { system: h.systems.org, value: 'hospital' },
      { system: `urn:careway:demo:${h.ns}:seeded-on`, value: h.anchor },
    ],
    active: true,
    name: 'Careway Demo Hospital',
  });
  const practitioners = new Map<string, string>();
  await pool(h.clinicians, n, async (c) => {
    practitioners.set(
      c.npi,
      await api.ensure({
        resourceType: 'Practitioner',
        identifier: [{ system: h.systems.npi, value: c.npi }],
        active: true,
        name: [{ family: c.family, given: [c.given], prefix: ['Dr.'] }],
        communication: [{ coding: [{ system: 'urn:ietf:bcp:47', code: 'de' }] }],
      }),
    );
  });
  const careTeams = new Map<string, string>();
  const schedules: string[] = [];
  await pool(SERVICES, n, async (s) => {
    const location = await api.ensure({
      resourceType: 'Location',
      identifier: [{ system: `urn:careway:demo:${h.ns}:location`, value: s.hl7 }],
      status: 'active',
      name: `${s.display} clinic`,
      managingOrganization: ref(`Organization/${organization}`),
    });
    const managers = h.clinicians.filter((c) => c.service === s.code);
    careTeams.set(
      s.code,
      await api.ensure({
        resourceType: 'CareTeam',
        identifier: [{ system: `urn:careway:demo:${h.ns}:care-team`, value: s.code }],
        status: 'active',
        name: `${s.display} team`,
        category: [serviceConcept(s.code)],
        managingOrganization: [ref(`Organization/${organization}`)],
        participant: managers.map((m) => ({ member: ref(`Practitioner/${practitioners.get(m.npi)}`) })),
      }),
    );
    for (const m of managers) {
      const schedule = await api.ensure({
        resourceType: 'Schedule',
        identifier: [{ system: h.systems.schedule, value: m.npi }],
        active: true,
        extension: [{ url: canonical.timezoneExtension, valueCode: 'Europe/Berlin' }],
        serviceType: [serviceConcept(s.code)],
        actor: [ref(`Practitioner/${practitioners.get(m.npi)}`), ref(`Location/${location}`)],
        comment: `${s.display} clinic`,
      });
      schedules.push(schedule);
    }
  });
  // One schedule at a time: generating Slots is the heaviest write here, and the FHIR server may be shared.
  // Morning clinics on weekdays after the anchor day; a replay creates no Slot twice.
  const anchor = Date.parse(`${h.anchor}T00:00:00Z`);
  let slots = 0;
  for (const schedule of schedules.sort()) {
    const made = await api.post<Parameters>(
      `/fhir/Schedule/${schedule}/$generate-slots`,
      params(
        { name: 'start', valueDate: new Date(anchor + DAY).toISOString().slice(0, 10) },
        { name: 'end', valueDate: new Date(anchor + slotDays * DAY).toISOString().slice(0, 10) },
        { name: 'slot-minutes', valuePositiveInt: 30 },
        {
          name: 'availableTime',
          part: [
            ...['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => ({ name: 'daysOfWeek', valueCode: d })),
            { name: 'availableStartTime', valueTime: '09:00:00' },
            { name: 'availableEndTime', valueTime: '11:00:00' },
          ],
        },
      ),
    );
    const count = (name: string): number => made.parameter?.find((x) => x.name === name)?.valueInteger ?? 0;
    slots += count('created') + count('existing');
  }
  log(
    `reference data: 1 hospital, ${practitioners.size} clinicians, ${SERVICES.length} services, ${slots} slots`,
  );
  return { organization, practitioners, careTeams };
}

/** Sends the HL7 feed over MLLP, one message at a time, and waits until Careway has written every one. */
async function sendFeed(
  api: Api,
  t: SeedTarget,
  h: Hospital,
  log: (m: string) => void,
): Promise<SeedReport['hl7']> {
  const feed = hl7Feed(h);
  const client = new MllpClient({ host: t.mllp.host, port: t.mllp.port, ackTimeoutMs: 30_000 });
  let accepted = 0;
  const refused: string[] = [];
  try {
    for (const [i, m] of feed.entries()) {
      const ack = await client.send(m.text, m.controlId);
      const code = ack.segment('MSA')?.get(1) ?? '';
      if (code === 'AA' || code === 'CA') accepted++;
      else refused.push(`${m.controlId} ${code} ${ack.segment('ERR')?.get(8) ?? ''}`.trim());
      if ((i + 1) % 100 === 0) log(`HL7 feed: ${i + 1}/${feed.length} messages sent`);
    }
  } finally {
    await client.close();
  }
  if (refused.length)
    throw new SeedError(
      `Careway refused ${refused.length} HL7 message(s): ${refused.slice(0, 3).join('; ')}`,
    );
  // ACK means queued; the journeys exist once the inbound worker has written them.
  let failed = 0;
  for (const deadline = Date.now() + 600_000; ;) {
    const { messages } = (
      await api.call<{ messages: { status: string }[] }>('GET', '/hl7/messages?limit=500')
    ).body;
    const busy = messages.filter((m) => ['waiting', 'active', 'delayed', 'prioritized'].includes(m.status));
    failed = messages.filter((m) => m.status === 'failed').length;
    if (busy.length === 0) break;
    if (Date.now() > deadline) throw new SeedError(`${busy.length} HL7 messages still waiting after 10 min`);
    await sleep(500);
  }
  log(`HL7 feed: ${feed.length} messages accepted over MLLP and written`);
  return { sent: feed.length, accepted, failed };
}

export async function seedHospital(t: SeedTarget, o: SeedOptions = {}): Promise<SeedReport> {
  const log = o.log ?? (() => undefined);
  const n = o.concurrency ?? 2;
  const ns = o.ns ?? 'demo';
  const api = new Api(t);
  const { anchor } = await anchorOf(api, ns, o.today ?? new Date().toISOString().slice(0, 10));
  const h = generateHospital({ ns, patients: o.patients ?? 200, anchor });
  log(`seeding the demo hospital "${ns}" (${h.patients.length} patients, dates up to ${anchor})`);
  const ref0 = await seedReference(api, h, log, n, o.slotDays ?? 14);

  const hl7 = await sendFeed(api, t, h, log);

  // Referrals from the GPs' systems, and patients who came by themselves.
  const referred = h.patients.filter((p) => REFERRED.includes(p.cohort));
  await pool(referred, n, async (p) => {
    const bundle = referralBundle(h, p);
    await api.post(bundle.type === 'message' ? '/fhir/$process-message' : '/fhir', bundle);
  });
  const selfReferred = h.patients.filter((p) => p.cohort === 'self-referral');
  await pool(selfReferred, n, async (p) => {
    const id = await api.ensure<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: h.systems.mrn, value: p.mrn }],
      name: [{ family: p.family, given: [p.given] }],
      gender: p.gender,
      birthDate: p.birthDate,
      telecom: [{ system: 'phone', value: p.phone, use: 'mobile' }],
      address: [{ city: p.city, country: 'DEU' }],
    });
    await api.post(
      '/fhir/EpisodeOfCare/$start-journey',
      params(
        { name: 'patient', valueReference: ref(`Patient/${id}`) },
        { name: 'identifier', valueIdentifier: { system: h.systems.journey, value: p.mrn } },
        { name: 'careManager', valueReference: ref(`Practitioner/${ref0.practitioners.get(p.careManager)}`) },
        { name: 'organization', valueReference: ref(`Organization/${ref0.organization}`) },
        { name: 'type', valueCodeableConcept: serviceConcept(p.service) },
      ),
    );
  });
  log(`referrals: ${referred.length} bundles, ${selfReferred.length} self-referrals`);

  // What Careway wrote, by MRN.
  const patients = await api.search<Patient>('Patient', { identifier: `${h.systems.mrn}|` });
  const patientOf = new Map<string, string>();
  for (const p of patients) {
    const mrn = p.identifier?.find((i) => i.system === h.systems.mrn)?.value;
    if (mrn && p.id) patientOf.set(mrn, p.id);
  }
  const missing = h.patients.filter((p) => !patientOf.has(p.mrn));
  if (missing.length)
    throw new SeedError(`${missing.length} patients were not written (e.g. ${missing[0]!.mrn})`);
  const journeys = await api.search<EpisodeOfCare>('EpisodeOfCare', {
    'patient.identifier': `${h.systems.mrn}|`,
  });
  const journeyOf = new Map<string, EpisodeOfCare>();
  for (const j of journeys) {
    if (['finished', 'cancelled', 'entered-in-error'].includes(j.status)) continue;
    journeyOf.set(j.patient.reference?.replace('Patient/', '') ?? '', j);
  }

  let done = 0;
  await pool(h.patients, n, async (p) => {
    await actOn(api, t, h, ref0, p, patientOf.get(p.mrn)!, journeyOf.get(patientOf.get(p.mrn)!));
    if (++done % 50 === 0) log(`care-team and patient actions: ${done}/${h.patients.length} patients`);
  });

  const stages = Object.fromEntries(
    await Promise.all(
      (['awareness', 'consideration', 'access', 'care', 'recovery', 'continuous-care'] as const).map(
        async (s) => [
          s,
          await api.count('EpisodeOfCare', { 'patient.identifier': `${h.systems.mrn}|`, stage: s }),
        ],
      ),
    ),
  ) as Record<JourneyStage, number>;
  log(
    `journeys by stage: ${Object.entries(stages)
      .map(([s, c]) => `${s} ${c}`)
      .join(', ')}`,
  );
  return { ns, anchor, patients: h.patients.length, stages, hl7 };
}

/** The care team's and the patient's own actions for one patient, each skipped when it already happened. */
async function actOn(
  api: Api,
  t: SeedTarget,
  h: Hospital,
  r: Reference,
  p: PlannedPatient,
  patientId: string,
  journey: EpisodeOfCare | undefined,
): Promise<void> {
  if (!journey) throw new SeedError(`patient ${p.mrn} (${p.cohort}) has no open journey`);
  const manager = `Practitioner/${r.practitioners.get(p.careManager)}`;
  const times = timesOf(h, p);

  // A coordinator assigns the journey to its service, team and care manager.
  if (!journey.careManager) {
    const patch = [
      { op: 'add', path: '/careManager', value: ref(manager) },
      { op: 'add', path: '/team', value: [ref(`CareTeam/${r.careTeams.get(p.service)}`)] },
      { op: 'add', path: '/managingOrganization', value: ref(`Organization/${r.organization}`) },
      { op: 'add', path: '/type', value: [serviceConcept(p.service)] },
    ];
    await api.call('PATCH', `/fhir/EpisodeOfCare/${journey.id}`, patch, {
      'content-type': 'application/json-patch+json',
      'if-match': `W/"${journey.meta?.versionId ?? ''}"`,
    });
  }

  const advance = async (to: JourneyStage, from: string): Promise<void> => {
    if (stageOf(journey) !== from) return;
    await api.post(
      `/fhir/EpisodeOfCare/${journey.id}/$advance-stage`,
      params(
        { name: 'stage', valueCode: to },
        {
          name: 'reason',
          valueString: to === 'consideration' ? 'Treatment options discussed' : 'Recurring check-ups planned',
        },
      ),
    );
  };
  if (p.cohort === 'considering') await advance('consideration', 'awareness');
  if (p.cohort === 'follow-up') await advance('continuous-care', 'recovery');

  // Patients in continuous care have a care plan; every other one has let an activity slip past its date, which
  // Careway's care-plan sweep turns into a worklist Task (`care-plan-activity`).
  if (p.cohort === 'follow-up') {
    const anchorMs = Date.parse(`${h.anchor}T00:00:00Z`);
    const period = (fromDays: number) => ({
      start: new Date(anchorMs + fromDays * DAY).toISOString(),
      end: new Date(anchorMs + (fromDays + 1) * DAY).toISOString(),
    });
    await api.ensure<CarePlan>({
      resourceType: 'CarePlan',
      identifier: [{ system: h.systems.mrn.replace(/:mrn$/, ':care-plan'), value: p.mrn }],
      status: 'active',
      intent: 'plan',
      title: 'Follow-up plan',
      subject: ref(`Patient/${patientId}`),
      period: { start: new Date(times.start).toISOString() },
      extension: [
        { url: canonical.journeyReferenceExtension, valueReference: ref(`EpisodeOfCare/${journey.id}`) },
      ],
      activity: [
        { detail: { status: 'completed', code: { text: 'Discharge call' }, scheduledPeriod: period(-12) } },
        {
          detail: {
            status: 'scheduled',
            code: { text: p.idx % 3 ? 'Blood test' : 'Wound check' },
            scheduledPeriod: period(p.idx % 2 ? 10 + (p.idx % 7) : -(3 + (p.idx % 9))),
          },
        },
      ],
    });
  }

  if (p.cohort === 'referred-booked' || p.cohort === 'referred-cancelled') {
    const [triage] = await api.search<Task>('Task', {
      identifier: `${canonical.triageTaskSystem}|${h.systems.referral}|REF-${p.mrn}`,
    });
    if (triage?.status === 'requested') await api.post(`/fhir/Task/${triage.id}/$accept`, params());
    const mine = await api.search<Appointment>('Appointment', { patient: `Patient/${patientId}` });
    let booked = mine.find((a) => a.status === 'booked' || a.status === 'cancelled');
    if (!booked) {
      const anchor = Date.parse(`${h.anchor}T00:00:00Z`);
      const found = await api.post<Bundle>(
        '/fhir/Appointment/$find',
        params(
          { name: 'service-type', valueCodeableConcept: serviceConcept(p.service) },
          { name: 'patient', valueReference: ref(`Patient/${patientId}`) },
          {
            name: 'start',
            valueDateTime: new Date(Math.max(anchor + DAY, Date.now() + 3_600_000)).toISOString(),
          },
          { name: 'end', valueDateTime: new Date(anchor + 15 * DAY).toISOString() },
          { name: '_count', valuePositiveInt: 5 },
        ),
      );
      // Patients do not all take the top proposal; the PRNG-free choice keeps a re-run's plan the same.
      const proposals = (found.entry ?? []).filter((e) => e.resource?.resourceType === 'Appointment');
      for (const proposal of [proposals[p.idx % Math.max(1, proposals.length)], ...proposals]) {
        const slots = (proposal?.resource as Appointment | undefined)?.slot ?? [];
        if (!slots.length) continue;
        const res = await api.call<Appointment>(
          'POST',
          '/fhir/Appointment/$book',
          params(...slots.map((s) => ({ name: 'slot', valueReference: ref(s.reference ?? '') })), {
            name: 'patient',
            valueReference: ref(`Patient/${patientId}`),
          }),
          {},
          [200, 201, 409],
          true,
        );
        if (res.status !== 409) {
          booked = res.body;
          break;
        }
      }
    }
    if (booked?.status === 'booked' && p.cohort === 'referred-cancelled')
      await api.post(
        `/fhir/Appointment/${booked.id}/$cancel`,
        params({ name: 'reason', valueString: 'Patient cannot attend (travelling)' }),
      );
  }

  if (p.cohort === 'noshow-careway') {
    const mine = await api.search<Appointment>('Appointment', { patient: `Patient/${patientId}` });
    for (const a of mine.filter((x) => x.status === 'booked' && Date.parse(x.end ?? '') < Date.now()))
      await api.post(`/fhir/Appointment/${a.id}/$noshow`, params());
  }

  if (p.survey) {
    const visit = p.cohort === 'seen' ? times.visit : times.discharge;
    await api.post('/fhir/QuestionnaireResponse', {
      resourceType: 'QuestionnaireResponse',
      identifier: { system: h.systems.survey, value: `${p.mrn}-1` },
      questionnaire: `${PATIENT_EXPERIENCE}|0.1.0`,
      status: 'completed',
      subject: ref(`Patient/${patientId}`),
      authored: new Date(visit + p.survey.daysAfter * DAY).toISOString(),
      extension: [
        { url: canonical.journeyReferenceExtension, valueReference: ref(`EpisodeOfCare/${journey.id}`) },
      ],
      item: [
        { linkId: 'overall', answer: [{ valueInteger: p.survey.overall }] },
        { linkId: 'recommend', answer: [{ valueBoolean: p.survey.recommend >= 7 }] },
        { linkId: RECOMMEND_SCORE, answer: [{ valueInteger: p.survey.recommend }] },
      ],
    });
  }

  if (p.overdueTask) {
    const due = Math.min(times.start + 7 * DAY, Date.parse(`${h.anchor}T00:00:00Z`) - DAY);
    await api.ensure<Task>({
      resourceType: 'Task',
      identifier: [{ system: h.systems.task, value: `${p.mrn}-follow-up` }],
      status: 'requested',
      intent: 'order',
      priority: 'routine',
      code: {
        text: p.cohort === 'results' ? 'Discuss results with the patient' : 'Book the follow-up visit',
      },
      description: 'Call the patient and agree the next step.',
      for: ref(`Patient/${patientId}`),
      owner: ref(manager),
      authoredOn: new Date(times.start).toISOString(),
      restriction: { period: { end: new Date(due).toISOString() } },
      extension: [
        { url: canonical.journeyReferenceExtension, valueReference: ref(`EpisodeOfCare/${journey.id}`) },
      ],
    });
  }

  if (p.writesIn && t.smsWebhookSecret) {
    const body = JSON.stringify({
      from: p.phone,
      text: QUESTIONS[p.idx % QUESTIONS.length],
      messageId: `${h.ns}-sms-${p.mrn}`,
      channel: 'sms',
    });
    const timestamp = String(Date.now());
    const res = await fetch(`${t.baseUrl}/engagement/replies`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-careway-timestamp': timestamp,
        'x-careway-signature': sign(t.smsWebhookSecret, timestamp, body),
      },
      body,
      signal: AbortSignal.timeout(60_000),
    });
    if (!res.ok) throw new SeedError(`POST /engagement/replies answered ${res.status}`);
    await res.arrayBuffer();
  }
}

/**
 * The survey item carrying the 0–10 likelihood to recommend (the NPS question). The patient-experience
 * Questionnaire has `overall` (1–5) and a yes/no `recommend`; this answer rides along so NPS can be computed.
 */
export const RECOMMEND_SCORE = 'recommend-score';

const QUESTIONS = [
  'Hello, can I eat before the blood test?',
  'Is there parking at the clinic?',
  'I still have pain since the visit, who can I call?',
  'Could somebody send me the discharge letter please?',
  'Do I need a new referral from my GP?',
];
