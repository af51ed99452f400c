/**
 * HL7 end to end: message in (POST /hl7), FHIR written on the real HAPI by the inbound worker, through the
 * declarative maps. Replays change nothing, parallel messages for one MRN make one Patient, an A01 then an
 * A03 make one finished Encounter, and a message the maps cannot take goes to the dead-letter queue.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec as execInbound } from '../../src/hl7/inbound-worker.js';
import { jobIdFor } from '../../src/hl7/intake.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { loadMappings, Mapper } from '../../src/hl7/mapping/engine.js';
import { seal } from '../../src/shared/seal.js';
import { localLock } from '../../src/shared/lock.js';
import { projectRoot } from '../../src/shared/paths.js';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type {
  AllergyIntolerance,
  Appointment,
  Encounter,
  EpisodeOfCare,
  Patient,
  Provenance,
  ServiceRequest,
  Task,
  Resource,
} from 'fhir/r4.js';
import { readState } from '../../src/journey/episode.js';
import { canonical } from '../../src/fhir/canonical.js';
import { startHarness, uniq, type Harness } from '../support/harness.js';

let h: Harness;
let token: string;
const SYS = 'urn:oid:2.16.840.1.113883.19.5';

beforeAll(async () => {
  h = await startHarness({ QUEUE_PREFIX: `t${uniq()}`, HL7_TIMEZONE: 'America/Chicago' });
  token = await h.token({ scope: 'system/MessageHeader.cr' });
});
afterAll(async () => {
  await h.close();
});

function adt(
  trigger: string,
  controlId: string,
  mrn: string,
  visit: string,
  extra: { sex?: string; discharge?: string } = {},
): string {
  const pv1 = Array.from({ length: 46 }, () => '');
  pv1[0] = 'PV1';
  pv1[1] = '1';
  pv1[2] = 'I';
  pv1[19] = `${visit}^^^MAINHOSP&${SYS}.2&ISO^VN`;
  pv1[44] = '20240115080000';
  if (extra.discharge) pv1[45] = extra.discharge;
  return [
    `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||ADT^${trigger}^ADT_A01|${controlId}|P|2.5`,
    `EVN|${trigger}|20240115083015`,
    `PID|1||${mrn}^^^MAINHOSP&${SYS}&ISO^MR||Kowalczyk^Agnieszka||19800202|${extra.sex ?? 'F'}`,
    pv1.join('|'),
    '',
  ].join('\r');
}

const post = (body: string) =>
  h.app.inject({
    method: 'POST',
    url: '/hl7',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'x-application/hl7-v2+er7' },
    payload: body,
  });

/** Waits until the app's inbound queue has nothing waiting, active or delayed (the file's app by default). */
async function settled(app: Harness['app'] = h.app): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const counts = await app.hl7.queue.getJobCounts('waiting', 'active', 'delayed');
    if ((counts['waiting'] ?? 0) + (counts['active'] ?? 0) + (counts['delayed'] ?? 0) === 0) return;
    if (Date.now() > deadline) throw new Error(`inbound queue did not drain: ${JSON.stringify(counts)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const patients = (mrn: string) =>
  h.fhir.searchAll<Patient>('Patient', { identifier: `${SYS}|${mrn}` }, { noCache: true });
const encounters = (visit: string) =>
  h.fhir.searchAll<Encounter>('Encounter', { identifier: `${SYS}.2|${visit}` }, { noCache: true });

describe('HL7 to FHIR', () => {
  it('when an A04 arrives then the Patient and Encounter are written with a Provenance; a replay writes nothing new', async () => {
    const [mrn, visit, ctl] = [uniq(), uniq(), uniq()];
    expect((await post(adt('A04', ctl, mrn, visit))).statusCode).toBe(200);
    await settled();
    const [p] = await patients(mrn);
    expect(p).toMatchObject({
      name: [{ family: 'Kowalczyk', given: ['Agnieszka'] }],
      gender: 'female',
      birthDate: '1980-02-02',
    });
    const [e] = await encounters(visit);
    expect(e).toMatchObject({
      status: 'arrived',
      class: { code: 'IMP' },
      subject: { reference: `Patient/${p?.id}` },
    });
    // The versions after the first message (which also opened the journey): replays must leave them as they are.
    const encounterVersion = e?.meta?.versionId;
    // PV1-44 had no offset: read in the sender's zone (HL7_TIMEZONE = America/Chicago, CST).
    expect(e?.period?.start).toMatch(/^2024-01-15T08:00:00(\.000)?-06:00$/);
    const provs = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `Patient/${p?.id}` },
      { noCache: true },
    );
    expect(provs).toHaveLength(1);

    // The same message again (a resend with a new MSH-10 too): no new resource, no new version.
    await post(adt('A04', ctl, mrn, visit));
    await post(adt('A04', uniq(), mrn, visit));
    await settled();
    const again = await patients(mrn);
    expect(again.map((x) => [x.id, x.meta?.versionId])).toEqual([[p?.id, '1']]);
    expect((await encounters(visit)).map((x) => x.meta?.versionId)).toEqual([encounterVersion]);
  });

  it('when an A01 and then an A03 arrive then there is one Encounter, finished with its discharge time', async () => {
    const [mrn, visit] = [uniq(), uniq()];
    await post(adt('A01', uniq(), mrn, visit));
    await post(adt('A03', uniq(), mrn, visit, { discharge: '20240120100000' }));
    await settled();
    const list = await encounters(visit);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ status: 'finished' });
    expect(list[0]?.period?.end).toMatch(/^2024-01-20T10:00:00(\.000)?-06:00$/);
  });

  it('when 64 A04s for one MRN arrive in parallel then exactly one Patient exists', async () => {
    const mrn = uniq();
    const results = await Promise.all(
      Array.from({ length: 64 }, (_, i) => post(adt('A04', `${mrn}-${i}`, mrn, `${mrn}-v`))),
    );
    expect(results.every((r) => r.statusCode === 200)).toBe(true);
    await settled();
    expect(await patients(mrn)).toHaveLength(1);
    expect(await encounters(`${mrn}-v`)).toHaveLength(1);
  });

  it('when a message cannot be mapped then it is refused at the door with AE and an ERR naming the field, and nothing is queued or written', async () => {
    const [mrn, ctl] = [uniq(), uniq()];
    const res = await post(adt('A04', ctl, mrn, uniq(), { sex: 'Q' }));
    expect(res.statusCode).toBe(422);
    const ack = Hl7Message.parse(res.body);
    expect([ack.segment('MSA')?.get(1), ack.segment('MSA')?.get(2)]).toEqual(['AE', ctl]);
    const err = ack.segment('ERR');
    // ERR-2 PID^1^8 (segment, occurrence, field), ERR-3 102 data type error, ERR-8 the reason.
    expect([err?.get(2, 1), err?.get(2, 2), err?.get(2, 3), err?.get(3, 1)]).toEqual([
      'PID',
      '1',
      '8',
      '102',
    ]);
    expect(err?.get(8)).toMatch(/PID-8: code "Q" is not in HL70001/);
    expect(await h.app.hl7.queue.getJob(jobIdFor('EPIC^MAINHOSP', ctl))).toBeUndefined();
    expect(await patients(mrn)).toHaveLength(0);
  });

  it('when intake checks are off (commit ACK only) then an unmappable message is ACKed and goes to the dead-letter queue with the reason, and nothing is written', async () => {
    const h = await startHarness({
      QUEUE_PREFIX: `t${uniq()}`,
      HL7_TIMEZONE: 'America/Chicago',
      HL7_INTAKE_CHECK: 'none',
    });
    // Its own signing key: its own token.
    const token = await h.token({ scope: 'system/MessageHeader.cr' });
    const post = (body: string) =>
      h.app.inject({
        method: 'POST',
        url: '/hl7',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'x-application/hl7-v2+er7' },
        payload: body,
      });
    try {
      const [mrn, ctl] = [uniq(), uniq()];
      expect((await post(adt('A04', ctl, mrn, uniq(), { sex: 'Q' }))).statusCode).toBe(200);
      await settled(h.app);
      const deadline = Date.now() + 10_000;
      let dead: { controlId: string; reason: string }[] = [];
      while (Date.now() < deadline && !dead.some((d) => d.controlId === ctl)) {
        dead = (
          await h.app.hl7.inbound.dead.getJobs(['waiting', 'delayed', 'completed', 'failed', 'active'])
        ).map((j) => j.data);
        await new Promise((r) => setTimeout(r, 100));
      }
      const mine = dead.find((d) => d.controlId === ctl);
      expect(mine?.reason).toMatch(/PID-8: code "Q" is not in HL70001/);
      expect(JSON.stringify(mine)).not.toContain('Kowalczyk');
      expect(await patients(mrn)).toHaveLength(0);

      // After the site adds the code to its map the message can be replayed; here the cause is not fixed, so the
      // replay fails again, and a message that is not failed cannot be replayed.
      const jobs = await h.app.hl7.queue.getJobs(['failed']);
      const failed = jobs.find((j) => j.data.controlId === ctl);
      const auth = { authorization: `Bearer ${token}` };
      const replay = await h.app.inject({
        method: 'POST',
        url: `/hl7/messages/${failed?.id}/$replay`,
        headers: auth,
      });
      expect(replay.statusCode).toBe(202);
      await settled(h.app);
      expect(await (await h.app.hl7.queue.getJob(failed?.id ?? ''))?.getState()).toBe('failed');
      const missing = await h.app.inject({
        method: 'POST',
        url: '/hl7/messages/nope/$replay',
        headers: auth,
      });
      expect(missing.statusCode).toBe(404);
    } finally {
      await h.close();
    }
  });

  function siu(trigger: string, appt: string, mrn: string, start: string, status = 'Booked'): string {
    const sch = Array.from({ length: 26 }, () => '');
    sch[0] = 'SCH';
    sch[1] = `${appt}^EPIC^${SYS}.3`;
    sch[7] = 'CONSULT^Consultation^LOCAL';
    sch[8] = 'FOLLOWUP^Follow-up^LOCAL';
    sch[11] = `^^^${start}^${start.slice(0, 10)}30`;
    sch[25] = status;
    return [
      `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||SIU^${trigger}^SIU_S12|${uniq()}|P|2.5`,
      sch.join('|'),
      `PID|1||${mrn}^^^MAINHOSP&${SYS}&ISO^MR||Nakamura^Ren||19750505|M`,
      '',
    ].join('\r');
  }

  it('when an S12 books, an S13 moves and an S15 cancels then there is one Appointment, moved, then cancelled', async () => {
    const [appt, mrn] = [uniq(), uniq()];
    const find = () =>
      h.fhir.searchAll<Appointment>('Appointment', { identifier: `${SYS}.3|${appt}` }, { noCache: true });
    await post(siu('S12', appt, mrn, '202402010900'));
    await settled();
    const [booked] = await find();
    const [p] = await patients(mrn);
    expect(booked).toMatchObject({
      status: 'booked',
      appointmentType: { coding: [{ code: 'FOLLOWUP' }] },
      // Booked by the EHR; the patient has not confirmed yet.
      participant: [{ status: 'needs-action', actor: { reference: `Patient/${p?.id}` } }],
    });
    expect(booked?.start).toMatch(/^2024-02-01T09:00:00(\.000)?-06:00$/);
    // The patient confirms (as a reply does: the participant becomes accepted); the reschedule keeps it.
    await h.fhir.update({
      ...booked!,
      id: booked!.id ?? '',
      participant: booked!.participant.map((x) => ({ ...x, status: 'accepted' as const })),
    });
    await post(siu('S13', appt, mrn, '202402031400'));
    await settled();
    const moved = await find();
    expect(moved).toHaveLength(1);
    expect(moved[0]?.start).toMatch(/^2024-02-03T14:00:00(\.000)?-06:00$/);
    expect(moved[0]?.participant[0]?.status).toBe('accepted');
    await post(siu('S15', appt, mrn, '202402031400'));
    await settled();
    expect((await find()).map((a) => a.status)).toEqual(['cancelled']);
    await post(siu('S26', appt, mrn, '202402031400'));
    await settled();
    expect((await find()).map((a) => a.status)).toEqual(['noshow']);
  });

  it('when a patient is registered, booked, admitted and discharged then the journey follows: awareness, access, care, recovery', async () => {
    const [mrn, visit, appt] = [uniq(), uniq(), uniq()];
    await post(adt('A04', uniq(), mrn, visit));
    await settled();
    const [p] = await patients(mrn);
    const journeys = () =>
      h.fhir.searchAll<EpisodeOfCare>('EpisodeOfCare', { patient: `Patient/${p?.id}` }, { noCache: true });
    const [j] = await journeys();
    expect(readState(j!).stage).toBe('awareness');
    expect((await encounters(visit))[0]?.episodeOfCare).toEqual([{ reference: `EpisodeOfCare/${j?.id}` }]);

    await post(siu('S12', appt, mrn, '202402010900'));
    await settled();
    const [a] = await h.fhir.searchAll<Appointment>(
      'Appointment',
      { identifier: `${SYS}.3|${appt}` },
      { noCache: true },
    );
    expect(
      a?.extension?.find((e) => e.url === canonical.journeyReferenceExtension)?.valueReference?.reference,
    ).toBe(`EpisodeOfCare/${j?.id}`);
    await post(adt('A01', uniq(), mrn, visit));
    await post(adt('A03', uniq(), mrn, visit, { discharge: '20240220100000' }));
    await settled();
    const all = await journeys();
    expect(all).toHaveLength(1);
    expect(readState(all[0]!).stageHistory.map((x) => x.stage)).toEqual([
      'awareness',
      'access',
      'care',
      'recovery',
    ]);
  });

  it('when an S15 cancels the booking that moved the journey, or an A11 the admission, then the journey goes back', async () => {
    const [mrn, visit, appt] = [uniq(), uniq(), uniq()];
    await post(adt('A04', uniq(), mrn, visit));
    await post(siu('S12', appt, mrn, '202402010900'));
    await settled();
    const [p] = await patients(mrn);
    const journey = async () =>
      (
        await h.fhir.searchAll<EpisodeOfCare>(
          'EpisodeOfCare',
          { patient: `Patient/${p?.id}` },
          { noCache: true },
        )
      )[0]!;
    expect(readState(await journey()).stage).toBe('access');
    await post(siu('S15', appt, mrn, '202402010900', 'Cancelled'));
    await settled();
    const back = readState(await journey());
    expect(back.stage).toBe('awareness');
    expect(back.stageHistory.at(-1)?.reason).toBe('undo: appointment-booked');
    // A replayed cancel, or one for a booking that no longer set the stage, changes nothing.
    const version = (await journey()).meta?.versionId;
    await post(siu('S15', appt, mrn, '202402010900', 'Cancelled'));
    await settled();
    expect((await journey()).meta?.versionId).toBe(version);

    await post(adt('A01', uniq(), mrn, visit));
    await settled();
    expect(readState(await journey()).stage).toBe('care');
    await post(adt('A11', uniq(), mrn, visit));
    await settled();
    expect(readState(await journey()).stage).toBe('awareness');
    expect((await encounters(visit))[0]?.status).toBe('cancelled');
  });

  it('when an A40 merges two records then the retired one links to the survivor and its journey moves; a replay changes nothing', async () => {
    const [keep, gone] = [uniq(), uniq()];
    await post(adt('A04', uniq(), keep, `${keep}-v`));
    await post(adt('A04', uniq(), gone, `${gone}-v`));
    await settled();
    const [survivor] = await patients(keep);
    const [retired] = await patients(gone);
    const a40 = (ctl: string) =>
      [
        `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240116083015||ADT^A40^ADT_A39|${ctl}|P|2.5`,
        'EVN|A40|20240116083015',
        `PID|1||${keep}^^^MAINHOSP&${SYS}&ISO^MR||Kowalczyk^Agnieszka||19800202|F`,
        `MRG|${gone}^^^MAINHOSP&${SYS}&ISO^MR`,
        '',
      ].join('\r');
    const ctl = uniq();
    await post(a40(ctl));
    await settled();
    const after = await h.fhir.read<Patient>('Patient', retired?.id ?? '', { noCache: true });
    expect(after.active).toBe(false);
    expect(after.link).toEqual([{ other: { reference: `Patient/${survivor?.id}` }, type: 'replaced-by' }]);
    const kept = await h.fhir.read<Patient>('Patient', survivor?.id ?? '', { noCache: true });
    expect(kept.link).toEqual([{ other: { reference: `Patient/${retired?.id}` }, type: 'replaces' }]);
    const moved = await h.fhir.searchAll<EpisodeOfCare>(
      'EpisodeOfCare',
      { patient: `Patient/${retired?.id}` },
      { noCache: true },
    );
    expect(moved).toHaveLength(0);
    const survivorJourneys = await h.fhir.searchAll<EpisodeOfCare>(
      'EpisodeOfCare',
      { patient: `Patient/${survivor?.id}` },
      { noCache: true },
    );
    expect(survivorJourneys).toHaveLength(2);
    const version = after.meta?.versionId;
    const survivorVersion = kept.meta?.versionId;
    await post(a40(uniq()));
    // A later update for the survivor keeps the merge link: it belongs to Careway, not to the sender's message.
    await post(adt('A08', uniq(), keep, `${keep}-v`));
    await settled();
    expect(
      (await h.fhir.read<Patient>('Patient', retired?.id ?? '', { noCache: true })).meta?.versionId,
    ).toBe(version);
    const survivorNow = await h.fhir.read<Patient>('Patient', survivor?.id ?? '', { noCache: true });
    expect(survivorNow.meta?.versionId).toBe(survivorVersion);
    expect(survivorNow.link).toEqual(kept.link);
  });

  it('when a message writes an Appointment then the written hook gets it with its server id, after the commit', async () => {
    const root = join(projectRoot(), 'mappings');
    const key = randomBytes(32);
    const appt = uniq();
    const seen: { written: string[]; stored: string[] }[] = [];
    const deps = {
      fhir: h.fhir,
      mapper: new Mapper(await loadMappings([root], join(root, 'schema.json'))),
      key,
      lock: localLock(),
      zones: { defaultZone: 'UTC', bySender: {} },
      onWritten: async (written: readonly Resource[]) => {
        const stored = await h.fhir.searchAll(
          'Appointment',
          { identifier: `${SYS}.3|${appt}` },
          { noCache: true },
        );
        seen.push({
          written: written.map((r) => `${r.resourceType}/${r.id ?? '?'}`),
          stored: stored.map((r) => `Appointment/${r.id}`),
        });
      },
    };
    const text = siu('S12', appt, uniq(), '202403010900');
    const data = {
      sender: 'EPIC^MAINHOSP',
      controlId: uniq(),
      type: 'SIU^S12',
      receivedAt: new Date().toISOString(),
      charset: 'utf-8' as const,
      raw: seal(Buffer.from(text), key),
    };
    await execInbound({ id: `hook-${uniq()}`, data }, deps);
    // Called once, after the commit (the Appointment is stored), with the written resources and their server ids.
    expect(seen).toHaveLength(1);
    const [call] = seen;
    expect(call!.stored).toHaveLength(1);
    expect(call!.written).toContain(call!.stored[0]);
    expect(call!.written.every((r) => !r.endsWith('/?'))).toBe(true);
  });
});

describe('HL7 as real feeds send it', () => {
  const ns = (trigger: string, ctl: string, mrn: string, rest: string[]) =>
    [
      `MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|20240115083015||${trigger}|${ctl}|P|2.5.1`,
      ...rest.map((r) => r.replaceAll('{MRN}', mrn)),
      '',
    ].join('\r');
  const byNs = (mrn: string) =>
    h.fhir.searchAll<Patient>('Patient', { identifier: `urn:id:STMARYS|${mrn}` }, { noCache: true });

  it('when identifiers carry a namespace only then they are keyed urn:id:<namespace>, counted, and listed at GET /hl7/authorities', async () => {
    const mrn = uniq();
    const res = await post(
      ns('ADT^A04^ADT_A01', uniq(), mrn, [
        'EVN|A04|20240115083015',
        'PID|1||{MRN}^^^STMARYS^MR||Okafor^Chidi||19610412|M',
        `PV1|1|O|CLINIC||||||||||||||||V-{MRN}^^^STMARYS^VN`,
      ]),
    );
    expect(res.statusCode).toBe(200);
    await settled();
    const [p] = await byNs(mrn);
    expect(p?.identifier?.[0]).toMatchObject({ system: 'urn:id:STMARYS', value: mrn });
    const [e] = await h.fhir.searchAll<Encounter>(
      'Encounter',
      { identifier: `urn:id:STMARYS|V-${mrn}` },
      { noCache: true },
    );
    expect(e?.subject?.reference).toBe(`Patient/${p?.id}`);
    const list = await h.app.inject({
      method: 'GET',
      url: '/hl7/authorities',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(list.statusCode).toBe(200);
    const body = list.json<{
      default: string;
      defaulted: { namespace: string; system: string; messages: number }[];
    }>();
    expect(body.default).toBe('urn:id:{namespace}');
    expect(body.defaulted.find((d) => d.namespace === 'STMARYS')).toMatchObject({ system: 'urn:id:STMARYS' });
    expect(body.defaulted.find((d) => d.namespace === 'STMARYS')?.messages).toBeGreaterThanOrEqual(1);
    const metrics = await h.app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { authorization: `Bearer ${await h.token({ scope: 'system/*.r' })}` },
    });
    expect(metrics.body).toMatch(/careway_hl7_authority_defaults_total\{namespace="STMARYS"[^}]*\} [1-9]/);
    // Names and MRNs never reach the listing or the metrics.
    expect(list.body + metrics.body).not.toContain('Okafor');
    expect(list.body + metrics.body).not.toContain(mrn);
    // A patient token may not read the listing.
    const patientToken = await h.token({ scope: 'patient/*.rs', patient: p?.id ?? 'x' });
    const denied = await h.app.inject({
      method: 'GET',
      url: '/hl7/authorities',
      headers: { authorization: `Bearer ${patientToken}` },
    });
    expect(denied.statusCode).toBe(403);
  });

  it('when an A08 follows a change Careway made then the EHR fields change and preferences, time zone, opt-out and language survive; a replay changes nothing', async () => {
    const mrn = uniq();
    const pid = (rest: string) => `PID|1||{MRN}^^^STMARYS^MR||Okafor^Chidi||19610412|M|||${rest}`;
    await post(
      ns('ADT^A04^ADT_A01', uniq(), mrn, ['EVN|A04', pid('1 Old St^^Albany^NY||^PRN^PH^^1^518^5550101')]),
    );
    await settled();
    const [before] = await byNs(mrn);
    expect(before?.telecom?.[0]).toMatchObject({ system: 'phone', value: '5185550101', use: 'home' });
    const careway = [
      { url: canonical.engagementOptOutExtension, valueCode: 'sms' },
      { url: canonical.timezoneExtension, valueCode: 'America/New_York' },
      {
        url: canonical.schedulingPreferencesExtension,
        extension: [{ url: 'timeOfDay', valueCode: 'morning' }],
      },
    ];
    await h.fhir.update({
      ...before!,
      id: before!.id ?? '',
      extension: careway,
      communication: [{ language: { coding: [{ system: 'urn:ietf:bcp:47', code: 'ig' }] }, preferred: true }],
    });
    const a08 = ns('ADT^A08^ADT_A01', uniq(), mrn, ['EVN|A08', pid('9 New Rd^^Troy^NY||""')]);
    await post(a08);
    await settled();
    const [after] = await byNs(mrn);
    expect(after?.address).toEqual([{ line: ['9 New Rd'], city: 'Troy', state: 'NY' }]);
    // PID-13 "" cleared the phone; PID-15 was empty, so the patient's language stays.
    expect(after?.telecom).toBeUndefined();
    expect(after?.extension).toEqual(careway);
    expect(after?.communication?.[0]?.language.coding?.[0]?.code).toBe('ig');
    const version = after?.meta?.versionId;
    await post(
      a08
        .replace(/\|P\|2\.5\.1/, '|P|2.5.1')
        .replace(/ADT\^A08\^ADT_A01\|[^|]+\|/, `ADT^A08^ADT_A01|${uniq()}|`),
    );
    await settled();
    expect((await byNs(mrn))[0]?.meta?.versionId).toBe(version);
  });

  it('when a REF^I12 arrives then a requested triage Task waits and the journey opens at access; accepting the Task is what advances it', async () => {
    const [mrn, ref] = [uniq(), uniq()];
    await post(
      ns('REF^I12^REF_I12', uniq(), mrn, [
        `RF1|P^Pending^HL70283|R^Routine^HL70280|CARD^Cardiology^L|||${ref}^STMARYS|20240110090000`,
        'PID|1||{MRN}^^^STMARYS^MR||Okafor^Chidi||19610412|M',
        'PRD|RP|Welby^Marcus|||||GP55^NPI',
      ]),
    );
    await settled();
    const [sr] = await h.fhir.searchAll<ServiceRequest>(
      'ServiceRequest',
      { identifier: `urn:id:STMARYS|${ref}` },
      { noCache: true },
    );
    expect(sr).toBeDefined();
    const [task] = await h.fhir.searchAll<Task>(
      'Task',
      { identifier: `${canonical.triageTaskSystem}|urn:id:STMARYS|${ref}` },
      { noCache: true },
    );
    expect(task).toMatchObject({
      status: 'requested',
      focus: { reference: `ServiceRequest/${sr?.id}` },
      requester: { identifier: { value: 'EPIC^STMARYS' } },
    });
    const [p] = await byNs(mrn);
    const [j] = await h.fhir.searchAll<EpisodeOfCare>(
      'EpisodeOfCare',
      { patient: `Patient/${p?.id}` },
      { noCache: true },
    );
    expect(readState(j!).stage).toBe('access');
    // An I13 update does not reset triage: the Task keeps the status triage gave it.
    const tok = await h.token({ scope: 'system/Task.ru' });
    const accepted = await h.app.inject({
      method: 'POST',
      url: `/fhir/Task/${task?.id}/$accept`,
      headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/fhir+json' },
      payload: { resourceType: 'Parameters' },
    });
    expect(accepted.statusCode).toBe(200);
    await post(
      ns('REF^I13^REF_I12', uniq(), mrn, [
        `RF1|A^Accepted^HL70283|S^Stat^HL70280|CARD^Cardiology^L|||${ref}^STMARYS|20240110090000`,
        'PID|1||{MRN}^^^STMARYS^MR||Okafor^Chidi||19610412|M',
      ]),
    );
    await settled();
    const [again] = await h.fhir.searchAll<Task>('Task', { _id: task?.id ?? '' }, { noCache: true });
    expect(again?.status).toBe('accepted');
  });

  it('when an S14 reports the visit complete then the journey moves to care, with a Provenance naming the Appointment', async () => {
    const [mrn, appt] = [uniq(), uniq()];
    const sch = (status: string) =>
      `SCH|${appt}^STMARYS||||||CONSULT^Consultation^L||||^^^202402010900^202402010930||||||||||||||${status}`;
    await post(
      ns('SIU^S12^SIU_S12', uniq(), mrn, [sch('Booked'), 'PID|1||{MRN}^^^STMARYS^MR||Okafor^Chidi']),
    );
    await settled();
    const [p] = await byNs(mrn);
    const journeys = () =>
      h.fhir.searchAll<EpisodeOfCare>('EpisodeOfCare', { patient: `Patient/${p?.id}` }, { noCache: true });
    expect(readState((await journeys())[0]!).stage).toBe('access');
    await post(
      ns('SIU^S14^SIU_S12', uniq(), mrn, [sch('Complete'), 'PID|1||{MRN}^^^STMARYS^MR||Okafor^Chidi']),
    );
    await settled();
    const [j] = await journeys();
    expect(readState(j!).stage).toBe('care');
    const [a] = await h.fhir.searchAll<Appointment>(
      'Appointment',
      { identifier: `urn:id:STMARYS|${appt}` },
      { noCache: true },
    );
    expect(a?.status).toBe('fulfilled');
    const provs = await h.fhir.searchAll<Provenance>(
      'Provenance',
      { target: `EpisodeOfCare/${j?.id}` },
      { noCache: true },
    );
    expect(JSON.stringify(provs)).toContain(`Appointment/${a?.id}`);
  });
});

describe('a site adds a message type', () => {
  it('when a site map in MAPPINGS_DIR takes ADT^A60 then the intake accepts it (no code change), it is written, and its declared journey effect applies', async () => {
    const site = mkdtempSync(join(tmpdir(), 'careway-site-'));
    mkdirSync(join(site, 'messages'));
    writeFileSync(
      join(site, 'messages', 'ADT_A60[Bundle].yaml'),
      [
        'kind: message',
        'source: ADT_A60',
        'target: Bundle',
        'triggers: [A60]',
        'resources:',
        "  - { id: patient, segment: PID, map: 'PID[Patient]', key: 'identifier', required: true }",
        '  - id: allergy',
        '    segment: AL1',
        "    map: 'AL1[AllergyIntolerance]'",
        "    key: 'identifier'",
        '    repeat: true',
        "    identity: { system: 'https://site.example/sid/allergy', from: ['patient', 'code.coding[0].code'] }",
        "    refs: { 'patient': patient }",
        'unmapped: [EVN, PV1]',
        'journey:',
        '  A60: { opens: awareness }',
        '',
      ].join('\n'),
    );
    const site2 = await startHarness({ QUEUE_PREFIX: `t${uniq()}`, MAPPINGS_DIR: site });
    try {
      const tok = await site2.token({ scope: 'system/MessageHeader.cr' });
      const mrn = uniq();
      const res = await site2.app.inject({
        method: 'POST',
        url: '/hl7',
        headers: { authorization: `Bearer ${tok}`, 'content-type': 'x-application/hl7-v2+er7' },
        payload: [
          `MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|20240115083015||ADT^A60^ADT_A60|${uniq()}|P|2.5.1`,
          'EVN|A60',
          `PID|1||${mrn}^^^STMARYS^MR||Okafor^Chidi||19610412|M`,
          'AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives',
          '',
        ].join('\r'),
      });
      expect(Hl7Message.parse(res.body).segment('MSA')?.get(1)).toBe('AA');
      const deadline = Date.now() + 30_000;
      let found: AllergyIntolerance[] = [];
      while (found.length === 0 && Date.now() < deadline) {
        found = await site2.fhir.searchAll<AllergyIntolerance>(
          'AllergyIntolerance',
          { identifier: `https://site.example/sid/allergy|${mrn}|70618` },
          { noCache: true },
        );
        if (found.length === 0) await new Promise((r) => setTimeout(r, 200));
      }
      expect(found).toHaveLength(1);
      // Its journey effect comes from the site's map too: the first contact opened a journey.
      const [p] = await site2.fhir.searchAll<Patient>(
        'Patient',
        { identifier: `urn:id:STMARYS|${mrn}` },
        { noCache: true },
      );
      const [j] = await site2.fhir.searchAll<EpisodeOfCare>(
        'EpisodeOfCare',
        { patient: `Patient/${p?.id}` },
        { noCache: true },
      );
      expect(readState(j!).stage).toBe('awareness');
    } finally {
      await site2.close();
    }
  });
});
