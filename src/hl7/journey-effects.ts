/**
 * The journey side of HL7 intake: events applied through the journey rules. (The worker finds the open
 * journey with the Patient read it makes anyway, and opens a new one inside the message's own transaction.)
 */
import type { JourneyService } from '../journey/service.js';
import type { JourneyEffects } from './inbound-worker.js';

const ACTOR = { subject: 'hl7-intake' };

export function journeyEffects(journeys: JourneyService): JourneyEffects {
  return {
    async event(journeyId, event, trigger): Promise<void> {
      await journeys.applyEvent(journeyId, event, ACTOR, { display: trigger });
    },
    async undo(journeyId, event, trigger): Promise<void> {
      await journeys.undoEvent(journeyId, event, ACTOR, { display: trigger });
    },
  };
}
