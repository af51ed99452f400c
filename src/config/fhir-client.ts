/**
 * Builds Careway's FHIR client from the configuration: the one place where FHIR_AUTH and FHIR_TLS_* become
 * a token source and a TLS-carrying connection pool. (src/fhir may not import config, so the wiring is here.)
 *
 * The token source, the FhirClient and the referral status callback share one pool and one token cache: a
 * token fetched for a FHIR read serves the referrer PUT too, and the mTLS certificate goes to the token
 * endpoint, the FHIR server and the configured referrers alike.
 */
import type { Dispatcher } from 'undici';
import { OAuthTokenSource, staticBearer, type AuthProvider } from '../fhir/auth.js';
import { FhirClient, fhirAgent, type FhirClientOptions, type FhirPort } from '../fhir/client.js';
import type { ReferrerHttp } from '../referrals/referrer-http.js';
import type { Config } from './config.js';

/** The credentials FHIR_AUTH describes, or undefined for an open server (FHIR_AUTH=none). */
export function createFhirAuth(config: Config, dispatcher?: Dispatcher): AuthProvider | undefined {
  const a = config.fhirAuth;
  const common = {
    timeoutMs: config.fhirTimeoutMs,
    ...(dispatcher ? { dispatcher } : {}),
  };
  switch (a.mode) {
    case 'none':
      return undefined;
    case 'bearer':
      return staticBearer(a.token);
    case 'client-credentials':
      return new OAuthTokenSource({
        ...common,
        tokenUrl: a.tokenUrl.href,
        clientId: a.clientId,
        client: { method: a.secretMethod, secret: a.clientSecret },
        ...(a.scope ? { scope: a.scope } : {}),
      });
    case 'smart-backend':
      return new OAuthTokenSource({
        ...common,
        ...(a.tokenUrl ? { tokenUrl: a.tokenUrl.href } : {}),
        fhirBaseUrl: config.fhirBaseUrl.href,
        clientId: a.clientId,
        client: { method: 'private_key_jwt', key: a.key, alg: a.alg, kid: a.kid },
        scope: a.scope,
      });
  }
}

/**
 * The FhirClient for FHIR_BASE_URL with FHIR_TIMEOUT_MS, FHIR_AUTH and FHIR_TLS_*. `overrides` is for tests
 * and tools (e.g. fewer retries); it cannot replace the credentials.
 */
export function createFhirClient(
  config: Config,
  overrides: Omit<FhirClientOptions, 'baseUrl' | 'auth' | 'tls' | 'dispatcher' | 'fetch'> = {},
): FhirClient {
  const dispatcher = fhirAgent({
    ...(overrides.connections === undefined ? {} : { connections: overrides.connections }),
    ...(config.fhirTls ? { tls: config.fhirTls } : {}),
  });
  const auth = createFhirAuth(config, dispatcher);
  return new FhirClient({
    timeoutMs: config.fhirTimeoutMs,
    ...overrides,
    baseUrl: config.fhirBaseUrl,
    dispatcher,
    ...(auth ? { auth } : {}),
  });
}

/**
 * The same client options for the referral status callback (`StatusDeps.referrer`): the FhirClient's token
 * source and pool, for the REFERRAL_ENDPOINTS base URLs only. Takes the port the app holds; a port that is not
 * a FhirClient (a test double) lends no credentials.
 */
export function createReferrerHttp(config: Config, fhir: FhirPort): ReferrerHttp {
  const client = fhir instanceof FhirClient ? fhir : undefined;
  return {
    endpoints: Object.values(config.referrals.endpoints),
    ...(client?.auth ? { auth: client.auth } : {}),
    ...(client?.dispatcher ? { dispatcher: client.dispatcher } : {}),
  };
}
