/**
 * Provenance for every journey change: who (the token's subject, as an identifier-only reference, so no
 * resolvable or personal data is needed), when, why (the reason, or the rule/event), and the triggering
 * resource when there is one.
 */
import type { Provenance, Reference } from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';

/** Who made a change: a token subject, optionally the FHIR user behind it. */
export interface Actor {
  readonly subject: string;
  /** e.g. `Practitioner/123`, from the SMART `fhirUser` claim. */
  readonly fhirUser?: string;
}

export const SYSTEM_ACTOR: Actor = { subject: 'careway' };

export type ProvenanceActivity = 'CREATE' | 'UPDATE';

export interface ProvenanceInput {
  readonly target: string;
  readonly at: string;
  readonly actor: Actor;
  readonly activity: ProvenanceActivity;
  /** Plain-language reason: the caller's reason, or e.g. "event: discharged". */
  readonly reason: string;
  /** Machine-readable change, e.g. `stage:access->care` or `status:active->finished`. */
  readonly change: string;
  readonly trigger?: Reference;
  /** When the triggering event happened (a stage change dated at the event); `at` stays when it was recorded. */
  readonly occurred?: string;
}

export function journeyProvenance(p: ProvenanceInput): Provenance {
  const who: Reference = p.actor.fhirUser
    ? { reference: p.actor.fhirUser }
    : { identifier: { system: canonical.agentSubject, value: p.actor.subject } };
  return {
    resourceType: 'Provenance',
    target: [{ reference: p.target }],
    ...(p.occurred ? { occurredDateTime: p.occurred } : {}),
    recorded: p.at,
    activity: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: p.activity }],
      text: p.change,
    },
    reason: [{ text: p.reason }],
    agent: [
      {
        type: {
          coding: [
            { system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' },
          ],
        },
        who,
      },
    ],
    ...(p.trigger ? { entity: [{ role: 'source', what: p.trigger }] } : {}),
  };
}
