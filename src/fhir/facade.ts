/**
 * Pure helpers for the `/fhir` facade: Careway's CapabilityStatement and URL rewriting between the FHIR
 * server's base and Careway's public base. No I/O.
 */
import type { Bundle, CapabilityStatement, CapabilityStatementRestResource } from 'fhir/r4.js';

/** Interactions the facade serves today; the CapabilityStatement must not promise more. */
export const FACADE_INTERACTIONS = [
  'read',
  'vread',
  'search-type',
  'create',
  'update',
  'patch',
  'delete',
] as const;

/** An operation Careway adds to the FHIR API, for the CapabilityStatement. */
export interface CarewayOperation {
  readonly name: string;
  readonly definition: string;
  readonly resourceType?: string;
  readonly documentation: string;
}

export interface CapabilityOptions {
  publicBase: string;
  version: string;
  operations?: readonly CarewayOperation[];
  /** Types Careway accepts `create` for (e.g. ServiceRequest, as referral intake). */
  createTypes?: readonly string[];
  /** System interactions Careway serves (e.g. transaction, for referral bundles). */
  systemInteractions?: readonly ('transaction' | 'batch')[];
  /** Whether browser apps may call it (CORS_ORIGINS is set). */
  cors?: boolean;
}

/**
 * Builds Careway's CapabilityStatement from the FHIR server's: same resources and search parameters, but
 * only the interactions the facade serves, SMART security declared, and Careway's own operations listed.
 */
export function carewayCapabilityStatement(
  server: CapabilityStatement,
  opts: CapabilityOptions,
): CapabilityStatement {
  const ops = opts.operations ?? [];
  const rest = server.rest?.find((r) => r.mode === 'server') ?? { mode: 'server' as const };
  const resources: CapabilityStatementRestResource[] = (rest.resource ?? []).map((r) => {
    const own = ops.filter((o) => o.resourceType === r.type);
    const out: CapabilityStatementRestResource = {
      type: r.type,
      ...(r.profile ? { profile: r.profile } : {}),
      interaction: [
        // Writes of any type the server serves (the server's own interactions still decide what it accepts).
        ...FACADE_INTERACTIONS.map((code) => ({ code })),
      ],
      versioning: r.versioning ?? 'versioned',
      conditionalCreate: true,
      conditionalUpdate: true,
      conditionalDelete: 'not-supported',
      readHistory: false,
      ...(r.searchInclude ? { searchInclude: r.searchInclude } : {}),
      ...(r.searchRevInclude ? { searchRevInclude: r.searchRevInclude } : {}),
      ...(r.searchParam ? { searchParam: r.searchParam } : {}),
      ...(own.length
        ? {
            operation: own.map((o) => ({
              name: o.name,
              definition: o.definition,
              documentation: o.documentation,
            })),
          }
        : {}),
    };
    return out;
  });
  const systemOps = ops.filter((o) => o.resourceType === undefined);
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    publisher: 'Careway',
    kind: 'instance',
    software: { name: 'Careway', version: opts.version },
    implementation: { description: 'Careway patient-journey FHIR facade', url: opts.publicBase },
    fhirVersion: server.fhirVersion ?? '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        documentation:
          'Every interaction except this CapabilityStatement needs a bearer token with SMART v2 scopes.',
        security: {
          cors: opts.cors ?? false,
          service: [
            {
              coding: [
                {
                  system: 'http://terminology.hl7.org/CodeSystem/restful-security-service',
                  code: 'SMART-on-FHIR',
                },
              ],
            },
          ],
          description:
            'Bearer JWT; scopes patient/, user/ and system/ (SMART App Launch v2). Patient tokens are confined to their compartment.',
        },
        resource: resources,
        ...(opts.systemInteractions?.length
          ? { interaction: opts.systemInteractions.map((code) => ({ code })) }
          : {}),
        ...(systemOps.length
          ? {
              operation: systemOps.map((o) => ({
                name: o.name,
                definition: o.definition,
                documentation: o.documentation,
              })),
            }
          : {}),
      },
    ],
  };
}

/** Rewrites absolute URLs on the FHIR server's base to Careway's base (links and fullUrls). */
export function rebase(url: string, upstreamBase: string, publicBase: string): string {
  return url.startsWith(upstreamBase) ? publicBase + url.slice(upstreamBase.length) : url;
}

export function rebaseBundle<T extends Bundle>(
  bundle: T,
  upstreamBase: string,
  publicBase: string,
  linkMapper?: (url: string) => string,
): T {
  for (const link of bundle.link ?? []) {
    link.url = rebase(link.url, upstreamBase, publicBase);
    if (linkMapper) link.url = linkMapper(link.url);
  }
  for (const e of bundle.entry ?? []) {
    if (e.fullUrl) e.fullUrl = rebase(e.fullUrl, upstreamBase, publicBase);
  }
  return bundle;
}
