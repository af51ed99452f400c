import { describe, expect, it } from 'vitest';
import { CarewayError } from '../../src/shared/errors.js';
import { checkStructure, MAX_DEPTH, pointerToPath, structureProblems } from '../../src/fhir/structure.js';

const sr = (extra: Record<string, unknown> = {}) => ({
  resourceType: 'ServiceRequest',
  identifier: [{ system: 'urn:x', value: '1' }],
  status: 'active',
  intent: 'order',
  subject: { reference: 'Patient/1' },
  ...extra,
});
const bundle = (...resources: unknown[]) => ({
  resourceType: 'Bundle',
  type: 'transaction',
  entry: resources.map((resource) => ({ resource, request: { method: 'POST', url: 'X' } })),
});
const pointers = (v: unknown) => structureProblems(v).map((p) => p.pointer);

describe('structure check (FHIR R4 JSON schema at the edge)', () => {
  it('when a resource is valid then there is no problem', () => {
    expect(structureProblems(sr())).toEqual([]);
    expect(structureProblems(bundle(sr(), { resourceType: 'Patient', birthDate: '1970-01-01' }))).toEqual([]);
  });

  it('when a ServiceRequest has no subject (issue #17) then the problem names it', () => {
    const { subject: _s, ...noSubject } = sr();
    expect(pointers(bundle(noSubject))).toEqual(['/entry/0/resource/subject']);
  });

  it('when identifier is an object or holds null (issue #17) then the problem names it', () => {
    expect(pointers(sr({ identifier: { system: 'urn:x', value: '1' } }))).toEqual(['/identifier']);
    expect(pointers(sr({ identifier: [null] }))).toEqual(['/identifier/0']);
    expect(pointers(sr({ subject: null }))).toEqual(['/subject']);
    expect(pointers(sr({ subject: 'Patient/1' }))).toEqual(['/subject']);
  });

  it('when elements are unknown, mistyped or badly formatted then each is named', () => {
    expect(pointers(sr({ foo: 1, status: 5, authoredOn: 'yesterday' })).sort()).toEqual([
      '/authoredOn',
      '/foo',
      '/status',
    ]);
  });

  it('when a nested resource (Bundle entry, Parameters resource, contained) is wrong then its path is named', () => {
    expect(pointers(bundle(sr(), { resourceType: 'Nope' }, null))).toEqual([
      '/entry/1/resource/resourceType',
      '/entry/2/resource',
    ]);
    expect(
      pointers({
        resourceType: 'Parameters',
        parameter: [{ name: 'r', resource: { resourceType: 'Patient', active: 'yes' } }],
      }),
    ).toEqual(['/parameter/0/resource/active']);
    expect(pointers(sr({ contained: [{ resourceType: 'Patient', gender: 'robot' }] }))).toEqual([
      '/contained/0/gender',
    ]);
  });

  it('when a string holds a lone surrogate or a control character then it is refused, a paired surrogate is fine', () => {
    expect(pointers(sr({ code: { text: 'a\uD800b' } }))).toEqual(['/code/text']);
    expect(pointers(sr({ code: { text: 'a\uDC00' } }))).toEqual(['/code/text']);
    expect(pointers(sr({ code: { text: 'a\u0000b' } }))).toEqual(['/code/text']);
    expect(structureProblems(sr({ code: { text: 'tab\there\r\nand 😀' } }))).toEqual([]);
  });

  it('when the body is nested deeper than the limit then one problem says so, without overflowing the stack', () => {
    let deep: unknown = { url: 'x' };
    for (let i = 0; i < 100_000; i++) deep = { url: 'x', extension: [deep] };
    const problems = structureProblems(sr({ extension: [deep] }));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message).toContain(String(MAX_DEPTH));
  });

  it('when checkStructure refuses then it is a 400 OperationOutcome with FHIRPath expressions and no values', () => {
    try {
      checkStructure(bundle(sr({ identifier: 'SECRET-MRN-123' })));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CarewayError);
      const err = e as CarewayError;
      expect(err.status).toBe(400);
      const oo = err.toOperationOutcome();
      expect(oo.issue[0]).toMatchObject({
        code: 'structure',
        expression: ['Bundle.entry[0].resource.identifier'],
      });
      expect(JSON.stringify(oo)).not.toContain('SECRET-MRN-123');
    }
  });

  it('when a JSON pointer is turned into a FHIRPath then indexes become brackets', () => {
    expect(pointerToPath('Bundle', '/entry/0/resource/subject')).toBe('Bundle.entry[0].resource.subject');
  });
});
