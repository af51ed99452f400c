import { describe, expect, it } from 'vitest';
import type { Appointment, CarePlan, Encounter, EpisodeOfCare, Reference, Resource } from 'fhir/r4.js';
import {
  eventsForResource,
  hasRecurringActivity,
  intervalMs,
  journeysNamedBy,
  patientOf,
  triggerOf,
} from '../../src/journey/resource-events.js';
import {
  journeyOf,
  raiseResourceEvents,
  type ResourceEventJourneys,
} from '../../src/journey/raise-events.js';
import {
  EVENT_STAGE,
  initialState,
  stageAfterEvent,
  withStage,
  type JourneyEvent,
  type JourneyState,
} from '../../src/journey/rules.js';
import {
  JOURNEY_EXTENSION_URL,
  newJourneyEpisode,
  readState,
  writeState,
} from '../../src/journey/episode.js';
import type { Actor } from '../../src/journey/provenance.js';
import { CarewayError } from '../../src/shared/errors.js';
import type { JourneyStage } from '../../src/journey/stages.js';

const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const link = (id: string) => [
  { url: JOURNEY_EXTENSION_URL, valueReference: { reference: `EpisodeOfCare/${id}` } },
];
const every3Months = { repeat: { frequency: 1, period: 3, periodUnit: 'mo' as const } };

const appointment = (status: Appointment['status'], extra: Partial<Appointment> = {}): Appointment => ({
  resourceType: 'Appointment',
  id: 'a1',
  status,
  participant: [{ actor: { reference: 'Patient/p1' }, status: 'accepted' }],
  ...extra,
});
const encounter = (status: Encounter['status'], code: string, extra: Partial<Encounter> = {}): Encounter => ({
  resourceType: 'Encounter',
  id: 'e1',
  status,
  class: { system: ACT, code },
  subject: { reference: 'Patient/p1' },
  ...extra,
});
const carePlan = (status: CarePlan['status'], extra: Partial<CarePlan> = {}): CarePlan => ({
  resourceType: 'CarePlan',
  id: 'c1',
  status,
  intent: 'plan',
  subject: { reference: 'Patient/p1' },
  ...extra,
});
const recurring = (detail: Partial<NonNullable<CarePlan['activity']>[number]['detail']> = {}) => ({
  activity: [{ detail: { status: 'scheduled' as const, scheduledTiming: every3Months, ...detail } }],
});

describe('eventsForResource: what raises an event', () => {
  it('when an Appointment is fulfilled then visit-fulfilled', () => {
    expect(eventsForResource(appointment('fulfilled'))).toEqual(['visit-fulfilled']);
  });

  it('when an outpatient (AMB) Encounter is finished then visit-fulfilled, with the old ActCode URL or none too', () => {
    expect(eventsForResource(encounter('finished', 'AMB'))).toEqual(['visit-fulfilled']);
    const old = encounter('finished', 'AMB', {
      class: { system: 'http://hl7.org/fhir/v3/ActCode', code: 'AMB' },
    });
    expect(eventsForResource(old)).toEqual(['visit-fulfilled']);
    expect(eventsForResource(encounter('finished', 'AMB', { class: { code: 'AMB' } }))).toEqual([
      'visit-fulfilled',
    ]);
  });

  it('when a CarePlan becomes active then careplan-active', () => {
    expect(eventsForResource(carePlan('active'))).toEqual(['careplan-active']);
    expect(eventsForResource(carePlan('active', { intent: 'order' }))).toEqual(['careplan-active']);
  });

  it('when an active CarePlan has a recurring activity then careplan-active and followup-plan-active, in stage order', () => {
    expect(eventsForResource(carePlan('active', recurring()))).toEqual([
      'careplan-active',
      'followup-plan-active',
    ]);
  });

  it('when a CarePlan is completed then treatment-completed (its recurring activity no longer counts)', () => {
    expect(eventsForResource(carePlan('completed'))).toEqual(['treatment-completed']);
    expect(eventsForResource(carePlan('completed', recurring()))).toEqual(['treatment-completed']);
  });
});

