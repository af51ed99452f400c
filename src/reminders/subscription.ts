/**
 * Catching edits made directly on the FHIR server: REST-hook Subscriptions, one per watched type, that post
 * each changed resource to Careway (`/engagement/fhir-hook/<type>/<id>`), authenticated with a bearer secret.
 * - Appointment: reminders are re-planned, and a fulfilled visit moves its journey;
 * - CarePlan and Encounter: their journey events (journey/resource-events.ts).
 * HAPI gives up on a delivery after about a minute, so the reconciliation sweep (sweep-worker.ts) stays the
 * safety net.
 *
 * One Subscription per type, all with the same endpoint and secret, each created only when none with that
 * endpoint and criteria exists: safe on every start, on every replica, and for a deployment that already has
 * the Appointment one.
 */
import type { Subscription } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';
import { EVENT_RESOURCE_TYPES, type EventResourceType } from '../journey/resource-events.js';

export const HOOK_PATH = '/engagement/fhir-hook';

/** The types the hook receives: the journey-event types (Appointment is also the reminders'). */
export const HOOKED_TYPES = EVENT_RESOURCE_TYPES;

const REASON: Readonly<Record<EventResourceType, string>> = {
  Appointment: 'Careway re-plans reminders and moves journeys when an Appointment changes',
  CarePlan: 'Careway moves journeys when a CarePlan becomes active or completed',
  Encounter: 'Careway moves journeys when an outpatient Encounter is finished',
};

/** Creates each type's Subscription unless one with the same endpoint and criteria exists. */
export async function ensureSubscriptions(
  fhir: FhirPort,
  publicBaseUrl: URL,
  secret: string,
): Promise<Record<EventResourceType, 'created' | 'existing'>> {
  const endpoint = `${publicBaseUrl.toString().replace(/\/+$/, '')}${HOOK_PATH}`;
  const result = {} as Record<EventResourceType, 'created' | 'existing'>;
  for (const type of HOOKED_TYPES) {
    const criteria = `${type}?`;
    const subscription: Subscription = {
      resourceType: 'Subscription',
      status: 'requested',
      reason: REASON[type],
      criteria,
      channel: {
        type: 'rest-hook',
        endpoint,
        payload: 'application/fhir+json',
        header: [`Authorization: Bearer ${secret}`],
      },
    };
    // `criteria` is a string parameter (prefix match): `:exact`, so `CarePlan?` never matches a longer one.
    const r = await fhir.create(subscription, { ifNoneExist: { url: endpoint, 'criteria:exact': criteria } });
    result[type] = r.outcome === 'created' ? 'created' : 'existing';
  }
  return result;
}
