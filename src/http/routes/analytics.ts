/**
 * `$evaluate-measure` for Careway's published Measures (profiles/Measure-*.json): a summary MeasureReport,
 * computed by the analytics area. `GET /fhir/Measure` itself is the facade's ordinary search (the Measures are
 * on the FHIR server under the same ids).
 *
 * Scopes: `r` on MeasureReport or on Measure, from a user/ or system/ token. A report over all patients is no
 * patient's record, so a patient-context token gets 403, unless it asks with `subject` = its own patient: that
 * report is computed from that patient's resources only.
 * Audit: like every operation, by the audit plugin's onSend hook (`$evaluate-measure`, the Measure, and the
 * subject's patient when one is named).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { CarewayOperation } from '../../fhir/facade.js';
import { readParameters } from '../../fhir/parameters.js';
import { CarewayError } from '../../shared/errors.js';
import type { EvaluateInput } from '../../analytics/module.js';
import { forbidden } from '../auth/access.js';
import { decide } from '../auth/scopes.js';
import type { Principal } from '../auth/verifier.js';
import { principalOf } from '../plugins/auth.js';
import { FHIR_JSON } from '../plugins/errors.js';

export const ANALYTICS_OPERATIONS: CarewayOperation[] = [
  {
    name: 'evaluate-measure',
    definition: 'http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure',
    resourceType: 'Measure',
    documentation:
      "GET or POST [id]/$evaluate-measure?periodStart=YYYY-MM-DD&periodEnd=YYYY-MM-DD[&subject=Patient/{id}]: a summary MeasureReport of one of Careway's journey measures, stratified by stage and service (scope: MeasureReport.r or Measure.r; cached MEASURE_CACHE_SECONDS).",
  },
];

const KNOWN = new Set(['periodStart', 'periodEnd', 'subject', 'reportType']);
const IdParams = Type.Object({ id: Type.String() });
const FhirBody = Type.Object({ resourceType: Type.String() }, { additionalProperties: true });
const responses = { 200: FhirBody, '4xx': FhirBody, '5xx': FhirBody };

/** Who may ask: `r` on MeasureReport or Measure; a patient token only about its own patient. */
function checkAccess(principal: Principal, subject: string | undefined): void {
  const decisions = [
    decide(principal.scopes, 'MeasureReport', 'r'),
    decide(principal.scopes, 'Measure', 'r'),
  ];
  if (decisions.some((d) => d.allowed && !d.compartmentOnly)) return;
  if (!decisions.some((d) => d.allowed))
    throw forbidden(
      'no scope grants "r" on MeasureReport or Measure; a scope like user/MeasureReport.r is needed',
    );
  const own = principal.patient;
  const asked = /^(?:Patient\/)?([^/]+)$/.exec(subject ?? '')?.[1];
  if (!own || asked !== own)
    throw forbidden(
      'patient-context tokens may only evaluate a measure with subject=Patient/<their own patient>',
    );
}

/** The query string's parameters, each at most once, none unknown. */
function fromQuery(request: FastifyRequest): EvaluateInput & { reportType?: string } {
  const raw = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
  const q = new URLSearchParams(raw);
  const problems: string[] = [];
  const out: Record<string, string> = {};
  for (const k of new Set(q.keys())) {
    if (!KNOWN.has(k)) problems.push(`unknown parameter "${k.slice(0, 40)}"`);
    else if (q.getAll(k).length > 1) problems.push(`"${k}" may be given once`);
    else out[k] = q.get(k) ?? '';
  }
  if (problems.length)
    throw new CarewayError('invalid-parameters', `$evaluate-measure: ${problems.join('; ')}`);
  return out;
}

/** A POSTed Parameters body: periodStart/periodEnd as date (or dateTime), subject as string or Reference. */
function fromBody(body: unknown): EvaluateInput & { reportType?: string } {
  const p = readParameters(
    body,
    {
      periodStart: { kind: 'valueDate' },
      periodEnd: { kind: 'valueDate' },
      subject: { kind: 'valueString' },
      reportType: { kind: 'valueCode' },
    },
    '$evaluate-measure',
  );
  return {
    ...(p.periodStart ? { periodStart: p.periodStart } : {}),
    ...(p.periodEnd ? { periodEnd: p.periodEnd } : {}),
    ...(p.subject ? { subject: p.subject } : {}),
    ...(p.reportType ? { reportType: p.reportType } : {}),
  };
}

export default async function analyticsRoutes(app: FastifyInstance): Promise<void> {
  const handle = async (
    request: FastifyRequest,
    reply: FastifyReply,
    input: EvaluateInput & { reportType?: string },
  ): Promise<FastifyReply> => {
    checkAccess(principalOf(request), input.subject);
    if (input.reportType !== undefined && input.reportType !== 'summary')
      throw new CarewayError('not-supported', '$evaluate-measure: only reportType=summary is served');
    const { id } = request.params as { id: string };
    const { report, cached } = await app.areas.analytics.evaluate(id, input);
    return reply
      .code(200)
      .type(FHIR_JSON)
      .header('x-careway-cache', cached ? 'hit' : 'miss')
      .send(report);
  };
  const schema = (summary: string, body: boolean) => ({
    tags: ['analytics'],
    summary,
    description: ANALYTICS_OPERATIONS[0]!.documentation,
    security: [{ bearer: [] }],
    params: IdParams,
    ...(body ? { body: FhirBody } : { querystring: Type.Object({}, { additionalProperties: true }) }),
    response: responses,
  });

  app.get(
    '/fhir/Measure/:id/$evaluate-measure',
    { schema: schema('Evaluate a Careway measure (scope: MeasureReport.r or Measure.r)', false) },
    (request, reply) => handle(request, reply, fromQuery(request)),
  );
  app.post(
    '/fhir/Measure/:id/$evaluate-measure',
    {
      schema: schema(
        'Evaluate a Careway measure, Parameters body (scope: MeasureReport.r or Measure.r)',
        true,
      ),
    },
    (request, reply) => handle(request, reply, fromBody(request.body)),
  );
}
