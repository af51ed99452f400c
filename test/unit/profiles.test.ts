import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CodeSystem } from 'fhir/r4.js';
import { loadConformanceResources, uploadBundle } from '../../src/fhir/profiles.js';
import { JOURNEY_STAGES } from '../../src/journey/stages.js';
import { canonical, PROFILES_VERSION } from '../../src/fhir/canonical.js';
import { projectRoot } from '../../src/shared/paths.js';

const dir = join(projectRoot(), 'profiles');

describe('profiles/', () => {
  it('when loaded then code systems, value sets, structure definitions, search parameters, questionnaires and measures come in that order', async () => {
    const res = await loadConformanceResources(dir);
    const order = [
      'CodeSystem',
      'ValueSet',
      'StructureDefinition',
      'SearchParameter',
      'Questionnaire',
      'Measure',
    ];
    const kinds = res.map((r) => order.indexOf(r.resourceType));
    expect(kinds.every((k) => k >= 0)).toBe(true);
    expect([...kinds].sort((a, b) => a - b)).toEqual(kinds);
    expect(res.filter((r) => r.resourceType === 'StructureDefinition').length).toBeGreaterThanOrEqual(6);
    // The survey is released on its own (0.2.0 added the 0-10 recommend-score item); the rest share one version.
    for (const r of res)
      expect(r.version).toBe(r.resourceType === 'Questionnaire' ? '0.2.0' : PROFILES_VERSION);
  });

  it('when the stage CodeSystem is read then its codes are exactly the domain stages, in order', async () => {
    const cs = JSON.parse(await readFile(join(dir, 'CodeSystem-journey-stage.json'), 'utf8')) as CodeSystem;
    expect(cs.url).toBe(canonical.journeyStageCodeSystem);
    expect(cs.concept?.map((c) => c.code)).toEqual([...JOURNEY_STAGES]);
    expect(cs.count).toBe(JOURNEY_STAGES.length);
  });

  it('when the upload bundle is built then every entry is a conditional create on url and version, and each Measure a PUT under its own id', async () => {
    const b = uploadBundle(await loadConformanceResources(dir));
    expect(b.type).toBe('transaction');
    for (const e of b.entry ?? []) {
      if (e.resource?.resourceType === 'Measure') {
        expect(e.request).toEqual({ method: 'PUT', url: `Measure/${e.resource.id}` });
        continue;
      }
      expect(e.request?.method).toBe('POST');
      expect(e.request?.ifNoneExist).toMatch(/^url=https%3A%2F%2Fcareway\.dev%2F.+&version=0\.[12]\.0$/);
    }
  });

  it('when examples are listed then each profile has a valid and an invalid one', async () => {
    const files = await readdir(join(dir, 'examples'));
    const profiles = new Set(files.map((f) => f.split('.')[0]));
    for (const p of profiles) {
      expect(files.some((f) => f.startsWith(`${p}.valid.`))).toBe(true);
      expect(files.some((f) => f.startsWith(`${p}.invalid.`))).toBe(true);
    }
    expect(profiles.has('journey-episode-of-care')).toBe(true);
  });
});
