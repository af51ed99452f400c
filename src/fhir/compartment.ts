/**
 * The FHIR R4 Patient compartment (CompartmentDefinition/patient): the resource types that can hold a
 * patient's data, and so must be confined for patient-context tokens. Types outside it that carry no patient
 * data (directories, terminology, definitions) are readable by a patient token whose scope names them.
 * Any other type is refused to patient tokens: unknown means unsafe.
 */
export const PATIENT_COMPARTMENT: ReadonlySet<string> = new Set([
  'Account',
  'AdverseEvent',
  'AllergyIntolerance',
  'Appointment',
  'AppointmentResponse',
  'AuditEvent',
  'Basic',
  'BodyStructure',
  'CarePlan',
  'CareTeam',
  'ChargeItem',
  'Claim',
  'ClaimResponse',
  'ClinicalImpression',
  'Communication',
  'CommunicationRequest',
  'Composition',
  'Condition',
  'Consent',
  'Coverage',
  'CoverageEligibilityRequest',
  'CoverageEligibilityResponse',
  'DetectedIssue',
  'DeviceRequest',
  'DeviceUseStatement',
  'DiagnosticReport',
  'DocumentManifest',
  'DocumentReference',
  'Encounter',
  'EnrollmentRequest',
  'EpisodeOfCare',
  'ExplanationOfBenefit',
  'FamilyMemberHistory',
  'Flag',
  'Goal',
  'Group',
  'ImagingStudy',
  'Immunization',
  'ImmunizationEvaluation',
  'ImmunizationRecommendation',
  'Invoice',
  'List',
  'MeasureReport',
  'Media',
  'MedicationAdministration',
  'MedicationDispense',
  'MedicationRequest',
  'MedicationStatement',
  'MolecularSequence',
  'NutritionOrder',
  'Observation',
  'Patient',
  'Person',
  'Procedure',
  'Provenance',
  'QuestionnaireResponse',
  'RelatedPerson',
  'RequestGroup',
  'ResearchSubject',
  'RiskAssessment',
  'Schedule',
  'ServiceRequest',
  'Specimen',
  'SupplyDelivery',
  'SupplyRequest',
  'VisionPrescription',
]);

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
  if (PATIENT_COMPARTMENT.has(resourceType)) return 'compartment';
  if (SHARED_NON_PATIENT_TYPES.has(resourceType)) return 'shared';
  return 'refused';
}
