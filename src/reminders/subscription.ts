/**
 * Catching edits made directly on the FHIR server: a REST-hook Subscription on Appointment that posts each
 * changed Appointment to Careway (`/engagement/fhir-hook`), authenticated with a bearer secret. HAPI gives up on
 * a delivery after about a minute, so the reconciliation sweep (sweep-worker.ts) stays the safety net.
 */
import type { Subscription } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';

export const HOOK_PATH = '/engagement/fhir-hook';

/** Creates the Subscription unless one with the same endpoint exists (safe on every start, and to retry). */
export async function ensureSubscription(
  fhir: FhirPort,
  publicBaseUrl: URL,
  secret: string,
): Promise<'created' | 'existing'> {
  const endpoint = `${publicBaseUrl.toString().replace(/\/+$/, '')}${HOOK_PATH}`;
  const subscription: Subscription = {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'Careway re-plans reminders when an Appointment changes',
    criteria: 'Appointment?',
    channel: {
      type: 'rest-hook',
      endpoint,
      payload: 'application/fhir+json',
      header: [`Authorization: Bearer ${secret}`],
    },
  };
  const r = await fhir.create(subscription, { ifNoneExist: { url: endpoint } });
  return r.outcome === 'created' ? 'created' : 'existing';
}
