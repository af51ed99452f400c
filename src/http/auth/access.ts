/**
 * What every route decides the same way: whether the caller's scopes grant an interaction, whether the caller
 * is confined to a patient's compartment (and which patient), and who the actor is for Provenance.
 */
import { CarewayError } from '../../shared/errors.js';
import type { Actor } from '../../journey/provenance.js';
import { decide, type Permission } from './scopes.js';
import type { Principal } from './verifier.js';

export function forbidden(message: string): CarewayError {
  return new CarewayError('insufficient-scope', message, {
    headers: { 'WWW-Authenticate': 'Bearer error="insufficient_scope"' },
  });
}

/**
 * The patient a token is confined to, or undefined for user/system access; 403 when no scope grants
 * `permission` on `type`, or (with `staffOnly`) when only a patient scope does.
 */
export function confinedPatient(
  principal: Principal,
  type: string,
  permission: Permission,
  staffOnly = false,
): string | undefined {
  const d = decide(principal.scopes, type, permission);
  if (!d.allowed) throw forbidden(`${d.reason}; a scope like user/${type}.${permission} is needed`);
  if (!d.compartmentOnly) return undefined;
  if (staffOnly)
    throw forbidden(
      `patient-context tokens cannot use this operation (user/ or system/ ${type}.${permission})`,
    );
  if (!principal.patient) throw forbidden('a patient/ scope needs a "patient" claim in the token');
  return principal.patient;
}

export function actorOf(principal: Principal): Actor {
  return { subject: principal.subject, ...(principal.fhirUser ? { fhirUser: principal.fhirUser } : {}) };
}
