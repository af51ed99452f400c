/**
 * HL7 batch files (FHS/BHS … BTS/FTS) split into their messages; a plain message is a batch of one.
 * Each message keeps its own text, so each is parsed, ACKed and deduplicated on its own.
 */
const ENVELOPE = new Set(['FHS', 'BHS', 'BTS', 'FTS']);

export function splitBatch(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/).filter((l) => l.length > 0);
  const messages: string[][] = [];
  for (const line of lines) {
    const name = line.slice(0, 3);
    if (ENVELOPE.has(name)) continue;
    if (name === 'MSH' || messages.length === 0) messages.push([line]);
    else messages[messages.length - 1]?.push(line);
  }
  return messages.map((m) => `${m.join('\r')}\r`);
}
