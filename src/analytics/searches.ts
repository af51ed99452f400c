/**
 * The one way analytics reads the FHIR server: a search paged to the end, with what it `_include`s or
 * `_revinclude`s kept by `Type/id` (an included journey comes once however many pages name it). Every measure
 * needs one search (two for the confirmation rate), so a report costs a number of requests that grows with the
 * pages, never with the patients.
 */
import type { Resource } from 'fhir/r4.js';
import type { FhirPort } from '../fhir/client.js';

/** The page size asked for; the server may cap it (HAPI's maximum page size). */
export const PAGE_SIZE = 1000;
/** A bound on runaway paging: past it the report would be wrong, so evaluation fails instead. */
export const MAX_PAGES = 100_000;

export interface SearchResult {
  /** The matches, in the server's order. */
  readonly matches: readonly Resource[];
  /** Included resources, by `Type/id`. */
  readonly included: ReadonlyMap<string, Resource>;
}

export interface Searcher {
  all(type: string, params: URLSearchParams): Promise<SearchResult>;
}

export function fhirSearcher(fhir: FhirPort): Searcher {
  return {
    async all(type, params): Promise<SearchResult> {
      const q = new URLSearchParams(params);
      if (!q.has('_count')) q.set('_count', String(PAGE_SIZE));
      const matches: Resource[] = [];
      const included = new Map<string, Resource>();
      const first = await fhir.search(type, q, { noCache: true });
      let pages = 0;
      for await (const page of fhir.pages(first, { maxPages: MAX_PAGES })) {
        pages++;
        for (const e of page.entry ?? []) {
          const r = e.resource;
          if (!r) continue;
          if ((e.search?.mode ?? 'match') === 'match') matches.push(r);
          else if (e.search?.mode === 'include' && r.id) included.set(`${r.resourceType}/${r.id}`, r);
        }
      }
      if (pages >= MAX_PAGES) throw new Error(`analytics: ${type} search exceeded ${MAX_PAGES} pages`);
      return { matches, included };
    },
  };
}
