import { describe, expect, it } from 'vitest';
import type { CapabilityStatement } from 'fhir/r4.js';
import { carewayCapabilityStatement, rebaseBundle } from '../../src/fhir/facade.js';
import { confiningParam, patientAccessFor } from '../../src/fhir/compartment.js';

const server: CapabilityStatement = {
  resourceType: 'CapabilityStatement',
  status: 'active',
  date: '2026-01-01',
  kind: 'instance',
  fhirVersion: '4.0.1',
  format: ['json'],
  software: { name: 'HAPI FHIR Server' },
  rest: [
    {
      mode: 'server',
      interaction: [{ code: 'transaction' }],
      resource: [
        {
          type: 'Patient',
          interaction: [{ code: 'read' }, { code: 'delete' }, { code: 'create' }],
          searchParam: [{ name: 'name', type: 'string' }],
          operation: [{ name: 'everything', definition: 'x' }],
        },
      ],
    },
  ],
};

describe('carewayCapabilityStatement', () => {
  it('when built from the server statement then it advertises the facade’s interactions and SMART security', () => {
    const cs = carewayCapabilityStatement(server, { publicBase: 'http://cw/fhir', version: '9.9.9' });
    expect(cs.software).toEqual({ name: 'Careway', version: '9.9.9' });
    const patient = cs.rest?.[0]?.resource?.[0];
    expect(patient?.interaction?.map((i) => i.code)).toEqual([
      'read',
      'vread',
      'search-type',
      'create',
      'update',
      'patch',
      'delete',
    ]);
    expect(patient?.conditionalCreate).toBe(true);
    expect(patient?.searchParam).toEqual([{ name: 'name', type: 'string' }]);
    expect(patient?.operation).toBeUndefined();
    expect(cs.rest?.[0]?.interaction).toBeUndefined();
    expect(cs.rest?.[0]?.security?.service?.[0]?.coding?.[0]?.code).toBe('SMART-on-FHIR');
  });

  it('when Careway operations are registered then they are listed on their resource', () => {
    const cs = carewayCapabilityStatement(server, {
      publicBase: 'http://cw/fhir',
      version: '1',
      operations: [
        {
          name: 'journeys',
          definition: 'https://careway.dev/op',
          resourceType: 'Patient',
          documentation: 'd',
        },
      ],
    });
    expect(cs.rest?.[0]?.resource?.[0]?.operation?.[0]?.name).toBe('journeys');
  });
});

describe('rebaseBundle', () => {
  it('when links and fullUrls point at the FHIR server then they point at Careway after', () => {
    const b = rebaseBundle(
      {
        resourceType: 'Bundle',
        type: 'searchset',
        link: [{ relation: 'next', url: 'http://hapi:8090/fhir?_getpages=abc' }],
        entry: [{ fullUrl: 'http://hapi:8090/fhir/Patient/1' }, { fullUrl: 'urn:uuid:x' }],
      },
      'http://hapi:8090/fhir',
      'http://cw/fhir',
    );
    expect(b.link?.[0]?.url).toBe('http://cw/fhir?_getpages=abc');
    expect(b.entry?.map((e) => e.fullUrl)).toEqual(['http://cw/fhir/Patient/1', 'urn:uuid:x']);
  });
});

describe('patientAccessFor', () => {
  it('when a type holds patient data then it is confined; shared directories are readable; the rest refused', () => {
    expect(patientAccessFor('Observation')).toBe('compartment');
    expect(patientAccessFor('EpisodeOfCare')).toBe('compartment');
    expect(patientAccessFor('Practitioner')).toBe('shared');
    expect(patientAccessFor('Task')).toBe('refused');
  });
});

describe('confiningParam', () => {
  it('when a patient token searches then the primary membership parameter is ANDed in', () => {
    expect(confiningParam('Observation', 'p1')).toEqual(['subject', 'Patient/p1']);
    expect(confiningParam('Appointment', 'p1')).toEqual(['actor', 'Patient/p1']);
    expect(confiningParam('Patient', 'p1')).toEqual(['_id', 'p1']);
    expect(confiningParam('Practitioner', 'p1')).toBeUndefined();
  });
});
