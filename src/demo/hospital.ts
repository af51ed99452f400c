/**
 * The demo's synthetic hospital, as data: services with their care managers, and patients each with a story
 * (a cohort) that ends in one of the six journey stages. Pure and deterministic: the same namespace, size and
 * anchor day give the same hospital, the same business identifiers and the same HL7 control ids, so seeding it
 * twice writes nothing the second time (every path it goes through is keyed on those identifiers).
 *
 * Nothing here is real: names, numbers and addresses are drawn from small lists by a seeded PRNG.
 */
import type { JourneyStage } from '../journey/stages.js';

/** A small, fast, seedable PRNG (mulberry32); `seedOf` turns a string into its 32-bit seed (FNV-1a). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function seedOf(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * What happens to a patient, and through which path:
 * - `self-referral`: Patient through the facade, `$start-journey` (awareness);
 * - `registered`: ADT A04 over MLLP (awareness);
 * - `considering`: A04, then `$advance-stage` consideration;
 * - `referred`: a referral bundle, triage still open (access);
 * - `referred-booked`: referral, triage accepted, `$find` + `$book` in the coming weeks (access);
 * - `referred-cancelled`: as booked, then `$cancel` (access, a cancellation);
 * - `booked-hl7`: SIU S12 for a future visit (access);
 * - `noshow-hl7`: S12 in the past, then S26 (access, a no-show);
 * - `noshow-careway`: S12 in the past, then `$noshow` (access, a no-show with its follow-up Task);
 * - `admitted`: ADT A01 (care);
 * - `seen`: S12 then S14 Complete (fulfilled → care), some with ORU R01 results;
 * - `results`: A04 then ORU R01 (results → care);
 * - `discharged`: A01 then A03 (recovery);
 * - `follow-up`: A01, A03, then `$advance-stage` continuous-care.
 */
export const COHORTS = {
  'self-referral': { stage: 'awareness', share: 5, minDaysAgo: 1 },
  registered: { stage: 'awareness', share: 10, minDaysAgo: 1 },
  considering: { stage: 'consideration', share: 12, minDaysAgo: 3 },
  referred: { stage: 'access', share: 8, minDaysAgo: 1 },
  'referred-booked': { stage: 'access', share: 8, minDaysAgo: 1 },
  'referred-cancelled': { stage: 'access', share: 4, minDaysAgo: 1 },
  'booked-hl7': { stage: 'access', share: 6, minDaysAgo: 1 },
  'noshow-hl7': { stage: 'access', share: 4, minDaysAgo: 10 },
  'noshow-careway': { stage: 'access', share: 4, minDaysAgo: 10 },
  admitted: { stage: 'care', share: 7, minDaysAgo: 1 },
  seen: { stage: 'care', share: 10, minDaysAgo: 14 },
  results: { stage: 'care', share: 5, minDaysAgo: 3 },
  discharged: { stage: 'recovery', share: 10, minDaysAgo: 8 },
  'follow-up': { stage: 'continuous-care', share: 7, minDaysAgo: 20 },
} as const satisfies Record<string, { stage: JourneyStage; share: number; minDaysAgo: number }>;

export type Cohort = keyof typeof COHORTS;

export interface Service {
  readonly code: string;
  readonly display: string;
  /** HL7 PV1-10 hospital service, and the Location code. */
  readonly hl7: string;
}

export const SERVICES: readonly Service[] = [
  { code: 'cardiology', display: 'Cardiology', hl7: 'CAR' },
  { code: 'orthopaedics', display: 'Orthopaedics', hl7: 'ORT' },
  { code: 'oncology', display: 'Oncology', hl7: 'ONC' },
  { code: 'diabetes', display: 'Diabetes care', hl7: 'DIA' },
  { code: 'respiratory', display: 'Respiratory medicine', hl7: 'RES' },
];

export interface Clinician {
  readonly npi: string;
  readonly family: string;
  readonly given: string;
  readonly service: string;
}

