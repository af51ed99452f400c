import { describe, expect, it } from 'vitest';
import { Hl7Message, Hl7ParseError } from '../../src/hl7/message.js';
import { escapeHl7, unescapeHl7 } from '../../src/hl7/escape.js';
import { decodeMessage, UnsupportedCharsetError } from '../../src/hl7/charset.js';
import { splitBatch } from '../../src/hl7/batch.js';
import { hl7ToFhirDateTime, Hl7DateError } from '../../src/hl7/datetime.js';

const SIU = [
  'MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015-0500||SIU^S12^SIU_S12|MSG00001|P|2.5.1',
  'SCH|10345^EPIC|20345^LAB|||||CHECKUP^Check-up visit|||30|min',
  "PID|1||MRN123^^^MAINHOSP^MR~SSN999^^^SSA^SS||O'Neil^Mary^Ann||19700101|F|||12 Main St^Apt 4\\.br\\Rear^Springfield^IL^62701",
  'NTE|1||Bring \\F\\ forms \\S\\ ID \\T\\ card \\R\\ list \\E\\ done',
  'ZCW|custom&sub^x',
].join('\r');

describe('Hl7Message.parse', () => {
  it('when a message has repetitions, components and subcomponents then each is addressable (fields 1-based, repetitions 0-based)', () => {
    const m = Hl7Message.parse(SIU);
    expect(m.type).toEqual({ code: 'SIU', trigger: 'S12', structure: 'SIU_S12' });
    expect(m.controlId).toBe('MSG00001');
    expect(m.sender).toEqual({ application: 'EPIC', facility: 'MAINHOSP' });
    expect(m.msh.get(1)).toBe('|');
    expect(m.msh.get(2)).toBe('^~\\&');
    expect(m.msh.get(7)).toBe('20240115083015-0500');
    const pid = m.segment('PID')!;
    expect(pid.get(3, 1)).toBe('MRN123'); // PID-3.1, first repetition
    expect(pid.get(3, 4)).toBe('MAINHOSP'); // PID-3.4
    expect(pid.get(3, 1, 1, 1)).toBe('SSN999'); // PID-3.1, second repetition
    expect(pid.repetitions(3)).toBe(2);
    expect(pid.get(5, 1)).toBe("O'Neil");
    expect(pid.get(11, 2)).toBe('Apt 4\nRear'); // \.br\ → line break
    expect(m.segment('ZCW')!.get(1, 1, 2)).toBe('sub'); // Z-segment subcomponent
  });

  it('when the segments end in LF or CRLF instead of CR then nothing is dropped', () => {
    for (const sep of ['\n', '\r\n', '\r']) {
      const m = Hl7Message.parse(SIU.split('\r').join(sep) + sep);
      expect(m.segments.map((s) => s.name)).toEqual(['MSH', 'SCH', 'PID', 'NTE', 'ZCW']);
    }
  });

  it('when a message uses other delimiters then they are honoured', () => {
    const m = Hl7Message.parse('MSH#$*!%#A#B#C#D#20240101##ADT$A04#1#P#2.5\rPID#1##X$$$F*Y##Doe$Jane');
    expect(m.type.trigger).toBe('A04');
    expect(m.segment('PID')!.get(3, 4)).toBe('F');
    expect(m.segment('PID')!.get(3, 1, 1, 1)).toBe('Y');
    expect(m.segment('PID')!.get(5, 2)).toBe('Jane');
  });

  it.each([
    ['', /does not start with an MSH/],
    ['PID|1', /does not start with an MSH/],
    ['MSH|^|', /delimiters/],
    ['MSH|^^\\&|A', /distinct/],
    ['MSH|^~\\&|A\rpid|1', /not a segment name/],
    // nHapi's fuzzing crasher (issue 196): must fail cleanly, not hang.
    ['MSH|^|||||||^A|||2.2\r^AA', /delimiters|segment/],
  ])('when given %j then a clear Hl7ParseError', (text, msg) => {
    expect(() => Hl7Message.parse(text)).toThrow(Hl7ParseError);
    expect(() => Hl7Message.parse(text)).toThrow(msg);
  });
});

