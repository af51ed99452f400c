/**
 * Feeds as hospitals really send them (docs: hl7.md), end to end: each file of test/fixtures/hl7/feeds/ is sent,
 * byte for byte, over a real MLLP socket to a running Careway, and what lands on the real HAPI FHIR server is
 * checked against test/fixtures/hl7/feeds/expectations.yaml (its header documents the format).
 *
 * - `{{RUN}}` in the files and in the expectations is replaced by an id unique to this run, so reruns against a
 *   shared FHIR server never collide.
 * - After the ACKs, the test waits for each message's inbound job to settle (completed, dead-lettered, or
 *   retrying), never for a fixed time.
 * - Test names say the case, the file and the check; several failing paths of one check are reported together.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiagnosticReport, Observation, Patient, Resource } from 'fhir/r4.js';
import { splitBatch } from '../../src/hl7/batch.js';
import { decodeMessage } from '../../src/hl7/charset.js';
import { jobIdFor } from '../../src/hl7/intake.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { frame, MllpDecoder } from '../../src/hl7/mllp/framing.js';
import { projectRoot } from '../../src/shared/paths.js';
import { startHarness, type Harness } from '../support/harness.js';

// ---- the expectations file ------------------------------------------------------------------------------------

interface ErrLocation {
  segment: string;
  field?: number;
}
interface Check {
  resource?: string;
  identifier?: string;
  search?: Record<string, string>;
  patient?: string;
  exists?: boolean;
  expect?: Record<string, unknown>;
  absent?: string[];
  resultCodes?: string[];
  count?: Record<string, number>;
}
interface SendStep {
  send: string;
  acks: string[];
  err?: ErrLocation;
  checks?: Check[];
}
interface PatchStep {
  patch: { resource: string; identifier: string; add: Record<string, unknown> };
  checks?: Check[];
}
type Step = SendStep | PatchStep;
interface Case {
  name: string;
  steps: Step[];
}
interface Spec {
  env?: Record<string, string>;
  cases: Case[];
}

const FEEDS = join(projectRoot(), 'test', 'fixtures', 'hl7', 'feeds');
const spec = parseYaml(readFileSync(join(FEEDS, 'expectations.yaml'), 'utf8')) as Spec;

/** Unique to this run: replaces `{{RUN}}` in the files and the expectations. */
const RUN = `${Date.now().toString(36).slice(-4)}${Math.random().toString(36).slice(2, 6)}`.toUpperCase();
const PLACEHOLDER = '{{RUN}}';
const sub = (s: string): string => s.replaceAll(PLACEHOLDER, RUN);

function subDeep<T>(v: T): T {
  if (typeof v === 'string') return sub(v) as T;
  if (Array.isArray(v)) return v.map((x: unknown) => subDeep(x)) as T;
  if (v && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [sub(k), subDeep(x)])) as T;
  return v;
}

/** Byte-level replacement, so a file's line endings and charset stay exactly as written. */
function subBytes(buf: Buffer): Buffer {
  const needle = Buffer.from(PLACEHOLDER, 'latin1');
  const value = Buffer.from(RUN, 'latin1');
  const parts: Buffer[] = [];
  let from = 0;
  for (let at = buf.indexOf(needle); at !== -1; at = buf.indexOf(needle, from)) {
    parts.push(buf.subarray(from, at), value);
    from = at + needle.length;
  }
  parts.push(buf.subarray(from));
  return Buffer.concat(parts);
}

const isSend = (s: Step): s is SendStep => 'send' in s;
const ACCEPT = new Set(['AA', 'CA']);

// ---- the app under test --------------------------------------------------------------------------------------

let h: Harness;
let readToken: string;

beforeAll(async () => {
  h = await startHarness(spec.env ?? {});
  readToken = await h.token({ scope: 'user/*.rs', sub: 'hl7-feeds-test' });
});
afterAll(async () => {
  await h?.close();
});

// ---- MLLP ----------------------------------------------------------------------------------------------------

