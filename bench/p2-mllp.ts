/**
 * P2: the MLLP accept path (frame → parse → dedupe check → sealed BullMQ job → ACK), against raw BullMQ `add`
 * of the same payloads in the same run. Several connections send one message at a time each, waiting for
 * the ACK, like real senders. Targets: ≥ 1,000 msg/s sustained, p99 ACK ≤ 25 ms.
 * The intake runs in this process with no worker consuming, so only the accept path is measured.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { createConnections } from '../src/queues/connections.js';
import { Hl7Intake, type InboundJob } from '../src/hl7/intake.js';
import { MllpServer } from '../src/hl7/mllp/server.js';
import { frame, MllpDecoder } from '../src/hl7/mllp/framing.js';
import { startRedis } from '../src/devstack/processes.js';
import { median, percentile, writeResult } from './lib.js';

const message = (id: string): string =>
  `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015-0500||ADT^A04^ADT_A01|${id}|P|2.5\rEVN|A04|20240115083015\rPID|1||MRN${id}^^^H^MR||Doe^Jane||19700101|F\rPV1|1|O\r`;

async function sender(port: number, prefix: string, count: number, lat: number[]): Promise<void> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const decoder = new MllpDecoder(1 << 20);
  let waiting: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    for (const e of decoder.push(d)) if (e.kind === 'frame') waiting?.();
  });
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      waiting = resolve;
      socket.write(frame(message(`${prefix}-${i}`)));
    });
    lat.push(performance.now() - t0);
  }
  socket.end();
}

export async function runP2(perConnection: number, connections: number): Promise<string[]> {
  const redis = process.env['REDIS_URL'] ? undefined : await startRedis();
  const url = new URL(process.env['REDIS_URL'] ?? redis?.url ?? '');
  const conns = createConnections(url, `bench${Date.now()}`);
  try {
    const key = randomBytes(32);
    const intake = new Hl7Intake({ queue: conns.queue<InboundJob>('p2-mllp'), key });
    const server = new MllpServer({
      host: '127.0.0.1',
      port: 0,
      maxFrameBytes: 1 << 20,
      idleTimeoutMs: 60_000,
      handle: async (p) => (await intake.receive(p)).map((r) => r.ack),
    });
    const port = await server.listen();
    const raw = conns.queue<{ payload: string }>('p2-raw');

    const mllpRates: number[] = [];
    const rawRates: number[] = [];
    const mllpLat: number[] = [];
    const rawLat: number[] = [];
    for (let round = 0; round < 3; round++) {
      // Comparator: raw BullMQ add of the same payloads, same concurrency, awaiting each add.
      let t0 = performance.now();
      await Promise.all(
        Array.from({ length: connections }, async (_, c) => {
          for (let i = 0; i < perConnection; i++) {
            const s = performance.now();
            await raw.add('m', { payload: message(`r${round}-${c}-${i}`) }, { jobId: `r${round}-${c}-${i}` });
            rawLat.push(performance.now() - s);
          }
        }),
      );
      rawRates.push((connections * perConnection) / ((performance.now() - t0) / 1000));
      t0 = performance.now();
      await Promise.all(
        Array.from({ length: connections }, (_, c) => sender(port, `m${round}-${c}`, perConnection, mllpLat)),
      );
      mllpRates.push((connections * perConnection) / ((performance.now() - t0) / 1000));
    }
    await server.close();
    const result = {
      what: 'MLLP accept path (ACK after a durable, sealed BullMQ job) vs raw BullMQ add of the same payloads',
      connections,
      messagesPerRound: connections * perConnection,
      mllp: { perSecond: median(mllpRates), p50Ms: percentile(mllpLat, 50), p99Ms: percentile(mllpLat, 99) },
      rawAdd: { perSecond: median(rawRates), p50Ms: percentile(rawLat, 50), p99Ms: percentile(rawLat, 99) },
      ratio: median(mllpRates) / median(rawRates),
      targets: { perSecond: 1000, p99Ms: 25 },
    };
    const file = writeResult('P2', result);
    return [
      `P2 MLLP accept, ${connections} connections, ${connections * perConnection} messages per round (medians of 3)`,
      '| path             |   msg/s | p50 ms | p99 ms |',
      '|------------------|---------|--------|--------|',
      `| raw BullMQ add   | ${result.rawAdd.perSecond.toFixed(0).padStart(7)} | ${result.rawAdd.p50Ms.toFixed(2).padStart(6)} | ${result.rawAdd.p99Ms.toFixed(2).padStart(6)} |`,
      `| MLLP → ACK       | ${result.mllp.perSecond.toFixed(0).padStart(7)} | ${result.mllp.p50Ms.toFixed(2).padStart(6)} | ${result.mllp.p99Ms.toFixed(2).padStart(6)} |`,
      `ratio ${result.ratio.toFixed(3)}; targets: >= 1,000 msg/s, p99 ACK <= 25 ms`,
      `written to ${file}`,
    ];
  } finally {
    await conns.closeAll();
    await redis?.stop();
  }
}
