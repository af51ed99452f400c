/**
 * The chaos suite's verdict, read from the FHIR server's own history (HAPI directly, never through Careway or
 * the proxy). Each version of a Patient, Encounter or Appointment carries the feed position of the message that
 * wrote it (feed.ts), so for every business identifier:
 *
 * - lost: a message that got AA whose marker is in no version of a resource it writes;
 * - duplicates: more than one resource with the identifier (one Patient per MRN, one Encounter per visit
 *   number, one Appointment per appointment id, one journey per patient);
 * - extra versions: more versions than the messages that wrote it (a replay that wrote again);
 * - order: markers that do not rise with the version number, or a final version that is not the patient's
 *   last message for it.
 */
import type { Bundle, Resource } from 'fhir/r4.js';
import { markers, type FeedMessage } from './feed.js';

type Kind = 'Patient' | 'Encounter' | 'Appointment';

export interface CheckResult {
  readonly resources: Record<string, number>;
  readonly versions: number;
  /** Accepted messages whose effect is missing from at least one resource they write. */
  readonly lostMessages: number;
  /** Resources that should exist and do not. */
  readonly missingResources: number;
  readonly duplicateResources: number;
  readonly duplicateJourneys: number;
  readonly extraVersions: number;
  readonly orderViolations: number;
  /** A few examples of each problem (identifiers and seqs only). */
  readonly examples: readonly string[];
}

interface Version {
  readonly id: string;
  readonly version: number;
  readonly marker: number | undefined;
  readonly keys: readonly string[];
}

function markerOf(type: Kind, r: Record<string, unknown>): number | undefined {
  if (type === 'Patient') {
    const line = (r['address'] as { line?: string[] }[] | undefined)?.[0]?.line?.[0];
    return markers.read(line);
  }
  if (type === 'Encounter') return markers.read((r['serviceType'] as { text?: string } | undefined)?.text);
  return markers.read(r['comment'] as string | undefined);
}

function identifierValues(r: Resource): string[] {
  return ((r as { identifier?: { value?: string }[] }).identifier ?? []).map((i) => i.value ?? '');
}

/** Every version of every resource of a type changed since `since`, following HAPI's paging links. */
async function history(base: string, type: string, since: string, run: string): Promise<Resource[]> {
  const out: Resource[] = [];
  // HAPI pages history by offset, newest first: versions written while it is read push older ones onto the next
  // page, where they are read twice. Each version counts once.
  const seen = new Set<string>();
  let url: string | undefined = `${base}/${type}/_history?_since=${encodeURIComponent(since)}&_count=200`;
  while (url) {
    const res = await fetch(url, {
      headers: { accept: 'application/fhir+json', 'cache-control': 'no-cache' },
      signal: AbortSignal.timeout(120_000),
    });
    if (!res.ok) throw new Error(`history of ${type}: HTTP ${res.status}`);
    const b = (await res.json()) as Bundle;
    for (const e of b.entry ?? []) {
      const r: Resource | undefined = e.resource;
      const key = `${r?.id}/${r?.meta?.versionId}`;
      if (r && !seen.has(key) && identifierValues(r).some((v) => v.includes(run))) {
        seen.add(key);
        out.push(r);
      }
    }
    url = b.link?.find((l) => l.relation === 'next')?.url;
  }
  return out;
}

