/**
 * The `/fhir` facade: Careway's CapabilityStatement, and authenticated read, vread, search and paging passed
 * through to the hospital's FHIR server with the caller's SMART scopes enforced. Writes are in fhir-writes.ts.
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
import type { Bundle, BundleEntry } from 'fhir/r4.js';
import { Type } from 'typebox';
import { CarewayError, operationOutcome } from '../../shared/errors.js';
import { carewayCapabilityStatement, rebaseBundle, type CarewayOperation } from '../../fhir/facade.js';
import { CapabilityCache } from '../../fhir/capabilities.js';
import { confiningParam, inPatientCompartment } from '../../fhir/compartment.js';
import { forbidden } from '../auth/access.js';
import { decide } from '../auth/scopes.js';
import type { Principal } from '../auth/verifier.js';
import { principalOf } from '../plugins/auth.js';
import { FHIR_JSON } from '../plugins/errors.js';
import {
  access,
  AnyFhir,
  checkId,
  checkType,
  fhirResponses,
  InstanceParams,
  publicBase,
  ResourceParams,
  send,
  VersionParams,
} from './fhir-common.js';

/** Parameters the facade controls itself: Careway always answers JSON, and `_cwsig` is ours. */
const STRIPPED_PARAMS = new Set(['_format', '_pretty', '_cwsig']);
const OUTSIDE_COMPARTMENT_PARAMS = ['_include', '_revinclude', '_has'];

