/**
 * Reading map files in the four tiers (`vocab/ datatypes/ segments/ messages/`), for both directions: the inbound
 * v2 → FHIR maps and the outbound FHIR → v2 maps. Each file is parsed, validated against its direction's JSON
 * Schema, checked to sit in the right tier and to be named after what it maps; later roots (a site's
 * MAPPINGS_DIR) replace earlier ones by name. Every problem is collected, so a broken set is reported at once.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';

const TIERS = { vocab: 'vocab', datatypes: 'datatype', segments: 'segment', messages: 'message' } as const;

export type Tier = keyof typeof TIERS;

export async function loadTiers<F extends { kind: string }>(
  roots: readonly string[],
  schemaPath: string,
  /** The name a map is known by (and its file must carry). */
  nameOf: (map: F) => string,
  problems: string[],
): Promise<Record<Tier, Map<string, F>>> {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(JSON.parse(await readFile(schemaPath, 'utf8')) as object);
  const out: Record<Tier, Map<string, F>> = {
    vocab: new Map(),
    datatypes: new Map(),
    segments: new Map(),
    messages: new Map(),
  };
  for (const root of roots) {
    for (const [dir, kind] of Object.entries(TIERS) as [Tier, string][]) {
      let files: string[];
      try {
        files = (await readdir(join(root, dir))).filter((f) => /\.ya?ml$/.test(f));
      } catch {
        continue;
      }
      for (const f of files.sort()) {
        const where = join(root, dir, f);
        let doc: unknown;
        try {
          doc = parseYaml(await readFile(where, 'utf8'));
        } catch (e) {
          problems.push(`${where}: not valid YAML (${e instanceof Error ? e.message.split('\n')[0] : ''})`);
          continue;
        }
        if (!validate(doc)) {
          problems.push(`${where}: ${ajv.errorsText(validate.errors, { separator: '; ' })}`);
          continue;
        }
        const m = doc as F;
        const name = nameOf(m);
        if (m.kind !== kind) problems.push(`${where}: a ${m.kind} map does not belong in ${dir}/`);
        else if (basename(f).replace(/\.ya?ml$/, '') !== name)
          problems.push(`${where}: the file must be named ${name}.yaml`);
        else out[dir].set(name, m);
      }
    }
  }
  return out;
}
