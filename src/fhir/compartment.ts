/**
 * The FHIR R4 Patient compartment (CompartmentDefinition/patient): for each resource type that can hold a
 * patient's data, the search parameters that make a resource a member. Patient-context tokens are confined
 * with these parameters, evaluated by the FHIR server itself (HAPI JPA does not serve `Patient/{id}/{Type}`
 * compartment searches, so Careway cannot rely on them).
 *
 * Types outside it that carry no patient data (directories, terminology, definitions) are readable by a
 * patient token whose scope names them. Any other type is refused to patient tokens: unknown means unsafe.
 *
 * Everything here is data and pure functions, except `inPatientCompartment`, which asks the server.
 */
import type { FhirPort } from './client.js';

export const PATIENT_COMPARTMENT: Readonly<Record<string, readonly string[]>> = {
  Account: ['subject'],
  AdverseEvent: ['subject'],
  AllergyIntolerance: ['patient', 'recorder', 'asserter'],
  Appointment: ['actor'],
  AppointmentResponse: ['actor'],
  AuditEvent: ['patient'],
  Basic: ['patient', 'author'],
  BodyStructure: ['patient'],
  CarePlan: ['patient', 'performer'],
  CareTeam: ['patient', 'participant'],
  ChargeItem: ['subject'],
  Claim: ['patient', 'payee'],
  ClaimResponse: ['patient'],
  ClinicalImpression: ['subject'],
  Communication: ['subject', 'sender', 'recipient'],
  CommunicationRequest: ['subject', 'sender', 'recipient', 'requester'],
  Composition: ['subject', 'author', 'attester'],
  Condition: ['patient', 'asserter'],
  Consent: ['patient'],
  Coverage: ['beneficiary', 'policy-holder', 'subscriber', 'payor'],
  CoverageEligibilityRequest: ['patient'],
  CoverageEligibilityResponse: ['patient'],
  DetectedIssue: ['patient'],
  DeviceRequest: ['subject', 'performer'],
  DeviceUseStatement: ['subject'],
  DiagnosticReport: ['subject'],
  DocumentManifest: ['subject', 'author', 'recipient'],
  DocumentReference: ['subject', 'author'],
  Encounter: ['patient'],
  EnrollmentRequest: ['subject'],
  EpisodeOfCare: ['patient'],
  ExplanationOfBenefit: ['patient', 'payee'],
  FamilyMemberHistory: ['patient'],
  Flag: ['patient'],
  Goal: ['patient'],
  Group: ['member'],
  ImagingStudy: ['patient'],
  Immunization: ['patient'],
  ImmunizationEvaluation: ['patient'],
  ImmunizationRecommendation: ['patient'],
  Invoice: ['subject', 'patient', 'recipient'],
  List: ['subject', 'source'],
  MeasureReport: ['patient'],
  Media: ['subject'],
  MedicationAdministration: ['patient', 'performer', 'subject'],
  MedicationDispense: ['subject', 'patient', 'receiver'],
  MedicationRequest: ['subject'],
  MedicationStatement: ['subject'],
  MolecularSequence: ['patient'],
  NutritionOrder: ['patient'],
  Observation: ['subject', 'performer'],
  Patient: ['_id'],
  Person: ['patient'],
  Procedure: ['patient', 'performer'],
  Provenance: ['patient'],
  QuestionnaireResponse: ['subject', 'author'],
  RelatedPerson: ['patient'],
  RequestGroup: ['subject', 'participant'],
  ResearchSubject: ['individual'],
  RiskAssessment: ['subject'],
  Schedule: ['actor'],
  ServiceRequest: ['subject', 'performer'],
  Specimen: ['subject'],
  SupplyDelivery: ['patient'],
  SupplyRequest: ['requester'],
  VisionPrescription: ['patient'],
};

/** Types with no patient data, shared across patients (practitioner directory, terminology, definitions). */
export const SHARED_NON_PATIENT_TYPES: ReadonlySet<string> = new Set([
  'Practitioner',
  'PractitionerRole',
  'Organization',
  'Location',
  'HealthcareService',
  'Endpoint',
  'Medication',
  'Substance',
  'Questionnaire',
  'PlanDefinition',
  'ActivityDefinition',
  'ValueSet',
  'CodeSystem',
  'ConceptMap',
  'StructureDefinition',
  'SearchParameter',
  'OperationDefinition',
  'CapabilityStatement',
  'Slot',
]);

export type PatientAccess = 'compartment' | 'shared' | 'refused';

/** How a patient-context token may see `resourceType`. */
export function patientAccessFor(resourceType: string): PatientAccess {
  if (Object.hasOwn(PATIENT_COMPARTMENT, resourceType)) return 'compartment';
  if (SHARED_NON_PATIENT_TYPES.has(resourceType)) return 'shared';
  return 'refused';
}

/** The search parameters that place `resourceType` in a patient's compartment (empty if none). */
export function compartmentParams(resourceType: string): readonly string[] {
  return Object.hasOwn(PATIENT_COMPARTMENT, resourceType) ? (PATIENT_COMPARTMENT[resourceType] ?? []) : [];
}

/**
 * The one parameter a patient-confined search is ANDed with: the primary membership link (the patient or
 * subject). A narrower set than the whole compartment, never a wider one.
 */
export function confiningParam(resourceType: string, patientId: string): [string, string] | undefined {
  const first = compartmentParams(resourceType)[0];
  if (!first) return undefined;
  return first === '_id' ? ['_id', patientId] : [first, `Patient/${patientId}`];
}

/**
 * Is `type/id` in the patient's compartment? Asks the FHIR server, one membership parameter at a time (they
 * are OR-ed in the compartment definition), so the answer is the server's own evaluation of its data.
 */
export async function inPatientCompartment(
  fhir: FhirPort,
  patientId: string,
  type: string,
  id: string,
): Promise<boolean> {
  for (const param of compartmentParams(type)) {
    const res = await fhir.search(
      type,
      { _id: id, [param]: `Patient/${patientId}`, _summary: 'count' },
      { noCache: true },
    );
    if ((res.total ?? 0) > 0) return true;
  }
  return false;
}
