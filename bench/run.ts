/**
 * `npm run bench [-- P1 P2 P3 P4 P5 P6 P7 P8 P9 SCHED]`: runs the benchmarks (all by default), prints a table per benchmark and
 * writes bench/results/<id>-<time>.json. Every figure is a ratio to a comparator measured in the same run
 * (benchmarks.md), because shared 2-core machines are too noisy for absolute numbers.
 *
 * BENCH_P1_ITERATIONS tunes P1; BENCH_P2_PER_CONNECTION tunes P2; BENCH_P3_MESSAGES tunes P3; BENCH_ROUNDS / BENCH_SECONDS tune P5; BENCH_ITERATIONS tunes P6; BENCH_SCHED_ITERATIONS tunes SCHED; BENCH_P4_REMINDERS and BENCH_P4_WINDOW_S size P4; BENCH_P7_RATE and BENCH_P7_SECONDS size P7; BENCH_P8_JOURNEYS and BENCH_P8_ITERATIONS size P8; BENCH_P9_MESSAGES, BENCH_P9_WORKERS and BENCH_P9_PARTITIONS size P9.
 */
import { startStack } from './lib.js';
import { runP1 } from './p1-hl7-map.js';
import { runP2 } from './p2-mllp.js';
import { runP3 } from './p3-hl7-e2e.js';
import { runP5 } from './p5-facade.js';
import { runP6 } from './p6-journey.js';
import { runScheduling } from './scheduling.js';
import { runP4 } from './reminders.js';
import { runP7 } from './p7-memory.js';
import { runP9 } from './p9-scaling.js';
import { runP8 } from './p8-measures.js';

const wanted = new Set(process.argv.slice(2).map((a) => a.toUpperCase()));
const pick = (id: string): boolean => wanted.size === 0 || wanted.has(id);
const lines: string[] = [];

// P1 needs no servers: run it first, while the machine is quiet.
if (pick('P1')) lines.push('', ...(await runP1(Number(process.env['BENCH_P1_ITERATIONS'] ?? 50_000))));

if (pick('P2')) lines.push('', ...(await runP2(Number(process.env['BENCH_P2_PER_CONNECTION'] ?? 1000), 8)));

if (
  pick('P3') ||
  pick('P9') ||
  pick('P4') ||
  pick('P5') ||
  pick('P6') ||
  pick('P7') ||
  pick('P8') ||
  pick('SCHED')
) {
  const stack = await startStack();
  try {
    if (pick('P3')) lines.push('', ...(await runP3(stack, Number(process.env['BENCH_P3_MESSAGES'] ?? 300))));
    if (pick('P9')) lines.push('', ...(await runP9(stack, Number(process.env['BENCH_P9_MESSAGES'] ?? 300))));
    if (pick('P7'))
      lines.push(
        '',
        ...(await runP7(
          stack,
          Number(process.env['BENCH_P7_RATE'] ?? 1000),
          Number(process.env['BENCH_P7_SECONDS'] ?? 30),
        )),
      );
    if (pick('P5')) {
      const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);
      const seconds = Number(process.env['BENCH_SECONDS'] ?? 10);
      lines.push('', ...(await runP5(stack, rounds, seconds)));
    }
    if (pick('P6')) lines.push('', ...(await runP6(stack, Number(process.env['BENCH_ITERATIONS'] ?? 200))));
    if (pick('P4'))
      lines.push(
        '',
        ...(await runP4(
          stack,
          Number(process.env['BENCH_P4_REMINDERS'] ?? 1000),
          Number(process.env['BENCH_P4_WINDOW_S'] ?? 60),
        )),
      );
    if (pick('P8'))
      lines.push(
        '',
        ...(await runP8(
          stack,
          Number(process.env['BENCH_P8_JOURNEYS'] ?? 10_000),
          Number(process.env['BENCH_P8_ITERATIONS'] ?? 3),
        )),
      );
    if (pick('SCHED'))
      lines.push('', ...(await runScheduling(stack, Number(process.env['BENCH_SCHED_ITERATIONS'] ?? 30))));
  } finally {
    await stack.stop();
  }
}
process.stdout.write(`${lines.join('\n')}\n`);