export interface FhirRoutesOptions {
  version: string;
  /** Careway's own operations, listed in the CapabilityStatement. */
  operations?: readonly CarewayOperation[];
  /** Types other route modules accept `create` for (listed so the CapabilityStatement does not understate). */
  createTypes?: readonly string[];
  /** Key for signing paging links; random per process unless given. */
  pagingKey?: Buffer;
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

/**
 * A patient token's search can only narrow: no parameter that reaches outside the compartment, and the
 * compartment's primary membership parameter ANDed on.
 */
function confineSearch(params: URLSearchParams, type: string, patient: string): void {
  for (const p of params.keys()) {
    if (OUTSIDE_COMPARTMENT_PARAMS.some((x) => p === x || p.startsWith(`${x}:`))) {
      throw forbidden(`${p} is not available to patient-context tokens`);
    }
  }
  const confine = confiningParam(type, patient);
  if (!confine) throw forbidden(`patient-context tokens cannot search ${type}`);
  params.append(confine[0], confine[1]);
}

/**
 * The types a search parameter reaches beyond the searched type: each reverse chain's type
 * (`_has:Observation:subject:code`), and each chained reference's target (`subject:Patient.name`). A chain
 * that names no target (`subject.name`) may reach any type, so it counts as `*`.
 */
export function reachedTypes(key: string): string[] {
  const out: string[] = [];
  let rest = key;
  while (rest.startsWith('_has:')) {
    const m = /^_has:([^:]*):[^:]*:(.*)$/.exec(rest);
    if (!m?.[1]) return ['*'];
    out.push(m[1]);
    rest = m[2] ?? '';
  }
  const links = rest.split('.');
  for (const link of links.slice(0, -1)) out.push(/:([A-Z][A-Za-z]+)$/.exec(link)?.[1] ?? '*');
  return out;
}

/**
 * Per-type scopes hold inside a search's criteria too: a chained or reverse-chained parameter answers a
 * question about the type it reaches (which Encounters belong to a patient named X, which Patients have an
 * Observation coded Y), so the caller needs `s` on that type (a `*` scope for an untyped chain).
 */
function checkReachedTypes(params: URLSearchParams, principal: Principal): void {
  for (const key of new Set(params.keys())) {
    for (const type of reachedTypes(key)) {
      const d = decide(principal.scopes, type, 's');
      if (!d.allowed) {
        throw forbidden(
          type === '*'
            ? `search parameter "${key.slice(0, 100)}" chains to an unnamed type: name it (e.g. subject:Patient.name) or hold a */.s scope`
            : `search parameter "${key.slice(0, 100)}" reaches ${type}: ${d.reason}`,
        );
      }
    }
  }
}

/** Signs paging links: an HMAC over the search id and the caller, so only that caller can page on. */
function pagingSigner(key: Buffer): (searchId: string, principal: Principal) => string {
  return (searchId, principal) =>
    createHmac('sha256', key)
      .update(`${searchId}\n${principal.subject}\n${principal.patient ?? ''}`)
      .digest('base64url');
}

/** Drops entries whose type no scope lets this caller read (an OperationOutcome says how many). */
function dropUnreadable(bundle: Bundle, principal: Principal): void {
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
}

const readSchema = (summary: string, params: typeof InstanceParams | typeof VersionParams) => ({
  tags: ['fhir'],
  summary,
  security: [{ bearer: [] }],
  params,
  response: fhirResponses,
});

export default async function fhirRoutes(app: FastifyInstance, opts: FhirRoutesOptions): Promise<void> {
  const capabilities = new CapabilityCache(app.fhir);
  const sign = pagingSigner(opts.pagingKey ?? randomBytes(32));

  /** A searchset as this caller may see it: links on Careway's base (paging links signed), entries filtered. */
  const shapeBundle = (bundle: Bundle, request: FastifyRequest, principal: Principal): Bundle => {
    const base = publicBase(request);
    rebaseBundle(bundle, app.fhir.baseUrl, base, (url) => {
      if (!url.startsWith(base)) return url;
      const u = new URL(url);
      const searchId = u.searchParams.get('_getpages');
      if (searchId) u.searchParams.set('_cwsig', sign(searchId, principal));
      return u.toString();
    });
    dropUnreadable(bundle, principal);
    return bundle;
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
      const { server } = await capabilities.get();
      return reply.type(FHIR_JSON).send(
        carewayCapabilityStatement(server, {
          publicBase: publicBase(request),
          version: opts.version,
          ...(opts.operations ? { operations: opts.operations } : {}),
          createTypes: opts.createTypes ?? [],
          systemInteractions: ['transaction', 'batch'],
          cors: app.config.web.corsOrigins.length > 0,
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
      return send(reply, app.fhir, res, shapeBundle(res.body as Bundle, request, principal));
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
      await checkType(capabilities, type);
      const principal = principalOf(request);
      const { confined } = access(principal, type, 's');
      const params = queryOf(request);
      checkReachedTypes(params, principal);
      if (confined && principal.patient) confineSearch(params, type, principal.patient);
      const query = params.toString();
      const res = await app.fhir.request<Bundle>('GET', query ? `${type}?${query}` : type, undefined, {
        noCache: true,
      });
      return send(reply, app.fhir, res, shapeBundle(res.body as Bundle, request, principal));
    },
  );

  const readHandler = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const { type, id, vid } = request.params as { type: string; id: string; vid?: string };
    await checkType(capabilities, type);
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
      !(await inPatientCompartment(app.fhir, principal.patient, type, id))
    ) {
      throw new CarewayError(
        'outside-compartment',
        `this ${type} is outside the token's patient compartment`,
      );
    }
    return send(reply, app.fhir, res, res.body);
  };

  app.get(
    '/fhir/:type/:id',
    { schema: readSchema('Read a resource (scope: .r)', InstanceParams) },
    readHandler,
  );
  app.get(
    '/fhir/:type/:id/_history/:vid',
    { schema: readSchema('Read a version of a resource (scope: .r)', VersionParams) },
    readHandler,
  );

  app.route({
    method: ['POST', 'PUT', 'PATCH', 'DELETE'],
    url: '/fhir/*',
    schema: { hide: true },
    handler: async () => {
      throw new CarewayError(
        'method-not-allowed',
        'this interaction is not served by the Careway facade (conditional delete, history, and operations it does not list); see GET /fhir/metadata',
      );
    },
  });
}
