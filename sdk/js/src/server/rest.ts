// The HTTP layer of the server helper: one base URL, one bearer credential, JSON in and out,
// and every non-2xx answer turned into an `ApiError` from its RFC 9457 problem+json body.

import { SignalboxError } from "../errors.js";

/** An answer of the REST API that was not a success. */
export class ApiError extends SignalboxError {
  /** The HTTP status. */
  readonly status: number;
  /** The problem's explanation for humans. */
  readonly detail: string;
  readonly title: string;
  /** The problem type URI. */
  readonly type: string;
  /** Seconds to wait before retrying, when the API said (`Retry-After`, on 429 and 503). */
  readonly retryAfterSeconds: number | undefined;

  constructor(status: number, problem: Problem, retryAfterSeconds: number | undefined) {
    const code = problem.code || `http_${status}`;
    super(code, `${status} ${code}: ${problem.detail || problem.title || "request failed"}`);
    this.name = "ApiError";
    this.status = status;
    this.detail = problem.detail ?? "";
    this.title = problem.title ?? "";
    this.type = problem.type ?? "";
    this.retryAfterSeconds = retryAfterSeconds;
  }

  /** Whether the same request may succeed later (429, 503; publishes with an `Idempotency-Key`). */
  get retryable(): boolean {
    return this.status === 429 || this.status === 503;
  }
}

/** The fields of an RFC 9457 problem that Signalbox sends. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
}

/** The request could not be sent or got no answer (connection refused, DNS, timeout…). */
export class RequestFailedError extends SignalboxError {
  constructor(method: string, url: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super("request_failed", `${method} ${url} failed: ${why}`, { cause });
    this.name = "RequestFailedError";
  }
}

export type Query = Record<string, string | number | undefined>;

export interface RequestOptions {
  body?: unknown;
  query?: Query;
  headers?: Record<string, string>;
}

export class RestClient {
  readonly #base: string;
  readonly #bearer: string;
  readonly #timeoutMs: number;

  /** `baseUrl` is where Signalbox listens, e.g. `http://127.0.0.1:8080`. */
  constructor(baseUrl: string, bearer: string, timeoutMs = 30_000) {
    this.#base = baseUrl.replace(/\/+$/, "");
    this.#bearer = bearer;
    this.#timeoutMs = timeoutMs;
  }

  /** A path from segments, each percent-encoded: names may hold `/`, spaces or anything. */
  static path(...segments: string[]): string {
    return "/" + segments.map(encodeURIComponent).join("/");
  }

  /** Sends a request; resolves with the parsed JSON body (`undefined` for 204). */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(this.#base + path);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { authorization: `Bearer ${this.#bearer}`, ...options.headers };
    const init: RequestInit = { method, headers, signal: AbortSignal.timeout(this.#timeoutMs) };
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    let response: Response;
    try {
      response = await fetch(url, init);
    } catch (cause) {
      throw new RequestFailedError(method, url.toString(), cause);
    }
    const text = await response.text();
    if (!response.ok) throw new ApiError(response.status, parseProblem(text, response), retryAfter(response));
    return (text === "" ? undefined : JSON.parse(text)) as T;
  }
}

function parseProblem(text: string, response: Response): Problem {
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value === "object" && value !== null) return value as Problem;
  } catch {
    // Not JSON: a proxy's error page, say. Keep what it said as the detail.
  }
  return { status: response.status, title: response.statusText, detail: text.slice(0, 500) };
}

function retryAfter(response: Response): number | undefined {
  const value = response.headers.get("retry-after");
  const seconds = value === null ? NaN : Number(value);
  return Number.isFinite(seconds) ? seconds : undefined;
}
