import { describe, expect, it } from 'vitest';
import { decide, parseScopes } from '../../src/http/auth/scopes.js';

describe('parseScopes', () => {
  it('when given v2 scopes then contexts, types and permissions are parsed', () => {
    const s = parseScopes('openid launch/patient patient/Observation.rs user/*.cruds system/Patient.r');
    expect(s.map((x) => [x.context, x.resourceType, [...x.permissions].join('')])).toEqual([
      ['patient', 'Observation', 'rs'],
      ['user', '*', 'cruds'],
      ['system', 'Patient', 'r'],
    ]);
  });

  it('when given v1 scopes then they map to v2 permissions', () => {
    const s = parseScopes('patient/*.read user/Patient.write system/*.*');
    expect(s.map((x) => [...x.permissions].join(''))).toEqual(['rs', 'cud', 'cruds']);
  });

  it.each([
    'patient/Observation.sr',
    'patient/Observation.rr',
    'patient/Observation.x',
    'admin/*.r',
    'patient/observation.r',
    'patient/Observation',
  ])('when given malformed "%s" then it grants nothing', (raw) => {
    expect(parseScopes(raw)).toEqual([]);
  });
});

describe('decide', () => {
  it('when a user scope grants the permission then access is unconfined', () => {
    expect(decide(parseScopes('user/Patient.rs'), 'Patient', 'r')).toEqual({
      allowed: true,
      compartmentOnly: false,
    });
  });

  it('when only a patient scope grants it then access is confined to the compartment', () => {
    expect(decide(parseScopes('patient/*.rs'), 'Observation', 's')).toEqual({
      allowed: true,
      compartmentOnly: true,
    });
  });

  it('when both patient and system scopes grant it then the wider grant wins', () => {
    expect(decide(parseScopes('patient/*.rs system/Observation.s'), 'Observation', 's')).toEqual({
      allowed: true,
      compartmentOnly: false,
    });
  });

  it('when the scope lacks the permission then access is refused', () => {
    const d = decide(parseScopes('user/Patient.s'), 'Patient', 'r');
    expect(d.allowed).toBe(false);
  });

  it('when the scope names another type then access is refused', () => {
    expect(decide(parseScopes('user/Observation.rs'), 'Patient', 'r').allowed).toBe(false);
  });

  it('when the scope is granular (has ?restriction) then it grants nothing yet', () => {
    expect(
      decide(parseScopes('patient/Observation.rs?category=laboratory'), 'Observation', 's').allowed,
    ).toBe(false);
  });
});
