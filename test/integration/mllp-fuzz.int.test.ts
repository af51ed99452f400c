/**
 * Seeded fuzzing through the real listener and intake (real Redis): 10,000 mutated frames on a few
 * connections. Every frame is answered (an ACK per message, or one AR for garbage), nothing crashes, and the
 * listener still serves a clean message afterwards.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { rng } from '../support/rng.js';
import { createConnections, type RedisConnections } from '../../src/queues/connections.js';
import { Hl7Intake, type InboundJob } from '../../src/hl7/intake.js';
import { MllpServer } from '../../src/hl7/mllp/server.js';
import { frame, MllpDecoder } from '../../src/hl7/mllp/framing.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { mapSupports, uniq } from '../support/harness.js';

let conns: RedisConnections;
let supports: Awaited<ReturnType<typeof mapSupports>>;
let server: MllpServer;
let port: number;

beforeAll(async () => {
  supports = await mapSupports();
  conns = createConnections(new URL(inject('redisUrl')), `fuzz${uniq()}`);
  const intake = new Hl7Intake({
    queue: conns.queue<InboundJob>('hl7-fuzz'),
    key: randomBytes(32),
    supports,
  });
  server = new MllpServer({
    host: '127.0.0.1',
    port: 0,
    maxFrameBytes: 1 << 20,
    idleTimeoutMs: 30_000,
    handle: async (p) => (await intake.receive(p)).map((r) => r.ack),
  });
  port = await server.listen();
});
afterAll(async () => {
  await server.close();
  await conns.closeAll();
});

const SEED =
  'MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015-0500||ADT^A04^ADT_A01|ID|P|2.5\rPID|1||MRN^^^H^MR||Doe^Jane||19700101|F\rPV1|1|O';
const PUNCT = ['|', '^', '~', '\\', '&', '\r', '\n', '\u0000', 'é', 'MSH', 'Z'];

function mutate(r: () => number, n: number): string {
  let s = SEED.replace('|ID|', `|F${n}|`);
  const k = Math.floor(r() * 4);
  for (let i = 0; i < k; i++) {
    const at = Math.floor(r() * s.length);
    const p = PUNCT[Math.floor(r() * PUNCT.length)] ?? '';
    s = r() < 0.5 ? s.slice(0, at) + p + s.slice(at) : s.slice(0, at) + s.slice(at + 1 + Math.floor(r() * 6));
  }
  return s;
}

describe('MLLP fuzzing', () => {
  it('when 10,000 mutated frames arrive then every frame is answered and the listener keeps serving', async () => {
    const r = rng(2026);
    const total = 10_000;
    const perConnection = 2_500;
    let answered = 0;
    for (let c = 0; c < total / perConnection; c++) {
      const socket = connect(port, '127.0.0.1');
      const decoder = new MllpDecoder(1 << 20);
      const frames: Buffer[] = [];
      for (let i = 0; i < perConnection; i++) frames.push(frame(mutate(r, c * perConnection + i)));
      let acks = 0;
      const done = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`only ${acks} of ${perConnection} answered`)),
          60_000,
        );
        socket.on('data', (d: Buffer) => {
          for (const e of decoder.push(d)) {
            if (e.kind !== 'frame') continue;
            Hl7Message.parse(e.payload.toString('utf8')); // every answer is a well-formed ACK
            acks++;
            if (acks >= perConnection) {
              clearTimeout(timer);
              resolve();
            }
          }
        });
      });
      socket.write(Buffer.concat(frames));
      await done;
      answered += acks;
      socket.end();
    }
    expect(answered).toBeGreaterThanOrEqual(total);

    const socket = connect(port, '127.0.0.1');
    const decoder = new MllpDecoder(1 << 20);
    const id = uniq();
    const ack = await new Promise<Hl7Message>((resolve) => {
      socket.on('data', (d: Buffer) => {
        for (const e of decoder.push(d))
          if (e.kind === 'frame') resolve(Hl7Message.parse(e.payload.toString()));
      });
      socket.write(frame(SEED.replace('|ID|', `|${id}|`)));
    });
    socket.end();
    expect([ack.segment('MSA')?.get(1), ack.segment('MSA')?.get(2)]).toEqual(['AA', id]);
  });
});
