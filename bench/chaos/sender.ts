/**
 * An interface engine, as hospitals run them: several MLLP connections, each sending its messages strictly in
 * order with one in flight, a patient always on the same connection. A message is resent when its ACK does not
 * come (timeout, connection lost: Careway killed) or is AE (Careway could not enqueue, e.g. Redis restarting);
 * the connection moves on only after AA. AR is final (the message is wrong) and counted.
 *
 * It also resends a share of messages right after their AA (the engine missed the ACK and sends again: the
 * "2% resends"), which must change nothing. Intake can be paced (R7: 100 msg/s) or ACK-driven (R1: a replay).
 * Each AA's latency is kept with the phase it was sent in, for R7's before/during comparison.
 */
import { connect, type Socket } from 'node:net';
import { frame, MllpDecoder } from '../../src/hl7/mllp/framing.js';
import { prng, type FeedMessage } from './feed.js';

export interface SendOptions {
  readonly port: number;
  readonly connections: number;
  /** Share of messages sent again right after their AA (0.02). */
  readonly resendShare: number;
  /** Messages per second across all connections; undefined: as fast as ACKs come. */
  readonly rate?: number;
  readonly ackTimeoutMs: number;
  /** The phase a send belongs to, read at send time (for R7's latency by phase). */
  readonly phase?: () => string;
  readonly seed?: number;
  /** Stop early (a run aborted). */
  readonly signal?: AbortSignal;
}

export interface SendResult {
  readonly accepted: ReadonlySet<number>;
  readonly rejected: ReadonlyMap<number, string>;
  /** Deliberate resends after an AA (the feed's share). */
  readonly deliberateResends: number;
  /** Sends repeated because no ACK came, the connection dropped, or the ACK was AE. */
  readonly retrySends: number;
  readonly aeAcks: number;
  readonly timeouts: number;
  readonly reconnects: number;
  /** AA latencies (ms) by phase. */
  readonly latencies: ReadonlyMap<string, number[]>;
}

class Connection {
  private socket: Socket | undefined;
  private decoder = new MllpDecoder(1 << 20);
  private waiter: ((ack: string | undefined) => void) | undefined;

  constructor(private readonly port: number) {}

  /** Connects, retrying until Careway's listener answers (it may be restarting). */
  async open(signal?: AbortSignal): Promise<void> {
    for (;;) {
      if (signal?.aborted) throw new Error('aborted');
      const ok = await new Promise<Socket | undefined>((resolve) => {
        const s = connect(this.port, '127.0.0.1');
        s.once('connect', () => resolve(s));
        s.once('error', () => resolve(undefined));
      });
      if (ok) {
        this.socket = ok;
        this.decoder = new MllpDecoder(1 << 20);
        ok.on('data', (d: Buffer) => {
          for (const e of this.decoder.push(d))
            if (e.kind === 'frame') this.settle(e.payload.toString('utf8'));
        });
        ok.on('error', () => undefined);
        ok.on('close', () => {
          if (this.socket === ok) this.socket = undefined;
          this.settle(undefined);
        });
        return;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private settle(ack: string | undefined): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.(ack);
  }

  get connected(): boolean {
    return !!this.socket && !this.socket.destroyed;
  }

  /** Sends one message and waits for its ACK; undefined when none came (timeout or connection lost). */
  send(text: string, timeoutMs: number): Promise<string | undefined> {
    const socket = this.socket;
    if (!socket) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        // No ACK: a real engine drops the connection and starts again with the same message.
        this.waiter = undefined;
        socket.destroy();
        resolve(undefined);
      }, timeoutMs);
      this.waiter = (ack) => {
        clearTimeout(timer);
        resolve(ack);
      };
      socket.write(frame(text));
    });
  }

  close(): void {
    this.socket?.destroy();
  }
}

/** MSA-1 and MSA-2 of an ACK. */
function msa(ack: string): { code: string; controlId: string } {
  const seg = ack.split(/\r\n|\r|\n/).find((s) => s.startsWith('MSA'));
  const f = seg?.split('|') ?? [];
  return { code: f[1] ?? '', controlId: f[2] ?? '' };
}

export async function sendFeed(messages: readonly FeedMessage[], o: SendOptions): Promise<SendResult> {
  const rnd = prng(o.seed ?? 99);
  const resendAfter = new Set(messages.filter(() => rnd() < o.resendShare).map((m) => m.seq));
  const accepted = new Set<number>();
  const rejected = new Map<number, string>();
  const latencies = new Map<string, number[]>();
  let deliberateResends = 0;
  let retrySends = 0;
  let aeAcks = 0;
  let timeouts = 0;
  let reconnects = 0;
  const t0 = performance.now();
  // The position of each message in the whole feed paces it (R7): message i leaves at t0 + i / rate.
  const dueAt = new Map(messages.map((m, i) => [m.seq, o.rate ? t0 + (i * 1000) / o.rate : 0]));
  const lanes = Array.from({ length: o.connections }, () => [] as FeedMessage[]);
  for (const m of messages) lanes[m.patient % o.connections]!.push(m);

  /** Sends until AA (or AR); returns whether it was accepted. */
  const deliver = async (c: Connection, m: FeedMessage): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      if (o.signal?.aborted) throw new Error('aborted');
      if (attempt > 0) retrySends++;
      if (!c.connected) {
        if (attempt > 0) reconnects++;
        await c.open(o.signal);
      }
      const phase = o.phase?.() ?? 'all';
      const sent = performance.now();
      const ack = await c.send(m.text, o.ackTimeoutMs);
      if (ack === undefined) {
        if (c.connected) timeouts++;
        else await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const { code, controlId } = msa(ack);
      if (controlId !== m.controlId) {
        // An ACK for something else on this connection (a late one): start the connection over.
        c.close();
        continue;
      }
      if (code === 'AA' || code === 'CA') {
        const list = latencies.get(phase) ?? [];
        list.push(performance.now() - sent);
        latencies.set(phase, list);
        accepted.add(m.seq);
        return;
      }
      if (code === 'AR' || code === 'CR') {
        rejected.set(m.seq, ack.replace(/\r/g, ' | ').slice(0, 300));
        return;
      }
      // AE/CE: Careway could not take it now; the engine waits a moment and sends it again.
      aeAcks++;
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  await Promise.all(
    lanes.map(async (lane) => {
      const c = new Connection(o.port);
      try {
        for (const m of lane) {
          const wait = (dueAt.get(m.seq) ?? 0) - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          await deliver(c, m);
          if (resendAfter.has(m.seq) && accepted.has(m.seq)) {
            deliberateResends++;
            await deliver(c, m);
          }
        }
      } finally {
        c.close();
      }
    }),
  );
  return {
    accepted,
    rejected,
    deliberateResends,
    retrySends,
    aeAcks,
    timeouts,
    reconnects,
    latencies,
  };
}
