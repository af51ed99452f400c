/**
 * A channel delivers one patient-facing message. Failures say whether trying again can help: a provider that
 * is down or throttling (retryable) or one that refused the message for good (permanent).
 */
export type ChannelKind = 'email' | 'sms' | 'portal';

export interface OutboundMessage {
  /** Address for the channel (e-mail address, phone number; empty for the portal). */
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  /** Stable per send, so a provider can deduplicate a retry. */
  readonly messageId: string;
}

export class ChannelError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'ChannelError';
  }
}

export interface Channel {
  readonly kind: ChannelKind;
  send(message: OutboundMessage): Promise<void>;
  close?(): Promise<void>;
}
