import { describe, expect, it } from 'vitest';
import { newJourneyEpisode, readState, writeState, NotAJourneyError } from '../../src/journey/episode.js';
import { initialState, withStage, closed } from '../../src/journey/rules.js';
import { canonical } from '../../src/fhir/canonical.js';

const T0 = '2026-11-01T09:00:00.000Z';
const T1 = '2026-11-03T09:00:00.000Z';

describe('EpisodeOfCare mapping', () => {
  it('when a journey is written and read back then the state round-trips', () => {
    const state = withStage(initialState('access', 'active', T0), 'care', T1, 'first visit');
    const eoc = newJourneyEpisode({
      identifier: { system: 'urn:x', value: '1' },
      patient: { reference: 'Patient/p1' },
      referral: { reference: 'ServiceRequest/r1' },
      state,
    });
    expect(eoc.meta?.profile?.[0]).toBe(`${canonical.journeyEpisodeOfCare}|0.1.0`);
    expect(eoc.referralRequest).toEqual([{ reference: 'ServiceRequest/r1' }]);
    expect(eoc.period?.start).toBe(T0);
    expect(readState(eoc)).toEqual(state);
  });

  it('when other extensions are present then writing the state keeps them', () => {
    const eoc = newJourneyEpisode({
      identifier: { system: 'urn:x', value: '1' },
      patient: { reference: 'Patient/p1' },
      state: initialState('awareness', 'active', T0),
    });
    const withOther = {
      ...eoc,
      extension: [...(eoc.extension ?? []), { url: 'urn:other', valueString: 'keep' }],
    };
    const next = writeState(withOther, closed(readState(withOther), 'finished', T1));
    expect(next.extension?.filter((e) => e.url === 'urn:other')).toHaveLength(1);
    expect(next.status).toBe('finished');
    expect(next.period?.end).toBe(T1);
    expect(next.statusHistory?.map((s) => s.status)).toEqual(['active', 'finished']);
  });

  it('when an EpisodeOfCare has no stage then it is not a journey', () => {
    expect(() =>
      readState({ resourceType: 'EpisodeOfCare', status: 'active', patient: { reference: 'Patient/p' } }),
    ).toThrow(NotAJourneyError);
  });
});