describe('escapes', () => {
  const d = Hl7Message.parse(SIU).delimiters;
  it('when every escape appears then each decodes with the message delimiters', () => {
    expect(Hl7Message.parse(SIU).segment('NTE')!.get(3)).toBe('Bring | forms ^ ID & card ~ list \\ done');
  });
  it('when hex escapes carry UTF-8 or Latin-1 bytes then both decode', () => {
    expect(unescapeHl7('caf\\XC3A9\\', d)).toBe('café');
    expect(unescapeHl7('caf\\XE9\\', d)).toBe('café');
  });
  it('when formatting or unknown escapes appear then they are dropped; an unclosed escape stays', () => {
    expect(unescapeHl7('a\\H\\b\\N\\c\\Zxx\\', d)).toBe('abc');
    expect(unescapeHl7('trailing \\ alone', d)).toBe('trailing \\ alone');
  });
  it('when a value is escaped and unescaped then it round-trips', () => {
    const v = 'a|b^c&d~e\\f\ng';
    expect(unescapeHl7(escapeHl7(v, d), d)).toBe(v);
  });
});

describe('charsets (MSH-18)', () => {
  const msg = (charset: string, body: Buffer) =>
    Buffer.concat([
      Buffer.from(`MSH|^~\\&|A|B|C|D|20240101||ADT^A08|1|P|2.5||||||${charset}\rPID|1||1||`, 'latin1'),
      body,
    ]);
  it('when MSH-18 says 8859/1 then Latin-1 bytes decode correctly', () => {
    const { text, charset } = decodeMessage(msg('8859/1', Buffer.from('Müller', 'latin1')));
    expect(charset).toBe('latin1');
    expect(Hl7Message.parse(text).segment('PID')!.get(5)).toBe('Müller');
  });
  it('when MSH-18 says UNICODE UTF-8 (or is empty) then UTF-8 decodes', () => {
    expect(
      Hl7Message.parse(decodeMessage(msg('UNICODE UTF-8', Buffer.from('Łódź', 'utf8'))).text)
        .segment('PID')!
        .get(5),
    ).toBe('Łódź');
    expect(decodeMessage(msg('', Buffer.from('Łódź', 'utf8'))).charset).toBe('utf-8');
  });
  it('when MSH-18 names an unsupported charset then it is refused', () => {
    expect(() => decodeMessage(msg('ISO IR87', Buffer.from('x')))).toThrow(UnsupportedCharsetError);
  });
});

describe('batches', () => {
  it('when a FHS/BHS batch holds three messages then three messages come out, envelopes dropped', () => {
    const one = 'MSH|^~\\&|A|B|C|D|20240101||ADT^A04|1|P|2.5\rPID|1||1';
    const batch = [
      'FHS|^~\\&|A',
      'BHS|^~\\&|A',
      one,
      one.replace('|1|P', '|2|P'),
      one.replace('|1|P', '|3|P'),
      'BTS|3',
      'FTS|1',
    ].join('\n');
    const msgs = splitBatch(batch);
    expect(msgs).toHaveLength(3);
    expect(msgs.map((m) => Hl7Message.parse(m).controlId)).toEqual(['1', '2', '3']);
  });
});

describe('hl7ToFhirDateTime', () => {
  it.each([
    ['20240115083015-0500', 'UTC', '2024-01-15T08:30:15-05:00'],
    ['20240115083015+0130', 'UTC', '2024-01-15T08:30:15+01:30'],
    ['20240115083015.1234-0500', 'UTC', '2024-01-15T08:30:15.1234-05:00'],
    ['202401150830', 'America/Chicago', '2024-01-15T08:30:00-06:00'],
    ['20240715083000', 'America/Chicago', '2024-07-15T08:30:00-05:00'],
    ['20240115000000', 'Europe/Amsterdam', '2024-01-15T00:00:00+01:00'],
    ['20240115', 'UTC', '2024-01-15'],
    ['202401', 'UTC', '2024-01'],
    ['2024', 'UTC', '2024'],
  ])('when given %s in %s then %s', (input, zone, expected) => {
    expect(hl7ToFhirDateTime(input, zone)).toBe(expected);
  });

  it.each(['', '2024-01-15', '20241315', '20240115250000', 'yesterday', '20240115083015-05'])(
    'when given %j then it is refused',
    (v) => {
      expect(() => hl7ToFhirDateTime(v, 'UTC')).toThrow(Hl7DateError);
    },
  );
});