/** Sends one frame on a new connection and collects `expected` ACKs (or what came before a generous timeout). */
async function exchange(bytes: Buffer, expected: number): Promise<Hl7Message[]> {
  const port = h.app.hl7.mllpPort();
  if (!port) throw new Error('the MLLP listener is not listening');
  const socket = connect(port, '127.0.0.1');
  const decoder = new MllpDecoder(1 << 20);
  const acks: Hl7Message[] = [];
  let closed = false;
  socket.on('data', (d: Buffer) => {
    for (const e of decoder.push(d))
      if (e.kind === 'frame') acks.push(Hl7Message.parse(e.payload.toString('utf8')));
  });
  socket.on('close', () => (closed = true));
  socket.on('error', () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.write(frame(bytes));
  const deadline = Date.now() + 30_000;
  while (acks.length < expected && !closed && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  socket.end();
  return acks;
}

interface SentMessage {
  controlId: string;
  sender: string;
  jobId: string;
}

function messagesOf(bytes: Buffer): SentMessage[] {
  const { text } = decodeMessage(bytes);
  return splitBatch(text).map((m) => {
    const msg = Hl7Message.parse(m);
    const sender = `${msg.sender.application}^${msg.sender.facility}`;
    return { controlId: msg.controlId, sender, jobId: jobIdFor(sender, msg.controlId) };
  });
}

type Outcome =
  | { state: 'completed' }
  | { state: 'dead-lettered' | 'retrying' | 'unsettled'; reason: string }
  | { state: 'not queued' };

/**
 * Waits for the message's inbound job to settle: completed, failed (dead-lettered), or failing and being retried
 * (then it is reported with its reason instead of waiting out the backoff). A message that was not accepted
 * must have no job at all.
 */
async function outcomeOf(m: SentMessage, accepted: boolean): Promise<Outcome> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const job = await h.app.hl7.queue.getJob(m.jobId);
    if (!job) {
      if (!accepted) return { state: 'not queued' };
    } else {
      const state = await job.getState();
      if (state === 'completed') return { state: 'completed' };
      if (state === 'failed') return { state: 'dead-lettered', reason: job.failedReason };
      if (state === 'delayed' && job.attemptsMade >= 2)
        return { state: 'retrying', reason: job.failedReason };
    }
    if (Date.now() > deadline)
      return { state: 'unsettled', reason: job ? `job ${await job.getState()}` : 'no job although accepted' };
    await new Promise((r) => setTimeout(r, 200));
  }
}

function errNames(ack: Hl7Message, where: ErrLocation): boolean {
  return ack.all('ERR').some((e) => {
    if (e.get(2, 1) === where.segment && (where.field === undefined || e.get(2, 3) === String(where.field)))
      return true;
    const text = e.fields.slice(1).join('|');
    const name = where.field === undefined ? where.segment : `${where.segment}-${where.field}`;
    return new RegExp(`(^|[^A-Za-z0-9])${name}(?![0-9])`).test(text);
  });
}

// ---- FHIR lookups --------------------------------------------------------------------------------------------

const search = <T extends Resource>(type: string, params: Record<string, string>): Promise<T[]> =>
  h.fhir.searchAll<T>(type, params, { noCache: true });

async function onePatientId(identifier: string): Promise<string> {
  const found = await search<Patient>('Patient', { identifier });
  if (found.length !== 1) throw new Error(`expected one Patient with ${identifier}, found ${found.length}`);
  return found[0]!.id!;
}

/** `Type?param=value` → `Type/<id>` of the one resource found. */
async function resolveRef(query: string): Promise<string> {
  const [type = '', qs = ''] = query.split('?');
  const found = await search(type, Object.fromEntries(new URLSearchParams(qs)));
  if (found.length !== 1) return `<${query} finds ${found.length} resources>`;
  return `${type}/${found[0]!.id}`;
}

// ---- paths and matchers --------------------------------------------------------------------------------------

