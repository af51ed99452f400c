/**
 * P2: the MLLP accept path (frame → parse → the dry-run map → dedupe check → sealed BullMQ job → ACK), against
 * raw BullMQ `add` of the same payloads in the same run, and the same path without the dry run (what the map at
 * the door costs). Several connections send one message at a time each, waiting for the ACK, like real senders.
 * Targets (benchmarks.md): ≥ 5,000 msg/s, p99 ACK ≤ 10 ms.
 * The intake runs in this process with no worker consuming, so only the accept path is measured.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import { loadMappings, Mapper, MappingError } from '../src/hl7/mapping/engine.js';
import { prepareMessage } from '../src/hl7/inbound-worker.js';
import type { CheckResult } from '../src/hl7/intake.js';
import type { Hl7Message } from '../src/hl7/message.js';
import { projectRoot } from '../src/shared/paths.js';
import { createConnections } from '../src/queues/connections.js';
import { Hl7Intake, type InboundJob } from '../src/hl7/intake.js';
import { MllpServer } from '../src/hl7/mllp/server.js';
import { frame, MllpDecoder } from '../src/hl7/mllp/framing.js';
import { startRedis } from '../src/devstack/processes.js';
import { median, percentile, writeResult } from './lib.js';

// As real feeds send it: namespace-only authorities, several identifiers, a visit number.
const message = (id: string): string =>
  `MSH|^~\\&|EPIC|STMARYS|CAREWAY|CW|20240115083015-0500||ADT^A04^ADT_A01|${id}|P|2.5.1\rEVN|A04|20240115083015\rPID|1||MRN${id}^^^STMARYS^MR~123-45-6789^^^SSA^SS||Doe^Jane^Q||19700101|F|||1 Main St^^Albany^NY^12207||^PRN^PH^^1^518^5550101\rPV1|1|O|CLINIC^^^STMARYS||||||||||||||||V${id}^^^STMARYS^VN|||||||||||||||||||||||||20240115080000\r`;

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
    const root = join(projectRoot(), 'mappings');
    const mapper = new Mapper(await loadMappings([root], join(root, 'schema.json')));
    const zones = { defaultZone: 'America/New_York', bySender: {} };
    // The same check the app's HL7 plugin runs at the door.
    const check = (msg: Hl7Message): CheckResult => {
      try {
        return { patientKey: prepareMessage(mapper, zones, msg).keys.keys['patient'] };
      } catch (e) {
        if (e instanceof MappingError) return { problem: { code: e.code, text: e.message } };
        throw e;
      }
    };
    const listen = async (intake: Hl7Intake): Promise<{ port: number; server: MllpServer }> => {
      const server = new MllpServer({
        host: '127.0.0.1',
        port: 0,
        maxFrameBytes: 1 << 20,
        idleTimeoutMs: 60_000,
        handle: async (p) => (await intake.receive(p)).map((r) => r.ack),
      });
      return { port: await server.listen(), server };
    };
    const supports = (code: string, trigger: string, structure: string): boolean =>
      mapper.supports(code, trigger, structure);
    const checked = await listen(
      new Hl7Intake({ queue: conns.queue<InboundJob>('p2-mllp'), key, supports, check }),
    );
    const unchecked = await listen(
      new Hl7Intake({ queue: conns.queue<InboundJob>('p2-mllp-nocheck'), key, supports }),
    );
    const port = checked.port;
    const raw = conns.queue<{ payload: string }>('p2-raw');

    const mllpRates: number[] = [];
    const rawRates: number[] = [];
    const noCheckRates: number[] = [];
    const mllpLat: number[] = [];
    const rawLat: number[] = [];
    const noCheckLat: number[] = [];
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
      t0 = performance.now();
      await Promise.all(
        Array.from({ length: connections }, (_, c) =>
          sender(unchecked.port, `n${round}-${c}`, perConnection, noCheckLat),
        ),
      );
      noCheckRates.push((connections * perConnection) / ((performance.now() - t0) / 1000));
    }
    await checked.server.close();
    await unchecked.server.close();
    const result = {
      what: 'MLLP accept path (dry-run map, then ACK after a durable, sealed BullMQ job) vs raw BullMQ add of the same payloads, and vs the same path without the dry run',
      connections,
      messagesPerRound: connections * perConnection,
      mllp: { perSecond: median(mllpRates), p50Ms: percentile(mllpLat, 50), p99Ms: percentile(mllpLat, 99) },
      rawAdd: { perSecond: median(rawRates), p50Ms: percentile(rawLat, 50), p99Ms: percentile(rawLat, 99) },
      withoutDryRun: {
        perSecond: median(noCheckRates),
        p50Ms: percentile(noCheckLat, 50),
        p99Ms: percentile(noCheckLat, 99),
      },
      ratio: median(mllpRates) / median(rawRates),
      dryRunCost: median(mllpRates) / median(noCheckRates),
      targets: { perSecond: 5000, p99Ms: 10 },
    };
    const file = writeResult('P2', result);
    return [
      `P2 MLLP accept, ${connections} connections, ${connections * perConnection} messages per round (medians of 3)`,
      '| path             |   msg/s | p50 ms | p99 ms |',
      '|------------------|---------|--------|--------|',
      `| raw BullMQ add   | ${result.rawAdd.perSecond.toFixed(0).padStart(7)} | ${result.rawAdd.p50Ms.toFixed(2).padStart(6)} | ${result.rawAdd.p99Ms.toFixed(2).padStart(6)} |`,
      `| MLLP → ACK       | ${result.mllp.perSecond.toFixed(0).padStart(7)} | ${result.mllp.p50Ms.toFixed(2).padStart(6)} | ${result.mllp.p99Ms.toFixed(2).padStart(6)} |`,
      `| same, no dry run | ${result.withoutDryRun.perSecond.toFixed(0).padStart(7)} | ${result.withoutDryRun.p50Ms.toFixed(2).padStart(6)} | ${result.withoutDryRun.p99Ms.toFixed(2).padStart(6)} |`,
      `ratio ${result.ratio.toFixed(3)} to raw add; the dry run keeps ${(result.dryRunCost * 100).toFixed(0)}% of the throughput without it; targets: >= 5,000 msg/s, p99 ACK <= 10 ms`,
      `written to ${file}`,
    ];
  } finally {
    await conns.closeAll();
    await redis?.stop();
  }
}
