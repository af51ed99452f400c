/**
 * MLLP framing: VT (0x0B) <message> FS (0x1C) CR (0x0D).
 *
 * The decoder takes bytes as TCP delivers them (a frame split across reads, several frames in one read) and
 * yields whole frames. Bytes outside a frame are garbage: they are counted and dropped, never parsed. A frame
 * that grows past `maxFrameBytes` is reported as oversize and the decoder stops: the connection must be
 * answered AR and closed, because the rest of the stream cannot be trusted to be aligned.
 */
export const VT = 0x0b;
export const FS = 0x1c;
export const CR = 0x0d;

export type FrameEvent =
  | { kind: 'frame'; payload: Buffer }
  | { kind: 'garbage'; bytes: number }
  | { kind: 'oversize'; bytes: number };

export class MllpDecoder {
  private readonly max: number;
  private chunks: Buffer[] = [];
  private size = 0;
  private inFrame = false;
  private dead = false;
  /** The last read ended right after FS: a CR opening the next read belongs to that frame. */
  private pendingCr = false;

  constructor(maxFrameBytes: number) {
    this.max = maxFrameBytes;
  }

  push(data: Buffer): FrameEvent[] {
    if (this.dead) return [];
    const events: FrameEvent[] = [];
    let i = 0;
    let garbage = 0;
    if (this.pendingCr && data[0] === CR) i = 1;
    this.pendingCr = false;
    while (i < data.length) {
      if (!this.inFrame) {
        const start = data.indexOf(VT, i);
        if (start === -1) {
          garbage += data.length - i;
          break;
        }
        garbage += start - i;
        this.inFrame = true;
        this.chunks = [];
        this.size = 0;
        i = start + 1;
        continue;
      }
      const end = data.indexOf(FS, i);
      const stop = end === -1 ? data.length : end;
      if (stop > i) {
        this.chunks.push(data.subarray(i, stop));
        this.size += stop - i;
      }
      if (this.size > this.max) {
        this.dead = true;
        if (garbage) events.push({ kind: 'garbage', bytes: garbage });
        events.push({ kind: 'oversize', bytes: this.size });
        return events;
      }
      if (end === -1) break;
      // FS must be followed by CR; tolerate a missing CR at the end of a read (it may come in the next one).
      const next = data[end + 1];
      if (end + 1 === data.length) this.pendingCr = true;
      i = end + 1 + (next === CR ? 1 : 0);
      this.inFrame = false;
      events.push({ kind: 'frame', payload: Buffer.concat(this.chunks, this.size) });
      this.chunks = [];
      this.size = 0;
    }
    if (garbage) events.unshift({ kind: 'garbage', bytes: garbage });
    return events;
  }
}

export function frame(payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Buffer.concat([Buffer.from([VT]), body, Buffer.from([FS, CR])]);
}
