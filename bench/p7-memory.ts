/**
 * P7 (first half): the whole service's resident memory while HL7 arrives at 1,000 msg/s, sustained. The Careway
 * process of the stack (MLLP listener, intake, partition workers writing to HAPI, HTTP API) takes a paced feed
 * of distinct-patient ADT messages over several connections; its RSS is sampled every 500 ms. The workers cannot
 * write 1,000 msg/s into a 2-core HAPI, so the backlog grows in Redis, which is where it belongs: the figure
 * shows the service does not hold it in memory. Target (benchmarks.md): RSS ≤ 300 MB. The second half of P7
 * (heap growth over 1M parses) is reported by P1.
 */
import { connect } from 'node:net';
import { frame, MllpDecoder } from '../src/hl7/mllp/framing.js';
import { percentile, rssMiB, writeResult, type Stack } from './lib.js';
import { SERVICE_NODE_OPTIONS } from '../src/shared/runtime.js';

const SYS = 'urn:oid:2.16.840.1.113883.19.5';

const message = (run: string, n: number): string =>
  [
    `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015||ADT^A04^ADT_A01|${run}-${n}|P|2.5`,
    'EVN|A04|20240115083015',
    `PID|1||${run}-M${n}^^^H&${SYS}&ISO^MR||Doe^Jane||19700101|F`,
    'PV1|1|O',
    '',
  ].join('\r');

interface Feed {
  sent: number;
  acked: number;
  notAa: number;
  latency: number[];
}

/**
 * One connection sending `rate` messages a second for `seconds`, paced on a schedule (not "as fast as ACKs come
 * back"), with up to 32 frames awaiting their ACK, like a sender that pipelines.
 */
async function feed(
  port: number,
  run: string,
  first: number,
  rate: number,
  seconds: number,
  out: Feed,
): Promise<void> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const decoder = new MllpDecoder(1 << 20);
  const pending: number[] = [];
  let drained: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    for (const e of decoder.push(d)) {
      if (e.kind !== 'frame') continue;
      const t0 = pending.shift();
      if (t0 !== undefined) out.latency.push(performance.now() - t0);
      out.acked++;
      if (!/\rMSA\|AA\|/.test(e.payload.toString('latin1'))) out.notAa++;
      drained?.();
    }
  });
  const total = rate * seconds;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    while (pending.length >= 32) await new Promise<void>((r) => (drained = r));
    pending.push(performance.now());
    socket.write(frame(message(run, first + i)));
    out.sent++;
  }
  while (pending.length) await new Promise<void>((r) => (drained = r));
  socket.end();
}

export async function runP7(stack: Stack, perSecond: number, seconds: number): Promise<string[]> {
  const run = `m${Date.now().toString(36)}`;
  const connections = 4;
  const out: Feed = { sent: 0, acked: 0, notAa: 0, latency: [] };
  const samples: number[] = [];
  const idle = rssMiB(stack.carewayPid);
  const sampler = setInterval(() => {
    const m = rssMiB(stack.carewayPid);
    if (m !== undefined) samples.push(m);
  }, 500);
  const t0 = performance.now();
  try {
    await Promise.all(
      Array.from({ length: connections }, (_, c) =>
        feed(stack.mllpPort, run, c * 10_000_000, perSecond / connections, seconds, out),
      ),
    );
  } finally {
    clearInterval(sampler);
  }
  const elapsed = (performance.now() - t0) / 1000;
  const achieved = out.acked / elapsed;
  const after = rssMiB(stack.carewayPid);
  const max = Math.max(...samples, after ?? 0);
  const result = {
    what: `Careway service RSS with HL7 (ADT A04, distinct patients) arriving at ${perSecond} msg/s over ${connections} MLLP connections for ${seconds} s; workers on, writing to HAPI`,
    offeredPerSecond: perSecond,
    achievedPerSecond: achieved,
    seconds,
    acked: out.acked,
    notAa: out.notAa,
    ackP50Ms: percentile(out.latency, 50),
    ackP99Ms: percentile(out.latency, 99),
    rssMiB: { idle, max, after, samples: samples.length },
    nodeOptions: SERVICE_NODE_OPTIONS,
    targets: { rssMB: 300 },
  };
  const file = writeResult('P7', result);
  const f = (x: number | undefined): string => (x === undefined ? '?' : x.toFixed(0));
  return [
    `P7 service memory at ${perSecond} msg/s HL7 for ${seconds} s (${connections} MLLP connections, workers on)`,
    `achieved ${achieved.toFixed(0)} msg/s, ${out.acked} ACKs (${out.notAa} not AA), ACK p50 ${result.ackP50Ms.toFixed(1)} ms, p99 ${result.ackP99Ms.toFixed(1)} ms`,
    `Careway RSS: idle ${f(idle)} MiB, max ${f(max)} MiB, after ${f(after)} MiB (target <= 300 MB, i.e. 286 MiB)`,
    `written to ${file}`,
  ];
}
