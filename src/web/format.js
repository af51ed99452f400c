/** Small display helpers (dates in the browser's locale and zone). */
export const STAGES = [
  { code: 'awareness', display: 'Awareness' },
  { code: 'consideration', display: 'Consideration' },
  { code: 'access', display: 'Access' },
  { code: 'care', display: 'Care' },
  { code: 'recovery', display: 'Recovery' },
  { code: 'continuous-care', display: 'Continuous care' },
];
export const stageName = (code) => STAGES.find((s) => s.code === code)?.display ?? code;

export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, {
    dateStyle: 'medium',
    timeStyle: iso.length > 10 ? 'short' : undefined,
  });
}

export const days = (ms) => Math.floor(ms / 86400_000);

/** The patient's name as FHIR gives it (text, or given + family); undefined when the token could not read it. */
export function personName(resource) {
  const n = resource?.name?.[0];
  if (!n) return undefined;
  return n.text ?? [...(n.given ?? []), n.family].filter(Boolean).join(' ');
}

/** 'ok' below 75 % of the target, 'near' up to it, 'over' past it: used with a text label, never colour alone. */
export function targetLevel(daysIn, targetDays, overTarget) {
  if (overTarget || (targetDays && daysIn > targetDays)) return 'over';
  if (targetDays && daysIn >= 0.75 * targetDays) return 'near';
  return 'ok';
}

export const today = () => new Date().toISOString().slice(0, 10);
/**
 * The month up to today (the same day a month ago through today, UTC), the analytics' default period. Not the
 * calendar month: on the 1st that is a single day with no attended or missed appointment yet, and the
 * coordinator opening the page wants the month just lived.
 */
export function monthBounds(d = new Date()) {
  const start = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, d.getUTCDate() + 1));
  // 31 March: one month back is 1 March (not 3 March, as an overflowing 31 February would give).
  if (start.getUTCMonth() === d.getUTCMonth()) start.setUTCDate(1);
  return { start: start.toISOString().slice(0, 10), end: d.toISOString().slice(0, 10) };
}