export interface PlannedPatient {
  readonly idx: number;
  readonly mrn: string;
  readonly family: string;
  readonly given: string;
  readonly gender: 'female' | 'male';
  readonly birthDate: string;
  /** E.164; unique per namespace, so a reply from it names exactly one patient. */
  readonly phone: string;
  readonly city: string;
  readonly service: string;
  /** NPI of the care manager (and the clinician who sees the patient). */
  readonly careManager: string;
  readonly cohort: Cohort;
  readonly stage: JourneyStage;
  /** When the story started, in days before the anchor day (fractional: a time of day). */
  readonly startDaysAgo: number;
  /** Sends a free-text message to the care team (an unanswered message until someone replies). */
  readonly writesIn: boolean;
  /** Has an open follow-up Task past its due date. */
  readonly overdueTask: boolean;
  /** Answers the experience survey after a completed visit: overall 1–5, likelihood to recommend 0–10. */
  readonly survey?: { readonly overall: number; readonly recommend: number; readonly daysAfter: number };
}

export interface Hospital {
  readonly ns: string;
  /** The anchor day (YYYY-MM-DD, UTC): every date is relative to it, so a re-run on a later day keeps them. */
  readonly anchor: string;
  readonly systems: {
    readonly mrn: string;
    readonly npi: string;
    readonly referral: string;
    readonly journey: string;
    readonly survey: string;
    readonly task: string;
    readonly org: string;
    readonly schedule: string;
  };
  readonly clinicians: readonly Clinician[];
  readonly patients: readonly PlannedPatient[];
}

const FAMILY = [
  'Schneider',
  'Okafor',
  'Nguyen',
  'García',
  'Kowalski',
  'Müller',
  'Haddad',
  'Rossi',
  'Johansson',
  'Yilmaz',
  'Murphy',
  'Dubois',
  'Novak',
  'Petrov',
  'Silva',
  'Cohen',
  'Kim',
  'Andersen',
  'Fischer',
  'Costa',
  'Ahmed',
  'Weber',
  'Papadopoulos',
  'Hoffmann',
  "O'Neill",
  'Bauer',
  'Santos',
  'Lindqvist',
  'Wagner',
  'Mensah',
];
const GIVEN_F = [
  'Anna',
  'Lucía',
  'Amara',
  'Mei',
  'Sofia',
  'Hannah',
  'Leila',
  'Maria',
  'Ingrid',
  'Elif',
  'Clara',
  'Zoe',
  'Nadia',
  'Grace',
  'Ida',
  'Yasmin',
  'Eva',
  'Rosa',
  'Chiara',
  'Aisha',
];
const GIVEN_M = [
  'Jonas',
  'Chinedu',
  'Minh',
  'Mateo',
  'Piotr',
  'Lukas',
  'Karim',
  'Marco',
  'Erik',
  'Emre',
  'Sean',
  'Louis',
  'Tomas',
  'Ivan',
  'João',
  'David',
  'Jun',
  'Lars',
  'Felix',
  'Kwame',
];
const CITIES = ['Berlin', 'Potsdam', 'Leipzig', 'Dresden', 'Magdeburg', 'Cottbus'];

/** Clinicians: two care managers per service. */
function cliniciansOf(rand: () => number, nsDigits: string): Clinician[] {
  return SERVICES.flatMap((s, i) =>
    [0, 1].map((k) => ({
      npi: `9${nsDigits}${String(i * 2 + k).padStart(4, '0')}`,
      family: FAMILY[Math.floor(rand() * FAMILY.length)]!,
      given: (rand() < 0.5 ? GIVEN_F : GIVEN_M)[Math.floor(rand() * 20)]!,
      service: s.code,
    })),
  );
}

/** Cohort sizes: each cohort its share of `n`, at least one each, adding up to exactly `n`. */
export function cohortSizes(n: number): Record<Cohort, number> {
  const names = Object.keys(COHORTS) as Cohort[];
  if (n < names.length) throw new Error(`the demo hospital needs at least ${names.length} patients`);
  const total = names.reduce((s, c) => s + COHORTS[c].share, 0);
  const sizes = Object.fromEntries(
    names.map((c) => [c, Math.max(1, Math.floor((COHORTS[c].share / total) * n))]),
  ) as Record<Cohort, number>;
  let left = n - names.reduce((s, c) => s + sizes[c], 0);
  // Hand out the remainder (or take back the excess) in a fixed order, so sizes are deterministic.
  for (let i = 0; left !== 0; i = (i + 1) % names.length) {
    const c = names[i]!;
    if (left > 0) {
      sizes[c]++;
      left--;
    } else if (sizes[c] > 1) {
      sizes[c]--;
      left++;
    }
  }
  return sizes;
}

