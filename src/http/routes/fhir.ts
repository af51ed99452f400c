/**
 * The `/fhir` facade (first slice): Careway's CapabilityStatement, and authenticated read, vread, search and
 * paging passed through to the hospital's FHIR server with the caller's SMART scopes enforced.
 *
 * Patient-context tokens are confined to their compartment:
 * - reads of compartment types are checked by asking the FHIR server whether the resource matches one of
 *   the compartment's membership parameters for that patient;
 * - searches are ANDed with the primary membership parameter (`subject=Patient/{pid}`, `_id={pid}` for
 *   Patient), so they can only narrow;
 * - `_include`, `_revinclude` and `_has` are refused for them, since those reach outside the compartment.
 * Included resources of any caller are dropped when no scope grants reading their type.
 * Paging links are signed (HMAC over the search id and the caller), so one caller cannot page through
 * another caller's search.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Bundle, BundleEntry, CapabilityStatement } from 'fhir/r4.js';
import { Type } from 'typebox';
import { CarewayError, operationOutcome } from '../../shared/errors.js';
import { carewayCapabilityStatement, rebaseBundle, type CarewayOperation } from '../../fhir/facade.js';
import { compartmentParams, confiningParam, patientAccessFor } from '../../fhir/compartment.js';
import type { FhirResponse } from '../../fhir/client.js';
import { decide, type Permission } from '../auth/scopes.js';
import type { Principal } from '../auth/verifier.js';
import { principalOf } from '../plugins/auth.js';
import { FHIR_JSON } from '../plugins/errors.js';

const TYPE_RE = /^[A-Z][A-Za-z]{1,63}$/;
const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;
/** Parameters the facade controls itself: Careway always answers JSON, and `_cwsig` is ours. */
const STRIPPED_PARAMS = new Set(['_format', '_pretty', '_cwsig']);
const OUTSIDE_COMPARTMENT_PARAMS = ['_include', '_revinclude', '_has'];

const ResourceParams = Type.Object({ type: Type.String({ description: 'FHIR resource type' }) });
const InstanceParams = Type.Object({ type: Type.String(), id: Type.String() });
const VersionParams = Type.Object({ type: Type.String(), id: Type.String(), vid: Type.String() });
const AnyFhir = Type.Object({ resourceType: Type.String() }, { additionalProperties: true });
const fhirResponses = {
  200: AnyFhir,
  '4xx': { ...AnyFhir, description: 'OperationOutcome' },
  '5xx': { ...AnyFhir, description: 'OperationOutcome' },
};

export interface FhirRoutesOptions {
  version: string;
  /** Careway's own operations, listed in the CapabilityStatement. */
  operations?: readonly CarewayOperation[];
  /** Types other route modules accept `create` for (listed so the CapabilityStatement does not understate). */
  createTypes?: readonly string[];
  /** Key for signing paging links; random per process unless given. */
  pagingKey?: Buffer;
}

function forbidden(message: string): CarewayError {
  return new CarewayError('insufficient-scope', message, {
    headers: { 'WWW-Authenticate': 'Bearer error="insufficient_scope"' },
  });
}

