/**
 * HL7 v2 DTM/TS values → FHIR date or dateTime strings.
 *
 * - An explicit offset (`+0100`, `-0500`) is kept as written.
 * - An offset-less time is read as wall-clock time in the sending facility's IANA zone (never the server's),
 *   and gets that zone's offset for that instant, daylight saving included.
 * - Precision is kept: `2024`, `202401`, `20240115` stay a year, a month, a date; a time keeps its seconds
 *   and any number of fractional digits.
 */
const DTM = /^(\d{4})(\d{2})?(\d{2})?(?:(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,9}))?)?([+-]\d{4})?$/;

export class Hl7DateError extends Error {
  constructor(value: string) {
    super(`"${value.slice(0, 40)}" is not an HL7 date/time`);
    this.name = 'Hl7DateError';
  }
}

// Building an Intl.DateTimeFormat costs tens of microseconds; one per zone is kept (bench P1).
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
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

/** The UTC offset in minutes of `zone` at the given UTC instant. */
function zoneOffsetMinutes(zone: string, utcMs: number): number {
  const parts = formatterFor(zone).formatToParts(new Date(utcMs));
  const get = (t: string): number => Number(parts.find((p) => p.type === t)?.value);
  const asUtc = Date.UTC(
    get('year'),
    get('month') - 1,
    get('day'),
    get('hour'),
    get('minute'),
    get('second'),
  );
  return Math.round((asUtc - Math.floor(utcMs / 1000) * 1000) / 60000);
}

function fmtOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

/** Converts an HL7 date/time to FHIR. `zone` applies only when the value has a time and no offset. */
export function hl7ToFhirDateTime(value: string, zone: string): string {
  const m = DTM.exec(value.trim());
  if (!m) throw new Hl7DateError(value);
  const [, y, mo, d, h, mi, s, frac, off] = m;
  const monthN = Number(mo ?? '01');
  const dayN = Number(d ?? '01');
  if (monthN < 1 || monthN > 12 || dayN < 1 || dayN > 31) throw new Hl7DateError(value);
  if (h === undefined) return [y, mo, d].filter((x) => x !== undefined).join('-');
  if (!d || !mo) throw new Hl7DateError(value);
  const hh = Number(h);
  const mm = Number(mi ?? '00');
  const ss = Number(s ?? '00');
  if (hh > 23 || mm > 59 || ss > 60) throw new Hl7DateError(value);
  const time = `${h}:${mi ?? '00'}:${s ?? '00'}${frac ? `.${frac}` : ''}`;
  let offset: string;
  if (off) {
    offset = `${off.slice(0, 3)}:${off.slice(3)}`;
  } else {
    // Wall-clock time in `zone`: guess with the offset at that time read as UTC, then correct once (DST edges).
    const wall = Date.UTC(Number(y), monthN - 1, dayN, hh, mm, ss);
    let o = zoneOffsetMinutes(zone, wall);
    o = zoneOffsetMinutes(zone, wall - o * 60000);
    offset = fmtOffset(o);
  }
  return `${y}-${mo}-${d}T${time}${offset}`;
}