describe('eventsForResource: what raises nothing', () => {
  it.each([
    ['a booked Appointment', appointment('booked')],
    ['an arrived Appointment', appointment('arrived')],
    ['a no-show', appointment('noshow')],
    ['a cancelled Appointment', appointment('cancelled')],
    ['an Appointment entered in error', appointment('entered-in-error')],
    ['an inpatient Encounter finished (A03 discharge, handled by HL7 intake)', encounter('finished', 'IMP')],
    ['an emergency Encounter finished', encounter('finished', 'EMER')],
    ['an outpatient Encounter in progress', encounter('in-progress', 'AMB')],
    ['an outpatient Encounter arrived', encounter('arrived', 'AMB')],
    ['an outpatient Encounter entered in error', encounter('entered-in-error', 'AMB')],
    [
      'an AMB code from another code system',
      encounter('finished', 'AMB', { class: { system: 'urn:x', code: 'AMB' } }),
    ],
    ['a draft CarePlan', carePlan('draft', recurring())],
    ['a CarePlan on hold', carePlan('on-hold', recurring())],
    ['a revoked CarePlan', carePlan('revoked')],
    ['a CarePlan entered in error', carePlan('entered-in-error', recurring())],
    [
      'an active CarePlan that is only a proposal',
      carePlan('active', { intent: 'proposal', ...recurring() }),
    ],
    ['an active CarePlan that is only an option', carePlan('active', { intent: 'option' })],
    ['a Patient', { resourceType: 'Patient', id: 'p1' }],
    ['an EpisodeOfCare', { resourceType: 'EpisodeOfCare', id: 'x' }],
  ])('when it is %s then no event', (_name, resource) => {
    expect(eventsForResource(resource)).toEqual([]);
  });

  it('when an active CarePlan has no recurring activity then careplan-active only', () => {
    expect(
      eventsForResource(carePlan('active', { activity: [{ detail: { status: 'scheduled' } }] })),
    ).toEqual(['careplan-active']);
    // A one-off timing, a repeat without a period, a runaway rhythm, an activity that ended: not follow-up.
    for (const detail of [
      { scheduledTiming: { event: ['2030-01-01'] } },
      { scheduledTiming: { repeat: { count: 3 } } },
      { scheduledTiming: { repeat: { frequency: 1000, period: 1, periodUnit: 's' as const } } },
      { status: 'completed' as const },
      { status: 'cancelled' as const },
      { status: 'stopped' as const },
      { status: 'entered-in-error' as const },
    ])
      expect(eventsForResource(carePlan('active', recurring(detail))), JSON.stringify(detail)).toEqual([
        'careplan-active',
      ]);
  });

  it('when the repeat is read then it is the interval the check-up reminders use', () => {
    expect(intervalMs(every3Months)).toBe(90 * 86400_000);
    expect(intervalMs({ repeat: { frequency: 2, period: 1, periodUnit: 'wk' } })).toBe(3.5 * 86400_000);
    expect(hasRecurringActivity(carePlan('active', recurring()))).toBe(true);
    expect(hasRecurringActivity(carePlan('active'))).toBe(false);
  });
});

describe('which journey a resource names, and its patient', () => {
  it('when an Encounter lists episodes then their ids come back; the journey extension is read on the others', () => {
    const e = encounter('finished', 'AMB', {
      episodeOfCare: [{ reference: 'EpisodeOfCare/ehr-1' }, { reference: 'EpisodeOfCare/j1/_history/3' }],
    });
    expect(journeysNamedBy(e)).toEqual(['ehr-1', 'j1']);
    expect(journeysNamedBy(carePlan('active', { extension: link('j2') }))).toEqual(['j2']);
    expect(journeysNamedBy(appointment('fulfilled', { extension: link('j3') }))).toEqual(['j3']);
  });

  it('when the link is missing, not literal or to another type then none is named', () => {
    expect(journeysNamedBy(carePlan('active'))).toEqual([]);
    expect(journeysNamedBy(encounter('finished', 'AMB', { episodeOfCare: [{ display: 'x' }] }))).toEqual([]);
    const other = [{ url: JOURNEY_EXTENSION_URL, valueReference: { reference: 'Patient/p1' } }];
    expect(journeysNamedBy(carePlan('active', { extension: other }))).toEqual([]);
    const foreign = [{ url: 'urn:other', valueReference: { reference: 'EpisodeOfCare/x' } }];
    expect(journeysNamedBy(appointment('fulfilled', { extension: foreign }))).toEqual([]);
  });

  it('when the patient is asked then it is the Appointment participant or the subject', () => {
    const a = appointment('fulfilled', {
      participant: [
        { actor: { reference: 'Practitioner/d1' }, status: 'accepted' },
        { actor: { reference: 'Patient/p9' }, status: 'accepted' },
      ],
    });
    expect(patientOf(a)).toBe('p9');
    expect(patientOf(encounter('finished', 'AMB'))).toBe('p1');
    expect(patientOf(carePlan('active', { subject: { reference: 'Group/g' } }))).toBeUndefined();
  });

  it('when the trigger is described then it names the resource and its status, and only ids', () => {
    expect(triggerOf(carePlan('active'), 'rest-hook')).toEqual({
      reference: 'CarePlan/c1',
      display: 'CarePlan/c1 active (rest-hook)',
    });
    const { id: _id, ...noId } = encounter('finished', 'AMB');
    expect(triggerOf(noId as Resource, 'hl7:ADT^A03:42')).toEqual({
      display: 'Encounter finished (hl7:ADT^A03:42)',
    });
  });
});

