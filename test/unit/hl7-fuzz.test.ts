/**
 * Seeded fuzzing of the HL7 path that untrusted bytes take before anything is stored: charset detection,
 * batch splitting, parsing, field access and ACK building. 10,000 mutations of real-shaped messages; each
 * must end in a parsed message or a typed error, never a crash or a hang. The seed is fixed so a failure
 * replays exactly.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../support/rng.js';
import { decodeMessage, UnsupportedCharsetError } from '../../src/hl7/charset.js';
import { splitBatch } from '../../src/hl7/batch.js';
import { Hl7Message, Hl7ParseError } from '../../src/hl7/message.js';
import { buildAck } from '../../src/hl7/ack.js';
import { MllpDecoder, frame } from '../../src/hl7/mllp/framing.js';

const SEEDS = [
  'MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015-0500||SIU^S12^SIU_S12|MSG1|P|2.5.1\rSCH|1^A|2^B\rPID|1||MRN^^^H^MR~X^^^Y||Doe^Jane\\F\\x||19700101|F\rAIS|1||CONSULT',
  'MSH|^~\\&|LAB|H|CW|CW|20240101||ORU^R01|9|P|2.5||||||8859/1\rPID|1||1\rOBR|1\rOBX|1|NM|GLU||5.4|mmol/L\rNTE|1||\\X41\\\\.br\\end',
  'FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A|B|C|D|20240101||ADT^A04|1|P|2.5\rPID|1\rBTS|1\rFTS|1',
  'MSH|^|||||||^A|||2.2\r^AA',
];

const PUNCT = ['|', '^', '~', '\\', '&', '\r', '\n', '\u000b', '\u001c', '\u0000', 'é', 'MSH', 'X', ''];

function mutate(s: string, r: () => number): string {
  let out = s;
  const n = 1 + Math.floor(r() * 4);
  for (let k = 0; k < n; k++) {
    const i = Math.floor(r() * (out.length + 1));
    const op = Math.floor(r() * 5);
    const pick = PUNCT[Math.floor(r() * PUNCT.length)] ?? '';
    if (op === 0) out = out.slice(0, i) + pick + out.slice(i);
    else if (op === 1) out = out.slice(0, i) + out.slice(i + 1 + Math.floor(r() * 8));
    else if (op === 2) out = out.slice(0, i) + pick + out.slice(i + 1);
    else if (op === 3) out = out.slice(0, i) + out.slice(i, i + 40).repeat(2) + out.slice(i + 40);
    else out = out.slice(i) + out.slice(0, i);
  }
  return out;
}

describe('HL7 fuzzing', () => {
  it('when 10,000 mutated messages go through decode, split, parse, access and ACK then none crashes', () => {
    const r = rng(0xc0ffee);
    let parsed = 0;
    let refused = 0;
    for (let n = 0; n < 10_000; n++) {
      const input = mutate(SEEDS[n % SEEDS.length] ?? '', r);
      const bytes = Buffer.from(input, n % 2 ? 'utf8' : 'latin1');
      let text: string;
      try {
        text = decodeMessage(bytes).text;
      } catch (e) {
        expect(e).toBeInstanceOf(UnsupportedCharsetError);
        refused++;
        continue;
      }
      for (const m of splitBatch(text)) {
        try {
          const msg = Hl7Message.parse(m);
          for (const seg of msg.segments)
            for (let f = 0; f < seg.fields.length; f++) seg.get(f, 1 + (f % 3), 1, f % 2);
          void msg.type;
          expect(Hl7Message.parse(buildAck(msg, 'AA', { controlId: 'c' })).segment('MSA')).toBeDefined();
          parsed++;
        } catch (e) {
          expect(e).toBeInstanceOf(Hl7ParseError);
          expect(
            Hl7Message.parse(
              buildAck(undefined, 'AR', {
                controlId: 'c',
                error: { code: '100', text: (e as Error).message },
              }),
            ).segment('ERR'),
          ).toBeDefined();
          refused++;
        }
      }
    }
    expect(parsed).toBeGreaterThan(1000);
    expect(refused).toBeGreaterThan(100);
  });

  it('when random bytes stream into the MLLP decoder then it never throws and frames stay whole', () => {
    const r = rng(42);
    const d = new MllpDecoder(4096);
    let frames = 0;
    for (let n = 0; n < 2000; n++) {
      const chunk = Buffer.alloc(1 + Math.floor(r() * 64));
      for (let i = 0; i < chunk.length; i++)
        chunk[i] = r() < 0.05 ? [0x0b, 0x1c, 0x0d][Math.floor(r() * 3)]! : Math.floor(r() * 256);
      const events = d.push(n % 50 === 0 ? Buffer.concat([chunk, frame('MSH|^~\\&|x')]) : chunk);
      for (const e of events) {
        if (e.kind === 'frame') {
          frames++;
          expect(e.payload.includes(0x1c)).toBe(false);
        }
        if (e.kind === 'oversize') return;
      }
    }
    expect(frames).toBeGreaterThan(0);
  });
});
