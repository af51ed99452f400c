/** The portal: the Communication Careway writes is the message; there is nothing else to deliver. */
import type { Channel } from './channel.js';

export const portalChannel: Channel = {
  kind: 'portal',
  async send(): Promise<void> {
    // Delivered by the Communication itself (written by the caller for every channel).
  },
};
