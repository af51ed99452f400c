/**
 * The care-team app's pure parts: which Careway kind a Task is, the board's filter checks, the MRN index (keyed,
 * deterministic, never the MRN) and the raw-HL7 scope.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Task } from 'fhir/r4.js';
import { canonical } from '../../src/fhir/canonical.js';
import { kindOf } from '../../src/journey/tasks.js';
import { checkBoardFilters } from '../../src/journey/board.js';
import { mrnHash, mrnHashes, mrnIndexKey } from '../../src/hl7/mrn-index.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { grantsHl7Raw } from '../../src/http/auth/scopes.js';

const task = (t: Partial<Task>): Task => ({
  resourceType: 'Task',
  status: 'requested',
  intent: 'order',
  ...t,
});

describe('Careway Task kinds', () => {
  it('when a Task carries the triage identifier or a Careway task code then its kind follows; any other Task has none', () => {
    expect(kindOf(task({ identifier: [{ system: canonical.triageTaskSystem, value: 'x|1' }] }))).toBe(
      'referral-triage',
    );
    for (const code of ['no-show-follow-up', 'answer-patient', 'care-plan-activity', 'waitlist-offer'])
      expect(kindOf(task({ code: { coding: [{ system: canonical.taskCode, code }] } }))).toBe(code);
    expect(
      kindOf(task({ code: { coding: [{ system: 'urn:other', code: 'answer-patient' }] } })),
    ).toBeUndefined();
    expect(
      kindOf(task({ code: { coding: [{ system: canonical.taskCode, code: 'made-up' }] } })),
    ).toBeUndefined();
    expect(kindOf(task({}))).toBeUndefined();
  });
});

describe('board filters', () => {
  it('when filters are well formed then no problem; each bad one is named', () => {
    expect(
      checkBoardFilters({
        service: 'urn:s|cardio',
        team: 'CareTeam/1',
        careManager: 'Practitioner/2',
        status: ['active'],
      }),
    ).toEqual([]);
    const problems = checkBoardFilters({
      service: 'a b',
      team: 'Practitioner/1',
      careManager: 'nobody',
      status: ['open'],
    });
    expect(problems).toHaveLength(4);
    expect(problems.join(' ')).toMatch(/service.*team.*careManager.*status/);
  });
});

describe('the MRN index', () => {
  const key = mrnIndexKey(randomBytes(32));

  it('when PID-3 repeats then every identifier is hashed, deterministically under one key, and the MRN is not in the hash', () => {
    const msg = Hl7Message.parse(
      'MSH|^~\\&|A|B|C|D|20240101||ADT^A04|1|P|2.5\rPID|1||MRN123^^^H^MR~ALT9^^^O^PI||Doe^J\r',
    );
    const hashes = mrnHashes(key, msg);
    expect(hashes).toEqual([mrnHash(key, 'MRN123'), mrnHash(key, 'ALT9')]);
    expect(hashes.join('')).not.toContain('MRN123');
    expect(mrnHash(mrnIndexKey(randomBytes(32)), 'MRN123')).not.toBe(mrnHash(key, 'MRN123'));
    expect(mrnHash(key, ' MRN123 ')).toBe(mrnHash(key, 'MRN123'));
  });

  it('when the sealing key is given then the index key differs from it', () => {
    const sealing = randomBytes(32);
    expect(mrnIndexKey(sealing).equals(sealing)).toBe(false);
  });
});

describe('the raw HL7 scope', () => {
  it('when a staff or system token holds careway.hl7.raw then it may read raw messages; a patient form or a resource scope may not', () => {
    expect(grantsHl7Raw('user/MessageHeader.r user/careway.hl7.raw')).toBe(true);
    expect(grantsHl7Raw(['system/careway.hl7.raw'])).toBe(true);
    expect(grantsHl7Raw('patient/careway.hl7.raw')).toBe(false);
    expect(grantsHl7Raw('user/MessageHeader.r user/careway.admin')).toBe(false);
  });
});
