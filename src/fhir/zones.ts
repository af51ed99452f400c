/**
 * A resource's IANA time zone: the standard `timezone` extension (Patient, Location, Schedule, Organization),
 * when it names a zone this runtime knows.
 */
import type { Extension } from 'fhir/r4.js';
import { isValidTimeZone } from '../shared/zoned-time.js';
import { canonical } from './canonical.js';

export function zoneOf(resource: { extension?: Extension[] } | undefined, fallback: string): string {
  return declaredZone(resource) ?? fallback;
}

export function declaredZone(resource: { extension?: Extension[] } | undefined): string | undefined {
  const z = resource?.extension?.find((x) => x.url === canonical.timezoneExtension)?.valueCode;
  return z && isValidTimeZone(z) ? z : undefined;
}
