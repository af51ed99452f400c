/**
 * HL7 v2 (ER7) messages: parsing with the message's own delimiters, and typed access to fields.
 *
 * Our own parser, not a library's: `hl7v2` corrupts negative-offset timestamps and silently drops segments
 * after LF line ends; `@medplum/core`'s Hl7Message has no escape handling, no batches, no charsets and mixes
 * 0- and 1-based indexes. ER7 is a small grammar, and owning it lets every edge case have a test.
 *
 * Conventions: fields, components and subcomponents are 1-based as in HL7 (`PID-3.1`); repetitions are
 * 0-based. Values are stored raw (escaped) and decoded on access, with this message's delimiters.
 * Segments may end in CR, LF or CRLF.
 */
import { unescapeHl7 } from './escape.js';
import type { Delimiters } from './delimiters.js';

export { DEFAULT_DELIMITERS, type Delimiters } from './delimiters.js';

export class Hl7ParseError extends Error {
  /** HL7 table 0357 error code: 100 segment sequence, 101 required field missing, 102 data type error. */
  readonly hl7Code: '100' | '101' | '102' | '200' | '207';
  constructor(message: string, hl7Code: Hl7ParseError['hl7Code'] = '100') {
    super(message);
    this.name = 'Hl7ParseError';
    this.hl7Code = hl7Code;
  }
}

const SEGMENT_NAME = /^[A-Z][A-Z0-9]{2}$/;

/** The n-th (0-based) piece of `text` split on `sep`, without building the whole split (a hot path). */
function nth(text: string, sep: string, n: number): string {
  let start = 0;
  for (let i = 0; i < n; i++) {
    const at = text.indexOf(sep, start);
    if (at < 0) return '';
    start = at + sep.length;
  }
  const end = text.indexOf(sep, start);
  return end < 0 ? text.slice(start) : text.slice(start, end);
}

export class Hl7Segment {
  readonly name: string;
  /** Raw fields; index n is field n (for MSH, index 1 is the field separator itself). */
  readonly fields: readonly string[];
  private readonly d: Delimiters;

  constructor(name: string, fields: readonly string[], delimiters: Delimiters) {
    this.name = name;
    this.fields = fields;
    this.d = delimiters;
  }

  /** The raw (still escaped) field, all repetitions. */
  raw(field: number): string {
    return this.fields[field] ?? '';
  }

  /** Number of repetitions of a field (0 when empty). */
  repetitions(field: number): number {
    const raw = this.raw(field);
    if (raw === '') return 0;
    if (this.name === 'MSH' && field <= 2) return 1;
    return raw.split(this.d.repetition).length;
  }

  /**
   * A decoded value: `get(3)` is PID-3.1 of the first repetition; `get(3, 4, 2, 1)` is PID-3.4.2 of the
   * second repetition. Empty string when absent. HL7's explicit null (`""`) is returned as `""`.
   */
  get(field: number, component = 1, subcomponent = 1, repetition = 0): string {
    const raw = this.raw(field);
    if (this.name === 'MSH' && field <= 2)
      return component === 1 && subcomponent === 1 && repetition === 0 ? raw : '';
    const rep = nth(raw, this.d.repetition, repetition);
    const comp = nth(rep, this.d.component, component - 1);
    return unescapeHl7(nth(comp, this.d.subcomponent, subcomponent - 1), this.d);
  }

  /** All components of one repetition, decoded (1-based: index 0 is component 1). */
  components(field: number, repetition = 0): string[] {
    const rep = this.raw(field).split(this.d.repetition)[repetition] ?? '';
    return rep === ''
      ? []
      : rep.split(this.d.component).map((c) => unescapeHl7(c.split(this.d.subcomponent)[0] ?? '', this.d));
  }
}

export class Hl7Message {
  readonly delimiters: Delimiters;
  readonly segments: readonly Hl7Segment[];

  private constructor(delimiters: Delimiters, segments: Hl7Segment[]) {
    this.delimiters = delimiters;
    this.segments = segments;
  }

  /** Parses one message. Throws Hl7ParseError when it is not a well-formed ER7 message starting with MSH. */
  static parse(text: string): Hl7Message {
    const lines = text.split(/\r\n|\r|\n/).filter((l) => l.length > 0);
    const first = lines[0];
    if (!first?.startsWith('MSH')) throw new Hl7ParseError('the message does not start with an MSH segment');
    if (first.length < 8) throw new Hl7ParseError('MSH-1/MSH-2 do not define valid delimiters', '102');
    const field = first[3] ?? '';
    const encoding = first.slice(4, first.indexOf(field, 4) === -1 ? undefined : first.indexOf(field, 4));
    if (!field || /[A-Za-z0-9\s]/.test(field) || encoding.length < 3 || encoding.length > 5) {
      throw new Hl7ParseError('MSH-1/MSH-2 do not define valid delimiters', '102');
    }
    const [component, repetition, escape, subcomponent = '&'] = encoding;
    const chars = [field, component, repetition, escape, subcomponent];
    if (new Set(chars).size !== chars.length || chars.some((c) => !c || /[A-Za-z0-9\s]/.test(c))) {
      throw new Hl7ParseError('MSH-2 encoding characters are not distinct punctuation', '102');
    }
    const d: Delimiters = {
      field,
      component: component!,
      repetition: repetition!,
      escape: escape!,
      subcomponent,
    };
    const segments: Hl7Segment[] = [];
    for (const line of lines) {
      const parts = line.split(field);
      const name = parts[0] ?? '';
      if (!SEGMENT_NAME.test(name))
        throw new Hl7ParseError(`"${name.slice(0, 8)}" is not a segment name`, '100');
      if (name === 'MSH') {
        // MSH-1 is the separator itself and MSH-2 the encoding characters: shift so that index = field number.
        segments.push(new Hl7Segment(name, [name, field, ...parts.slice(1)], d));
      } else {
        segments.push(new Hl7Segment(name, parts, d));
      }
    }
    return new Hl7Message(d, segments);
  }

  get msh(): Hl7Segment {
    const msh = this.segments[0];
    if (!msh) throw new Hl7ParseError('no MSH');
    return msh;
  }

  segment(name: string, index = 0): Hl7Segment | undefined {
    return this.segments.filter((s) => s.name === name)[index];
  }

  all(name: string): Hl7Segment[] {
    return this.segments.filter((s) => s.name === name);
  }

  /** MSH-9 parts: message code, trigger event, structure (e.g. SIU, S12, SIU_S12). */
  get type(): { code: string; trigger: string; structure: string } {
    const code = this.msh.get(9, 1);
    const trigger = this.msh.get(9, 2);
    return { code, trigger, structure: this.msh.get(9, 3) || (code && trigger ? `${code}_${trigger}` : '') };
  }

  get controlId(): string {
    return this.msh.get(10);
  }

  /** Sender key for dedupe and time zones: MSH-3 (application) ^ MSH-4 (facility). */
  get sender(): { application: string; facility: string } {
    return { application: this.msh.get(3), facility: this.msh.get(4) };
  }

  get version(): string {
    return this.msh.get(12);
  }
}
