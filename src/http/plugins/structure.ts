/**
 * The structure check at the HTTP edge, for every route: a JSON body is refused with a 400 OperationOutcome
 * when it is nested too deep or holds lone surrogates or control characters, and a body that is a FHIR resource
 * (an object with a `resourceType`) when it does not match the FHIR R4 JSON schema. Domain code behind the
 * routes (referral intake, operations' Parameters, messaging, triage, facade writes) therefore never reads a
 * shape nothing has checked.
 *
 * It runs after authentication and before Fastify's body validation (`preValidation`), so what is checked is
 * what the caller sent. Public routes authenticate a request themselves (the signed `/engagement/replies`),
 * and take no FHIR resources from callers: their JSON is checked for surrogates, control characters and depth
 * later (`preHandler`), after their own check, so an unsigned caller learns nothing.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { checkJson, checkStructure, warmStructure } from '../../fhir/structure.js';
import { HOOK_PATH } from '../../reminders/subscription.js';

/** The types Careway's own routes take, compiled at start rather than on the first request. */
const WARM_TYPES = ['Bundle', 'Parameters', 'ServiceRequest', 'Patient', 'Task', 'Communication'];

function check(request: FastifyRequest): void {
  const body = request.body;
  // Only parsed JSON: HL7 (ER7) bodies are Buffers, and a missing body has nothing to check.
  if (!body || typeof body !== 'object' || Buffer.isBuffer(body)) return;
  if (Array.isArray(body) || !Object.hasOwn(body, 'resourceType')) return checkJson(body);
  const type = (body as { resourceType?: unknown }).resourceType;
  // A body of another type than the URL names is the route's to refuse, saying so.
  const urlType = (request.params as { type?: unknown } | undefined)?.type;
  if (typeof type === 'string' && typeof urlType === 'string' && urlType !== type) return checkJson(body);
  checkStructure(body);
}

const isPublic = (request: FastifyRequest): boolean => request.routeOptions.config.public === true;

export default fp(
  async function structure(app: FastifyInstance) {
    app.addHook('onReady', async () => warmStructure(WARM_TYPES));
    // Before Fastify's own body validation, whose type coercion would turn `"resourceType": ["Parameters"]`
    // into a string and hide what the caller really sent.
    app.addHook('preValidation', async (request) => {
      if (!isPublic(request)) check(request);
    });
    // The FHIR server's own REST-hook deliveries are its stored resources, not a caller's input: refusing one
    // would only make the server retry it (and the hook's secret is checked in its handler).
    app.addHook('preHandler', async (request) => {
      if (!isPublic(request) || request.routeOptions.url?.startsWith(HOOK_PATH)) return;
      const body = request.body;
      if (body && typeof body === 'object' && !Buffer.isBuffer(body)) checkJson(body);
    });
  },
  { name: 'careway-structure', dependencies: ['careway-errors'] },
);
