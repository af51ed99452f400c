/**
 * Reads a referral from what a referral system sends, in its three shapes, into one `Submission`:
 * - a transaction Bundle with the ServiceRequest, its Patient and optional supporting resources;
 * - a message Bundle (BSeR style: MessageHeader → Task → ServiceRequest), whose source endpoint is the
 *   reply address for status updates;
 * - a single ServiceRequest whose subject already exists on the server.
 *
 * Pure checks only (no I/O). Every problem is reported at once, each with the FHIRPath expression of the
 * element at fault, so a referral system can fix its message in one round.
 */
import type {
  Bundle,
  BundleEntry,
  MessageHeader,
  Patient,
  Reference,
  Resource,
  ServiceRequest,
  Task,
} from 'fhir/r4.js';

/** Supporting resource types a referral may carry. Anything else in the bundle is refused. */
export const SUPPORTING_TYPES = [
  'Practitioner',
  'PractitionerRole',
  'Organization',
  'Condition',
  'DocumentReference',
  'QuestionnaireResponse',
] as const;

export interface Problem {
  readonly expression: string;
  readonly message: string;
  /** 400: the envelope is wrong; 422: the envelope is fine, its content is not acceptable. */
  readonly status: 400 | 422;
}

export interface SubmissionEntry {
  readonly fullUrl: string | undefined;
  readonly resource: Resource;
  /** FHIRPath of the entry's resource in the original body, for error messages. */
  readonly path: string;
}

export interface Submission {
  readonly shape: 'transaction' | 'message' | 'single';
  readonly serviceRequest: SubmissionEntry & { resource: ServiceRequest };
  /** The Patient carried in the bundle, when there is one. */
  readonly patient?: SubmissionEntry & { resource: Patient };
  readonly supporting: readonly SubmissionEntry[];
  /** Where the referrer wants status updates (MessageHeader.source.endpoint). */
  readonly replyTo?: string;
  /** The referrer's MessageHeader id, echoed in the message response. */
  readonly messageId?: string;
  readonly event?: { system?: string; code?: string };
  /** References (`Type/id`) that must already exist on the server. */
  readonly serverReferences: readonly { reference: string; expression: string }[];
}

export type ReadResult = { ok: true; submission: Submission } | { ok: false; problems: Problem[] };

const LITERAL = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/;

/** Collects every Reference.reference under a resource, with its FHIRPath. */
function references(value: unknown, path: string, out: { reference: string; expression: string }[]): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => references(v, `${path}[${i}]`, out));
    return;
  }
  if (!value || typeof value !== 'object') return;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (k === 'reference' && typeof v === 'string')
      out.push({ reference: v, expression: `${path}.reference` });
    else if (k !== 'contained') references(v, `${path}.${k}`, out);
  }
}

function hasBusinessIdentifier(r: { identifier?: { system?: string; value?: string }[] }): boolean {
  // The edge has checked the structure; stay safe for callers that have not (a stray shape is "no identifier").
  const ids: unknown = r.identifier;
  return (
    Array.isArray(ids) &&
    ids.some((i: { system?: unknown; value?: unknown } | null) => !!i?.system && !!i.value)
  );
}

