/**
 * Reads whose "does not exist" is an answer, not a failure.
 *
 * The FHIR server says a resource is missing with 404 (never existed) or 410 (deleted); both mean the same to
 * Careway. Anything else (a 5xx, a timeout) still throws: a transient failure must never be mistaken for
 * "missing", or a retry-safe job would make a permanent decision on it.
 *
 * Reads default to `Cache-Control: no-cache`: every caller reads to decide, so it needs the current version.
 */
import type { Resource } from 'fhir/r4.js';
import { CarewayError } from '../shared/errors.js';
import type { FhirPort, RequestOptions } from './client.js';
import { FhirError } from './errors.js';

const FRESH: RequestOptions = { noCache: true };

/** Reads `type/id`; `undefined` when the server says it does not exist (404/410). Other failures throw. */
export async function readIfExists<T extends Resource>(
  fhir: FhirPort,
  type: T['resourceType'],
  id: string,
  options: RequestOptions = FRESH,
): Promise<T | undefined> {
  try {
    return await fhir.read<T>(type, id, options);
  } catch (e) {
    if (e instanceof FhirError && e.isNotFound) return undefined;
    throw e;
  }
}

/**
 * Reads `type/id`, or refuses the request naming it: `unknown-reference` (422) when the id came in a
 * parameter or a body, `not-found` (404) when it is the resource of the URL.
 */
export async function mustRead<T extends Resource>(
  fhir: FhirPort,
  type: T['resourceType'],
  id: string,
  missing: 'not-found' | 'unknown-reference' = 'unknown-reference',
): Promise<T> {
  const found = await readIfExists<T>(fhir, type, id);
  if (!found) throw new CarewayError(missing, `${type}/${id} does not exist`);
  return found;
}
