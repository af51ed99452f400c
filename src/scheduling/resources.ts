/**
 * How scheduling facts sit on standard FHIR resources, read and written in one place:
 * - a Schedule's zone is the standard `timezone` extension (else DEFAULT_TIMEZONE);
 * - preferences are the `scheduling-preferences` extension on the Patient, overridden per journey on its
 *   EpisodeOfCare;
 * - a hold is the `slot-hold` extension on a `busy-tentative` Slot: who holds it, until when, and for a
 *   waitlist offer, which Communication offered it.
 */
import type { Extension, Location, Patient, Practitioner, Resource, Slot } from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import { WEEKDAY_CODES, type Weekday } from '../shared/zoned-time.js';
import { TIMES_OF_DAY, type GeoPoint, type Preferences, type TimeOfDay } from './ranking.js';

const isWeekday = (c: string): c is Weekday => (WEEKDAY_CODES as readonly string[]).includes(c);
const isTimeOfDay = (c: string): c is TimeOfDay => Object.hasOwn(TIMES_OF_DAY, c);

/** The preferences extension of a Patient or EpisodeOfCare; undefined when it has none. */
export function readPreferences(resource: { extension?: Extension[] } | undefined): Preferences | undefined {
  const ext = resource?.extension?.find((x) => x.url === canonical.schedulingPreferencesExtension);
  if (!ext) return undefined;
  const parts = ext.extension ?? [];
  const codes = (url: string): string[] =>
    parts.filter((p) => p.url === url && p.valueCode).map((p) => p.valueCode!);
  const weekdays = codes('weekday').filter(isWeekday);
  const timesOfDay = codes('timeOfDay').filter(isTimeOfDay);
  const language = codes('language')[0];
  const locations = parts
    .filter((p) => p.url === 'location' && p.valueReference?.reference)
    .map((p) => p.valueReference!.reference!);
  const maxTravelKm = parts.find((p) => p.url === 'maxTravelKm')?.valueDecimal;
  return {
    ...(weekdays.length ? { weekdays } : {}),
    ...(timesOfDay.length ? { timesOfDay } : {}),
    ...(language ? { language } : {}),
    ...(locations.length ? { locations } : {}),
    ...(maxTravelKm !== undefined ? { maxTravelKm } : {}),
  };
}

export function preferencesExtension(p: Preferences): Extension {
  return {
    url: canonical.schedulingPreferencesExtension,
    extension: [
      ...(p.weekdays ?? []).map((c) => ({ url: 'weekday', valueCode: c })),
      ...(p.timesOfDay ?? []).map((c) => ({ url: 'timeOfDay', valueCode: c })),
      ...(p.language ? [{ url: 'language', valueCode: p.language }] : []),
      ...(p.locations ?? []).map((r) => ({ url: 'location', valueReference: { reference: r } })),
      ...(p.maxTravelKm !== undefined ? [{ url: 'maxTravelKm', valueDecimal: p.maxTravelKm }] : []),
    ],
  };
}

/** A resource with its preferences extension replaced (or removed when `p` is empty). */
export function withPreferences<T extends Resource & { extension?: Extension[] }>(r: T, p: Preferences): T {
  const others = (r.extension ?? []).filter((x) => x.url !== canonical.schedulingPreferencesExtension);
  const ext = preferencesExtension(p);
  const extension = ext.extension?.length ? [...others, ext] : others;
  const out: T = { ...r, extension };
  if (extension.length === 0) delete out.extension;
  return out;
}

/** Journey preferences win over the patient's, factor by factor. */
export function mergePreferences(patient?: Preferences, journey?: Preferences): Preferences {
  return { ...(patient ?? {}), ...(journey ?? {}) };
}

const GEO = 'http://hl7.org/fhir/StructureDefinition/geolocation';

