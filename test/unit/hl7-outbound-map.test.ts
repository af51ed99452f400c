/**
 * The outbound map engine (FHIR → HL7 v2), pure: the built-in maps in mappings/outbound/ load and validate, a
 * view becomes the SIU each change sends with the right fields in the right segments (read back with Careway's
 * own parser), values are escaped, absent values write nothing, a site's MAPPINGS_DIR overrides by file name,
 * and broken maps are refused with every problem named.
 */
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Appointment, Location, Patient, Practitioner } from 'fhir/r4.js';
import {
  fhirToHl7DateTime,
  loadOutboundMaps,
  OutboundMapError,
  OutboundMapper,
  resolve,
  systemToHd,
  type OutboundMaps,
} from '../../src/hl7/outbound/engine.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { projectRoot } from '../../src/shared/paths.js';
import type { AuthorityRegistry } from '../../src/hl7/mapping/authorities.js';

const ROOT = join(projectRoot(), 'mappings', 'outbound');
const SCHEMA = join(ROOT, 'schema.json');
const registry: AuthorityRegistry = {
  default: 'urn:id:{namespace}',
  namespaces: new Map([['STMARYS', 'urn:oid:2.16.840.1.113883.3.7001']]),
};

let maps: OutboundMaps;
beforeAll(async () => {
  maps = await loadOutboundMaps([ROOT], SCHEMA);
});

const patient: Patient = {
  resourceType: 'Patient',
  id: 'p1',
  identifier: [
    {
      system: 'urn:oid:2.16.840.1.113883.3.7001',
      value: 'MRN100234',
      type: { coding: [{ code: 'MR' }] },
    },
    { system: 'urn:id:NORTHGEN', value: 'NG-77' },
  ],
  name: [{ family: 'Müller|Smith', given: ['Ana', 'Maria'] }],
  birthDate: '1980-04-02',
  gender: 'female',
};
const practitioner: Practitioner = {
  resourceType: 'Practitioner',
  id: 'pr1',
  identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' }],
  name: [{ family: 'House', given: ['Greg'], prefix: ['Dr'] }],
};
const location: Location = { resourceType: 'Location', id: 'l1', name: 'Clinic 3' };

function appointment(extra: Partial<Appointment> = {}): Appointment {
  return {
    resourceType: 'Appointment',
    id: 'a2',
    status: 'booked',
    serviceType: [{ coding: [{ system: 'urn:example:svc', code: 'CARDIO', display: 'Cardiology' }] }],
    start: '2026-03-02T09:00:00+01:00',
    end: '2026-03-02T09:30:00+01:00',
    participant: [
      { actor: { reference: 'Patient/p1' }, status: 'needs-action' },
      { actor: { reference: 'Practitioner/pr1' }, status: 'accepted' },
      { actor: { reference: 'Location/l1' }, status: 'accepted' },
    ],
    ...extra,
  };
}

function view(a: Appointment = appointment(), more: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    header: {
      sendingApplication: 'CAREWAY',
      sendingFacility: 'STMARYS',
      receivingApplication: 'EHR',
      receivingFacility: '',
      time: '2026-02-01T10:00:00Z',
      controlId: 'CW0123456789ABCDEF01',
    },
    appointment: a,
    timing: { start: a.start, end: a.end, minutes: 30 },
    ids: { placer: { value: 'a1', namespace: 'CAREWAY' } },
    patient,
    practitioners: [{ resource: practitioner, participant: a.participant[1] }],
    locations: [{ resource: location, participant: a.participant[2] }],
    ...more,
  };
}

const build = (change: 'booked' | 'rescheduled' | 'cancelled' | 'noshow', v = view()) => {
  const out = new OutboundMapper(maps, registry).build(change, v);
  if (!out) throw new Error('no message');
  return { ...out, msg: Hl7Message.parse(out.er7) };
};

