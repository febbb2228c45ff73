// Client tokens on the client side: where they come from (a fixed string or the application's
// async provider) and when they run out.
//
// The provider is called before every connection attempt, so a reconnect always presents a
// token the backend just issued. While connected, it is also called shortly before the current
// token's `exp`, so the client always holds an unexpired token: if the provider is unreachable
// at the moment of a reconnect (the same network blip that dropped the socket often hides the
// backend too), that token still lets the client back in.

/** Returns a client token; called before every (re)connect and before the token expires. */
export type TokenProvider = () => Promise<string> | string;

/** Seconds before `exp` at which the provider is called again (at most a fifth of the lifetime). */
const DEFAULT_REFRESH_MARGIN_SECONDS = 60;

/** The `exp` claim (seconds since the epoch) of a JWT, read without verifying it. */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const json = JSON.parse(decodeBase64Url(payload)) as { exp?: unknown };
    return typeof json.exp === "number" && Number.isFinite(json.exp) ? json.exp : undefined;
  } catch {
    return undefined;
  }
}

function decodeBase64Url(text: string): string {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

export interface TokenSourceOptions {
  token?: string | undefined;
  tokenProvider?: TokenProvider | undefined;
  refreshMarginSeconds?: number | undefined;
  /** Told when a background refresh failed (the held token is kept). */
  onRefreshError: (error: unknown) => void;
  now?: () => number;
}

export class TokenSource {
  readonly #fixed: string | undefined;
  readonly #provider: TokenProvider | undefined;
  readonly #marginMs: number;
  readonly #onRefreshError: (error: unknown) => void;
  readonly #now: () => number;
  #held: string | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(options: TokenSourceOptions) {
    if (!options.token && !options.tokenProvider) throw new TypeError("either token or tokenProvider is required");
    this.#fixed = options.token;
    this.#provider = options.tokenProvider;
    this.#marginMs = (options.refreshMarginSeconds ?? DEFAULT_REFRESH_MARGIN_SECONDS) * 1000;
    this.#onRefreshError = options.onRefreshError;
    this.#now = options.now ?? Date.now;
    this.#held = options.token;
  }

  /** Whether a rejected token can be replaced (only a provider can). */
  get renewable(): boolean {
    return this.#provider !== undefined;
  }

  /** A token for a new connection: from the provider when there is one. */
  async fetch(): Promise<string> {
    if (!this.#provider) return this.#fixed as string;
    const token = await this.#provider();
    if (typeof token !== "string" || token === "") throw new Error("the provider returned no token");
    this.#hold(token);
    return token;
  }

  /** The token last obtained, if it has not expired (tokens without `exp` never do). */
  unexpired(): string | undefined {
    if (!this.#held) return undefined;
    const exp = tokenExpiry(this.#held);
    return exp === undefined || exp * 1000 > this.#now() ? this.#held : undefined;
  }

  /** Forgets the held token (the server refused it). */
  discard(): void {
    this.#held = undefined;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#refreshTimer);
  }

  #hold(token: string): void {
    this.#held = token;
    this.#scheduleRefresh(token);
  }

  #scheduleRefresh(token: string): void {
    clearTimeout(this.#refreshTimer);
    const exp = tokenExpiry(token);
    if (exp === undefined || !this.#provider || this.#stopped) return;
    const remainingMs = exp * 1000 - this.#now();
    if (remainingMs <= 0) return;
    const marginMs = Math.min(this.#marginMs, remainingMs / 5);
    this.#refreshTimer = setTimeout(() => void this.#refresh(), remainingMs - marginMs);
  }

  async #refresh(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.fetch();
    } catch (error) {
      if (this.#stopped) return;
      this.#onRefreshError(error);
      // Try again halfway to the expiry of the token still held, while it is worth it.
      const exp = this.#held ? tokenExpiry(this.#held) : undefined;
      const remainingMs = exp === undefined ? 0 : exp * 1000 - this.#now();
      if (remainingMs > 2000) this.#refreshTimer = setTimeout(() => void this.#refresh(), remainingMs / 2);
    }
  }
}
