/**
 * Patient-facing texts come from per-language files (`templates/<language>.yaml`, a site may add or override
 * them with TEMPLATES_DIR), never from code. Rendering fills `{name}` placeholders; an unknown placeholder
 * stays visible so a broken template is noticed rather than sent half-empty.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';

export const TEMPLATE_KINDS = [
  'reminder',
  'waitlist-offer',
  'survey',
  'check-up',
  'education',
  'message-notification',
] as const;
export type TemplateKind = (typeof TEMPLATE_KINDS)[number];

export interface Template {
  readonly subject: string;
  readonly text: string;
}

export class Templates {
  constructor(
    private readonly byLanguage: ReadonlyMap<string, Readonly<Record<TemplateKind, Template>>>,
    private readonly fallback = 'en',
  ) {}

  /** Loads every `<language>.yaml` of each directory; later directories win per language and kind. */
  static async load(dirs: readonly string[]): Promise<Templates> {
    const map = new Map<string, Record<TemplateKind, Template>>();
    const problems: string[] = [];
    for (const dir of dirs) {
      for (const f of (await readdir(dir)).filter((x) => x.endsWith('.yaml')).sort()) {
        const doc = parse(await readFile(join(dir, f), 'utf8')) as Record<string, unknown>;
        const language = typeof doc['language'] === 'string' ? doc['language'].toLowerCase() : undefined;
        if (!language) {
          problems.push(`${f}: "language" is required`);
          continue;
        }
        const entry = (map.get(language) ?? {}) as Record<TemplateKind, Template>;
        for (const kind of TEMPLATE_KINDS) {
          const t = doc[kind] as Partial<Template> | undefined;
          if (t === undefined) continue;
          if (typeof t.subject !== 'string' || typeof t.text !== 'string')
            problems.push(`${f}: ${kind} needs a subject and a text`);
          else entry[kind] = { subject: t.subject, text: t.text };
        }
        map.set(language, entry);
      }
    }
    const en = map.get('en');
    for (const kind of TEMPLATE_KINDS)
      if (!en?.[kind]) problems.push(`en.yaml: ${kind} is missing (English is the fallback)`);
    if (problems.length) throw new Error(`invalid message templates:\n  - ${problems.join('\n  - ')}`);
    return new Templates(map);
  }

  /** The template in the patient's language (`de-CH` → `de`), else English. */
  render(
    kind: TemplateKind,
    language: string | undefined,
    values: Readonly<Record<string, string>>,
  ): Template {
    const lang = (language ?? '').toLowerCase();
    const t =
      this.byLanguage.get(lang)?.[kind] ??
      this.byLanguage.get(lang.split('-')[0] ?? '')?.[kind] ??
      this.byLanguage.get(this.fallback)![kind];
    const fill = (s: string): string => s.replace(/\{(\w+)\}/g, (m, k: string) => values[k] ?? m);
    return { subject: fill(t.subject), text: fill(t.text) };
  }
}
