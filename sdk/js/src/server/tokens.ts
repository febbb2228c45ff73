// Signing client tokens in the tenant's backend, with no call to Signalbox: HS256 with an app
// key's secret, the key id in the header's `kid`, the app id in the `app` claim
// (docs/tokens.md).

import { createHmac } from "node:crypto";

export interface ClientTokenClaims {
  /** The user the connection acts as; anonymous when absent. */
  userId?: string;
  /** Groups joined when the connection opens. */
  groups?: string[];
  /** Grants: `join:PATTERN`, `leave:PATTERN`, `publish:PATTERN`. */
  permissions?: string[];
  /** Public information about the user (shown in presence). */
  info?: Record<string, unknown>;
  /** Lifetime in seconds (default 3600). */
  ttlSeconds?: number;
}

export interface SigningKey {
  app: string;
  keyId: string;
  secret: string;
}

/** Signs a client token. `now` (seconds since the epoch) is for tests. */
export function signClientToken(key: SigningKey, claims: ClientTokenClaims, now = Math.floor(Date.now() / 1000)): string {
  const ttl = claims.ttlSeconds ?? 3600;
  if (!Number.isInteger(ttl) || ttl < 1) throw new RangeError("ttlSeconds must be a positive integer");
  const header = { alg: "HS256", typ: "JWT", kid: key.keyId };
  const payload: Record<string, unknown> = { app: key.app, iat: now, exp: now + ttl };
  if (claims.userId !== undefined) payload.sub = claims.userId;
  if (claims.groups?.length) payload.groups = claims.groups;
  if (claims.permissions?.length) payload.permissions = claims.permissions;
  if (claims.info !== undefined) payload.info = claims.info;
  const signingInput = `${base64Url(JSON.stringify(header))}.${base64Url(JSON.stringify(payload))}`;
  const signature = createHmac("sha256", key.secret).update(signingInput).digest("base64url");
  return `${signingInput}.${signature}`;
}

function base64Url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}

/** Splits a key credential `{id}.{secret}` (as `POST …/keys` returns it). */
export function parseKeyCredential(credential: string): { keyId: string; secret: string } {
  const dot = credential.indexOf(".");
  if (dot <= 0 || dot === credential.length - 1) {
    throw new TypeError("a key credential has the form {key_id}.{secret}");
  }
  return { keyId: credential.slice(0, dot), secret: credential.slice(dot + 1) };
}
