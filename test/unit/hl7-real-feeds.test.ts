/**
 * The mapping behaviours real feeds need, one at a time, without I/O: assigning authorities (namespace only,
 * universal id, none), the ownership merge (A08 keeps what Careway owns, `""` clears), repeating groups (AIP,
 * ORU order groups, NTE placement), OBX value types, ignored segments, and errors that name their field.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Appointment, DiagnosticReport, Observation, Patient, Resource } from 'fhir/r4.js';
import { loadMappings, Mapper, MappingError, type Mappings } from '../../src/hl7/mapping/engine.js';
import { resolveAuthority, universalIdToUri } from '../../src/hl7/mapping/authorities.js';
import { mergeIntoStored } from '../../src/hl7/mapping/ownership.js';
import { buildTransaction, messageKeys } from '../../src/hl7/mapping/transaction.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { buildAck } from '../../src/hl7/ack.js';
import { projectRoot } from '../../src/shared/paths.js';

const root = join(projectRoot(), 'mappings');
const schema = join(root, 'schema.json');
let mappings: Mappings;
let mapper: Mapper;

beforeAll(async () => {
  mappings = await loadMappings([root], schema);
  mapper = new Mapper(mappings);
});

const FACTS = {
  jobId: 'j1',
  sender: 'EPIC^STMARYS',
  controlId: 'c1',
  type: 'ADT^A08',
  receivedAt: '2024-01-15T14:30:15.000Z',
};

function map(text: string) {
  const msg = Hl7Message.parse(text);
  return mapper.message(msg, { zone: 'America/New_York', delimiters: msg.delimiters, sender: msg.sender });
}

function resource<T>(text: string, id: string, n = 0): T {
  return map(text).resources.filter((r) => r.id === id)[n]?.resource as T;
}

const ADT = (pid: string, trigger = 'A04') =>
  [
    `MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|20240115083015||ADT^${trigger}^ADT_A01|C1|P|2.5.1`,
    'EVN|A04|20240115083015',
    pid,
    'PV1|1|O|CLINIC^^^STMARYS||||||||||||||||V100^^^STMARYS^VN',
  ].join('\r');

describe('assigning authorities', () => {
  it('when a universal id is given then it wins over the namespace, as a URI by its type', () => {
    expect(universalIdToUri('2.16.840.1.113883.3.72', 'ISO')).toBe('urn:oid:2.16.840.1.113883.3.72');
    expect(universalIdToUri('urn:oid:1.2.3', 'ISO')).toBe('urn:oid:1.2.3');
    expect(universalIdToUri('https://h.example/sid/mrn', 'URI')).toBe('https://h.example/sid/mrn');
    expect(universalIdToUri('0E8A0B58-6F31-4C3D-9A45-1A2B3C4D5E6F', 'UUID')).toBe(
      'urn:uuid:0e8a0b58-6f31-4c3d-9a45-1a2b3c4d5e6f',
    );
    const registry = { default: 'urn:id:{namespace}', namespaces: new Map([['STMARYS', 'urn:oid:9.9']]) };
    expect(
      resolveAuthority(registry, { namespace: 'STMARYS', universal: '1.2.3', type: 'ISO' }, 'X'),
    ).toEqual({
      system: 'urn:oid:1.2.3',
    });
  });

  it('when only a namespace is given then the registry entry applies, else urn:id:<namespace>, reported as defaulted', () => {
    const registry = { default: 'urn:id:{namespace}', namespaces: new Map([['STMARYS', 'urn:oid:9.9']]) };
    expect(resolveAuthority(registry, { namespace: 'STMARYS', universal: '', type: '' }, 'X')).toEqual({
      system: 'urn:oid:9.9',
    });
    expect(resolveAuthority(registry, { namespace: 'NORTH GEN', universal: '', type: '' }, 'X')).toEqual({
      system: 'urn:id:NORTH_GEN',
      defaulted: 'NORTH_GEN',
    });
    // No authority at all: the sending facility's.
    expect(resolveAuthority(registry, { namespace: '', universal: '', type: '' }, 'VALLEYMC')).toEqual({
      system: 'urn:id:VALLEYMC',
      defaulted: 'VALLEYMC',
    });
  });

  it('when PID-3 carries namespace-only ids in any order then each gets a system and the MR one keys the Patient', () => {
    const text = ADT('PID|1||123-45-6789^^^SSA^SS~MRN100234^^^STMARYS^MR||Doe^Jane||19610412|F');
    const mapped = map(text);
    const patient = mapped.resources.find((r) => r.id === 'patient')?.resource as unknown as Patient;
    expect(patient.identifier?.map((i) => [i.system, i.value])).toEqual([
      ['urn:id:SSA', '123-45-6789'],
      ['urn:id:STMARYS', 'MRN100234'],
    ]);
    expect(messageKeys(mapped).keys['patient']).toBe('Patient?identifier=urn%3Aid%3ASTMARYS%7CMRN100234');
    expect(messageKeys(mapped).keys['encounter']).toBe('Encounter?identifier=urn%3Aid%3ASTMARYS%7CV100');
    expect([...mapped.defaultedAuthorities.keys()].sort()).toEqual(['SSA', 'STMARYS']);
  });

  it('when a site registry names the namespace then its system is used and nothing is reported as defaulted', async () => {
    const site = mkdtempSync(join(tmpdir(), 'careway-auth-'));
    writeFileSync(
      join(site, 'authorities.yaml'),
      "kind: authorities\nnamespaces:\n  STMARYS: 'urn:oid:2.16.840.1.113883.3.7001'\n",
    );
    const m = new Mapper(await loadMappings([root, site], schema));
    const msg = Hl7Message.parse(ADT('PID|1||MRN1^^^STMARYS^MR||Doe^Jane||19610412|F'));
    const mapped = m.message(msg, { zone: 'UTC', delimiters: msg.delimiters, sender: msg.sender });
    expect((mapped.resources[0]?.resource as unknown as Patient).identifier?.[0]?.system).toBe(
      'urn:oid:2.16.840.1.113883.3.7001',
    );
    expect(mapped.defaultedAuthorities.size).toBe(0);
  });

  it('when a site registry is malformed then loading fails with every problem listed', async () => {
    const site = mkdtempSync(join(tmpdir(), 'careway-auth-'));
    writeFileSync(
      join(site, 'authorities.yaml'),
      "kind: authorities\ndefault: 'no-template'\nnamespaces:\n  A: 'not a uri'\n",
    );
    const err = await loadMappings([root, site], schema).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MappingError);
    expect((err as Error).message).toMatch(/default must be a URI template/);
    expect((err as Error).message).toMatch(/namespace A must map to an absolute URI/);
  });

  it('when an identifier has no value then the authority alone writes nothing', () => {
    const p = resource<Patient>(ADT('PID|1||MRN1^^^STMARYS^MR~^^^SSA^SS||Doe^Jane||19610412|F'), 'patient');
    expect(p.identifier).toHaveLength(1);
  });
});

describe('journey effects are declared in the message maps', () => {
  it('when the built-in maps load then each trigger carries its effect', () => {
    const adt = (t: string) => map(ADT('PID|1||MRN1^^^STMARYS^MR||Doe^Jane||19610412|F', t)).journey;
    expect(adt('A04')).toEqual({ opens: 'awareness' });
    expect(adt('A01')).toEqual({ opens: 'care', event: 'admitted' });
    expect(adt('A03')).toEqual({ event: 'discharged' });
    expect(adt('A11')).toEqual({ undoes: 'admitted' });
    expect(adt('A08')).toBeUndefined();
  });

  it('when a site map names an unknown stage, event or trigger then loading fails naming each', async () => {
    const site = mkdtempSync(join(tmpdir(), 'careway-journey-'));
    mkdirSync(join(site, 'messages'));
    writeFileSync(
      join(site, 'messages', 'ADT_A60[Bundle].yaml'),
      [
        'kind: message',
        'source: ADT_A60',
        'target: Bundle',
        'triggers: [A60]',
        "resources: [{ id: patient, segment: PID, map: 'PID[Patient]', key: identifier, required: true }]",
        'journey:',
        '  A60: { opens: limbo, event: teleported }',
        '  A61: { undoes: admitted }',
        '',
      ].join('\n'),
    );
    const err = (await loadMappings([root, site], schema).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(MappingError);
    expect(err.message).toMatch(/journey A60 opens at unknown stage limbo/);
    expect(err.message).toMatch(/journey A60 names unknown event teleported/);
    expect(err.message).toMatch(/journey names A61, which is not one of its triggers/);
  });
});

describe('the EHR owns its fields, Careway its own', () => {
  const stored = {
    resourceType: 'Patient',
    id: '42',
    meta: { versionId: '3', lastUpdated: '2024-01-01T00:00:00Z', profile: ['p'] },
    identifier: [
      { system: 'urn:id:STMARYS', value: 'MRN1' },
      { system: 'https://portal.example/sid/user', value: 'u-9' },
    ],
    name: [{ family: 'Old' }],
    telecom: [{ system: 'phone', value: '555-0000' }],
    address: [{ city: 'Oldtown' }],
    communication: [{ language: { coding: [{ code: 'pl' }] }, preferred: true }],
    extension: [
      { url: 'https://careway.dev/fhir/StructureDefinition/engagement-opt-out', valueCode: 'sms' },
      { url: 'http://hl7.org/fhir/StructureDefinition/timezone', valueCode: 'Europe/Warsaw' },
    ],
    deceasedBoolean: false,
    active: true,
    link: [{ type: 'replaces', other: { reference: 'Patient/7' } }],
  };

  it('when an A08 carries new demographics then they replace, and preferences, zone, opt-out, language and links stay', () => {
    const text = ADT('PID|1||MRN1^^^STMARYS^MR||New^Name||19610412|F|||1 New St^^Newtown', 'A08');
    const r = map(text).resources.find((x) => x.id === 'patient')!;
    const merged = mergeIntoStored(stored, r.resource, r.claims);
    expect(merged).toMatchObject({
      id: '42',
      name: [{ family: 'New', given: ['Name'] }],
      address: [{ line: ['1 New St'], city: 'Newtown' }],
      // Not sent (empty fields): kept.
      telecom: [{ value: '555-0000' }],
      communication: [{ preferred: true }],
      extension: stored.extension,
      active: true,
      link: stored.link,
      meta: { profile: ['p'] },
    });
    expect(merged['meta']).not.toHaveProperty('versionId');
    // Identifiers merge by system: the portal's stays.
    expect((merged['identifier'] as { system: string }[]).map((i) => i.system)).toEqual([
      'urn:id:STMARYS',
      'https://portal.example/sid/user',
    ]);
    // Merging the same message again changes nothing (a replay is a no-op).
    expect(mergeIntoStored(merged, r.resource, r.claims)).toEqual(merged);
  });

  it('when a field is an explicit null ("") then the stored element is removed; an empty field is no change', () => {
    const text = ADT('PID|1||MRN1^^^STMARYS^MR||Old||19610412|F|||""||""||""', 'A08');
    const r = map(text).resources.find((x) => x.id === 'patient')!;
    expect(r.claims).toMatchObject({ address: 'clear', telecom: 'clear', communication: 'clear' });
    const merged = mergeIntoStored(stored, r.resource, r.claims);
    expect(merged).not.toHaveProperty('address');
    expect(merged).not.toHaveProperty('telecom');
    expect(merged).not.toHaveProperty('communication');
    expect(merged['extension']).toEqual(stored.extension);
  });

  it('when PID-29 gives a death time then it replaces a stored deceasedBoolean (one type per choice)', () => {
    const pid = `PID|1||MRN1^^^STMARYS^MR||Old||19610412|F${'|'.repeat(21)}202401100830|Y`;
    const r = map(ADT(pid, 'A08')).resources.find((x) => x.id === 'patient')!;
    expect(r.resource['deceasedDateTime']).toBe('2024-01-10T08:30:00-05:00');
    const merged = mergeIntoStored(stored, r.resource, r.claims);
    expect(merged).not.toHaveProperty('deceasedBoolean');
    const onlyFlag = map(ADT(`PID|1||MRN1^^^STMARYS^MR||Old||19610412|F${'|'.repeat(22)}Y`, 'A08'))
      .resources[0]!;
    expect(onlyFlag.resource['deceasedBoolean']).toBe(true);
  });

  it('when an SIU reschedules a confirmed Appointment then the patient keeps accepted and the map status is a default only', () => {
    const siu = [
      'MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|20240115083015||SIU^S14^SIU_S12|C2|P|2.5.1',
      'SCH|APT1^STMARYS|||||||||^^^202402010900^202402010930',
      'PID|1||MRN1^^^STMARYS^MR||Doe^Jane',
    ].join('\r');
    const mapped = map(siu);
    const built = buildTransaction(mapped, FACTS, {
      stored: new Map<string, Resource>([
        [
          'appointment',
          {
            resourceType: 'Appointment',
            id: 'a1',
            meta: { versionId: '5' },
            status: 'noshow',
            participant: [{ actor: { reference: 'Patient/42' }, status: 'accepted' }],
          } as Appointment,
        ],
        ['patient', { resourceType: 'Patient', id: '42', meta: { versionId: '1' } }],
      ]),
    });
    const entry = built.bundle.entry?.find((e) => e.resource?.resourceType === 'Appointment');
    expect(entry?.request).toEqual({ method: 'PUT', url: 'Appointment/a1', ifMatch: 'W/"5"' });
    const a = entry?.resource as Appointment;
    // No SCH-25 in this S14: the stored status stays; the patient's confirmation stays.
    expect(a.status).toBe('noshow');
    expect(a.participant.map((p) => p.status)).toEqual(['accepted']);
  });
});

describe('repeating groups', () => {
  it('when an SIU has two AIP, two AIL and an AIG then each is a participant of its own', () => {
    const siu = [
      'MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|20240115083015||SIU^S12^SIU_S12|C3|P|2.5.1',
      'SCH|APT2^STMARYS||||||||||^^^202402010900^202402010930|||||||||||||Booked',
      'PID|1||MRN1^^^STMARYS^MR||Doe^Jane',
      'RGS|1',
      'AIP|1||1001^House^Gregory^^^^^^STMARYS|ATT^Attending^HL70443',
      'AIP|2||1002^Cuddy^Lisa^^^^^^STMARYS|CON^Consulting^HL70443',
      'AIL|1||ROOM1^^^CARDIO',
      'AIL|2||ROOM2^^^CARDIO',
      'AIG|1||ECG1^ECG machine',
      'ZXT|1|whatever',
    ].join('\r');
    const mapped = map(siu);
    const a = mapped.resources.find((r) => r.id === 'appointment')?.resource as unknown as Appointment;
    expect(a.participant.map((p) => p.actor?.display ?? p.actor?.identifier?.value ?? 'patient')).toEqual([
      'patient',
      'House',
      'Cuddy',
      'ROOM1',
      'ROOM2',
      'ECG machine',
    ]);
    expect(a.participant[1]?.actor?.identifier?.system).toBe('urn:id:STMARYS');
    expect(a.participant[2]?.type?.[0]?.coding?.[0]?.code).toBe('CON');
    expect(mapped.ignoredSegments).toEqual(['ZXT']);
  });

  it('when an ORU has two ORC/OBR groups then each report holds only its own results and notes, and each result its own', () => {
    const oru = [
      'MSH|^~\\&|LAB|STMARYS|CAREWAY|CW|20240115120000-0500||ORU^R01^ORU_R01|C4|P|2.5.1',
      'PID|1||MRN1^^^STMARYS^MR||Doe^Jane',
      'PV1|1|O',
      'ORC|RE|PL1^EPIC|FL1^LAB',
      'OBR|1|PL1^EPIC|FL1^LAB|24331-1^Lipid panel^LN|||20240115070000|||||||||||||||20240115120000|||F',
      'NTE|1||Fasting sample',
      'OBX|1|NM|2093-3^Cholesterol^LN||5.9|mmol/L||H|||F',
      'NTE|1||Repeat in 3 months',
      'OBX|2|SN|2571-8^Triglyceride^LN||>^1.7|mmol/L||H|||F',
      'ORC|RE|PL2^EPIC|FL2^LAB',
      'OBR|2|PL2^EPIC|FL2^LAB|5196-1^HBsAg^LN|||20240115070000|||||||||||||||20240115120000|||F',
      'OBX|1|SN|5196-1^HBsAg titer^LN||^1^:^128||||||F',
      'OBX|2|SN|2345-7^Glucose range^LN||^4^-^6|mmol/L|||||F',
      'OBX|3|CWE|5195-3^HBsAg^LN||260385009^Negative^SCT||||||F',
      'OBX|4|DT|11778-8^Due date^LN||20240301||||||F',
      'OBX|5|ED|PDF^Report^L||^AP^PDF^Base64^JVBERi0xLjQ=||||||F',
      'ZPI|1|x',
    ].join('\r');
    const mapped = map(oru);
    const built = buildTransaction(mapped, { ...FACTS, type: 'ORU^R01' });
    const entries = built.bundle.entry ?? [];
    const urlOf = (pred: (r: Record<string, unknown>) => boolean) =>
      entries.find((e) => pred(e.resource as unknown as Record<string, unknown>))?.fullUrl;
    const reports = entries.filter((e) => e.resource?.resourceType === 'DiagnosticReport');
    const obs = entries.filter((e) => e.resource?.resourceType === 'Observation');
    expect(reports).toHaveLength(2);
    expect(obs).toHaveLength(7);
    const [r1, r2] = reports.map((e) => e.resource as DiagnosticReport);
    const codesOf = (r: DiagnosticReport | undefined) =>
      (r?.result ?? []).map(
        (x) =>
          (entries.find((e) => e.fullUrl === x.reference)?.resource as Observation).code.coding?.[0]?.code,
      );
    expect(codesOf(r1)).toEqual(['2093-3', '2571-8']);
    expect(codesOf(r2)).toEqual(['5196-1', '2345-7', '5195-3', '11778-8', 'PDF']);
    // Each report is based on its own order.
    expect(r1?.basedOn).toEqual([
      {
        reference: urlOf(
          (r) => JSON.stringify(r).includes('"PL1"') && r['resourceType'] === 'ServiceRequest',
        ),
      },
    ]);
    expect(r2?.basedOn).toEqual([
      {
        reference: urlOf(
          (r) => JSON.stringify(r).includes('"PL2"') && r['resourceType'] === 'ServiceRequest',
        ),
      },
    ]);
    // NTE after OBR: on the report (R5 note extension); NTE after OBX: on that Observation only.
    expect(r1?.extension?.[0]).toMatchObject({ valueAnnotation: { text: 'Fasting sample' } });
    expect(r2?.extension ?? []).toHaveLength(0);
    const byCode = (c: string) =>
      obs.map((e) => e.resource as Observation).find((o) => o.code.coding?.[0]?.code === c);
    expect(byCode('2093-3')?.note).toEqual([{ text: 'Repeat in 3 months' }]);
    expect(byCode('2571-8')?.note).toBeUndefined();
    // OBX-5 types, as the IG maps them.
    expect(byCode('2093-3')?.valueQuantity).toMatchObject({ value: 5.9, unit: 'mmol/L' });
    expect(byCode('2571-8')?.valueQuantity).toMatchObject({ value: 1.7, comparator: '>', unit: 'mmol/L' });
    expect(byCode('5196-1')?.valueRatio).toEqual({ numerator: { value: 1 }, denominator: { value: 128 } });
    expect(byCode('5196-1')).not.toHaveProperty('valueQuantity');
    expect(byCode('2345-7')?.valueRange).toEqual({ low: { value: 4 }, high: { value: 6 } });
    expect(byCode('5195-3')?.valueCodeableConcept?.coding?.[0]?.code).toBe('260385009');
    expect(byCode('11778-8')?.valueDateTime).toBe('2024-03-01');
    expect(byCode('PDF')?.extension?.[0]).toMatchObject({
      valueAttachment: { contentType: 'PDF', data: 'JVBERi0xLjQ=' },
    });
    // Observations are keyed on their own report.
    expect(built.keys[obs.length ? 'observation#1' : '']).toMatch(/FL1%7C2093-3$/);
    expect(built.keys['observation#3']).toMatch(/FL2%7C5196-1$/);
    expect(mapped.ignoredSegments).toEqual(['ZPI']);
  });
});

describe('errors name their place', () => {
  it('when a date is impossible then the error is 102 at that field', () => {
    const e = (() => {
      try {
        map(ADT('PID|1||MRN1^^^STMARYS^MR||Doe^Jane||19610230|F'));
      } catch (err) {
        return err;
      }
      return undefined;
    })() as MappingError;
    expect(e).toBeInstanceOf(MappingError);
    expect([e.code, e.location]).toEqual(['102', { segment: 'PID', sequence: 1, field: 7 }]);
  });

  it('when PID-3 is empty then the error is 101 at PID-3; when PID is missing, 100 at PID', () => {
    const noId = map(ADT('PID|1||||Doe^Jane||19610412|F'));
    expect(() => messageKeys(noId)).toThrow(/PID-3: the Patient identifier is missing/);
    try {
      messageKeys(noId);
    } catch (e) {
      expect([(e as MappingError).code, (e as MappingError).location]).toEqual([
        '101',
        { segment: 'PID', sequence: 1, field: 3 },
      ]);
    }
    const noPid = 'MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|20240115083015||ADT^A04^ADT_A01|C1|P|2.5.1\rEVN|A04';
    expect(() => map(noPid)).toThrow(expect.objectContaining({ code: '100', location: { segment: 'PID' } }));
  });

  it('when an error has a place then the ACK has ERR-2 (and ERR-1 for a v2.3 sender)', () => {
    const v25 = Hl7Message.parse(ADT('PID|1'));
    const ack = Hl7Message.parse(
      buildAck(v25, 'AE', {
        controlId: 'A1',
        error: { code: '102', text: 'PID-7: bad', location: { segment: 'PID', sequence: 1, field: 7 } },
      }),
    );
    expect(ack.segment('ERR')?.raw(2)).toBe('PID^1^7^1');
    expect(ack.segment('ERR')?.raw(1)).toBe('');
    const v23 = Hl7Message.parse(ADT('PID|1').replace('|2.5.1', '|2.3'));
    const old = Hl7Message.parse(
      buildAck(v23, 'AE', {
        controlId: 'A1',
        error: { code: '102', text: 'PID-7: bad', location: { segment: 'PID', sequence: 1, field: 7 } },
      }),
    );
    expect(old.segment('ERR')?.raw(1)).toBe('PID^1^7^102&Data type error&HL70357');
  });
});
