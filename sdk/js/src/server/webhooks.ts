// Verifying that a webhook request came from Signalbox, unmodified and recently.
//
// Signalbox signs each delivery with the header
//   Signalbox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
// and, while a secret is being rotated, one `v1=` entry per live secret. A request is genuine
// when any entry matches any secret the backend holds, and fresh when `t` is within the
// tolerance of now: a captured request replayed later is refused.

import { createHmac, timingSafeEqual } from "node:crypto";

import { SignalboxError } from "../errors.js";

export const SIGNATURE_HEADER = "signalbox-signature";

/** Default tolerance between the signature's timestamp and now, in seconds. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export type WebhookVerificationFailure =
  | "missing_signature"
  | "malformed_signature"
  | "signature_mismatch"
  | "timestamp_out_of_tolerance";

export class WebhookVerificationError extends SignalboxError {
  declare readonly code: WebhookVerificationFailure;

  constructor(code: WebhookVerificationFailure, message: string) {
    super(code, message);
    this.name = "WebhookVerificationError";
  }
}

export interface VerifyWebhookOptions {
  /** The app's webhook secret, or all of them during a rotation. */
  secrets: string | readonly string[];
  /** Largest accepted difference between `t` and now, in seconds (default 300). */
  toleranceSeconds?: number;
  /** Now, in seconds since the epoch (for tests). */
  now?: number;
}

/**
 * Checks a webhook request. `rawBody` must be the body exactly as received (not re-serialized
 * JSON). Returns the signature's timestamp; throws a `WebhookVerificationError` otherwise.
 */
export function verifyWebhook(
  rawBody: string | Uint8Array,
  signatureHeader: string | null | undefined,
  options: VerifyWebhookOptions,
): { timestamp: number } {
  if (!signatureHeader) throw new WebhookVerificationError("missing_signature", "no Signalbox-Signature header");
  const { timestamp, signatures } = parseSignatureHeader(signatureHeader);
  const secrets = typeof options.secrets === "string" ? [options.secrets] : options.secrets;
  if (secrets.length === 0) throw new TypeError("verifyWebhook needs at least one secret");

  let matched = false;
  for (const secret of secrets) {
    const expected = computeSignature(secret, timestamp, rawBody);
    for (const candidate of signatures) {
      // Both are 32 bytes (checked when parsing), as timingSafeEqual requires; comparing in
      // constant time keeps the expected signature from leaking byte by byte.
      if (timingSafeEqual(expected, candidate)) matched = true;
    }
  }
  if (!matched) {
    throw new WebhookVerificationError("signature_mismatch", "no signature matches the body with any secret given");
  }
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (Math.abs(now - timestamp) > tolerance) {
    throw new WebhookVerificationError(
      "timestamp_out_of_tolerance",
      `the signature is from ${timestamp}, more than ${tolerance} s away from now (${now})`,
    );
  }
  return { timestamp };
}

/** The header value Signalbox would send (one `v1=` per secret): for tests and tools. */
export function signWebhook(rawBody: string | Uint8Array, secrets: string | readonly string[], timestamp: number): string {
  const list = typeof secrets === "string" ? [secrets] : secrets;
  const entries = list.map((secret) => `v1=${computeSignature(secret, timestamp, rawBody).toString("hex")}`);
  return [`t=${timestamp}`, ...entries].join(",");
}

function computeSignature(secret: string, timestamp: number, rawBody: string | Uint8Array): Buffer {
  return createHmac("sha256", secret).update(`${timestamp}.`).update(rawBody).digest();
}

function parseSignatureHeader(header: string): { timestamp: number; signatures: Buffer[] } {
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(",")) {
    const equals = part.indexOf("=");
    if (equals < 0) continue;
    const name = part.slice(0, equals).trim();
    const value = part.slice(equals + 1).trim();
    if (name === "t" && /^\d{1,12}$/.test(value)) timestamp = Number(value);
    // Other schemes (a future v2) are skipped: this version can only check v1.
    else if (name === "v1" && /^[0-9a-fA-F]{64}$/.test(value)) signatures.push(Buffer.from(value, "hex"));
  }
  if (timestamp === undefined) {
    throw new WebhookVerificationError("malformed_signature", "the Signalbox-Signature header has no valid t=");
  }
  if (signatures.length === 0) {
    throw new WebhookVerificationError("malformed_signature", "the Signalbox-Signature header has no valid v1=");
  }
  return { timestamp, signatures };
}
