/**
 * Starts the test EHR's HL7 receiver (test/hl7-receiver/: HAPI HL7v2's MLLP server, a real parser on the far
 * side) on a port and collects what it records: one JSON line per message on its stdout. Its log goes to a file,
 * since it is only needed when something fails.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { projectRoot } from '../../src/shared/paths.js';
import { Hl7Message } from '../../src/hl7/message.js';

export interface ReceivedMessage {
  readonly event: 'received';
  /** The structure HAPI parsed it into, e.g. SIU_S12. */
  readonly structure: string;
  readonly type: string;
  readonly controlId: string;
  /** What the receiver answered: AA, AE, AR or none (SILENT). */
  readonly ack: string;
  /** Values HAPI's Terser read at group paths (see Hl7Receiver.java). */
  readonly paths: Readonly<Record<string, string>>;
  readonly er7: string;
  /** The same message, parsed with Careway's own parser for field-level checks. */
  readonly msg: Hl7Message;
}

export interface Hl7Receiver {
  readonly port: number;
  readonly messages: ReceivedMessage[];
  /** Messages HAPI could not parse (the receiver answered them itself). */
  readonly errors: { error: string; er7: string }[];
  readonly logFile: string;
  stop(): Promise<void>;
}

/** Starts the receiver and resolves once it accepts connections (building it first if needed). */
export async function startReceiver(port: number, options: { silentMs?: number } = {}): Promise<Hl7Receiver> {
  const dir = mkdtempSync(join(tmpdir(), 'careway-hl7-receiver-'));
  const logFile = join(dir, 'receiver.log');
  const fd = openSync(logFile, 'a');
  const script = join(projectRoot(), 'test', 'hl7-receiver', 'receiver.sh');
  const child = spawn('bash', [script, 'start', String(port), String(options.silentMs ?? 120_000)], {
    stdio: ['ignore', 'pipe', fd],
  });
  closeSync(fd);
  const messages: ReceivedMessage[] = [];
  const errors: { error: string; er7: string }[] = [];
  let exited: string | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    child.once('exit', (code, signal) => {
      exited = `the HL7 receiver exited (code ${code}, signal ${signal}); see ${logFile}`;
      reject(new Error(exited));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (o['event'] === 'ready') resolve();
      else if (o['event'] === 'received') {
        const er7 = String(o['er7']);
        messages.push({ ...(o as unknown as Omit<ReceivedMessage, 'msg'>), msg: Hl7Message.parse(er7) });
      } else if (o['event'] === 'error') errors.push({ error: String(o['error']), er7: String(o['er7']) });
    });
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  try {
    await ready;
  } finally {
    clearTimeout(timer);
  }
  return {
    port,
    messages,
    errors,
    logFile,
    async stop(): Promise<void> {
      if (exited || child.exitCode !== null) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    },
  };
}