/** Splits `a.b[0].c[system=urn:oid:1.2].d` on dots outside brackets. */
function tokens(path: string): string[] {
  const out: string[] = [];
  let cur = '';
  let depth = 0;
  for (const ch of path) {
    if (ch === '[') depth++;
    if (ch === ']') depth--;
    if (ch === '.' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function getPath(node: unknown, path: string): unknown {
  let cur: unknown = node;
  for (const token of tokens(path)) {
    const m = /^([A-Za-z_$][\w$]*)((?:\[[^\]]*\])*)$/.exec(token);
    if (!m) throw new Error(`bad path ${path}`);
    cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[m[1]!] : undefined;
    for (const [, sel = ''] of (m[2] ?? '').matchAll(/\[([^\]]*)\]/g)) {
      if (!Array.isArray(cur)) return undefined;
      const eq = sel.indexOf('=');
      if (eq === -1) cur = (cur as unknown[])[Number(sel)];
      else {
        const [k, v] = [sel.slice(0, eq), sel.slice(eq + 1)];
        cur = (cur as Record<string, unknown>[]).find((x) => x && String(x[k]) === v);
      }
    }
  }
  return cur;
}

const show = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v));
const offsetOf = (t: string): string => /(Z|[+-]\d\d:\d\d)$/.exec(t)?.[1] ?? '<no offset>';
const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** Mismatches between a value and a matcher (empty when it matches); see expectations.yaml for the forms. */
async function mismatches(actual: unknown, expected: unknown, path: string): Promise<string[]> {
  const fail = (what: string): string[] => [`${path}: expected ${what}, got ${show(actual)}`];
  if (isObj(expected) && Object.keys(expected).length === 1 && Object.keys(expected)[0]!.startsWith('$')) {
    const [op, arg] = Object.entries(expected)[0]!;
    switch (op) {
      case '$matches': {
        const src = String(arg);
        const re = src.startsWith('(?i)') ? new RegExp(src.slice(4), 'i') : new RegExp(src);
        return typeof actual === 'string' && re.test(actual) ? [] : fail(`a string matching /${src}/`);
      }
      case '$time': {
        const want = String(arg);
        const ok =
          typeof actual === 'string' &&
          /T/.test(actual) &&
          Date.parse(actual) === Date.parse(want) &&
          offsetOf(actual) === offsetOf(want);
        return ok ? [] : fail(`${want} (same instant and offset)`);
      }
      case '$length':
        return Array.isArray(actual) && actual.length === arg ? [] : fail(`a list of ${String(arg)}`);
      case '$contains': {
        if (!Array.isArray(actual)) return fail('a list');
        const out: string[] = [];
        for (const want of arg as unknown[]) {
          let found = false;
          for (const x of actual) if ((await mismatches(x, want, path)).length === 0) found = true;
          if (!found) out.push(`${path}: no element matches ${show(want)}; got ${show(actual)}`);
        }
        return out;
      }
      case '$ref': {
        const want = await resolveRef(String(arg));
        return actual === want ? [] : fail(`${want} (${String(arg)})`);
      }
      default:
        throw new Error(`unknown matcher ${op} at ${path}`);
    }
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) return fail(show(expected));
    const out: string[] = [];
    for (const [i, want] of expected.entries())
      out.push(...(await mismatches(actual[i], want, `${path}[${i}]`)));
    return out;
  }
  if (isObj(expected)) {
    if (!isObj(actual)) return fail(show(expected));
    const out: string[] = [];
    for (const [k, want] of Object.entries(expected))
      out.push(...(await mismatches(actual[k], want, `${path}.${k}`)));
    return out;
  }
  return actual === expected ? [] : fail(show(expected));
}

const isEmpty = (v: unknown): boolean =>
  v === undefined ||
  v === null ||
  (Array.isArray(v) && v.length === 0) ||
  (isObj(v) && !Object.keys(v).length);

// ---- one check -----------------------------------------------------------------------------------------------

function describeCheck(c: Check): string {
  const what = c.resource
    ? `${c.resource} ${c.identifier ?? ''}${c.search ? ` ${new URLSearchParams(c.search).toString()}` : ''}${c.patient ? ` of ${c.patient}` : ''}`
    : `patient ${c.patient ?? ''}`;
  const parts = [
    c.exists === false ? 'does not exist' : '',
    c.count
      ? `count ${Object.entries(c.count)
          .map(([t, n]) => `${t}=${n}`)
          .join(' ')}`
      : '',
    c.resultCodes ? 'result codes' : '',
    ...Object.keys(c.expect ?? {}),
    ...(c.absent ?? []).map((p) => `no ${p}`),
  ].filter(Boolean);
  const list = parts.length > 5 ? `${parts.slice(0, 5).join(', ')}, …` : parts.join(', ');
  return `${what.trim()}: ${list}`;
}

async function runCheck(c: Check): Promise<void> {
  const patientId = c.patient ? await onePatientId(c.patient) : undefined;
  for (const [type, n] of Object.entries(c.count ?? {})) {
    const found = await search(type, { patient: `Patient/${patientId}` });
    expect.soft(found.length, `number of ${type} for ${c.patient}`).toBe(n);
  }
  if (!c.resource) return;
  const params: Record<string, string> = {
    ...(c.identifier ? { identifier: c.identifier } : {}),
    ...(c.search ?? {}),
    ...(patientId ? { patient: `Patient/${patientId}` } : {}),
  };
  const found = await search(c.resource, params);
  const label = `${c.resource}?${new URLSearchParams(params).toString()}`;
  if (c.exists === false) {
    expect(
      found.map((r) => `${r.resourceType}/${r.id}`),
      `${label} must not exist`,
    ).toEqual([]);
    return;
  }
  expect(found.length, `exactly one ${label}`).toBe(1);
  let resource: Resource = found[0]!;
  if (c.resource === 'Patient') {
    // Read back through Careway's /fhir facade, as a client would.
    const res = await h.app.inject({
      method: 'GET',
      url: `/fhir/Patient/${resource.id}`,
      headers: { authorization: `Bearer ${readToken}` },
    });
    expect(res.statusCode, `GET /fhir/Patient/${resource.id} through the facade`).toBe(200);
    const viaFacade = res.json<Patient>();
    expect(viaFacade.id, 'the facade returns the stored Patient').toBe(resource.id);
    resource = viaFacade;
  }
  for (const [path, want] of Object.entries(c.expect ?? {})) {
    expect.soft(await mismatches(getPath(resource, path), want, path), `${label}: ${path}`).toEqual([]);
  }
  for (const path of c.absent ?? []) {
    const v = getPath(resource, path);
    expect.soft(isEmpty(v), `${label}: ${path} should be absent, is ${show(v)}`).toBe(true);
  }
  if (c.resultCodes) {
    const bundle = await h.fhir.search<DiagnosticReport | Observation>(
      'DiagnosticReport',
      { _id: resource.id ?? '', _include: 'DiagnosticReport:result' },
      { noCache: true },
    );
    const observations = bundle.entry
      ?.map((e) => e.resource)
      .filter((r): r is Observation => r?.resourceType === 'Observation');
    const codes = (observations ?? []).map((o) => o.code.coding?.[0]?.code ?? '?').sort();
    expect.soft(codes, `${label}: the Observations in its result`).toEqual([...c.resultCodes].sort());
    expect
      .soft((resource as DiagnosticReport).result?.length ?? 0, `${label}: number of result references`)
      .toBe(c.resultCodes.length);
  }
}