describe('the built-in outbound maps', () => {
  it('when loaded then one message map sends every change, each with its trigger', () => {
    const mapper = new OutboundMapper(maps, registry);
    expect(mapper.messageFor('booked')?.trigger).toBe('S12');
    expect(mapper.messageFor('rescheduled')?.trigger).toBe('S14');
    expect(mapper.messageFor('cancelled')?.trigger).toBe('S15');
    expect(mapper.messageFor('noshow')?.trigger).toBe('S26');
  });

  it('when a booking is mapped then the segments come in SIU_S12 order', () => {
    const { msg } = build('booked');
    expect(msg.segments.map((s) => s.name)).toEqual([
      'MSH',
      'SCH',
      'TQ1',
      'PID',
      'PV1',
      'RGS',
      'AIS',
      'AIL',
      'AIP',
    ]);
  });

  it('when a booking is mapped then MSH names Careway, the EHR, SIU^S12^SIU_S12, the control id and v2.5.1', () => {
    const { msg, er7 } = build('booked');
    expect(er7.startsWith('MSH|^~\\&|CAREWAY|STMARYS|EHR||20260201100000+0000||SIU^S12^SIU_S12|')).toBe(true);
    expect(msg.type).toEqual({ code: 'SIU', trigger: 'S12', structure: 'SIU_S12' });
    expect(msg.controlId).toBe('CW0123456789ABCDEF01'); // MSH-10
    expect(msg.msh.get(11)).toBe('P'); // MSH-11
    expect(msg.version).toBe('2.5.1'); // MSH-12
    expect(msg.msh.get(18)).toBe('UNICODE UTF-8'); // MSH-18
  });

  it('when a booking is mapped then SCH and TQ1 carry the ids, times, duration and status', () => {
    const sch = build('booked').msg.segment('SCH')!;
    expect(sch.get(1, 1)).toBe('a1'); // SCH-1.1 placer id: the chain's first booking
    expect(sch.get(1, 2)).toBe('CAREWAY'); // SCH-1.2 namespace
    expect(sch.raw(2)).toBe(''); // SCH-2: no EHR id for a Careway booking
    expect(sch.get(9)).toBe('30'); // SCH-9 duration
    expect(sch.get(10)).toBe('min'); // SCH-10 units
    expect(sch.get(11, 4)).toBe('20260302090000+0100'); // SCH-11.4 start, offset kept
    expect(sch.get(11, 5)).toBe('20260302093000+0100'); // SCH-11.5 end
    expect(sch.get(25)).toBe('Booked'); // SCH-25 table 0278
    const tq1 = build('booked').msg.segment('TQ1')!;
    expect(tq1.get(1)).toBe('1');
    expect(tq1.get(7)).toBe('20260302090000+0100'); // TQ1-7
    expect(tq1.get(8)).toBe('20260302093000+0100'); // TQ1-8
  });

  it('when a booking is mapped then PID lists every identifier with its authority, the name escaped', () => {
    const pid = build('booked').msg.segment('PID')!;
    expect(pid.repetitions(3)).toBe(2);
    expect(pid.get(3, 1)).toBe('MRN100234'); // CX.1
    expect(pid.get(3, 4, 1)).toBe('STMARYS'); // CX.4.1: the registry's namespace for this OID
    expect(pid.get(3, 4, 2)).toBe('2.16.840.1.113883.3.7001'); // CX.4.2 universal id
    expect(pid.get(3, 4, 3)).toBe('ISO'); // CX.4.3
    expect(pid.get(3, 5)).toBe('MR'); // CX.5
    expect(pid.get(3, 1, 1, 1)).toBe('NG-77');
    expect(pid.get(3, 4, 1, 1)).toBe('NORTHGEN'); // the default rule urn:id:<namespace>, reversed
    expect(pid.get(5, 1)).toBe('Müller|Smith'); // XPN.1, the | escaped as \F\
    expect(pid.raw(5)).toContain('M\u00fcller\\F\\Smith');
    expect(pid.get(5, 2)).toBe('Ana'); // XPN.2
    expect(pid.get(5, 3)).toBe('Maria'); // XPN.3
    expect(pid.get(7)).toBe('19800402'); // PID-7
    expect(pid.get(8)).toBe('F'); // PID-8 table 0001
  });

  it('when a booking is mapped then PV1, RGS, AIS, AIL and AIP describe the visit and its resources', () => {
    const { msg } = build('booked');
    const pv1 = msg.segment('PV1')!;
    expect(pv1.get(2)).toBe('O'); // PV1-2 outpatient
    expect(pv1.get(3)).toBe('Clinic 3'); // PV1-3.1
    expect(pv1.get(7, 1)).toBe('1234567893'); // PV1-7 XCN.1
    expect(msg.segment('RGS')!.get(1)).toBe('1');
    const ais = msg.segment('AIS')!;
    expect(ais.components(3)).toEqual(['CARDIO', 'Cardiology', 'urn:example:svc']); // AIS-3 CWE
    expect(ais.get(4)).toBe('20260302090000+0100');
    expect(ais.get(10)).toBe('Booked');
    const ail = msg.segment('AIL')!;
    expect(ail.get(1)).toBe('1'); // AIL-1 set id from index
    expect(ail.get(3, 1)).toBe('Clinic 3'); // AIL-3.1
    const aip = msg.segment('AIP')!;
    expect(aip.get(1)).toBe('1');
    expect(aip.get(3, 1)).toBe('1234567893'); // XCN.1
    expect(aip.get(3, 2)).toBe('House'); // XCN.2
    expect(aip.get(3, 3)).toBe('Greg'); // XCN.3
    expect(aip.get(3, 6)).toBe('Dr'); // XCN.6
    expect(aip.get(3, 9, 2)).toBe('http://hl7.org/fhir/sid/us-npi'); // XCN.9.2
    expect(aip.get(3, 9, 3)).toBe('URI'); // XCN.9.3
  });

  it('when each change is mapped then it gets its trigger, status and reason', () => {
    expect(build('rescheduled').msg.type.trigger).toBe('S14');
    const cancel = build(
      'cancelled',
      view(appointment({ status: 'cancelled', cancelationReason: { text: 'Patient asked' } })),
    ).msg;
    expect(cancel.type.trigger).toBe('S15');
    expect(cancel.segment('SCH')!.get(6, 2)).toBe('Patient asked'); // SCH-6.2
    expect(cancel.segment('SCH')!.get(25)).toBe('Cancelled');
    const noshow = build('noshow', view(appointment({ status: 'noshow' }))).msg;
    expect(noshow.type.trigger).toBe('S26');
    expect(noshow.segment('SCH')!.get(25)).toBe('Noshow');
  });

  it('when the EHR gave the appointment an id then SCH-2 carries it as an EI', () => {
    const v = view(appointment(), {
      ids: {
        placer: { value: 'a1', namespace: 'CAREWAY' },
        filler: { system: 'urn:id:EPIC', value: 'F-9' },
      },
    });
    const sch = build('cancelled', v).msg.segment('SCH')!;
    expect(sch.get(2, 1)).toBe('F-9'); // EI.1
    expect(sch.get(2, 2)).toBe('EPIC'); // EI.2 namespace, spread from HD
  });

  it('when values are absent then nothing is written for them (no empty segments, no status outside 0278)', () => {
    const bare = appointment({ status: 'proposed', serviceType: [] });
    const { msg } = build(
      'booked',
      view({ ...bare, status: 'proposed' }, { patient: { resourceType: 'Patient' }, locations: [] }),
    );
    expect(msg.segment('AIS')).toBeUndefined(); // `when: appointment.serviceType[0]`
    expect(msg.segment('AIL')).toBeUndefined(); // no Location participant
    expect(msg.segment('PID')!.raw(3)).toBe('');
    expect(msg.segment('PID')!.raw(7)).toBe('');
    expect(msg.segment('SCH')!.get(25)).toBe('Pending'); // proposed → Pending
    const odd = build('booked', view(appointment({ status: 'checked-in' })));
    expect(odd.msg.segment('SCH')!.get(25)).toBe('Started');
  });

  it('when values hold delimiters then they are escaped and read back unchanged', () => {
    const tricky = appointment({ cancelationReason: { text: 'a|b^c~d\\e&f\nnext' } });
    const { msg, er7 } = build('cancelled', view(tricky));
    expect(msg.segment('SCH')!.get(6, 2)).toBe('a|b^c~d\\e&f\nnext');
    expect(er7.split('\r').filter(Boolean)).toHaveLength(9); // the line break did not split a segment
  });
});

