import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadMappings, Mapper, MappingError, type Mappings } from '../../src/hl7/mapping/engine.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { projectRoot } from '../../src/shared/paths.js';

const root = join(projectRoot(), 'mappings');
const schema = join(root, 'schema.json');
let mappings: Mappings;

const ADT = [
  'MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||ADT^A04|1|P|2.5',
  'PID|1||MRN123^^^MAINHOSP&urn:oid:1.2.3&ISO^MR~99-88^^^SSA&http://hl7.org/fhir/sid/us-ssn&URI^SS||O\\T\\Neil^Mary^Ann^Jr^Dr~Smith^Mary||19700101|F|||12 Main St^Apt 4^Springfield^IL^62701^USA||555-0100^PRN^PH~^NET^Internet^mary@example.org||||||||||||||||20240110083000',
].join('\r');

beforeAll(async () => {
  mappings = await loadMappings([root], schema);
});

describe('PID[Patient]', () => {
  it('when an ADT PID is mapped then every mapped field lands where the map says', () => {
    const msg = Hl7Message.parse(ADT);
    const patient = new Mapper(mappings).segment(msg.segment('PID')!, 'PID[Patient]', {
      zone: 'America/Chicago',
      delimiters: msg.delimiters,
    });
    expect(patient).toEqual({
      resourceType: 'Patient',
      identifier: [
        {
          value: 'MRN123',
          system: 'urn:oid:1.2.3',
          assigner: { display: 'MAINHOSP' },
          type: { coding: [{ code: 'MR', system: 'http://terminology.hl7.org/CodeSystem/v2-0203' }] },
        },
        {
          value: '99-88',
          system: 'http://hl7.org/fhir/sid/us-ssn',
          assigner: { display: 'SSA' },
          type: { coding: [{ code: 'SS', system: 'http://terminology.hl7.org/CodeSystem/v2-0203' }] },
        },
      ],
      name: [
        { family: 'O&Neil', given: ['Mary', 'Ann'], suffix: ['Jr'], prefix: ['Dr'] },
        { family: 'Smith', given: ['Mary'] },
      ],
      birthDate: '1970-01-01',
      gender: 'female',
      address: [
        {
          line: ['12 Main St', 'Apt 4'],
          city: 'Springfield',
          state: 'IL',
          postalCode: '62701',
          country: 'USA',
        },
      ],
      telecom: [
        { value: '555-0100', system: 'phone', use: 'home' },
        { value: 'mary@example.org', system: 'email', use: 'home' },
      ],
      // PID-29 without an offset: read in the sender's zone (Chicago, CST in January).
      deceasedDateTime: '2024-01-10T08:30:00-06:00',
    });
  });

  it('when PID-8 holds a code outside table 0001 then the mapping fails naming the field', () => {
    const msg = Hl7Message.parse(ADT.replace('|19700101|F|', '|19700101|Q|'));
    expect(() =>
      new Mapper(mappings).segment(msg.segment('PID')!, 'PID[Patient]', {
        zone: 'UTC',
        delimiters: msg.delimiters,
      }),
    ).toThrow(/PID-8: code "Q" is not in HL70001\[AdministrativeGender\]/);
  });

  it('when a date is malformed then the mapping fails naming the field', () => {
    const msg = Hl7Message.parse(ADT.replace('|19700101|', '|1970-01-01|'));
    expect(() =>
      new Mapper(mappings).segment(msg.segment('PID')!, 'PID[Patient]', {
        zone: 'UTC',
        delimiters: msg.delimiters,
      }),
    ).toThrow(/PID-7/);
  });
});

describe('loadMappings', () => {
  it('when a site directory overrides a vocabulary then the site map wins, with no code change', async () => {
    const site = mkdtempSync(join(tmpdir(), 'careway-maps-'));
    mkdirSync(join(site, 'vocab'));
    writeFileSync(
      join(site, 'vocab', 'HL70001[AdministrativeGender].yaml'),
      'kind: vocab\nsource: HL70001\ntarget: AdministrativeGender\nmap: { F: female, M: male, U: unknown, X: other }\n',
    );
    const m = await loadMappings([root, site], schema);
    const msg = Hl7Message.parse(ADT.replace('|19700101|F|', '|19700101|X|'));
    expect(
      new Mapper(m).segment(msg.segment('PID')!, 'PID[Patient]', { zone: 'UTC', delimiters: msg.delimiters })
        .gender,
    ).toBe('other');
  });

  it('when map files are invalid then every problem is listed at once', async () => {
    const site = mkdtempSync(join(tmpdir(), 'careway-maps-'));
    mkdirSync(join(site, 'vocab'));
    mkdirSync(join(site, 'segments'));
    writeFileSync(
      join(site, 'vocab', 'wrong-name.yaml'),
      'kind: vocab\nsource: HL70002\ntarget: MaritalStatus\nmap: {}\n',
    );
    writeFileSync(
      join(site, 'segments', 'PV1[Encounter].yaml'),
      'kind: segment\nsource: PV1\ntarget: Encounter\nrules:\n  - { field: 2, to: class, vocab: "HL70004[Missing]" }\n',
    );
    writeFileSync(join(site, 'segments', 'broken.yaml'), 'kind: segment\nsource: pv1\n');
    const err = await loadMappings([root, site], schema).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MappingError);
    const text = (err as Error).message;
    expect(text).toContain('must be named HL70002[MaritalStatus].yaml');
    expect(text).toContain('unknown vocab HL70004[Missing]');
    expect(text).toMatch(/broken\.yaml: /);
  });
});
