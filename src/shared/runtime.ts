/**
 * The V8 heap settings the service runs with (bench P7: RSS ≤ 300 MB at 1,000 HL7 msg/s).
 *
 * On a machine with plenty of memory V8 sizes the young generation at up to 2 × 64 MB and lets the old
 * generation fill with promoted garbage long before a full collection, so a Careway process under a sustained
 * feed reached 336 MiB RSS while its live heap stayed under 100 MB. A 16 MB semi-space and a 512 MB old-space
 * limit (which also makes V8 collect the old generation sooner) keep it near 185 MiB at the same rate, with
 * the same ACK latency. The live heap is ~50 MB at idle, so 512 MB leaves ample headroom.
 *
 * Passed through NODE_OPTIONS, first, so an operator's own NODE_OPTIONS (which come after) win.
 */
export const SERVICE_NODE_OPTIONS = '--max-semi-space-size=16 --max-old-space-size=512';

/** The environment for a Careway service process spawned by our tools (demo, benchmarks). */
export function serviceEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...env, NODE_OPTIONS: `${SERVICE_NODE_OPTIONS} ${env['NODE_OPTIONS'] ?? ''}`.trim() };
}
