/**
 * The MLLP listener: transport only. It frames, hands each message to the intake, and writes the ACK back
 * on the same connection in the order the messages came. A connection's frames are handled in turns: the frames
 * that arrived while one turn was being handled make the next turn, handed over together (`handleMany`), so a
 * sender's order is kept and a sender that pipelines does not wait one round trip per message.
 *
 * Robustness: bytes outside frames are dropped; a frame past the size limit gets AR and the connection is
 * closed (the stream can no longer be trusted); idle connections are closed; past `maxConnections` open
 * connections a new one is closed at once (each costs memory, and an EHR feed needs a handful); a socket
 * error or a failing handler never takes the process down (a failing handler answers AE).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { buildAck } from '../ack.js';
import { frame, MllpDecoder } from './framing.js';

/** Frames handed over in one turn at most (a sender that pipelines thousands waits a few turns). */
const MAX_TURN = 256;

export interface MllpLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface MllpServerOptions {
  readonly host: string;
  readonly port: number;
  readonly maxFrameBytes: number;
  readonly idleTimeoutMs: number;
  /** Open connections at most (MLLP_MAX_CONNECTIONS); a connection past it is closed as it comes. */
  readonly maxConnections?: number;
  /** A connection was refused because `maxConnections` were open. */
  readonly onRefused?: () => void;
  /** One ACK (or none) per message in the frame. */
  readonly handle: (payload: Buffer) => Promise<(string | undefined)[]>;
  /**
   * Several frames of one connection at once, in their order (the HL7 intake stores them together): the
   * frames a sender pipelined while the previous ones were being handled. Without it, `handle` takes them one
   * after another.
   */
  readonly handleMany?: (payloads: readonly Buffer[]) => Promise<(string | undefined)[][]>;
  readonly log?: MllpLog;
  /**
   * TLS for the listener (MLLP over TLS, as IHE ATNA asks): the server's certificate and key in PEM, and a CA
   * bundle when senders must present a client certificate signed by it (mutual TLS).
   */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca?: Buffer };
}

export class MllpServer {
  private readonly o: MllpServerOptions;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(options: MllpServerOptions) {
    this.o = options;
    const onSocket = (socket: Socket): void => this.connection(socket);
    if (options.tls) {
      const { cert, key, ca } = options.tls;
      this.server = createTlsServer(
        {
          cert,
          key,
          minVersion: 'TLSv1.2',
          ...(ca ? { ca, requestCert: true, rejectUnauthorized: true } : {}),
        },
        onSocket,
      );
      // A failed handshake (plain TCP, an untrusted client) is the peer's problem: log it, keep serving.
      this.server.on('tlsClientError', (err) =>
        options.log?.warn({ err: { code: (err as { code?: string }).code } }, 'MLLP TLS handshake failed'),
      );
    } else {
      this.server = createServer(onSocket);
    }
    this.server.on('error', (err) => options.log?.warn({ err }, 'MLLP server error'));
    if (options.maxConnections !== undefined) {
      // Node closes a connection past the limit before any byte is read (or a TLS handshake is made).
      this.server.maxConnections = options.maxConnections;
      let lastWarned = 0;
      this.server.on('drop', (data) => {
        options.onRefused?.();
        // One line a minute at most: a flood of connections must not become a flood of log lines.
        if (Date.now() - lastWarned < 60_000) return;
        lastWarned = Date.now();
        options.log?.warn(
          { maxConnections: options.maxConnections, remote: data?.remoteAddress },
          'MLLP connection refused: too many open connections',
        );
      });
    }
  }

  /** Connections open now (the `careway_mllp_connections` gauge). */
  get connections(): number {
    return this.sockets.size;
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port, this.o.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address();
    return typeof addr === 'object' && addr ? addr.port : this.o.port;
  }

  /** Stops accepting, then ends open connections (after the ACKs already being written). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.end();
    const force = setTimeout(() => {
      for (const s of this.sockets) s.destroy();
    }, 2000);
    force.unref();
    await closed;
    clearTimeout(force);
  }

  private connection(socket: Socket): void {
    this.sockets.add(socket);
    const decoder = new MllpDecoder(this.o.maxFrameBytes);
    // Frames waiting for their turn, in arrival order; `oversize` ends the connection once reached.
    let waiting: (Buffer | 'oversize')[] = [];
    let busy = false;
    const turns = async (): Promise<void> => {
      busy = true;
      try {
        while (waiting.length > 0) {
          const stop = waiting.indexOf('oversize');
          const cut = Math.min(stop < 0 ? waiting.length : stop, MAX_TURN);
          const batch = waiting.slice(0, cut) as Buffer[];
          waiting = waiting.slice(cut);
          if (batch.length === 0) {
            // The stream can no longer be trusted: AR, and nothing after it is taken.
            waiting = [];
            const ack = buildAck(undefined, 'AR', {
              controlId: `R${Date.now()}`,
              error: { code: '100', text: `frame exceeds ${this.o.maxFrameBytes} bytes` },
            });
            socket.end(frame(ack));
            return;
          }
          const acks = await this.handleTurn(batch);
          if (socket.destroyed) return;
          // One write for the turn's ACKs.
          socket.cork();
          for (const list of acks) for (const a of list) if (a !== undefined) socket.write(frame(a));
          socket.uncork();
        }
      } finally {
        busy = false;
      }
    };
    socket.setTimeout(this.o.idleTimeoutMs, () => socket.end());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('data', (data: Buffer) => {
      for (const ev of decoder.push(data)) {
        if (ev.kind === 'garbage') {
          this.o.log?.warn(
            { bytes: ev.bytes, remote: socket.remoteAddress },
            'MLLP bytes outside a frame dropped',
          );
        } else waiting.push(ev.kind === 'oversize' ? 'oversize' : ev.payload);
      }
      if (!busy && waiting.length > 0) void turns();
    });
  }

  /** One turn's frames: their ACKs, in order; a failing handler answers AE (the sender resends). */
  private async handleTurn(batch: readonly Buffer[]): Promise<(string | undefined)[][]> {
    const failed = (): string[] => [
      buildAck(undefined, 'AE', {
        controlId: `E${Date.now()}`,
        error: { code: '207', text: 'internal error; resend' },
      }),
    ];
    if (this.o.handleMany) {
      try {
        return await this.o.handleMany(batch);
      } catch {
        return batch.map(failed);
      }
    }
    const out: (string | undefined)[][] = [];
    for (const payload of batch) {
      try {
        out.push(await this.o.handle(payload));
      } catch {
        out.push(failed());
      }
    }
    return out;
  }
}
