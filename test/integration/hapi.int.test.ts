/**
 * The ten HAPI checks from docs (fhir-server.md), each through Careway's FHIR port against the real HAPI
 * JPA server that global-setup started. They pin down the server behaviour the rest of Careway relies on.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Bundle, EpisodeOfCare, Observation, Patient, Subscription } from 'fhir/r4.js';
import { FhirClient } from '../../src/fhir/client.js';
import { FhirError } from '../../src/fhir/errors.js';
import { loadConformanceResources, uploadProfiles } from '../../src/fhir/profiles.js';
import { canonical, versioned } from '../../src/fhir/canonical.js';
import { join } from 'node:path';
import { projectRoot } from '../../src/shared/paths.js';
import { uniq } from '../support/harness.js';
import { newJourneyEpisode } from '../../src/journey/episode.js';
import { initialState } from '../../src/journey/rules.js';

const fhir = new FhirClient({ baseUrl: inject('fhirBaseUrl') });
afterAll(() => fhir.close());
const SYS = 'urn:careway:test:mrn';

function patient(mrn: string): Patient {
  return {
    resourceType: 'Patient',
    identifier: [{ system: SYS, value: mrn }],
    name: [{ family: 'Test' }],
    gender: 'unknown',
  };
}

describe('HAPI FHIR JPA through the FHIR port', () => {
  it('1. when /metadata is asked then HAPI answers with an R4 CapabilityStatement', async () => {
    const cs = await fhir.capabilities();
    expect(cs.resourceType).toBe('CapabilityStatement');
    expect(cs.fhirVersion).toBe('4.0.1');
  });

  it('2. when a Patient is created then it can be read back with its version', async () => {
    const created = await fhir.create(patient(uniq()));
    expect(created.outcome).toBe('created');
    expect(created.versionId).toBe('1');
    const read = await fhir.read<Patient>('Patient', created.resource.id ?? '');
    expect(read.identifier?.[0]?.value).toBe(created.resource.identifier?.[0]?.value);
  });

  it('3. when a transaction uses ifNoneExist and urn:uuid references then references resolve, and a replay creates nothing', async () => {
    const mrn = uniq();
    const tx = (): Bundle => ({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: 'urn:uuid:6f1c5a8e-0000-4000-8000-000000000001',
          resource: patient(mrn),
          request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYS}|${mrn}` },
        },
        {
          fullUrl: 'urn:uuid:6f1c5a8e-0000-4000-8000-000000000002',
          resource: {
            resourceType: 'EpisodeOfCare',
            identifier: [{ system: 'urn:careway:test:journey', value: mrn }],
            status: 'active',
            patient: { reference: 'urn:uuid:6f1c5a8e-0000-4000-8000-000000000001' },
          } as EpisodeOfCare,
          request: {
            method: 'POST',
            url: 'EpisodeOfCare',
            ifNoneExist: `identifier=urn:careway:test:journey|${mrn}`,
          },
        },
      ],
    });
    const first = await fhir.transaction(tx());
    expect(first.entry?.map((e) => e.response?.status.slice(0, 3))).toEqual(['201', '201']);
    const second = await fhir.transaction(tx());
    expect(second.entry?.map((e) => e.response?.status.slice(0, 3))).toEqual(['200', '200']);
    const eocs = await fhir.searchAll<EpisodeOfCare>(
      'EpisodeOfCare',
      { identifier: `urn:careway:test:journey|${mrn}` },
      { noCache: true },
    );
    expect(eocs).toHaveLength(1);
    const pid = first.entry?.[0]?.response?.location?.split('/')[1];
    expect(eocs[0]?.patient.reference).toBe(`Patient/${pid}`);
  });

  it('4. when the same conditional create is sent twice then one resource exists', async () => {
    const mrn = uniq();
    const a = await fhir.create(patient(mrn), { ifNoneExist: { identifier: `${SYS}|${mrn}` } });
    const b = await fhir.create(patient(mrn), { ifNoneExist: { identifier: `${SYS}|${mrn}` } });
    expect([a.outcome, b.outcome]).toEqual(['created', 'existing']);
    expect(b.resource.id).toBe(a.resource.id);
    const all = await fhir.searchAll('Patient', { identifier: `${SYS}|${mrn}` }, { noCache: true });
    expect(all).toHaveLength(1);
  });

  it('5. when a search runs, a matching resource is created, and the search runs again then it is seen', async () => {
    const mrn = uniq();
    const before = await fhir.search('Patient', { identifier: `${SYS}|${mrn}` }, { noCache: true });
    expect(before.total ?? before.entry?.length ?? 0).toBe(0);
    await fhir.create(patient(mrn));
    const after = await fhir.search('Patient', { identifier: `${SYS}|${mrn}` }, { noCache: true });
    expect(after.entry).toHaveLength(1);
  });

  it('6. when an update carries a stale If-Match then a typed conflict error (409) comes back', async () => {
    const { resource } = await fhir.create(patient(uniq()));
    const id = resource.id ?? '';
    await fhir.update({ ...resource, id, gender: 'female' }, { ifMatch: '1' });
    const err = await fhir
      .update({ ...resource, id, gender: 'male' }, { ifMatch: '1' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FhirError);
    expect((err as FhirError).status).toBe(409);
    expect((err as FhirError).isConflict).toBe(true);
    expect((err as FhirError).outcome?.resourceType).toBe('OperationOutcome');
  });

  it('7. when _include and _revinclude are asked then the linked resources come in the same Bundle', async () => {
    const mrn = uniq();
    const { resource: p } = await fhir.create(patient(mrn));
    const { resource: eoc } = await fhir.create<EpisodeOfCare>({
      resourceType: 'EpisodeOfCare',
      status: 'active',
      patient: { reference: `Patient/${p.id}` },
    });
    const inc = await fhir.search(
      'EpisodeOfCare',
      { _id: eoc.id, _include: 'EpisodeOfCare:patient' },
      { noCache: true },
    );
    expect(inc.entry?.map((e) => [e.resource?.resourceType, e.search?.mode])).toEqual([
      ['EpisodeOfCare', 'match'],
      ['Patient', 'include'],
    ]);
    const rev = await fhir.search(
      'Patient',
      { _id: p.id, _revinclude: 'EpisodeOfCare:patient' },
      { noCache: true },
    );
    expect(rev.entry?.map((e) => e.resource?.resourceType).sort()).toEqual(['EpisodeOfCare', 'Patient']);
  });

  it('8. when the profiles are uploaded then $validate fails an unknown stage and passes a valid journey', async () => {
    await uploadProfiles(fhir, await loadConformanceResources(join(projectRoot(), 'profiles')));
    // A journey as the domain writes it; only the current stage differs between the two.
    const valid: EpisodeOfCare = newJourneyEpisode({
      identifier: { system: 'urn:careway:test:journey', value: uniq() },
      patient: { reference: 'Patient/example' },
      state: initialState('care', 'active', new Date().toISOString()),
    });
    const ok = await fhir.validate(valid, versioned(canonical.journeyEpisodeOfCare));
    expect(ok.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal')).toEqual([]);
    const bad = structuredClone(valid);
    bad.extension![0]!.valueCoding!.code = 'not-a-stage';
    expect(bad.extension![0]!.url).toBe(canonical.journeyStageExtension);
    const ko = await fhir.validate(bad, versioned(canonical.journeyEpisodeOfCare));
    expect(ko.issue.some((i) => i.severity === 'error')).toBe(true);
  });

  describe('9. REST-hook subscription', () => {
    let server: Server;
    const received: { method: string; url: string; body: string }[] = [];
    let port = 0;
    beforeAll(async () => {
      server = createServer((req: IncomingMessage, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          received.push({ method: req.method ?? '', url: req.url ?? '', body });
          res.writeHead(200).end();
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      const addr = server.address();
      port = typeof addr === 'object' && addr ? addr.port : 0;
    });
    afterAll(async () => {
      await new Promise((r) => server.close(r));
    });

    it('when a subscription is active and a matching resource is written then a notification arrives', async () => {
      const code = uniq();
      const { resource: sub } = await fhir.create<Subscription>({
        resourceType: 'Subscription',
        status: 'requested',
        reason: 'careway test',
        criteria: `Observation?code=urn:careway:test|${code}`,
        channel: {
          type: 'rest-hook',
          endpoint: `http://127.0.0.1:${port}/hook`,
          payload: 'application/fhir+json',
        },
      });
      const deadline = Date.now() + 60_000;
      let status = sub.status;
      while (status !== 'active' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 500));
        status = (await fhir.read<Subscription>('Subscription', sub.id ?? '', { noCache: true })).status;
      }
      expect(status).toBe('active');
      const { resource: obs } = await fhir.create<Observation>({
        resourceType: 'Observation',
        status: 'final',
        code: { coding: [{ system: 'urn:careway:test', code }] },
      });
      while (!received.some((r) => r.url.includes(`Observation/${obs.id}`)) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
      }
      const hit = received.find((r) => r.url.includes(`Observation/${obs.id}`));
      expect(hit?.method).toBe('PUT');
      expect(JSON.parse(hit?.body ?? '{}')).toMatchObject({ resourceType: 'Observation', id: obs.id });
      await fhir.update({ ...sub, id: sub.id ?? '', status: 'off' });
    });
  });

  it('10. when Patient/$everything is asked then the patient and their linked resources come back', async () => {
    const { resource: p } = await fhir.create(patient(uniq()));
    await fhir.create({
      resourceType: 'EpisodeOfCare',
      status: 'active',
      patient: { reference: `Patient/${p.id}` },
    });
    const res = await fhir.request<Bundle>('GET', `Patient/${p.id}/$everything`, undefined, {
      noCache: true,
    });
    const types = res.body?.entry?.map((e) => e.resource?.resourceType).sort();
    expect(types).toEqual(['EpisodeOfCare', 'Patient']);
  });

  describe('the rest of the FHIR port', () => {
    it('when ten conditional creates race then all resolve to one resource (HAPI-2745 conflicts are re-read)', async () => {
      const mrn = uniq();
      const results = await Promise.all(
        Array.from({ length: 10 }, () =>
          fhir.create(patient(mrn), { ifNoneExist: { identifier: `${SYS}|${mrn}` } }),
        ),
      );
      expect(new Set(results.map((r) => r.resource.id)).size).toBe(1);
      expect(results.filter((r) => r.outcome === 'created')).toHaveLength(1);
      expect(
        await fhir.searchAll('Patient', { identifier: `${SYS}|${mrn}` }, { noCache: true }),
      ).toHaveLength(1);
    });

    it('when a conditional update runs twice then it creates once and then updates the same resource', async () => {
      const mrn = uniq();
      const a = await fhir.conditionalUpdate(patient(mrn), { identifier: `${SYS}|${mrn}` });
      const b = await fhir.conditionalUpdate(
        { ...patient(mrn), gender: 'female' },
        { identifier: `${SYS}|${mrn}` },
      );
      expect([a.outcome, b.outcome]).toEqual(['created', 'updated']);
      expect(b.resource.id).toBe(a.resource.id);
      expect(b.versionId).toBe('2');
      const v1 = await fhir.vread<Patient>('Patient', a.resource.id ?? '', '1');
      expect(v1.gender).toBe('unknown');
    });

    it('when a batch has a failing entry then the other entries still apply', async () => {
      const res = await fhir.batch({
        resourceType: 'Bundle',
        type: 'batch',
        entry: [
          { resource: patient(uniq()), request: { method: 'POST', url: 'Patient' } },
          { request: { method: 'GET', url: 'Patient/definitely-missing-id' } },
        ],
      });
      expect(res.entry?.map((e) => e.response?.status.slice(0, 3))).toEqual(['201', '404']);
    });

    it('when results span pages then searchAll follows next links', async () => {
      const tag = uniq();
      for (let i = 0; i < 5; i++) {
        await fhir.create({
          ...patient(uniq()),
          meta: { tag: [{ system: 'urn:careway:test:tag', code: tag }] },
        });
      }
      const all = await fhir.searchAll(
        'Patient',
        { _tag: `urn:careway:test:tag|${tag}`, _count: 2 },
        { noCache: true },
      );
      expect(all).toHaveLength(5);
    });

    it('when a read misses then a typed not-found error carries the OperationOutcome', async () => {
      const err = (await fhir.read('Patient', `missing-${uniq()}`).catch((e: unknown) => e)) as FhirError;
      expect(err.isNotFound).toBe(true);
      expect(err.outcome?.resourceType).toBe('OperationOutcome');
    });
  });
});
