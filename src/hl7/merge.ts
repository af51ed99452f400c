/**
 * ADT A40, merge patient: the MRG patient is retired into the PID patient.
 *
 * In one transaction, each write versioned with If-Match so a concurrent change is never overwritten:
 * - the retired Patient gets `active: false` and `link: replaced-by` the survivor (its other data stays);
 * - the survivor gets `link: replaces` the retired one;
 * - every journey (EpisodeOfCare) of the retired patient moves to the survivor.
 * Replaying the message finds the links already in place and writes nothing.
 * Other resources that reference the retired patient keep their reference; FHIR `Patient.link` lets readers
 * follow it (moving them all is left for a later step, see the issue note).
 */
import type { Bundle, BundleEntry, EpisodeOfCare, Identifier, Patient, Provenance } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';

export interface MergeResult {
  readonly merged: boolean;
  readonly movedJourneys: number;
}

export async function mergePatients(
  fhir: FhirPort,
  survivorKey: Identifier,
  retiredKeys: readonly Identifier[],
  provenanceId: string,
  recorded: string,
): Promise<MergeResult> {
  const find = async (i: Identifier): Promise<Patient | undefined> =>
    (
      await fhir.searchAll<Patient>(
        'Patient',
        { identifier: `${i.system}|${i.value}` },
        { noCache: true, maxPages: 1 },
      )
    )[0];
  const survivor = await find(survivorKey);
  let retired: Patient | undefined;
  for (const k of retiredKeys) {
    if (k.system && k.value) retired = await find(k);
    if (retired) break;
  }
  if (!survivor?.id || !retired?.id || retired.id === survivor.id) return { merged: false, movedJourneys: 0 };
  const survivorRef = `Patient/${survivor.id}`;
  const retiredRef = `Patient/${retired.id}`;
  const journeys = await fhir.searchAll<EpisodeOfCare>(
    'EpisodeOfCare',
    { patient: retiredRef },
    { noCache: true, maxPages: 10 },
  );
  const already =
    retired.active === false &&
    (retired.link ?? []).some((l) => l.type === 'replaced-by' && l.other.reference === survivorRef);
  if (already && journeys.length === 0) return { merged: false, movedJourneys: 0 };

  const entries: BundleEntry[] = [];
  const put = (r: Patient | EpisodeOfCare): void => {
    entries.push({
      resource: r,
      request: { method: 'PUT', url: `${r.resourceType}/${r.id}`, ifMatch: `W/"${r.meta?.versionId ?? ''}"` },
    });
  };
  if (!already) {
    put({
      ...retired,
      active: false,
      link: [
        ...(retired.link ?? []).filter((l) => l.other.reference !== survivorRef),
        { other: { reference: survivorRef }, type: 'replaced-by' },
      ],
    });
  }
  if (!(survivor.link ?? []).some((l) => l.other.reference === retiredRef)) {
    put({
      ...survivor,
      link: [...(survivor.link ?? []), { other: { reference: retiredRef }, type: 'replaces' }],
    });
  }
  for (const j of journeys) put({ ...j, patient: { reference: survivorRef } });
  const provenance: Provenance = {
    resourceType: 'Provenance',
    id: provenanceId,
    target: [
      { reference: survivorRef },
      { reference: retiredRef },
      ...journeys.map((j) => ({ reference: `EpisodeOfCare/${j.id}` })),
    ],
    recorded,
    activity: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE' }],
      text: 'hl7:merge',
    },
    agent: [{ who: { identifier: { system: 'urn:careway', value: 'hl7-merge' } } }],
  };
  entries.push({ resource: provenance, request: { method: 'PUT', url: `Provenance/${provenanceId}` } });
  const tx: Bundle = { resourceType: 'Bundle', type: 'transaction', entry: entries };
  await fhir.transaction(tx, { idempotent: true });
  return { merged: true, movedJourneys: journeys.length };
}
