/**
 * The composition root (src/areas.ts) without the HTTP layer, on the real HAPI and Redis: every queue of the
 * registry is opened, once, and the hooks between areas carry a change across them. An SIU that books on a
 * practitioner's Schedule goes hl7 → scheduling (the Slot is taken) → reminders (a re-plan job for that
 * Appointment); its cancellation frees the Slot again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Appointment, Practitioner, Schedule, Slot } from 'fhir/r4.js';
import { queueSpecs } from '../../src/queues/specs.js';
import { startAreas, type AreasHarness } from '../support/areas.js';
import { uniq, until } from '../support/harness.js';

let a: AreasHarness;

beforeAll(async () => {
  a = await startAreas();
});
afterAll(async () => {
  await a?.close();
});

describe('the queue registry', () => {
  it('when the areas are built then every declared queue is open once (outbound HL7 when configured), with its dead-letter queue, and nothing else', () => {
    const specs = queueSpecs(a.config);
    const opened = a.areas.queues.all();
    // Outbound HL7 is opened only when HL7_OUTBOUND_URL names the EHR (hl7-outbound.int.test.ts).
    const expected = Object.keys(specs).filter((name) => name !== 'hl7-outbound' || a.config.hl7Outbound);
    expect(opened.map((r) => r.name).sort()).toEqual(expected.sort());
    for (const r of opened) expect(r.dead?.name).toBe(specs[r.name]!.dead);
    const names = a.areas.queues.bullQueues().map((q) => q.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(
      expect.arrayContaining(['hl7-inbound-p0', 'hl7-dead', 'referral-status-dead', 'slot-holds-dead']),
    );
    expect(() => a.areas.queues.open('not-declared', async () => undefined)).toThrow(
      /not in the queue registry/,
    );
    expect(() => a.areas.queues.open('reminders', async () => undefined)).toThrow(/dead-letter|twice/);
  });
});

describe('hooks between areas', () => {
  const OID = 'urn:oid:2.16.840.1.113883.19.5.9';
  const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const hl7 = (d: Date) =>
    iso(d)
      .replace(/[-:TZ]/g, '')
      .slice(0, 14) + '+0000';
  const siu = (trigger: string, appt: string, dr: string, start: Date, end: Date, mrn: string): Buffer =>
    Buffer.from(
      [
        `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20261129083015||SIU^${trigger}^SIU_S12|${uniq()}|P|2.5`,
        `SCH|${appt}^EPIC^urn:oid:2.16.840.1.113883.19.5.3||||||CONSULT^Consultation^LOCAL||||^^^${hl7(start)}^${hl7(end)}||||||||||||||${trigger === 'S15' ? 'Cancelled' : 'Booked'}`,
        `PID|1||${mrn}^^^MAINHOSP&urn:oid:2.16.840.1.113883.19.5&ISO^MR||Roe^Richard||19800202|M`,
        'RGS|1',
        `AIP|1||${dr}^House^Gregory^^^^^^MAINHOSP&${OID}&ISO|ATT^Attending^HL70443`,
      ].join('\r') + '\r',
    );

  it('when an SIU books on a Schedule then hl7 hands the Appointment to scheduling (Slot taken) and reminders (re-planned); S15 frees it', async () => {
    const drId = `DR-${uniq()}`;
    const dr = (
      await a.fhir.create<Practitioner>({
        resourceType: 'Practitioner',
        identifier: [{ system: OID, value: drId }],
      })
    ).resource.id!;
    const sched = (
      await a.fhir.create<Schedule>({
        resourceType: 'Schedule',
        active: true,
        actor: [{ reference: `Practitioner/${dr}` }],
      })
    ).resource.id!;
    const start = new Date(Date.now() + 10 * 86400_000);
    start.setUTCHours(9, 0, 0, 0);
    const end = new Date(start.getTime() + 30 * 60_000);
    const slot = (
      await a.fhir.create<Slot>({
        resourceType: 'Slot',
        schedule: { reference: `Schedule/${sched}` },
        status: 'free',
        start: iso(start),
        end: iso(end),
      })
    ).resource.id!;
    const appt = `EHR-${uniq()}`;
    const mrn = `MRN-${uniq()}`;

    const [booked] = await a.areas.hl7.receive(siu('S12', appt, drId, start, end, mrn), 'http');
    expect(booked?.code).toBe('AA');
    const taken = await until('the Slot to be taken', async () => {
      const s = await a.fhir.read<Slot>('Slot', slot, { noCache: true });
      return s.status === 'busy' ? s : undefined;
    });
    const [written] = await a.fhir.searchAll<Appointment>(
      'Appointment',
      { identifier: `urn:oid:2.16.840.1.113883.19.5.3|${appt}` },
      { noCache: true },
    );
    expect(JSON.stringify(taken.extension)).toContain(`Appointment/${written!.id}`);
    await until('a re-plan job for the written Appointment', async () => {
      const jobs = await a.areas.reminders.plans.queue.getJobs(['waiting', 'active', 'completed'], 0, -1);
      return jobs.some((j) => j.data.appointmentId === written!.id) ? true : undefined;
    });

    const [cancelled] = await a.areas.hl7.receive(siu('S15', appt, drId, start, end, mrn), 'http');
    expect(cancelled?.code).toBe('AA');
    await until('the Slot to be free again', async () =>
      (await a.fhir.read<Slot>('Slot', slot, { noCache: true })).status === 'free' ? true : undefined,
    );
  });
});
