/**
 * Golden files: each `test/fixtures/hl7/<TYPE>-<NN>.hl7` maps to exactly `<TYPE>-<NN>.expected.json`, the
 * transaction Bundle Careway posts. Volatile parts (the `urn:uuid:` placeholders) are replaced by stable
 * names first. Regenerate on purpose with `npm run golden:update`, then review the diff.
 *
 * Invariants over every sample: every reference resolves inside the bundle, no two entries share a fullUrl,
 * every written resource is keyed by a business identifier, and nothing appears that no rule put there.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bundle } from 'fhir/r4.js';
import { loadMappings, Mapper } from '../../src/hl7/mapping/engine.js';
import { buildTransaction } from '../../src/hl7/mapping/transaction.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { projectRoot } from '../../src/shared/paths.js';

const dir = join(projectRoot(), 'test', 'fixtures', 'hl7');
const samples = readdirSync(dir)
  .filter((f) => f.endsWith('.hl7'))
  .sort();
const update = process.env['UPDATE_GOLDEN'] === '1';
let mapper: Mapper;

beforeAll(async () => {
  const root = join(projectRoot(), 'mappings');
  mapper = new Mapper(await loadMappings([root], join(root, 'schema.json')));
});

/** Replaces random urn:uuid placeholders with names stable from run to run. */
function stable(bundle: Bundle): Bundle {
  const names = new Map<string, string>();
  const text = JSON.stringify(bundle).replace(/urn:uuid:[0-9a-f-]{36}/g, (u) => {
    if (!names.has(u))
      names.set(u, `urn:uuid:00000000-0000-4000-8000-${String(names.size + 1).padStart(12, '0')}`);
    return names.get(u) ?? u;
  });
  return JSON.parse(text) as Bundle;
}

function map(file: string): Bundle {
  const msg = Hl7Message.parse(readFileSync(join(dir, file), 'utf8'));
  const mapped = mapper.message(msg, { zone: 'America/Chicago', delimiters: msg.delimiters });
  return buildTransaction(mapped, {
    jobId: `golden-${file.replace('.hl7', '')}`,
    sender: `${msg.sender.application}^${msg.sender.facility}`,
    controlId: msg.controlId,
    type: `${msg.type.code}^${msg.type.trigger}`,
    receivedAt: '2024-01-15T14:30:15.000Z',
  }).bundle;
}

describe('HL7 golden files', () => {
  it.each(samples)('when %s is mapped then the transaction equals its golden file', (file) => {
    const actual = stable(map(file));
    const goldenPath = join(dir, file.replace('.hl7', '.expected.json'));
    if (update || !existsSync(goldenPath)) {
      if (!update) throw new Error(`${goldenPath} is missing; run npm run golden:update and review it`);
      writeFileSync(goldenPath, `${JSON.stringify(actual, null, 2)}\n`);
    }
    expect(actual).toEqual(JSON.parse(readFileSync(goldenPath, 'utf8')) as Bundle);
  });

  it.each(samples)('when %s is mapped then the invariants hold', (file) => {
    const bundle = map(file);
    const urls = (bundle.entry ?? []).map((e) => e.fullUrl);
    expect(new Set(urls).size).toBe(urls.length);
    const refs = JSON.stringify(bundle).match(/"reference":"([^"]+)"/g) ?? [];
    for (const r of refs) {
      const target = r.slice('"reference":"'.length, -1);
      expect(urls, `${file}: ${target} dangles`).toContain(target);
    }
    for (const e of bundle.entry ?? []) {
      const url = e.request?.url ?? '';
      expect(url, `${file}: ${e.resource?.resourceType} is not keyed`).toMatch(
        /^(\w+\?identifier=.+%7C.+|Provenance\/hl7-.+)$/,
      );
    }
    expect(bundle.entry?.at(-1)?.resource?.resourceType).toBe('Provenance');
  });
});