/** Home position from the standard geolocation extension on the patient's home (or first) address. */
export function homeOf(patient: Patient | undefined): GeoPoint | undefined {
  const addresses = patient?.address ?? [];
  const address = addresses.find((a) => a.use === 'home') ?? addresses[0];
  const geo = address?.extension?.find((x) => x.url === GEO);
  const lat = geo?.extension?.find((x) => x.url === 'latitude')?.valueDecimal;
  const lon = geo?.extension?.find((x) => x.url === 'longitude')?.valueDecimal;
  return lat !== undefined && lon !== undefined ? { latitude: lat, longitude: lon } : undefined;
}

/** The patient's preferred language (communication.preferred, else the first). */
export function patientLanguage(patient: Patient | undefined): string | undefined {
  const comms = patient?.communication ?? [];
  const c = comms.find((x) => x.preferred) ?? comms[0];
  return c?.language.coding?.find((x) => x.code)?.code;
}

export function languagesOf(p: Practitioner | undefined): string[] {
  return (p?.communication ?? []).flatMap((c) => (c.coding ?? []).map((x) => x.code ?? '')).filter(Boolean);
}

export function positionOf(l: Location | undefined): GeoPoint | undefined {
  return l?.position ? { latitude: l.position.latitude, longitude: l.position.longitude } : undefined;
}

export interface Hold {
  readonly id: string;
  readonly expires: string;
  /** `Patient/{id}`. */
  readonly holder: string;
  /** `Communication/{id}` of a waitlist offer. */
  readonly offer?: string;
  /** The waitlist round this offer belongs to. */
  readonly round?: string;
}

export function holdOf(slot: Slot): Hold | undefined {
  const ext = slot.extension?.find((x) => x.url === canonical.slotHoldExtension);
  if (!ext) return undefined;
  const part = (url: string): Extension | undefined => ext.extension?.find((x) => x.url === url);
  const id = part('id')?.valueString;
  const expires = part('expires')?.valueInstant;
  const holder = part('holder')?.valueReference?.reference;
  if (!id || !expires || !holder) return undefined;
  const offer = part('offer')?.valueReference?.reference;
  const round = part('round')?.valueString;
  return { id, expires, holder, ...(offer ? { offer } : {}), ...(round ? { round } : {}) };
}

/** The Slot as held (`busy-tentative` plus the hold), or freed/booked (`hold` undefined). */
export function withHold(slot: Slot, status: Slot['status'], hold?: Hold): Slot {
  const others = (slot.extension ?? []).filter((x) => x.url !== canonical.slotHoldExtension);
  const extension = hold
    ? [
        ...others,
        {
          url: canonical.slotHoldExtension,
          extension: [
            { url: 'id', valueString: hold.id },
            { url: 'expires', valueInstant: hold.expires },
            { url: 'holder', valueReference: { reference: hold.holder } },
            ...(hold.offer ? [{ url: 'offer', valueReference: { reference: hold.offer } }] : []),
            ...(hold.round ? [{ url: 'round', valueString: hold.round }] : []),
          ],
        },
      ]
    : others;
  const out: Slot = { ...slot, status, extension };
  if (extension.length === 0) delete out.extension;
  return out;
}

/** The Appointment (`Appointment/{id}`) from another system that occupies the Slot, if any. */
export function occupantOf(slot: Slot): string | undefined {
  return slot.extension?.find((x) => x.url === canonical.slotAppointmentExtension)?.valueReference?.reference;
}

/** The Slot taken by an outside Appointment (`busy`), or given back (`free`, no occupant). */
export function withOccupant(slot: Slot, appointment: string | undefined): Slot {
  const others = (slot.extension ?? []).filter(
    (x) => x.url !== canonical.slotAppointmentExtension && x.url !== canonical.slotHoldExtension,
  );
  const extension = appointment
    ? [...others, { url: canonical.slotAppointmentExtension, valueReference: { reference: appointment } }]
    : others;
  const out: Slot = { ...slot, status: appointment ? 'busy' : 'free', extension };
  if (extension.length === 0) delete out.extension;
  return out;
}
