/**
 * `careway` command line.
 *
 *   careway hl7 send <file…> [--host H] [--port P] [--timeout ms] [--tls [--ca file] [--cert file --key file]]
 *   careway hl7 replay <message id…> [--url U] [--token T]
 *
 * Sends HL7 v2 files (one message, several, or FHS/BHS batches) over MLLP on one connection, one message at a
 * time, waiting for each ACK (matched on MSA-2). A progress bar goes to stderr; a summary of ACK codes, and a
 * line for every message not accepted, to stdout. Exit code 0 only when every message was accepted.
 */
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { parseArgs } from 'node:util';
import { splitBatch } from '../hl7/batch.js';
import { decodeMessage } from '../hl7/charset.js';
import { frame, MllpDecoder } from '../hl7/mllp/framing.js';
import { Hl7Message } from '../hl7/message.js';

const USAGE =
  'usage: careway hl7 send <file…> [--host 127.0.0.1] [--port 2575] [--timeout 10000]\n' +
  '                         [--tls [--ca server-ca.pem] [--cert client.pem --key client-key.pem]]\n' +
  '       careway hl7 replay <message id…> [--url http://127.0.0.1:8080] [--token <bearer>, or CAREWAY_TOKEN]\n';

interface Outcome {
  file: string;
  controlId: string;
  code: string;
  error?: string;
}

function progress(done: number, total: number): void {
  if (!process.stderr.isTTY && done !== total) return;
  const width = 30;
  const filled = total === 0 ? width : Math.round((done / total) * width);
  process.stderr.write(
    `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total}${done === total ? '\n' : ''}`,
  );
}

interface TlsOptions {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

async function send(
  files: string[],
  host: string,
  port: number,
  timeoutMs: number,
  tls?: TlsOptions,
): Promise<number> {
  const messages: { file: string; text: string; controlId: string }[] = [];
  for (const file of files) {
    const { text } = decodeMessage(await readFile(file));
    for (const m of splitBatch(text)) {
      let controlId = '';
      try {
        controlId = Hl7Message.parse(m).controlId;
      } catch {
        // sent anyway: the receiver's AR says what is wrong
      }
      messages.push({ file, text: m, controlId });
    }
  }
  const socket: Socket = tls ? tlsConnect({ host, port, servername: host, ...tls }) : connect(port, host);
  await new Promise<void>((resolve, reject) => {
    socket.once(tls ? 'secureConnect' : 'connect', () => resolve());
    socket.once('error', reject);
  });
  const decoder = new MllpDecoder(16 * 1024 * 1024);
  const waiting: ((ack: Hl7Message | undefined) => void)[] = [];
  socket.on('data', (d: Buffer) => {
    for (const e of decoder.push(d)) {
      if (e.kind !== 'frame') continue;
      let ack: Hl7Message | undefined;
      try {
        ack = Hl7Message.parse(e.payload.toString('utf8'));
      } catch {
        ack = undefined;
      }
      waiting.shift()?.(ack);
    }
  });
  socket.on('close', () => {
    while (waiting.length) waiting.shift()?.(undefined);
  });

  const outcomes: Outcome[] = [];
  progress(0, messages.length);
  for (const [i, m] of messages.entries()) {
    const ack = await new Promise<Hl7Message | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      waiting.push((a) => {
        clearTimeout(timer);
        resolve(a);
      });
      socket.write(frame(Buffer.from(m.text, 'utf8')));
    });
    const code = ack?.segment('MSA')?.get(1) || 'NO-ACK';
    const echoed = ack?.segment('MSA')?.get(2) ?? '';
    const err = ack?.segment('ERR');
    outcomes.push({
      file: m.file,
      controlId: m.controlId,
      code: echoed && m.controlId && echoed !== m.controlId ? `${code} (MSA-2 ${echoed})` : code,
      ...(err ? { error: `${err.get(3, 1)} ${err.get(8) || err.get(3, 2)}` } : {}),
    });
    progress(i + 1, messages.length);
    if (!ack && socket.destroyed) break;
  }
  socket.end();

  const counts = new Map<string, number>();
  for (const o of outcomes) counts.set(o.code, (counts.get(o.code) ?? 0) + 1);
  process.stdout.write(`${[...counts].map(([c, n]) => `${c}: ${n}`).join('  ')}\n`);
  for (const o of outcomes.filter((x) => x.code !== 'AA' && x.code !== 'CA')) {
    process.stdout.write(
      `${o.file} ${o.controlId || '(no MSH-10)'}: ${o.code}${o.error ? ` ${o.error}` : ''}\n`,
    );
  }
  const ok = outcomes.length === messages.length && outcomes.every((o) => o.code === 'AA' || o.code === 'CA');
  return ok ? 0 : 1;
}

/** Asks a running Careway to process failed (dead-lettered) messages again: `POST /hl7/messages/{id}/$replay`. */
async function replay(ids: string[], base: string, token: string | undefined): Promise<number> {
  if (!token) {
    process.stderr.write(
      'careway: a token is needed (--token or CAREWAY_TOKEN), with scope MessageHeader.c\n',
    );
    return 2;
  }
  let failures = 0;
  for (const id of ids) {
    const res = await fetch(`${base.replace(/\/+$/, '')}/hl7/messages/${encodeURIComponent(id)}/$replay`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    const body = (await res.json().catch(() => ({}))) as { issue?: { diagnostics?: string }[] };
    if (res.status === 202) process.stdout.write(`${id}: queued\n`);
    else {
      failures++;
      process.stdout.write(`${id}: ${res.status} ${body.issue?.[0]?.diagnostics ?? ''}\n`);
    }
  }
  return failures === 0 ? 0 : 1;
}

export async function main(argv: string[]): Promise<number> {
  const [area, verb, ...rest] = argv;
  if (area === 'hl7' && verb === 'replay') {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { url: { type: 'string' }, token: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length === 0) {
      process.stderr.write(USAGE);
      return 2;
    }
    try {
      return await replay(
        positionals,
        values.url ?? 'http://127.0.0.1:8080',
        values.token ?? process.env['CAREWAY_TOKEN'],
      );
    } catch (e) {
      process.stderr.write(`careway: ${e instanceof Error ? e.message : String(e)}\n`);
      return 1;
    }
  }
  if (area !== 'hl7' || verb !== 'send') {
    process.stderr.write(USAGE);
    return 2;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      timeout: { type: 'string' },
      tls: { type: 'boolean' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  const port = Number(values.port ?? process.env['MLLP_PORT'] ?? 2575);
  const timeout = Number(values.timeout ?? 10000);
  if (positionals.length === 0 || !Number.isInteger(port) || port <= 0 || !(timeout > 0)) {
    process.stderr.write(USAGE);
    return 2;
  }
  try {
    const tls = values.tls
      ? {
          ...(values.ca ? { ca: await readFile(values.ca) } : {}),
          ...(values.cert ? { cert: await readFile(values.cert) } : {}),
          ...(values.key ? { key: await readFile(values.key) } : {}),
        }
      : undefined;
    return await send(positionals, values.host ?? '127.0.0.1', port, timeout, tls);
  } catch (e) {
    process.stderr.write(`careway: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
