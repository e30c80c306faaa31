/**
 * Client-side pacing under a server's per-window request limit (e.g. Comet's 12,000 metrics per
 * minute). A sliding window of the last `limit` send times: a call waits until sending keeps every
 * window of `windowMs` at or under `limit`, so neither a fixed-window nor a sliding-window server
 * ever sees more than it allows.
 */
export class RateLimiter {
  readonly limit: number;
  readonly windowMs: number;
  readonly #times: Float64Array;
  #head = 0;
  #count = 0;
  #chain: Promise<void> = Promise.resolve();
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;

  constructor(options: { limit: number; windowMs: number; now?: () => number; sleep?: (ms: number) => Promise<void> }) {
    if (!(options.limit >= 1)) throw new TypeError('RateLimiter: limit must be >= 1');
    this.limit = Math.floor(options.limit);
    this.windowMs = options.windowMs;
    this.#times = new Float64Array(this.limit);
    this.#now = options.now ?? (() => performance.now());
    this.#sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Resolve when one more send is allowed (calls are served in order). */
  take(): Promise<void> {
    const next = this.#chain.then(() => this.#takeOne());
    this.#chain = next;
    return next;
  }

  async #takeOne(): Promise<void> {
    for (;;) {
      const now = this.#now();
      if (this.#count < this.limit) break;
      const oldest = this.#times[this.#head]!;
      const wait = oldest + this.windowMs - now;
      if (wait <= 0) {
        this.#head = (this.#head + 1) % this.limit;
        this.#count--;
        break;
      }
      await this.#sleep(Math.ceil(wait));
    }
    this.#times[(this.#head + this.#count) % this.limit] = this.#now();
    this.#count++;
  }
}
