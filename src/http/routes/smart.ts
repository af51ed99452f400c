/**
 * SMART App Launch 2 discovery: `GET /.well-known/smart-configuration` and the same under `/fhir` (the FHIR base
 * is where a SMART app looks). Public, as the specification requires. It names the authorization server that
 * issues Careway's tokens: AUTH_AUTHORIZE_URL / AUTH_TOKEN_URL when set, else the endpoints in the issuer's own
 * OpenID discovery document (AUTH_ISSUER + /.well-known/openid-configuration), read once and cached for five
 * minutes. What Careway itself supports (SMART v2 scopes, patient and user and system contexts) is stated here.
 */
import type { FastifyInstance } from 'fastify';
import { request as undiciRequest } from 'undici';
import { Type } from 'typebox';
import { CarewayError } from '../../shared/errors.js';

interface AuthServerMetadata {
  readonly authorization_endpoint?: string;
  readonly token_endpoint?: string;
  readonly jwks_uri?: string;
  readonly introspection_endpoint?: string;
  readonly revocation_endpoint?: string;
  readonly registration_endpoint?: string;
}

const CACHE_MS = 5 * 60_000;

/** The scopes Careway understands (SMART v2: `<context>/<type>.<cruds>`), listed as examples with wildcards. */
const SCOPES = [
  'openid',
  'fhirUser',
  'launch/patient',
  'offline_access',
  'patient/*.rs',
  'patient/*.cruds',
  'user/*.rs',
  'user/*.cruds',
  'system/*.rs',
  'system/*.cruds',
];

const SmartConfiguration = Type.Object(
  {
    issuer: Type.String(),
    authorization_endpoint: Type.Optional(Type.String()),
    token_endpoint: Type.String(),
    jwks_uri: Type.Optional(Type.String()),
    grant_types_supported: Type.Array(Type.String()),
    capabilities: Type.Array(Type.String()),
  },
  { additionalProperties: true },
);

export default async function smartRoutes(app: FastifyInstance): Promise<void> {
  const { auth, web } = app.config;
  let cached: { at: number; meta: AuthServerMetadata } | undefined;

  const discovered = async (): Promise<AuthServerMetadata> => {
    if (web.authorizeUrl && web.tokenUrl) return {};
    if (cached && Date.now() - cached.at < CACHE_MS) return cached.meta;
    const url = `${auth.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    try {
      const res = await undiciRequest(url, { signal: AbortSignal.timeout(5000) });
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new Error(`status ${res.statusCode}`);
      }
      const meta = (await res.body.json()) as AuthServerMetadata;
      cached = { at: Date.now(), meta };
      return meta;
    } catch (e) {
      throw new CarewayError(
        'upstream-unavailable',
        `the authorization server's discovery document could not be read (${e instanceof Error ? e.message : 'error'}); set AUTH_AUTHORIZE_URL and AUTH_TOKEN_URL`,
      );
    }
  };

  const handler = async () => {
    const meta = await discovered();
    const tokenEndpoint = web.tokenUrl?.toString() ?? meta.token_endpoint;
    if (!tokenEndpoint)
      throw new CarewayError(
        'upstream-unavailable',
        'the authorization server names no token endpoint; set AUTH_TOKEN_URL',
      );
    const authorize = web.authorizeUrl?.toString() ?? meta.authorization_endpoint;
    const jwks = auth.jwksUrl?.toString() ?? meta.jwks_uri;
    return {
      issuer: auth.issuer,
      ...(jwks ? { jwks_uri: jwks } : {}),
      ...(authorize ? { authorization_endpoint: authorize } : {}),
      token_endpoint: tokenEndpoint,
      ...(meta.introspection_endpoint ? { introspection_endpoint: meta.introspection_endpoint } : {}),
      ...(meta.revocation_endpoint ? { revocation_endpoint: meta.revocation_endpoint } : {}),
      ...(meta.registration_endpoint ? { registration_endpoint: meta.registration_endpoint } : {}),
      grant_types_supported: [...(authorize ? ['authorization_code'] : []), 'client_credentials'],
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      scopes_supported: SCOPES,
      response_types_supported: authorize ? ['code'] : [],
      code_challenge_methods_supported: ['S256'],
      capabilities: [
        ...(authorize ? ['launch-standalone', 'context-standalone-patient', 'client-public'] : []),
        'client-confidential-symmetric',
        'client-confidential-asymmetric',
        'permission-v2',
        'permission-patient',
        'permission-user',
      ],
    };
  };

  for (const url of ['/.well-known/smart-configuration', '/fhir/.well-known/smart-configuration'])
    app.get(
      url,
      {
        config: { public: true },
        schema: {
          tags: ['fhir'],
          summary: 'SMART App Launch discovery: the authorization server and what Careway supports (public)',
          response: { 200: SmartConfiguration },
        },
      },
      async (_request, reply) => reply.header('cache-control', 'public, max-age=300').send(await handler()),
    );
}