describe('values and paths', () => {
  it('when FHIR times are converted then the offset is kept and precision follows the value', () => {
    expect(fhirToHl7DateTime('2026-03-02T09:00:00Z')).toBe('20260302090000+0000');
    expect(fhirToHl7DateTime('2026-03-02T09:00:00-05:00')).toBe('20260302090000-0500');
    expect(fhirToHl7DateTime('2026-03-02T09:00:00.123+01:00')).toBe('20260302090000.123+0100');
    expect(fhirToHl7DateTime('2026-03-02')).toBe('20260302');
    expect(fhirToHl7DateTime('2026-03')).toBe('202603');
    expect(fhirToHl7DateTime('not a date')).toBeUndefined();
  });

  it('when a system is turned into an HD then the registry, the default rule and URIs are each honoured', () => {
    expect(systemToHd('urn:oid:2.16.840.1.113883.3.7001', registry)).toEqual([
      'STMARYS',
      '2.16.840.1.113883.3.7001',
      'ISO',
    ]);
    expect(systemToHd('urn:id:NORTHGEN', registry)).toEqual(['NORTHGEN']);
    expect(systemToHd('urn:oid:1.2.3', registry)).toEqual(['', '1.2.3', 'ISO']);
    expect(systemToHd('https://x.example/mrn', registry)).toEqual(['', 'https://x.example/mrn', 'URI']);
    expect(systemToHd('urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e')[2]).toBe('GUID');
  });

  it('when paths filter and offer alternatives then the first value found wins', () => {
    const scope = {
      name: [
        { use: 'old', family: 'A' },
        { use: 'official', family: 'B' },
      ],
      id: 'x',
    };
    expect(resolve(scope, 'name[use=official].family')).toBe('B');
    expect(resolve(scope, 'name[use=nickname].family | name[0].family')).toBe('A');
    expect(resolve(scope, 'identifier[0].value | id')).toBe('x');
    expect(resolve(scope, 'name[7].family')).toBeUndefined();
  });
});

