/**
 * Optimistic concurrency: a write carries `If-Match` on the version it was computed from, and the FHIR server
 * refuses it (HAPI 409, others 412) when someone wrote in between. The answer is to read again and decide
 * again, so the later change is applied on top of the earlier one, or refused if it no longer makes sense.
 */
import { CarewayError } from '../shared/errors.js';
import { FhirError } from './errors.js';

export interface ConflictRetryOptions {
  /** Attempts in all, the first included (default 5). 1 translates a conflict without retrying. */
  readonly attempts?: number;
  /**
   * When the last attempt still conflicts: throw a `concurrent-update` CarewayError (409) with this message.
   * Without it the server's FhirError is thrown as it came.
   */
  readonly exhausted?: string;
}

/**
 * Runs `attempt` (given its 1-based number) and runs it again when it fails with a version conflict. Each
 * attempt must re-read what it decides from; the first may reuse a read the caller already made.
 */
export async function retryOnConflict<T>(
  attempt: (n: number) => Promise<T>,
  options: ConflictRetryOptions = {},
): Promise<T> {
  const attempts = options.attempts ?? 5;
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (e) {
      if (!(e instanceof FhirError && e.isConflict)) throw e;
      if (n >= attempts) {
        if (options.exhausted === undefined) throw e;
        throw new CarewayError('concurrent-update', options.exhausted, { cause: e });
      }
    }
  }
}
