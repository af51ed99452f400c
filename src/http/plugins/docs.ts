/**
 * OpenAPI generated from the route schemas, with the UI at /docs. Registered before any route so every
 * route's schema is collected.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';

export default fp(
  async function docs(app: FastifyInstance, opts: { version: string }) {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Careway',
          description:
            'FHIR-native patient-journey integration layer. Every route except health, readiness, docs and ' +
            '`GET /fhir/metadata` needs a bearer JWT with SMART v2 scopes. Errors are FHIR OperationOutcomes.',
          version: opts.version,
        },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
        tags: [
          { name: 'fhir', description: 'The FHIR REST facade' },
          {
            name: 'journeys',
            description: 'Patient journeys: operations, the board, timeline and pain points',
          },
          { name: 'tasks', description: "The care team's worklist: claim and complete every Careway Task" },
          { name: 'referrals', description: 'Referral intake and triage' },
          { name: 'hl7', description: 'HL7 v2 intake (also over MLLP) and the message log' },
          {
            name: 'engagement',
            description: 'Replies, secure messaging, surveys, dead letters and their replay',
          },
          { name: 'analytics', description: 'Journey KPIs as FHIR MeasureReports ($evaluate-measure)' },
          { name: 'operations', description: 'Health, readiness and metrics' },
        ],
      },
      refResolver: {
        // Keep shared schemas under their own names in the document.
        buildLocalReference: (json, _baseUri, _fragment, i) =>
          typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`,
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
  },
  { name: 'careway-docs' },
);
