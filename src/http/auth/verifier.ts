/**
 * Bearer-token verification with `jose`: signature against AUTH_JWKS_URL or AUTH_PUBLIC_KEY, then `iss`,
 * `aud` and `exp`. Only asymmetric algorithms are accepted; `alg: none` and HMAC tokens are refused, since a
 * shared secret would let any holder of the verification key mint tokens.
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import {
  createRemoteJWKSet,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { CarewayError } from '../../shared/errors.js';
import type { AuthConfig } from '../../config/config.js';
import { grantsAdmin, grantsHl7Raw, parseScopes, type Scope } from './scopes.js';

const ASYMMETRIC_ALGS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

/** The authenticated caller, as routes see it. Holds ids only (no names). */
export interface Principal {
  readonly subject: string;
  readonly scopes: readonly Scope[];
  /** SMART launch context: the patient a patient-context token is bound to. */
  readonly patient?: string;
  readonly fhirUser?: string;
  readonly clientId?: string;
  /** The token's `jti`, recorded in audit events (BALP: the agent's policy). */
  readonly tokenId?: string;
  /** The token holds an admin scope (`system/careway.admin` or `user/careway.admin`; see scopes.ts). */
  readonly admin?: true;
  /** The token may read raw HL7 messages (`system/careway.hl7.raw` or `user/careway.hl7.raw`). */
  readonly hl7Raw?: true;
}

export type TokenVerifier = (token: string) => Promise<Principal>;

function algorithmsFor(key: KeyObject): string[] {
  const byType: Record<string, string[]> = {
    rsa: ['RS256', 'RS384', 'RS512'],
    'rsa-pss': ['PS256', 'PS384', 'PS512'],
    ec: ['ES256', 'ES384', 'ES512'],
    ed25519: ['EdDSA', 'Ed25519'],
  };
  const algs = byType[key.asymmetricKeyType ?? ''];
  if (!algs) throw new Error(`AUTH_PUBLIC_KEY: unsupported key type ${String(key.asymmetricKeyType)}`);
  return algs;
}

function unauthenticated(description: string): CarewayError {
  return new CarewayError('unauthenticated', description, {
    headers: {
      'WWW-Authenticate': `Bearer error="invalid_token", error_description="${description.replace(/"/g, "'")}"`,
    },
  });
}

export function createVerifier(auth: AuthConfig): TokenVerifier {
  let key: KeyObject | JWTVerifyGetKey;
  let algorithms: string[];
  if (auth.jwksUrl) {
    key = createRemoteJWKSet(auth.jwksUrl, { timeoutDuration: 5000, cooldownDuration: 30000 });
    algorithms = ASYMMETRIC_ALGS;
  } else if (auth.publicKey) {
    const k = auth.publicKey.trim().startsWith('{')
      ? createPublicKey({ key: JSON.parse(auth.publicKey) as JsonWebKey, format: 'jwk' })
      : createPublicKey(auth.publicKey);
    key = k;
    algorithms = algorithmsFor(k);
  } else {
    throw new Error('no token verification key configured');
  }

  // Verified tokens are cached: signature verification (ES256/RS256) is the costliest step of a facade read,
  // and clients reuse one token for many requests. Keyed by the exact token string, so a cached entry can only
  // ever be hit by the same signed bytes. An entry lives until min(exp, verified + AUTH_CACHE_SECONDS): a
  // key rotated out of the JWKS stops being trusted within that bound. (Revocation by `jti` is checked on
  // every request, cache hit or not, by the auth plugin.)
  const cache = new Map<string, { principal: Principal; until: number }>();
  const MAX_CACHED = 10_000;
  const cacheSeconds = auth.cacheSeconds;

  return async (token: string): Promise<Principal> => {
    const hit = cache.get(token);
    if (hit) {
      if (hit.until > Date.now() / 1000) return hit.principal;
      cache.delete(token);
    }
    const principal = await verifyUncached(token);
    return principal;
  };

  async function verifyUncached(token: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      const result =
        typeof key === 'function'
          ? await jwtVerify(token, key, {
              issuer: auth.issuer,
              audience: auth.audience,
              algorithms,
              requiredClaims: ['exp'],
            })
          : await jwtVerify(token, key, {
              issuer: auth.issuer,
              audience: auth.audience,
              algorithms,
              requiredClaims: ['exp'],
            });
      payload = result.payload;
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) throw unauthenticated('token expired');
      if (e instanceof joseErrors.JWTClaimValidationFailed)
        throw unauthenticated(`token claim "${e.claim}" is not accepted`);
      if (e instanceof joseErrors.JOSEAlgNotAllowed) throw unauthenticated('token algorithm is not accepted');
      if (e instanceof joseErrors.JWSSignatureVerificationFailed)
        throw unauthenticated('token signature is invalid');
      if (e instanceof joseErrors.JWKSNoMatchingKey) throw unauthenticated('token signing key is unknown');
      if (e instanceof joseErrors.JWKSTimeout || (e instanceof Error && /fetch|ECONN/i.test(e.message))) {
        throw new CarewayError('upstream-unavailable', 'the token key set could not be fetched', {
          cause: e,
        });
      }
      throw unauthenticated('token is malformed');
    }
    const scopeClaim = payload['scope'] ?? payload['scp'];
    const scopeItems =
      typeof scopeClaim === 'string'
        ? scopeClaim
        : Array.isArray(scopeClaim)
          ? (scopeClaim as string[])
          : undefined;
    const scopes = parseScopes(scopeItems);
    const patient = typeof payload['patient'] === 'string' ? payload['patient'] : undefined;
    const fhirUser = typeof payload['fhirUser'] === 'string' ? payload['fhirUser'] : undefined;
    const clientId = typeof payload['client_id'] === 'string' ? payload['client_id'] : undefined;
    const principal: Principal = {
      subject: payload.sub ?? clientId ?? 'unknown',
      scopes,
      ...(patient ? { patient } : {}),
      ...(fhirUser ? { fhirUser } : {}),
      ...(clientId ? { clientId } : {}),
      ...(typeof payload.jti === 'string' ? { tokenId: payload.jti } : {}),
      ...(grantsAdmin(scopeItems) ? { admin: true as const } : {}),
      ...(grantsHl7Raw(scopeItems) ? { hl7Raw: true as const } : {}),
    };
    if (cacheSeconds > 0) {
      if (cache.size >= MAX_CACHED) {
        const oldest = cache.keys().next();
        if (!oldest.done) cache.delete(oldest.value);
      }
      cache.set(token, { principal, until: Math.min(payload.exp ?? 0, Date.now() / 1000 + cacheSeconds) });
    }
    return principal;
  }
}
