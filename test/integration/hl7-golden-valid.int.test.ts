/**
 * Every golden transaction validates on the real HAPI against R4 (as a whole Bundle, so `urn:uuid:`
 * references resolve inside it), and posts cleanly: what the maps produce is writable FHIR.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import type { Bundle } from 'fhir/r4.js';
import { FhirClient } from '../../src/fhir/client.js';
import { projectRoot } from '../../src/shared/paths.js';

const fhir = new FhirClient({ baseUrl: inject('fhirBaseUrl') });
afterAll(() => fhir.close());
const dir = join(projectRoot(), 'test', 'fixtures', 'hl7');
const goldens = readdirSync(dir)
  .filter((f) => f.endsWith('.expected.json'))
  .sort();

describe('golden transactions on HAPI', () => {
  it.each(goldens)('when %s is validated and posted then HAPI reports no error', async (file) => {
    const bundle = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Bundle;
    const oo = await fhir.validate(bundle);
    const errors = oo.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal');
    expect(errors, JSON.stringify(errors)).toEqual([]);
    // Unique ids per run, so files do not collide with each other or earlier runs.
    const run = Date.now().toString(36);
    const text = JSON.stringify(bundle)
      .replace(/(MRN100|V100|APPT100|F100)/g, `$1-${run}`)
      .replace(/Provenance\/hl7-golden/g, `Provenance/hl7-${run}`);
    const res = await fhir.transaction(JSON.parse(text) as Bundle);
    expect(res.entry?.every((e) => /^20[01]/.test(e.response?.status ?? ''))).toBe(true);
  });
});
