/**
 * What the facade's read and write routes share: the path schemas, the type and id checks, the SMART access
 * decision (with patient confinement), and how an answer of the FHIR server is passed on.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { CarewayError } from '../../shared/errors.js';
import type { CapabilityCache } from '../../fhir/capabilities.js';
import { patientAccessFor } from '../../fhir/compartment.js';
import type { FhirPort, FhirResponse } from '../../fhir/client.js';
import { forbidden } from '../auth/access.js';
import { decide, type Permission } from '../auth/scopes.js';
import type { Principal } from '../auth/verifier.js';
import { FHIR_JSON } from '../plugins/errors.js';

export const TYPE_RE = /^[A-Z][A-Za-z]{1,63}$/;
export const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;

export const ResourceParams = Type.Object({ type: Type.String({ description: 'FHIR resource type' }) });
export const InstanceParams = Type.Object({ type: Type.String(), id: Type.String() });
export const VersionParams = Type.Object({ type: Type.String(), id: Type.String(), vid: Type.String() });
export const AnyFhir = Type.Object({ resourceType: Type.String() }, { additionalProperties: true });
export const fhirResponses = {
  200: AnyFhir,
  '4xx': { ...AnyFhir, description: 'OperationOutcome' },
  '5xx': { ...AnyFhir, description: 'OperationOutcome' },
};

export function publicBase(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}/fhir`;
}

export function checkId(id: string): void {
  if (!ID_RE.test(id))
    throw new CarewayError('bad-request', 'resource id must be 1-64 characters of [A-Za-z0-9-.]');
}

/** A type the facade serves: well-formed, and served by the FHIR server. */
export async function checkType(capabilities: CapabilityCache, type: string): Promise<void> {
  if (!TYPE_RE.test(type) || !(await capabilities.serves(type))) {
    throw new CarewayError(
      'not-supported',
      `resource type "${type.slice(0, 64)}" is not supported by this server`,
    );
  }
}

/**
 * The access decision for this caller, or a 403. `confined` when the caller is a patient token and the type
 * belongs to the patient compartment (shared types, like Practitioner, are readable as they are).
 */
export function access(principal: Principal, type: string, permission: Permission): { confined: boolean } {
  const d = decide(principal.scopes, type, permission);
  if (!d.allowed)
    throw forbidden(
      `${d.reason}; a scope like user/${type}.${permission} or patient/${type}.${permission} is needed`,
    );
  if (!d.compartmentOnly) return { confined: false };
  if (!principal.patient) throw forbidden('a patient/ scope needs a "patient" claim in the token');
  if (patientAccessFor(type) === 'refused') throw forbidden(`patient-context tokens cannot access ${type}`);
  return { confined: patientAccessFor(type) === 'compartment' };
}

/** The FHIR server's response headers worth passing on, with Location and Content-Location on Careway's base. */
export function send(reply: FastifyReply, fhir: FhirPort, res: FhirResponse, body: unknown): FastifyReply {
  for (const h of ['etag', 'last-modified', 'content-location', 'location']) {
    const v = res.headers.get(h);
    if (v)
      void reply.header(
        h,
        h === 'content-location' || h === 'location' ? v.replace(fhir.baseUrl, publicBase(reply.request)) : v,
      );
  }
  return reply.code(res.status).type(FHIR_JSON).send(body);
}
