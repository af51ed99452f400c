/**
 * HL7 v2 DTM/TS values → FHIR date or dateTime strings.
 *
 * - An explicit offset (`+0100`, `-0500`) is kept as written.
 * - An offset-less time is read as wall-clock time in the sending facility's IANA zone (never the server's),
 *   and gets that zone's offset for that instant, daylight saving included.
 * - Precision is kept: `2024`, `202401`, `20240115` stay a year, a month, a date; a time keeps its seconds
 *   and any number of fractional digits.
 */
import { formatOffset, wallTimeToUtc, zoneOffsetMinutes } from '../shared/zoned-time.js';

const DTM = /^(\d{4})(\d{2})?(\d{2})?(?:(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,9}))?)?([+-]\d{4})?$/;

export class Hl7DateError extends Error {
  constructor(value: string) {
    super(`"${value.slice(0, 40)}" is not an HL7 date/time`);
    this.name = 'Hl7DateError';
  }
}

/** Converts an HL7 date/time to FHIR. `zone` applies only when the value has a time and no offset. */
export function hl7ToFhirDateTime(value: string, zone: string): string {
  const m = DTM.exec(value.trim());
  if (!m) throw new Hl7DateError(value);
  const [, y, mo, d, h, mi, s, frac, off] = m;
  const monthN = Number(mo ?? '01');
  const dayN = Number(d ?? '01');
  // A day past the month's end (20240230) is as impossible as month 13: the FHIR server would refuse it later.
  const monthDays = new Date(Date.UTC(Number(y), monthN, 0)).getUTCDate();
  if (monthN < 1 || monthN > 12 || dayN < 1 || dayN > monthDays) throw new Hl7DateError(value);
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
    offset = formatOffset(zoneOffsetMinutes(zone, wallTimeToUtc(zone, Number(y), monthN, dayN, hh, mm, ss)));
  }
  return `${y}-${mo}-${d}T${time}${offset}`;
}
