/**
 * Writes through the `/fhir` facade: create, update (by id and conditional), JSON Patch and delete for any type
 * the FHIR server serves, and `batch` / `transaction` Bundles. Referral transactions, secure messages, survey
 * answers and triage Task updates keep their own routes; Fastify picks those first (static paths win).
 *
 * The guarantees are the reads':
 * - SMART v2 scopes decide per type and interaction (`c`, `u`, `d`); an update that would create the resource,
 *   or a conditional update that matches nothing, also needs `c`.
 * - A patient token writes only inside its own compartment: the body must reference its Patient (checked before
 *   anything is sent), what it replaces or deletes must already be in its compartment, conditional criteria are
 *   narrowed to it, and in a Bundle every entry is checked; one refused entry refuses the Bundle.
 * - `If-Match`, `If-None-Exist` and `Prefer` pass through; the FHIR server's answer (and its errors) come back
 *   as they are, with `Location` on Careway's base.
 * - What is written feeds Careway at once (the composition root's `fhirWritten`): no waiting for the sweep.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Bundle, BundleEntry, Resource } from 'fhir/r4.js';
import fastJsonPatch, { type Operation } from 'fast-json-patch';
import { Type } from 'typebox';
import { CarewayError } from '../../shared/errors.js';
import { CapabilityCache } from '../../fhir/capabilities.js';
import { inPatientCompartment } from '../../fhir/compartment.js';
import { readIfExists } from '../../fhir/reads.js';
import { checkStructure } from '../../fhir/structure.js';
import {
  bodyInCompartment,
  confineCriteria,
  EntryProblem,
  PERMISSION,
  readBundleRequests,
  type EntryRequest,
} from '../../fhir/writes.js';
import type { FhirWrite } from '../../areas.js';
import { decide } from '../auth/scopes.js';
import type { Principal } from '../auth/verifier.js';
import { principalOf } from '../plugins/auth.js';
import {
  access,
  checkId,
  checkType,
  fhirResponses,
  InstanceParams,
  publicBase,
  ResourceParams,
  send,
} from './fhir-common.js';

/** Request headers a FHIR client uses to make a write conditional or to choose the answer. */
const PASSED_HEADERS = ['if-match', 'if-none-exist', 'if-none-match', 'prefer'];
const ANY_BODY = Type.Object({}, { additionalProperties: true });

export interface FhirWriteOptions {
  /** Most entries taken in one batch or transaction. */
  readonly maxEntries: number;
}

function passedHeaders(
  request: FastifyRequest,
  override: Record<string, string> = {},
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of PASSED_HEADERS) {
    const v = request.headers[h];
    if (typeof v === 'string' && v.length > 0 && v.length <= 2048) out[h] = v;
  }
  return { ...out, ...override };
}

/** The body as a resource of the URL's type (and id), or 400 naming what is wrong. */
function resourceBody(body: unknown, type: string, id?: string): Resource {
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new CarewayError('bad-request', `the body must be a ${type} resource`);
  const r = body as Resource;
  if (r.resourceType !== type)
    throw new CarewayError(
      'bad-request',
      `the body is a ${String(r.resourceType).slice(0, 64)}, the URL names ${type}`,
    );
  if (id !== undefined && r.id !== id)
    throw new CarewayError('bad-request', `the body's id must be the URL's (${id})`);
  return r;
}