function publicBase(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}/fhir`;
}

function queryOf(request: FastifyRequest): URLSearchParams {
  const raw = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
  const input = new URLSearchParams(raw);
  const out = new URLSearchParams();
  input.forEach((v, k) => {
    if (!STRIPPED_PARAMS.has(k)) out.append(k, v);
  });
  return out;
}

export default async function fhirRoutes(app: FastifyInstance, opts: FhirRoutesOptions): Promise<void> {
  const pagingKey = opts.pagingKey ?? randomBytes(32);
  let capability: { at: number; server: CapabilityStatement; types: Set<string> } | undefined;

  const serverCapability = async (): Promise<{ server: CapabilityStatement; types: Set<string> }> => {
    if (!capability || Date.now() - capability.at > 60_000) {
      const server = await app.fhir.capabilities();
      const types = new Set((server.rest ?? []).flatMap((r) => (r.resource ?? []).map((x) => x.type)));
      capability = { at: Date.now(), server, types };
    }
    return capability;
  };

  const checkType = async (type: string): Promise<void> => {
    if (!TYPE_RE.test(type) || !(await serverCapability()).types.has(type)) {
      throw new CarewayError(
        'not-supported',
        `resource type "${type.slice(0, 64)}" is not supported by this server`,
      );
    }
  };

  const checkId = (id: string): void => {
    if (!ID_RE.test(id))
      throw new CarewayError('bad-request', 'resource id must be 1-64 characters of [A-Za-z0-9-.]');
  };

  /** The access decision for this caller, or a 403. */
  const access = (principal: Principal, type: string, permission: Permission): { confined: boolean } => {
    const d = decide(principal.scopes, type, permission);
    if (!d.allowed)
      throw forbidden(
        `${d.reason}; a scope like user/${type}.${permission} or patient/${type}.${permission} is needed`,
      );
    if (!d.compartmentOnly) return { confined: false };
    if (!principal.patient) throw forbidden('a patient/ scope needs a "patient" claim in the token');
    if (patientAccessFor(type) === 'refused') throw forbidden(`patient-context tokens cannot access ${type}`);
    return { confined: patientAccessFor(type) === 'compartment' };
  };

  const sign = (searchId: string, principal: Principal): string =>
    createHmac('sha256', pagingKey)
      .update(`${searchId}\n${principal.subject}\n${principal.patient ?? ''}`)
      .digest('base64url');

  /** Drops entries whose type no scope lets this caller read, and signs paging links. */
  const shapeBundle = (bundle: Bundle, request: FastifyRequest, principal: Principal): Bundle => {
    const base = publicBase(request);
    rebaseBundle(bundle, app.fhir.baseUrl, base, (url) => {
      if (!url.startsWith(base)) return url;
      const u = new URL(url);
      const searchId = u.searchParams.get('_getpages');
      if (searchId) u.searchParams.set('_cwsig', sign(searchId, principal));
      return u.toString();
    });
    let dropped = 0;
    const kept: BundleEntry[] = [];
    for (const e of bundle.entry ?? []) {
      const type = e.resource?.resourceType;
      if (!type || e.search?.mode === 'outcome' || type === 'OperationOutcome') {
        kept.push(e);
        continue;
      }
      const d = decide(principal.scopes, type, e.search?.mode === 'include' ? 'r' : 's');
      const readable = d.allowed || decide(principal.scopes, type, 'r').allowed;
      if (readable) kept.push(e);
      else dropped++;
    }
    if (dropped > 0) {
      kept.push({
        resource: operationOutcome(
          'warning',
          'forbidden',
          `${dropped} included resource(s) omitted: no scope grants reading their type`,
        ),
        search: { mode: 'outcome' },
      });
    }
    bundle.entry = kept;
    return bundle;
  };

  const send = (reply: FastifyReply, res: FhirResponse, body: unknown): FastifyReply => {
    for (const h of ['etag', 'last-modified', 'content-location']) {
      const v = res.headers.get(h);
      if (v)
        void reply.header(
          h,
          h === 'content-location' ? v.replace(app.fhir.baseUrl, publicBase(reply.request)) : v,
        );
    }
    return reply.code(res.status).type(FHIR_JSON).send(body);
  };

  /**
   * For a confined read of a non-Patient compartment type: is `type/id` in the patient's compartment? Asks
   * the FHIR server, one membership parameter at a time (they are OR-ed in the compartment definition).
   */
  const inCompartment = async (patient: string, type: string, id: string): Promise<boolean> => {
    for (const param of compartmentParams(type)) {
      const res = await app.fhir.search(
        type,
        { _id: id, [param]: `Patient/${patient}`, _summary: 'count' },
        { noCache: true },
      );
      if ((res.total ?? 0) > 0) return true;
    }
    return false;
  };

  app.get(
    '/fhir/metadata',
    {
      config: { public: true },
      schema: {
        tags: ['fhir'],
        summary: "Careway's CapabilityStatement (public)",
        response: { 200: AnyFhir },
      },
    },
    async (request, reply) => {
      const { server } = await serverCapability();
      return reply.type(FHIR_JSON).send(
        carewayCapabilityStatement(server, {
          publicBase: publicBase(request),
          version: opts.version,
          ...(opts.operations ? { operations: opts.operations } : {}),
          createTypes: opts.createTypes ?? [],
          systemInteractions: ['transaction'],
        }),
      );
    },
  );

  app.get(
    '/fhir',
    {
      schema: {
        tags: ['fhir'],
        summary: 'Next or previous page of a search (follow the links in a searchset Bundle)',
        security: [{ bearer: [] }],
        querystring: Type.Object(
          { _getpages: Type.String(), _cwsig: Type.String() },
          { additionalProperties: true },
        ),
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { _getpages: searchId, _cwsig: sig } = request.query as { _getpages: string; _cwsig: string };
      const expected = Buffer.from(sign(searchId, principal));
      const given = Buffer.from(sig);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
        throw forbidden('this paging link was not issued to this caller');
      }
      const res = await app.fhir.request<Bundle>('GET', `?${queryOf(request).toString()}`);
      return send(reply, res, shapeBundle(res.body as Bundle, request, principal));
    },
  );

  app.get(
    '/fhir/:type',
    {
      schema: {
        tags: ['fhir'],
        summary: 'Search a resource type (scope: .s)',
        security: [{ bearer: [] }],
        params: ResourceParams,
        querystring: Type.Object({}, { additionalProperties: true }),
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const { type } = request.params as { type: string };
      await checkType(type);
      const principal = principalOf(request);
      const { confined } = access(principal, type, 's');
      const params = queryOf(request);
      const path = type;
      if (confined && principal.patient) {
        for (const p of params.keys()) {
          if (OUTSIDE_COMPARTMENT_PARAMS.some((x) => p === x || p.startsWith(`${x}:`))) {
            throw forbidden(`${p} is not available to patient-context tokens`);
          }
        }
        const confine = confiningParam(type, principal.patient);
        if (!confine) throw forbidden(`patient-context tokens cannot search ${type}`);
        params.append(confine[0], confine[1]);
      }
      const query = params.toString();
      const res = await app.fhir.request<Bundle>('GET', query ? `${path}?${query}` : path, undefined, {
        noCache: true,
      });
      return send(reply, res, shapeBundle(res.body as Bundle, request, principal));
    },
  );

  const readHandler = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const { type, id, vid } = request.params as { type: string; id: string; vid?: string };
    await checkType(type);
    checkId(id);
    if (vid !== undefined) checkId(vid);
    const principal = principalOf(request);
    const { confined } = access(principal, type, 'r');
    if (confined && type === 'Patient' && id !== principal.patient) {
      throw new CarewayError('outside-compartment', "this token may only read its own patient's record");
    }
    const path = vid === undefined ? `${type}/${id}` : `${type}/${id}/_history/${vid}`;
    // The body is passed through untouched: reads need no rewriting, and skipping parse/serialise keeps the
    // facade's added latency small (bench P5).
    const res = await app.fhir.request<string>('GET', path, undefined, { noCache: true, raw: true });
    if (
      confined &&
      type !== 'Patient' &&
      principal.patient &&
      !(await inCompartment(principal.patient, type, id))
    ) {
      throw new CarewayError(
        'outside-compartment',
        `this ${type} is outside the token's patient compartment`,
      );
    }
    return send(reply, res, res.body);
  };

  app.get(
    '/fhir/:type/:id',
    {
      schema: {
        tags: ['fhir'],
        summary: 'Read a resource (scope: .r)',
        security: [{ bearer: [] }],
        params: InstanceParams,
        response: fhirResponses,
      },
    },
    readHandler,
  );

  app.get(
    '/fhir/:type/:id/_history/:vid',
    {
      schema: {
        tags: ['fhir'],
        summary: 'Read a version of a resource (scope: .r)',
        security: [{ bearer: [] }],
        params: VersionParams,
        response: fhirResponses,
      },
    },
    readHandler,
  );

  app.route({
    method: ['POST', 'PUT', 'PATCH', 'DELETE'],
    url: '/fhir/*',
    schema: { hide: true },
    handler: async () => {
      throw new CarewayError(
        'method-not-allowed',
        'this interaction is not served by the Careway facade; see GET /fhir/metadata',
      );
    },
  });
}