describe('the journey rules ignore a repeated event (idempotence)', () => {
  const events: JourneyEvent[] = [
    'visit-fulfilled',
    'careplan-active',
    'treatment-completed',
    'followup-plan-active',
  ];
  it.each(events)(
    'when %s is raised on a journey already at its stage or beyond then nothing changes',
    (event) => {
      const at = EVENT_STAGE[event];
      const state = initialState(at, 'active', '2026-01-01T00:00:00Z');
      expect(stageAfterEvent(state, event)).toBeUndefined();
      const later = withStage(state, 'continuous-care', '2026-01-02T00:00:00Z', 'x');
      expect(stageAfterEvent(later, event)).toBeUndefined();
    },
  );
});

/** An in-memory journey service, the shape raiseResourceEvents needs, applying the real rules. */
function fakeJourneys(
  journeys: Record<string, { stage: JourneyStage; status?: EpisodeOfCare['status']; patient?: string }>,
) {
  const store = new Map<string, EpisodeOfCare>();
  for (const [id, j] of Object.entries(journeys)) {
    const eoc = newJourneyEpisode({
      identifier: { system: 'urn:t', value: id },
      patient: { reference: `Patient/${j.patient ?? 'p1'}` },
      state: initialState(j.stage, j.status ?? 'active', '2026-01-01T00:00:00Z'),
    });
    store.set(id, { ...eoc, id });
  }
  const writes: { id: string; event: JourneyEvent; trigger?: Reference; actor: Actor }[] = [];
  const read = (id: string) => {
    const episode = store.get(id);
    if (!episode) throw new CarewayError('not-found', `EpisodeOfCare/${id} does not exist`);
    return episode;
  };
  const service: ResourceEventJourneys = {
    async readJourney(id) {
      const episode = read(id);
      try {
        return { episode, state: readState(episode) };
      } catch {
        throw new CarewayError('not-a-journey', 'no stage');
      }
    },
    async journeysOf(patientId) {
      return [...store.values()].filter((e) => e.patient.reference === `Patient/${patientId}`);
    },
    async applyEvent(id, event, actor, trigger) {
      const episode = read(id);
      const state: JourneyState = readState(episode);
      const to = stageAfterEvent(state, event);
      if (!to) return { episode, changed: false };
      const next = {
        ...writeState(episode, withStage(state, to, new Date().toISOString(), `event: ${event}`)),
        id,
      };
      store.set(id, next);
      writes.push({ id, event, actor, ...(trigger ? { trigger } : {}) });
      return { episode: next, changed: true };
    },
  };
  return { service, store, writes, stage: (id: string) => readState(read(id)).stage };
}

