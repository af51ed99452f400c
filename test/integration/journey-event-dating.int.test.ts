/**
 * Stage changes raised by events are dated when the event happened (issue #16): an HL7 message's EVN-2, a
 * fulfilled Appointment's end. A feed delivered months late still gives the right time in stage, so the
 * timeline's "time in stage beyond target" pain point appears; a replay changes nothing; a late event that
 * predates the current stage is clamped to that stage's start instead of reversing the history.
 * Real HAPI and redis; every patient is unique to this file's run.
 */
import type { Appointment, EpisodeOfCare, Patient, Provenance } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readState } from '../../src/journey/episode.js';
import type { Timeline } from '../../src/journey/timeline.js';
import { startHarness, uniq, type Harness } from '../support/harness.js';

let h: Harness;
let token: string;
let reader: string;

beforeAll(async () => {
  // A 30-day target for care, so an admission two months ago is beyond it (the default is 90 days).
  h = await startHarness({
    QUEUE_PREFIX: `t${uniq()}`,
    HL7_TIMEZONE: 'America/Chicago',
    JOURNEY_STAGE_TARGETS: 'awareness=P14D,consideration=P14D,access=P21D,care=P30D,recovery=P90D',
  });
  token = await h.token({ scope: 'system/MessageHeader.cr' });
  reader = await h.token({ scope: 'user/*.rs', sub: 'clinician-dating' });
});
afterAll(async () => {
  await h.close();
});

/** An HL7 timestamp `days` days before the test started, in UTC with an explicit offset, and its FHIR form. */
const started = Date.now();
function daysAgo(days: number): { hl7: string; fhir: string } {
  const iso = new Date(started - days * 86400_000).toISOString().slice(0, 19);
  const hl7 = `${iso.replace(/[-:T]/g, '')}+0000`;
  return { hl7, fhir: `${iso}+00:00` };
}

const post = (body: string) =>
  h.app.inject({
    method: 'POST',
    url: '/hl7',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'x-application/hl7-v2+er7' },
    payload: body,
  });

