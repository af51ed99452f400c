/**
 * Which patients an access touched, read from what was answered or written, cheaply: an audit runs on every
 * request, so this scans for Patient references instead of walking every resource's structure.
 */
import type { Resource } from 'fhir/r4.js';

const ID = '[A-Za-z0-9\\-.]{1,64}';
const REFERENCE = new RegExp(`"reference"\\s*:\\s*"(?:[^"]*/)?Patient/(${ID})(?:/_history/[^"]*)?"`, 'g');
const PATIENT_RESOURCE = new RegExp(`"resourceType"\\s*:\\s*"Patient"\\s*,\\s*"id"\\s*:\\s*"(${ID})"`, 'g');
const PATIENT_FULL_URL = new RegExp(`"fullUrl"\\s*:\\s*"[^"]*/Patient/(${ID})"`, 'g');
/** Careway's own JSON (the board, the worklist, the HL7 message log) names patients as `patientId` or "Patient/id". */
const PATIENT_ID_FIELD = new RegExp(`"patientId"\\s*:\\s*"(${ID})"`, 'g');
const PATIENT_STRING = new RegExp(`"Patient/(${ID})"`, 'g');

/** The distinct Patient ids a JSON answer names (references, Patient resources, Patient entries). */
export function patientsInJson(json: string, limit = 1000): string[] {
  const found = new Set<string>();
  for (const re of [REFERENCE, PATIENT_RESOURCE, PATIENT_FULL_URL, PATIENT_ID_FIELD, PATIENT_STRING]) {
    re.lastIndex = 0;
    for (let m = re.exec(json); m && found.size < limit; m = re.exec(json)) found.add(m[1]!);
  }
  return [...found];
}

/** The patients written resources belong to. */
export function patientsOf(resources: readonly Resource[]): string[] {
  const found = new Set<string>();
  for (const r of resources) {
    if (r.resourceType === 'Patient' && r.id) found.add(r.id);
    else for (const id of patientsInJson(JSON.stringify(r))) found.add(id);
  }
  return [...found];
}
