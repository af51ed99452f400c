/**
 * An MLLP sender: one long-lived connection (TCP, or TLS for `mllps://`), one message in flight at a time, each
 * answered by the ACK whose MSA-2 is its control id. ACKs for other ids (a late answer to an earlier attempt) are
 * skipped.
 *
 * Failures a retry can fix throw `MllpDeliveryError` with a `reason`: `refused`/`unreachable` (no connection),
 * `timeout` (no ACK in time) or `closed` (the peer hung up before answering). After a timeout or any error the
 * connection is dropped: the stream can no longer be trusted to pair a later ACK with the right message, and the
 * next send connects again.
 */
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { frame, MllpDecoder } from './framing.js';
import { Hl7Message, Hl7ParseError } from '../message.js';

export interface MllpClientOptions {
  readonly host: string;
  readonly port: number;
  readonly tls?: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
  readonly ackTimeoutMs: number;
  /** How long a connection attempt may take (default: the ACK timeout). */
  readonly connectTimeoutMs?: number;
  /** Largest ACK frame accepted (default 1 MiB). */
  readonly maxFrameBytes?: number;
}

export type DeliveryFailure = 'refused' | 'unreachable' | 'timeout' | 'closed';

export class MllpDeliveryError extends Error {
  constructor(
    readonly reason: DeliveryFailure,
    message: string,
  ) {
    super(message);
    this.name = 'MllpDeliveryError';
  }
}

interface Pending {
  readonly controlId: string;
  resolve(ack: Hl7Message): void;
  reject(e: Error): void;
}

export class MllpClient {
  private socket: Socket | undefined;
  private pending: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly o: MllpClientOptions) {}

  /** Sends one ER7 message and resolves with its ACK (parsed); messages are sent one after another. */
  send(er7: string, controlId: string): Promise<Hl7Message> {
    const run = this.queue.then(() => this.sendNow(er7, controlId));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.drop(new MllpDeliveryError('closed', 'the sender is closing'));
  }

  private drop(e: Error): void {
    const s = this.socket;
    this.socket = undefined;
    s?.destroy();
    const p = this.pending;
    this.pending = undefined;
    p?.reject(e);
  }

  private async connection(): Promise<Socket> {
    if (this.socket && !this.socket.destroyed) return this.socket;
    if (this.closed) throw new MllpDeliveryError('closed', 'the sender is closed');
    const { host, port, tls } = this.o;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = tls
        ? tlsConnect({ host, port, servername: host, minVersion: 'TLSv1.2', ...tls })
        : tcpConnect({ host, port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new MllpDeliveryError('unreachable', `no connection to ${host}:${port} in time`));
      }, this.o.connectTimeoutMs ?? this.o.ackTimeoutMs);
      s.once(tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          new MllpDeliveryError(
            e.code === 'ECONNREFUSED' ? 'refused' : 'unreachable',
            `cannot connect to ${host}:${port}: ${e.code ?? e.message}`,
          ),
        );
      });
    });
    socket.setKeepAlive(true, 60_000);
    const decoder = new MllpDecoder(this.o.maxFrameBytes ?? 1024 * 1024);
    socket.on('data', (chunk: Buffer) => {
      for (const ev of decoder.push(chunk)) {
        if (ev.kind === 'oversize') this.drop(new MllpDeliveryError('closed', 'the ACK frame is too large'));
        if (ev.kind !== 'frame') continue;
        let ack: Hl7Message;
        try {
          ack = Hl7Message.parse(ev.payload.toString('utf8'));
        } catch (e) {
          if (e instanceof Hl7ParseError) continue; // not an ACK we can read: keep waiting for ours
          throw e;
        }
        const p = this.pending;
        if (p && ack.segment('MSA')?.get(2) === p.controlId) {
          this.pending = undefined;
          p.resolve(ack);
        }
      }
    });
    socket.on('error', () => {
      if (this.socket === socket) this.drop(new MllpDeliveryError('closed', 'connection error'));
    });
    socket.on('close', () => {
      if (this.socket === socket)
        this.drop(new MllpDeliveryError('closed', 'the receiver closed the connection'));
    });
    this.socket = socket;
    return socket;
  }

  private async sendNow(er7: string, controlId: string): Promise<Hl7Message> {
    const socket = await this.connection();
    return new Promise<Hl7Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drop(new MllpDeliveryError('timeout', `no ACK within ${this.o.ackTimeoutMs} ms`));
      }, this.o.ackTimeoutMs);
      this.pending = {
        controlId,
        resolve: (ack) => {
          clearTimeout(timer);
          resolve(ack);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      socket.write(frame(er7));
    });
  }
}