describe('site maps and broken maps', () => {
  async function site(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'careway-outbound-'));
    for (const [path, text] of Object.entries(files)) {
      await mkdir(join(dir, path, '..'), { recursive: true });
      await writeFile(join(dir, path), text);
    }
    return dir;
  }

  it('when a site overrides a segment map then its rules are used, and the rest stay built-in', async () => {
    const dir = await site({
      'segments/PV1.yaml': [
        'kind: segment',
        'segment: PV1',
        'rules:',
        "  - { field: 2, const: 'I', note: 'PV1-2 this site books inpatient visits' }",
      ].join('\n'),
    });
    const mine = await loadOutboundMaps([ROOT, dir], SCHEMA);
    const msg = Hl7Message.parse(new OutboundMapper(mine, registry).build('booked', view())!.er7);
    expect(msg.segment('PV1')!.get(2)).toBe('I');
    expect(msg.segment('PV1')!.raw(3)).toBe('');
    expect(msg.segment('SCH')!.get(25)).toBe('Booked');
  });

  it('when maps are broken then every problem is named at once', async () => {
    const dir = await site({
      'segments/ZZZ.yaml': 'kind: segment\nsegment: ZZZ\nrules:\n  - { field: 1, from: a, datatype: XYZ }\n',
      'segments/PV2.yaml': 'kind: segment\nsegment: PV2\nrules:\n  - { field: 1 }\n',
      'segments/Wrong.yaml': 'kind: segment\nsegment: NTE\nrules: []\n',
      'messages/ADT_A01.yaml': [
        'kind: message',
        'structure: ADT_A01',
        'code: ADT',
        'changes: { booked: A01 }',
        'segments: [{ segment: EVN }]',
      ].join('\n'),
    });
    const err = await loadOutboundMaps([ROOT, dir], SCHEMA).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundMapError);
    const text = (err as OutboundMapError).problems.join('\n');
    expect(text).toContain('unknown datatype map XYZ'); // cross-reference
    expect(text).toMatch(/PV2\.yaml: .*(from|const)/); // schema: a rule without a source
    expect(text).toContain('must be named NTE.yaml');
    expect(text).toContain('the first segment must be MSH');
    expect(text).toContain('no segment map for EVN');
    expect(text).toContain('the booked change is already sent by');
  });
});
