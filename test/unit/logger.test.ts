import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/shared/logger.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _e, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { lines, logger: createLogger({ level: 'info', destination }) };
}

describe('logger redaction', () => {
  it('when PHI fields are logged at any depth then their values never reach the output', () => {
    const { lines, logger } = capture();
    const patient = {
      resourceType: 'Patient',
      id: 'p1',
      name: [{ family: 'Doe', given: ['Jane'] }],
      identifier: [{ system: 'urn:mrn', value: 'MRN-4711' }],
      telecom: [{ system: 'phone', value: '+1-555-0100' }],
      address: [{ line: ['1 Main St'] }],
      birthDate: '1970-01-01',
    };
    logger.info(
      { patient, nested: { deeper: { resource: patient } }, hl7: 'MSH|^~\\&|...PID|||MRN-4711' },
      'x',
    );
    logger.info({ req: { headers: { authorization: 'Bearer abc.def.ghi' } } }, 'y');
    const out = lines.join('');
    for (const secret of ['Doe', 'Jane', 'MRN-4711', '555-0100', 'Main St', '1970-01-01', 'abc.def.ghi']) {
      expect(out).not.toContain(secret);
    }
    expect(out).toContain('"id":"p1"');
  });

  it('when a child logger is made then the parent redaction still applies', () => {
    const { lines, logger } = capture();
    logger.child({ worker: 'hl7' }).info({ patient: { name: 'Jane Doe' } }, 'child');
    expect(lines.join('')).not.toContain('Jane');
  });
});
