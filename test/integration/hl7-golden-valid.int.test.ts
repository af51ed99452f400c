/**
 * Every golden transaction validates on the real HAPI against R4 (as a whole Bundle, so `urn:uuid:`
 * references resolve inside it), and posts cleanly: what the maps produce is writable FHIR. So does the
 * transaction of every message of the feed corpus.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import type { Bundle } from 'fhir/r4.js';
import { FhirClient } from '../../src/fhir/client.js';
import { projectRoot } from '../../src/shared/paths.js';
import { loadMappings, Mapper } from '../../src/hl7/mapping/engine.js';
import { buildTransaction } from '../../src/hl7/mapping/transaction.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { splitBatch } from '../../src/hl7/batch.js';
import { decodeMessage } from '../../src/hl7/charset.js';

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

// The feed corpus too: every message as a real feed sends it (namespace-only authorities, two-order ORUs with
// every OBX-5 type and notes, several SIU resources) maps to a transaction HAPI validates without an error.
const feedDir = join(dir, 'feeds');
const feeds = readdirSync(feedDir)
  .filter((f) => f.endsWith('.hl7') && !/^\d+-bad-/.test(f))
  .sort();

describe('the feed corpus on HAPI', () => {
  it.each(feeds)('when %s is mapped then HAPI validates its transaction without an error', async (file) => {
    const root = join(projectRoot(), 'mappings');
    const mapper = new Mapper(await loadMappings([root], join(root, 'schema.json')));
    const bytes = Buffer.from(
      readFileSync(join(feedDir, file)).toString('latin1').replaceAll('{{RUN}}', 'V1'),
      'latin1',
    );
    for (const text of splitBatch(decodeMessage(bytes, 'utf-8').text)) {
      const msg = Hl7Message.parse(text);
      const mapped = mapper.message(msg, {
        zone: 'America/New_York',
        delimiters: msg.delimiters,
        sender: msg.sender,
      });
      const bundle = buildTransaction(mapped, {
        jobId: 'valid',
        sender: `${msg.sender.application}^${msg.sender.facility}`,
        controlId: msg.controlId,
        type: `${msg.type.code}^${msg.type.trigger}`,
        receivedAt: '2024-01-15T14:30:15.000Z',
      }).bundle;
      const oo = await fhir.validate(bundle);
      const errors = oo.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal');
      expect(errors, `${file} ${msg.controlId}: ${JSON.stringify(errors)}`).toEqual([]);
    }
  });
});
