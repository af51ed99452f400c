/**
 * Loads Careway's conformance resources from profiles/ and uploads them to the FHIR server.
 *
 * Upload is idempotent by canonical URL and version: one transaction of conditional creates
 * (`If-None-Exist: url=…&version=…`). A replay creates nothing, and an already stored version is never
 * edited in place (HAPI caches StructureDefinitions without expiry; a change needs a new version).
 * Order matters to validators: CodeSystems, then ValueSets, then StructureDefinitions, then SearchParameters.
 *
 * Measures are the exception: each is written under its own id (`PUT Measure/<id>`), because clients call
 * `Measure/<id>/$evaluate-measure` with the id they list, and Careway answers for its own ids. An unchanged
 * Measure is a no-op update; a changed one replaces the text in place (no validator caches Measures).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  Measure,
  Questionnaire,
  Bundle,
  BundleEntry,
  CodeSystem,
  SearchParameter,
  StructureDefinition,
  ValueSet,
} from 'fhir/r4.js';
import type { FhirPort } from './client.js';

export type ConformanceResource =
  CodeSystem | ValueSet | StructureDefinition | SearchParameter | Questionnaire | Measure;

const ORDER: Record<ConformanceResource['resourceType'], number> = {
  CodeSystem: 0,
  ValueSet: 1,
  StructureDefinition: 2,
  SearchParameter: 3,
  Questionnaire: 4,
  Measure: 5,
};

/** Reads every `*.json` at the top of `dir` (examples live in a subfolder and are not uploaded). */
export async function loadConformanceResources(dir: string): Promise<ConformanceResource[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  const out: ConformanceResource[] = [];
  for (const f of files) {
    const parsed = JSON.parse(await readFile(join(dir, f), 'utf8')) as ConformanceResource;
    if (!(parsed.resourceType in ORDER))
      throw new Error(`profiles/${f}: unexpected resourceType ${parsed.resourceType}`);
    if (!parsed.url || !parsed.version) throw new Error(`profiles/${f}: url and version are required`);
    if (parsed.resourceType === 'Measure' && !parsed.id)
      throw new Error(`profiles/${f}: a Measure needs its id`);
    out.push(parsed);
  }
  return out.sort((a, b) => ORDER[a.resourceType] - ORDER[b.resourceType]);
}

export function uploadBundle(resources: readonly ConformanceResource[]): Bundle {
  const entry: BundleEntry[] = resources.map((r) =>
    r.resourceType === 'Measure'
      ? {
          fullUrl: `urn:uuid:${crypto.randomUUID()}`,
          resource: r,
          request: { method: 'PUT', url: `Measure/${r.id ?? ''}` },
        }
      : {
          fullUrl: `urn:uuid:${crypto.randomUUID()}`,
          resource: r,
          request: {
            method: 'POST',
            url: r.resourceType,
            ifNoneExist: `url=${encodeURIComponent(r.url ?? '')}&version=${encodeURIComponent(r.version ?? '')}`,
          },
        },
  );
  return { resourceType: 'Bundle', type: 'transaction', entry };
}

export interface UploadResult {
  created: number;
  existing: number;
}

/** Uploads the definitions; safe to call on every start and to retry. */
export async function uploadProfiles(
  fhir: FhirPort,
  resources: readonly ConformanceResource[],
): Promise<UploadResult> {
  const response = await fhir.transaction(uploadBundle(resources), { idempotent: true });
  let created = 0;
  let existing = 0;
  for (const e of response.entry ?? []) {
    if (e.response?.status.startsWith('201')) created++;
    else existing++;
  }
  return { created, existing };
}