/** The type and id a write answered with (`Location`, or the body), for the hooks. */
function writtenOf(
  location: string | null | undefined,
  body: unknown,
): { id: string; version?: string } | undefined {
  const m = location
    ? /([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([^/?]+))?/.exec(location.replace(/^.*\/fhir\//, ''))
    : null;
  if (m?.[2]) return { id: m[2], ...(m[3] ? { version: m[3] } : {}) };
  const r = body as Resource | undefined;
  return r?.id ? { id: r.id, ...(r.meta?.versionId ? { version: r.meta.versionId } : {}) } : undefined;
}

/** Tells the areas what was written; a failure there is logged, the write stands (the sweep catches up). */
async function handOn(app: FastifyInstance, changes: FhirWrite[]): Promise<void> {
  if (changes.length === 0) return;
  try {
    await app.areas.fhirWritten(changes);
  } catch (err) {
    app.log.warn({ err, types: changes.map((c) => c.resourceType) }, 'a facade write was not handed on');
  }
}

/** Whether a scope grants `c` on the type too (an update that creates, a conditional update that matches nothing). */
const mayCreate = (principal: Principal, type: string): boolean =>
  decide(principal.scopes, type, 'c').allowed;

/** A patient token may only touch what is already in its compartment (or what does not exist yet). */
async function existingInCompartment(
  app: FastifyInstance,
  patient: string,
  type: string,
  id: string,
): Promise<boolean> {
  const existing = await readIfExists(app.fhir, type, id);
  if (!existing) return true;
  return type === 'Patient' ? id === patient : inPatientCompartment(app.fhir, patient, type, id);
}

const outside = (what: string): CarewayError =>
  new CarewayError('outside-compartment', `${what} is outside the token's patient compartment`);

/** `PUT Type/id` on the FHIR server, handing what was written on, and the server's answer passed back. */
async function putById(
  app: FastifyInstance,
  reply: FastifyReply,
  body: Resource & { id: string },
  headers: Record<string, string>,
): Promise<FastifyReply> {
  const type = body.resourceType;
  const res = await app.fhir.request('PUT', `${type}/${body.id}`, body, { headers });
  const w = writtenOf(res.headers.get('location') ?? res.headers.get('content-location'), res.body);
  await handOn(app, [
    { resourceType: type, id: body.id, ...(w?.version ? { version: w.version } : {}), resource: body },
  ]);
  return send(reply, app.fhir, res, res.body);
}

export default async function fhirWriteRoutes(app: FastifyInstance): Promise<void> {
  const capabilities = new CapabilityCache(app.fhir);

  // ---- create ----------------------------------------------------------------------------------------------
  app.post(
    '/fhir/:type',
    {
      schema: {
        tags: ['fhir'],
        summary: 'Create a resource; If-None-Exist makes it conditional (scope: .c)',
        security: [{ bearer: [] }],
        params: ResourceParams,
        body: ANY_BODY,
        response: { ...fhirResponses, 201: fhirResponses[200] },
      },
    },
    async (request, reply) => {
      const { type } = request.params as { type: string };
      await checkType(capabilities, type);
      const principal = principalOf(request);
      const { confined } = access(principal, type, 'c');
      const body = resourceBody(request.body, type);
      const override: Record<string, string> = {};
      if (confined && principal.patient) {
        if (!bodyInCompartment(body, principal.patient)) throw outside(`this ${type}`);
        const ifNoneExist = request.headers['if-none-exist'];
        if (typeof ifNoneExist === 'string') {
          const narrowed = confineCriteria(type, ifNoneExist, principal.patient);
          if (!narrowed) throw outside(`a conditional create of ${type}`);
          override['if-none-exist'] = narrowed;
        }
      }
      const res = await app.fhir.request('POST', type, body, { headers: passedHeaders(request, override) });
      const w = writtenOf(res.headers.get('location'), res.body);
      if (w) await handOn(app, [{ resourceType: type, ...w, resource: { ...body, id: w.id } }]);
      return send(reply, app.fhir, res, res.body);
    },
  );

  // ---- update by id ----------------------------------------------------------------------------------------
  app.put(
    '/fhir/:type/:id',
    {
      schema: {
        tags: ['fhir'],
        summary:
          'Update (or create with this id) a resource; If-Match makes it versioned (scope: .u, and .c to create)',
        security: [{ bearer: [] }],
        params: InstanceParams,
        body: ANY_BODY,
        response: { ...fhirResponses, 201: fhirResponses[200] },
      },
    },
    async (request, reply) => {
      const { type, id } = request.params as { type: string; id: string };
      await checkType(capabilities, type);
      checkId(id);
      const principal = principalOf(request);
      const { confined } = access(principal, type, 'u');
      const body = resourceBody(request.body, type, id);
      if (confined && principal.patient) {
        if (!bodyInCompartment(body, principal.patient)) throw outside(`this ${type}`);
        if (!(await existingInCompartment(app, principal.patient, type, id))) throw outside(`${type}/${id}`);
      }
      if (!mayCreate(principal, type) && !(await readIfExists(app.fhir, type, id)))
        throw new CarewayError(
          'insufficient-scope',
          `${type}/${id} does not exist, and creating it needs ${type}.c`,
        );
      return putById(app, reply, { ...body, id }, passedHeaders(request));
    },
  );

  // ---- conditional update ----------------------------------------------------------------------------------
  app.put(
    '/fhir/:type',
    {
      schema: {
        tags: ['fhir'],
        summary: 'Conditional update: Type?criteria (scope: .u, and .c when it may create)',
        security: [{ bearer: [] }],
        params: ResourceParams,
        querystring: Type.Object({}, { additionalProperties: true }),
        body: ANY_BODY,
        response: { ...fhirResponses, 201: fhirResponses[200] },
      },
    },
    async (request, reply) => {
      const { type } = request.params as { type: string };
      await checkType(capabilities, type);
      const principal = principalOf(request);
      const { confined } = access(principal, type, 'u');
      const raw = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
      if (!raw)
        throw new CarewayError('bad-request', `a conditional update needs search criteria: PUT ${type}?…`);
      const body = resourceBody(request.body, type);
      let criteria = raw;
      if (confined && principal.patient) {
        if (!bodyInCompartment(body, principal.patient)) throw outside(`this ${type}`);
        const narrowed = confineCriteria(type, raw, principal.patient);
        if (!narrowed) throw outside(`a conditional update of ${type}`);
        criteria = narrowed;
      }
      if (!mayCreate(principal, type)) {
        const found = await app.fhir.search(type, new URLSearchParams(`${criteria}&_summary=count`), {
          noCache: true,
        });
        if ((found.total ?? 0) === 0)
          throw new CarewayError(
            'insufficient-scope',
            `nothing matches, and creating the ${type} needs ${type}.c`,
          );
      }
      const res = await app.fhir.request('PUT', `${type}?${criteria}`, body, {
        headers: passedHeaders(request),
      });
      const w = writtenOf(res.headers.get('location') ?? res.headers.get('content-location'), res.body);
      if (w) await handOn(app, [{ resourceType: type, ...w, resource: { ...body, id: w.id } }]);
      return send(reply, app.fhir, res, res.body);
    },
  );

  // ---- JSON Patch ------------------------------------------------------------------------------------------
  // Applied here, on the current version, then written with If-Match: the result is checked like any update
  // (a patch cannot move a resource out of a patient's compartment), and a concurrent change is a 412, not lost.
  app.patch(
    '/fhir/:type/:id',
    {
      schema: {
        tags: ['fhir'],
        summary: 'Apply a JSON Patch (application/json-patch+json) to a resource (scope: .u)',
        security: [{ bearer: [] }],
        params: InstanceParams,
        body: Type.Array(
          Type.Object({ op: Type.String(), path: Type.String() }, { additionalProperties: true }),
        ),
        response: fhirResponses,
      },
    },
    async (request, reply) => {
      const { type, id } = request.params as { type: string; id: string };
      await checkType(capabilities, type);
      checkId(id);
      const principal = principalOf(request);
      const { confined } = access(principal, type, 'u');
      const current = await readIfExists(app.fhir, type, id);
      if (!current) throw new CarewayError('not-found', `${type}/${id} does not exist`);
      if (confined && principal.patient && !(await existingInCompartment(app, principal.patient, type, id)))
        throw outside(`${type}/${id}`);
      let patched: Resource;
      try {
        patched = fastJsonPatch.applyPatch(
          structuredClone(current),
          request.body as Operation[],
          true,
          false,
        ).newDocument;
      } catch (e) {
        throw new CarewayError(
          'bad-request',
          `the JSON Patch cannot be applied: ${e instanceof Error ? e.message.split('\n')[0] : 'invalid'}`,
        );
      }
      if (patched.resourceType !== type || patched.id !== id)
        throw new CarewayError('bad-request', 'a patch may not change resourceType or id');
      // The patched resource is a new body: checked at the edge like any other before it is written.
      checkStructure(patched);
      if (confined && principal.patient && !bodyInCompartment(patched, principal.patient))
        throw outside(`the patched ${type}`);
      delete patched.meta?.versionId;
      const ifMatch = request.headers['if-match'];
      return putById(
        app,
        reply,
        { ...patched, id },
        {
          ...passedHeaders(request),
          'if-match': typeof ifMatch === 'string' ? ifMatch : `W/"${current.meta?.versionId ?? ''}"`,
        },
      );
    },
  );

  // ---- delete ----------------------------------------------------------------------------------------------
  app.delete(
    '/fhir/:type/:id',
    {
      schema: {
        tags: ['fhir'],
        summary: 'Delete a resource (scope: .d)',
        security: [{ bearer: [] }],
        params: InstanceParams,
        response: { ...fhirResponses, 204: Type.Null() },
      },
    },
    async (request, reply) => {
      const { type, id } = request.params as { type: string; id: string };
      await checkType(capabilities, type);
      checkId(id);
      const principal = principalOf(request);
      const { confined } = access(principal, type, 'd');
      if (confined && principal.patient && !(await existingInCompartment(app, principal.patient, type, id)))
        throw outside(`${type}/${id}`);
      const res = await app.fhir.request('DELETE', `${type}/${id}`, undefined, {
        headers: passedHeaders(request),
      });
      await handOn(app, [{ resourceType: type, id }]);
      return send(reply, app.fhir, res, res.body === '' ? undefined : res.body);
    },
  );
}

/**
 * The handler of a batch or a general transaction POSTed to /fhir (the referral routes own that path and hand
 * on what is not a referral): every entry checked as its REST twin would be, then sent as one Bundle.
 */
export function bundleWriter(
  app: FastifyInstance,
  opts: FhirWriteOptions,
): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply> {
  const capabilities = new CapabilityCache(app.fhir);
  return async function bundle(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const principal = principalOf(request);
    const b = request.body as Bundle;
    if (b.type !== 'batch' && b.type !== 'transaction')
      throw new CarewayError(
        'bad-request',
        `POST /fhir takes a batch or transaction Bundle (got ${String(b.type).slice(0, 32)})`,
      );
    let requests: EntryRequest[];
    try {
      requests = readBundleRequests(b, opts.maxEntries);
    } catch (e) {
      if (e instanceof EntryProblem) throw new CarewayError('bad-request', e.message);
      throw e;
    }
    const entries: BundleEntry[] = (b.entry ?? []).map((e) => ({
      ...e,
      ...(e.request ? { request: { ...e.request } } : {}),
    }));
    for (const r of requests) {
      const where = `entry ${r.index} (${r.interaction} ${r.type})`;
      await checkType(capabilities, r.type);
      const { confined } = access(principal, r.type, PERMISSION[r.interaction]);
      const entry = entries[r.index]!;
      if (r.interaction === 'search' || r.interaction === 'read') {
        // Reads in a Bundle are not filtered as /fhir searches are: only plain ones, and none for patient tokens.
        if (confined) throw outside(`${where}: reads in a Bundle are not available to patient tokens;`);
        if (/[?&](_include|_revinclude|_has)/.test(entry.request?.url ?? ''))
          throw new CarewayError(
            'bad-request',
            `${where}: _include, _revinclude and _has are not taken in a Bundle`,
          );
        continue;
      }
      if (
        r.interaction === 'update' &&
        r.id &&
        !mayCreate(principal, r.type) &&
        !(await readIfExists(app.fhir, r.type, r.id))
      )
        throw new CarewayError(
          'insufficient-scope',
          `${where}: ${r.type}/${r.id} does not exist, and creating it needs ${r.type}.c`,
        );
      if (!confined || !principal.patient) continue;
      const patient = principal.patient;
      if (r.interaction === 'patch') throw outside(`${where}: a PATCH in a Bundle`);
      if (r.resource && !bodyInCompartment(r.resource, patient)) throw outside(where);
      if (r.id && !(await existingInCompartment(app, patient, r.type, r.id)))
        throw outside(`${where}: ${r.type}/${r.id}`);
      if (r.criteria !== undefined) {
        const narrowed = confineCriteria(r.type, r.criteria, patient);
        if (!narrowed) throw outside(where);
        if (r.interaction === 'create') entry.request!.ifNoneExist = narrowed;
        else entry.request!.url = `${r.type}?${narrowed}`;
      }
    }
    const sent: Bundle = { ...b, entry: entries };
    const res = await app.fhir.request<Bundle>('POST', '', sent, { headers: passedHeaders(request) });
    const answer = res.body as Bundle;
    const base = publicBase(request);
    const changes: FhirWrite[] = [];
    (answer.entry ?? []).forEach((e, i) => {
      const loc = e.response?.location;
      if (loc) e.response!.location = loc.replace(app.fhir.baseUrl, base);
      const r = requests[i];
      if (
        !r ||
        r.interaction === 'read' ||
        r.interaction === 'search' ||
        !/^2/.test(e.response?.status ?? '')
      )
        return;
      const w = writtenOf(loc, e.resource) ?? (r.id ? { id: r.id } : undefined);
      if (w)
        changes.push({
          resourceType: r.type,
          ...w,
          ...(r.resource && r.interaction !== 'delete' ? { resource: { ...r.resource, id: w.id } } : {}),
        });
    });
    await handOn(app, changes);
    return send(reply, app.fhir, res, answer);
  };
}

/**
 * A Bundle that creates a ServiceRequest is a referral: it goes to referral intake (which takes transactions and
 * refuses a batch, saying why), so a referral is never written around its journey and triage Task. Any other
 * batch or transaction is a general write.
 */
export function isReferralBundle(body: unknown): boolean {
  const b = body as Bundle | undefined;
  if (b?.resourceType !== 'Bundle') return false;
  return (b.entry ?? []).some(
    (e) => e.resource?.resourceType === 'ServiceRequest' && e.request?.method === 'POST',
  );
}