describe('raiseResourceEvents (no I/O: a fake journey service with the real rules)', () => {
  it('when an active CarePlan with a recurring activity arrives then the journey goes to care, then continuous-care, one write each, naming the plan', async () => {
    const f = fakeJourneys({ j1: { stage: 'access' } });
    const plan = carePlan('active', { extension: link('j1'), ...recurring() });
    const raised = await raiseResourceEvents(f.service, [plan], 'rest-hook');
    expect(raised).toEqual([
      { resource: 'CarePlan/c1', journey: 'EpisodeOfCare/j1', event: 'careplan-active', outcome: 'changed' },
      {
        resource: 'CarePlan/c1',
        journey: 'EpisodeOfCare/j1',
        event: 'followup-plan-active',
        outcome: 'changed',
      },
    ]);
    expect(f.stage('j1')).toBe('continuous-care');
    expect(f.writes.map((w) => w.trigger)).toEqual([
      { reference: 'CarePlan/c1', display: 'CarePlan/c1 active (rest-hook)' },
      { reference: 'CarePlan/c1', display: 'CarePlan/c1 active (rest-hook)' },
    ]);
    expect(f.writes[0]?.actor).toEqual({ subject: 'careway' });

    // The replay: nothing written.
    const again = await raiseResourceEvents(f.service, [plan], 'sweep');
    expect(again.map((r) => r.outcome)).toEqual(['unchanged', 'unchanged']);
    expect(f.writes).toHaveLength(2);
  });

  it("when a resource names no journey then the patient's open journey is used; closed ones are skipped", async () => {
    const f = fakeJourneys({ old: { stage: 'care', status: 'finished' }, open: { stage: 'access' } });
    expect(await journeyOf(f.service, appointment('fulfilled'))).toBe('open');
    await raiseResourceEvents(f.service, [appointment('fulfilled')], 'sweep', {
      actor: { subject: 'hl7-intake' },
    });
    expect(f.stage('open')).toBe('care');
    expect(f.writes[0]?.actor).toEqual({ subject: 'hl7-intake' });
  });

  it("when an Encounter names the EHR's own episode (not a journey) then the patient's journey is used", async () => {
    const f = fakeJourneys({ j1: { stage: 'access' } });
    f.store.set('ehr', {
      resourceType: 'EpisodeOfCare',
      id: 'ehr',
      status: 'active',
      patient: { reference: 'Patient/p1' },
    });
    const e = encounter('finished', 'AMB', { episodeOfCare: [{ reference: 'EpisodeOfCare/ehr' }] });
    expect(await journeyOf(f.service, e)).toBe('j1');
  });

  it('when the caller knows the journey (HL7 worker) then it is used for resources that name none', async () => {
    const f = fakeJourneys({ j1: { stage: 'access' }, j2: { stage: 'access' } });
    await raiseResourceEvents(f.service, [encounter('finished', 'AMB')], 'hl7:ADT^A03:1', {
      journeyId: 'j2',
    });
    expect([f.stage('j1'), f.stage('j2')]).toEqual(['access', 'care']);
  });

  it("when the named journey is closed then nothing changes, and the patient's other journey is not touched", async () => {
    const f = fakeJourneys({ closed: { stage: 'care', status: 'finished' }, open: { stage: 'access' } });
    const raised = await raiseResourceEvents(
      f.service,
      [carePlan('completed', { extension: link('closed') })],
      'x',
    );
    expect(raised.map((r) => r.outcome)).toEqual(['unchanged']);
    expect(f.stage('open')).toBe('access');
    expect(f.writes).toEqual([]);
  });

  it('when nothing is raised or the patient has no journey then no journey is read at all or nothing happens', async () => {
    const f = fakeJourneys({});
    let reads = 0;
    const counting: ResourceEventJourneys = {
      ...f.service,
      readJourney: (id) => (reads++, f.service.readJourney(id)),
      journeysOf: (id) => (reads++, f.service.journeysOf(id)),
    };
    expect(await raiseResourceEvents(counting, [appointment('booked'), carePlan('draft')], 'x')).toEqual([]);
    expect(reads).toBe(0);
    expect(await raiseResourceEvents(counting, [appointment('fulfilled')], 'x')).toEqual([]);
  });

  it('when the journey refuses for good then it is reported; a transient failure is thrown for a retry', async () => {
    const f = fakeJourneys({ j1: { stage: 'access' } });
    const refusing: ResourceEventJourneys = {
      ...f.service,
      applyEvent: () => Promise.reject(new CarewayError('journey-closed', 'closed')),
    };
    expect(
      await raiseResourceEvents(refusing, [appointment('fulfilled', { extension: link('j1') })], 'x'),
    ).toEqual([
      {
        resource: 'Appointment/a1',
        journey: 'EpisodeOfCare/j1',
        event: 'visit-fulfilled',
        outcome: 'refused',
        refusal: 'journey-closed',
      },
    ]);
    const busy: ResourceEventJourneys = {
      ...f.service,
      applyEvent: () => Promise.reject(new CarewayError('concurrent-update', 'retry')),
    };
    await expect(
      raiseResourceEvents(busy, [appointment('fulfilled', { extension: link('j1') })], 'x'),
    ).rejects.toThrow('retry');
  });
});

describe('outside input', () => {
  it('when a delivered body is malformed (no class, no participant, no activity detail) then no event and no throw', () => {
    expect(eventsForResource({ resourceType: 'Encounter', status: 'finished' } as Resource)).toEqual([]);
    expect(eventsForResource({ resourceType: 'Appointment', status: 'booked' } as Resource)).toEqual([]);
    expect(patientOf({ resourceType: 'Appointment', status: 'fulfilled' } as Resource)).toBeUndefined();
    expect(
      eventsForResource({
        resourceType: 'CarePlan',
        status: 'active',
        intent: 'plan',
        activity: [{}],
      } as Resource),
    ).toEqual(['careplan-active']);
  });
});
