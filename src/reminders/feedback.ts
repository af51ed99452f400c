/**
 * Survey intake: `POST /fhir/QuestionnaireResponse`. The answer is linked to the patient's journey (the one it
 * names, else their latest open one) so its score shows in the timeline. Keyed on the response's identifier,
 * so a resubmission writes nothing new. The patient-experience survey's `overall` answer must be 1 to 5, and its
 * `recommend-score` (the Net Promoter question), when answered, 0 to 10.
 */
import type { EpisodeOfCare, QuestionnaireResponse } from 'fhir/r4.js';
import { canonical, CANONICAL_BASE } from '../fhir/canonical.js';
import type { FhirPort } from '../fhir/client.js';
import { CarewayError } from '../shared/errors.js';

export const PATIENT_EXPERIENCE = `${CANONICAL_BASE}/Questionnaire/patient-experience`;

export interface FeedbackDeps {
  readonly fhir: FhirPort;
  journeysOf(patientId: string): Promise<EpisodeOfCare[]>;
}

export async function submitResponse(
  deps: FeedbackDeps,
  body: unknown,
  confinedTo: string | undefined,
): Promise<{ response: QuestionnaireResponse; created: boolean }> {
  const qr = body as QuestionnaireResponse;
  if (qr?.resourceType !== 'QuestionnaireResponse')
    throw new CarewayError('invalid-parameters', 'the body must be a QuestionnaireResponse');
  const problems: string[] = [];
  const id = qr.identifier;
  if (!id?.system || !id.value)
    problems.push('identifier (system and value) is required, so a resubmission writes nothing new');
  const patient = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(qr.subject?.reference ?? '')?.[1];
  if (!patient) problems.push('subject must reference Patient/{id}');
  if (!qr.questionnaire) problems.push('questionnaire (its canonical URL) is required');
  if (!['completed', 'amended', 'in-progress'].includes(qr.status))
    problems.push('status must be completed, amended or in-progress');
  if (qr.questionnaire?.split('|')[0] === PATIENT_EXPERIENCE) {
    const overall = qr.item?.find((i) => i.linkId === 'overall')?.answer?.[0]?.valueInteger;
    if (
      qr.status === 'completed' &&
      (overall === undefined || !Number.isInteger(overall) || overall < 1 || overall > 5)
    )
      problems.push('item "overall" needs a valueInteger from 1 to 5');
    // The Net Promoter question (survey 0.2.0) is optional, but an answer off its 0-10 scale would skew NPS.
    const recommend = qr.item?.find((i) => i.linkId === 'recommend-score')?.answer?.[0];
    const score = recommend?.valueInteger;
    if (recommend && (score === undefined || !Number.isInteger(score) || score < 0 || score > 10))
      problems.push('item "recommend-score" needs a valueInteger from 0 to 10');
  }
  if (problems.length)
    throw new CarewayError('invalid-parameters', `QuestionnaireResponse: ${problems.join('; ')}`);
  if (confinedTo && confinedTo !== patient)
    throw new CarewayError('outside-compartment', 'a patient can only answer for themselves');

  let journeyExt = qr.extension?.find((x) => x.url === canonical.journeyReferenceExtension);
  if (!journeyExt) {
    const open = (await deps.journeysOf(patient!)).find((e) =>
      ['active', 'planned', 'waitlist', 'onhold'].includes(e.status),
    );
    if (open)
      journeyExt = {
        url: canonical.journeyReferenceExtension,
        valueReference: { reference: `EpisodeOfCare/${open.id}` },
      };
  }
  const response: QuestionnaireResponse = {
    ...qr,
    authored: qr.authored ?? new Date().toISOString(),
    source: qr.source ?? { reference: `Patient/${patient}` },
    extension: [
      ...(qr.extension ?? []).filter((x) => x.url !== canonical.journeyReferenceExtension),
      ...(journeyExt ? [journeyExt] : []),
    ],
  };
  delete response.id;
  if (response.extension?.length === 0) delete response.extension;
  const written = await deps.fhir.create<QuestionnaireResponse>(response, {
    ifNoneExist: { identifier: `${id!.system}|${id!.value}` },
  });
  return { response: written.resource, created: written.outcome === 'created' };
}
