/**
 * The chaos suite's HL7 feed: ADT A01/A08/A03 and SIU S12/S14 for a set of patients, shaped as bench P1/P3 make
 * them (namespace-only assigning authorities, as real feeds send them), interleaved across patients but in
 * order per patient, deterministic for a seed.
 *
 * Every message carries its feed position (`seq`) as a marker in each resource it writes: the Patient's street
 * (PID-11), the Encounter's visit description (PV2-12) and the Appointment's comment (NTE-3). So each message
 * implies exactly one new version of each resource it touches, and the FHIR server's own history says which
 * message each version came from: a missing marker is a lost message, a repeated one an extra version from a
 * replay, markers out of feed order a broken per-patient order.
 */

/** Which resources a message writes, by business key, so the check knows what to expect. */
export interface FeedMessage {
  readonly seq: number;
  readonly patient: number;
  readonly controlId: string;
  readonly type: string;
  readonly text: string;
  /** Business identifier values this message writes (Patient MRN, visit number, appointment id). */
  readonly patientKey: string;
  readonly encounterKey?: string;
  readonly appointmentKey?: string;
}

export interface Feed {
  readonly run: string;
  readonly messages: readonly FeedMessage[];
  readonly patients: number;
}

/** A small seeded PRNG (mulberry32): the same seed gives the same feed and the same faults. */
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

/** Markers as the check reads them back from the stored resources. */
export const markers = {
  patient: (seq: number): string => `${seq} Main St`,
  encounter: (seq: number): string => `step ${seq}`,
  appointment: (seq: number): string => `note ${seq}`,
  read: (text: string | undefined): number | undefined => {
    const m = /^(?:(\d+) Main St|step (\d+)|note (\d+))$/.exec(text ?? '');
    const n = m?.[1] ?? m?.[2] ?? m?.[3];
    return n === undefined ? undefined : Number(n);
  },
};

const ts = (base: number, seconds: number): string =>
  new Date(base + seconds * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14);

type Step = { kind: 'A01' | 'A08' | 'A03'; visit: number } | { kind: 'S12' | 'S14'; appointment: number };

/** One patient's story: admitted, updated, booked, rebooked, discharged, admitted again… */
function script(count: number, rnd: () => number): Step[] {
  const steps: Step[] = [{ kind: 'A01', visit: 1 }];
  let visit = 1;
  let admitted = true;
  let appointments = 0;
  while (steps.length < count) {
    const r = rnd();
    if (r < 0.35) steps.push({ kind: 'A08', visit });
    else if (r < 0.5 || appointments === 0) steps.push({ kind: 'S12', appointment: ++appointments });
    else if (r < 0.75) steps.push({ kind: 'S14', appointment: 1 + Math.floor(rnd() * appointments) });
    else if (admitted) {
      steps.push({ kind: 'A03', visit });
      admitted = false;
    } else {
      steps.push({ kind: 'A01', visit: ++visit });
      admitted = true;
    }
  }
  return steps;
}

function message(run: string, seq: number, patient: number, step: Step): FeedMessage {
  const base = Date.UTC(2030, 0, 1);
  const now = ts(base, seq);
  const mrn = `${run}-M${patient}`;
  const pid = `PID|1||${mrn}^^^STMARYS^MR||Doe${patient}^Jane||19700101|F|||${markers.patient(seq)}^^Albany^NY^12207`;
  const controlId = `${run}-${seq}`;
  if (step.kind === 'S12' || step.kind === 'S14') {
    const appointment = `${run}-A${patient}-${step.appointment}`;
    const sch = Array.from({ length: 26 }, () => '');
    sch[0] = 'SCH';
    sch[1] = `${appointment}^STMARYS`;
    sch[8] = 'FOLLOWUP^Follow-up^LOCAL';
    // Far ahead, and moved by each S14: no reminder or no-show is due during a run.
    const start = ts(Date.UTC(2031, 0, 1), seq * 60);
    const end = ts(Date.UTC(2031, 0, 1), seq * 60 + 1800);
    sch[11] = `^^^${start}^${end}`;
    sch[25] = 'Booked';
    const text = [
      `MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|${now}||SIU^${step.kind}^SIU_S12|${controlId}|P|2.5.1`,
      sch.join('|'),
      pid,
      `NTE|1||${markers.appointment(seq)}`,
      '',
    ].join('\r');
    return {
      seq,
      patient,
      controlId,
      type: `SIU^${step.kind}`,
      text,
      patientKey: mrn,
      appointmentKey: appointment,
    };
  }
  const visit = `${run}-V${patient}-${(step as { visit: number }).visit}`;
  const pv1 = Array.from({ length: 46 }, () => '');
  pv1[0] = 'PV1';
  pv1[2] = 'I';
  pv1[3] = 'WARD^^^STMARYS';
  pv1[19] = `${visit}^^^STMARYS^VN`;
  pv1[44] = ts(base, seq - 1);
  if (step.kind === 'A03') pv1[45] = now;
  const pv2 = Array.from({ length: 13 }, () => '');
  pv2[0] = 'PV2';
  pv2[12] = markers.encounter(seq);
  const text = [
    `MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|${now}||ADT^${step.kind}^ADT_A01|${controlId}|P|2.5.1`,
    `EVN|${step.kind}|${now}`,
    pid,
    pv1.join('|'),
    pv2.join('|'),
    '',
  ].join('\r');
  return {
    seq,
    patient,
    controlId,
    type: `ADT^${step.kind}`,
    text,
    patientKey: mrn,
    encounterKey: visit,
  };
}

/**
 * `messages` messages for `patients` patients, about the same number each, shuffled across patients with each
 * patient's own messages in story order.
 */
export function makeFeed(run: string, messages: number, patients: number, seed = 17): Feed {
  const rnd = prng(seed);
  const per = Array.from(
    { length: patients },
    (_, p) => Math.floor(messages / patients) + (p < messages % patients ? 1 : 0),
  );
  const scripts = per.map((n) => script(n, rnd));
  const order = per.flatMap((n, p) => Array.from({ length: n }, () => p));
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const next = per.map(() => 0);
  const out = order.map((p, seq) => message(run, seq, p, scripts[p]![next[p]!++]!));
  return { run, messages: out, patients };
}