async function settled(): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const counts = await h.app.hl7.queue.getJobCounts('waiting', 'active', 'delayed');
    if ((counts['waiting'] ?? 0) + (counts['active'] ?? 0) + (counts['delayed'] ?? 0) === 0) return;
    if (Date.now() > deadline) throw new Error(`inbound queue did not drain: ${JSON.stringify(counts)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const SYS = 'urn:oid:2.16.840.1.113883.19.5';
/** MSH-7 is "now-ish" (the interface engine sends the backlog today); EVN-2 is when the event happened. */
function adt(trigger: string, ctl: string, mrn: string, visit: string, evn: string): string {
  return [
    `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|${daysAgo(0).hl7}||ADT^${trigger}^ADT_A01|${ctl}|P|2.5`,
    `EVN|${trigger}|${evn}`,
    `PID|1||${mrn}^^^MAINHOSP&${SYS}&ISO^MR||Dating^Test||19800202|F`,
    `PV1|1|I|||||||||||||||||${visit}^^^MAINHOSP&${SYS}.2&ISO^VN`,
    '',
  ].join('\r');
}

async function journeyOf(mrn: string): Promise<EpisodeOfCare> {
  const [p] = await h.fhir.searchAll<Patient>('Patient', { identifier: `${SYS}|${mrn}` }, { noCache: true });
  const all = await h.fhir.searchAll<EpisodeOfCare>(
    'EpisodeOfCare',
    { patient: `Patient/${p?.id}` },
    { noCache: true },
  );
  expect(all).toHaveLength(1);
  return all[0]!;
}

const provenances = (id: string) =>
  h.fhir.searchAll<Provenance>('Provenance', { target: `EpisodeOfCare/${id}` }, { noCache: true });

describe('stage changes are dated at the event', () => {
  it('when an A01 with EVN-2 two months ago arrives late then care starts two months ago, the timeline flags time in stage, and a replay changes nothing', async () => {
    const [mrn, visit] = [uniq(), uniq()];
    const registered = daysAgo(70);
    const admitted = daysAgo(60);
    await post(adt('A04', uniq(), mrn, visit, registered.hl7));
    await settled();
    expect(readState(await journeyOf(mrn)).stageHistory).toEqual([
      { stage: 'awareness', start: registered.fhir, reason: 'hl7: ADT^A04' },
    ]);

    const a01 = adt('A01', uniq(), mrn, visit, admitted.hl7);
    await post(a01);
    await settled();
    const j = await journeyOf(mrn);
    const state = readState(j);
    expect(state.stage).toBe('care');
    expect(state.stageHistory.map((p) => [p.stage, p.start, p.end])).toEqual([
      ['awareness', registered.fhir, admitted.fhir],
      ['care', admitted.fhir, undefined],
    ]);
    // The Provenance says both: when it happened (occurred) and when Careway recorded it.
    const change = (await provenances(j.id!)).find((p) => p.activity?.text === 'stage:awareness->care');
    expect(change?.occurredDateTime).toBe(admitted.fhir);
    expect(Date.parse(change?.recorded ?? '')).toBeGreaterThan(Date.parse(admitted.fhir));

    const res = await h.app.inject({
      method: 'GET',
      url: `/journeys/${j.id}/timeline`,
      headers: { authorization: `Bearer ${reader}` },
    });
    expect(res.statusCode).toBe(200);
    const timeline = res.json<Timeline>();
    const pain = timeline.painPoints.find((p) => p.kind === 'time-in-stage');
    expect(pain).toMatchObject({ kind: 'time-in-stage', targetMs: 30 * 86400_000 });
    expect(pain?.summary).toContain('in care');

    // The same message again (an interface engine resending its backlog): no new version, no new Provenance.
    const version = j.meta?.versionId;
    const count = (await provenances(j.id!)).length;
    await post(a01);
    await post(adt('A01', uniq(), mrn, visit, admitted.hl7));
    await settled();
    expect((await journeyOf(mrn)).meta?.versionId).toBe(version);
    expect((await provenances(j.id!)).length).toBe(count);
  });

  it('when an event predates the current stage then it is dated at that stage start: no reversed or overlapping periods', async () => {
    const [mrn, visit] = [uniq(), uniq()];
    const registered = daysAgo(10);
    await post(adt('A04', uniq(), mrn, visit, registered.hl7));
    await settled();
    await post(adt('A01', uniq(), mrn, visit, daysAgo(20).hl7));
    await settled();
    const j = await journeyOf(mrn);
    expect(readState(j).stageHistory.map((p) => [p.stage, p.start, p.end])).toEqual([
      ['awareness', registered.fhir, registered.fhir],
      ['care', registered.fhir, undefined],
    ]);
    const change = (await provenances(j.id!)).find((p) => p.activity?.text === 'stage:awareness->care');
    expect(change?.occurredDateTime).toBe(registered.fhir);
  });

  it('when an S14 reports a visit complete then care starts at the Appointment end, not at the message', async () => {
    const [mrn, appt] = [uniq(), uniq()];
    const [start, end] = [daysAgo(61), daysAgo(60.98)];
    const sch = (status: string) =>
      `SCH|${appt}^STMARYS||||||CONSULT^Consultation^L||||^^^${start.hl7}^${end.hl7}||||||||||||||${status}`;
    const siu = (trigger: string, status: string, evn: string) =>
      [
        `MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|${daysAgo(0).hl7}||SIU^${trigger}^SIU_S12|${uniq()}|P|2.5.1`,
        sch(status),
        `EVN|${trigger}|${evn}`,
        `PID|1||${mrn}^^^STMARYS^MR||Dating^Test`,
        '',
      ].join('\r');
    await post(siu('S12', 'Booked', daysAgo(75).hl7));
    await settled();
    // S14 sent two days after the visit: the Appointment's own end is what dates the change.
    await post(siu('S14', 'Complete', daysAgo(59).hl7));
    await settled();
    const [p] = await h.fhir.searchAll<Patient>(
      'Patient',
      { identifier: `urn:id:STMARYS|${mrn}` },
      { noCache: true },
    );
    const [j] = await h.fhir.searchAll<EpisodeOfCare>(
      'EpisodeOfCare',
      { patient: `Patient/${p?.id}` },
      { noCache: true },
    );
    const [a] = await h.fhir.searchAll<Appointment>(
      'Appointment',
      { identifier: `urn:id:STMARYS|${appt}` },
      { noCache: true },
    );
    expect(a?.status).toBe('fulfilled');
    const history = readState(j!).stageHistory;
    expect(history.map((x) => x.stage)).toEqual(['access', 'care']);
    expect(Date.parse(history[0]!.start)).toBe(Date.parse(daysAgo(75).fhir));
    expect(Date.parse(history[1]!.start)).toBe(Date.parse(a!.end!));
    expect(Date.parse(history[1]!.start)).toBe(Date.parse(end.fhir));
  });
});
