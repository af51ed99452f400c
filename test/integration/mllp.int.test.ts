/**
 * The MLLP listener and HL7 intake on real sockets with a real Redis: framing edge cases, ACK semantics
 * (AA only after the message is a durable job), duplicates, rejects with ERR, and Redis down → no AA.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createConnections, type RedisConnections } from '../../src/queues/connections.js';
import { Hl7Intake, type InboundJob } from '../../src/hl7/intake.js';
import { MllpServer } from '../../src/hl7/mllp/server.js';
import { frame, MllpDecoder } from '../../src/hl7/mllp/framing.js';
import { Hl7Message } from '../../src/hl7/message.js';
import { unseal } from '../../src/shared/seal.js';
import { mapSupports, uniq } from '../support/harness.js';

const key = randomBytes(32);
let conns: RedisConnections;
let supports: Awaited<ReturnType<typeof mapSupports>>;
let server: MllpServer;
let port: number;
let queueName: string;
let intake: Hl7Intake;

const msg = (id: string, type = 'ADT^A04', extra = '') =>
  `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015-0500||${type}|${id}|P|2.5${extra}\rPID|1||MRN-${id}^^^MAINHOSP^MR||Doe^Jane||19700101|F`;

beforeAll(async () => {
  supports = await mapSupports();
  conns = createConnections(new URL(inject('redisUrl')), `t${uniq()}`);
  queueName = `hl7-${uniq()}`;
  intake = new Hl7Intake({ queue: conns.queue<InboundJob>(queueName), key, supports });
  server = new MllpServer({
    host: '127.0.0.1',
    port: 0,
    maxFrameBytes: 64 * 1024,
    idleTimeoutMs: 1500,
    handle: async (payload) => (await intake.receive(payload)).map((r) => r.ack),
    // As the HL7 area wires it: the frames a sender pipelined are stored together.
    handleMany: async (payloads) => (await intake.receiveMany(payloads)).map((rs) => rs.map((r) => r.ack)),
  });
  port = await server.listen();
});
afterAll(async () => {
  await server.close();
  await conns.closeAll();
});

/** A client that collects ACKs as they arrive. */
function client(p = port): {
  socket: Socket;
  acks: Hl7Message[];
  closed: Promise<void>;
  next(n: number): Promise<Hl7Message[]>;
} {
  const socket = connect(p, '127.0.0.1');
  const decoder = new MllpDecoder(1 << 20);
  const acks: Hl7Message[] = [];
  socket.on('data', (d: Buffer) => {
    for (const e of decoder.push(d))
      if (e.kind === 'frame') acks.push(Hl7Message.parse(e.payload.toString('utf8')));
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    acks,
    closed,
    async next(n: number) {
      const deadline = Date.now() + 10_000;
      while (acks.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return acks.slice(0, n);
    },
  };
}

const msa = (ack: Hl7Message | undefined) => [ack?.segment('MSA')?.get(1), ack?.segment('MSA')?.get(2)];

describe('MLLP listener', () => {
  it('when a message arrives one byte at a time then it is ACKed AA after it became a job, with the raw message sealed', async () => {
    const id = uniq();
    const c = client();
    for (const b of frame(msg(id))) {
      c.socket.write(Buffer.from([b]));
    }
    const [ack] = await c.next(1);
    expect(msa(ack)).toEqual(['AA', id]);
    const jobs = await conns.queue<InboundJob>(queueName).getJobs(['waiting', 'delayed', 'active']);
    const job = jobs.find((j) => j.data.controlId === id);
    expect(job?.data).toMatchObject({ sender: 'EPIC^MAINHOSP', type: 'ADT^A04', controlId: id });
    expect(JSON.stringify(job?.data)).not.toContain('Doe');
    expect(unseal(job!.data.raw, key).toString()).toContain('Doe^Jane');
    c.socket.end();
  });

  it('when three messages arrive in one write then three ACKs come back in order', async () => {
    const ids = [uniq(), uniq(), uniq()];
    const c = client();
    c.socket.write(Buffer.concat(ids.map((i) => frame(msg(i)))));
    const acks = await c.next(3);
    expect(acks.map((a) => msa(a)[1])).toEqual(ids);
    c.socket.end();
  });

  it('when the same message is sent twice then both get AA and there is one job', async () => {
    const id = uniq();
    const c = client();
    c.socket.write(frame(msg(id)));
    c.socket.write(frame(msg(id)));
    const acks = await c.next(2);
    expect(acks.map((a) => msa(a)[0])).toEqual(['AA', 'AA']);
    const jobs = (await conns.queue<InboundJob>(queueName).getJobs(['waiting', 'delayed', 'active'])).filter(
      (j) => j.data.controlId === id,
    );
    expect(jobs).toHaveLength(1);
    c.socket.end();
  });

  it('when a sender pipelines 60 messages, one of them twice, then every ACK comes back AA in order, and the jobs are queued once each in the order sent', async () => {
    const ids = Array.from({ length: 60 }, () => uniq());
    const sent = [...ids.slice(0, 30), ids[10]!, ...ids.slice(30)];
    const c = client();
    // Several writes while the first turn is being stored: later frames are handed over together.
    c.socket.write(frame(msg(sent[0]!)));
    c.socket.write(Buffer.concat(sent.slice(1, 20).map((i) => frame(msg(i)))));
    c.socket.write(Buffer.concat(sent.slice(20).map((i) => frame(msg(i)))));
    const acks = await c.next(sent.length);
    expect(acks.map((a) => msa(a)[1])).toEqual(sent);
    expect(acks.map((a) => msa(a)[0])).toEqual(sent.map(() => 'AA'));
    const queued = (await conns.queue<InboundJob>(queueName).getJobs(['waiting'], 0, -1, true))
      .map((j) => j.data.controlId)
      .filter((id) => ids.includes(id));
    expect(queued).toEqual(ids);
    c.socket.end();
  });

  it('when frames handed over together include a resend of a stored message then only the resend is a duplicate', async () => {
    const first = uniq();
    const [stored] = await intake.receiveMany([Buffer.from(msg(first))]);
    expect(stored?.[0]).toMatchObject({ code: 'AA', duplicate: false });
    const fresh = uniq();
    const results = await intake.receiveMany([Buffer.from(msg(fresh)), Buffer.from(msg(first))]);
    expect(results.map((r) => [r[0]?.code, r[0]?.duplicate])).toEqual([
      ['AA', false],
      ['AA', true],
    ]);
  });

  it('when a frame holds garbage, an unsupported type or no MSH-10 then AR with ERR, and the connection keeps serving', async () => {
    const c = client();
    c.socket.write(frame('this is not HL7 at all'));
    c.socket.write(frame(msg(uniq(), 'ADT^Z99')));
    c.socket.write(frame(msg('', 'ADT^A04')));
    const good = uniq();
    c.socket.write(Buffer.concat([Buffer.from('noise outside any frame'), frame(msg(good))]));
    const acks = await c.next(4);
    expect(acks.map((a) => a.segment('MSA')?.get(1))).toEqual(['AR', 'AR', 'AR', 'AA']);
    expect(acks.slice(0, 3).map((a) => a.segment('ERR')?.get(3, 1))).toEqual(['100', '200', '101']);
    expect(msa(acks[3])[1]).toBe(good);
    c.socket.end();
  });

  it('when a frame is larger than the limit then AR and the connection is closed', async () => {
    const c = client();
    c.socket.write(frame(msg(uniq(), 'ADT^A04', `\rNTE|1||${'x'.repeat(70 * 1024)}`)));
    await c.closed;
    expect(c.acks.map((a) => a.segment('MSA')?.get(1))).toEqual(['AR']);
    expect(c.acks[0]?.segment('ERR')?.get(8)).toMatch(/exceeds/);
  });

  it('when a client is slow between halves of a frame it is still served; an idle one is closed', async () => {
    const id = uniq();
    const c = client();
    const bytes = frame(msg(id));
    c.socket.write(bytes.subarray(0, 20));
    await new Promise((r) => setTimeout(r, 500));
    c.socket.write(bytes.subarray(20));
    expect(msa((await c.next(1))[0])).toEqual(['AA', id]);
    const t0 = Date.now();
    await c.closed; // idle timeout 1.5 s
    expect(Date.now() - t0).toBeGreaterThan(1000);
  });

  it('when MSH-15 asks for enhanced acknowledgment then CA is sent, and NE sends nothing', async () => {
    const c = client();
    const al = uniq();
    c.socket.write(frame(msg(al, 'ADT^A04', '|||AL|NE')));
    c.socket.write(frame(msg(uniq(), 'ADT^A04', '|||NE|NE')));
    const last = uniq();
    c.socket.write(frame(msg(last)));
    const acks = await c.next(2);
    expect(acks.map((a) => msa(a))).toEqual([
      ['CA', al],
      ['AA', last],
    ]);
    c.socket.end();
  });

  it('when Redis is down then the answer is AE, never AA', async () => {
    const dead = createConnections(new URL('redis://127.0.0.1:1'));
    const intake = new Hl7Intake({ queue: dead.queue<InboundJob>('hl7-dead-test'), key, supports });
    const s = new MllpServer({
      host: '127.0.0.1',
      port: 0,
      maxFrameBytes: 65536,
      idleTimeoutMs: 5000,
      handle: async (p) => (await intake.receive(p)).map((r) => r.ack),
    });
    const p = await s.listen();
    const c = client(p);
    const id = uniq();
    c.socket.write(frame(msg(id)));
    const [ack] = await c.next(1);
    expect(msa(ack)).toEqual(['AE', id]);
    expect(ack?.segment('ERR')?.get(3, 1)).toBe('207');
    c.socket.end();
    await s.close();
    await dead.closeAll();
  });

  it('when TLS is on then a trusting client is served, and plain TCP or an untrusted client cannot get in', async () => {
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [
        {
          name: 'subjectAltName',
          altNames: [
            { type: 7, ip: '127.0.0.1' },
            { type: 2, value: 'localhost' },
          ],
        },
      ],
    });
    const intake = new Hl7Intake({ queue: conns.queue<InboundJob>(queueName), key, supports });
    const s = new MllpServer({
      host: '127.0.0.1',
      port: 0,
      maxFrameBytes: 65536,
      idleTimeoutMs: 5000,
      handle: async (p) => (await intake.receive(p)).map((r) => r.ack),
      tls: { cert: Buffer.from(pems.cert), key: Buffer.from(pems.private) },
    });
    const p = await s.listen();
    const exchange = async (socket: Socket, id: string): Promise<Hl7Message | undefined> => {
      const decoder = new MllpDecoder(1 << 20);
      const got = new Promise<Hl7Message | undefined>((resolve) => {
        socket.on('data', (d: Buffer) => {
          for (const e of decoder.push(d))
            if (e.kind === 'frame') resolve(Hl7Message.parse(e.payload.toString('utf8')));
        });
        socket.once('error', () => resolve(undefined));
        socket.once('close', () => resolve(undefined));
      });
      socket.write(frame(msg(id)));
      return got;
    };
    const id = uniq();
    const secure = tlsConnect({ host: '127.0.0.1', port: p, ca: pems.cert });
    await new Promise<void>((r) => secure.once('secureConnect', () => r()));
    expect(msa(await exchange(secure, id))).toEqual(['AA', id]);
    secure.end();

    // Plain TCP gets no ACK (the bytes are not a TLS handshake), and the listener keeps serving.
    expect(await exchange(connect(p, '127.0.0.1'), uniq())).toBeUndefined();
    const untrusted = tlsConnect({ host: '127.0.0.1', port: p });
    const refused = await new Promise<string>((r) => {
      untrusted.once('secureConnect', () => r('connected'));
      untrusted.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error'));
    });
    expect(refused).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    const again = tlsConnect({ host: '127.0.0.1', port: p, ca: pems.cert });
    await new Promise<void>((r) => again.once('secureConnect', () => r()));
    const id2 = uniq();
    expect(msa(await exchange(again, id2))).toEqual(['AA', id2]);
    again.end();
    await s.close();
  });

  it('when TLS requires client certificates then a client without one is refused and one with a signed one is served', async () => {
    // A hospital CA that signs the interface engine's client certificate; the server has its own certificate.
    const ca = await generate([{ name: 'commonName', value: 'Hospital interface CA' }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      ],
    });
    const client = await generate([{ name: 'commonName', value: 'interface-engine' }], {
      keySize: 2048,
      algorithm: 'sha256',
      ca: { key: ca.private, cert: ca.cert },
      extensions: [{ name: 'extKeyUsage', clientAuth: true }],
    });
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    });
    const intake = new Hl7Intake({ queue: conns.queue<InboundJob>(queueName), key, supports });
    const s = new MllpServer({
      host: '127.0.0.1',
      port: 0,
      maxFrameBytes: 65536,
      idleTimeoutMs: 5000,
      handle: async (p) => (await intake.receive(p)).map((r) => r.ack),
      tls: { cert: Buffer.from(pems.cert), key: Buffer.from(pems.private), ca: Buffer.from(ca.cert) },
    });
    const p = await s.listen();
    const attempt = (opts: { cert?: string; key?: string }) =>
      new Promise<string>((resolve) => {
        const sock = tlsConnect({ host: '127.0.0.1', port: p, ca: pems.cert, ...opts });
        const decoder = new MllpDecoder(1 << 20);
        const id = uniq();
        sock.once('secureConnect', () => sock.write(frame(msg(id))));
        sock.on('data', (d: Buffer) => {
          for (const e of decoder.push(d))
            if (e.kind === 'frame')
              resolve(Hl7Message.parse(e.payload.toString('utf8')).segment('MSA')?.get(1) ?? '');
        });
        sock.once('error', () => resolve('refused'));
        sock.once('close', () => resolve('refused'));
      });
    expect(await attempt({})).toBe('refused');
    expect(await attempt({ cert: client.cert, key: client.private })).toBe('AA');
    await s.close();
  });
});
