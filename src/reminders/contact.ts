/**
 * How to reach a patient, from the Patient resource alone (pure):
 * - the channel: the best-ranked telecom Careway can use (a mobile phone or `sms` → SMS, `email` → e-mail)
 *   that the patient has not opted out of (`engagement-opt-out` extension: all, sms or email), else the portal;
 * - the language (`communication.preferred`, else the first), and the first name for the greeting.
 */
import type { ContactPoint, Patient } from 'fhir/r4.js';
import { canonical } from '../fhir/canonical.js';
import type { ChannelKind } from './channels/channel.js';

export interface Contact {
  readonly channel: ChannelKind;
  /** Address for the channel; empty for the portal. */
  readonly to: string;
  readonly language: string | undefined;
  readonly firstName: string;
}

function optedOut(p: Patient): Set<string> {
  return new Set(
    (p.extension ?? [])
      .filter((x) => x.url === canonical.engagementOptOutExtension && x.valueCode)
      .map((x) => x.valueCode!),
  );
}

function current(t: ContactPoint, nowMs: number): boolean {
  return !t.period?.end || Date.parse(t.period.end) > nowMs;
}

export function contactOf(p: Patient, available: ReadonlySet<ChannelKind>, nowMs = Date.now()): Contact {
  const out = optedOut(p);
  const language = (p.communication?.find((c) => c.preferred) ?? p.communication?.[0])?.language.coding?.find(
    (c) => c.code,
  )?.code;
  const name = p.name?.find((n) => n.use === 'official') ?? p.name?.[0];
  const firstName = name?.given?.[0] ?? '';
  if (out.has('all')) return { channel: 'portal', to: '', language, firstName };
  const telecoms = [...(p.telecom ?? [])]
    .filter((t) => t.value && current(t, nowMs))
    .sort((a, b) => (a.rank ?? Number.MAX_SAFE_INTEGER) - (b.rank ?? Number.MAX_SAFE_INTEGER));
  for (const t of telecoms) {
    const sms = t.system === 'sms' || (t.system === 'phone' && t.use === 'mobile');
    if (sms && available.has('sms') && !out.has('sms'))
      return { channel: 'sms', to: t.value!, language, firstName };
    if (t.system === 'email' && available.has('email') && !out.has('email'))
      return { channel: 'email', to: t.value!, language, firstName };
  }
  return { channel: 'portal', to: '', language, firstName };
}
