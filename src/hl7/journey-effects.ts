/**
 * The journey side of HL7 intake, on the journey service: find the patient's open journey by the patient's
 * business identifier, and apply events through the journey rules. (A new journey is opened inside the
 * message's own transaction by the worker.) Kept apart so the worker stays about messages.
 */
import type { EpisodeOfCare } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { canonical } from '../fhir/canonical.js';
import type { JourneyService } from '../journey/service.js';
import type { JourneyEffects } from './inbound-worker.js';

const ACTOR = { subject: 'hl7-intake' };

export function journeyEffects(fhir: FhirPort, journeys: JourneyService): JourneyEffects {
  return {
    async openJourney(patientKey: string): Promise<string | undefined> {
      // patientKey is `Patient?identifier=system|value`; journeys are found through the chained identifier.
      const token = new URLSearchParams(patientKey.split('?')[1] ?? '').get('identifier');
      if (!token) return undefined;
      const found = await fhir.searchAll<EpisodeOfCare>(
        'EpisodeOfCare',
        { 'patient.identifier': token, status: 'planned,waitlist,active,onhold', _sort: '-date', _count: 20 },
        { noCache: true, maxPages: 1 },
      );
      return found.find((e) => e.extension?.some((x) => x.url === canonical.journeyStageExtension))?.id;
    },
    async event(journeyId, event, trigger): Promise<void> {
      await journeys.applyEvent(journeyId, event, ACTOR, { display: trigger });
    },
  };
}
