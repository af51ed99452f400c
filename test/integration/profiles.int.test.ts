/**
 * Profiles on the real HAPI: the upload is idempotent by URL and version, and `$validate` accepts every
 * valid example and rejects every invalid one in profiles/examples.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import type { Resource, StructureDefinition } from 'fhir/r4.js';
import { FhirClient } from '../../src/fhir/client.js';
import { loadConformanceResources, uploadProfiles } from '../../src/fhir/profiles.js';
import { projectRoot } from '../../src/shared/paths.js';

const fhir = new FhirClient({ baseUrl: inject('fhirBaseUrl') });
afterAll(() => fhir.close());
const dir = join(projectRoot(), 'profiles');

describe('profiles on HAPI', () => {
  it('when uploaded twice then the second upload creates nothing and each URL+version exists once', async () => {
    const resources = await loadConformanceResources(dir);
    await uploadProfiles(fhir, resources);
    const again = await uploadProfiles(fhir, resources);
    expect(again).toEqual({ created: 0, existing: resources.length });
    for (const r of resources) {
      const found = await fhir.searchAll(
        r.resourceType,
        { url: r.url, version: r.version },
        { noCache: true },
      );
      expect(found, r.url).toHaveLength(1);
    }
  });

  it('when every example is validated against its profile then valid ones pass and invalid ones fail', async () => {
    await uploadProfiles(fhir, await loadConformanceResources(dir));
    const files = (await readdir(join(dir, 'examples'))).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(2);
    for (const f of files) {
      const example = JSON.parse(await readFile(join(dir, 'examples', f), 'utf8')) as Resource;
      const profile = example.meta?.profile?.[0];
      expect(profile, `${f} names its profile in meta.profile`).toBeTruthy();
      const outcome = await fhir.validate(example, profile);
      const errors = outcome.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal');
      if (f.includes('.valid.')) expect(errors, `${f}: ${JSON.stringify(errors)}`).toEqual([]);
      else expect(errors.length, `${f} must fail validation`).toBeGreaterThan(0);
    }
  });

  it('when the stage extension is read back from HAPI then its snapshot was generated', async () => {
    const [sd] = await fhir.searchAll<StructureDefinition>(
      'StructureDefinition',
      { url: 'https://careway.dev/fhir/StructureDefinition/journey-episode-of-care' },
      { noCache: true },
    );
    expect(sd?.differential?.element.length).toBeGreaterThan(0);
  });
});
