/**
 * P3: end to end, HL7 in over MLLP → committed on HAPI (through the queue, the maps, the per-patient lock and
 * the journey effects), against a direct replay of transaction bundles for the same kind of messages into the
 * same HAPI, one at a time like Careway's worker. Targets: ≥ 90 % of the direct replay, never below 40 msg/s.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { frame, MllpDecoder } from '../src/hl7/mllp/framing.js';
import { Hl7Message } from '../src/hl7/message.js';
import { loadMappings, Mapper } from '../src/hl7/mapping/engine.js';
import { buildTransaction } from '../src/hl7/mapping/transaction.js';
import { HL7_INBOUND_QUEUE } from '../src/hl7/intake.js';
import { projectRoot } from '../src/shared/paths.js';
import { rssMiB, writeResult, type Stack } from './lib.js';

const SYS = 'urn:oid:2.16.840.1.113883.19.5';

function adt(run: string, n: number): string {
  const pv1 = Array.from({ length: 46 }, () => '');
  pv1[0] = 'PV1';
  pv1[2] = 'O';
  pv1[19] = `${run}-V${n}^^^H&${SYS}.2&ISO^VN`;
  pv1[44] = '20240115080000';
  return [
    `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||ADT^A04^ADT_A01|${run}-${n}|P|2.5`,
    'EVN|A04|20240115083015',
    `PID|1||${run}-M${n}^^^H&${SYS}&ISO^MR||Doe^Jane||19700101|F`,
    pv1.join('|'),
    '',
  ].join('\r');
}

export async function runP3(stack: Stack, count: number): Promise<string[]> {
  const run = Date.now().toString(36);
  // Comparator first: the transactions Careway's maps would build, posted straight to HAPI one at a time.
  const root = join(projectRoot(), 'mappings');
  const mapper = new Mapper(await loadMappings([root], join(root, 'schema.json')));
  const bundles = Array.from({ length: count }, (_, n) => {
    const msg = Hl7Message.parse(adt(`d${run}`, n));
    return buildTransaction(mapper.message(msg, { zone: 'UTC', delimiters: msg.delimiters }), {
      jobId: `d${run}-${n}`,
      sender: 'EPIC^MAINHOSP',
      controlId: msg.controlId,
      type: 'ADT^A04',
      receivedAt: new Date().toISOString(),
    }).bundle;
  });
  let t0 = performance.now();
  for (const b of bundles) await stack.fhir.transaction(b);
  const directRate = count / ((performance.now() - t0) / 1000);

  // Careway: MLLP in, wait for every ACK, then for the queue to drain.
  const redis = new Redis(stack.redis, { maxRetriesPerRequest: null });
  const queue = new Queue(HL7_INBOUND_QUEUE, { connection: redis, prefix: 'careway' });
  const before = (await queue.getJobCounts('completed'))['completed'] ?? 0;
  const socket = connect(stack.mllpPort, '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const decoder = new MllpDecoder(1 << 20);
  let waiting: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    for (const e of decoder.push(d)) if (e.kind === 'frame') waiting?.();
  });
  t0 = performance.now();
  for (let n = 0; n < count; n++) {
    await new Promise<void>((resolve) => {
      waiting = resolve;
      socket.write(frame(adt(`c${run}`, n)));
    });
  }
  socket.end();
  const deadline = Date.now() + 600_000;
  for (;;) {
    const c = await queue.getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed');
    if (
      (c['completed'] ?? 0) - before + (c['failed'] ?? 0) >= count &&
      (c['waiting'] ?? 0) + (c['active'] ?? 0) === 0
    )
      break;
    if (Date.now() > deadline) throw new Error('P3: the inbound queue did not drain in time');
    await new Promise((r) => setTimeout(r, 50));
  }
  const carewayRate = count / ((performance.now() - t0) / 1000);
  const carewayRss = rssMiB(stack.carewayPid);
  const failed = (await queue.getJobCounts('failed'))['failed'] ?? 0;
  await queue.close();
  await redis.quit();

  const result = {
    what: 'ADT A04 over MLLP → committed on HAPI (maps, lock, journey effects) vs direct replay of the same kind of transaction bundles',
    messages: count,
    direct: { perSecond: directRate },
    careway: { perSecond: carewayRate, failed, rssMiB: carewayRss },
    ratio: carewayRate / directRate,
    targets: { ratio: 0.9, minPerSecond: 40 },
  };
  const file = writeResult('P3', result);
  return [
    `P3 HL7 end to end, ${count} ADT A04 messages, one at a time`,
    '| path                                   |  msg/s |',
    '|----------------------------------------|--------|',
    `| direct replay of the transactions      | ${directRate.toFixed(1).padStart(6)} |`,
    `| Careway: MLLP → queue → maps → HAPI    | ${carewayRate.toFixed(1).padStart(6)} |`,
    `ratio ${result.ratio.toFixed(3)} (target >= 0.90, and >= 40 msg/s); failed jobs ${failed}; Careway RSS after the run ${carewayRss?.toFixed(0) ?? '?'} MiB (P7 target <= 300 MB)`,
    `written to ${file}`,
  ];
}
