/**
 * The audit trail's HTTP edge: every access to patient data through Careway's API (the /fhir facade's reads,
 * searches and writes, Careway's operations, timelines, HL7 over HTTP, the message logs) is recorded as an
 * AuditEvent before the answer leaves (`onSend`): the event is built from the route, the token and what is
 * answered, and enqueued durably (src/audit). Failures are audited too: a 401, a 403 or a 404 is an attempt.
 *
 * If the event cannot be recorded (Redis down), the answer is withheld: 503, "the access could not be audited".
 * Data is not disclosed without its audit record.
 *
 * Not audited: health, readiness, metrics, docs, the CapabilityStatement, SMART discovery, the FHIR server's own
 * REST-hook deliveries and the queue dashboard's static files (its actions are logged by the dashboard).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditAction } from '../../audit/balp.js';
import { patientsInJson } from '../../audit/patients.js';
import { operationOutcome } from '../../shared/errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by a route whose access needs naming beyond its route (e.g. a raw HL7 message was disclosed). */
    auditDetail?: string;
  }
}

const NOT_AUDITED = [
  /^\/health$/,
  /^\/ready$/,
  /^\/metrics$/,
  /^\/docs/,
  /^\/fhir\/metadata$/,
  /\/\.well-known\//,
  /^\/engagement\/fhir-hook/,
  /^\/admin\/queues/,
  /^\/app/,
];

interface Interaction {
  readonly interaction: string;
  readonly action: AuditAction;
  readonly detail?: string;
}

/**
 * Careway's own list views that read many patients' data at once: each is one search (one event, the query
 * recorded, every patient it answered about listed), typed by the resource they search.
 */
const SEARCH_VIEWS: Readonly<Record<string, string>> = {
  '/journeys/board': 'EpisodeOfCare',
  '/tasks/worklist': 'Task',
};

/** The BALP interaction for a route: its method and pattern say what kind of access it is. */
function interactionOf(method: string, route: string, body: unknown): Interaction {
  if (method === 'GET' && SEARCH_VIEWS[route])
    return { interaction: 'search-type', action: 'E', detail: route };
  const op = /\$([a-z-]+)/.exec(route)?.[1];
  if (op) return { interaction: 'operation', action: method === 'GET' ? 'R' : 'E', detail: `$${op}` };
  if (route === '/hl7') return { interaction: 'create', action: 'C', detail: 'HL7 v2 over HTTP' };
  if (route === '/fhir' && method === 'POST') {
    const type = (body as { type?: unknown } | undefined)?.type;
    return { interaction: type === 'batch' ? 'batch' : 'transaction', action: 'E' };
  }
  if (route === '/fhir' && method === 'GET')
    return { interaction: 'search-type', action: 'E', detail: 'next page' };
  switch (method) {
    case 'POST':
      return { interaction: 'create', action: 'C' };
    case 'PUT':
      return { interaction: 'update', action: 'U' };
    case 'PATCH':
      return { interaction: 'patch', action: 'U' };
    case 'DELETE':
      return { interaction: 'delete', action: 'D' };
    default:
      if (route.endsWith('/_history/:vid')) return { interaction: 'vread', action: 'R' };
      if (route === '/fhir/:type') return { interaction: 'search-type', action: 'E' };
      return { interaction: 'read', action: 'R', ...(route.startsWith('/fhir/') ? {} : { detail: route }) };
  }
}

