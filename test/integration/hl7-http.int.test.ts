/**
 * HL7 intake wired into the app: `POST /hl7` (single and batch), the MLLP listener on the app's MLLP port,
 * `GET /hl7/messages` without PHI, and scopes.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/shared/paths.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, uniq, type Harness } from '../support/harness.js';
import { frame, MllpDecoder } from '../../src/hl7/mllp/framing.js';
import { Hl7Message } from '../../src/hl7/message.js';

let h: Harness;
let token: string;
const msg = (id: string, type = 'ADT^A04') =>
  `MSH|^~\\&|EPIC|MAINHOSP|CAREWAY|CW|20240115083015-0500||${type}|${id}|P|2.5\rPID|1||MRN-${id}^^^MAINHOSP^MR||Zedekiah^Quill||19700101|F\r`;

beforeAll(async () => {
  // Transport tests: the intake's dry run is off, so a message the maps refuse still reaches the dead letters
  // (the replay test needs one); the dry run itself is tested in hl7-e2e and hl7-feeds.
  h = await startHarness({ QUEUE_PREFIX: `t${uniq()}`, HL7_INTAKE_CHECK: 'none' });
  token = await h.token({ scope: 'system/MessageHeader.cr', sub: 'interface-engine' });
});
afterAll(async () => {
  await h.close();
});

const post = (body: string, t = token) =>
  h.app.inject({
    method: 'POST',
    url: '/hl7',
    headers: { authorization: `Bearer ${t}`, 'content-type': 'x-application/hl7-v2+er7' },
    payload: body,
  });

describe('POST /hl7', () => {
  it('when one message is posted then the ACK is AA and the message is listed without PHI', async () => {
    const id = uniq();
    const res = await post(msg(id));
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/hl7-v2\+er7/);
    const ack = Hl7Message.parse(res.body);
    expect([ack.segment('MSA')?.get(1), ack.segment('MSA')?.get(2)]).toEqual(['AA', id]);
    const list = await h.app.inject({
      method: 'GET',
      url: '/hl7/messages',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(list.statusCode).toBe(200);
    const row = list
      .json<{ messages: { controlId: string; type: string; sender: string; status: string }[] }>()
      .messages.find((m) => m.controlId === id);
    expect(row).toMatchObject({ type: 'ADT^A04', sender: 'EPIC^MAINHOSP' });
    expect(['waiting', 'active', 'completed', 'failed', 'delayed']).toContain(row?.status);
    expect(list.body).not.toContain('Zedekiah');
    expect(h.rawLogs.join('\n')).not.toContain('Zedekiah');
  });

  it('when a batch is posted then each message gets its ACK, in order; a rejected one makes the status 400', async () => {
    const [a, b] = [uniq(), uniq()];
    const batch = `FHS|^~\\&|EPIC\rBHS|^~\\&|EPIC\r${msg(a)}${msg(b, 'ADT^Z99')}BTS|2\rFTS|1\r`;
    const res = await post(batch);
    expect(res.statusCode).toBe(400);
    const acks = res.body.split(/(?=MSH\|)/).map((t) => Hl7Message.parse(t));
    expect(acks.map((x) => [x.segment('MSA')?.get(1), x.segment('MSA')?.get(2)])).toEqual([
      ['AA', a],
      ['AR', b],
    ]);
  });

  it('when the token lacks the scope or is a patient token then 403', async () => {
    expect((await post(msg(uniq()), await h.token({ scope: 'system/Patient.c' }))).statusCode).toBe(403);
    expect(
      (await post(msg(uniq()), await h.token({ scope: 'patient/*.cruds', patient: 'p' }))).statusCode,
    ).toBe(403);
  });
});

describe('MLLP on the app', () => {
  it('when a message is sent to the MLLP port then it is ACKed AA and counted in the metrics', async () => {
    const port = h.app.hl7.mllpPort();
    expect(port).toBeGreaterThan(0);
    const id = uniq();
    const socket = connect(port!, '127.0.0.1');
    const decoder = new MllpDecoder(1 << 20);
    const ack = await new Promise<Hl7Message>((resolve) => {
      socket.on('data', (d: Buffer) => {
        for (const e of decoder.push(d))
          if (e.kind === 'frame') resolve(Hl7Message.parse(e.payload.toString()));
      });
      socket.write(frame(msg(id)));
    });
    socket.end();
    expect([ack.segment('MSA')?.get(1), ack.segment('MSA')?.get(2)]).toEqual(['AA', id]);
    const metrics = await h.app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { authorization: `Bearer ${await h.token({ scope: 'system/*.r' })}` },
    });
    expect(metrics.body).toMatch(/careway_hl7_messages_total\{[^}]*via="mllp"[^}]*code="AA"[^}]*\} [1-9]/);
    expect(metrics.body).toMatch(/careway_hl7_inbound_jobs\{[^}]*state="waiting"[^}]*\} \d+/);
    expect(metrics.body).toMatch(/careway_hl7_inbound_lag_seconds\{[^}]*\} [\d.]+/);
  });
});

describe('npx careway hl7 send', () => {
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [join(projectRoot(), 'bin', 'careway.mjs'), ...args],
        (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  it('when a batch file and a single message are sent then every ACK code is summarised and rejects are listed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'careway-cli-'));
    const [a, b, c] = [uniq(), uniq(), uniq()];
    writeFileSync(
      join(dir, 'batch.hl7'),
      `FHS|^~\\&|EPIC\nBHS|^~\\&|EPIC\n${msg(a).replace(/\r/g, '\n')}${msg(b, 'ADT^Z99').replace(/\r/g, '\n')}BTS|2\nFTS|1\n`,
    );
    writeFileSync(join(dir, 'one.hl7'), msg(c));
    const port = String(h.app.hl7.mllpPort());
    const res = await run(['hl7', 'send', join(dir, 'batch.hl7'), join(dir, 'one.hl7'), '--port', port]);
    expect(res.code).toBe(1);
    expect(res.stdout).toContain('AA: 2');
    expect(res.stdout).toContain('AR: 1');
    expect(res.stdout).toMatch(new RegExp(`batch\\.hl7 ${b}: AR 200`));
    const good = await run(['hl7', 'send', join(dir, 'one.hl7'), '--port', port]);
    expect([good.code, good.stdout.trim()]).toEqual([0, 'AA: 1']);
    expect((await run(['hl7', 'nope'])).code).toBe(2);
  });

  it('when careway hl7 replay is given a failed message id then it is queued again; an unknown id fails', async () => {
    // PID-8 here holds a code outside table 0001, so these messages fail mapping and are dead-lettered.
    const id = uniq();
    await post(msg(id).replace('|19700101|F', '|19700101|Q'));
    let failed: string | undefined;
    const deadline = Date.now() + 15_000;
    while (!failed && Date.now() < deadline) {
      failed = (await h.app.hl7.queue.getJobs(['failed'])).find((j) => j.data.controlId === id)?.id;
      if (!failed) await new Promise((r) => setTimeout(r, 100));
    }
    expect(failed).toBeTruthy();
    const address = await h.app.listen({ port: 0, host: '127.0.0.1' });
    const ok = await run(['hl7', 'replay', failed!, '--url', address, '--token', token]);
    expect([ok.code, ok.stdout.trim()]).toEqual([0, `${failed}: queued`]);
    const missing = await run(['hl7', 'replay', 'no-such-message', '--url', address, '--token', token]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain('404');
  });
});