/** Net-promoter-like scores: mostly promoters, some passives, a tail of detractors. */
function recommendScore(rand: () => number): number {
  const r = rand();
  if (r < 0.55) return 9 + Math.floor(rand() * 2);
  if (r < 0.8) return 7 + Math.floor(rand() * 2);
  return Math.floor(rand() * 7);
}

export interface HospitalOptions {
  /** Namespace of every business identifier (`demo` for `npm run demo`; a run tag in tests). */
  readonly ns: string;
  readonly patients: number;
  /** YYYY-MM-DD */
  readonly anchor: string;
}

export function generateHospital(o: HospitalOptions): Hospital {
  if (!/^[a-z0-9-]{1,40}$/.test(o.ns)) throw new Error('the namespace must be 1-40 of [a-z0-9-]');
  if (!/^\d{4}-\d{2}-\d{2}$/.test(o.anchor)) throw new Error('the anchor must be a YYYY-MM-DD date');
  const rand = prng(seedOf(`careway-demo:${o.ns}`));
  // Digits derived from the namespace keep phone numbers and NPIs apart between namespaces.
  const nsDigits = String(seedOf(o.ns) % 10000).padStart(4, '0');
  const base = `urn:careway:demo:${o.ns}`;
  const clinicians = cliniciansOf(rand, nsDigits);
  const sizes = cohortSizes(o.patients);
  const cohorts = (Object.keys(sizes) as Cohort[]).flatMap((c) => Array<Cohort>(sizes[c]).fill(c));
  const patients = cohorts.map((cohort, idx): PlannedPatient => {
    const gender = rand() < 0.52 ? 'female' : 'male';
    const service = SERVICES[Math.floor(rand() * SERVICES.length)]!;
    const managers = clinicians.filter((c) => c.service === service.code);
    const spec = COHORTS[cohort];
    // Stories start over the last ~3 months; each cohort needs some days for its events to have happened.
    const startDaysAgo = spec.minDaysAgo + rand() * (90 - spec.minDaysAgo);
    const visited = ['seen', 'discharged', 'follow-up'].includes(cohort);
    const birthYear = 1940 + Math.floor(rand() * 65);
    return {
      idx,
      mrn: `${o.ns.toUpperCase().replace(/-/g, '')}${String(idx + 1).padStart(5, '0')}`,
      family: FAMILY[Math.floor(rand() * FAMILY.length)]!,
      given: (gender === 'female' ? GIVEN_F : GIVEN_M)[Math.floor(rand() * 20)]!,
      gender,
      birthDate: `${birthYear}-${String(1 + Math.floor(rand() * 12)).padStart(2, '0')}-${String(1 + Math.floor(rand() * 28)).padStart(2, '0')}`,
      phone: `+49151${nsDigits}${String(idx + 1).padStart(5, '0')}`,
      city: CITIES[Math.floor(rand() * CITIES.length)]!,
      service: service.code,
      careManager: managers[Math.floor(rand() * managers.length)]!.npi,
      cohort,
      stage: spec.stage,
      startDaysAgo: Math.round(startDaysAgo * 24) / 24,
      writesIn: rand() < 0.15,
      overdueTask:
        ['admitted', 'seen', 'results', 'discharged', 'follow-up'].includes(cohort) && rand() < 0.3,
      ...(visited && rand() < 0.7
        ? {
            survey: {
              overall: Math.min(5, Math.max(1, Math.round(3.8 + (rand() - 0.35) * 3))),
              recommend: recommendScore(rand),
              daysAfter: 1 + Math.floor(rand() * 3),
            },
          }
        : {}),
    };
  });
  return {
    ns: o.ns,
    anchor: o.anchor,
    systems: {
      mrn: `${base}:mrn`,
      npi: 'urn:oid:2.16.840.1.113883.4.6',
      referral: `${base}:referral`,
      journey: `${base}:journey`,
      survey: `${base}:survey`,
      task: `${base}:task`,
      org: `${base}:organization`,
      schedule: `${base}:schedule`,
    },
    clinicians,
    patients,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Dates

const DAY = 86_400_000;

/** The anchor day's midnight (UTC) in ms. */
export const anchorMs = (h: Hospital): number => Date.parse(`${h.anchor}T00:00:00Z`);

/**
 * The times of a patient's events: `start` is when the story began; visits and discharges follow at fixed
 * offsets drawn from the patient's own PRNG, kept before the anchor day (minus a day) when they are past.
 */
export function timesOf(h: Hospital, p: PlannedPatient): { start: number; visit: number; discharge: number } {
  const rand = prng(seedOf(`${h.ns}:${p.idx}:times`));
  // Stories start during working hours (08:00-17:00 UTC).
  const day = Math.floor(p.startDaysAgo);
  const start =
    anchorMs(h) - day * DAY + (8 + Math.floor(rand() * 9)) * 3_600_000 + Math.floor(rand() * 4) * 900_000;
  const latest = anchorMs(h) - DAY;
  const within = (t: number): number => Math.min(t, latest - 4 * 3_600_000);
  // A visit is in the coming weeks for a future booking, else some days after the start (at least an hour).
  const visit =
    p.cohort === 'booked-hl7'
      ? anchorMs(h) + (3 + Math.floor(rand() * 18)) * DAY + (9 + Math.floor(rand() * 7)) * 3_600_000
      : Math.max(start + 3_600_000, within(start + (5 + Math.floor(rand() * 20)) * DAY));
  const discharge = Math.max(start + 3_600_000, within(start + (2 + Math.floor(rand() * 8)) * DAY));
  return { start, visit, discharge };
}

// ---------------------------------------------------------------------------------------------------------
// HL7 v2 feed

export interface FeedMessage {
  readonly controlId: string;
  /** Event time (ms): the feed is sent in this order. */
  readonly at: number;
  readonly mrn: string;
  readonly text: string;
}

/** HL7 DTM with an explicit UTC offset, so the receiver never guesses a zone. */
export function hl7Time(ms: number): string {
  const d = new Date(ms).toISOString();
  return `${d.slice(0, 4)}${d.slice(5, 7)}${d.slice(8, 10)}${d.slice(11, 13)}${d.slice(14, 16)}${d.slice(17, 19)}+0000`;
}

const SENDER = 'CWEHR|CWHOSP';

function fields(values: readonly string[]): string {
  return values.join('|');
}

/** The patient's messages, each keyed on a fixed control id (`<ns>-<idx>-<n>`). */
export function hl7MessagesOf(h: Hospital, p: PlannedPatient): FeedMessage[] {
  const t = timesOf(h, p);
  const service = SERVICES.find((s) => s.code === p.service)!;
  const doc = h.clinicians.find((c) => c.npi === p.careManager)!;
  const xcn = `${doc.npi}^${doc.family}^${doc.given}^^^Dr.^^^NPI&2.16.840.1.113883.4.6&ISO`;
  const mrnCx = `${p.mrn}^^^CWHOSP&${h.systems.mrn}&URI^MR`;
  const pid = fields([
    'PID',
    '1',
    '',
    mrnCx,
    '',
    `${p.family}^${p.given}`,
    '',
    p.birthDate.replace(/-/g, ''),
    p.gender === 'female' ? 'F' : 'M',
    '',
    '',
    `${10 + (p.idx % 80)} Demo Street^^${p.city}^^${10_000 + p.idx}^DEU^H`,
    '',
    `${p.phone}^PRN^CP`,
    '',
    'de^German^ISO6391',
  ]);
  const out: FeedMessage[] = [];
  let n = 0;
  const msg = (at: number, type: string, segments: string[]): void => {
    n++;
    const controlId = `${h.ns}-${p.idx + 1}-${n}`;
    const msh = `MSH|^~\\&|${SENDER}|CAREWAY|CAREWAY|${hl7Time(at)}||${type}|${controlId}|P|2.5.1`;
    out.push({ controlId, at, mrn: p.mrn, text: [msh, ...segments].join('\r') });
  };
  const visitNumber = `${p.mrn}V1^^^CWHOSP^VN`;
  const pv1 = (cls: 'I' | 'O', admit?: number, discharge?: number): string => {
    const f = Array<string>(46).fill('');
    f[0] = 'PV1';
    f[1] = '1';
    f[2] = cls;
    f[3] = `${service.hl7}${cls === 'I' ? '-WARD' : '-OPD'}^^^CWHOSP`;
    f[7] = xcn;
    f[10] = service.hl7;
    f[19] = visitNumber;
    if (admit !== undefined) f[44] = hl7Time(admit);
    if (discharge !== undefined) f[45] = hl7Time(discharge);
    return fields(f);
  };
  const adt = (trigger: string, at: number, cls: 'I' | 'O', discharge?: number): void =>
    msg(at, `ADT^${trigger}^ADT_A01`, [`EVN|${trigger}|${hl7Time(at)}`, pid, pv1(cls, t.start, discharge)]);
  const siu = (trigger: string, at: number, status: string): void => {
    const start = t.visit;
    const end = start + 30 * 60_000;
    const appt = `${p.mrn}A1`;
    msg(at, `SIU^${trigger}^SIU_S12`, [
      fields([
        'SCH',
        `${appt}^CWHOSP`,
        `F${appt}^CWEHR`,
        '',
        '',
        '',
        'NEW^New appointment^L',
        'ROUTINE^Routine^HL70276',
        'CONSULT^Consultation^HL70277',
        '30',
        'MIN',
        `^^30^${hl7Time(start)}^${hl7Time(end)}`,
        ...Array<string>(13).fill(''),
        status,
      ]),
      `TQ1|1||||||${hl7Time(start)}|${hl7Time(end)}`,
      pid,
      `PV1|1|O|${service.hl7}-OPD^^^CWHOSP`,
      'RGS|1|A',
      `AIS|1|A|${service.code}^${service.display}^L|${hl7Time(start)}|0|MIN|30|MIN`,
      `AIL|1|A|${service.hl7}-OPD^Clinic^^CWHOSP|CLINIC^Clinic^HL70305`,
      `AIP|1|A|${xcn}|ATND^Attending^HL70443`,
    ]);
  };
  const oru = (at: number): void => {
    const order = `${p.mrn}L1`;
    const high = p.idx % 3 === 0;
    msg(at, 'ORU^R01^ORU_R01', [
      pid,
      pv1('O'),
      `ORC|RE|P${order}^CWHOSP|F${order}^CWLAB||CM||||${hl7Time(at - 3 * 3_600_000)}|||${xcn}`,
      `OBR|1|P${order}^CWHOSP|F${order}^CWLAB|24323-8^Comprehensive metabolic panel^LN|||${hl7Time(at - 3 * 3_600_000)}|||||||||${xcn}||||||${hl7Time(at)}|||F`,
      `OBX|1|NM|2345-7^Glucose^LN||${high ? 131 : 92}|mg/dL|70-99|${high ? 'H' : 'N'}|||F|||${hl7Time(at - 3 * 3_600_000)}`,
      `OBX|2|NM|2160-0^Creatinine^LN||${(0.7 + (p.idx % 5) / 10).toFixed(1)}|mg/dL|0.6-1.2|N|||F|||${hl7Time(at - 3 * 3_600_000)}`,
    ]);
  };

  switch (p.cohort) {
    case 'registered':
    case 'considering':
      adt('A04', t.start, 'O');
      break;
    case 'results':
      adt('A04', t.start, 'O');
      oru(t.start + 2 * DAY);
      break;
    case 'booked-hl7':
      siu('S12', t.start, 'Booked');
      break;
    case 'noshow-hl7':
      siu('S12', t.start, 'Booked');
      siu('S26', t.visit + 2 * 3_600_000, 'Noshow');
      break;
    case 'noshow-careway':
      siu('S12', t.start, 'Booked');
      break;
    case 'seen':
      siu('S12', t.start, 'Booked');
      siu('S14', t.visit + 3_600_000, 'Complete');
      if (p.idx % 2 === 0) oru(t.visit + 6 * 3_600_000);
      break;
    case 'admitted':
      adt('A01', t.start, 'I');
      break;
    case 'discharged':
    case 'follow-up':
      adt('A01', t.start, 'I');
      adt('A03', t.discharge, 'I', t.discharge);
      break;
    case 'self-referral':
    case 'referred':
    case 'referred-booked':
    case 'referred-cancelled':
      break;
  }
  return out;
}

/** The whole feed in event-time order, as an EHR's interface engine would replay it. */
export function hl7Feed(h: Hospital): FeedMessage[] {
  return h.patients
    .flatMap((p) => hl7MessagesOf(h, p))
    .sort((a, b) => a.at - b.at || a.controlId.localeCompare(b.controlId));
}

/** The cohorts whose journeys start from a referral bundle. */
export const REFERRED: readonly Cohort[] = ['referred', 'referred-booked', 'referred-cancelled'];

/** Where the demo's referrer says it wants status updates (not on the allow-list, so Careway sends none). */
const REFERRER_ENDPOINT = 'https://gp.demo.invalid/fhir';

/**
 * A referral as the referrer's system sends it: a transaction Bundle for `POST /fhir`, or, for every third
 * patient, a message Bundle (MessageHeader → Task → ServiceRequest) for `POST /fhir/$process-message`.
 */
export function referralBundle(h: Hospital, p: PlannedPatient): Record<string, unknown> & { type: string } {
  const t = timesOf(h, p);
  const service = SERVICES.find((s) => s.code === p.service)!;
  const u = (n: number): string =>
    `urn:uuid:${String(p.idx + 1).padStart(8, '0')}-0000-4000-8000-${String(n).padStart(12, '0')}`;
  const entries = [
    {
      fullUrl: u(1),
      resource: {
        resourceType: 'Patient',
        identifier: [{ system: h.systems.mrn, value: p.mrn }],
        name: [{ family: p.family, given: [p.given] }],
        gender: p.gender,
        birthDate: p.birthDate,
        telecom: [{ system: 'phone', value: p.phone, use: 'mobile' }],
        address: [{ city: p.city, country: 'DEU' }],
      },
    },
    {
      fullUrl: u(2),
      resource: {
        resourceType: 'Practitioner',
        identifier: [{ system: h.systems.npi, value: `8${p.mrn.slice(-6)}` }],
        name: [{ family: 'Hausarzt', given: ['Dr.'] }],
      },
    },
    {
      fullUrl: u(3),
      resource: {
        resourceType: 'ServiceRequest',
        identifier: [{ system: h.systems.referral, value: `REF-${p.mrn}` }],
        status: 'active',
        intent: 'order',
        priority: p.idx % 7 === 0 ? 'urgent' : 'routine',
        category: [
          { coding: [{ system: 'http://snomed.info/sct', code: '3457005', display: 'Patient referral' }] },
        ],
        code: {
          coding: [{ system: 'urn:careway:demo:service', code: service.code, display: service.display }],
          text: `${service.display} referral`,
        },
        subject: { reference: u(1) },
        requester: { reference: u(2) },
        authoredOn: new Date(t.start).toISOString(),
      },
    },
  ];
  if (p.idx % 3 !== 0)
    return {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: entries.map((e) => ({ ...e, request: { method: 'POST', url: e.resource.resourceType } })),
    };
  return {
    resourceType: 'Bundle',
    type: 'message',
    entry: [
      {
        fullUrl: u(10),
        resource: {
          resourceType: 'MessageHeader',
          id: `msg-${p.mrn}`,
          eventCoding: {
            system: 'http://hl7.org/fhir/us/bser/CodeSystem/bser-messageheader-event',
            code: 'bser-referral-request',
          },
          source: { name: 'Demo GP system', endpoint: REFERRER_ENDPOINT },
          focus: [{ reference: u(11) }],
        },
      },
      {
        fullUrl: u(11),
        resource: { resourceType: 'Task', status: 'requested', intent: 'order', focus: { reference: u(3) } },
      },
      ...entries,
    ],
  };
}
