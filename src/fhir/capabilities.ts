/**
 * What the FHIR server says it serves, read from its CapabilityStatement and kept for a minute: the facade
 * asks on every request whether a resource type exists, and the statement changes only with a new server.
 */
import type { CapabilityStatement } from 'fhir/r4.js';
import type { FhirPort } from './client.js';

export interface ServerCapability {
  readonly server: CapabilityStatement;
  /** Resource types the server serves. */
  readonly types: ReadonlySet<string>;
}

export class CapabilityCache {
  private cached: (ServerCapability & { at: number }) | undefined;
  /** The read in progress: concurrent callers share it (a cold start under load asks the server once). */
  private reading: Promise<ServerCapability & { at: number }> | undefined;

  constructor(
    private readonly fhir: FhirPort,
    private readonly ttlMs = 60_000,
  ) {}

  /** The server's statement, read again once it is older than the TTL. */
  async get(): Promise<ServerCapability> {
    if (this.cached && Date.now() - this.cached.at <= this.ttlMs) return this.cached;
    this.reading ??= this.fhir
      .capabilities()
      .then((server) => {
        const types = new Set((server.rest ?? []).flatMap((r) => (r.resource ?? []).map((x) => x.type)));
        this.cached = { at: Date.now(), server, types };
        return this.cached;
      })
      .finally(() => {
        this.reading = undefined;
      });
    return this.reading;
  }

  async serves(type: string): Promise<boolean> {
    return (await this.get()).types.has(type);
  }
}