export async function checkRun(
  fhirBase: string,
  run: string,
  since: string,
  messages: readonly FeedMessage[],
  accepted: ReadonlySet<number>,
  /**
   * false: the backlog has not drained yet (a look at a run in progress): only what is already wrong can be
   * told (duplicates, extra versions, versions out of order), not what is missing.
   */
  complete = true,
): Promise<CheckResult> {
  const expected: Record<Kind, Map<string, number[]>> = {
    Patient: new Map(),
    Encounter: new Map(),
    Appointment: new Map(),
  };
  const add = (kind: Kind, key: string | undefined, seq: number): void => {
    if (!key) return;
    const list = expected[kind].get(key) ?? [];
    list.push(seq);
    expected[kind].set(key, list);
  };
  for (const m of messages) {
    if (!accepted.has(m.seq)) continue;
    add('Patient', m.patientKey, m.seq);
    add('Encounter', m.encounterKey, m.seq);
    add('Appointment', m.appointmentKey, m.seq);
  }

  const examples: string[] = [];
  const note = (s: string): void => {
    if (examples.length < 40) examples.push(s);
  };
  const lost = new Set<number>();
  let missingResources = 0;
  let duplicateResources = 0;
  let extraVersions = 0;
  let orderViolations = 0;
  let versionsSeen = 0;
  const resources: Record<string, number> = {};

  for (const kind of ['Patient', 'Encounter', 'Appointment'] as const) {
    const all = await history(fhirBase, kind, since, run);
    versionsSeen += all.length;
    const byKey = new Map<string, Map<string, Version[]>>();
    for (const r of all) {
      const keys = ((r as { identifier?: { value?: string }[] }).identifier ?? [])
        .map((i) => i.value ?? '')
        .filter((v) => expected[kind].has(v));
      const v: Version = {
        id: r.id ?? '',
        version: Number(r.meta?.versionId ?? 0),
        marker: markerOf(kind, r as unknown as Record<string, unknown>),
        keys,
      };
      for (const key of keys) {
        const ids = byKey.get(key) ?? new Map<string, Version[]>();
        ids.set(v.id, [...(ids.get(v.id) ?? []), v]);
        byKey.set(key, ids);
      }
    }
    resources[kind] = new Set(all.map((r) => r.id)).size;
    for (const [key, seqs] of expected[kind]) {
      const ids = byKey.get(key);
      if (!ids && !complete) continue;
      if (!ids) {
        missingResources++;
        for (const s of seqs) lost.add(s);
        note(`${kind} ${key}: missing (messages ${seqs.slice(0, 5).join(',')}…)`);
        continue;
      }
      if (ids.size > 1) {
        duplicateResources += ids.size - 1;
        note(`${kind} ${key}: ${ids.size} resources (${[...ids.keys()].join(', ')})`);
      }
      const found = new Set<number>();
      for (const [id, versions] of ids) {
        versions.sort((a, b) => a.version - b.version);
        const marks = versions.map((v) => v.marker ?? -1);
        for (const m of marks) found.add(m);
        const wanted = seqs.filter((s) => marks.includes(s)).length;
        if (versions.length > wanted) {
          extraVersions += versions.length - wanted;
          note(
            `${kind}/${id} ${key}: ${versions.length} versions for ${wanted} messages: ${marks.join(',')}`,
          );
        }
        const rising = marks.every((m, i) => i === 0 || m > marks[i - 1]!);
        const last = marks.at(-1);
        if (!rising || (complete && ids.size === 1 && last !== seqs.at(-1))) {
          orderViolations++;
          note(`${kind}/${id} ${key}: versions ${marks.join(',')}, feed ${seqs.join(',')}`);
        }
      }
      for (const s of complete ? seqs : [])
        if (!found.has(s)) {
          lost.add(s);
          note(`${kind} ${key}: message ${s} has no version`);
        }
    }
  }

  // One journey per patient: its identifier is `<sender>|<patient key>`, whatever the faults.
  const journeys = await history(fhirBase, 'EpisodeOfCare', since, run);
  const journeyIds = new Map<string, Set<string>>();
  for (const j of journeys) {
    const value = (j as { identifier?: { value?: string }[] }).identifier?.find((i) =>
      i.value?.includes(run),
    )?.value;
    if (!value) continue;
    const set = journeyIds.get(value) ?? new Set<string>();
    set.add(j.id ?? '');
    journeyIds.set(value, set);
  }
  let duplicateJourneys = 0;
  for (const [value, ids] of journeyIds)
    if (ids.size > 1) {
      duplicateJourneys += ids.size - 1;
      note(`journey ${value}: ${ids.size} EpisodeOfCare`);
    }
  resources['EpisodeOfCare'] = new Set(journeys.map((j) => j.id)).size;

  return {
    resources,
    versions: versionsSeen,
    lostMessages: lost.size,
    missingResources,
    duplicateResources,
    duplicateJourneys,
    extraVersions,
    orderViolations,
    examples,
  };
}