/** Shared checks once the entries are known. */
function assemble(
  shape: Submission['shape'],
  entries: SubmissionEntry[],
  problems: Problem[],
  extra: {
    replyTo?: string;
    messageId?: string;
    event?: { system?: string; code?: string };
    allowedExtraTypes?: string[];
  },
): ReadResult {
  const srs = entries.filter(
    (e): e is SubmissionEntry & { resource: ServiceRequest } => e.resource.resourceType === 'ServiceRequest',
  );
  const patients = entries.filter(
    (e): e is SubmissionEntry & { resource: Patient } => e.resource.resourceType === 'Patient',
  );
  const allowed = new Set<string>([
    'ServiceRequest',
    'Patient',
    ...SUPPORTING_TYPES,
    ...(extra.allowedExtraTypes ?? []),
  ]);
  for (const e of entries) {
    if (!allowed.has(e.resource.resourceType)) {
      problems.push({
        expression: e.path,
        message: `a referral may not carry ${e.resource.resourceType}`,
        status: 422,
      });
    }
  }
  if (srs.length !== 1) {
    problems.push({
      expression: 'Bundle.entry',
      message: `a referral needs exactly one ServiceRequest (found ${srs.length})`,
      status: 422,
    });
  }
  if (patients.length > 1)
    problems.push({
      expression: 'Bundle.entry',
      message: 'a referral may carry at most one Patient',
      status: 422,
    });
  const sr = srs[0];
  const patient = patients[0];
  if (sr && !hasBusinessIdentifier(sr.resource)) {
    problems.push({
      expression: `${sr.path}.identifier`,
      message: "the referral needs the referrer's identifier (system and value)",
      status: 422,
    });
  }
  if (patient && !hasBusinessIdentifier(patient.resource)) {
    problems.push({
      expression: `${patient.path}.identifier`,
      message: 'the patient needs a usable identifier (system and value) to be matched',
      status: 422,
    });
  }

  // References: to another entry (by fullUrl), or to a resource already on the server (`Type/id`).
  const fullUrls = new Set(entries.map((e) => e.fullUrl).filter((u): u is string => !!u));
  const serverReferences: { reference: string; expression: string }[] = [];
  for (const e of entries) {
    const refs: { reference: string; expression: string }[] = [];
    references(e.resource, e.path, refs);
    for (const r of refs) {
      if (r.reference.startsWith('#')) continue;
      if (fullUrls.has(r.reference)) continue;
      if (r.reference.startsWith('urn:uuid:') || r.reference.startsWith('urn:oid:')) {
        problems.push({
          expression: r.expression,
          message: `reference ${r.reference} does not resolve inside the bundle`,
          status: 422,
        });
      } else if (LITERAL.test(r.reference)) {
        serverReferences.push(r);
      } else {
        problems.push({
          expression: r.expression,
          message: 'references must be to a bundle entry or Type/id on this server',
          status: 422,
        });
      }
    }
  }
  if (sr) {
    const subject = typeof sr.resource.subject?.reference === 'string' ? sr.resource.subject.reference : '';
    const toBundlePatient = patient && patient.fullUrl === subject;
    if (!toBundlePatient && !/^Patient\//.test(subject)) {
      problems.push({
        expression: `${sr.path}.subject`,
        message: 'the referral subject must be a Patient',
        status: 422,
      });
    }
    if (!patient && shape !== 'single' && !/^Patient\//.test(subject)) {
      problems.push({
        expression: `${sr.path}.subject`,
        message: 'the referral needs its Patient in the bundle or on the server',
        status: 422,
      });
    }
  }
  if (problems.length > 0 || !sr) return { ok: false, problems };
  return {
    ok: true,
    submission: {
      shape,
      serviceRequest: sr,
      ...(patient ? { patient } : {}),
      supporting: entries.filter(
        (e) =>
          e !== sr &&
          e !== patient &&
          e.resource.resourceType !== 'Task' &&
          e.resource.resourceType !== 'MessageHeader',
      ),
      ...(extra.replyTo ? { replyTo: extra.replyTo } : {}),
      ...(extra.messageId ? { messageId: extra.messageId } : {}),
      ...(extra.event ? { event: extra.event } : {}),
      serverReferences,
    },
  };
}

function entriesOf(bundle: Bundle, problems: Problem[]): SubmissionEntry[] {
  const out: SubmissionEntry[] = [];
  (bundle.entry ?? []).forEach((e: BundleEntry, i) => {
    const path = `Bundle.entry[${i}].resource`;
    if (!e.resource || typeof e.resource !== 'object' || typeof e.resource.resourceType !== 'string') {
      problems.push({
        expression: `Bundle.entry[${i}]`,
        message: 'every entry needs a resource',
        status: 400,
      });
      return;
    }
    out.push({ fullUrl: e.fullUrl, resource: e.resource, path });
  });
  return out;
}

export interface Limits {
  readonly maxEntries: number;
}

function envelope(
  body: unknown,
  type: 'transaction' | 'message',
  limits: Limits,
): { bundle?: Bundle; problems: Problem[] } {
  if (!body || typeof body !== 'object' || (body as Resource).resourceType !== 'Bundle') {
    return { problems: [{ expression: 'resourceType', message: 'expected a Bundle', status: 400 }] };
  }
  const bundle = body as Bundle;
  if (bundle.type !== type) {
    return {
      problems: [
        {
          expression: 'Bundle.type',
          message: `expected Bundle.type "${type}" (got "${String(bundle.type)}")`,
          status: 400,
        },
      ],
    };
  }
  if (!Array.isArray(bundle.entry) || bundle.entry.length === 0) {
    return { problems: [{ expression: 'Bundle.entry', message: 'the bundle has no entries', status: 400 }] };
  }
  if (bundle.entry.length > limits.maxEntries) {
    return {
      problems: [
        {
          expression: 'Bundle.entry',
          message: `the bundle has ${bundle.entry.length} entries; at most ${limits.maxEntries} are accepted`,
          status: 422,
        },
      ],
    };
  }
  return { bundle, problems: [] };
}

