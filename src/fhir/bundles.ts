/**
 * Transaction shapes used by more than one area.
 */
import type { Bundle, Provenance, Resource } from 'fhir/r4.js';

/**
 * An update that only applies to the version it was computed from (`If-Match`), with the Provenance that says
 * who changed it and why, in one atomic transaction. A conflict fails the whole thing (HAPI: 409).
 */
export function versionedUpdate(
  resource: Resource & { id: string },
  versionId: string | undefined,
  provenance: Provenance,
): Bundle {
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        resource,
        request: {
          method: 'PUT',
          url: `${resource.resourceType}/${resource.id}`,
          ifMatch: `W/"${versionId ?? ''}"`,
        },
      },
      { resource: provenance, request: { method: 'POST', url: 'Provenance' } },
    ],
  };
}
