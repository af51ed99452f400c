/**
 * The reminder workers survive a crash: a Careway process sending a batch of due reminders is killed with
 * SIGKILL mid-batch and a second one takes over. Every reminder arrives once: nothing lost, nothing twice.
 * The batch is planned by an instance that runs no workers (RUN_WORKERS=false), so only the child processes send.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Communication, Patient } from 'fhir/r4.js';
import { SMTPServer } from 'smtp-server';
import type { AddressInfo } from 'node:net';
import { projectRoot } from '../../src/shared/paths.js';
import { freePort } from '../../src/devstack/processes.js';
import { canonical } from '../../src/fhir/canonical.js';
import {
  bookedOnFhir,
  makeKeys,
  startHarness,
  testEnv,
  uniq,
  type Harness,
  until,
} from '../support/harness.js';

const COUNT = 24;
const prefix = `crash${uniq()}`;
let h: Harness;
let smtp: SMTPServer;
let smtpUrl: string;
const received: string[] = [];
/** Recipients the SMTP server has been given so far, and what to do when one arrives (the kill). */
let recipients = 0;
let onRecipient: ((n: number) => void) | undefined;

beforeAll(async () => {
  // A slow SMTP server: 150 ms to accept each recipient, so the batch takes long enough to be interrupted. The
  // message itself is taken and acknowledged at once, as a real server does: the window in which the server
  // has a message its sender never heard back about stays as short as it is in real life (see ledger.ts).
  smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(_address, _session, callback) {
      onRecipient?.(++recipients);
      setTimeout(() => callback(), 150);
    },
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        received.push(/Message-ID: <([^>]+)>/i.exec(raw)?.[1] ?? 'none');
        callback();
      });
    },
  });
  // A client killed mid-conversation resets its connection: expected here.
  smtp.on('error', () => undefined);
  await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', () => r()));
  smtpUrl = `smtp://127.0.0.1:${(smtp.server.address() as AddressInfo).port}`;
  h = await startHarness({
    QUEUE_PREFIX: prefix,
    RUN_WORKERS: 'false',
    REMINDER_OFFSETS: 'PT176S',
    QUIET_HOURS: '00:00-00:00',
  });
});
afterAll(async () => {
  await h.close();
  await new Promise<void>((r) => smtp.close(() => r()));
});

// Both processes seal with the same key, as every instance of one deployment does: a write-back queued by the
// killed one is written by its successor.
const sealingKey = randomBytes(32).toString('base64');

function careway(port: number): ChildProcess {
  const env = {
    ...testEnv(makeKeys()),
    HL7_ENCRYPTION_KEY: sealingKey,
    PORT: String(port),
    HOST: '127.0.0.1',
    MLLP_PORT: '0',
    QUEUE_PREFIX: prefix,
    SMTP_URL: smtpUrl,
    SMTP_FROM: 'reminders@careway.test',
    REMINDER_OFFSETS: 'PT176S',
    // One send at a time, so the kill below lands mid-send and never in the instant between the SMTP server's
    // acceptance and the ledger's `sent` (ledger.ts): no sender can close that window without the provider's
    // own dedupe, and a kill timed by polling for receipts hit it on a loaded machine (25 sends for 24).
    REMINDER_CONCURRENCY: '1',
    QUIET_HOURS: '00:00-00:00',
    CAREWAY_UPLOAD_PROFILES: 'false',
    LOG_LEVEL: 'warn',
  };
  return spawn(process.execPath, [join(projectRoot(), 'dist', 'src', 'main.js')], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: 'ignore',
  });
}

describe('reminder workers and crashes', () => {
  // Recovery takes up to a job lock (15 s) plus a claim's lease (20 s) on top of the batch itself.
  it(
    'when a worker is killed with SIGKILL mid-batch and another starts then every reminder arrives exactly once',
    { timeout: 180_000 },
    async () => {
      // Each appointment starts 3 minutes after it is made and its reminder (PT176S) falls due about 4 s after
      // that: recovery after the kill takes tens of seconds, and a reminder for an appointment that has started
      // is (rightly) skipped. The start is taken per appointment: on a loaded machine making all 24 took longer
      // than 4 s, and planning (rightly) skips a reminder whose time has passed.
      const ids: string[] = [];
      for (let i = 0; i < COUNT; i++) {
        const start = Date.now() + 180_000;
        const p = await h.fhir.create<Patient>({
          resourceType: 'Patient',
          identifier: [{ system: 'urn:careway:test:mrn', value: uniq() }],
          name: [{ given: ['Crash'] }],
          telecom: [{ system: 'email', value: `crash.${uniq()}@example.test` }],
        });
        const a = await bookedOnFhir(h.fhir, p.resource.id!, start, 15);
        ids.push(a.id!);
        expect(await h.app.reminders.service.replan(a.id!)).toHaveLength(1);
      }
      const first = careway(await freePort());
      const exited = new Promise((r) => first.once('exit', r));
      // Kill it mid-send once part of the batch is out (the reminders fall due within seconds, the first ones
      // already have): when the sixth message names its recipient, five have been accepted and recorded, and the
      // sixth is claimed, not sent.
      onRecipient = (n) => {
        if (n === 6) first.kill('SIGKILL');
      };
      await exited;
      onRecipient = undefined;
      const atKill = received.length;
      expect(atKill).toBe(5);

      const second = careway(await freePort());
      const countWritten = async (): Promise<number[]> => {
        const written = await h.fhir.searchAll<Communication>(
          'Communication',
          {
            category: `${canonical.communicationCategory}|reminder`,
            status: 'completed',
            _count: 200,
            _lastUpdated: `gt${new Date(Date.now() - 600_000).toISOString()}`,
          },
          { noCache: true },
        );
        return ids.map((id) => written.filter((c) => c.about?.[0]?.reference === `Appointment/${id}`).length);
      };
      try {
        await until('every reminder', () => (new Set(received).size >= COUNT ? true : undefined));
        // A send cut off by the kill before its write-back was queued is finished by the second worker once it
        // takes the stalled job over (lock 15 s, checked every 5 s); a write-back queued but cut off likewise.
        await until('every write-back', async () =>
          (await countWritten()).every((n) => n >= 1) ? true : undefined,
        );
        // Let anything that would be a duplicate show up.
        await new Promise((r) => setTimeout(r, 3000));
      } finally {
        second.kill('SIGTERM');
        await new Promise((r) => second.once('exit', r));
      }
      const mine = received.filter((m) => ids.some((id) => m.includes(`-${id}-`)));
      expect(new Set(mine).size).toBe(COUNT);
      expect(mine).toHaveLength(COUNT);
      expect(await countWritten()).toEqual(ids.map(() => 1));
    },
  );
});
