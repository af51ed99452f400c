/**
 * SMS through a generic HTTP webhook provider: `POST SMS_WEBHOOK_URL` with `{ to, text, messageId }`, signed
 * with HMAC-SHA256 over `<timestamp>.<body>` (headers `x-careway-timestamp`, `x-careway-signature: v1=<hex>`),
 * the same scheme `POST /engagement/replies` expects back. A token bucket keeps the send rate under
 * SMS_RATE_PER_SECOND; 429 and 5xx are retried (by the queue, with backoff), other 4xx are permanent.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { request } from 'undici';
import { ChannelError, type Channel, type OutboundMessage } from './channel.js';

export function sign(secret: string, timestamp: string, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** Verifies a signature made by `sign`, in constant time, within `toleranceMs` of now. */
export function verify(
  secret: string,
  timestamp: string | undefined,
  signature: string | undefined,
  body: string,
  nowMs = Date.now(),
  toleranceMs = 5 * 60_000,
): boolean {
  if (!timestamp || !signature || !/^\d{10,13}$/.test(timestamp)) return false;
  const ts = timestamp.length <= 10 ? Number(timestamp) * 1000 : Number(timestamp);
  if (Math.abs(nowMs - ts) > toleranceMs) return false;
  const expected = Buffer.from(sign(secret, timestamp, body));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** A token bucket: `take()` resolves when a send may go. */
export function rateLimiter(perSecond: number): { take(): Promise<void> } {
  let tokens = perSecond;
  let last = Date.now();
  return {
    async take(): Promise<void> {
      for (;;) {
        const now = Date.now();
        tokens = Math.min(perSecond, tokens + ((now - last) / 1000) * perSecond);
        last = now;
        if (tokens >= 1) {
          tokens -= 1;
          return;
        }
        await new Promise((r) => setTimeout(r, Math.ceil(((1 - tokens) / perSecond) * 1000)));
      }
    },
  };
}

export function smsChannel(url: URL, secret: string, perSecond: number, timeoutMs = 10_000): Channel {
  const limiter = rateLimiter(perSecond);
  return {
    kind: 'sms',
    async send(m: OutboundMessage): Promise<void> {
      await limiter.take();
      const body = JSON.stringify({ to: m.to, text: m.text, messageId: m.messageId });
      const timestamp = String(Date.now());
      let status: number;
      try {
        const res = await request(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-careway-timestamp': timestamp,
            'x-careway-signature': sign(secret, timestamp, body),
            'idempotency-key': m.messageId,
          },
          body,
          signal: AbortSignal.timeout(timeoutMs),
        });
        status = res.statusCode;
        await res.body.dump();
      } catch {
        throw new ChannelError('SMS provider unreachable', true);
      }
      if (status >= 200 && status < 300) return;
      throw new ChannelError(
        `SMS provider answered ${status}`,
        status === 429 || status === 408 || status >= 500,
      );
    },
  };
}