/** A transaction Bundle (`POST /fhir`). Entry requests must be POST or PUT of the resource. */
export function readTransaction(body: unknown, limits: Limits): ReadResult {
  const { bundle, problems } = envelope(body, 'transaction', limits);
  if (!bundle) return { ok: false, problems };
  bundle.entry?.forEach((e, i) => {
    const method = e.request?.method;
    if (method && method !== 'POST' && method !== 'PUT') {
      problems.push({
        expression: `Bundle.entry[${i}].request.method`,
        message: `only POST and PUT entries belong in a referral (got ${method})`,
        status: 422,
      });
    }
  });
  const entries = entriesOf(bundle, problems);
  return assemble('transaction', entries, problems, {});
}

/** A message Bundle (`POST /fhir/$process-message`): MessageHeader first, focus → Task → ServiceRequest. */
export function readMessage(body: unknown, limits: Limits): ReadResult {
  const { bundle, problems } = envelope(body, 'message', limits);
  if (!bundle) return { ok: false, problems };
  const entries = entriesOf(bundle, problems);
  const header = entries[0]?.resource as MessageHeader | undefined;
  if (header?.resourceType !== 'MessageHeader') {
    problems.push({
      expression: 'Bundle.entry[0].resource',
      message: 'a message Bundle starts with its MessageHeader',
      status: 400,
    });
    return { ok: false, problems };
  }
  const event = header.eventCoding ?? (header.eventUri ? { code: header.eventUri } : undefined);
  if (!event)
    problems.push({
      expression: 'Bundle.entry[0].resource.event',
      message: 'the MessageHeader needs an event',
      status: 400,
    });
  else if (!/referral/i.test(`${event.code ?? ''}`)) {
    problems.push({
      expression: 'Bundle.entry[0].resource.event',
      message: `event ${event.code ?? ''} is not a referral event`,
      status: 422,
    });
  }
  // The Task the header focuses on (BSeR) is the referrer's; Careway keeps its own triage Task.
  const focus: Reference[] = header.focus ?? [];
  const tasks = entries.filter((e) => e.resource.resourceType === 'Task');
  for (const t of tasks) {
    const task = t.resource as Task;
    const target = task.focus?.reference;
    if (
      target &&
      !entries.some((e) => e.fullUrl === target && e.resource.resourceType === 'ServiceRequest')
    ) {
      problems.push({
        expression: `${t.path}.focus`,
        message: 'the Task must focus on the ServiceRequest in the message',
        status: 422,
      });
    }
  }
  if (focus.length === 0)
    problems.push({
      expression: 'Bundle.entry[0].resource.focus',
      message: 'the MessageHeader needs a focus',
      status: 400,
    });
  // The header and the referrer's Task are message plumbing, not data to store.
  const data = entries.slice(1);
  const replyTo = typeof header.source?.endpoint === 'string' ? header.source.endpoint : undefined;
  return assemble('message', data, problems, {
    ...(replyTo ? { replyTo } : {}),
    ...(header.id ? { messageId: header.id } : {}),
    ...(event
      ? {
          event: {
            ...(event.system ? { system: event.system } : {}),
            ...(event.code ? { code: event.code } : {}),
          },
        }
      : {}),
    allowedExtraTypes: ['Task'],
  });
}

/** A single ServiceRequest (`POST /fhir/ServiceRequest`) whose subject is already on the server. */
export function readSingle(body: unknown): ReadResult {
  if (!body || typeof body !== 'object' || (body as Resource).resourceType !== 'ServiceRequest') {
    return {
      ok: false,
      problems: [{ expression: 'resourceType', message: 'expected a ServiceRequest', status: 400 }],
    };
  }
  const sr = body as ServiceRequest;
  if (!/^Patient\/[A-Za-z0-9\-.]{1,64}$/.test(sr.subject?.reference ?? '')) {
    return {
      ok: false,
      problems: [
        {
          expression: 'ServiceRequest.subject',
          message: 'a single referral must reference an existing Patient/{id}',
          status: 422,
        },
      ],
    };
  }
  return assemble('single', [{ fullUrl: undefined, resource: sr, path: 'ServiceRequest' }], [], {});
}
