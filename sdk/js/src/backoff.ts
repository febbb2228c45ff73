// Reconnect delays: exponential backoff with full jitter (each delay drawn uniformly below its
// bound), so that thousands of clients dropped at once by one event do not come back in step.

export interface BackoffOptions {
  /** The first retry's bound, in milliseconds (default 250). */
  minDelayMs?: number;
  /** The largest bound, in milliseconds (default 10 000). */
  maxDelayMs?: number;
}

export class Backoff {
  readonly #minDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #random: () => number;

  constructor(options: BackoffOptions = {}, random: () => number = Math.random) {
    this.#minDelayMs = Math.max(1, options.minDelayMs ?? 250);
    this.#maxDelayMs = Math.max(this.#minDelayMs, options.maxDelayMs ?? 10_000);
    this.#random = random;
  }

  /** The delay before retry number `attempt` (1 for the first retry). */
  delay(attempt: number): number {
    const exponent = Math.min(Math.max(attempt, 1) - 1, 30);
    const bound = Math.min(this.#maxDelayMs, this.#minDelayMs * 2 ** exponent);
    return Math.floor(this.#random() * bound);
  }
}
