// Every failure the realtime client reports is a `SignalboxError` with a machine-readable
// `code`, so an application can branch on `error.code` (or `instanceof`) instead of parsing
// messages. Server codes come from the error-code table in docs/protocol.md; the client adds
// its own for what happens on this side of the socket.

import { closeAction, type CloseAction } from "./close-codes.js";

/** Error codes the server may send in a `reply` or `error` frame (docs/protocol.md). */
export type ServerErrorCode =
  | "bad_request"
  | "unknown_type"
  | "invalid_name"
  | "forbidden"
  | "message_too_large"
  | "too_many_groups"
  | "rate_limited"
  | "unavailable"
  | "internal"
  | "no_upstream"
  | "upstream_failed"
  // A code this client version does not know yet: the protocol only ever adds codes.
  | (string & {});

/** Server codes after which the same request may succeed later. */
const RETRYABLE_SERVER_CODES: ReadonlySet<string> = new Set(["rate_limited", "unavailable", "internal", "upstream_failed"]);

/** The base class: `code` says what went wrong. */
export class SignalboxError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SignalboxError";
    this.code = code;
  }
}

/** The server refused a request: `code` is from the protocol's error-code table. */
export class ServerError extends SignalboxError {
  declare readonly code: ServerErrorCode;

  constructor(code: ServerErrorCode, message: string) {
    super(code, message);
    this.name = "ServerError";
  }

  /** Whether sending the same request again later may succeed. */
  get retryable(): boolean {
    return RETRYABLE_SERVER_CODES.has(this.code);
  }
}

/** A request was made while the client had no open connection (connecting or reconnecting). */
export class NotConnectedError extends SignalboxError {
  constructor(message = "not connected") {
    super("not_connected", message);
    this.name = "NotConnectedError";
  }
}

/**
 * The connection closed: before a request got its reply, before the client ever connected
 * (`connect()` after giving up), or because the application closed the client.
 */
export class ConnectionClosedError extends SignalboxError {
  /** The WebSocket close code (1006 when the connection ended without a close frame). */
  readonly closeCode: number;
  readonly reason: string;

  constructor(closeCode: number, reason: string) {
    super("closed", `connection closed (${closeCode})${reason ? `: ${reason}` : ""}`);
    this.name = "ConnectionClosedError";
    this.closeCode = closeCode;
    this.reason = reason;
  }

  /** What the close code tells a client to do (docs/protocol.md, "Close codes"). */
  get action(): CloseAction {
    return closeAction(this.closeCode);
  }
}

/** No reply arrived in time. The request may or may not have taken effect. */
export class TimeoutError extends SignalboxError {
  constructor(message: string) {
    super("timeout", message);
    this.name = "TimeoutError";
  }
}

/** The application's token provider failed (threw, rejected or returned no token). */
export class TokenProviderError extends SignalboxError {
  constructor(cause: unknown) {
    super("token_provider_failed", `the token provider failed: ${describe(cause)}`, { cause });
    this.name = "TokenProviderError";
  }
}

function describe(value: unknown): string {
  return value instanceof Error ? value.message : String(value);
}
