import { describe, expect, it } from 'vitest';
import type { Appointment, Communication, Resource } from 'fhir/r4.js';
import { buildTimeline, allergyAlerts, DEFAULT_TARGETS } from '../../src/journey/timeline.js';
import { newJourneyEpisode } from '../../src/journey/episode.js';
import { initialState, withStage } from '../../src/journey/rules.js';
import { canonical } from '../../src/fhir/canonical.js';

const day = 86400_000;
const now = new Date('2026-11-29T12:00:00Z');
const ago = (ms: number): string => new Date(now.getTime() - ms).toISOString();

function journey(stageStartAgo: number) {
  const state = withStage(initialState('awareness', 'active', ago(60 * day)), 'access', ago(stageStartAgo));
  const episode = {
    ...newJourneyEpisode({
      identifier: { system: 'urn:x', value: '1' },
      patient: { reference: 'Patient/p1' },
      referral: { reference: 'ServiceRequest/r1' },
      state,
    }),
    id: 'j1',
  };
  return { episode, state };
}

const appt = (
  id: string,
  status: Appointment['status'],
  startAgo: number,
  patientStatus: 'accepted' | 'needs-action' = 'accepted',
): Appointment => ({
  resourceType: 'Appointment',
  id,
  status,
  start: ago(startAgo),
  participant: [{ actor: { reference: 'Patient/p1' }, status: patientStatus }],
});

describe('buildTimeline', () => {
  it('when the journey has a long wait, a no-show, an unconfirmed reminder and an unanswered message then each is a pain point', () => {
    const { episode, state } = journey(40 * day);
    const linked: Resource[] = [
      {
        resourceType: 'ServiceRequest',
        id: 'r1',
        status: 'active',
        intent: 'order',
        subject: { reference: 'Patient/p1' },
        authoredOn: ago(50 * day),
      } as Resource,
      appt('a1', 'noshow', 20 * day),
      appt('a2', 'booked', -3 * day, 'needs-action'),
      {
        resourceType: 'Communication',
        id: 'c1',
        status: 'completed',
        category: [{ coding: [{ system: canonical.communicationCategory, code: 'reminder' }] }],
        about: [{ reference: 'Appointment/a2' }],
        sent: ago(1 * day),
      } as Communication,
      {
        resourceType: 'Communication',
        id: 'c2',
        status: 'completed',
        sender: { reference: 'Patient/p1' },
        sent: ago(5 * day),
      } as Communication,
    ];
    const t = buildTimeline(episode, state, linked, now);
    const kinds = t.painPoints.map((p) => p.kind).sort();
    expect(kinds).toEqual([
      'message-unanswered',
      'no-show',
      'referral-wait',
      'reminder-unconfirmed',
      'time-in-stage',
    ]);
    const wait = t.painPoints.find((p) => p.kind === 'referral-wait');
    expect(wait?.durationMs).toBe(30 * day);
    expect(wait?.resource).toBe('ServiceRequest/r1');
    expect(t.touchpoints.map((x) => x.time)).toEqual(
      [...t.touchpoints.map((x) => x.time)].sort((a, b) => Date.parse(a) - Date.parse(b)),
    );
    expect(t.touchpoints.find((x) => x.resource === 'Appointment/a1')?.stage).toBe('access');
  });

  it('when everything is within targets then there are no pain points', () => {
    const { episode, state } = journey(2 * day);
    const linked: Resource[] = [
      {
        resourceType: 'ServiceRequest',
        id: 'r1',
        status: 'active',
        intent: 'order',
        subject: { reference: 'Patient/p1' },
        authoredOn: ago(5 * day),
      } as Resource,
      appt('a1', 'booked', -1 * day, 'accepted'),
      {
        resourceType: 'Communication',
        id: 'c2',
        status: 'completed',
        sender: { reference: 'Patient/p1' },
        sent: ago(10 * 3600_000),
      } as Communication,
      {
        resourceType: 'Communication',
        id: 'c3',
        status: 'completed',
        sender: { reference: 'Practitioner/x' },
        sent: ago(9 * 3600_000),
        inResponseTo: [{ reference: 'Communication/c2' }],
      } as Communication,
    ];
    expect(buildTimeline(episode, state, linked, now, DEFAULT_TARGETS).painPoints).toEqual([]);
  });

  it('when a care-plan activity or a task is past due then it is an overdue follow-up', () => {
    const { episode, state } = journey(1 * day);
    const linked: Resource[] = [
      {
        resourceType: 'CarePlan',
        id: 'cp',
        status: 'active',
        intent: 'plan',
        subject: { reference: 'Patient/p1' },
        activity: [
          {
            detail: {
              status: 'scheduled',
              code: { text: 'Follow-up call' },
              scheduledPeriod: { start: ago(3 * day) },
            },
          },
        ],
      } as Resource,
      {
        resourceType: 'Task',
        id: 't',
        status: 'requested',
        intent: 'order',
        executionPeriod: { end: ago(1 * day) },
      } as Resource,
    ];
    const pains = buildTimeline(episode, state, linked, now).painPoints;
    expect(pains.map((p) => [p.kind, p.resource])).toEqual([
      ['follow-up-overdue', 'CarePlan/cp'],
      ['follow-up-overdue', 'Task/t'],
    ]);
  });
});

describe('allergyAlerts', () => {
  it('when allergies are active, inactive or refuted then only active ones alert, high criticality first', () => {
    const mk = (id: string, status: string, criticality?: 'high' | 'low', verification?: string): Resource =>
      ({
        resourceType: 'AllergyIntolerance',
        id,
        clinicalStatus: { coding: [{ code: status }] },
        ...(verification ? { verificationStatus: { coding: [{ code: verification }] } } : {}),
        ...(criticality ? { criticality } : {}),
        code: { text: `substance ${id}` },
        patient: { reference: 'Patient/p1' },
      }) as Resource;
    const alerts = allergyAlerts([
      mk('a', 'active', 'low'),
      mk('b', 'inactive'),
      mk('c', 'active', 'high'),
      mk('d', 'active', undefined, 'refuted'),
    ]);
    expect(alerts.map((a) => a.resource)).toEqual(['AllergyIntolerance/c', 'AllergyIntolerance/a']);
    expect(alerts[0]?.summary).toBe('Allergy: substance c');
  });
});
