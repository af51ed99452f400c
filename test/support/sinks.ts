/**
 * Real test endpoints for the engagement channels, on loopback: an SMTP server (smtp-server, the library
 * nodemailer's own tests use) that keeps every message it accepts, and an HTTP "SMS provider" that keeps every
 * request with its headers and can be told to fail.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface Mail {
  readonly to: string[];
  readonly raw: string;
}

export async function smtpSink(): Promise<{ url: string; mails: Mail[]; close(): Promise<void> }> {
  const mails: Mail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        callback();
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    mails,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface SmsRequest {
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly json: { to: string; text: string; messageId: string };
}

export async function smsSink(): Promise<{
  url: string;
  requests: SmsRequest[];
  /** Status codes to answer next, one per request (then 200). */
  failNext: number[];
  close(): Promise<void>;
}> {
  const requests: SmsRequest[] = [];
  const failNext: number[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const status = failNext.shift() ?? 200;
      if (status === 200)
        requests.push({ headers: req.headers, body, json: JSON.parse(body) as SmsRequest['json'] });
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/sms`,
    requests,
    failNext,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