/** The data an access touched: `Type/id` from the URL (or the Location of a create), `Type` for a search. */
function dataOf(request: FastifyRequest, route: string, location: string | undefined): string[] {
  const view = SEARCH_VIEWS[route];
  if (view) return [view];
  const params = (request.params ?? {}) as Record<string, string | undefined>;
  const type = params['type'] ?? /^\/fhir\/([A-Z][A-Za-z]+)/.exec(route)?.[1];
  const id = params['id'];
  const created = location
    ? /\/([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history|$)/.exec(location)
    : null;
  if (created) return [`${created[1]}/${created[2]}`];
  if (type && id) return [`${type}/${id}`];
  if (type) return [type];
  return [];
}

function text(payload: unknown): string | undefined {
  if (typeof payload === 'string') return payload;
  if (Buffer.isBuffer(payload)) return payload.toString('utf8');
  return undefined;
}

/** Patient ids a search or an operation names in its query (`patient=Patient/1`, `subject=1`, `_id` on Patient). */
function patientsInQuery(route: string, type: string | undefined, query: URLSearchParams): string[] {
  const out: string[] = [];
  for (const [k, v] of query) {
    const name = k.split(':')[0];
    if (name === 'patient' || name === 'subject' || name === 'beneficiary')
      for (const one of v.split(',')) {
        const m = /^(?:.*\/)?(?:Patient\/)?([A-Za-z0-9\-.]{1,64})$/.exec(one);
        if (m && (one.includes('Patient/') || name === 'patient')) out.push(m[1]!);
      }
    if (name === '_id' && type === 'Patient' && route === '/fhir/:type') out.push(...v.split(','));
  }
  return out;
}

export default fp(
  async function audit(app: FastifyInstance) {
    app.decorateRequest('auditDetail', undefined);
    if (!app.areas.audit.enabled) return;
    app.addHook('onSend', async (request, reply, payload) => {
      const route = request.routeOptions.url;
      if (!route || NOT_AUDITED.some((re) => re.test(route))) return payload;
      const { interaction, action, detail: routeDetail } = interactionOf(request.method, route, request.body);
      const detail = request.auditDetail ?? routeDetail;
      const principal = request.principal;
      const raw = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
      const query = new URLSearchParams(raw);
      const location = reply.getHeader('location');
      const data = dataOf(request, route, typeof location === 'string' ? location : undefined);
      const type = data[0]?.split('/')[0];
      const patients = new Set<string>();
      if (principal?.patient) patients.add(principal.patient);
      if (type === 'Patient' && data[0]?.includes('/')) patients.add(data[0].split('/')[1]!);
      for (const p of patientsInQuery(route, type, query)) patients.add(p);
      // What was answered names the patients whose data left; a write's body names whose data came in.
      const answered = reply.statusCode < 400 ? text(payload) : undefined;
      if (answered) for (const p of patientsInJson(answered)) patients.add(p);
      if (request.body && typeof request.body === 'object')
        for (const p of patientsInJson(JSON.stringify(request.body), 100)) patients.add(p);
      try {
        await app.areas.audit.record(
          {
            interaction,
            action,
            status: reply.statusCode,
            at: new Date(),
            ...(principal
              ? {
                  user: {
                    subject: principal.subject,
                    ...(principal.fhirUser ? { fhirUser: principal.fhirUser } : {}),
                    ...(principal.clientId ? { clientId: principal.clientId } : {}),
                    ...(principal.tokenId ? { tokenId: principal.tokenId } : {}),
                  },
                }
              : {}),
            address: request.ip,
            data,
            ...(interaction === 'search-type' ? { query: raw } : {}),
            ...(detail ? { detail } : {}),
            requestId: request.id,
            ...(reply.statusCode >= 400 ? { reason: String(reply.statusCode) } : {}),
          },
          [...patients],
        );
        return payload;
      } catch (err) {
        request.log.error(
          { err: { type: err instanceof Error ? err.name : typeof err } },
          'access not audited',
        );
        void reply.code(503).header('content-type', 'application/fhir+json; charset=utf-8');
        reply.removeHeader('etag');
        reply.removeHeader('location');
        reply.removeHeader('content-location');
        return JSON.stringify(
          operationOutcome('error', 'transient', 'the access could not be audited; try again shortly'),
        );
      }
    });
  },
  { name: 'careway-audit', dependencies: ['careway-areas'] },
);
