/**
 * Bytes → text, honouring MSH-18. The header is ASCII in every charset HL7 allows here, so MSH-18 is read
 * from a Latin-1 view first, then the whole message is decoded with the declared charset:
 * `ASCII`/`8859/1` → Latin-1 (a superset of ASCII), `UNICODE UTF-8` → UTF-8, empty → the configured default.
 */
export type Charset = 'utf-8' | 'latin1';

export class UnsupportedCharsetError extends Error {
  readonly charset: string;
  constructor(charset: string) {
    super(`MSH-18 character set "${charset}" is not supported`);
    this.name = 'UnsupportedCharsetError';
    this.charset = charset;
  }
}

export function declaredCharset(bytes: Buffer): string {
  const head = bytes.subarray(0, Math.min(bytes.length, 2048)).toString('latin1');
  const firstLine = head.split(/\r|\n/)[0] ?? '';
  if (!firstLine.startsWith('MSH') || firstLine.length < 4) return '';
  const sep = firstLine[3] ?? '|';
  // MSH-18 is the 17th separator-delimited part after the segment name (MSH-1 is the separator itself).
  const parts = firstLine.split(sep);
  const raw = parts[17] ?? '';
  // MSH-18 repeats; the first repetition is the message's charset.
  return (
    raw
      .split(firstLine[5] ?? '~')[0]
      ?.trim()
      .toUpperCase() ?? ''
  );
}

export function decodeMessage(
  bytes: Buffer,
  fallback: Charset = 'utf-8',
): { text: string; charset: Charset } {
  const declared = declaredCharset(bytes);
  let charset: Charset;
  if (declared === '') charset = fallback;
  else if (declared === 'ASCII' || declared === '8859/1') charset = 'latin1';
  else if (declared === 'UNICODE UTF-8' || declared === 'UTF-8') charset = 'utf-8';
  else throw new UnsupportedCharsetError(declared);
  return {
    text: charset === 'latin1' ? bytes.toString('latin1') : new TextDecoder('utf-8').decode(bytes),
    charset,
  };
}
