/**
 * E-mail over SMTP (nodemailer, SMTP_URL). The Message-ID is derived from the send, so a retried send is
 * recognisable downstream.
 */
import { createTransport, type Transporter } from 'nodemailer';
import { ChannelError, type Channel, type OutboundMessage } from './channel.js';

export function emailChannel(smtpUrl: URL, from: string, domain = 'careway.local'): Channel {
  const transport: Transporter = createTransport(smtpUrl.toString());
  return {
    kind: 'email',
    async send(m: OutboundMessage): Promise<void> {
      try {
        await transport.sendMail({
          from,
          to: m.to,
          subject: m.subject,
          text: m.text,
          messageId: `<${m.messageId}@${domain}>`,
        });
      } catch (e) {
        const code = (e as { responseCode?: number }).responseCode;
        // 5xx SMTP replies are permanent (bad mailbox, policy); connection problems and 4xx are worth a retry.
        const permanent = typeof code === 'number' && code >= 500;
        throw new ChannelError(`SMTP ${code ?? 'connection'} failure`, !permanent);
      }
    },
    async close(): Promise<void> {
      transport.close();
    },
  };
}
