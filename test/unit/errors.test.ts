import { describe, expect, it } from 'vitest';
import { CarewayError, ERRORS } from '../../src/shared/errors.js';
import { toCarewayError } from '../../src/http/plugins/errors.js';
import { FhirError } from '../../src/fhir/errors.js';

describe('error registry', () => {
  it.each(Object.entries(ERRORS))(
    'when %s is raised then the OperationOutcome carries its status and code',
    (code, entry) => {
      const e = new CarewayError(code as keyof typeof ERRORS, 'what went wrong');
      expect(e.status).toBe(entry.status);
      const oo = e.toOperationOutcome();
      expect(oo.resourceType).toBe('OperationOutcome');
      expect(oo.issue[0]?.code).toBe(entry.issue);
      expect(oo.issue[0]?.diagnostics).toBe('what went wrong');
      expect(oo.issue[0]?.details?.coding?.[0]?.code).toBe(code);
    },
  );

  it('when Fastify reports a validation error then it becomes a 400', () => {
    const e = toCarewayError(
      Object.assign(new Error('querystring must have _getpages'), { validation: [{}] }),
    );
    expect(e).toBeInstanceOf(CarewayError);
    expect((e as CarewayError).status).toBe(400);
  });

  it('when an unknown error escapes then it is a 500 with a generic message', () => {
    const e = toCarewayError(new Error('secret detail from Patient Jane Doe'));
    expect((e as CarewayError).status).toBe(500);
    expect((e as CarewayError).message).toBe('internal error');
  });

  it('when a FhirError passes through then it is kept as is', () => {
    const f = new FhirError({ kind: 'http', status: 409, method: 'PUT', path: 'Patient/1' });
    expect(toCarewayError(f)).toBe(f);
    expect(f.isConflict).toBe(true);
    expect(f.isTransient).toBe(false);
  });

  it('when a thrown error has a numeric code then it becomes an internal error, not a failure of the handler', () => {
    const e = toCarewayError(Object.assign(new Error('job lock mismatch'), { code: -2 }));
    expect((e as CarewayError).status).toBe(500);
    expect((e as CarewayError).message).toBe('internal error');
  });
});
