/**
 * R1 reduced, in CI: the same code as `npm run chaos` (bench/chaos/runs.ts) with a smaller feed. An HL7 feed
 * with resends is replayed over MLLP into a Careway child process (dist/) while it is killed with SIGKILL and
 * restarted, its own redis-server (AOF everysec) is restarted once, and the suite's HAPI is made unavailable
 * through a proxy (the launcher's database is in memory, so stopping HAPI would lose what is to be checked; see
 * bench/chaos/proxy.ts). Then the FHIR server's own history must show every accepted message once, in order:
 * 0 lost, 0 duplicate resources, 0 extra versions, 0 order violations.
 *
 * Sizes by environment (CHAOS_CI_MESSAGES, CHAOS_CI_PATIENTS, CHAOS_CI_RATE, CHAOS_CI_KILL_EVERY_S,
 * CHAOS_CI_MAX_KILLS, CHAOS_CI_FHIR_DOWN_S). No
 * wall-time assertion: the faults are timed, the verdict is not.
 */
import { describe, expect, inject, it } from 'vitest';
import { r1Params, runR1 } from '../../bench/chaos/runs.js';

const env = process.env;
const params = r1Params(
  {},
  {
    messages: Number(env['CHAOS_CI_MESSAGES'] ?? 500),
    patients: Number(env['CHAOS_CI_PATIENTS'] ?? 50),
    // Intake spread over the first minute, so kills and the Redis restart land while messages arrive (the
    // sender has to resend) as well as while they are written.
    rate: Number(env['CHAOS_CI_RATE'] ?? 10),
    killEveryS: Number(env['CHAOS_CI_KILL_EVERY_S'] ?? 25),
    // Each kill stops writing for the takeover (about 20 s: the dead worker's lock, then a stalled check).
    maxKills: Number(env['CHAOS_CI_MAX_KILLS'] ?? 3),
    fhirDownAtS: 5,
    fhirDownS: Number(env['CHAOS_CI_FHIR_DOWN_S'] ?? 45),
    redisRestartAtS: 35,
    drainTimeoutS: 1200,
  },
);

describe('R1 (reduced): an HL7 replay under SIGKILLs, a Redis restart and a FHIR outage', () => {
  it(
    'when Careway is killed, Redis restarts and the FHIR server is away then no accepted message is lost, duplicated, written twice or out of order',
    { timeout: 1_500_000 },
    async () => {
      const r = await runR1(inject('fhirBaseUrl'), params, (m) => process.stderr.write(`[chaos] ${m}\n`));
      process.stderr.write(
        `[chaos] ${JSON.stringify({ ...r, check: { ...r.check, examples: undefined } })}\n`,
      );
      // The faults happened.
      expect(r.faults.kills).toBeGreaterThanOrEqual(2);
      expect(r.faults.redisRestarts).toBe(1);
      expect(r.faults.fhirDownSeconds).toBeGreaterThan(0);
      expect(r.sent.deliberateResends).toBeGreaterThan(0);
      // Every message was taken in the end (the sender resends until AA), and none was refused.
      expect(r.sent.rejected).toBe(0);
      expect(r.sent.accepted).toBe(params.messages);
      // The verdict, from the FHIR server's history.
      expect(r.check.examples).toEqual([]);
      expect(r.check.lostMessages).toBe(0);
      expect(r.check.missingResources).toBe(0);
      expect(r.check.duplicateResources).toBe(0);
      expect(r.check.duplicateJourneys).toBe(0);
      expect(r.check.extraVersions).toBe(0);
      expect(r.check.orderViolations).toBe(0);
      expect(r.queue['dead']).toBe(0);
      expect(r.queue['failed']).toBe(0);
    },
  );
});
