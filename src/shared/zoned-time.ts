/**
 * Wall-clock time in an IANA zone, with nothing but Intl: HL7 timestamps without an offset, slot templates
 * ("Mondays 09:00-12:00 in Europe/Berlin") and time-of-day preferences all need the same two conversions.
 *
 * Wall → instant: guess with the offset at the wall time read as UTC, then correct once, which lands on the
 * right side of a DST change. A wall time that does not exist (inside a spring-forward gap) comes out shifted
 * forward by the gap, the way clocks do; an ambiguous one (fall-back) takes the first occurrence.
 */

// Building an Intl.DateTimeFormat costs tens of microseconds; one per zone is kept (bench P1).
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      weekday: 'short',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** True for a zone name Intl knows (IANA names such as `Europe/Berlin`, and `UTC`). */
export function isValidTimeZone(zone: string): boolean {
  try {
    formatterFor(zone);
    return true;
  } catch {
    return false;
  }
}

const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];
export const WEEKDAY_CODES: readonly Weekday[] = WEEKDAYS;

export interface LocalParts {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  /** FHIR `days-of-week` code (mon…sun). */
  readonly weekday: Weekday;
  /** Minutes since local midnight. */
  readonly minuteOfDay: number;
}

/** The wall-clock reading in `zone` at a UTC instant. */
export function localParts(utcMs: number, zone: string): LocalParts {
  const parts = formatterFor(zone).formatToParts(new Date(utcMs));
  const get = (t: string): string => parts.find((p) => p.type === t)?.value ?? '';
  const hour = Number(get('hour'));
  const minute = Number(get('minute'));
  return {
    year: Number(get('year')),
    month: Number(get('month')),
    day: Number(get('day')),
    hour,
    minute,
    second: Number(get('second')),
    weekday: get('weekday').toLowerCase().slice(0, 3) as Weekday,
    minuteOfDay: hour * 60 + minute,
  };
}

/**
 * Offsets by zone and UTC quarter-hour. Every zone's offset changes only at instants that are whole quarter-hours
 * in UTC (transitions happen at local :00 or :30 in zones whose offsets are whole quarter-hours), so an offset
 * read once holds for its whole quarter-hour; formatToParts costs microseconds and HL7 timestamps without an
 * offset need two reads each (bench P1). Bounded: cleared when it grows past 50,000 entries.
 */
const QUARTER_HOUR_MS = 900_000;
const offsets = new Map<string, number>();

/** The UTC offset in minutes of `zone` at the given UTC instant. */
export function zoneOffsetMinutes(zone: string, utcMs: number): number {
  const key = `${zone}|${Math.floor(utcMs / QUARTER_HOUR_MS)}`;
  const known = offsets.get(key);
  if (known !== undefined) return known;
  const p = localParts(utcMs, zone);
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  const offset = Math.round((asUtc - Math.floor(utcMs / 1000) * 1000) / 60000);
  if (offsets.size >= 50_000) offsets.clear();
  offsets.set(key, offset);
  return offset;
}

/** The UTC instant (ms) of a wall-clock time in `zone`. Month is 1-based. */
export function wallTimeToUtc(
  zone: string,
  year: number,
  month: number,
  day: number,
  hour = 0,
  minute = 0,
  second = 0,
): number {
  const wall = Date.UTC(year, month - 1, day, hour, minute, second);
  let o = zoneOffsetMinutes(zone, wall);
  o = zoneOffsetMinutes(zone, wall - o * 60000);
  return wall - o * 60000;
}

/** `+02:00`-style offset text. */
export function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

/** An instant as a FHIR instant in the zone's local time with its offset (what staff expect to read). */
export function toZonedIso(utcMs: number, zone: string): string {
  const p = localParts(utcMs, zone);
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}:${pad(p.second)}${formatOffset(zoneOffsetMinutes(zone, utcMs))}`;
}
