import { describe, expect, it } from 'vitest';
import { frame, MllpDecoder } from '../../src/hl7/mllp/framing.js';
import { buildAck } from '../../src/hl7/ack.js';
import { Hl7Message } from '../../src/hl7/message.js';

const payload = (n: number) => `MSH|^~\\&|A|B|C|D|20240101||ADT^A04|${n}|P|2.5\rPID|1`;

describe('MllpDecoder', () => {
  it('when a frame is split across reads then it is assembled once complete', () => {
    const d = new MllpDecoder(1 << 20);
    const bytes = frame(payload(1));
    const events = [...bytes].map((b) => d.push(Buffer.from([b]))).flat();
    expect(events).toEqual([{ kind: 'frame', payload: Buffer.from(payload(1)) }]);
  });

  it('when several frames arrive in one read then each comes out, in order', () => {
    const d = new MllpDecoder(1 << 20);
    const events = d.push(Buffer.concat([frame(payload(1)), frame(payload(2)), frame(payload(3))]));
    expect(events.map((e) => (e.kind === 'frame' ? e.payload.toString() : e.kind))).toEqual([
      payload(1),
      payload(2),
      payload(3),
    ]);
  });

  it('when bytes arrive outside a frame then they are reported as garbage and skipped', () => {
    const d = new MllpDecoder(1 << 20);
    const events = d.push(Buffer.concat([Buffer.from('GET / HTTP/1.1\r\n'), frame(payload(1))]));
    expect(events).toEqual([
      { kind: 'garbage', bytes: 16 },
      { kind: 'frame', payload: Buffer.from(payload(1)) },
    ]);
  });

  it('when a frame grows past the limit then oversize is reported and the decoder stops', () => {
    const d = new MllpDecoder(100);
    const events = d.push(frame('x'.repeat(500)));
    expect(events).toEqual([{ kind: 'oversize', bytes: 500 }]);
    expect(d.push(frame(payload(1)))).toEqual([]);
  });
});

describe('buildAck', () => {
  const original = Hl7Message.parse(
    'MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240101||SIU^S12^SIU_S12|MSG7|P|2.5.1',
  );
  it('when acknowledging then sender and receiver swap, MSH-9 is ACK^<trigger>^ACK and MSA-2 is the original MSH-10', () => {
    const ack = Hl7Message.parse(
      buildAck(original, 'AA', { controlId: 'ACK1', now: new Date('2024-01-01T00:00:00Z') }),
    );
    expect([ack.msh.get(3), ack.msh.get(4), ack.msh.get(5), ack.msh.get(6)]).toEqual([
      'CAREWAY',
      'CW',
      'EPIC',
      'MAINHOSP',
    ]);
    expect(ack.msh.raw(9)).toBe('ACK^S12^ACK');
    expect([ack.controlId, ack.msh.get(11), ack.version]).toEqual(['ACK1', 'P', '2.5.1']);
    expect([ack.segment('MSA')!.get(1), ack.segment('MSA')!.get(2)]).toEqual(['AA', 'MSG7']);
    expect(ack.segment('ERR')).toBeUndefined();
  });

  it('when rejecting then an ERR segment carries the table 0357 code, severity and an escaped text', () => {
    const ack = Hl7Message.parse(
      buildAck(original, 'AR', { controlId: 'ACK2', error: { code: '200', text: 'no map for SIU^S99|x' } }),
    );
    const err = ack.segment('ERR')!;
    expect([err.get(3, 1), err.get(3, 2), err.get(3, 3), err.get(4)]).toEqual([
      '200',
      'Unsupported message type',
      'HL70357',
      'E',
    ]);
    expect(err.get(8)).toBe('no map for SIU^S99|x');
  });

  it('when the original could not be parsed then the ACK still parses, with an empty MSA-2', () => {
    const ack = Hl7Message.parse(
      buildAck(undefined, 'AR', { controlId: 'ACK3', error: { code: '100', text: 'bad' } }),
    );
    expect(ack.segment('MSA')!.get(1)).toBe('AR');
    expect(ack.segment('MSA')!.get(2)).toBe('');
  });
});
