/**
 * Slot generation from a weekly template: pure, so the same template always gives the same slots and
 * `$generate-slots` can be replayed. Each slot carries a key (schedule + local start) that becomes its
 * business identifier on the FHIR server, which is what makes the writes idempotent.
 *
 * Times are wall-clock in the schedule's own IANA zone: "Mondays 09:00-12:00" stays 09:00 across a DST
 * change, while the instants move. Slots never straddle a break or the end of the day's window.
 */
import { localParts, toZonedIso, wallTimeToUtc, type Weekday } from '../shared/zoned-time.js';

export interface AvailableTime {
  /** Empty means every day. */
  readonly days: readonly Weekday[];
  /** `HH:MM` local. */
  readonly start: string;
  readonly end: string;
}

export interface Break {
  readonly days: readonly Weekday[];
  readonly start: string;
  readonly end: string;
}

export interface SlotTemplate {
  readonly zone: string;
  readonly availableTimes: readonly AvailableTime[];
  readonly breaks: readonly Break[];
  /** Local dates `YYYY-MM-DD` with no slots. */
  readonly holidays: readonly string[];
  /** Inclusive local dates. */
  readonly from: string;
  readonly to: string;
  readonly slotMinutes: number;
}

export interface GeneratedSlot {
  /** Local start `YYYY-MM-DDTHH:MM`, unique within a schedule. */
  readonly key: string;
  readonly start: string;
  readonly end: string;
  readonly startMs: number;
  readonly endMs: number;
}

/** Safety bound: a template that would produce more is refused rather than flooding the FHIR server. */
export const MAX_GENERATED_SLOTS = 20_000;

const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

export function minutesOf(hhmm: string): number | undefined {
  const m = HHMM.exec(hhmm);
  return m ? Number(m[1]) * 60 + Number(m[2]) : undefined;
}

/** Problems with a template, each naming the part; empty when it is usable. */
export function checkTemplate(t: SlotTemplate): string[] {
  const problems: string[] = [];
  if (!Number.isInteger(t.slotMinutes) || t.slotMinutes < 5 || t.slotMinutes > 480)
    problems.push('slot length must be a whole number of minutes between 5 and 480');
  if (t.availableTimes.length === 0) problems.push('at least one availableTime is needed');
  for (const [i, a] of [
    ...t.availableTimes.map((a) => ['availableTime', a] as const),
    ...t.breaks.map((b) => ['break', b] as const),
  ].entries()) {
    const [kind, w] = a;
    const s = minutesOf(w.start);
    const e = w.end === '24:00' ? 1440 : minutesOf(w.end);
    if (s === undefined || e === undefined) problems.push(`${kind} ${i + 1}: times must be HH:MM`);
    else if (e <= s) problems.push(`${kind} ${i + 1}: end must be after start`);
  }
  const from = DATE.exec(t.from);
  const to = DATE.exec(t.to);
  if (!from || Number.isNaN(Date.parse(t.from))) problems.push('start must be a date YYYY-MM-DD');
  if (!to || Number.isNaN(Date.parse(t.to))) problems.push('end must be a date YYYY-MM-DD');
  if (from && to && t.to < t.from) problems.push('end must not be before start');
  if (from && to && Date.parse(t.to) - Date.parse(t.from) > 366 * 86400_000)
    problems.push('the period may span at most 366 days');
  for (const h of t.holidays)
    if (!DATE.exec(h)) problems.push(`holiday "${h.slice(0, 20)}" must be a date YYYY-MM-DD`);
  return problems;
}

function weekdayOf(y: number, m: number, d: number): Weekday {
  return (['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const)[
    new Date(Date.UTC(y, m - 1, d)).getUTCDay()
  ]!;
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** Every slot of the template, in time order. Call `checkTemplate` first. */
export function generateSlots(t: SlotTemplate): GeneratedSlot[] {
  const out: GeneratedSlot[] = [];
  const holidays = new Set(t.holidays);
  const [fy, fm, fd] = t.from.split('-').map(Number) as [number, number, number];
  const last = Date.parse(`${t.to}T00:00:00Z`);
  for (let day = Date.UTC(fy, fm - 1, fd); day <= last; day += 86400_000) {
    const date = new Date(day);
    const y = date.getUTCFullYear();
    const m = date.getUTCMonth() + 1;
    const d = date.getUTCDate();
    const iso = `${y}-${pad(m)}-${pad(d)}`;
    if (holidays.has(iso)) continue;
    const wd = weekdayOf(y, m, d);
    const breaks = t.breaks
      .filter((b) => b.days.length === 0 || b.days.includes(wd))
      .map((b) => [minutesOf(b.start)!, b.end === '24:00' ? 1440 : minutesOf(b.end)!] as const);
    // Overlapping availableTimes must not create the same slot twice.
    const starts = new Set<number>();
    for (const a of t.availableTimes) {
      if (a.days.length > 0 && !a.days.includes(wd)) continue;
      const open = minutesOf(a.start)!;
      const close = a.end === '24:00' ? 1440 : minutesOf(a.end)!;
      let s = open;
      while (s + t.slotMinutes <= close) {
        const e = s + t.slotMinutes;
        const clash = breaks.find(([bs, be]) => s < be && e > bs);
        if (clash) {
          // Resume right after the break (its end is always past s, so the loop moves on).
          s = clash[1];
          continue;
        }
        starts.add(s);
        s = e;
      }
    }
    for (const s of [...starts].sort((a, b) => a - b)) {
      const startMs = wallTimeToUtc(t.zone, y, m, d, Math.floor(s / 60), s % 60);
      // Skip wall times that do not exist (spring-forward gap): they come back as another local time.
      const lp = localParts(startMs, t.zone);
      if (lp.minuteOfDay !== s || lp.day !== d) continue;
      const endMs = startMs + t.slotMinutes * 60_000;
      out.push({
        key: `${iso}T${pad(Math.floor(s / 60))}:${pad(s % 60)}`,
        start: toZonedIso(startMs, t.zone),
        end: toZonedIso(endMs, t.zone),
        startMs,
        endMs,
      });
      if (out.length > MAX_GENERATED_SLOTS)
        throw new RangeError(`the template would create more than ${MAX_GENERATED_SLOTS} slots`);
    }
  }
  return out;
}
