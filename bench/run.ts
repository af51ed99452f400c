/**
 * `npm run bench [-- P5 P6]`: runs the benchmarks (all by default) on one local stack, prints a table per
 * benchmark and writes bench/results/<id>-<time>.json. Every figure is a ratio to a comparator measured in
 * the same run (benchmarks.md), because shared 2-core machines are too noisy for absolute numbers.
 *
 * BENCH_ROUNDS / BENCH_SECONDS tune P5; BENCH_ITERATIONS tunes P6.
 */
import { startStack } from './lib.js';
import { runP5 } from './p5-facade.js';
import { runP6 } from './p6-journey.js';

const wanted = new Set(process.argv.slice(2).map((a) => a.toUpperCase()));
const all = wanted.size === 0;
const stack = await startStack();
const lines: string[] = [];
try {
  if (all || wanted.has('P5')) {
    lines.push(
      '',
      ...(await runP5(
        stack,
        Number(process.env['BENCH_ROUNDS'] ?? 3),
        Number(process.env['BENCH_SECONDS'] ?? 10),
      )),
    );
  }
  if (all || wanted.has('P6'))
    lines.push('', ...(await runP6(stack, Number(process.env['BENCH_ITERATIONS'] ?? 200))));
} finally {
  await stack.stop();
}
process.stdout.write(`${lines.join('\n')}\n`);
