/**
 * "The FHIR server is down", without losing what it stores: a TCP proxy between Careway and HAPI that can be
 * taken down and brought back.
 *
 * Why not stop HAPI: the test launcher keeps its database in memory (test/fhir-server/README.md: "every start is
 * a fresh, empty database"), so a stopped HAPI comes back empty and there would be nothing to check the run
 * against. SIGSTOP would keep the data but only models a hung server (connections accepted, never answered),
 * and it would freeze the shared HAPI of the test suite for every other test file. The proxy models both:
 *
 * - `refuse` (the default): the listener closes and open connections are reset, so Careway sees
 *   ECONNREFUSED/ECONNRESET, as from a stopped server or a restarting host;
 * - `blackhole`: connections are accepted and open ones kept, but nothing is forwarded either way, as from a
 *   hung server or a dropped network path; Careway's request timeouts are what end each attempt.
 *
 * The check reads HAPI directly, never through the proxy.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export type Outage = 'refuse' | 'blackhole';

export class FhirProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private mode: 'up' | Outage = 'up';

  private constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  /** A proxy on `port` (0: a free one) forwarding to the FHIR server at `targetBase`. */
  static async start(targetBase: string, port = 0): Promise<FhirProxy> {
    const u = new URL(targetBase);
    const proxy = new FhirProxy(port, { host: u.hostname, port: Number(u.port || 80) });
    await proxy.listen();
    return proxy;
  }

  /** The FHIR base URL to give Careway: the target's path on the proxy's port. */
  baseFor(targetBase: string): string {
    const u = new URL(targetBase);
    return `http://127.0.0.1:${this.port}${u.pathname}`;
  }

  get state(): 'up' | Outage {
    return this.mode;
  }

  private listen(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    server.on('error', () => undefined);
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        const addr = server.address();
        if (typeof addr === 'object' && addr) (this as { port: number }).port = addr.port;
        resolve();
      });
    });
  }

  private accept(client: Socket): void {
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => undefined);
    if (this.mode === 'blackhole') {
      // Accepted and never answered: the client's own timeout ends it.
      client.pause();
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    this.sockets.add(upstream);
    upstream.on('close', () => this.sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Takes the FHIR server away from Careway. */
  async down(how: Outage = 'refuse'): Promise<void> {
    this.mode = how;
    if (how === 'refuse') {
      const server = this.server;
      this.server = undefined;
      for (const s of this.sockets) s.destroy();
      this.sockets.clear();
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    } else {
      // Hung: whatever is in flight stalls where it is.
      for (const s of this.sockets) s.pause();
      for (const s of this.sockets) s.unpipe();
    }
  }

  /** Brings it back. Connections held while black-holed are dropped (a recovered server has forgotten them). */
  async up(): Promise<void> {
    const was = this.mode;
    this.mode = 'up';
    if (was === 'blackhole') {
      for (const s of this.sockets) s.destroy();
      this.sockets.clear();
    }
    if (!this.server) await this.listen();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = undefined;
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  }
}
