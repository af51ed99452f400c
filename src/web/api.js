/**
 * Careway's APIs from the browser, with the session's bearer token. Every answer is returned as it came: the
 * app shows what the token's scopes let the server return and never works around a refusal.
 * - 401: the token expired or was revoked; the session ends and the sign-in page shows.
 * - anything else that is not 2xx: an ApiError with the OperationOutcome's text (the views say what failed;
 *   403 as a scope the sign-in lacks). Every route the app calls is part of this Careway, so a 404 is a real
 *   "not found", never "not built yet".
 */
import { session } from './auth.js';

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** The first issue's text of an OperationOutcome, or a generic message. */
function outcomeText(body, status) {
  const issue = body && body.resourceType === 'OperationOutcome' ? body.issue?.[0] : undefined;
  return issue?.diagnostics ?? issue?.details?.text ?? `the server answered ${status}`;
}

/**
 * Calls Careway. `body` is sent as JSON (FHIR JSON under /fhir); `ifMatch` is a resource version the write
 * is conditional on (sent as If-Match: W/"version", so a change made meanwhile answers 412, not a lost update).
 * Resolves with the parsed body; throws ApiError.
 */
export async function api(path, { method = 'GET', body, signal, ifMatch } = {}) {
  const token = session.token();
  const headers = { accept: 'application/fhir+json, application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (ifMatch) headers['if-match'] = `W/"${ifMatch}"`;
  if (body !== undefined)
    headers['content-type'] = path.startsWith('/fhir') ? 'application/fhir+json' : 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = text;
  }
  if (res.status === 401 && token) {
    session.clear('Your session has ended; please sign in again.');
    throw new ApiError(401, 'signed out', parsed);
  }
  if (!res.ok) throw new ApiError(res.status, outcomeText(parsed, res.status), parsed);
  return parsed;
}

/** A FHIR Parameters resource from name → value[x] pairs. */
export function parameters(...pairs) {
  return {
    resourceType: 'Parameters',
    parameter: pairs
      .filter((p) => p && p.length === 3 && p[2] !== undefined && p[2] !== '')
      .map(([name, kind, value]) => ({ name, [kind]: value })),
  };
}

/** The resources of a Bundle, optionally of one type. */
export function entries(bundle, type) {
  return (bundle?.entry ?? []).map((e) => e.resource).filter((r) => r && (!type || r.resourceType === type));
}