// ---- the cases -----------------------------------------------------------------------------------------------

for (const raw of spec.cases) {
  const c = subDeep(raw);
  describe(raw.name, () => {
    c.steps.forEach((step, n) => {
      const template = raw.steps[n]!;
      const stepName = isSend(template) ? template.send : `patch ${template.patch.resource}`;

      if (isSend(step)) {
        const sent: { messages?: SentMessage[]; acks?: Hl7Message[]; outcomes?: Outcome[] } = {};
        it(`${stepName}: ACK ${step.acks.join(' ')}${step.err ? ` with ERR at ${step.err.segment}${step.err.field ? `-${step.err.field}` : ''}` : ''}`, async () => {
          const bytes = subBytes(readFileSync(join(FEEDS, step.send)));
          sent.messages = messagesOf(bytes);
          sent.acks = await exchange(bytes, step.acks.length);
          // Wait for every message to settle before asserting, so later checks see the processed state.
          sent.outcomes = [];
          for (const [i, m] of sent.messages.entries()) {
            const code = sent.acks[i]?.segment('MSA')?.get(1) ?? '';
            sent.outcomes.push(await outcomeOf(m, ACCEPT.has(code)));
          }
          const got = sent.acks.map((a) => {
            const msa = a.segment('MSA');
            const err = a.segment('ERR');
            return `${msa?.get(1)} ${msa?.get(2)}${err ? ` ERR ${err.fields.slice(1).join('|')}` : ''}`;
          });
          expect(
            sent.acks.map((a) => a.segment('MSA')?.get(1)),
            `ACK codes (got: ${got.join(' ; ') || 'none'})`,
          ).toEqual(step.acks);
          expect(
            sent.acks.map((a) => a.segment('MSA')?.get(2)),
            'MSA-2 echoes each MSH-10',
          ).toEqual(sent.messages.map((m) => m.controlId));
          if (step.err) {
            const where = step.err;
            for (const a of sent.acks)
              expect(
                errNames(a, where),
                `ERR names ${where.segment}${where.field ? `-${where.field}` : ''}: ${got.join(' ; ')}`,
              ).toBe(true);
          }
        }, 180_000);

        it(`${stepName}: ${step.acks.every((a) => ACCEPT.has(a)) ? 'every message written (job completed)' : 'nothing queued, nothing written'}`, () => {
          expect(sent.outcomes, 'the file was not sent (see the ACK test)').toBeDefined();
          const want = step.acks.map((a) => (ACCEPT.has(a) ? 'completed' : 'not queued'));
          const got = (sent.outcomes ?? []).map((o) => o.state);
          const detail = (sent.outcomes ?? [])
            .map(
              (o, i) =>
                `${sent.messages?.[i]?.controlId}: ${o.state}${'reason' in o ? ` (${o.reason})` : ''}`,
            )
            .join('; ');
          expect(got, detail).toEqual(want);
        });
      } else {
        it(`${stepName}: Careway adds ${Object.keys(step.patch.add).join(', ')}`, async () => {
          const { resource: type, identifier, add } = step.patch;
          const found = await search(type, { identifier });
          expect(found.length, `exactly one ${type} with ${identifier} to change`).toBe(1);
          const current = found[0]! as Resource & Record<string, unknown> & { id: string };
          for (const [k, v] of Object.entries(add)) {
            const before = current[k];
            current[k] = Array.isArray(v) ? [...(Array.isArray(before) ? before : []), ...v] : v;
          }
          await h.fhir.update(current);
        });
      }

      for (const [i, check] of (step.checks ?? []).entries()) {
        const label = describeCheck((template.checks ?? [])[i] ?? check);
        it(`after ${stepName}: ${label}`, () => runCheck(check), 60_000);
      }
    });
  });
}
