/**
 * The journey side of HL7 intake: events applied through the journey rules. (The worker finds the open
 * journey with the Patient read it makes anyway, and opens a new one inside the message's own transaction.)
 * Besides the message's own event (A03 → discharged), the resources it wrote may say more by themselves: an
 * Appointment fulfilled (S14 with SCH-25 Complete), an outpatient Encounter finished. Those are raised the
 * same way as when the change reaches Careway from the FHIR server (journey/raise-events.ts).
 */
import type { JourneyService } from '../journey/service.js';
import { raiseResourceEvents } from '../journey/raise-events.js';
import type { JourneyEffects } from './inbound-worker.js';

const ACTOR = { subject: 'hl7-intake' };

export function journeyEffects(journeys: JourneyService): JourneyEffects {
  return {
    async event(journeyId, event, trigger, occurred): Promise<void> {
      await journeys.applyEvent(journeyId, event, ACTOR, { display: trigger }, occurred);
    },
    async undo(journeyId, event, trigger, occurred): Promise<void> {
      await journeys.undoEvent(journeyId, event, ACTOR, { display: trigger }, occurred);
    },
    async resources(journeyId, resources, trigger, occurred): Promise<void> {
      await raiseResourceEvents(journeys, resources, trigger, {
        actor: ACTOR,
        journeyId,
        ...(occurred ? { occurred } : {}),
      });
    },
  };
}
