/**
 * The one HTTP call Careway makes to a referrer: `PUT {reply-to}/Task/{id}` with the Task's current state.
 *
 * A referrer configured in REFERRAL_ENDPOINTS is usually a hospital system behind the same security as the
 * FHIR server, so it gets the FHIR server's client options: the Authorization header of FHIR_AUTH (fresh,
 * refreshed once on 401) and the mTLS client certificate of FHIR_TLS_*. A reply address that is only on
 * REFERRAL_REPLY_ALLOWLIST gets neither: Careway's credentials go nowhere it was not told to send them.
 *
 * Never logs; an error names the referrer's answer, never the token.
 */
import { request } from 'undici';
import type { OutboundHttp } from '../fhir/auth.js';

/** Client options for the configured referrer endpoints (REFERRAL_ENDPOINTS base URLs). */
export interface ReferrerHttp extends OutboundHttp {
  /** Base URLs whose addresses (the URL itself or anything under it) get the options. */
  readonly endpoints: readonly string[];
}

const trim = (u: string): string => u.replace(/\/+$/, '');

/** Whether `url` lies under one of the configured endpoints (same origin and path prefix). */
export function isConfiguredEndpoint(url: string, endpoints: readonly string[]): boolean {
  const u = trim(url);
  return endpoints.some((e) => {
    const base = trim(e);
    return u === base || u.startsWith(`${base}/`);
  });
}

/**
 * PUTs the body; resolves with the referrer's HTTP status. With credentials, a 401 drops the refused token
 * and the PUT is sent once more with a new one. Network failures reject (the caller retries the job).
 */
export async function putToReferrer(
  replyTo: string,
  url: string,
  body: string,
  referrer: ReferrerHttp | undefined,
  timeoutMs: number,
): Promise<number> {
  const options = referrer && isConfiguredEndpoint(replyTo, referrer.endpoints) ? referrer : undefined;
  const put = async (authorization: string | undefined): Promise<number> => {
    const res = await request(url, {
      method: 'PUT',
      headers: {
        'content-type': 'application/fhir+json',
        ...(authorization ? { authorization } : {}),
      },
      body,
      signal: AbortSignal.timeout(timeoutMs),
      ...(options?.dispatcher ? { dispatcher: options.dispatcher } : {}),
    });
    await res.body.dump();
    return res.statusCode;
  };
  const auth = options?.auth;
  const first = await auth?.header();
  const status = await put(first);
  if (status !== 401 || !auth || first === undefined) return status;
  auth.invalidate(first);
  const next = await auth.header();
  return next === undefined || next === first ? status : put(next);
}
