/**
 * How Careway's Redis keys are named, so they work on one Redis and on a Redis Cluster alike.
 *
 * A Redis Cluster spreads keys over 16384 slots by a hash of the key, or only of its `{hash tag}` (the first
 * `{…}` with something inside) when it has one. A command or Lua script may only touch keys of one slot
 * (CROSSSLOT otherwise). BullMQ's scripts touch many keys of one queue at once (`<prefix>:<queue>:wait`,
 * `…:active`, `…:meta`, …), so each queue's keys must share a tag, while different queues should have different
 * tags so they spread over the masters.
 *
 * The rule (QUEUE_PREFIX is checked in config.ts):
 * - QUEUE_PREFIX without a tag (`careway`, the default): on a cluster each queue gets its own tag, its name:
 *   `careway:{reminders}:reminders:wait`; each HL7 partition queue is a queue of its own (`{hl7-inbound-p3}`).
 * - QUEUE_PREFIX with a tag (`{careway}`, `site-{a}`): the tag is used as given, so every key of the deployment
 *   is in that one slot (one master holds all of Careway; nothing spreads, nothing is ever cross-slot).
 * - On one Redis or Sentinel the BullMQ prefix stays QUEUE_PREFIX, as before, so an upgrade finds the jobs already
 *   queued. Moving a deployment onto a cluster is done with drained queues (a new Redis anyway).
 *
 * Careway's own keys (locks, the send ledger, the revoked-token list, rate limits, sweep marks, reminder plans)
 * are each read and written alone, one key per command or script, so they need no tag and spread by their
 * whole name. A group of keys that must change together would need one tag; there is none today.
 * Flows (parent and child jobs in one command) would need one tag for both queues; Careway uses none.
 */

/** Whether the text holds a Redis hash tag: a `{` followed later by `}` with at least one character between. */
export function hasHashTag(text: string): boolean {
  const open = text.indexOf('{');
  if (open < 0) return false;
  const close = text.indexOf('}', open + 1);
  return close > open + 1;
}

/** The BullMQ `prefix` for a queue: its keys are `<this>:<queue>:<suffix>` (see the rule above). */
export function queueKeyPrefix(prefix: string, queue: string, cluster: boolean): string {
  if (!cluster || hasHashTag(prefix)) return prefix;
  return `${prefix}:{${queue}}`;
}
