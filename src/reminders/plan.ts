/**
 * When an appointment's reminders go out: pure, so the plan is the same however often it is computed, and
 * the tests can walk it across daylight-saving changes.
 *
 * - One reminder per offset before the start (REMINDER_OFFSETS, e.g. P3D, P1D, PT2H).
 * - None inside QUIET_HOURS in the patient's zone: a reminder due inside them moves to the end of the quiet
 *   window; if the appointment would already have started by then, it moves earlier instead, to the last
 *   minute before the quiet window began. A reminder that can only be sent in quiet hours, or whose time has
 *   passed, is not planned (the others still are).
 */
import { localParts, wallTimeToUtc } from '../shared/zoned-time.js';

export interface QuietWindow {
  /** Minutes after local midnight (start inclusive, end exclusive); start > end wraps midnight. */
  readonly startMinute: number;
  readonly endMinute: number;
}

export interface Offset {
  /** As configured (`P1D`): part of the reminder's identity. */
  readonly text: string;
  readonly ms: number;
}

export interface PlannedReminder {
  readonly offset: string;
  readonly dueMs: number;
  /** Why the time differs from start − offset. */
  readonly moved?: 'after-quiet-hours' | 'before-quiet-hours';
}

export interface PlanInput {
  readonly startMs: number;
  readonly nowMs: number;
  readonly offsets: readonly Offset[];
  readonly quiet: QuietWindow | undefined;
  readonly zone: string;
}

export function inQuiet(minute: number, q: QuietWindow): boolean {
  if (q.startMinute === q.endMinute) return false;
  return q.startMinute < q.endMinute
    ? minute >= q.startMinute && minute < q.endMinute
    : minute >= q.startMinute || minute < q.endMinute;
}

function dayShift(y: number, m: number, d: number, days: number): [number, number, number] {
  const t = new Date(Date.UTC(y, m - 1, d + days));
  return [t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate()];
}

function at(zone: string, ymd: [number, number, number], minute: number): number {
  return wallTimeToUtc(zone, ymd[0], ymd[1], ymd[2], Math.floor(minute / 60), minute % 60);
}

/** The end of the quiet window that contains `ms` (which must be in it). */
export function quietEnd(ms: number, q: QuietWindow, zone: string): number {
  const p = localParts(ms, zone);
  const today: [number, number, number] = [p.year, p.month, p.day];
  const wraps = q.startMinute > q.endMinute;
  const endsTomorrow = wraps && p.minuteOfDay >= q.startMinute;
  return at(zone, endsTomorrow ? dayShift(...today, 1) : today, q.endMinute);
}

/** The start of the quiet window that contains `ms`. */
export function quietStart(ms: number, q: QuietWindow, zone: string): number {
  const p = localParts(ms, zone);
  const today: [number, number, number] = [p.year, p.month, p.day];
  const wraps = q.startMinute > q.endMinute;
  const startedYesterday = wraps && p.minuteOfDay < q.endMinute;
  return at(zone, startedYesterday ? dayShift(...today, -1) : today, q.startMinute);
}

export function planReminders(input: PlanInput): PlannedReminder[] {
  const out: PlannedReminder[] = [];
  for (const o of input.offsets) {
    const due = input.startMs - o.ms;
    if (due <= input.nowMs) continue;
    const q = input.quiet;
    if (!q || !inQuiet(localParts(due, input.zone).minuteOfDay, q)) {
      out.push({ offset: o.text, dueMs: due });
      continue;
    }
    const later = quietEnd(due, q, input.zone);
    if (later < input.startMs) {
      out.push({ offset: o.text, dueMs: later, moved: 'after-quiet-hours' });
      continue;
    }
    const earlier = quietStart(due, q, input.zone) - 60_000;
    if (earlier > input.nowMs) out.push({ offset: o.text, dueMs: earlier, moved: 'before-quiet-hours' });
  }
  return out.sort((a, b) => a.dueMs - b.dueMs);
}
